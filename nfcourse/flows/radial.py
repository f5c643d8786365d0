r"""Radial flow (Rezende & Mohamed 2015, §4.1 and Appendix A.2).

.. math::

    f(z) = z + \beta\, h(\alpha, r)\,(z - z_0), \qquad
    r = \lVert z - z_0 \rVert, \quad h(\alpha, r) = \frac{1}{\alpha + r},

    \log\left|\det \frac{\partial f}{\partial z}\right|
    = (D - 1)\log\big(1 + \beta h\big) + \log\big(1 + \beta h + \beta h'(\alpha, r)\, r\big),
    \qquad h' = -\frac{1}{(\alpha + r)^2}.

**Invertibility** (Appendix A.2): :math:`f` is invertible iff :math:`\beta \ge -\alpha`. From
raw parameters we take :math:`\alpha = \operatorname{softplus}(\alpha_{raw}) > 0` and

.. math::

    \hat\beta = -\alpha + \operatorname{softplus}(\beta_{raw}) .

With :math:`\sigma = \operatorname{softplus}(\beta_{raw})` the two factors of the log-det
become sums of positive terms (no cancellation for adversarial raw values):

.. math::

    1 + \hat\beta h = \frac{r + \sigma}{\alpha + r}, \qquad
    1 + \hat\beta h + \hat\beta h' r = \frac{r(r + 2\alpha) + \alpha\sigma}{(\alpha + r)^2}.

**Inverse.** :math:`y - z_0 = (z - z_0)\,\frac{r + \sigma}{\alpha + r}`, so
:math:`\rho = \lVert y - z_0 \rVert` and :math:`r` satisfy the monotone scalar equation
:math:`\rho = r\,\frac{r + \sigma}{\alpha + r}`, i.e. the quadratic

.. math::

    r^2 + (\sigma - \rho)\, r - \alpha\rho = 0,

with exactly one non-negative root. We take it in closed form (in the cancellation-free
variant of the quadratic formula), so the inverse is exact up to rounding, and then
:math:`z = z_0 + (y - z_0)\,\frac{\alpha + r}{r + \sigma}`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfcourse.flows.base import Bijection

__all__ = ["Radial"]


class Radial(Bijection):
    """Radial layer contracting/expanding around a reference point ``z0``.

    Parameters: own (``z0``: ``[D]``, raw ``alpha``, raw ``beta``: scalars), or, with
    ``amortized=True``, per sample from an encoder: ``params = [z0, alpha_raw, beta_raw]``
    of shape ``[..., D + 2]``. The raw parameters are those of pyro's ``Radial``.

    ``inverse`` is in closed form (the scalar equation for ``r`` is a quadratic).

    >>> layer = Radial(2)
    >>> z = torch.randn(3, 2)
    >>> y, log_det = layer(z)
    >>> z_back, log_det_inv = layer.inverse(y)
    >>> torch.allclose(z_back, z, atol=1e-5), torch.allclose(log_det_inv, -log_det, atol=1e-5)
    (True, True)
    """

    def __init__(self, dim: int, amortized: bool = False):
        super().__init__()
        self.dim = dim
        self.amortized = amortized
        if amortized:
            self.param_dim = dim + 2
        else:
            bound = 1 / math.sqrt(dim)
            self.z0 = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
            self.alpha_raw = nn.Parameter(torch.empty(()).uniform_(-bound, bound))
            self.beta_raw = nn.Parameter(torch.empty(()).uniform_(-bound, bound))

    def _parameters_for(self, params: Tensor | None):
        """Return ``(z0, alpha, sigma)`` with ``beta_hat = sigma - alpha``."""
        z0, alpha_raw, beta_raw = self._own_or_amortized(
            params, lambda: (self.z0, self.alpha_raw[None], self.beta_raw[None]),
            [self.dim, 1, 1])
        return z0, F.softplus(alpha_raw.squeeze(-1)), F.softplus(beta_raw.squeeze(-1))

    def parameters_by_name(self, params: Tensor | None = None,
                           context: Tensor | None = None) -> list[dict[str, Tensor]]:
        """``z0`` (``[..., D]``), ``alpha`` and the invertible ``beta_hat`` = −α + softplus(β)
        (``[...]``)."""
        z0, alpha, sigma = self._parameters_for(params)
        return [{"z0": z0, "alpha": alpha, "beta_hat": sigma - alpha}]

    def _log_det(self, r: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        return ((self.dim - 1) * torch.log(r + sigma)
                + torch.log(r * (r + 2 * alpha) + alpha * sigma)
                - (self.dim + 1) * torch.log(alpha + r))

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_x(z)
        z0, alpha, sigma = self._parameters_for(params)
        diff = z - z0
        r = torch.linalg.vector_norm(diff, dim=-1)
        factor = (r + sigma) / (alpha + r)              # 1 + beta_hat * h(alpha, r)
        y = torch.addcmul(z0, diff, factor.unsqueeze(-1))
        return y, self._log_det(r, alpha, sigma)

    def inverse(self, y: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        z0, alpha, sigma = self._parameters_for(params)
        diff = y - z0
        rho = torch.linalg.vector_norm(diff, dim=-1)
        p = sigma - rho
        root = torch.sqrt(p * p + 4 * alpha * rho)
        # Non-negative root of r² + p r - αρ = 0 without cancellation in either sign of p.
        r = torch.where(p > 0, 2 * alpha * rho / (p + root).clamp_min(torch.finfo(y.dtype).tiny),
                        0.5 * (root - p))
        z = torch.addcmul(z0, diff, ((alpha + r) / (r + sigma)).unsqueeze(-1))
        return z, -self._log_det(r, alpha, sigma)
