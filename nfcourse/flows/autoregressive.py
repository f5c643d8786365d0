r"""Affine autoregressive flows: MAF (Papamakarios et al. 2017) and IAF (Kingma et al. 2016).

Both apply, feature by feature, the affine map

.. math::

    y_i = x_i \exp(s_i) + \mu_i, \qquad \log\left|\det \frac{\partial y}{\partial x}\right|
    = \sum_i s_i ,

with :math:`(s_i, \mu_i)` produced by a :class:`~nfcourse.flows.MADE` from the variables
that precede :math:`i` (and a context :math:`c`). They differ in *which side* the MADE reads:

* **MAF** (density estimation): :math:`(s, \mu) = \text{MADE}(y_{<i})`, the *output* side.
  Scoring data is one pass, :math:`x = (y - \mu(y)) \odot e^{-s(y)}` (our ``inverse``);
  sampling (``forward``) is sequential, :math:`D` passes.
* **IAF** (variational inference): :math:`(s, \mu) = \text{MADE}(x_{<i})`, the *input*
  side. Sampling and its log-det are one pass (``forward``), which is all the VI path
  needs; ``inverse`` is sequential, :math:`D` passes.

The Jacobian is triangular in the MADE's order, hence the log-det. The log-scale is
bounded, :math:`s = \beta \tanh(\tilde s / \beta)` with :math:`\tilde s` the MADE's raw
output (:func:`~nfcourse.flows.coupling.soft_bound`, as in the coupling layers; β stays a
Python float, so the formula holds to rounding in float64 too). (Kingma et al. use the gated form
:math:`y = \sigma x + (1 - \sigma)\mu`, :math:`\sigma = \text{sigmoid}(\tilde s)`; it is the
same affine family with :math:`s \le 0`.) ``reverse=True`` reverses the order, so
stacking layers that alternate it needs no permutation layers.

**Amortization** (IAF in a VAE): the encoder's hidden vector :math:`h` is the context.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from nfcourse.flows.base import Bijection
from nfcourse.flows.coupling import soft_bound
from nfcourse.flows.made import MADE

__all__ = ["AffineAutoregressive", "MAF", "IAF"]


class AffineAutoregressive(Bijection):
    """Shared code of :class:`MAF` and :class:`IAF` (``reads`` = ``"output"`` or ``"input"``).

    Parameters are the layer's own (a MADE with a zero-initialised last layer, so the layer
    starts as the identity); a context vector, if any, is passed per call.
    """

    reads = "output"

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), context_dim: int = 0,
                 reverse: bool = False, order: Sequence[int] | None = None,
                 log_scale_bound: float = 3.0):
        super().__init__()
        self.dim, self.context_dim, self.log_scale_bound = dim, context_dim, log_scale_bound
        if order is None:
            order = torch.arange(dim).flip(0) if reverse else torch.arange(dim)
        self.made = MADE(dim, hidden, out_mult=2, context_dim=context_dim, order=order,
                         zero_last=True)

    def _scale_shift(self, v: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        s_raw, mu = self.made(v, context)
        return soft_bound(s_raw, self.log_scale_bound), mu        # s = β tanh(s̃/β)

    def _one_pass(self, x: Tensor, context: Tensor | None, direction: str):
        """x -> y (reads input) or y -> x (reads output): one MADE evaluation."""
        s_raw, mu = self.made(x, context)
        if direction == "forward":      # y = x e^s + mu, MADE(x)
            s = soft_bound(s_raw, self.log_scale_bound)
            return torch.addcmul(mu, x, torch.exp(s)), s.sum(-1)
        # x = (y - mu) e^{-s}, MADE(y); the sign folded into the bound saves an op
        neg_s = soft_bound(s_raw, -self.log_scale_bound)
        return (x - mu) * torch.exp(neg_s), neg_s.sum(-1)

    def _sequential(self, v: Tensor, context: Tensor | None, direction: str):
        """Solve for the side the MADE reads, one feature per pass (D passes).

        After pass k every feature of rank < k is exact, because it depends only on
        features of lower rank."""
        out = torch.zeros_like(v)
        for _ in range(self.dim):
            # (s, mu) of the last pass read D-1 exact ranks: they are final.
            s, mu = self._scale_shift(out, context)
            if direction == "forward":       # MAF sampling: y = x e^{s(y)} + mu(y)
                out = torch.addcmul(mu, v, torch.exp(s))
            else:                            # IAF inverse: x = (y - mu(x)) e^{-s(x)}
                out = (v - mu) * torch.exp(-s)
        return out, (s.sum(-1) if direction == "forward" else -s.sum(-1))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        context = self._check_context(x, context)
        if self.reads == "input":
            return self._one_pass(x, context, "forward")
        return self._sequential(x, context, "forward")

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        context = self._check_context(y, context)
        if self.reads == "output":
            return self._one_pass(y, context, "inverse")
        return self._sequential(y, context, "inverse")


class MAF(AffineAutoregressive):
    """Masked autoregressive flow layer: one-pass ``inverse`` (scoring data), sequential
    ``forward`` (sampling).

    >>> layer = MAF(3, hidden=(16,))
    >>> y = torch.randn(4, 3)
    >>> x, log_det_inv = layer.inverse(y)            # density direction: one pass
    >>> torch.allclose(layer(x)[0], y, atol=1e-5)    # sampling: D passes
    True
    """

    reads = "output"


class IAF(AffineAutoregressive):
    """Inverse autoregressive flow layer: one-pass ``forward`` (sampling with log-det,
    the VI path), sequential ``inverse``. Amortize it with ``context_dim`` (the encoder's
    hidden vector ``h``).

    >>> layer = IAF(3, hidden=(16,), context_dim=5)
    >>> z, h = torch.randn(4, 3), torch.randn(4, 5)
    >>> y, log_det = layer(z, context=h)
    >>> torch.allclose(layer.inverse(y, context=h)[0], z, atol=1e-5)
    True
    """

    reads = "input"
