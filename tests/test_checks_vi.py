"""The self-checks of sections 2 and 3: they pass the reference answers, let an unfinished
stub's NotImplementedError through, and name each typical mistake."""

from __future__ import annotations

import math

import pytest
import scipy.integrate
import torch
from torch.distributions import Normal

from nfcourse.checks import vi as check
from nfcourse.checks.core import SelfCheckError
from nfcourse.curriculum import STUB_PREFIX
from nfcourse.vi import bbvi, kl_fit, mixture, svi


pytestmark = pytest.mark.usefixtures("one_thread")


def _stub(*args, **kwargs):
    raise NotImplementedError(f"{STUB_PREFIX}: replace this line with your code.")


def _crash(*args, **kwargs):
    return args[0][..., 10 ** 6] if torch.is_tensor(args[0]) else args[0]["log_p_z"]  # a typo


# The reference answers, written as a student would (not calling the reference code) ---------

def reverse_kl_mc(p, mean, log_std, n):
    x = mean + log_std.exp() * torch.randn(n, dtype=mean.dtype)
    return (Normal(mean, log_std.exp()).log_prob(x) - p.log_prob(x)).mean()


def expected_log_lik(x, phi, m, s2):
    sq = x[:, None] ** 2 - 2 * x[:, None] * m + m ** 2 + s2
    return -0.5 * (math.log(2 * math.pi) + (phi * sq).sum(-1))


def update_phi(x, m, s2):
    return torch.softmax(x @ m.T - 0.5 * ((m ** 2).sum(-1) + x.shape[-1] * s2), -1)


def update_m_s2(x, phi, sigma2):
    precision = 1 / sigma2 + phi.sum(0)
    return phi.T @ x / precision[:, None], 1 / precision


def svi_step(x, n, m, s2, sigma2, rho, scale=None, natural=True, prior=True, flip=False):
    phi = update_phi(x, m, s2)
    scale = n / len(x) if scale is None else scale
    hat1, hat2 = scale * phi.T @ x, (1 / sigma2 if prior else 0) + scale * phi.sum(0)
    r = 1 - rho if flip else rho
    if not natural:
        m_hat, s2_hat = hat1 / hat2[:, None], 1 / hat2
        return (1 - r) * m + r * m_hat, (1 - r) * s2 + r * s2_hat
    lam1, lam2 = (1 - r) * m / s2[:, None] + r * hat1, (1 - r) / s2 + r * hat2
    return lam1 / lam2[:, None], 1 / lam2


def normal_score(x, mu, sigma):
    return (x - mu) / sigma ** 2, -1 / sigma + (x - mu) ** 2 / sigma ** 3


def control_variate(f, h, h_mean, sign=1.0, centre=True):
    a = sign * torch.cov(torch.stack([f, h]))[0, 1] / h.var()
    return (f - a * (h - (h_mean if centre else 0))).mean(), a


def tail_given(y, t, rate):
    return torch.exp(-rate * (t - y).clamp_min(0))


def rb_weight_mu(terms, c, K):
    onehot = torch.nn.functional.one_hot(c, K).to(terms["log_lik"].dtype)
    return terms["log_p_mu"] + (onehot * terms["log_lik"][..., None]).sum(1) - terms["log_q_mu"]


REFERENCES = [
    (check.reverse_kl_mc, reverse_kl_mc), (check.expected_log_lik, expected_log_lik),
    (check.cavi_phi, update_phi), (check.cavi_m_s2, update_m_s2), (check.svi_step, svi_step),
    (check.normal_score, normal_score),
    (check.score_function_terms, lambda x, mu: x ** 2 * (x - mu)),
    (check.control_variate, control_variate), (check.tail_given, tail_given),
    (check.rb_weight_mu, rb_weight_mu),
]
IDS = [c.__name__ for c, _ in REFERENCES]


@pytest.mark.parametrize("check_fn, answer", REFERENCES, ids=IDS)
def test_reference_answer_passes(check_fn, answer, capsys):
    check_fn(answer)
    assert "✔" in capsys.readouterr().out


@pytest.mark.parametrize("check_fn", [c for c, _ in REFERENCES], ids=IDS)
def test_unfinished_stub_is_reported_not_raised(check_fn, capsys):
    check_fn(_stub)
    out = capsys.readouterr().out
    assert out.startswith("○ Exercise ") and "not attempted yet" in out, out


@pytest.mark.parametrize("check_fn", [c for c, _ in REFERENCES if c is not check.reverse_kl_mc],
                         ids=[i for i in IDS if i != "reverse_kl_mc"])
def test_a_crash_is_reported_with_the_inputs(check_fn):
    with pytest.raises(SelfCheckError, match="your function raised"):
        check_fn(_crash)


def _fails_with(check_fn, answer, *phrases):
    with pytest.raises(SelfCheckError) as info:
        check_fn(answer)
    message = str(info.value)
    assert message.startswith("✘ Exercise"), message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in:\n{message}"


# Section 2 ---------------------------------------------------------------------------------

def test_reverse_kl_mistakes():
    def sign(p, mean, log_std, n):
        return -reverse_kl_mc(p, mean, log_std, n)

    def forward(p, mean, log_std, n):
        x = p.sample((n,))
        return (p.log_prob(x) - Normal(mean, log_std.exp()).log_prob(x)).mean()

    def log_std_as_std(p, mean, log_std, n):
        x = mean + log_std * torch.randn(n, dtype=mean.dtype)
        return (Normal(mean, log_std).log_prob(x) - p.log_prob(x)).mean()

    def no_reparam(p, mean, log_std, n):
        x = Normal(mean, log_std.exp()).sample((n,))
        return (Normal(mean, log_std.exp()).log_prob(x) - p.log_prob(x)).mean().detach()

    def per_sample(p, mean, log_std, n):
        x = mean + log_std.exp() * torch.randn(n, dtype=mean.dtype)
        return Normal(mean, log_std.exp()).log_prob(x) - p.log_prob(x)

    _fails_with(check.reverse_kl_mc, sign, "sign is flipped")
    _fails_with(check.reverse_kl_mc, forward, "KL(P‖Q), the forward KL")
    _fails_with(check.reverse_kl_mc, log_std_as_std, "exp(log_std)")
    _fails_with(check.reverse_kl_mc, no_reparam, "does not depend differentiably", "rsample")
    _fails_with(check.reverse_kl_mc, per_sample, "single number")


@pytest.mark.parametrize("mistake, phrase", [
    (lambda x, phi, m, s2: expected_log_lik(x, phi, m, 0 * s2), "m_k² + s_k², not m_k²"),
    (lambda x, phi, m, s2: expected_log_lik(x, phi, m, s2) + 0.5 * math.log(2 * math.pi), "log 2π"),
    (lambda x, phi, m, s2: -expected_log_lik(x, phi, m, s2), "sign is flipped"),
    (lambda x, phi, m, s2: 2 * expected_log_lik(x, phi, m, s2), "factor ½"),
    (lambda x, phi, m, s2: expected_log_lik(x, phi, m, -s2), "wrong sign"),
    (lambda x, phi, m, s2: expected_log_lik(x, phi, m, s2).sum(), "not the sum"),
])
def test_expected_log_lik_mistakes(mistake, phrase):
    _fails_with(check.expected_log_lik, mistake, phrase)


def _phi_logits(x, m, s2, d_factor=True):
    D = x.shape[-1] if d_factor else 1
    return x @ m.T - 0.5 * ((m ** 2).sum(-1) + D * s2)


@pytest.mark.parametrize("mistake, phrase", [
    (lambda x, m, s2: torch.softmax(x @ m.T, -1), "−E[‖μ_k‖²]/2 term is missing"),
    (lambda x, m, s2: torch.softmax(x @ m.T - 0.5 * (m ** 2).sum(-1), -1), "variance term D s_k²"),
    (lambda x, m, s2: torch.softmax(_phi_logits(x, m, s2, d_factor=False), -1),
     "s_k² per coordinate"),
    (lambda x, m, s2: torch.softmax(_phi_logits(x, m, s2), 0), "wrong axis"),
    (lambda x, m, s2: torch.exp(_phi_logits(x, m, s2)), "must be normalised"),
    (lambda x, m, s2: torch.softmax(x @ m.T + 0.5 * ((m ** 2).sum(-1) + x.shape[-1] * s2), -1),
     "sign of the E[‖μ_k‖²]/2 term"),
    (lambda x, m, s2: update_phi(x, m, s2).T, "wrong shape"),
])
def test_cavi_phi_mistakes(mistake, phrase):
    _fails_with(check.cavi_phi, mistake, phrase)


@pytest.mark.parametrize("mistake, phrase", [
    (lambda x, phi, sigma2: (phi.T @ x / phi.sum(0)[:, None], 1 / phi.sum(0)),
     "prior precision 1/σ² is missing: s_k²"),
    (lambda x, phi, sigma2: (update_m_s2(x, phi, sigma2)[0], 1 / (sigma2 + phi.sum(0))),
     "precision 1/σ², not σ²"),
    (lambda x, phi, sigma2: (phi.T @ x / phi.sum(0)[:, None], update_m_s2(x, phi, sigma2)[1]),
     "missing in the denominator of m_k"),
    (lambda x, phi, sigma2: (phi.T @ x, update_m_s2(x, phi, sigma2)[1]), "divide Σ_i φ_ik x_i"),
    (lambda x, phi, sigma2: update_m_s2(x, phi, sigma2)[0], "should return a pair"),
    (lambda x, phi, sigma2: (update_m_s2(x, phi, sigma2)[0].T, update_m_s2(x, phi, sigma2)[1]),
     "shape [K, D]"),
])
def test_cavi_m_s2_mistakes(mistake, phrase):
    _fails_with(check.cavi_m_s2, mistake, phrase)


# Section 3 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, phrase", [
    ({"scale": 1.0}, "scaled by n/b"),
    ({"natural": False}, "not m and s² themselves"),
    ({"prior": False}, "prior precision 1/σ² is missing"),
    ({"flip": True}, "ρ weighs the new estimate"),
])
def test_svi_step_mistakes(kwargs, phrase):
    _fails_with(check.svi_step, lambda *a: svi_step(*a, **kwargs), phrase)


def test_svi_step_that_is_not_a_cavi_sweep_at_full_batch_is_caught():
    _fails_with(check.svi_step, lambda x, n, m, s2, sigma2, rho: (m, s2),
                "full-batch step with ρ = 1", "ρ weighs the new estimate")


@pytest.mark.parametrize("mistake, phrase", [
    (lambda x, mu, sigma: ((mu - x) / sigma ** 2, normal_score(x, mu, sigma)[1]), "sign error"),
    (lambda x, mu, sigma: (x - mu, normal_score(x, mu, sigma)[1]), "1/σ² factor is missing"),
    (lambda x, mu, sigma: ((x - mu) / sigma, normal_score(x, mu, sigma)[1]), "σ², not σ"),
    (lambda x, mu, sigma: (normal_score(x, mu, sigma)[0], (x - mu) ** 2 / sigma ** 3), "−1/σ"),
    (lambda x, mu, sigma: (normal_score(x, mu, sigma)[0],
                           -0.5 / sigma ** 2 + (x - mu) ** 2 / (2 * sigma ** 4)), "respect to σ²"),
])
def test_normal_score_mistakes(mistake, phrase):
    _fails_with(check.normal_score, mistake, phrase)


@pytest.mark.parametrize("mistake, phrase", [
    (lambda x, mu: x ** 2 * (mu - x), "sign error"),
    (lambda x, mu: x - mu, "multiply the score by f(x)"),
    (lambda x, mu: 2 * x, "reparameterisation"),
    (lambda x, mu: x ** 2, "multiply by the score"),
    (lambda x, mu: (x ** 2 * (x - mu)).mean(), "one term per sample"),
])
def test_score_function_mistakes(mistake, phrase):
    _fails_with(check.score_function_terms, mistake, phrase)


@pytest.mark.parametrize("mistake, phrase", [
    (lambda f, h, hm: control_variate(f, h, hm, sign=-1.0), "wrong sign of the coefficient"),
    (lambda f, h, hm: ((f - (a := torch.cov(torch.stack([f, h]))[0, 1] / f.var()) * (h - hm)).mean(),
                       a),
     "the variance of the control"),
    (lambda f, h, hm: control_variate(f, h, hm, centre=False), "known mean"),
    (lambda f, h, hm: ((f - (a := control_variate(f, h, hm)[1]) * (h - hm)), a), "not the samples"),
])
def test_control_variate_mistakes(mistake, phrase):
    _fails_with(check.control_variate, mistake, phrase)


@pytest.mark.parametrize("mistake, phrase", [
    (lambda y, t, rate: torch.exp(-rate * (t - y)), "exceed 1"),
    (lambda y, t, rate: 1 - tail_given(y, t, rate), "P(W ≤ t − y)"),
    (lambda y, t, rate: torch.exp(-(t - y).clamp_min(0) / rate), "do not divide"),
])
def test_tail_given_mistakes(mistake, phrase):
    _fails_with(check.tail_given, mistake, phrase)


def _total(terms):
    return ((terms["log_p_mu"] - terms["log_q_mu"]).sum(-1)
            + (terms["log_p_c"] + terms["log_lik"] - terms["log_q_c"]).sum(-1))


@pytest.mark.parametrize("mistake, phrase", [
    (lambda tm, c, K: tm["log_p_mu"] - tm["log_q_mu"] + tm["log_lik"].sum(-1, keepdim=True),
     "not Rao-Blackwellized"),
    (lambda tm, c, K: _total(tm)[:, None].expand(-1, K), "naive BBVI weight"),
    (lambda tm, c, K: rb_weight_mu(tm, c, K) + tm["log_q_mu"], "− log q(μ_k) term is missing"),
    (lambda tm, c, K: tm["log_p_mu"] - tm["log_q_mu"], "points assigned to k are missing"),
    (lambda tm, c, K: rb_weight_mu(tm, c, K).T, "wrong shape"),
])
def test_rb_weight_mistakes(mistake, phrase):
    _fails_with(check.rb_weight_mu, mistake, phrase)


@pytest.mark.parametrize("check_fn, mistake, phrase", [
    # a minibatch that leaves a component without points: its s² must be the prior's σ²
    (check.svi_step, lambda x, n, m, s2, sigma2, rho: svi_step(x, n, m, s2, sigma2 * len(x) / n,
                                                               rho),
     "your update scales the prior by n/b as well; only the data terms are scaled"),
    # the known mean moved by 1 leaves the estimate at mean(f)
    (check.control_variate, lambda f, h, hm: control_variate(f, h, h.mean()),
     "you centred the control on its own sample mean"),
    (check.control_variate, lambda f, h, hm: control_variate(f, h, 0.5),
     "use the h_mean you are given"),
    # samples where f(x) = x² and f′(x) = 2x differ
    (check.score_function_terms, lambda x, mu: 2 * x * (x - mu),
     "you multiplied the score by f′(x) = 2x"),
    (check.score_function_terms, lambda x, mu: x ** 3, "do not depend on μ"),
    # x = μ, where ∂/∂σ log N is −1/σ whatever the quadratic term
    (check.normal_score, lambda x, mu, sigma: (normal_score(x, mu, sigma)[0],
                                               -1 / sigma ** 2 + (x - mu) ** 2 / sigma ** 3),
     "the normaliser term is off"),
])
def test_probes_name_the_part_that_is_wrong(check_fn, mistake, phrase):
    _fails_with(check_fn, mistake, phrase)


@pytest.mark.parametrize("check_fn, answer", REFERENCES, ids=IDS)
def test_a_check_leaves_the_notebook_random_state_alone(check_fn, answer):
    """The notebook's global RNG is the same before and after a check, even for the one
    that seeds it to make the student's sampling reproducible (reverse_kl_mc)."""
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    check_fn(answer)
    assert torch.equal(torch.get_rng_state(), before)


def test_checks_compare_with_the_reference_implementation():
    """Guard against the checks drifting from nfcourse.vi: the student-style answers above,
    the reference code the checks compare with, and an independent computation agree."""
    g = torch.Generator().manual_seed(0)
    x, m, s2 = (torch.randn(5, 2, generator=g, dtype=torch.float64),
                torch.randn(3, 2, generator=g, dtype=torch.float64),
                torch.rand(3, generator=g, dtype=torch.float64) + 0.1)
    phi = torch.softmax(torch.randn(5, 3, generator=g, dtype=torch.float64), -1)
    assert torch.allclose(update_phi(x, m, s2), mixture.update_phi(x, m, s2))
    assert all(torch.allclose(a, b) for a, b in zip(update_m_s2(x, phi, 4.0),
                                                    mixture.update_m_s2(x, phi, 4.0)))
    assert all(torch.allclose(a, b) for a, b in zip(svi_step(x, 9, m, s2, 4.0, 0.4),
                                                    svi.svi_step(x, 9, m, s2, 4.0, 0.4)))
    assert torch.allclose(expected_log_lik(x[:, 0], phi, m[:, 0], s2),
                          mixture.expected_log_lik(x[:, :1], phi, m[:, :1], s2))

    # KL(Q || P) by quadrature (what reverse_kl_mc is checked against) vs scipy's adaptive
    # quadrature of q log(q / p), and vs the student-style Monte Carlo answer
    p = kl_fit.bimodal(loc=3.0, scale=0.8)
    mean, log_std = torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    q = Normal(mean, log_std.exp())

    def integrand(v):
        t = torch.tensor(v, dtype=torch.float64)
        return float(q.log_prob(t).exp() * (q.log_prob(t) - p.log_prob(t)))

    independent = scipy.integrate.quad(integrand, -30, 30, points=[-3, 0, 1, 3], limit=200)[0]
    assert abs(kl_fit.reverse_kl(p, mean, log_std).item() - independent) < 1e-6
    torch.manual_seed(3)
    assert abs(reverse_kl_mc(p, mean, log_std, 400_000).item() - independent) < 0.01

    # the Rao-Blackwellized weights: bbvi.local_weights, the student-style answer, and a loop
    m1 = torch.randn(3, 1, generator=g, dtype=torch.float64)
    log_s2 = torch.zeros(3, dtype=torch.float64)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64)
    x1 = 3 * torch.randn(6, 1, generator=g, dtype=torch.float64)
    mu, c = bbvi.sample_q(m1, log_s2, logits, 4, g)
    terms = bbvi.log_terms(x1, mu, c, m1, log_s2, logits, 25.0)
    w_mu, _ = bbvi.local_weights(terms, c, 3)
    loop = torch.empty(4, 3, dtype=torch.float64)
    for s_ in range(4):
        for k in range(3):
            mu_k = mu[s_, k, 0]
            mine = [Normal(mu_k, 1.0).log_prob(x1[i, 0]) for i in range(6) if c[s_, i] == k]
            loop[s_, k] = (Normal(0.0, 5.0).log_prob(mu_k) + sum(mine, torch.tensor(0.0))
                           - Normal(m1[k, 0], log_s2[k].exp().sqrt()).log_prob(mu_k))
    assert torch.allclose(w_mu, loop) and torch.allclose(rb_weight_mu(terms, c, 3), loop)
