"""Unit tests of nfcourse.bayes, each against an independent computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import scipy.stats
import torch
from torch.distributions import (Categorical, Independent, MultivariateNormal, Normal,
                                 kl_divergence)

from nfcourse import bayes

F64 = torch.float64


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def randn(gen, *shape, dtype=F64):
    return torch.randn(shape, generator=gen, dtype=dtype)


# 1.1 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_density_linear_is_the_gaussian_with_covariance_AAt(gen, d):
    A = randn(gen, d, d) + 0.5 * torch.eye(d, dtype=F64)
    b, x = randn(gen, d), 3 * randn(gen, 100, d)
    expected = MultivariateNormal(b, A @ A.T).log_prob(x)
    torch.testing.assert_close(bayes.log_density_linear(x, A, b), expected, rtol=1e-10, atol=1e-10)


def test_log_density_linear_handles_negative_determinant(gen):
    A = torch.diag(torch.tensor([2.0, -0.25], dtype=F64))
    x = randn(gen, 7, 2)
    got = bayes.log_density_linear(x, A, torch.zeros(2, dtype=F64))
    expected = Normal(0.0, 2.0).log_prob(x[:, 0]) + Normal(0.0, 0.25).log_prob(x[:, 1])
    torch.testing.assert_close(got, expected)


def test_log_density_linear_integrates_to_one():
    A = torch.tensor([[1.5, 0.7], [-0.3, 0.4]], dtype=F64)  # det = 0.81, not 1
    b = torch.tensor([0.5, -1.0], dtype=F64)
    grid = torch.linspace(-9, 9, 401, dtype=F64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], -1)
    density = bayes.log_density_linear(points, A, b).exp().reshape(401, 401)
    mass = torch.trapezoid(torch.trapezoid(density, grid), grid)
    assert abs(mass.item() - 1) < 1e-6


def test_log_density_linear_keeps_dtype_and_batch_shape(gen):
    A = torch.eye(3) * 2
    x = torch.randn(4, 6, 3)
    out = bayes.log_density_linear(x, A, torch.zeros(3))
    assert out.shape == (4, 6) and out.dtype == torch.float32


# 1.2 -----------------------------------------------------------------------------------

def test_joint_table_is_the_product_of_cpts_entry_by_entry():
    cpts = bayes.sprinkler_cpts(F64)
    joint = bayes.joint_table(*cpts)
    for c, s, r, w in itertools.product(range(2), repeat=4):
        expected = (cpts.p_c[c] * cpts.p_s_given_c[c, s] * cpts.p_r_given_c[c, r]
                    * cpts.p_w_given_sr[s, r, w])
        assert joint[c, s, r, w] == expected
    assert math.isclose(joint.sum().item(), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("query, evidence, value, expected", [
    (bayes.SPRINKLER, {bayes.WET: 1}, 1, 0.4298),  # Murphy's Bayes Net Toolbox tutorial
    (bayes.RAIN, {bayes.WET: 1}, 1, 0.7079),
    (bayes.SPRINKLER, {bayes.WET: 1, bayes.RAIN: 1}, 1, 0.1945),  # explaining away
    (bayes.CLOUDY, {}, 1, 0.5),
])
def test_sprinkler_posteriors(query, evidence, value, expected):
    joint = bayes.joint_table(*bayes.sprinkler_cpts(F64))
    assert abs(bayes.posterior(joint, query, evidence)[value].item() - expected) < 5e-5


def test_posterior_matches_bayes_rule_by_loops(gen):
    joint = torch.rand((2, 3, 4), generator=gen, dtype=F64)
    joint /= joint.sum()
    for query, evidence in [(0, {1: 2}), (2, {0: 1, 1: 0}), (1, {})]:
        numerator = torch.zeros(joint.shape[query], dtype=F64)
        for idx in itertools.product(*map(range, joint.shape)):
            if all(idx[a] == v for a, v in evidence.items()):
                numerator[idx[query]] += joint[idx]
        torch.testing.assert_close(bayes.posterior(joint, query, evidence),
                                   numerator / numerator.sum())


def test_posterior_of_a_single_variable_and_bad_queries():
    p = torch.tensor([0.2, 0.8], dtype=F64)
    torch.testing.assert_close(bayes.posterior(p, 0, {}), p)
    with pytest.raises(ValueError, match="also in the evidence"):
        bayes.posterior(torch.ones(2, 2) / 4, 0, {0: 1})


# 1.3 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("noise_var", [1.0, 0.3, 4.0])
def test_log_likelihood_matches_scipy_and_broadcasts_over_mu(gen, noise_var):
    x = randn(gen, 11)
    mu = torch.linspace(-2, 2, 5, dtype=F64).reshape(5, 1).expand(5, 3)
    got = bayes.log_likelihood(mu, x, noise_var)
    assert got.shape == (5, 3)
    expected = [scipy.stats.norm.logpdf(x.numpy(), m, math.sqrt(noise_var)).sum()
                for m in mu[:, 0].tolist()]
    np.testing.assert_allclose(got[:, 0].numpy(), expected, rtol=1e-12)


def test_mle_is_scipys_fit_and_a_stationary_point(gen):
    x = 2 + randn(gen, 20)
    mu = bayes.mle(x).requires_grad_()
    assert math.isclose(mu.item(), scipy.stats.norm.fit(x.numpy())[0], rel_tol=1e-12)
    (grad,) = torch.autograd.grad(bayes.log_likelihood(mu, x), mu)
    assert abs(grad.item()) < 1e-10


def _posterior_moments_by_quadrature(x, prior_var, noise_var):
    """Normalise prior x likelihood numerically: no conjugacy algebra."""
    xs = x.numpy()
    centre = float(xs.mean())

    def unnormalised(mu):
        return math.exp(scipy.stats.norm.logpdf(xs, mu, math.sqrt(noise_var)).sum()
                        + scipy.stats.norm.logpdf(mu, 0, math.sqrt(prior_var))
                        - scipy.stats.norm.logpdf(xs, centre, math.sqrt(noise_var)).sum())

    lo, hi = centre - 10, centre + 10
    z = scipy.integrate.quad(unnormalised, lo, hi, points=[centre], epsabs=0, epsrel=1e-12)[0]
    mean = scipy.integrate.quad(lambda m: m * unnormalised(m), lo, hi, points=[centre],
                                epsabs=0, epsrel=1e-12)[0] / z
    var = scipy.integrate.quad(lambda m: (m - mean) ** 2 * unnormalised(m), lo, hi,
                               points=[centre], epsabs=0, epsrel=1e-12)[0] / z
    return mean, var


@pytest.mark.parametrize("n, prior_var, noise_var", [(1, 1.0, 1.0), (10, 1.0, 1.0),
                                                      (6, 0.5, 3.0), (30, 4.0, 0.2)])
def test_posterior_params_match_quadrature(gen, n, prior_var, noise_var):
    x = 1 + math.sqrt(noise_var) * randn(gen, n)
    mean, var = bayes.posterior_params(x, prior_var, noise_var)
    q_mean, q_var = _posterior_moments_by_quadrature(x, prior_var, noise_var)
    assert math.isclose(mean.item(), q_mean, rel_tol=1e-7, abs_tol=1e-9)
    assert math.isclose(var.item(), q_var, rel_tol=1e-7)


def test_unit_variances_give_n_plus_one(gen):
    x = randn(gen, 9)
    mean, var = bayes.posterior_params(x)
    assert math.isclose(mean.item(), x.sum().item() / 10) and math.isclose(var.item(), 0.1)


def test_map_estimate_maximises_the_posterior(gen):
    x = randn(gen, 5) - 1
    xs = x.numpy()
    best = scipy.optimize.minimize_scalar(
        lambda m: -(scipy.stats.norm.logpdf(xs, m, math.sqrt(0.5)).sum()
                    + scipy.stats.norm.logpdf(m, 0, math.sqrt(2.0))),
        method="brent", tol=1e-12).x
    assert math.isclose(bayes.map_estimate(x, 2.0, 0.5).item(), best, abs_tol=1e-7)


@pytest.mark.parametrize("prior_var, noise_var", [(1.0, 1.0), (3.0, 0.5)])
def test_log_evidence_is_the_marginal_gaussian(gen, prior_var, noise_var):
    x = randn(gen, 12) + 0.5
    cov = noise_var * torch.eye(12, dtype=F64) + prior_var * torch.ones(12, 12, dtype=F64)
    expected = MultivariateNormal(torch.zeros(12, dtype=F64), cov).log_prob(x)
    assert abs(bayes.log_evidence(x, prior_var, noise_var) - expected) < 1e-10


# 1.4 and 1.5 ------------------------------------------------------------------------------

def _simplex(gen, *shape):
    e = -torch.rand(shape, generator=gen, dtype=F64).log()
    return e / e.sum(-1, keepdim=True)


def test_kl_categorical_matches_torch_and_scipy(gen):
    p, q = _simplex(gen, 50, 6), _simplex(gen, 50, 6)
    got = bayes.kl_categorical(p, q)
    torch.testing.assert_close(got, kl_divergence(Categorical(probs=p), Categorical(probs=q)))
    np.testing.assert_allclose(got.numpy(), scipy.stats.entropy(p.numpy(), q.numpy(), axis=-1))
    assert (got >= 0).all()


def test_kl_categorical_zero_conventions():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=F64)
    assert torch.isfinite(bayes.kl_categorical(p, torch.tensor([0.2, 0.3, 0.5], dtype=F64)))
    assert bayes.kl_categorical(p, p) == 0
    assert bayes.kl_categorical(torch.tensor([0.5, 0.5], dtype=F64),
                                torch.tensor([1.0, 0.0], dtype=F64)) == math.inf


def test_kl_diag_std_normal_matches_torch_with_gradients(gen):
    mu = randn(gen, 8, 4).requires_grad_()
    log_var = (2 * randn(gen, 8, 4)).requires_grad_()
    q = Independent(Normal(mu, (0.5 * log_var).exp()), 1)
    p = Independent(Normal(torch.zeros(8, 4, dtype=F64), torch.ones(8, 4, dtype=F64)), 1)
    expected = kl_divergence(q, p)
    got = bayes.kl_diag_std_normal(mu, log_var)
    torch.testing.assert_close(got, expected)
    g_got = torch.autograd.grad(got.sum(), (mu, log_var))
    g_exp = torch.autograd.grad(expected.sum(), (mu, log_var))
    for a, b in zip(g_got, g_exp):
        torch.testing.assert_close(a, b)


# 1.6 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prior_var, noise_var", [(1.0, 1.0), (0.5, 2.0)])
def test_elbo_plus_kl_is_the_log_evidence(gen, prior_var, noise_var):
    x = randn(gen, 7) + 1
    m, s2 = 2 * randn(gen, 200), torch.rand(200, generator=gen, dtype=F64) * 3 + 1e-3
    mean, var = bayes.posterior_params(x, prior_var, noise_var)
    kl = kl_divergence(Normal(m, s2.sqrt()), Normal(mean, var.sqrt()))
    elbo = bayes.elbo_conjugate(m, s2, x, prior_var, noise_var)
    log_ev = bayes.log_evidence(x, prior_var, noise_var)
    torch.testing.assert_close(elbo + kl, log_ev.expand(200), rtol=0, atol=1e-10)
    assert (elbo <= log_ev).all()
    assert abs(bayes.elbo_conjugate(mean, var, x, prior_var, noise_var) - log_ev) < 1e-12


def test_elbo_matches_monte_carlo(gen):
    x = randn(gen, 5)
    m, s2 = torch.tensor(0.4, dtype=F64), torch.tensor(0.3, dtype=F64)
    mu = m + s2.sqrt() * randn(gen, 200_000)
    log_joint = bayes.log_likelihood(mu, x) + Normal(0.0, 1.0).log_prob(mu)
    samples = log_joint - Normal(m, s2.sqrt()).log_prob(mu)
    se = samples.std() / math.sqrt(samples.numel())
    assert abs(samples.mean() - bayes.elbo_conjugate(m, s2, x)) < 4 * se


def test_elbo_broadcasts_over_a_grid(gen):
    x = randn(gen, 4)
    m = torch.linspace(-1, 1, 5, dtype=F64)[:, None].expand(5, 3)
    s2 = torch.linspace(0.1, 1, 3, dtype=F64)[None, :].expand(5, 3)
    grid = bayes.elbo_conjugate(m, s2, x)
    assert grid.shape == (5, 3)
    assert grid[2, 1] == bayes.elbo_conjugate(m[2, 1], s2[2, 1], x)
