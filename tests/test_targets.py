"""Tests of nfcourse.targets: the energies of Rezende & Mohamed (2015), Table 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nfcourse.targets import (
    ENERGIES,
    U1,
    U2,
    U3,
    U4,
    grid_log_density,
    log_unnormalized_density,
)


# Table 1, written out directly with np.exp and np.log, as a reader would from the paper.
def _w1(z):
    return np.sin(2 * np.pi * z[:, 0] / 4)


def _w2(z):
    return 3 * np.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z):
    return 3 / (1 + np.exp(-(z[:, 0] - 1) / 0.3))


NAIVE = {
    "U1": lambda z: 0.5 * ((np.linalg.norm(z, axis=1) - 2) / 0.4) ** 2 - np.log(
        np.exp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2) + np.exp(-0.5 * ((z[:, 0] + 2) / 0.6) ** 2)),
    "U2": lambda z: 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2,
    "U3": lambda z: -np.log(np.exp(-0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2)
                            + np.exp(-0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2)),
    "U4": lambda z: -np.log(np.exp(-0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2)
                            + np.exp(-0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2)),
}


@pytest.mark.parametrize("name", list(ENERGIES))
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_matches_the_formulas(name, dtype, tol):
    z = np.random.default_rng(0).uniform(-4, 4, size=(2000, 2))
    expected = NAIVE[name](z)
    got = ENERGIES[name](torch.tensor(z, dtype=dtype))
    assert got.dtype == dtype and got.shape == (2000,)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(ENERGIES))
def test_batch_shapes_and_stability_far_away(name):
    U = ENERGIES[name]
    assert U(torch.zeros(3, 4, 2)).shape == (3, 4)
    assert U(torch.zeros(2)).shape == ()
    # Far out every exponential underflows; the naive formula gives inf, ours stays finite.
    far = torch.tensor([[0.0, 60.0], [0.0, -60.0], [60.0, 1.0]], requires_grad=True)
    energy = U(far)
    energy.sum().backward()
    assert torch.isfinite(energy).all() and torch.isfinite(far.grad).all()
    assert (energy > 100).any()


def test_wrong_shape_is_refused():
    for name, U in ENERGIES.items():
        with pytest.raises(ValueError, match=r"\[\.\.\., 2\], got shape \(5, 3\)"):
            U(torch.zeros(5, 3))


def test_u1_ring_with_two_lobes():
    z = torch.randn(500, 2, dtype=torch.float64) * 2
    mirrored = z * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(U1(z), U1(mirrored))  # symmetric under z1 -> -z1
    assert torch.allclose(U1(z), U1(-z))
    # Along the axes the energy is lowest on the circle of radius 2.
    r = torch.linspace(0.5, 4, 3501, dtype=torch.float64)
    for angle in (0, math.pi / 2, math.pi, 3 * math.pi / 2):
        points = torch.stack([r * math.cos(angle), r * math.sin(angle)], dim=-1)
        assert r[U1(points).argmin()].item() == pytest.approx(2.0, abs=2e-3)
    # The mass sits at z1 = ±2: U1(±2, 0) ≈ 0, U1(0, ±2) = (2/0.6)²/2 - ln 2.
    lobes, gaps = U1(torch.tensor([[2.0, 0], [-2, 0]])), U1(torch.tensor([[0.0, 2], [0, -2]]))
    assert lobes.abs().max() < 1e-4
    assert gaps.tolist() == pytest.approx([0.5 * (2 / 0.6) ** 2 - math.log(2)] * 2)


def test_u2_vanishes_on_the_sine_curve():
    z1 = torch.linspace(-4, 4, 101, dtype=torch.float64)
    curve = torch.stack([z1, torch.sin(math.pi * z1 / 2)], dim=-1)
    assert U2(curve).abs().max() < 1e-12
    off = curve + torch.tensor([0.0, 0.4], dtype=torch.float64)
    assert torch.allclose(U2(off), torch.full_like(z1, 0.5))  # ½ (0.4 / 0.4)²


def _local_minima(U, z1: float) -> list[float]:
    """The z2 where U(z1, .) has a local minimum, on a fine grid over [-6, 6]."""
    z2 = torch.linspace(-6, 6, 12001, dtype=torch.float64)
    u = U(torch.stack([torch.full_like(z2, z1), z2], dim=-1))
    inner = (u[1:-1] < u[:-2]) & (u[1:-1] < u[2:])
    return z2[1:-1][inner].tolist()


def test_u3_splits_around_z1_equal_1():
    # Far from z1 = 1, w2 ≈ 0: the branches coincide at z2 = sin(π z1 / 2), U3 = -ln 2.
    assert _local_minima(U3, -3.0) == pytest.approx([1.0], abs=2e-3)
    assert U3(torch.tensor([-3.0, 1.0], dtype=torch.float64)).item() == pytest.approx(
        -math.log(2), abs=1e-9)
    # At z1 = 1, w1 = 1 and w2 = 3: branches at z2 = 1 and z2 = -2, a barrier between.
    assert _local_minima(U3, 1.0) == pytest.approx([-2.0, 1.0], abs=2e-3)
    assert U3(torch.tensor([1.0, -0.5])) > 8


def test_u4_has_a_second_branch_for_large_z1():
    assert _local_minima(U4, -3.0) == pytest.approx([1.0], abs=2e-3)  # w3 ≈ 0
    # At z1 = 3: w1 = -1, w3 = 3σ(20/3) ≈ 2.996, so branches near z2 = -1 and -3.996.
    w3 = 3 / (1 + math.exp(-2 / 0.3))
    assert _local_minima(U4, 3.0) == pytest.approx([-1 - w3, -1.0], abs=2e-3)


def test_log_unnormalized_density():
    z = torch.randn(10, 2)
    for name, U in ENERGIES.items():
        assert torch.equal(log_unnormalized_density(name)(z), -U(z))
        assert torch.equal(log_unnormalized_density(U)(z), -U(z))
    with pytest.raises(ValueError, match="'U5'.*U1"):
        log_unnormalized_density("U5")


@pytest.mark.parametrize("name", list(ENERGIES))
def test_grid_normalisation(name):
    grid = grid_log_density(name, lim=4, n=200)
    assert grid.x.shape == grid.y.shape == (200,) and grid.log_density.shape == (200, 200)
    z = math.exp(grid.log_z.item())
    assert math.isfinite(z) and z > 0
    cell = (grid.x[1] - grid.x[0]).item() ** 2
    assert (grid.density.sum() * cell).item() == pytest.approx(1.0, abs=1e-9)
    # Rows follow z2, columns z1 (the layout plt.contourf(x, y, density) expects).
    i, j = 37, 150
    point = torch.stack([grid.x[j], grid.y[i]])
    assert grid.log_density[i, j].item() == pytest.approx(-ENERGIES[name](point).item())
    # A finer grid agrees: the midpoint rule has converged.
    assert grid_log_density(name, lim=4, n=600).log_z.item() == pytest.approx(
        grid.log_z.item(), abs=1e-3)


def test_u2_integral_over_the_box_in_closed_form():
    # z2 - w1 is a N(0, 0.4²) kernel for each z1, well inside [-4, 4]: Z = 8 · 0.4 √(2π).
    expected = 8 * 0.4 * math.sqrt(2 * math.pi)
    assert math.exp(grid_log_density(U2).log_z.item()) == pytest.approx(expected, rel=1e-9)


def test_grid_bad_arguments():
    with pytest.raises(ValueError, match="n >= 2"):
        grid_log_density(U1, n=1)
    with pytest.raises(ValueError, match="lim > 0"):
        grid_log_density(U1, lim=0)
