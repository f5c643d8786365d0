"""Two-dimensional toy data sets: the pictures on which a flow's fit can be seen at a glance.

Every set lies roughly inside the square [-4, 4]^2 (the box of the energies in
:mod:`nfcourse.targets`), so one plotting range serves all. With ε ~ N(0, I) noise:

- ``two_moons``: two interleaved half circles, (cos t, sin t) and (1 - cos t, 1/2 - sin t)
  with t ~ U[0, π], each moon with probability 1/2, plus 0.1 ε, then centred and scaled by
  2 (x in about [-3, 3], y in about [-1.5, 1.5]).
- ``rings``: four concentric circles of radii 0.75, 1.5, 2.25, 3 (each with probability
  1/4, uniform angle), plus 0.08 ε.
- ``gaussian_mixture``: eight Gaussians of standard deviation 0.25, centred on a circle of
  radius 2.5 at angles 2πk/8, equal weights.
- ``checkerboard``: uniform on the 8 "black" squares of side 2 of a 4 x 4 board on
  [-4, 4]^2: those with floor(x/2) + floor(y/2) even.
- ``spirals``: two interleaved Archimedean spirals ±(t/3)(-cos t, sin t) with
  t = 3π sqrt(u), u ~ U[0, 1] (uniform along the arm), plus 0.1 ε.
- ``pinwheel``: five curved arms; a point of arm k is 2 R(2πk/5 + exp(f1)/4) f with
  f = (1 + 0.3 ε1, 0.1 ε2) and R(φ) the rotation by φ (the arms curl outwards).
- ``swiss_roll``: (t cos t, t sin t)/5 with t ~ U[1.5π, 4.5π], plus 0.1 ε.

Samples are drawn with ``torch`` on the generator's device (the CPU without one) in float64
and then moved, so a seeded generator gives the same points whatever ``device`` and
``dtype`` ask for.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Sampler = Callable[[int, "torch.Generator | None"], torch.Tensor]


def _rand(n: int, g: torch.Generator | None) -> torch.Tensor:
    """n draws from U[0, 1), float64, on the generator's device."""
    return torch.rand(n, generator=g, dtype=torch.float64, device=_device_of(g))


def _randn(shape: tuple[int, ...], g: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64, device=_device_of(g))


def _randint(high: int, n: int, g: torch.Generator | None) -> torch.Tensor:
    return torch.randint(high, (n,), generator=g, device=_device_of(g))


def _device_of(g: torch.Generator | None) -> torch.device:
    return g.device if g is not None else torch.device("cpu")


def _polar(radius: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def _two_moons(n: int, g: torch.Generator | None) -> torch.Tensor:
    t = math.pi * _rand(n, g)
    upper = _rand(n, g) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    moons = torch.stack([x, y], dim=-1) + 0.1 * _randn((n, 2), g)
    return 2 * (moons - moons.new_tensor([0.5, 0.25]))


def _rings(n: int, g: torch.Generator | None) -> torch.Tensor:
    radius = 0.75 * (1 + _randint(4, n, g)).to(torch.float64)
    return _polar(radius, 2 * math.pi * _rand(n, g)) + 0.08 * _randn((n, 2), g)


def _gaussian_mixture(n: int, g: torch.Generator | None) -> torch.Tensor:
    angle = 2 * math.pi / 8 * _randint(8, n, g).to(torch.float64)
    return _polar(torch.full_like(angle, 2.5), angle) + 0.25 * _randn((n, 2), g)


def gaussian_mixture_log_prob(x: torch.Tensor) -> torch.Tensor:
    """The exact log-density of ``gaussian_mixture``: ``[..., 2] -> [...]``,
    ln (1/8) Σ_k N(x; 2.5 (cos 2πk/8, sin 2πk/8), 0.25² I). Data sets known only through
    samples give a test NLL; this one also gives KL(p ‖ q) = E_p[ln p − ln q].

    >>> x = sample_toy("gaussian_mixture", 100_000, torch.Generator().manual_seed(0))
    >>> entropy = -gaussian_mixture_log_prob(x).mean()      # ln 8 + ln(2πe 0.25²) = 2.145
    >>> round(entropy.item(), 2)
    2.14
    """
    angles = 2 * math.pi / 8 * torch.arange(8, dtype=x.dtype, device=x.device)
    centres = _polar(torch.full_like(angles, 2.5), angles)               # [8, 2]
    sq = ((x.unsqueeze(-2) - centres) ** 2).sum(-1)                      # [..., 8]
    log_components = -sq / (2 * 0.25**2) - math.log(2 * math.pi * 0.25**2)
    return torch.logsumexp(log_components, -1) - math.log(8)


def _checkerboard(n: int, g: torch.Generator | None) -> torch.Tensor:
    x = 8 * _rand(n, g) - 4
    column = torch.floor(x / 2)  # -2, -1, 0, 1
    # A row of the same parity as the column, so that column + row is even.
    row = 2 * _randint(2, n, g) - 2 + torch.remainder(column, 2)
    y = 2 * (row + _rand(n, g))
    return torch.stack([x, y], dim=-1)


def _spirals(n: int, g: torch.Generator | None) -> torch.Tensor:
    t = 3 * math.pi * torch.sqrt(_rand(n, g))  # arc length grows like t^2
    arm = torch.stack([-torch.cos(t), torch.sin(t)], dim=-1) * (t / 3).unsqueeze(-1)
    sign = torch.where(_rand(n, g) < 0.5, -1.0, 1.0).unsqueeze(-1)
    return sign * arm + 0.1 * _randn((n, 2), g)


def _pinwheel(n: int, g: torch.Generator | None) -> torch.Tensor:
    f = _randn((n, 2), g) * torch.tensor([0.3, 0.1], dtype=torch.float64, device=_device_of(g))
    f[:, 0] += 1  # radial coordinate around 1, tangential around 0
    angle = 2 * math.pi / 5 * _randint(5, n, g).to(torch.float64) + torch.exp(f[:, 0]) / 4
    cos, sin = torch.cos(angle), torch.sin(angle)
    return 2 * torch.stack([cos * f[:, 0] - sin * f[:, 1], sin * f[:, 0] + cos * f[:, 1]], -1)


def _swiss_roll(n: int, g: torch.Generator | None) -> torch.Tensor:
    t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
    return _polar(t / 5, t) + 0.1 * _randn((n, 2), g)


_SAMPLERS: dict[str, Sampler] = {
    "two_moons": _two_moons,
    "rings": _rings,
    "gaussian_mixture": _gaussian_mixture,
    "checkerboard": _checkerboard,
    "spirals": _spirals,
    "pinwheel": _pinwheel,
    "swiss_roll": _swiss_roll,
}

#: The names :func:`sample_toy` knows.
TOY_DATASETS: tuple[str, ...] = tuple(_SAMPLERS)


def sample_toy(name: str, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` points ``[n, 2]`` of the toy data set ``name`` (one of :data:`TOY_DATASETS`).

    Without ``generator`` the global torch seed decides (see ``seed_everything``).

    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_toy("two_moons", 500, generator=g)
    >>> x.shape, x.dtype
    (torch.Size([500, 2]), torch.float32)
    >>> torch.equal(x, sample_toy("two_moons", 500, generator=torch.Generator().manual_seed(0)))
    True
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {list(TOY_DATASETS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer number of points, got {n!r}")
    return _SAMPLERS[name](n, generator).to(device=device, dtype=dtype)
