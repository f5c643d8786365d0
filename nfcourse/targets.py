r"""The four 2-D unnormalised densities p(z) ∝ exp(-U(z)) of Rezende & Mohamed (2015), Table 1.

With z = (z1, z2), σ(x) = 1 / (1 + exp(-x)) and

    w1(z) = sin(2π z1 / 4)
    w2(z) = 3 exp(-½ ((z1 - 1) / 0.6)²)
    w3(z) = 3 σ((z1 - 1) / 0.3)

the energies are

    U1(z) = ½ ((‖z‖ - 2) / 0.4)²
            - ln( exp(-½ ((z1 - 2) / 0.6)²) + exp(-½ ((z1 + 2) / 0.6)²) )
    U2(z) = ½ ((z2 - w1(z)) / 0.4)²
    U3(z) = -ln( exp(-½ ((z2 - w1(z)) / 0.35)²) + exp(-½ ((z2 - w1(z) + w2(z)) / 0.35)²) )
    U4(z) = -ln( exp(-½ ((z2 - w1(z)) / 0.4)²) + exp(-½ ((z2 - w1(z) + w3(z)) / 0.35)²) )

U1 is a ring of radius 2 whose mass sits at z1 = ±2; U2 a band around the sine curve
z2 = w1(z); U3 and U4 split that band into two branches (around z1 = 1 for U3, for all
z1 > 1 for U4). Each "ln of a sum of exponentials" is computed as a ``logsumexp`` of the
exponents, so U stays finite where every exponential underflows to 0.

Only exp(-U1) has a finite integral over the whole plane: U2 to U4 depend on z1 only
through the bounded w's, so their densities do not decay along z1. They are shown, and
normalised numerically, on a box such as [-4, 4]² (:func:`grid_log_density`); note that
for them the free energy E_q[ln q(z) + U(z)] has no minimum over all q (spreading q along
z1 keeps lowering it), so a fit is judged on the box.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

Energy = Callable[[torch.Tensor], torch.Tensor]


def _coordinates(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if z.shape[-1] != 2:
        raise ValueError(
            f"the energies take points z of shape [..., 2], got shape {tuple(z.shape)}"
        )
    return z[..., 0], z[..., 1]


def _log_gauss(x: torch.Tensor, scale: float) -> torch.Tensor:
    """ln exp(-½ (x / scale)²), the exponent the formulas sum over."""
    return -0.5 * (x / scale) ** 2


def _neg_log_sum_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """-ln(exp(a) + exp(b)), stably."""
    return -torch.logaddexp(a, b)


def w1(z: torch.Tensor) -> torch.Tensor:
    """w1(z) = sin(2π z1 / 4)."""
    z1, _ = _coordinates(z)
    return torch.sin(2 * math.pi * z1 / 4)


def w2(z: torch.Tensor) -> torch.Tensor:
    """w2(z) = 3 exp(-½ ((z1 - 1) / 0.6)²)."""
    z1, _ = _coordinates(z)
    return 3 * torch.exp(_log_gauss(z1 - 1, 0.6))


def w3(z: torch.Tensor) -> torch.Tensor:
    """w3(z) = 3 σ((z1 - 1) / 0.3)."""
    z1, _ = _coordinates(z)
    return 3 * torch.sigmoid((z1 - 1) / 0.3)


def U1(z: torch.Tensor) -> torch.Tensor:
    """Ring of radius 2 with two lobes at z1 = ±2; ``z`` is ``[..., 2]``, the result ``[...]``.

    >>> U1(torch.tensor([2.0, 0.0])) < U1(torch.tensor([0.0, 2.0]))  # mass at z1 = ±2
    tensor(True)
    """
    z1, _ = _coordinates(z)
    ring = 0.5 * ((torch.linalg.vector_norm(z, dim=-1) - 2) / 0.4) ** 2
    return ring + _neg_log_sum_exp(_log_gauss(z1 - 2, 0.6), _log_gauss(z1 + 2, 0.6))


def U2(z: torch.Tensor) -> torch.Tensor:
    """Band around the curve z2 = sin(π z1 / 2), where U2 = 0.

    >>> U2(torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    tensor([0.0000, 3.1250])
    """
    _, z2 = _coordinates(z)
    return 0.5 * ((z2 - w1(z)) / 0.4) ** 2


def U3(z: torch.Tensor) -> torch.Tensor:
    """The band of U2 with a second branch z2 = w1 - w2 splitting off around z1 = 1."""
    _, z2 = _coordinates(z)
    gap = z2 - w1(z)
    return _neg_log_sum_exp(_log_gauss(gap, 0.35), _log_gauss(gap + w2(z), 0.35))


def U4(z: torch.Tensor) -> torch.Tensor:
    """The band of U2 with a second branch z2 = w1 - w3, 3 below it for z1 > 1."""
    _, z2 = _coordinates(z)
    gap = z2 - w1(z)
    return _neg_log_sum_exp(_log_gauss(gap, 0.4), _log_gauss(gap + w3(z), 0.35))


#: The energies by name, as in the paper's Table 1.
ENERGIES: dict[str, Energy] = {"U1": U1, "U2": U2, "U3": U3, "U4": U4}


def _energy(U: str | Energy) -> Energy:
    if callable(U):
        return U
    if U not in ENERGIES:
        raise ValueError(f"unknown energy {U!r}; choose one of {list(ENERGIES)}")
    return ENERGIES[U]


def log_unnormalized_density(U: str | Energy) -> Energy:
    """The function z -> -U(z) = ln p(z) + ln Z, for an energy or its name ("U1" ... "U4").

    >>> log_p = log_unnormalized_density("U2")
    >>> log_p(torch.tensor([1.0, 0.0]))
    tensor(-3.1250)
    """
    energy = _energy(U)

    def log_density(z: torch.Tensor) -> torch.Tensor:
        return -energy(z)

    return log_density


def boxed(U: str | Energy, lim: float = 4.0, wall: float = 0.05) -> Energy:
    """``U`` confined to the box [-lim, lim]² by a steep quadratic wall outside it:

        U_box(z) = U(z) + ½ Σ_i (max(0, |z_i| - lim) / wall)²,

    equal to U inside the box, so its density there is exp(-U)/Z up to the (tiny) mass in
    the wall. U2 to U4 have infinite mass over the plane; boxed, they are proper densities
    and the free energy has a minimum: the box of the paper's Fig. 3, made part of the
    target.

    >>> U = boxed("U2")
    >>> bool(U(torch.tensor([1.0, 1.0])) == U2(torch.tensor([1.0, 1.0])))   # inside: U2
    True
    >>> round(U(torch.tensor([4.5, 1.0])).item() - U2(torch.tensor([4.5, 1.0])).item())
    50
    """
    energy = _energy(U)

    def boxed_energy(z: torch.Tensor) -> torch.Tensor:
        outside = torch.relu(z.abs() - lim) / wall
        return energy(z) + 0.5 * (outside**2).sum(-1)

    boxed_energy.__name__ = f"boxed_{getattr(energy, '__name__', 'U')}"
    return boxed_energy


class GridDensity(NamedTuple):
    """-U on a grid over [-lim, lim]², ready for ``plt.contourf(x, y, density)``."""

    x: torch.Tensor  #: [n] grid points along z1
    y: torch.Tensor  #: [n] grid points along z2
    log_density: torch.Tensor  #: [n, n], log_density[i, j] = -U(x[j], y[i]) (rows follow z2)
    log_z: torch.Tensor  #: ln of the midpoint-rule integral of exp(-U) over the box, a scalar

    @property
    def density(self) -> torch.Tensor:
        """exp(-U) / Z: integrates to 1 over the box (up to the grid's accuracy)."""
        return torch.exp(self.log_density - self.log_z)


def grid_log_density(U: str | Energy, lim: float = 4.0, n: int = 200,
                     dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> GridDensity:
    """Evaluate -U at the centres of ``n`` x ``n`` cells tiling [-lim, lim]², and ln Z there.

    ``U`` is an energy or its name; ``log_z`` is the midpoint-rule estimate of
    ln ∫ exp(-U) over the box.

    >>> grid = grid_log_density("U1")
    >>> grid.log_density.shape
    torch.Size([200, 200])
    >>> round(grid.log_z.exp().item(), 3)  # ∫ exp(-U1) over [-4, 4]²
    6.537
    """
    if n < 2 or lim <= 0:
        raise ValueError(f"a grid needs n >= 2 points and lim > 0, got n={n}, lim={lim}")
    width = 2 * lim / n
    # Cell centres: the midpoint rule over n x n cells that tile the box exactly.
    x = -lim + width * (torch.arange(n, dtype=dtype, device=device) + 0.5)
    y = x.clone()
    z2, z1 = torch.meshgrid(y, x, indexing="ij")
    log_density = -_energy(U)(torch.stack([z1, z2], dim=-1))
    log_z = torch.logsumexp(log_density.flatten(), dim=0) + 2 * math.log(width)
    return GridDensity(x, y, log_density, log_z)


class GridKL(NamedTuple):
    """KL(q ‖ p) on the box, from :func:`kl_to_target`."""

    kl: float         #: KL(q_box ‖ p_box) in nats, by the midpoint rule
    mass: float       #: ∫ q over the box (1 when q lives inside it)
    log_q: torch.Tensor   #: [n, n] log q at the cell centres (rows follow z2), for plots


@torch.no_grad()
def kl_to_target(log_q: Callable[[torch.Tensor], torch.Tensor], U: str | Energy,
                 lim: float = 4.0, n: int = 200, chunk: int = 20_000) -> GridKL:
    """KL(q ‖ p) with p = exp(-U)/Z, both restricted to the box [-lim, lim]², by the midpoint
    rule on ``n`` x ``n`` cells: Z by quadrature (:func:`grid_log_density`), q from its
    log-density at the cell centres, renormalised to the box,

        KL = Σ_cells q_c (log q_c − log p_c) Δ² / M − log M,   M = Σ_cells q_c Δ².

    Halving the cells (``2n``) estimates the grid error. ``log_q`` takes points ``[m, 2]``
    (float32) and returns ``[m]``.

    >>> target = lambda z: -0.5 * (z**2).sum(-1) - math.log(2 * math.pi)  # q = p = N(0, I)
    >>> result = kl_to_target(target, lambda z: 0.5 * (z**2).sum(-1))
    >>> abs(result.kl) < 1e-6, round(result.mass, 4)
    (True, 0.9999)
    """
    grid = grid_log_density(U, lim=lim, n=n)
    z2, z1 = torch.meshgrid(grid.y, grid.x, indexing="ij")
    points = torch.stack([z1, z2], dim=-1).reshape(-1, 2).float()
    values = torch.cat([log_q(p).double() for p in points.split(chunk)]).reshape(n, n)
    cell = (2 * lim / n) ** 2
    q = values.exp()
    mass = (q.sum() * cell).item()
    log_p = grid.log_density - grid.log_z
    inside = q > 0   # 0 log 0 = 0
    kl = ((q * (values - log_p))[inside].sum() * cell).item() / mass - math.log(mass)
    return GridKL(kl, mass, values)
