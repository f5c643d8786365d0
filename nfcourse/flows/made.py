r"""MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015).

An MLP whose weights are multiplied by binary masks so that output :math:`i` depends
only on the inputs that precede :math:`i` in a chosen order. Give every input a degree
:math:`m(j) = \mathrm{rank}(j) + 1 \in \{1..D\}` and every hidden unit a degree
:math:`m(k) \in \{1..D-1\}`; keep a weight only where

.. math::

    \text{input} \to \text{hidden}: \; m(k) \ge m(j), \qquad
    \text{hidden} \to \text{hidden}: \; m(k') \ge m(k), \qquad
    \text{hidden} \to \text{output } i: \; m(i) > m(k).

A path from input :math:`j` to output :math:`i` then needs
:math:`m(i) > m(k) \ge m(j)`, i.e. :math:`\mathrm{rank}(j) < \mathrm{rank}(i)`: the Jacobian
:math:`\partial\,\text{out}_i/\partial x_j` is zero unless :math:`j` precedes :math:`i`
(strictly lower triangular in the order). A context vector, if any, feeds every first-layer
hidden unit (it precedes everything). Hidden degrees cycle through :math:`1..D-1`, so every
degree is represented (deterministic masks, as in MAF); with a context they cycle through
:math:`0..D-1`, and the degree-0 units, which see the context alone, let the first
feature's parameters depend on it.

Outputs come in ``out_mult`` blocks of ``D`` (e.g. log-scale and shift), returned as a
tuple of ``out_mult`` tensors ``[..., D]``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfcourse.flows.nets import split_output

__all__ = ["MADE", "MaskedLinear"]


class MaskedLinear(nn.Linear):
    """``y = x (W ⊙ M)ᵀ + b`` with a fixed binary mask ``M``."""

    def __init__(self, mask: Tensor, bias: bool = True):
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Autoregressive network: outputs ``out_mult`` tensors ``[..., D]`` whose entry ``i``
    depends only on inputs ranked before ``i`` in ``order`` (and on the context).

    Args:
        dim: number of features ``D``.
        hidden: hidden layer sizes.
        out_mult: number of outputs per feature.
        context_dim: size of an optional context vector.
        order: ``order[i]`` is the rank of feature ``i`` (default ``0..D-1``).
        zero_last: start with a zero last layer (a flow built on it starts as the identity).

    >>> made = MADE(3, hidden=(16,), out_mult=1)
    >>> x = torch.randn(3, requires_grad=True)
    >>> jac = torch.autograd.functional.jacobian(lambda v: made(v)[0], x)
    >>> bool((jac.triu() == 0).all())    # output i ignores inputs j >= i
    True
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), out_mult: int = 2,
                 context_dim: int = 0, order: Sequence[int] | Tensor | None = None,
                 zero_last: bool = False):
        super().__init__()
        self.dim, self.out_mult, self.context_dim = dim, out_mult, context_dim
        order = torch.arange(dim) if order is None else torch.as_tensor(order)
        if sorted(order.tolist()) != list(range(dim)):
            raise ValueError(f"order must be a permutation of 0..{dim - 1}, got {order.tolist()}")
        self.register_buffer("order", order, persistent=False)
        degrees_in = order + 1
        # Hidden degrees cycle through 1..D-1, or 0..D-1 with a context: degree-0 units
        # see only the context, and feed the first feature in the order, which would
        # otherwise get constant parameters.
        low = 0 if context_dim else 1
        degrees = [degrees_in]
        for h in hidden:
            degrees.append(torch.arange(h) % max(dim - low, 1) + low)
        self.layers = nn.ModuleList(
            MaskedLinear(d_next[:, None] >= d_prev[None, :])
            for d_prev, d_next in zip(degrees[:-1], degrees[1:]))
        out_mask = degrees_in[:, None] > degrees[-1][None, :]
        self.out = MaskedLinear(out_mask.repeat(out_mult, 1))
        self.context = nn.Linear(context_dim, hidden[0], bias=False) if context_dim else None
        if zero_last:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, ...]:
        # F.linear on the masked weights directly: this runs once per layer of a flow, and
        # at small batches the module-call overhead is a sizeable share of the time.
        first, *rest = self.layers
        h = F.linear(x, first.weight * first.mask, first.bias)
        if self.context is not None:
            h = h + self.context(context)
        # ReLU in place: a linear layer's backward does not need its output, and a fresh
        # [batch, hidden] buffer per activation costs more than the ReLU itself.
        for layer in rest:
            h = F.linear(F.relu_(h), layer.weight * layer.mask, layer.bias)
        out = F.linear(F.relu_(h), self.out.weight * self.out.mask, self.out.bias)
        return split_output(out, self.out_mult)
