"""Small conditioner networks for coupling layers.

Their last layer starts at zero, so a fresh coupling layer is the identity (Glow's
practice; it keeps deep flows stable at the start of training). Tests therefore
randomise every parameter before checking anything.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MLP", "ConvNet", "split_output"]


def split_output(out: Tensor, parts: int, dim: int = -1) -> tuple[Tensor, ...]:
    """Split a network's output into ``parts`` parameter tensors (e.g. log-scale, shift).

    Elementwise kernels on the strided pieces of a wide tensor run row by row, several
    times slower than on contiguous ones, so outputs with many rows are copied into
    contiguous pieces; for a few rows the copy costs more than it saves.

    >>> [p.shape for p in split_output(torch.zeros(3, 4), 2)]
    [torch.Size([3, 2]), torch.Size([3, 2])]
    """
    pieces = out.chunk(parts, dim=dim)
    if out.numel() // out.shape[dim] >= 2048:
        pieces = tuple(p.contiguous() for p in pieces)
    return pieces


class MLP(nn.Sequential):
    """``Linear -> ReLU -> ... -> Linear`` with a zero-initialised last layer.

    >>> MLP(3, 4, hidden=(8,))(torch.randn(2, 3)).shape
    torch.Size([2, 4])
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (64, 64),
                 activation: type[nn.Module] = nn.ReLU, zero_last: bool = True):
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                # in place after a Linear, whose backward does not need its output
                inplace = activation in (nn.ReLU, nn.LeakyReLU, nn.ELU)
                layers.append(activation(inplace=True) if inplace else activation())
            layers.append(nn.Linear(a, b))
        if zero_last:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        super().__init__(*layers)


class ConvNet(nn.Sequential):
    """``3x3 conv -> ReLU -> 1x1 conv -> ReLU -> 3x3 conv`` keeping height and width
    (the conditioner of Glow's coupling layer), last layer zero-initialised.

    >>> ConvNet(2, 4, hidden=8)(torch.randn(1, 2, 6, 6)).shape
    torch.Size([1, 4, 6, 6])
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64):
        last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            last,
        )
