r"""NICE's diagonal scaling layer (Dinh, Krueger & Bengio 2015, §3.3).

Coupling layers of NICE preserve volume; a final diagonal scaling lets the model give
more weight to some dimensions than to others:

.. math::

    y = x \odot \exp(s), \qquad \log\left|\det \frac{\partial y}{\partial x}\right| = \sum_i s_i,
    \qquad x = y \odot \exp(-s).

We parameterise :math:`S_{ii} = \exp(s_i)` so the scale stays positive.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfcourse.flows.base import Bijection

__all__ = ["DiagonalScaling"]


class DiagonalScaling(Bijection):
    """``y = x * exp(s)`` with own parameters ``s`` (``[D]``, initialised at 0).

    >>> layer = DiagonalScaling(3)
    >>> y, log_det = layer(torch.ones(2, 3))
    >>> log_det
    tensor([0., 0.], grad_fn=<ExpandBackward0>)
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        return y * torch.exp(-self.log_scale), (-self.log_scale.sum()).expand(y.shape[:-1])
