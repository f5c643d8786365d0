r"""Coupling masks (Dinh et al., NICE 2015 and RealNVP 2017).

A mask :math:`b \in \{0, 1\}^D` splits the input into the part that is kept,
:math:`x_A = \{x_i : b_i = 1\}`, and the part that is transformed conditioned on it,
:math:`x_B = \{x_i : b_i = 0\}`. Here a mask is a ``bool`` tensor, ``True`` on
:math:`A`. Consecutive coupling layers use complementary masks (``~mask``) so that every
coordinate gets transformed.

* vectors: :func:`half_mask` (first/second half) and :func:`alternating_mask` (even/odd);
* images ``[C, H, W]``: :func:`checkerboard_mask` (shape ``[1, H, W]``, the spatial
  pattern of RealNVP) and :func:`channel_mask` (shape ``[C, 1, 1]``, used after a
  :class:`~nfcourse.flows.Squeeze`).

>>> alternating_mask(4)
tensor([ True, False,  True, False])
>>> checkerboard_mask(2, 2).int()
tensor([[[1, 0],
         [0, 1]]], dtype=torch.int32)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["half_mask", "alternating_mask", "checkerboard_mask", "channel_mask"]


def half_mask(dim: int, first: bool = True) -> Tensor:
    """``True`` on the first ``dim // 2`` features (or on the rest if ``first=False``).

    >>> half_mask(5), half_mask(5, first=False)
    (tensor([ True,  True, False, False, False]), tensor([False, False,  True,  True,  True]))
    """
    mask = torch.arange(dim) < dim // 2
    return mask if first else ~mask


def alternating_mask(dim: int, even: bool = True) -> Tensor:
    """``True`` on even (or odd) features."""
    mask = torch.arange(dim) % 2 == 0
    return mask if even else ~mask


def checkerboard_mask(height: int, width: int, even: bool = True) -> Tensor:
    """``True`` where ``i + j`` is even (or odd); shape ``[1, H, W]``."""
    i = torch.arange(height).unsqueeze(1)
    j = torch.arange(width).unsqueeze(0)
    mask = (i + j) % 2 == 0
    return (mask if even else ~mask).unsqueeze(0)


def channel_mask(channels: int, first: bool = True) -> Tensor:
    """``True`` on the first ``channels // 2`` channels (or the rest); shape ``[C, 1, 1]``."""
    return half_mask(channels, first).view(channels, 1, 1)
