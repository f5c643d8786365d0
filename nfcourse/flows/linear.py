r"""Invertible linear maps: the LU-parameterised linear layer and Glow's 1x1 convolution.

**LU parameterisation** (Glow §3.2). Start from a random rotation
:math:`W_0 = P L_0 U_0` (its LU decomposition with pivoting), then learn

.. math::

    W = P L \big(U + \operatorname{diag}(\operatorname{sign}(u_0)\, e^{\ell})\big),

with :math:`P` a fixed permutation, :math:`L` unit lower triangular and :math:`U` strictly
upper triangular, both learned, and the log-magnitudes :math:`\ell` of the diagonal. Then

.. math::

    \log|\det W| = \textstyle\sum_i \ell_i ,

in :math:`O(D)` instead of :math:`O(D^3)`, and :math:`W` is invertible for any parameters.

* :class:`LULinear` on vectors: :math:`y = W x + c`, :math:`\log|\det J| = \sum_i \ell_i`;
  inverse by two triangular solves.
* :class:`InvConv1x1` on images ``[B, C, H, W]``: the same :math:`C\times C` matrix at every
  pixel, :math:`\log|\det J| = H W \log|\det W|`. With ``lu=False``, :math:`W` is a free
  matrix (Glow's plain version) and :math:`\log|\det W|` comes from ``slogdet``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfcourse.flows.base import Bijection

__all__ = ["LULinear", "InvConv1x1"]


class _LUWeight(nn.Module):
    """``W = P L (U + diag(sign * exp(log_diag)))`` and its log-determinant."""

    def __init__(self, dim: int):
        super().__init__()
        w0, _ = torch.linalg.qr(torch.randn(dim, dim))
        p, lower, upper = torch.linalg.lu(w0)
        diag = upper.diagonal()
        self.register_buffer("p", p)
        self.register_buffer("sign", torch.sign(diag))
        self.register_buffer("lower_mask", torch.tril(torch.ones(dim, dim), -1), persistent=False)
        self.register_buffer("eye", torch.eye(dim), persistent=False)
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_diag = nn.Parameter(torch.log(diag.abs()))

    def factors(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.mT + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> Tensor:
        lower, upper = self.factors()
        return self.p @ lower @ upper

    def log_abs_det(self) -> Tensor:
        return self.log_diag.sum()


class LULinear(Bijection):
    """``y = W x + bias`` with ``W = PLU`` (own parameters).

    >>> layer = LULinear(3)
    >>> x = torch.randn(4, 3)
    >>> y, log_det = layer(x)
    >>> torch.allclose(layer.inverse(y)[0], x, atol=1e-5)
    True
    """

    def __init__(self, dim: int, bias: bool = True):
        super().__init__()
        self.dim = dim
        self.lu = _LUWeight(dim)
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        y = F.linear(x, self.lu.weight(), self.bias)
        return y, self.lu.log_abs_det().expand(x.shape[:-1])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        lower, upper = self.lu.factors()
        b = y if self.bias is None else y - self.bias
        flat = b.reshape(-1, self.dim) @ self.lu.p          # rows: (Pᵀ b)ᵀ
        # x W^T = b  <=>  x Uᵀ Lᵀ = b P: two triangular solves from the right.
        flat = torch.linalg.solve_triangular(lower.mT, flat, upper=True, left=False,
                                             unitriangular=True)
        flat = torch.linalg.solve_triangular(upper.mT, flat, upper=False, left=False)
        return flat.reshape(y.shape), (-self.lu.log_abs_det()).expand(y.shape[:-1])


class InvConv1x1(Bijection):
    """Glow's invertible 1x1 convolution over the channels of ``[B, C, H, W]`` images.

    >>> layer = InvConv1x1(4)
    >>> x = torch.randn(2, 4, 3, 3)
    >>> y, log_det = layer(x)
    >>> torch.allclose(layer.inverse(y)[0], x, atol=1e-5)
    True
    """

    event_dims = 3

    def __init__(self, channels: int, lu: bool = True):
        super().__init__()
        self.dim = channels
        if lu:
            self.lu = _LUWeight(channels)
        else:
            self.lu = None
            self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0])

    def _weight_and_log_det(self) -> tuple[Tensor, Tensor]:
        if self.lu is not None:
            return self.lu.weight(), self.lu.log_abs_det()
        return self.weight, torch.linalg.slogdet(self.weight)[1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        w, log_abs_det = self._weight_and_log_det()
        y = F.conv2d(x, w[:, :, None, None])
        return y, (log_abs_det * (x.shape[2] * x.shape[3])).expand(x.shape[:1])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        w, log_abs_det = self._weight_and_log_det()
        x = F.conv2d(y, torch.linalg.inv(w)[:, :, None, None])
        return x, (-log_abs_det * (y.shape[2] * y.shape[3])).expand(y.shape[:1])
