"""Small networks: the MLP (coupling conditioners, VAE encoders and decoders) and the
convolutional conditioner of Glow's coupling layer.

A conditioner's last layer starts at zero, so a fresh coupling layer is the identity (Glow's
practice; it keeps deep flows stable at the start of training). Tests therefore
randomise every parameter before checking anything.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MLP", "ConvNet", "Maxout", "split_output", "ACTIVATIONS"]


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


class Maxout(nn.Module):
    r"""Maxout units (Goodfellow et al. 2013): each of the ``h`` units is the largest of
    ``pool`` linear pieces, :math:`h_j = \max_{i < p}\, a_{p j + i}` with :math:`a = W x + c`
    of width :math:`p h`. Rezende & Mohamed's MLPs have 400 such units with pool 4.

    >>> Maxout()(torch.tensor([[1.0, -2.0, 3.0, 0.0, -1.0, -5.0, -3.0, -2.0]]))
    tensor([[ 3., -1.]])
    """

    #: how many linear pieces feed one unit: the Linear before it is this much wider
    widen = 4

    def forward(self, a: Tensor) -> Tensor:
        return a.unflatten(-1, (-1, self.widen)).amax(-1)


#: Hidden-layer activations by name. "gated": h = a ⊙ σ(b) with [a, b] = W x + c (gated
#: linear units, Dauphin et al. 2017; the MLPs of Tomczak & Welling's VampPrior VAE).
#: "maxout": R&M's units, the largest of 4 linear pieces (:class:`Maxout`).
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU,
               "gated": nn.GLU, "maxout": Maxout}


class MLP(nn.Sequential):
    """``Linear -> activation`` per hidden layer, then ``Linear``: the one MLP builder of the
    package (coupling conditioners, VAE encoders and decoders). Arguments in
    :class:`torch.nn.Linear`'s order: ``in_features``, ``out_features``, then ``hidden``
    (an int or a sequence of ints).

    - ``activation``: a name of :data:`ACTIVATIONS` or a module class. ``"gated"`` makes
      each hidden layer ``Linear(in, 2h) -> GLU``: ``h`` gated units, twice the weights;
      ``"maxout"`` ``Linear(in, 4h) -> Maxout``: ``h`` units, four times the weights.
    - ``dropout > 0`` adds ``Dropout(dropout)`` after each hidden layer (training mode only).
    - ``zero_last`` starts the last layer at zero, so a coupling layer starts as the
      identity (Glow's practice); an encoder or decoder wants ``zero_last=False``.

    >>> MLP(3, 4, hidden=(8,))(torch.randn(2, 3)).shape
    torch.Size([2, 4])
    >>> MLP(784, 80, 400, activation="tanh", zero_last=False)
    MLP(
      (0): Linear(in_features=784, out_features=400, bias=True)
      (1): Tanh()
      (2): Linear(in_features=400, out_features=80, bias=True)
    )
    """

    def __init__(self, in_features: int, out_features: int,
                 hidden: int | Sequence[int] = (64, 64),
                 activation: str | type[nn.Module] = "relu", dropout: float = 0.0,
                 zero_last: bool = True):
        if isinstance(activation, str):
            if activation not in ACTIVATIONS:
                raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
            activation = ACTIVATIONS[activation]
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
        sizes = [hidden] if isinstance(hidden, int) else list(hidden)
        layers: list[nn.Module] = []
        width_in = in_features
        # GLU halves its input, maxout quarters it: the Linear before them is wider
        widen = 2 if activation is nn.GLU else getattr(activation, "widen", 1)
        for h in sizes:
            layers.append(nn.Linear(width_in, widen * h))
            # in place after a Linear, whose backward does not need its output
            inplace = activation in (nn.ReLU, nn.LeakyReLU, nn.ELU)
            layers.append(activation(inplace=True) if inplace else activation())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width_in = h
        layers.append(nn.Linear(width_in, out_features))
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
