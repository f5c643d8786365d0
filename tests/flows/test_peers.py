"""Cross-checks against pyro-ppl, given identical parameters (skipped if it is absent).

pyro-ppl is a test-only extra. Its Planar, Radial and Sylvester use the same raw
parameterisations as ours (û with ‖w‖², β̂ = -α + softplus(β'), tanh diagonals). Its
Sylvester is compared with Q = I only: for Q ≠ I pyro 1.9's log-det is not that of its
map (docs/flows.md, "Compared with the peers").
"""

from __future__ import annotations

import pytest
import torch

from nfcourse import flows as nf

pyro_transforms = pytest.importorskip("pyro.distributions.transforms")
from pyro.distributions.transforms.planar import ConditionedPlanar  # noqa: E402
from pyro.distributions.transforms.radial import ConditionedRadial  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64")


def pyro_call(t, x):
    y = t(x)
    return y, t.log_abs_det_jacobian(x, y)


@pytest.mark.parametrize("dim", [1, 2, 7])
def test_planar_matches_pyro(dim):
    g = torch.Generator().manual_seed(dim)
    theirs = pyro_transforms.Planar(dim)
    ours = nf.Planar(dim)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(2 * torch.randn(p.shape, generator=g))
        ours.u.copy_(theirs.u), ours.w.copy_(theirs.w), ours.b.copy_(theirs.bias)
    x = 2 * torch.randn(50, dim, generator=g)
    y, log_det = ours(x)
    y_p, log_det_p = pyro_call(theirs, x)
    torch.testing.assert_close(y, y_p)
    torch.testing.assert_close(log_det, log_det_p)


def test_amortized_planar_matches_pyro_conditioned_planar():
    g = torch.Generator().manual_seed(0)
    batch, dim = 20, 3
    u, w, b = (torch.randn(batch, n, generator=g) for n in (dim, dim, 1))
    theirs = ConditionedPlanar((b, u, w))
    ours = nf.Planar(dim, amortized=True)
    x = torch.randn(batch, dim, generator=g)
    y, log_det = ours(x, params=torch.cat([u, w, b], -1))
    y_p, log_det_p = pyro_call(theirs, x)
    torch.testing.assert_close(y, y_p)
    torch.testing.assert_close(log_det, log_det_p)


@pytest.mark.parametrize("dim", [1, 2, 7])
def test_radial_matches_pyro(dim):
    g = torch.Generator().manual_seed(dim)
    theirs = pyro_transforms.Radial(dim)
    ours = nf.Radial(dim)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        ours.z0.copy_(theirs.x0)
        ours.alpha_raw.copy_(theirs.alpha_prime[0]), ours.beta_raw.copy_(theirs.beta_prime[0])
    x = theirs.x0.detach() + torch.randn(50, dim, generator=g) * torch.logspace(-3, 1, 50)[:, None]
    y, log_det = ours(x)
    y_p, log_det_p = pyro_call(theirs, x)
    torch.testing.assert_close(y, y_p)
    torch.testing.assert_close(log_det, log_det_p)


def test_amortized_radial_matches_pyro_conditioned_radial():
    g = torch.Generator().manual_seed(1)
    batch, dim = 20, 3
    x0, a, b = (torch.randn(batch, n, generator=g) for n in (dim, 1, 1))
    theirs = ConditionedRadial((x0, a, b))
    ours = nf.Radial(dim, amortized=True)
    x = torch.randn(batch, dim, generator=g)
    y, log_det = ours(x, params=torch.cat([x0, a, b], -1))
    y_p, log_det_p = pyro_call(theirs, x)
    torch.testing.assert_close(y, y_p)
    torch.testing.assert_close(log_det, log_det_p)


def pyro_sylvester_with_q_identity(dim, g):
    """pyro's Sylvester with two equal reflections, so that its Q = H H = I."""
    theirs = pyro_transforms.Sylvester(dim, count_transforms=2)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        theirs.u_unnormed[1].copy_(theirs.u_unnormed[0])
    return theirs


@pytest.mark.parametrize("dim", [2, 5])
def test_sylvester_matches_pyro(dim):
    """With Q = I pyro computes y = x + Rᵀ tanh(Sᵀ x + b) (R, S upper triangular). With the
    reversal P, Rᵀ = P (P Rᵀ P) P, and P Rᵀ P is upper triangular: this is our
    TriangularSylvester(flip=True) with R = P Rᵀ P, R̃ = P Sᵀ P, b = P b."""
    g = torch.Generator().manual_seed(dim)
    theirs = pyro_sylvester_with_q_identity(dim, g)
    torch.testing.assert_close(theirs.Q(torch.zeros(dim)), torch.eye(dim))
    ours = nf.TriangularSylvester(dim, flip=True)
    rows, cols = torch.triu_indices(dim, dim, offset=1)

    def flipped(m):
        return m.T.flip(0).flip(1)
    with torch.no_grad():
        r, s = flipped(theirs.R()), flipped(theirs.S())
        ours.r_strict.copy_(r[rows, cols]), ours.r_tilde_strict.copy_(s[rows, cols])
        ours.r_diag.copy_(theirs.R_diag.flip(0)), ours.r_tilde_diag.copy_(theirs.S_diag.flip(0))
        ours.b.copy_(theirs.b.flip(0))
    x = torch.randn(30, dim, generator=g)
    y, log_det = ours(x)
    y_p, log_det_p = pyro_call(theirs, x)
    torch.testing.assert_close(y, y_p)
    torch.testing.assert_close(log_det, log_det_p, rtol=0, atol=1e-7)  # pyro adds 1e-8 inside log1p
