r"""The logit preprocessing of RealNVP (Dinh et al. 2017, §4.1), as a bijection with its
log-determinant, so that likelihoods stay in data space.

Data in :math:`(0, 1)` (e.g. dequantized pixels) are squeezed into :math:`(\alpha, 1 - \alpha)`
and mapped to the real line:

.. math::

    p = \alpha + (1 - 2\alpha)\, x, \qquad y = \operatorname{logit} p = \log p - \log(1 - p),

    \log\left|\det \frac{\partial y}{\partial x}\right|
    = \sum_i \big[\log(1 - 2\alpha) - \log p_i - \log(1 - p_i)\big],

and back, :math:`x = (\operatorname{sigmoid}(y) - \alpha) / (1 - 2\alpha)`, where
:math:`\log p = -\operatorname{softplus}(-y)` and :math:`\log(1-p) = -\operatorname{softplus}(y)`
are computed without cancellation.

Its ``forward`` is the preprocessing direction, data to logits. A density model on
:math:`(0, 1)^D` ends its sampling flow with the sigmoid, ``Inverse(Logit(D))``, so that
``FlowDistribution.log_prob(x)`` runs this layer first and the log-det of the preprocessing
is part of :math:`\log q(x)`:
:math:`\log q(x) = \log q_Y(\operatorname{logit} p) + \log|\det \partial y / \partial x|`.

Domains: ``forward`` needs :math:`0 < p < 1`, i.e.
:math:`-\alpha/(1-2\alpha) < x < (1-\alpha)/(1-2\alpha)`, an interval a little wider than
:math:`(0, 1)` (exactly :math:`(0, 1)` for :math:`\alpha = 0`), which is also the range of
``inverse``; outside it the logit is NaN or infinite, so ``forward`` raises a ``ValueError``
instead. ``inverse`` takes any real :math:`y`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nfcourse.flows.base import Bijection
from nfcourse.utils import values_checkable

__all__ = ["Logit"]


class Logit(Bijection):
    """``y = logit(α + (1 − 2α) x)`` for ``x`` in (0, 1); no parameters.

    ``event_dims=1`` for vectors ``[..., dim]``, ``3`` for images ``[B, dim, H, W]``.
    ``alpha`` (default 0.05, RealNVP's) keeps the logits finite at 0 and 1.

    >>> import torch
    >>> layer = Logit(2)
    >>> x = torch.tensor([[0.5, 0.9]])
    >>> y, log_det = layer(x)
    >>> x_back, log_det_inv = layer.inverse(y)
    >>> torch.allclose(x_back, x), torch.allclose(log_det_inv, -log_det)
    (True, True)
    """

    def __init__(self, dim: int, alpha: float = 0.05, event_dims: int = 1):
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha={alpha!r} must be in [0, 0.5), e.g. 0.05 (RealNVP) or 1e-6")
        if event_dims not in (1, 3):
            raise ValueError("event_dims must be 1 (vectors) or 3 (images)")
        self.dim, self.alpha, self.event_dims = dim, float(alpha), event_dims

    def _sum(self, v: Tensor) -> Tensor:
        return v.sum(-1) if self.event_dims == 1 else v.sum((1, 2, 3))

    def _log_det(self, y: Tensor) -> Tensor:
        # log(1 − 2α) − log p − log(1 − p), with log p = −softplus(−y), log(1−p) = −softplus(y)
        return self._sum(F.softplus(-y) + F.softplus(y) + math.log1p(-2 * self.alpha))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        p = self.alpha + (1 - 2 * self.alpha) * x
        if values_checkable(p) and not bool(((p > 0) & (p < 1)).all()):
            self._out_of_domain(x)
        y = p.log() - (-p).log1p()
        return y, self._log_det(y)

    def _out_of_domain(self, x: Tensor) -> None:
        """Raise the error for data whose logit would be NaN or infinite."""
        a = self.alpha
        low, high = -a / (1 - 2 * a), (1 - a) / (1 - 2 * a)
        domain = ("(0, 1)" if a == 0 else
                  f"({low:.4g}, {high:.4g}), where alpha + (1 - 2 alpha) x is in (0, 1)")
        finite = x[torch.isfinite(x)]
        got = (f"values in [{finite.min().item():g}, {finite.max().item():g}]"
               if finite.numel() else "no finite values")
        if finite.numel() < x.numel():
            got += " and NaN or inf"
        raise ValueError(
            f"Logit(alpha={a:g}).forward maps data in (0, 1) to logits; it takes x in "
            f"{domain}, and got {got}. Rescale the data into (0, 1) first, e.g. integer "
            f"pixel levels with nfcourse.objectives.dequantize(x, levels); if x is on the "
            f"real line already (noise, logits), you want the other direction, the sigmoid "
            f"Inverse(Logit(dim)).")

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        x = (y.sigmoid() - self.alpha) / (1 - 2 * self.alpha)
        return x, -self._log_det(y)
