"""nfcourse.vi: the mixture's ELBO and CAVI, SVI, the gradient estimators and BBVI, and the
forward/reverse KL fits. Statistical checks use fixed seeds and state their tolerance."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from nfcourse.vi import bbvi, estimators, kl_fit, mixture, svi

SIGMA2 = 25.0


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def data_2d():
    return mixture.simulate(300, K=4, D=2, sigma2=SIGMA2, generator=_gen(6))


def _random_params(n=30, K=3, D=2, seed=0, dtype=torch.float64):
    g = _gen(seed)
    x = 3 * torch.randn(n, D, generator=g, dtype=dtype)
    phi = torch.softmax(torch.randn(n, K, generator=g, dtype=dtype), -1)
    m = 2 * torch.randn(K, D, generator=g, dtype=dtype)
    s2 = 0.2 + torch.rand(K, generator=g, dtype=dtype)
    return x, phi, m, s2


# The mixture: ELBO and CAVI -------------------------------------------------------------

def test_expected_log_lik_matches_the_paper_in_one_dimension():
    x, phi, m, s2 = _random_params(D=1)
    x1, m1 = x[:, 0], m[:, 0]
    paper = -0.5 * (math.log(2 * math.pi) + (phi * (x1[:, None] ** 2 + m1 ** 2 + s2
                                                     - 2 * x1[:, None] * m1)).sum(-1))
    assert torch.allclose(mixture.expected_log_lik(x, phi, m, s2), paper)


@pytest.mark.parametrize("D", [1, 2])
def test_elbo_equals_monte_carlo_average_of_log_joint_minus_log_q(D):
    x, phi, m, s2 = _random_params(n=20, K=3, D=D, seed=D)
    logits = torch.log(phi)
    mu, c = bbvi.sample_q(m, torch.log(s2), logits, 100_000, _gen(1))
    terms = bbvi.log_terms(x, mu, c, m, torch.log(s2), logits, SIGMA2)
    w = ((terms["log_p_mu"] - terms["log_q_mu"]).sum(-1)
         + (terms["log_p_c"] + terms["log_lik"] - terms["log_q_c"]).sum(-1))
    closed = mixture.elbo(x, phi, m, s2, SIGMA2)
    assert abs(w.mean() - closed) < 4 * w.std() / math.sqrt(len(w))


@pytest.mark.parametrize("D, K, seed", [(1, 3, 0), (2, 4, 1), (2, 5, 2), (3, 3, 3)])
def test_elbo_never_decreases_under_cavi(D, K, seed):
    sim = mixture.simulate(200, K, D, sigma2=SIGMA2, generator=_gen(seed))
    m, s2 = mixture.init_params(sim.x, K, _gen(seed), method="random")
    values = [mixture.elbo(sim.x, mixture.update_phi(sim.x, m, s2), m, s2, SIGMA2).item()]
    for _ in range(30):   # check after every coordinate block, not only every sweep
        phi = mixture.update_phi(sim.x, m, s2)
        values.append(mixture.elbo(sim.x, phi, m, s2, SIGMA2).item())
        m, s2 = mixture.update_m_s2(sim.x, phi, SIGMA2)
        values.append(mixture.elbo(sim.x, phi, m, s2, SIGMA2).item())
    diffs = torch.tensor(values).diff()
    assert (diffs >= -1e-9 * abs(values[0])).all(), f"ELBO decreased: {diffs.min()}"


def test_each_update_maximises_the_elbo_in_its_coordinates():
    """Gradient zero at the update (autograd), and any perturbation lowers the ELBO."""
    x, phi, m, s2 = _random_params(n=40, K=4, D=2)
    m_new, s2_new = mixture.update_m_s2(x, phi, SIGMA2)
    m_new.requires_grad_(), s2_new.requires_grad_()
    grads = torch.autograd.grad(mixture.elbo(x, phi, m_new, s2_new, SIGMA2), (m_new, s2_new))
    assert all(g.abs().max() < 1e-9 for g in grads)
    logits = torch.log(mixture.update_phi(x, m, s2)).requires_grad_()
    (g,) = torch.autograd.grad(mixture.elbo(x, torch.softmax(logits, -1), m, s2, SIGMA2), logits)
    assert g.abs().max() < 1e-9
    best = mixture.elbo(x, torch.softmax(logits, -1), m, s2, SIGMA2)
    for seed in range(5):
        noise = 0.1 * torch.randn(logits.shape, generator=_gen(seed), dtype=logits.dtype)
        assert mixture.elbo(x, torch.softmax(logits + noise, -1), m, s2, SIGMA2) < best


def test_cavi_fixed_point_satisfies_the_update_equations(data_2d):
    res = mixture.cavi(data_2d.x, 4, SIGMA2, generator=_gen(0), tol=1e-14, max_iter=2000)
    assert res.converged
    phi = mixture.update_phi(data_2d.x, res.m, res.s2)
    m, s2 = mixture.update_m_s2(data_2d.x, phi, SIGMA2)
    assert torch.allclose(phi, res.phi, atol=1e-6)
    assert torch.allclose(m, res.m, atol=1e-6) and torch.allclose(s2, res.s2, rtol=1e-8)
    # and the written-out equations, independently of the update functions:
    D = data_2d.x.shape[1]
    logits = data_2d.x @ res.m.T - 0.5 * ((res.m ** 2).sum(-1) + D * res.s2)
    assert torch.allclose(res.phi, torch.softmax(logits, -1), atol=1e-6)
    assert torch.allclose(res.s2, 1 / (1 / SIGMA2 + res.phi.sum(0)), rtol=1e-8)
    assert torch.allclose(res.m, (res.phi.T @ data_2d.x) * res.s2[:, None], atol=1e-6)


def test_cavi_records_its_history_and_terminates_on_relative_change(data_2d):
    res = mixture.cavi(data_2d.x, 4, SIGMA2, generator=_gen(1), tol=1e-6)
    assert res.converged and res.iterations == len(res.elbo) == len(res.phi_history)
    assert len(res.m_history) == res.iterations + 1
    assert mixture.relative_change(res.elbo[-1], res.elbo[-2]) < 1e-6
    assert res.iterations < 2 or mixture.relative_change(res.elbo[-2], res.elbo[-3]) >= 1e-6


def test_cavi_recovers_the_truth_on_separated_clusters():
    sim = mixture.simulate(2000, K=5, D=2, sigma2=SIGMA2, generator=_gen(6))
    res = mixture.cavi_restarts(sim.x, 5, SIGMA2, 3, _gen(0))
    perm = mixture.match_components(sim.mu, res.m)
    assert torch.allclose(res.m[perm], sim.mu, atol=0.15)


def test_gradient_ascent_reaches_the_cavi_optimum():
    sim = mixture.simulate(200, K=3, D=1, sigma2=SIGMA2, generator=_gen(6))
    m0, s20 = mixture.init_params(sim.x, 3, _gen(0))
    c = mixture.cavi(sim.x, 3, SIGMA2, m0, s20)
    a = mixture.elbo_ascent(sim.x, 3, SIGMA2, m0, s20, lr=0.1)
    perm = mixture.match_components(c.m, a.m)
    assert a.converged
    assert abs(a.elbo[-1] - c.elbo[-1]) < 1e-5 * abs(c.elbo[-1])
    assert torch.allclose(a.m[perm], c.m, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_init_params_kmeans_pp_copes_with_duplicate_points(dtype):
    """All distances zero (every distinct point already picked): the next pick is uniform,
    not a multinomial over zeros (which raises), in float32 as in float64."""
    same = torch.full((6, 2), 3.0, dtype=dtype)
    m, s2 = mixture.init_params(same, 3, _gen(0))
    assert torch.equal(m, same[:3]) and m.dtype == dtype and s2.dtype == dtype
    two = torch.cat([torch.zeros(5, 1, dtype=dtype), torch.full((5, 1), 5.0, dtype=dtype)])
    for seed in range(5):
        m, _ = mixture.init_params(two, 4, _gen(seed))
        assert sorted(set(m[:, 0].tolist())) == [0.0, 5.0]   # both clusters, then duplicates


def test_cavi_restarts_returns_the_best_of_independent_runs():
    sim = mixture.simulate(150, K=4, D=2, sigma2=SIGMA2, generator=_gen(2))
    best = mixture.cavi_restarts(sim.x, 4, SIGMA2, 4, _gen(5), method="random", tol=1e-8)
    # the same runs by hand: starts drawn in turn from one generator
    g = _gen(5)
    finals = [mixture.cavi(sim.x, 4, SIGMA2, *mixture.init_params(sim.x, 4, g, "random"),
                           tol=1e-8).elbo[-1] for _ in range(4)]
    assert best.restart_elbos == finals
    assert best.elbo[-1] == max(finals) and best.converged
    assert len(set(round(e, 6) for e in finals)) > 1, "the restarts should differ"
    with pytest.raises(ValueError, match="n_restarts"):
        mixture.cavi_restarts(sim.x, 4, SIGMA2, 0)


def test_global_terms_are_the_elbo_terms_in_q_mu():
    x, phi, m, s2 = _random_params(n=10, K=3, D=2, seed=4)
    terms = mixture.elbo_terms(x, phi, m, s2, SIGMA2)
    log_p_mu, entropy_mu = mixture.global_terms(m, s2, SIGMA2)
    # independently, with torch.distributions: E_q[log p(mu_k)] per coordinate is
    # log N(m; 0, sigma^2) - s^2 / (2 sigma^2), and the entropy is Normal's
    prior = Normal(0.0, math.sqrt(SIGMA2))
    expected_prior = (prior.log_prob(m) - s2[:, None] / (2 * SIGMA2)).sum()
    expected_entropy = Normal(m, s2.sqrt()[:, None]).entropy().sum()
    assert torch.isclose(log_p_mu, expected_prior) and torch.isclose(terms["log_p_mu"], log_p_mu)
    assert torch.isclose(entropy_mu, expected_entropy)
    assert torch.isclose(terms["entropy_mu"], entropy_mu)


def test_init_params_kmeans_pp_spreads_and_random_picks_data_points():
    x = torch.cat([torch.zeros(50, 1), torch.full((50, 1), 100.0)])
    for seed in range(5):
        m, s2 = mixture.init_params(x, 2, _gen(seed))
        assert sorted(m[:, 0].tolist()) == [0.0, 100.0] and torch.equal(s2, torch.ones(2))
    m, _ = mixture.init_params(x, 2, _gen(0), method="random")
    assert all(v in (0.0, 100.0) for v in m[:, 0].tolist())
    with pytest.raises(ValueError, match="kmeans"):
        mixture.init_params(x, 2, method="nonsense")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_the_input(dtype):
    x, phi, m, s2 = _random_params(dtype=dtype)
    assert mixture.update_phi(x, m, s2).dtype == dtype
    assert all(t.dtype == dtype for t in mixture.update_m_s2(x, phi, SIGMA2))
    assert mixture.elbo(x, phi, m, s2, SIGMA2).dtype == dtype
    assert all(t.dtype == dtype for t in svi.svi_step(x[:5], 30, m, s2, SIGMA2, 0.5))
    assert all(g.dtype == dtype
               for g in bbvi.bbvi_gradient(x, m, torch.log(s2), torch.log(phi), SIGMA2, S=4))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_everything_runs_on_the_device_of_its_inputs(device):
    x, phi, m, s2 = (t.to(device) for t in _random_params())
    res = mixture.cavi(x, 3, SIGMA2, generator=_gen(0), max_iter=5)
    assert res.m.device.type == device and res.phi.device.type == device
    assert svi.svi(x, m, s2, SIGMA2, 10, 3, generator=_gen(0)).m.device.type == device
    assert all(g.device.type == device
               for g in bbvi.bbvi_gradient(x, m, torch.log(s2), torch.log(phi), SIGMA2, 4, True,
                                           True, _gen(0)))
    p = kl_fit.bimodal(device=device)
    mean = torch.zeros((), dtype=torch.float64, device=device)
    assert kl_fit.reverse_kl_mc(p, mean, mean, 10, _gen(0)).device.type == device
    assert kl_fit.fit_gaussian(p, kl_fit.reverse_kl, 0.0, 0.0, steps=2).mean.device.type == device


# SVI -------------------------------------------------------------------------------------

def test_svi_full_batch_with_step_one_is_one_cavi_sweep():
    x, _, m, s2 = _random_params(n=50, K=4, D=2, seed=3)
    m_svi, s2_svi = svi.svi_step(x, 50, m, s2, SIGMA2, rho=1.0)
    _, m_cavi, s2_cavi = mixture.cavi_step(x, m, s2, SIGMA2)
    assert torch.allclose(m_svi, m_cavi, atol=1e-12) and torch.allclose(s2_svi, s2_cavi, atol=1e-14)


def test_svi_step_blends_natural_parameters():
    x, _, m, s2 = _random_params(n=40, K=3, D=2, seed=4)
    xb, rho = x[:8], 0.3
    hat = svi.to_natural(*svi.svi_step(xb, 40, m, s2, SIGMA2, 1.0))
    old = svi.to_natural(m, s2)
    new = svi.to_natural(*svi.svi_step(xb, 40, m, s2, SIGMA2, rho))
    for h, o, nw in zip(hat, old, new):
        assert torch.allclose(nw, (1 - rho) * o + rho * h)
    # the minibatch estimate of the natural parameter is unbiased for the full-data one
    full = svi.to_natural(*svi.svi_step(x, 40, m, s2, SIGMA2, 1.0))
    parts = [svi.to_natural(*svi.svi_step(x[i:i + 8], 40, m, s2, SIGMA2, 1.0))
             for i in range(0, 40, 8)]
    for j in range(2):
        assert torch.allclose(torch.stack([p[j] for p in parts]).mean(0), full[j])


def test_robbins_monro_conditions():
    rho = torch.tensor([svi.robbins_monro(t, 1.0, 0.7) for t in range(100_000)])
    assert rho[0] == 1.0 and (rho.diff() < 0).all()
    assert rho.sum() > 100 and (rho ** 2).sum() < 10


def test_svi_converges_to_the_cavi_optimum_and_beats_sgd():
    sim = mixture.simulate(1000, K=3, D=2, sigma2=SIGMA2, generator=_gen(6))
    m0, s20 = mixture.init_params(sim.x, 3, _gen(0))
    star = mixture.cavi(sim.x, 3, SIGMA2, m0, s20).elbo[-1]
    nat = svi.svi(sim.x, m0, s20, SIGMA2, batch_size=100, n_steps=100, eval_every=100,
                  generator=_gen(1))
    euc = svi.sgd(sim.x, m0, s20, SIGMA2, batch_size=100, n_steps=100, lr=10.0, eval_every=100,
                  generator=_gen(1))
    assert (star - nat.elbo[-1]) / 1000 < 1e-3
    assert euc.elbo[-1] < nat.elbo[-1]


def test_global_elbo_is_the_elbo_maximised_over_phi():
    x, phi, m, s2 = _random_params(n=25, K=3, D=2, seed=5)
    best_phi = mixture.update_phi(x, m, s2)
    assert torch.isclose(svi.global_elbo(x, m, s2, SIGMA2),
                         mixture.elbo(x, best_phi, m, s2, SIGMA2))
    assert svi.global_elbo(x, m, s2, SIGMA2) > mixture.elbo(x, phi, m, s2, SIGMA2)


# Estimators --------------------------------------------------------------------------------

def test_normal_score_matches_autograd_and_has_mean_zero():
    x = torch.linspace(-3, 4, 9, dtype=torch.float64)
    mu = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    d_mu, d_sigma = estimators.normal_score(x, mu.detach(), sigma.detach())
    for i, xi in enumerate(x):
        g = torch.autograd.grad(Normal(mu, sigma).log_prob(xi), (mu, sigma))
        assert torch.isclose(d_mu[i], g[0]) and torch.isclose(d_sigma[i], g[1])
    xs = Normal(0.5, 1.7).sample((200_000,))
    for comp in estimators.normal_score(xs, 0.5, 1.7):
        assert abs(comp.mean()) < 4 * comp.std() / math.sqrt(len(xs))


@pytest.mark.parametrize("f, grad", [
    (lambda x: x ** 2, lambda mu: 2 * mu),
    (torch.sin, lambda mu: math.cos(mu) * math.exp(-0.5)),   # d/dmu E[sin X] = cos(mu) e^{-1/2}
])
@pytest.mark.parametrize("estimator", [estimators.score_function_samples,
                                       estimators.reparam_samples])
def test_gradient_estimators_are_unbiased(f, grad, estimator):
    n, mu = 400_000, 0.7
    est = estimator(f, mu, 1.0, n, _gen(0))
    assert abs(est.mean().item() - grad(mu)) < 4 * est.std().item() / math.sqrt(n)


def test_score_function_variance_matches_the_formula_and_exceeds_reparam():
    mu, n = 1.5, 400_000
    sf = estimators.score_function_samples(lambda x: x ** 2, mu, 1.0, n, _gen(1))
    rp = estimators.reparam_samples(lambda x: x ** 2, mu, 1.0, n, _gen(2))
    assert abs(sf.var().item() / (mu ** 4 + 14 * mu ** 2 + 15) - 1) < 0.05
    assert abs(rp.var().item() / 4 - 1) < 0.02


def test_control_variate_reduces_variance_as_theory_says():
    u = torch.rand(400_000, generator=_gen(3), dtype=torch.float64)
    adjusted, a = estimators.control_variate(torch.exp(u), u, 0.5)
    e = math.e
    cov, var_f = (3 - e) / 2, (e ** 2 - 1) / 2 - (e - 1) ** 2
    assert abs(a.item() - cov * 12) < 0.01                           # a* = Cov/Var(U)
    factor = estimators.variance_reduction(torch.exp(u), adjusted)
    assert abs(factor / (1 / (1 - cov ** 2 * 12 / var_f)) - 1) < 0.05  # 1 / (1 - rho^2)
    # the wrong sign makes things worse
    worse, _ = estimators.control_variate(torch.exp(u), u, 0.5, a=-a)
    assert estimators.variance_reduction(torch.exp(u), worse) < 1


def test_control_variate_with_an_independent_coefficient_is_unbiased():
    g = _gen(4)
    a = estimators.cv_coefficient(torch.exp(u := torch.rand(1000, generator=g)), u)
    reps = torch.rand(20_000, 10, generator=g, dtype=torch.float64)
    est = estimators.control_variate(torch.exp(reps), reps, 0.5, a=a)[0].mean(1)
    assert abs(est.mean().item() - (math.e - 1)) < 4 * est.std().item() / math.sqrt(len(est))


# BBVI ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bbvi_point():
    sim = mixture.simulate(40, K=3, D=1, sigma2=SIGMA2, generator=_gen(6))
    m, s2 = mixture.init_params(sim.x, 3, _gen(0))
    logits = torch.log(0.5 * mixture.update_phi(sim.x, m, s2) + 0.5 / 3)
    return sim.x, m, torch.log(s2) + 0.3, logits


def test_bbvi_scores_match_autograd(bbvi_point):
    x, m, log_s2, logits = bbvi_point
    mu, c = bbvi.sample_q(m, log_s2, logits, 3, _gen(1))
    score_m, score_ls, score_lg = bbvi.scores(mu, c, m, log_s2, logits)
    for s in range(3):
        params = [p.clone().requires_grad_() for p in (m, log_s2, logits)]
        log_q = bbvi.log_terms(x, mu[s:s + 1], c[s:s + 1], *params, SIGMA2)
        total = log_q["log_q_mu"].sum() + log_q["log_q_c"].sum()
        g = torch.autograd.grad(total, params)
        assert torch.allclose(g[0], score_m[s]) and torch.allclose(g[1], score_ls[s])
        assert torch.allclose(g[2], score_lg[s])


@pytest.mark.parametrize("rb, cv", [(False, False), (True, False), (False, True), (True, True)])
def test_bbvi_gradient_estimators_are_unbiased(bbvi_point, rb, cv):
    x, m, log_s2, logits = bbvi_point
    exact = bbvi.exact_gradient(x, m, log_s2, logits, SIGMA2)
    g, reps = _gen(2), 1500
    est = [bbvi.bbvi_gradient(x, m, log_s2, logits, SIGMA2, 8, rb, cv, g) for _ in range(reps)]
    for j, ex in enumerate(exact):
        block = torch.stack([e[j] for e in est])
        z = (block.mean(0) - ex) / (block.std(0) / math.sqrt(reps))
        assert z.abs().max() < 4.5, f"block {j}: largest |z| {z.abs().max():.2f}"  # ~130 components


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_control_variates_with_one_sample_fall_back_to_none(dtype):
    """S = 1 leaves no other samples to fit a on: a = 0, and the estimate is finite and equal
    to the one without control variates (in float32 a floor of 1e-300 would round to 0 and
    give 0/0)."""
    sim = mixture.simulate(20, K=2, D=1, sigma2=SIGMA2, generator=_gen(0), dtype=dtype)
    m, s2 = mixture.init_params(sim.x, 2, _gen(0))
    lam = (m, torch.log(s2), torch.zeros(20, 2, dtype=dtype))
    with_cv = bbvi.bbvi_gradient(sim.x, *lam, SIGMA2, 1, True, True, _gen(1))
    without = bbvi.bbvi_gradient(sim.x, *lam, SIGMA2, 1, True, False, _gen(1))
    for a, b in zip(with_cv, without):
        assert a.dtype == dtype and torch.isfinite(a).all() and torch.equal(a, b)
    f, h = torch.ones(1, 3, 2, dtype=dtype), torch.ones(1, 3, 2, dtype=dtype)
    assert torch.equal(bbvi._cv_coefficients(f, h), torch.zeros(1, 3, 1, dtype=dtype))
    two = bbvi.bbvi_gradient(sim.x, *lam, SIGMA2, 2, True, True, _gen(1))
    assert all(torch.isfinite(g).all() for g in two)


def test_rao_blackwellization_and_control_variates_reduce_bbvi_variance(bbvi_point):
    x, m, log_s2, logits = bbvi_point

    def total_variance(rb, cv):
        g = _gen(3)
        est = [torch.cat([t.flatten() for t in bbvi.bbvi_gradient(x, m, log_s2, logits, SIGMA2, 8,
                                                                   rb, cv, g)]) for _ in range(300)]
        return torch.stack(est).var(0).sum().item()

    naive, rb = total_variance(False, False), total_variance(True, False)
    rb_cv = total_variance(True, True)
    assert naive > 5 * rb and rb > rb_cv


def test_rao_blackwellized_weights_keep_only_the_markov_blanket(bbvi_point):
    x, m, log_s2, logits = bbvi_point
    mu, c = bbvi.sample_q(m, log_s2, logits, 2, _gen(4))
    terms = bbvi.log_terms(x, mu, c, m, log_s2, logits, SIGMA2)
    w_mu, w_c = bbvi.local_weights(terms, c, 3)
    for s in range(2):
        for k in range(3):
            mine = terms["log_lik"][s][c[s] == k].sum()
            expected = terms["log_p_mu"][s, k] - terms["log_q_mu"][s, k] + mine
            assert torch.isclose(w_mu[s, k], expected)
    assert torch.allclose(w_c, terms["log_p_c"] + terms["log_lik"] - terms["log_q_c"])


def test_bbvi_with_variance_reduction_approaches_cavi():
    sim = mixture.simulate(100, K=3, D=1, sigma2=SIGMA2, generator=_gen(6))
    m0, s20 = mixture.init_params(sim.x, 3, _gen(0))
    star = mixture.cavi(sim.x, 3, SIGMA2, m0, s20).elbo[-1]
    res = bbvi.bbvi(sim.x, m0, s20, SIGMA2, n_steps=400, S=10, lr=0.05, eval_every=400,
                    generator=_gen(1))
    assert res.elbo[-1] > res.elbo[0] and abs(res.elbo[-1] - star) < 0.02 * abs(star)


def test_minibatch_bbvi_gradient_is_unbiased(bbvi_point):
    """Doubly stochastic: a random minibatch of b points, the likelihood terms of the global
    weights scaled by n/b; each local row, present with probability b/n, scaled back by n/b
    here, averages to the full gradient too."""
    x, m, log_s2, logits = bbvi_point
    n, b, reps = len(x), 10, 3000
    exact = bbvi.exact_gradient(x, m, log_s2, logits, SIGMA2)
    g = _gen(5)
    blocks = [[], [], []]
    for _ in range(reps):
        idx = torch.randperm(n, generator=g)[:b]
        g_m, g_ls, g_c = bbvi.bbvi_gradient(x[idx], m, log_s2, logits[idx], SIGMA2, 8, True, True,
                                            g, scale=n / b)
        rows = torch.zeros_like(logits).index_copy(0, idx, g_c) * (n / b)
        for block, value in zip(blocks, (g_m, g_ls, rows)):
            block.append(value)
    for j, ex in enumerate(exact):
        block = torch.stack(blocks[j])
        z = (block.mean(0) - ex) / (block.std(0) / math.sqrt(reps))
        assert z.abs().max() < 4.5, f"block {j}: largest |z| {z.abs().max():.2f}"


def test_minibatch_bbvi_needs_rao_blackwellization_and_a_valid_batch(bbvi_point):
    x, m, log_s2, logits = bbvi_point
    with pytest.raises(ValueError, match="Rao-Blackwellized"):
        bbvi.bbvi_gradient(x[:10], m, log_s2, logits[:10], SIGMA2, 4, False, False, _gen(0),
                           scale=4.0)
    for bad in (0, len(x) + 1):
        with pytest.raises(ValueError, match=f"batch_size={bad} must be between 1 and the 40"):
            bbvi.bbvi(x, m, log_s2.exp(), SIGMA2, 1, 4, batch_size=bad)


def test_minibatch_bbvi_moves_only_the_batch_and_approaches_cavi():
    sim = mixture.simulate(100, K=3, D=1, sigma2=SIGMA2, generator=_gen(6))
    m0, s20 = mixture.init_params(sim.x, 3, _gen(0))
    equal_means = torch.zeros_like(m0)               # phi = 1/3 everywhere: every row can move
    one = bbvi.bbvi(sim.x, equal_means, s20, SIGMA2, n_steps=1, S=4, generator=_gen(1),
                    batch_size=20)
    moved = (one.phi - 1 / 3).abs().amax(1) > 1e-6
    assert moved.sum() == 20 and one.examples == [0, 20]
    star = mixture.cavi(sim.x, 3, SIGMA2, m0, s20).elbo[-1]
    res = bbvi.bbvi(sim.x, m0, s20, SIGMA2, n_steps=1000, S=10, lr=0.05, eval_every=1000,
                    generator=_gen(1), batch_size=20)
    assert res.elbo[-1] > res.elbo[0] and abs(res.elbo[-1] - star) < 0.02 * abs(star)


# Forward and reverse KL -------------------------------------------------------------------

def test_forward_kl_is_minimised_by_moment_matching():
    p = kl_fit.bimodal(5.0, 1.0)
    res = kl_fit.fit_gaussian(p, kl_fit.forward_kl, torch.tensor([-2.0, 3.0]), torch.tensor(1.0),
                              steps=400, lr=0.1, optimizer="adam", n_nodes=201)
    assert torch.allclose(res.mean, torch.zeros(2, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(res.std ** 2, torch.full((2,), 26.0, dtype=torch.float64), atol=1e-2)
    # and the closed form: KL(P || N(a, b^2)) is larger anywhere else
    at_opt = kl_fit.forward_kl(p, torch.tensor(0.0), torch.tensor(0.5 * math.log(26)))
    for a, lb in [(0.3, 0.5 * math.log(26)), (0.0, 0.5 * math.log(20)), (0.0, 0.5 * math.log(30))]:
        assert kl_fit.forward_kl(p, torch.tensor(a), torch.tensor(lb)) > at_opt


def test_reverse_kl_has_mode_seeking_minima_and_a_wide_one():
    p = kl_fit.bimodal(5.0, 1.0)
    res = kl_fit.fit_gaussian(p, kl_fit.reverse_kl, torch.tensor([-3.0, 2.0, 0.0]),
                              torch.tensor([0.0, 0.0, 1.5]), steps=300, lr=(1.0, 0.08), n_nodes=401)
    assert torch.allclose(res.mean, torch.tensor([-5.0, 5.0, 0.0], dtype=torch.float64), atol=1e-2)
    assert torch.allclose(res.std, torch.tensor([1.0, 1.0, 4.22], dtype=torch.float64), atol=1e-2)
    assert torch.allclose(res.kl[:2], torch.full((2,), math.log(2), dtype=torch.float64), atol=1e-3)
    assert res.kl[2] > 3.2


def test_quadrature_and_monte_carlo_reverse_kl_agree_and_the_mc_one_is_differentiable():
    p = kl_fit.bimodal(3.0, 0.8)
    mean = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    quad = kl_fit.reverse_kl(p, mean, log_std)
    mc = kl_fit.reverse_kl_mc(p, mean, log_std, 400_000, _gen(5))
    assert abs(mc.item() - quad.item()) < 0.01
    g_mc = torch.autograd.grad(mc, (mean, log_std))
    g_quad = torch.autograd.grad(quad, (mean, log_std))
    assert all(abs(a - b) < 0.02 for a, b in zip(g_mc, g_quad))


def test_fit_gaussian_rejects_unknown_optimizer():
    with pytest.raises(ValueError, match="gd"):
        kl_fit.fit_gaussian(kl_fit.bimodal(), kl_fit.forward_kl, 0.0, 0.0, optimizer="lbfgs")


def test_svi_default_step_size_does_not_let_the_first_minibatch_replace_the_start():
    """With ρ_0 = 1 (τ = 1) the first 10-point minibatch, scaled up 1000 times, replaced the
    CAVI start and collapsed a component (1.95 nats per point short after 10 passes: the
    Section 3 notebook stopped at its default settings). The default τ keeps SVI near the
    optimum from the first steps."""
    from nfcourse.vi import mixture, svi
    n = 10_000
    sim = mixture.simulate(n, K=5, D=2, sigma2=25.0, generator=torch.Generator().manual_seed(6))
    best = mixture.cavi_restarts(sim.x, 5, 25.0, 3, torch.Generator().manual_seed(0))
    m0, s20 = best.m_history[0], torch.ones(5)
    run = svi.svi(sim.x, m0, s20, 25.0, 10, 300, eval_every=300,
                  generator=torch.Generator().manual_seed(1))
    assert (best.elbo[-1] - run.elbo[-1]) / n < 1e-2
    collapsed = svi.svi(sim.x, m0, s20, 25.0, 10, 300, tau=1.0, eval_every=300,
                        generator=torch.Generator().manual_seed(1))
    assert (best.elbo[-1] - collapsed.elbo[-1]) / n > 1.0    # the failure this guards against


def test_cavi_runs_the_updates_it_is_given():
    """Section 2 runs CAVI on the student's own updates: given the reference pair it is the
    same run, and a wrong update changes it."""
    from nfcourse.vi import mixture
    sim = mixture.simulate(200, K=3, generator=torch.Generator().manual_seed(1))
    calls = []

    def counted_phi(x, m, s2):
        calls.append(1)
        return mixture.update_phi(x, m, s2)
    start = mixture.init_params(sim.x, 3, torch.Generator().manual_seed(0))
    plain = mixture.cavi(sim.x, 3, 25.0, *start)
    given = mixture.cavi(sim.x, 3, 25.0, *start, updates=(counted_phi, mixture.update_m_s2))
    assert len(calls) == given.iterations and given.elbo == plain.elbo

    def wrong_m_s2(x, phi, sigma2):                 # forgets the prior's precision 1/sigma2
        m, s2 = mixture.update_m_s2(x, phi, sigma2)
        return m, 1 / (1 / s2 - 1 / sigma2)
    other = mixture.cavi(sim.x, 3, 25.0, *start, updates=(mixture.update_phi, wrong_m_s2))
    assert other.elbo[-1] != plain.elbo[-1]
