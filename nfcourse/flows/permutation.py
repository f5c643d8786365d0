r"""Permutation layers (RealNVP §3.5, Glow §3.2, MAF §3.1).

A coupling or autoregressive layer leaves some coordinates untouched (or conditions in a
fixed order); permuting between layers lets every coordinate be transformed and
conditioned on every other. A permutation matrix :math:`P` is orthogonal with
:math:`|\det P| = 1`:

.. math::

    y = P x, \qquad \log|\det P| = 0, \qquad x = P^\top y .
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfcourse.flows.base import Bijection

__all__ = ["ReversePermutation", "RandomPermutation"]


class ReversePermutation(Bijection):
    """Reverse the order of the features: ``y_i = x_{D-1-i}``.

    >>> ReversePermutation(3)(torch.tensor([[1., 2., 3.]]))[0]
    tensor([[3., 2., 1.]])
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        return x.flip(-1), x.new_zeros(x.shape[:-1])

    inverse = forward


class RandomPermutation(Bijection):
    """A fixed random permutation, drawn once (from ``generator`` if given) and kept in
    the ``state_dict``, so a reloaded model permutes the same way.

    >>> layer = RandomPermutation(5, generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(2, 5)
    >>> torch.equal(layer.inverse(layer(x)[0])[0], x)
    True
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.dim = dim
        perm = torch.randperm(dim, generator=generator)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        return x.index_select(-1, self.perm), x.new_zeros(x.shape[:-1])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        return y.index_select(-1, self.inv_perm), y.new_zeros(y.shape[:-1])
