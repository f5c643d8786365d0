r"""Coupling layers: NICE's additive coupling and RealNVP's affine coupling.

Split :math:`x` by a mask into a kept part :math:`x_A` and a transformed part :math:`x_B`
(see :mod:`nfcourse.flows.masks`). With a conditioner network :math:`m` (NICE) or
:math:`(s, t)` (RealNVP) that reads :math:`x_A` and, optionally, a context :math:`c`:

.. math::

    \text{additive (NICE):}\quad & y_A = x_A, \quad y_B = x_B + m(x_A, c),
        \quad \log|\det J| = 0, \\
    \text{affine (RealNVP):}\quad & y_A = x_A, \quad y_B = x_B \odot \exp(s(x_A, c)) + t(x_A, c),
        \quad \log|\det J| = \textstyle\sum_i s_i .

The Jacobian is block triangular (:math:`\partial y_A/\partial x_B = 0`) with identity and
:math:`\operatorname{diag}(\exp s)` on the diagonal, hence the log-det. Both directions
cost one network evaluation: :math:`x_B = (y_B - t)\odot\exp(-s)`.

**Bounded log-scale.** The network's raw output :math:`\tilde s` is squashed,
:math:`s = \beta \tanh(\tilde s / \beta)` (slope 1 at 0, :math:`|s| < \beta`), so one
layer never scales by more than :math:`e^{\beta}`; this keeps training and the inverse
stable (RealNVP's code uses a learned multiple of :math:`\tanh`).

**Vectors** ``[..., D]`` with a 1-D mask: the network sees only :math:`x_A` (and the
context) and outputs parameters for :math:`x_B` alone; half masks use slicing, others a
gather. **Images** ``[B, C, H, W]`` with a ``[C|1, H|1, W|1]`` mask: RealNVP's masked
form :math:`y = b\odot x + (1-b)\odot(x\odot e^{s(b\odot x)} + t(b\odot x))` with a
convolutional network; a context vector enters as extra constant channels.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from nfcourse.flows.base import Bijection
from nfcourse.flows.masks import half_mask  # noqa: F401 (doctests)
from nfcourse.flows.nets import MLP, ConvNet, split_output

__all__ = ["AdditiveCoupling", "AffineCoupling", "MaskedCoupling", "masked_affine_coupling",
           "soft_bound"]


def soft_bound(raw: Tensor, bound: float) -> Tensor:
    """``bound * tanh(raw / bound)``: identity near 0, never beyond ``±bound``.

    The bounded log-scale of every affine layer (:class:`AffineCoupling`, MAF, IAF).
    ``bound`` is a Python float, so the formula holds to rounding in the tensor's dtype,
    float64 included. A negative ``bound`` gives ``-|bound| tanh(raw / |bound|)``, the
    negated log-scale.

    >>> soft_bound(torch.tensor([-100.0, 0.0, 0.5, 100.0]), 3.0)
    tensor([-3.0000,  0.0000,  0.4954,  3.0000])
    """
    return torch.tanh(raw * (1.0 / abs(bound))) * bound


def _as_slice(index: Tensor) -> slice | None:
    """The slice equal to a sorted index tensor, if it is a contiguous range."""
    if len(index) and bool((index.diff() == 1).all()):
        return slice(int(index[0]), int(index[-1]) + 1)
    return None


class _Coupling(Bijection):
    out_mult = 1

    def __init__(self, mask: Tensor, net: nn.Module | None = None,
                 hidden: Sequence[int] | int = (64, 64), context_dim: int = 0,
                 channels: int | None = None):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        self.context_dim = context_dim
        if mask.dim() == 1:
            self.event_dims, self.dim = 1, mask.numel()
            idx_a, idx_b = mask.nonzero().squeeze(-1), (~mask).nonzero().squeeze(-1)
            if len(idx_a) == 0 or len(idx_b) == 0:
                raise ValueError("a coupling mask must keep some features and transform others")
            self.register_buffer("idx_a", idx_a, persistent=False)
            self.register_buffer("idx_b", idx_b, persistent=False)
            self._slice_a, self._slice_b = _as_slice(idx_a), _as_slice(idx_b)
            self._a_first = bool(idx_a[0] < idx_b[0])
            self.net = net if net is not None else MLP(
                len(idx_a) + context_dim, self.out_mult * len(idx_b), hidden)
        elif mask.dim() == 3:
            self.event_dims = 3
            self.dim = channels if channels is not None else mask.shape[0]
            if mask.shape[0] not in (1, self.dim):
                raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit {self.dim} channels")
            self.register_buffer("mask", mask.float(), persistent=False)
            self.register_buffer("inv_mask", (~mask).float(), persistent=False)
            width = hidden if isinstance(hidden, int) else hidden[0]
            self.net = net if net is not None else ConvNet(
                self.dim + context_dim, self.out_mult * self.dim, width)
        else:
            raise ValueError("mask must be 1-D (vectors) or 3-D [C, H, W] (images)")

    # -- vectors -----------------------------------------------------------------------
    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._slice_a is not None and self._slice_b is not None:
            return x[..., self._slice_a], x[..., self._slice_b]
        return x.index_select(-1, self.idx_a), x.index_select(-1, self.idx_b)

    def _merge(self, x: Tensor, x_a: Tensor, y_b: Tensor) -> Tensor:
        if self._slice_a is not None and self._slice_b is not None:
            return torch.cat([x_a, y_b] if self._a_first else [y_b, x_a], dim=-1)
        return x.index_copy(-1, self.idx_b, y_b)

    def _conditioner(self, x_a: Tensor, context: Tensor | None) -> Tensor:
        if context is not None:
            if self.event_dims == 1:
                x_a = torch.cat([x_a, context], dim=-1)
            else:
                b, _, h, w = x_a.shape
                x_a = torch.cat([x_a, context[:, :, None, None].expand(b, -1, h, w)], dim=1)
        return self.net(x_a)

    def _couple(self, x: Tensor, context: Tensor | None, inverse: bool):
        self._check_x(x)
        context = self._check_context(x, context)
        if self.event_dims == 1:
            x_a, x_b = self._split(x)
            y_b, log_det = self._law(x_b, self._conditioner(x_a, context), inverse, -1)
            return self._merge(x, x_a, y_b), log_det
        out = self._conditioner(x * self.mask, context)
        return self._law(x, out, inverse, 1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, inverse=False)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(y, context, inverse=True)


class AdditiveCoupling(_Coupling):
    """NICE's additive coupling ``y_B = x_B + m(x_A)``: volume preserving.

    Args: ``mask`` (bool, ``True`` = kept), ``net`` (default: an MLP or ConvNet with a
    zero last layer), ``hidden``, ``context_dim``, ``channels`` (images).
    Parameters are the layer's own; a context vector, if any, is passed per call.

    >>> from nfcourse.flows.masks import alternating_mask
    >>> layer = AdditiveCoupling(alternating_mask(4), hidden=(16,))
    >>> x = torch.randn(3, 4)
    >>> y, log_det = layer(x)
    >>> torch.equal(log_det, torch.zeros(3)), torch.allclose(layer.inverse(y)[0], x)
    (True, True)
    """

    out_mult = 1

    def _law(self, x: Tensor, out: Tensor, inverse: bool, axis: int):
        if self.event_dims == 3:
            out = out * self.inv_mask
        y = x - out if inverse else x + out
        batch = x.shape[:-1] if axis == -1 else x.shape[:1]
        return y, x.new_zeros(batch)


class AffineCoupling(_Coupling):
    """RealNVP's affine coupling ``y_B = x_B * exp(s) + t`` with a bounded log-scale.

    Args: ``mask`` (bool, ``True`` = kept), ``net`` (its output is split into ``s, t``;
    default: an MLP or ConvNet with a zero last layer, i.e. the layer starts as the
    identity), ``hidden``,
    ``context_dim``, ``channels`` (images), ``log_scale_bound`` (``β``, default 3).
    Parameters are the layer's own; a context vector, if any, is passed per call.

    >>> from nfcourse.flows.masks import half_mask
    >>> layer = AffineCoupling(half_mask(4), hidden=(16,), context_dim=2)
    >>> x, c = torch.randn(3, 4), torch.randn(3, 2)
    >>> y, log_det = layer(x, context=c)
    >>> torch.allclose(layer.inverse(y, context=c)[0], x)
    True
    """

    out_mult = 2

    def __init__(self, mask: Tensor, net: nn.Module | None = None,
                 hidden: Sequence[int] | int = (64, 64), context_dim: int = 0,
                 channels: int | None = None, log_scale_bound: float = 3.0):
        super().__init__(mask, net, hidden, context_dim, channels)
        self.log_scale_bound = log_scale_bound

    def _law(self, x: Tensor, out: Tensor, inverse: bool, axis: int):
        s, t = split_output(out, 2, dim=axis)
        # inverse: x_B = (y_B - t) e^{-s}; the sign goes into the bound (one pass fewer)
        s = soft_bound(s, -self.log_scale_bound if inverse else self.log_scale_bound)
        if self.event_dims == 3:
            s, t = s * self.inv_mask, t * self.inv_mask
            log_det = s.sum((1, 2, 3))
        else:
            log_det = s.sum(-1)
        if inverse:
            return (x - t) * torch.exp(s), log_det
        return torch.addcmul(t, x, torch.exp(s)), log_det


def masked_affine_coupling(x: Tensor, mask: Tensor, net, inverse: bool = False
                           ) -> tuple[Tensor, Tensor]:
    r"""RealNVP's masked affine coupling as one function (Exercise 5.4's reference answer).

    With a 0/1 ``mask`` :math:`b` (1 = kept) and ``(s, t) = net(b * x)``, each ``[B, D]``:

    .. math::

        y = b \odot x + (1 - b) \odot \big(x \odot e^{s} + t\big), \qquad
        \log|\det J| = \sum_i (1 - b_i)\, s_i ,

    and the inverse :math:`x = b \odot y + (1 - b) \odot (y - t) \odot e^{-s}` with the
    negated log-det (``net`` sees :math:`b \odot y = b \odot x`, so both directions use the
    same s, t). Returns ``(output, log_det)``, ``log_det`` of shape ``[B]``.

    >>> mask = torch.tensor([1.0, 0.0])
    >>> net = lambda v: (v.flip(-1), torch.ones_like(v))      # s = x_kept, t = 1
    >>> y, ld = masked_affine_coupling(torch.tensor([[2.0, 3.0]]), mask, net)
    >>> y, ld                                                   # 3 e^2 + 1, log-det 2
    (tensor([[ 2.0000, 23.1672]]), tensor([2.]))
    >>> x_back, ld_inv = masked_affine_coupling(y, mask, net, inverse=True)
    >>> torch.allclose(x_back, torch.tensor([[2.0, 3.0]])), ld_inv
    (True, tensor([-2.]))
    """
    s, t = net(mask * x)
    keep, change = mask, 1 - mask
    if inverse:
        return keep * x + change * (x - t) * torch.exp(-s), -(change * s).sum(-1)
    return keep * x + change * (x * torch.exp(s) + t), (change * s).sum(-1)


class MaskedCoupling(Bijection):
    """A vector coupling layer that runs a coupling *law* given as a function
    ``law(x, mask, net, inverse) -> (y, log_det)``, e.g. :func:`masked_affine_coupling` or
    a student's version of it, with its own ReLU MLP ``net(b ⊙ x) -> (s, t)``.

    The MLP's raw log-scale goes through the same soft bound as :class:`AffineCoupling`
    (``log_scale_bound``) before the law sees it, and its last layer starts at zero, so a
    new layer is the identity.

    >>> layer = MaskedCoupling(half_mask(4), hidden=(16,))
    >>> x = torch.randn(3, 4)
    >>> torch.allclose(layer.inverse(layer(x)[0])[0], x)
    True
    """

    def __init__(self, mask: Tensor, hidden: Sequence[int] = (64, 64), law=None,
                 log_scale_bound: float = 3.0):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.dim() != 1:
            raise ValueError("MaskedCoupling takes a 1-D mask (vectors)")
        self.dim = mask.numel()
        self.register_buffer("mask", mask.float(), persistent=False)
        self.mlp = MLP(self.dim, 2 * self.dim, hidden)
        self.law = law if law is not None else masked_affine_coupling
        self.log_scale_bound = log_scale_bound

    def net(self, x_kept: Tensor) -> tuple[Tensor, Tensor]:
        s, t = split_output(self.mlp(x_kept), 2)
        return soft_bound(s, self.log_scale_bound), t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        return self.law(x, self.mask.to(x.dtype), self.net, False)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        return self.law(y, self.mask.to(y.dtype), self.net, True)
