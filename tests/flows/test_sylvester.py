"""Sylvester flows: orthogonality of Q, invertibility constraints, amortization."""

from __future__ import annotations

from functools import partial

import flowcases
import pytest
import torch
from torch.func import jacrev, vmap

from nfcourse.flows import HouseholderSylvester, OrthogonalSylvester, TriangularSylvester

pytestmark = pytest.mark.usefixtures("float64")
randomise = partial(flowcases.randomise, scale=1.0)


@pytest.mark.parametrize("dim,m", [(5, 5), (6, 2), (40, 40)])
def test_orthogonal_q_has_orthonormal_columns(dim, m):
    layer = randomise(OrthogonalSylvester(dim, m=m), seed=dim)
    q = layer.orthogonalize(layer.q)
    torch.testing.assert_close(q.mT @ q, torch.eye(m), rtol=0, atol=1e-13)
    # amortized: one Q per sample
    amortized = OrthogonalSylvester(dim, m=m, amortized=True)
    q_raw = torch.randn(4, dim * m)
    qs = amortized.orthogonalize(q_raw)
    torch.testing.assert_close(qs.mT @ qs, torch.eye(m).expand(4, m, m), rtol=0, atol=1e-13)


def test_orthogonal_q_of_an_orthonormal_q_tilde_is_itself():
    """The sign convention (U's diagonal >= 0) makes Q = Q̃ when Q̃ is already orthonormal,
    e.g. the layer's initial Q̃, and Q the Gram–Schmidt of Q̃'s columns otherwise."""
    layer = OrthogonalSylvester(6, m=3)
    q_tilde = layer.q.detach().view(6, 3)
    torch.testing.assert_close(layer.orthogonalize(layer.q), q_tilde, rtol=0, atol=1e-14)
    skewed = torch.randn(6, 3)
    q = layer.orthogonalize(skewed.flatten())
    u = q.mT @ skewed                        # Q̃ = Q U, U upper triangular, positive diagonal
    torch.testing.assert_close(q @ u, skewed)
    torch.testing.assert_close(u, u.triu(), rtol=0, atol=1e-14)
    assert bool((u.diagonal() > 0).all())


@pytest.mark.parametrize("gap", [1e-4, 1e-6, 1e-8, 1e-12, 0.0])
@pytest.mark.parametrize("amortized", [False, True])
def test_orthogonal_with_nearly_equal_columns_of_q_tilde(gap, amortized):
    """Two (nearly) equal columns of Q̃: Q stays orthonormal and the log-det stays the
    autograd one. (30 steps of the paper's iteration gave ‖QᵀQ - I‖ = 0.49 and a log-det
    off by 1e-2 at gap = 1e-6.)"""
    dim, m, batch = 5, 3, 6
    g = torch.Generator().manual_seed(11)
    layer = OrthogonalSylvester(dim, m=m, amortized=amortized)
    if amortized:
        params = torch.randn(batch, layer.param_dim, generator=g)
        q_tilde = params[:, -dim * m:].view(batch, dim, m)
    else:
        randomise(layer)
        params = None
        q_tilde = layer.q.detach().view(dim, m)
    q_tilde[..., 1] = q_tilde[..., 0] + gap * torch.randn(q_tilde[..., 0].shape, generator=g)
    q = layer.orthogonalize(params[:, -dim * m:] if amortized else layer.q)
    torch.testing.assert_close(q.mT @ q, torch.eye(m).expand_as(q.mT @ q), rtol=0, atol=1e-14)
    z = 2 * torch.randn(batch, dim, generator=g)
    _, log_det = layer(z, params=params)
    if amortized:
        jac = vmap(jacrev(lambda v, p: layer(v[None], params=p[None])[0][0]))(z, params)
    else:
        jac = vmap(jacrev(lambda v: layer(v[None])[0][0]))(z)
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert bool((sign > 0).all())
    torch.testing.assert_close(log_det, logabsdet, rtol=1e-12, atol=1e-12)


def test_householder_q_is_orthogonal_and_q_t_is_its_transpose():
    layer = randomise(HouseholderSylvester(5, n_reflections=3))
    q_t, q = layer._q_maps(layer.q)
    eye = torch.eye(5)
    q_mat = q(eye).mT            # rows of eye are e_i; q(e_i) is column i
    torch.testing.assert_close(q_mat @ q_mat.mT, eye)
    torch.testing.assert_close(q_t(eye).mT, q_mat.mT)
    assert (q_mat - eye).abs().max() > 0.1


def test_triangular_q_is_the_identity_or_the_reversal():
    z = torch.randn(3, 4)
    for flip, expected in [(False, z), (True, z.flip(-1))]:
        q_t, q = TriangularSylvester(4, flip=flip)._q_maps(None)
        torch.testing.assert_close(q_t(z), expected)
        torch.testing.assert_close(q(q_t(z)), z)


def test_matches_the_paper_formula():
    """f(z) = z + Q R tanh(R̃ Qᵀ z + b), log|det| = Σ log|1 + h' r_ii r̃_ii|, computed naively."""
    layer = randomise(OrthogonalSylvester(5, m=3))
    z = torch.randn(7, 5)
    q = layer.orthogonalize(layer.q)
    r = layer._upper(layer.r_strict, layer.r_diag)
    r_t = layer._upper(layer.r_tilde_strict, layer.r_tilde_diag)
    assert torch.equal(r, r.triu()) and torch.equal(r_t, r_t.triu())
    pre = z @ q @ r_t.T + layer.b
    expected = z + torch.tanh(pre) @ r.T @ q.T
    log_det = torch.log((1 + (1 - torch.tanh(pre) ** 2) * r.diagonal() * r_t.diagonal()).abs()).sum(-1)
    y, ld = layer(z)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(ld, log_det)


@pytest.mark.parametrize("make", [lambda: OrthogonalSylvester(4, m=3),
                                  lambda: HouseholderSylvester(4, n_reflections=2),
                                  lambda: TriangularSylvester(4, flip=True)])
@pytest.mark.parametrize("diag", [-50.0, 50.0])
def test_invertible_for_adversarial_diagonals(make, diag):
    """r_ii r̃_ii > -1 for any raw diagonal: the Jacobian stays positive definite in sign."""
    layer = randomise(make(), scale=3.0)
    with torch.no_grad():
        layer.r_diag.fill_(diag)
        layer.r_tilde_diag.fill_(-diag)          # product of tanh's -> -1 from above
    z = 0.01 * torch.randn(32, 4)                # pre-activations near 0: h' ~ 1
    y, log_det = layer(z)
    assert torch.isfinite(log_det).all()
    jac = vmap(jacrev(lambda v: layer(v[None])[0][0]))(z)
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert bool((sign > 0).all())
    torch.testing.assert_close(log_det, logabsdet, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [lambda a: OrthogonalSylvester(4, m=2, amortized=a),
                                  lambda a: HouseholderSylvester(4, n_reflections=2, amortized=a),
                                  lambda a: TriangularSylvester(4, flip=True, amortized=a)])
def test_amortized_equals_own_parameters_per_sample(make):
    own = randomise(make(False))
    amortized = make(True)
    names = ["r_strict", "r_diag", "r_tilde_strict", "r_tilde_diag", "b", "q"]
    flat = torch.cat([getattr(own, n).flatten() for n in names if getattr(own, n) is not None])
    assert flat.numel() == amortized.param_dim
    z = torch.randn(5, 4)
    y, ld = own(z)
    y2, ld2 = amortized(z, params=flat.expand(5, -1))
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(ld2, ld)
    # and different params per sample give different maps
    params = torch.randn(5, amortized.param_dim)
    y3, _ = amortized(z, params=params)
    y4, _ = amortized(z[:1], params=params[1:2])
    assert not torch.allclose(y3[:1], y4)


def test_no_inverse_says_so():
    with pytest.raises(NotImplementedError, match="no inverse"):
        TriangularSylvester(3).inverse(torch.randn(2, 3))


def test_orthogonal_m_must_fit():
    with pytest.raises(ValueError, match="m <= dim"):
        OrthogonalSylvester(3, m=4)
