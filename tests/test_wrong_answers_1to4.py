"""Plausible wrong answers to every checked code exercise of Sections 1–4, written the way a
student writes them, and what the self-check says to each (issue #26).

Each entry of :data:`TABLE` is a check, a wrong answer, and either the part of the message
that names the mistake (a substring; ``" ... "`` separates several parts) or
:data:`NOT_NAMED` (NAMED=False): the check catches the answer but can only say that the
values are wrong. The tests ask that every wrong answer is caught, that each named one gets
its hint, that at least 80 % of each section's wrong answers are named, and that every
mistake listed in the checks' tables can be reached by one of these answers (a hint that can
never be reached is a defect). ``python tests/test_wrong_answers_1to4.py`` prints the table
section by section (caught / named / total)."""

from __future__ import annotations

import ast
import functools
import inspect
import math
import re
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal, Normal

from nfcourse import bayes, objectives
from nfcourse.checks import SelfCheckError
from nfcourse.checks import bayes as check1
from nfcourse.checks import vae as check4
from nfcourse.checks import vi as check23
from nfcourse.checks.mistakes import kl_diag_std_normal_mistakes

sys.path.insert(0, str(Path(__file__).parent))  # when run as a script
import test_checks_bayes as t1  # noqa: E402  (the Section 1 wrong answers, reused)
from test_checks_mistakes import STUDENT_KL  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

#: NAMED=False: caught, but the message only shows expected against got.
NOT_NAMED = None

#: The share of each section's wrong answers whose message names the mistake.
NAMED_SHARE = 0.8

# Section 1 ---------------------------------------------------------------------------------
# test_checks_bayes.py holds most of them; the rest are here. Its "garbage" answers (twice
# the right value) are wrong in no particular way: only caught.

S1_EXTRA = {
    check1.log_density_linear: {
        "half the log-det (Σ = A)": (
            lambda x, A, b: bayes.log_density_linear(x, A, b) + 0.5 * t1._log_det(A),
            "only half the log-det"),
        "forward map, + log-det": (lambda x, A, b: t1._std_normal_terms(x @ A.T + b).sum(-1)
                                   + t1._log_det(A), "pushed x forwards"),
        "A as a Cholesky factor": (
            lambda x, A, b: MultivariateNormal(b, scale_tril=A).log_prob(x),
            "constraint LowerCholesky()"),  # torch names it
    },
    check1.joint_table: {
        "no p(S|C)": (lambda c, s, r, w: t1._joint(c, torch.ones_like(s), r, w),
                      "p(S | C) is missing"),
        "no p(R|C)": (lambda c, s, r, w: t1._joint(c, s, torch.ones_like(r), w),
                      "p(R | C) is missing"),
    },
    check1.log_likelihood: {
        "2π alone in the constant": (lambda mu, x, v: -0.5 * x.numel() * math.log(2 * math.pi)
                                     - 0.5 * ((x - mu) ** 2).sum() / v,
                                     "sigma^2 belongs inside the log"),
        "the likelihood": (lambda mu, x, v: Normal(mu, math.sqrt(v)).log_prob(x).exp().prod(),
                           "this is the likelihood itself"),
    },
    check1.posterior_params: {
        "times the noise": (t1._post(lambda x, n, v, a, s: v * x.sum() * s, t1._right_var),
                            "don't multiply"),
    },
    check1.posterior: {
        "softmax of probabilities": (
            lambda j, q, e: torch.softmax(t1._unnormalised(j, q, e), 0),
            "softmax exponentiates"),
        "p(evidence) only": (lambda j, q, e: t1._unnormalised(j, q, e).sum(),
                             "wrong shape ... one probability per value"),
    },
    check1.mle: {
        "keepdim": (lambda x: x.mean(-1, keepdim=True), "wrong shape ... return one number"),
    },
    check1.kl_diag_std_normal: {
        "σ and log σ": (STUDENT_KL["sigma and log sigma"], "and log σ where log σ² belongs"),
    },
    check1.map_estimate: {
        "swapped": (lambda x, a, s: x.sum() / (x.numel() + a / s), "are swapped"),
        "not divided by the noise": (lambda x, a, s: bayes.posterior_params(x, a, s)[1] * x.sum(),
                                     "the division by the noise variance is missing"),
    },
}


def _catalogue() -> list:
    """The shared KL mistakes (nfcourse.checks.mistakes), in the order of STUDENT_KL."""
    return kl_diag_std_normal_mistakes(torch.zeros(1, 1), torch.zeros(1, 1))


def _section1() -> dict[Callable, dict]:
    table: dict[Callable, dict] = {}
    for name, label, fn, message in t1.CASES:
        hint = NOT_NAMED if label == "garbage" else message
        table.setdefault(getattr(check1, name), {})[label] = (fn, hint)
    for check, answers in S1_EXTRA.items():
        table[check].update(answers)
    return table


# Section 2 ---------------------------------------------------------------------------------

def _q(mean, log_std):
    return Normal(mean, log_std.exp())


def _kl_mc(p, mean, log_std, n, std=None, draw=None):
    std = log_std.exp() if std is None else std
    x = mean + std * torch.randn(n, dtype=mean.dtype) if draw is None else draw
    return Normal(mean, std).log_prob(x) - p.log_prob(x)


REVERSE_KL = {
    "sign": (lambda p, mean, ls, n: -_kl_mc(p, mean, ls, n).mean(), "sign is flipped"),
    "forward KL": (lambda p, mean, ls, n: (p.log_prob(x := p.sample((n,)))
                                           - _q(mean, ls).log_prob(x)).mean(),
                   "KL(P‖Q), the forward KL"),
    "log_std as std": (lambda p, mean, ls, n: _kl_mc(p, mean, ls, n, std=ls).mean(),
                       "use exp(log_std) as the scale"),
    "sample(), detached": (lambda p, mean, ls, n: _kl_mc(
        p, mean, ls, n, draw=_q(mean, ls).sample((n,))).mean().detach(),
        "does not depend differentiably ... rsample"),
    "sample() without rsample": (lambda p, mean, ls, n: _kl_mc(
        p, mean, ls, n, draw=_q(mean, ls).sample((n,))).mean(), ".sample() cuts it"),
    "per sample": (lambda p, mean, ls, n: _kl_mc(p, mean, ls, n), "single number"),
    "sum, not mean": (lambda p, mean, ls, n: _kl_mc(p, mean, ls, n).sum(), "average them"),
    "log_std as log-variance": (lambda p, mean, ls, n: _kl_mc(
        p, mean, ls, n, std=(0.5 * ls).exp()).mean(), "not the log-variance"),
    "x detached": (lambda p, mean, ls, n: _kl_mc(
        p, mean, ls, n, draw=(mean + ls.exp() * torch.randn(n, dtype=mean.dtype)).detach()
    ).mean(), ".sample() cuts it, and so does detaching x"),
    "log q with unit variance": (lambda p, mean, ls, n: (
        Normal(mean, 1.0).log_prob(x := mean + ls.exp() * torch.randn(n, dtype=mean.dtype))
        - p.log_prob(x)).mean(), NOT_NAMED),
    "log q missing": (lambda p, mean, ls, n: -p.log_prob(
        mean + ls.exp() * torch.randn(n, dtype=mean.dtype)).mean(), "the log q(x) term"),
}


def _ell(x, phi, m, s2):
    sq = x[:, None] ** 2 - 2 * x[:, None] * m + m ** 2 + s2
    return -0.5 * (math.log(2 * math.pi) + (phi * sq).sum(-1))


EXPECTED_LOG_LIK = {
    "no s²": (lambda x, phi, m, s2: _ell(x, phi, m, 0 * s2), "m_k² + s_k², not m_k²"),
    "no log 2π": (lambda x, phi, m, s2: _ell(x, phi, m, s2) + 0.5 * math.log(2 * math.pi),
                  "log 2π normalising term"),
    "sign": (lambda x, phi, m, s2: -_ell(x, phi, m, s2), "sign is flipped"),
    "no ½": (lambda x, phi, m, s2: 2 * _ell(x, phi, m, s2), "factor ½"),
    "s² sign": (lambda x, phi, m, s2: _ell(x, phi, m, -s2), "s_k² enters with the wrong sign"),
    "summed over points": (lambda x, phi, m, s2: _ell(x, phi, m, s2).sum(), "not the sum"),
    "φ not applied": (lambda x, phi, m, s2: _ell(x, torch.ones_like(phi), m, s2),
                      "weight each component's term by φ_ik"),
    "x m without broadcasting": (lambda x, phi, m, s2: -0.5 * (
        math.log(2 * math.pi) + (phi * (x ** 2 - 2 * x * m + m ** 2 + s2)).sum(-1)), NOT_NAMED),
    "per component": (lambda x, phi, m, s2: -0.5 * phi * (
        math.log(2 * math.pi) + (x[:, None] - m) ** 2 + s2), "wrong shape ... over k"),
}


def _logits(x, m, s2, D=None):
    D = x.shape[-1] if D is None else D
    return x @ m.T - 0.5 * ((m ** 2).sum(-1) + D * s2)


CAVI_PHI = {
    "no E‖μ‖² term": (lambda x, m, s2: torch.softmax(x @ m.T, -1), "E[‖μ_k‖²]/2 term is missing"),
    "no D s²": (lambda x, m, s2: torch.softmax(x @ m.T - 0.5 * (m ** 2).sum(-1), -1),
                "variance term D s_k² is missing"),
    "s² once, not D times": (lambda x, m, s2: torch.softmax(_logits(x, m, s2, D=1), -1),
                             "s_k² per coordinate"),
    "wrong axis": (lambda x, m, s2: torch.softmax(_logits(x, m, s2), 0), "wrong axis"),
    "not normalised": (lambda x, m, s2: torch.exp(_logits(x, m, s2)), "must be normalised"),
    "sign": (lambda x, m, s2: torch.softmax(x @ m.T + 0.5 * ((m ** 2).sum(-1)
                                                            + x.shape[-1] * s2), -1),
             "sign of the E[‖μ_k‖²]/2 term"),
    "transposed": (lambda x, m, s2: torch.softmax(_logits(x, m, s2), -1).T, "wrong shape"),
    "predictive density": (lambda x, m, s2: torch.softmax(torch.stack([
        MultivariateNormal(mk, (1 + sk) * torch.eye(x.shape[-1], dtype=x.dtype)).log_prob(x)
        for mk, sk in zip(m, s2)], -1), -1), NOT_NAMED),
    "log φ": (lambda x, m, s2: torch.log_softmax(_logits(x, m, s2), -1),
              "these are log φ"),
}


def _m_s2(x, phi, sigma2):
    precision = 1 / sigma2 + phi.sum(0)
    return phi.T @ x / precision[:, None], 1 / precision


CAVI_M_S2 = {
    "no prior precision": (lambda x, phi, sigma2: (phi.T @ x / phi.sum(0)[:, None],
                                                   1 / phi.sum(0)),
                           "prior precision 1/σ² is missing: s_k²"),
    "σ² for 1/σ² in s²": (lambda x, phi, sigma2: (_m_s2(x, phi, sigma2)[0],
                                                  1 / (sigma2 + phi.sum(0))),
                          "precision 1/σ², not σ²"),
    "no prior in m": (lambda x, phi, sigma2: (phi.T @ x / phi.sum(0)[:, None],
                                              _m_s2(x, phi, sigma2)[1]),
                      "missing in the denominator of m_k"),
    "m not divided": (lambda x, phi, sigma2: (phi.T @ x, _m_s2(x, phi, sigma2)[1]),
                      "divide Σ_i φ_ik x_i"),
    "σ² for 1/σ² in m": (lambda x, phi, sigma2: (
        phi.T @ x / (sigma2 + phi.sum(0))[:, None], _m_s2(x, phi, sigma2)[1]),
        "the prior enters as 1/σ², not σ²"),
    "s² per coordinate": (lambda x, phi, sigma2: (
        _m_s2(x, phi, sigma2)[0], _m_s2(x, phi, sigma2)[1][:, None].expand(-1, x.shape[1])),
        "one variance s_k² per component: shape [K]"),
    "only m": (lambda x, phi, sigma2: _m_s2(x, phi, sigma2)[0], "should return a pair"),
    "m transposed": (lambda x, phi, sigma2: (_m_s2(x, phi, sigma2)[0].T,
                                             _m_s2(x, phi, sigma2)[1]), "shape [K, D]"),
    "φ summed over k": (lambda x, phi, sigma2: (  # a broadcasting crash: [K, D] / [n, 1]
        phi.T @ x / (1 / sigma2 + phi.sum(-1))[:, None], 1 / (1 / sigma2 + phi.sum(-1))),
        NOT_NAMED),
}


# Section 3 ---------------------------------------------------------------------------------

def _svi(x, n, m, s2, sigma2, rho, scale=None, natural=True, prior=True, flip=False,
         prior_scaled=False, to_moments=True):
    """An SVI step as a student writes it, with one of the usual mistakes switched on."""
    phi = check23._mix.update_phi(x, m, s2)
    scale = n / len(x) if scale is None else scale
    prior_prec = (scale if prior_scaled else 1.0) / sigma2 if prior else 0.0
    hat1, hat2 = scale * phi.T @ x, prior_prec + scale * phi.sum(0)
    r = 1 - rho if flip else rho
    if not natural:
        return (1 - r) * m + r * hat1 / hat2[:, None], (1 - r) * s2 + r / hat2
    lam1, lam2 = (1 - r) * m / s2[:, None] + r * hat1, (1 - r) / s2 + r * hat2
    return (lam1 / lam2[:, None], 1 / lam2) if to_moments else (lam1, lam2)


SVI_STEP = {
    "not scaled by n/b": (lambda *a: _svi(*a, scale=1.0), "scaled by n/b"),
    "blends m and s²": (lambda *a: _svi(*a, natural=False), "not m and s² themselves"),
    "no prior": (lambda *a: _svi(*a, prior=False), "prior precision 1/σ² is missing"),
    "ρ flipped": (lambda *a: _svi(*a, flip=True), "ρ weighs the new estimate"),
    "returns its input": (lambda x, n, m, s2, sigma2, rho: (m, s2),
                          "ρ weighs the new estimate"),
    "prior scaled by n/b": (lambda *a: _svi(*a, prior_scaled=True),
                            "scales the prior by n/b as well"),
    "natural parameters returned": (lambda *a: _svi(*a, to_moments=False),
                                    "natural parameters"),
    "b/n, not n/b": (lambda *a: _svi(*a, scale=len(a[0]) / a[1]), "not b/n"),
    "CAVI sweep on the minibatch": (lambda x, n, m, s2, sigma2, rho: check23._mix.update_m_s2(
        x, check23._mix.update_phi(x, m, s2), sigma2), "scaled by n/b"),
}


def _score(x, mu, sigma):
    return (x - mu) / sigma ** 2, -1 / sigma + (x - mu) ** 2 / sigma ** 3


NORMAL_SCORE = {
    "d_mu sign": (lambda x, mu, s: ((mu - x) / s ** 2, _score(x, mu, s)[1]), "sign error"),
    "no 1/σ²": (lambda x, mu, s: (x - mu, _score(x, mu, s)[1]), "1/σ² factor is missing"),
    "σ for σ²": (lambda x, mu, s: ((x - mu) / s, _score(x, mu, s)[1]), "σ², not σ"),
    "no −1/σ": (lambda x, mu, s: (_score(x, mu, s)[0], (x - mu) ** 2 / s ** 3), "−1/σ"),
    "d/dσ²": (lambda x, mu, s: (_score(x, mu, s)[0], -0.5 / s ** 2
                                + (x - mu) ** 2 / (2 * s ** 4)), "respect to σ², not σ"),
    "d_sigma sign": (lambda x, mu, s: (_score(x, mu, s)[0], -_score(x, mu, s)[1]),
                     "sign error: ∂/∂σ"),
    "(x − μ)²/σ²": (lambda x, mu, s: (_score(x, mu, s)[0], -1 / s + (x - mu) ** 2 / s ** 2),
                    "(x − μ)²/σ³"),
    "−1/σ²": (lambda x, mu, s: (_score(x, mu, s)[0], -1 / s ** 2 + (x - mu) ** 2 / s ** 3),
              "the normaliser term is off"),
    "stacked": (lambda x, mu, s: torch.stack(_score(x, mu, s)), "return a tuple"),
    "½ kept in d_mu": (lambda x, mu, s: ((x - mu) / (2 * s ** 2), _score(x, mu, s)[1]),
                       "the factor in front of x − μ is off"),
    "μ dropped in d_mu": (lambda x, mu, s: (x / s ** 2, _score(x, mu, s)[1]),
                          "proportional to x − μ"),
    "½ kept in d_sigma": (lambda x, mu, s: (_score(x, mu, s)[0],
                                            -1 / s + (x - mu) ** 2 / (2 * s ** 3)),
                          "so the (x − μ)² term is off"),
}

SCORE_TERMS = {
    "sign of the score": (lambda x, mu: x ** 2 * (mu - x), "sign error"),
    "score alone": (lambda x, mu: x - mu, "multiply the score by f(x)"),
    "pathwise 2x": (lambda x, mu: 2 * x, "reparameterisation"),
    "f alone": (lambda x, mu: x ** 2, "multiply by the score"),
    "averaged": (lambda x, mu: (x ** 2 * (x - mu)).mean(), "one term per sample"),
    "f′ times the score": (lambda x, mu: 2 * x * (x - mu), "f′(x) = 2x"),
    "f(x) = x": (lambda x, mu: x * (x - mu), "f(x) = x², not x"),
    "μ missing": (lambda x, mu: x ** 2 * x, "do not depend on μ"),
    "a baseline": (lambda x, mu: (x ** 2 - (x ** 2).mean()) * (x - mu), "a baseline keeps"),
}


def _cov(f, h):
    return torch.cov(torch.stack([f, h]))[0, 1]


def _cv(f, h, h_mean, a=None, centre=None, sign=1.0):
    a = _cov(f, h) / h.var() if a is None else a
    centre = h_mean if centre is None else centre
    return (f - sign * a * (h - centre)).mean(), a


CONTROL_VARIATE = {
    "sign of a": (lambda f, h, hm: _cv(f, h, hm, a=-_cov(f, h) / h.var()),
                  "wrong sign of the coefficient"),
    "Var(f)": (lambda f, h, hm: _cv(f, h, hm, a=_cov(f, h) / f.var()),
               "the variance of the control"),
    "no centring": (lambda f, h, hm: _cv(f, h, hm, centre=0.0), "known mean"),
    "samples": (lambda f, h, hm: ((f - _cv(f, h, hm)[1] * (h - hm)), _cv(f, h, hm)[1]),
                "not the samples"),
    "plus": (lambda f, h, hm: _cv(f, h, hm, sign=-1.0), "use f − a(h − E[h]) (minus)"),
    "correlation": (lambda f, h, hm: _cv(f, h, hm, a=torch.corrcoef(torch.stack([f, h]))[0, 1]),
                    "that is the correlation"),
    "centred on the sample mean": (lambda f, h, hm: _cv(f, h, hm, centre=h.mean()),
                                   "centred the control on its own sample mean"),
    "(a, estimate)": (lambda f, h, hm: _cv(f, h, hm)[::-1], "the other way round"),
    "Var(h)/Cov": (lambda f, h, hm: _cv(f, h, hm, a=h.var() / _cov(f, h)), "reciprocal"),
    "E[h] = 1/2 hard-coded": (lambda f, h, hm: _cv(f, h, hm, centre=0.5),
                              "use the h_mean you are given"),
}

TAIL_GIVEN = {
    "no clamp": (lambda y, t, rate: torch.exp(-rate * (t - y)), "exceed 1"),
    "P(W ≤ w)": (lambda y, t, rate: 1 - torch.exp(-rate * (t - y).clamp_min(0)),
                 "P(W ≤ t − y)"),
    "divides by the rate": (lambda y, t, rate: torch.exp(-(t - y).clamp_min(0) / rate),
                            "do not divide"),
    "impossible past t": (lambda y, t, rate: torch.where(y > t, 0.0, torch.exp(-rate * (t - y))),
                          "the event is certain"),
    "y − t": (lambda y, t, rate: torch.exp(-rate * (y - t).clamp_min(0)), "t − y, not y − t"),
    "CDF, no clamp": (lambda y, t, rate: 1 - torch.exp(-rate * (t - y)), NOT_NAMED),
    "Exponential.cdf": (lambda y, t, rate: 1 - torch.distributions.Exponential(rate).cdf(t - y),
                        NOT_NAMED),  # torch refuses t − y < 0: outside the support
    "indicator": (lambda y, t, rate: (y > t).to(y.dtype), "the indicator itself"),
}


def _rb(tm, c, K, q_sign=-1.0, reduce="sum"):
    onehot = F.one_hot(c, K).to(tm["log_lik"].dtype)
    mine = getattr(onehot * tm["log_lik"][..., None], reduce)(1)
    return tm["log_p_mu"] + mine + q_sign * tm["log_q_mu"]


def _naive(tm):
    """The naive BBVI weight log p(x, z) − log q(z), one per sample."""
    return ((tm["log_p_mu"] - tm["log_q_mu"]).sum(-1)
            + (tm["log_p_c"] + tm["log_lik"] - tm["log_q_c"]).sum(-1))


RB_WEIGHT = {
    "all points": (lambda tm, c, K: tm["log_p_mu"] - tm["log_q_mu"]
                   + tm["log_lik"].sum(-1, keepdim=True), "not Rao-Blackwellized"),
    "naive weight": (lambda tm, c, K: _naive(tm)[:, None].expand(-1, K), "naive BBVI weight"),
    "no log q": (lambda tm, c, K: _rb(tm, c, K, q_sign=0.0), "− log q(μ_k) term is missing"),
    "no likelihood": (lambda tm, c, K: tm["log_p_mu"] - tm["log_q_mu"],
                      "points assigned to k are missing"),
    "transposed": (lambda tm, c, K: _rb(tm, c, K).T, "wrong shape"),
    "+ log q": (lambda tm, c, K: _rb(tm, c, K, q_sign=1.0), "log q(μ_k) enters with a minus"),
    "log p(c) − log q(c) kept": (lambda tm, c, K: _rb(tm, c, K) + (
        tm["log_p_c"] - tm["log_q_c"]).sum(-1, keepdim=True), "does not involve μ_k"),
    "mean over points": (lambda tm, c, K: _rb(tm, c, K, reduce="mean"), "sum the log-likelihoods"),
}


# Section 4 ---------------------------------------------------------------------------------

REPARAM_GRADIENT = {
    "f itself": (lambda eps, mu: (mu + eps) ** 2, "not its derivative"),
    "score function": (lambda eps, mu: (mu + eps) ** 2 * eps, "score-function estimator"),
    "μ missing": (lambda eps, mu: 2 * eps, "the μ is missing"),
    "averaged": (lambda eps, mu: (2 * (mu + eps)).mean(), "one estimate per"),
    "exact gradient": (lambda eps, mu: 2 * mu * torch.ones_like(eps), "the exact gradient 2μ"),
    "μ − ε": (lambda eps, mu: 2 * (mu - eps), "not μ − ε"),
    "no factor 2": (lambda eps, mu: mu + eps, "the factor 2"),
    "2μ + ε": (lambda eps, mu: 2 * mu + eps, "the brackets are missing"),
}


def _z(m, lv, e):
    return m + torch.exp(0.5 * lv) * e


REPARAMETERIZE = {
    "σ²": (lambda m, lv, e: m + lv.exp() * e, "exp(log_var) = σ², the variance"),
    "log_var as σ": (lambda m, lv, e: m + lv * e, "log_var is log σ², not σ:"),
    "sqrt(log_var)": (lambda m, lv, e: m + lv.sqrt() * e, "log_var is log σ², not σ²: σ ="),
    "exponent sign": (lambda m, lv, e: m + torch.exp(-0.5 * lv) * e, "sign in the exponent"),
    "not scaled": (lambda m, lv, e: m + e, "ε is not scaled"),
    "½ outside the exp": (lambda m, lv, e: m + 0.5 * torch.exp(lv) * e,
                          "the ½ belongs inside the exponent"),
    "swapped": (lambda m, lv, e: m * e + torch.exp(0.5 * lv), "μ and σ are swapped"),
    "no noise": (lambda m, lv, e: m, "the noise is missing"),
    "fresh noise": (lambda m, lv, e: _z(m, lv, torch.randn_like(m)), "use the eps you are given"),
    "detached": (lambda m, lv, e: _z(m, lv, e).detach(), "no gradient flows"),
    "σ detached": (lambda m, lv, e: m + torch.exp(0.5 * lv).detach() * e,
                   "does not depend on log_var"),
}


def _ll(x, xl):
    return -F.binary_cross_entropy_with_logits(xl, x, reduction="none").sum(-1)


def _kl(m, lv):
    return objectives.kl_std_normal(m, lv)


def _with_kl(student_kl):
    return lambda x, xl, m, lv: _ll(x, xl) - student_kl(m, lv)


ELBO = {
    "+ KL": (lambda x, xl, m, lv: _ll(x, xl) + _kl(m, lv), "KL enters with a minus sign"),
    "no KL": (lambda x, xl, m, lv: _ll(x, xl), "KL term is missing"),
    "−ELBO": (lambda x, xl, m, lv: -(_ll(x, xl) - _kl(m, lv)), "returned the loss, −ELBO"),
    "+BCE": (lambda x, xl, m, lv: F.binary_cross_entropy_with_logits(
        xl, x, reduction="none").sum(-1) - _kl(m, lv), "log-likelihood has the wrong sign"),
    "reduction='mean'": (lambda x, xl, m, lv: -F.binary_cross_entropy_with_logits(xl, x)
                         - _kl(m, lv), "averaged over pixels and batch (reduction='mean')"),
    "mean over pixels": (lambda x, xl, m, lv: -F.binary_cross_entropy_with_logits(
        xl, x, reduction="none").mean(-1) - _kl(m, lv), "averaged over pixels (reduction='mean')"),
    "reduction='sum'": (lambda x, xl, m, lv: -F.binary_cross_entropy_with_logits(
        xl, x, reduction="sum") - _kl(m, lv), "summed over the whole batch (reduction='sum')"),
    "batch mean": (lambda x, xl, m, lv: (_ll(x, xl) - _kl(m, lv)).mean(),
                   "averaged over the batch"),
    "batch sum": (lambda x, xl, m, lv: (_ll(x, xl) - _kl(m, lv)).sum(), "summed over the batch"),
    "sigmoid twice": (lambda x, xl, m, lv: _ll(x, torch.sigmoid(xl)) - _kl(m, lv),
                      "sigmoid was applied twice"),
    "x·η": (lambda x, xl, m, lv: (x * xl).sum(-1) - _kl(m, lv), "log σ(η) is not η"),
    "logits arguments swapped": (lambda x, xl, m, lv: _ll(xl, x) - _kl(m, lv),
                                 "arguments of binary_cross_entropy_with_logits are swapped"),
    "BCE arguments swapped": (lambda x, xl, m, lv: -F.binary_cross_entropy(
        x, torch.sigmoid(xl), reduction="none").sum(-1) - _kl(m, lv),
        "arguments of binary_cross_entropy are swapped"),
    "detached": (lambda x, xl, m, lv: (_ll(x, xl) - _kl(m, lv)).detach(), "no gradient flows"),
    "KL not summed over latents": (lambda x, xl, m, lv: _ll(x, xl) - torch.distributions
                                   .kl_divergence(Normal(m, (0.5 * lv).exp()), Normal(0.0, 1.0)),
                                   NOT_NAMED),  # [B] − [B, d]: a broadcasting crash
    "KL summed over the batch": (lambda x, xl, m, lv: _ll(x, xl) - _kl(m, lv).sum(),
                                 "the KL was summed over the batch too"),
    "squared error": (lambda x, xl, m, lv: -F.mse_loss(torch.sigmoid(xl), x, reduction="none")
                      .sum(-1) - _kl(m, lv), "that is a squared error"),
    "BCE of sigmoid": (lambda x, xl, m, lv: -F.binary_cross_entropy(
        torch.sigmoid(xl), x, reduction="none").sum(-1) - _kl(m, lv),
        "clamps the log 0 that follows at −100"),
    "log of sigmoid": (lambda x, xl, m, lv: (x * torch.log(torch.sigmoid(xl)) + (1 - x)
                                             * torch.log(1 - torch.sigmoid(xl))).sum(-1)
                       - _kl(m, lv), "confident logits ... contains NaN or inf"),
    "log1p(exp)": (lambda x, xl, m, lv: (x * xl - torch.log1p(torch.exp(xl))).sum(-1)
                   - _kl(m, lv), "overflows for η > 88"),
    "Bernoulli(probs)": (lambda x, xl, m, lv: torch.distributions.Bernoulli(
        probs=torch.sigmoid(xl)).log_prob(x).sum(-1) - _kl(m, lv),
        "right for moderate logits but not for confident ones"),
    "KL per latent": (lambda x, xl, m, lv: _ll(x, xl)[:, None]
                      - 0.5 * (lv.exp() + m ** 2 - lv - 1), "wrong shape ... shape [B]"),
    **{f"KL: {name}": (_with_kl(kl), f"the KL term is wrong: {hint}")
       for (name, kl), (_, hint) in zip(STUDENT_KL.items(), _catalogue())},
}


def _lse(lw):
    return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


IWAE = {
    "no − log k": (lambda lw: torch.logsumexp(lw, 0), "−log k is missing"),
    "mean of logs": (lambda lw: lw.mean(0), "averaged the log-weights"),
    "log mean exp": (lambda lw: torch.log(torch.exp(lw).mean(0)), "underflows"),
    "wrong axis": (lambda lw: torch.logsumexp(lw, 1) - math.log(lw.shape[1]), "wrong axis"),
    "wrong axis, log k": (lambda lw: torch.logsumexp(lw, 1) - math.log(lw.shape[0]),
                          "wrong axis"),
    "max": (lambda lw: lw.max(0).values, "only the largest weight"),
    "max − log k": (lambda lw: lw.max(0).values - math.log(lw.shape[0]),
                    "only the largest weight"),
    "sum of logs": (lambda lw: lw.sum(0) - math.log(lw.shape[0]), "the log of a sum"),
    "one number": (lambda lw: _lse(lw).mean(), "one bound per data point"),
    "divided by k": (lambda lw: torch.logsumexp(lw, 0) / lw.shape[0], "the 1/k sits inside"),
    "log B for log k": (lambda lw: torch.logsumexp(lw, 0) - math.log(lw.shape[1]),
                        "off by the same constant"),
    "log k added": (lambda lw: torch.logsumexp(lw, 0) + math.log(lw.shape[0]), "subtract log k"),
}

# The table ---------------------------------------------------------------------------------

TABLE: dict[Callable, dict[str, tuple[Callable, str | None]]] = {
    **_section1(),
    check23.reverse_kl_mc: REVERSE_KL, check23.expected_log_lik: EXPECTED_LOG_LIK,
    check23.cavi_phi: CAVI_PHI, check23.cavi_m_s2: CAVI_M_S2,
    check23.svi_step: SVI_STEP, check23.normal_score: NORMAL_SCORE,
    check23.score_function_terms: SCORE_TERMS, check23.control_variate: CONTROL_VARIATE,
    check23.tail_given: TAIL_GIVEN, check23.rb_weight_mu: RB_WEIGHT,
    check4.reparam_gradient_terms: REPARAM_GRADIENT, check4.reparameterize: REPARAMETERIZE,
    check4.elbo: ELBO, check4.iwae_bound: IWAE,
}

def entries_of(table: dict) -> list:
    """(check, label, wrong answer, hint) for every wrong answer of a table."""
    return [(check, label, fn, hint) for check, answers in table.items()
            for label, (fn, hint) in answers.items()]


def ids_of(entries: list) -> list[str]:
    return [f"{check.exercise.number}-{label}" for check, label, _, _ in entries]


def section(check: Callable) -> str:
    return check.exercise.number.split(".")[0]


def says(check: Callable, fn: Callable, seed: int) -> str | None:
    """What ``check`` says to the answer ``fn`` (None if it passes), with torch's global
    generator seeded, as a fresh kernel would have it, and restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            check(fn)
        except SelfCheckError as err:
            return str(err)
    return None


def messages(entries: list) -> Callable[[int], str | None]:
    """``message(index)``: what the check says to the wrong answer ``entries[index]``
    (None if it passes), computed once."""
    @functools.cache
    def message(index: int) -> str | None:
        check, _, fn, _ = entries[index]
        return says(check, fn, index)
    return message


def assert_caught_and_named(entries: list, message: Callable, index: int) -> None:
    """The wrong answer ``entries[index]`` is caught, and named by its hint (or, marked
    NOT_NAMED, gets no hint)."""
    check, _, _, hint = entries[index]
    text = message(index)
    assert text is not None, "the check passed a wrong answer"
    assert text.startswith(f"✘ Exercise {check.exercise.number}"), text
    if hint is NOT_NAMED:
        assert hint_of(text) is None, f"named after all, give its hint in the table:\n{text}"
    else:
        assert names(text, hint), f"{hint!r} not in:\n{text}"


def assert_every_mistake_reached(module, given: set) -> None:
    """Every (value, hint) pair that ``module``'s checks list is the hint of one of the
    wrong answers ``given`` ((exercise number, hint) pairs), in an exercise that uses it."""
    listed = listed_mistakes(module)
    assert listed and all(exercises for _, _, exercises in listed)
    unreached = [f"line {line}: {pattern}" for line, pattern, exercises in listed
                 if not any(number in exercises and re.fullmatch(pattern, hint, re.S)
                            for number, hint in given)]
    assert not unreached, "\n".join(unreached)


ENTRIES = entries_of(TABLE)
IDS = ids_of(ENTRIES)
message = messages(ENTRIES)


def names(text: str, hint: str) -> bool:
    return all(part in text for part in hint.split(" ... "))


def hint_of(text: str) -> str | None:
    return text.split("\n  hint: ")[-1] if "\n  hint: " in text else None


def counts() -> dict[str, tuple[int, int, int]]:
    """section -> (caught, named, total)."""
    table: dict[str, list[int]] = {}
    for i, (check, _, _, hint) in enumerate(ENTRIES):
        row = table.setdefault(section(check), [0, 0, 0])
        text = message(i)
        row[0] += text is not None
        row[1] += text is not None and hint is not NOT_NAMED and names(text, hint)
        row[2] += 1
    return {key: tuple(row) for key, row in sorted(table.items())}


def report() -> str:
    lines = [f"{'exercise':<48} {'caught':>6} {'named':>6} {'total':>6}"]
    for sec, (caught, named, total) in counts().items():
        for check in TABLE:
            if section(check) == sec:
                rows = [i for i, e in enumerate(ENTRIES) if e[0] is check]
                c = sum(message(i) is not None for i in rows)
                n = sum(message(i) is not None and ENTRIES[i][3] is not NOT_NAMED
                        and names(message(i), ENTRIES[i][3]) for i in rows)
                lines.append(f"  {check.exercise.number:<5} {check.exercise.title[:40]:<41} "
                             f"{c:>6} {n:>6} {len(rows):>6}")
        lines.append(f"Section {sec:<40} {caught:>6} {named:>6} {total:>6}   "
                     f"({named / total:.0%} named)")
    return "\n".join(lines)


# Tests -------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _distributions_check_their_arguments():
    """As in a student's kernel, torch.distributions validate their arguments: some wrong
    answers crash on it (a non-triangular scale_tril, an Exponential's cdf below 0). Other
    tests' imports (pyro) may switch validation off for the whole process."""
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(True)
    yield
    torch.distributions.Distribution.set_default_validate_args(before)


@pytest.mark.parametrize("index", range(len(ENTRIES)), ids=IDS)
def test_wrong_answer_is_caught_and_named(index):
    assert_caught_and_named(ENTRIES, message, index)


@pytest.mark.parametrize("sec", ["1", "2", "3", "4"])
def test_most_wrong_answers_of_each_section_are_named(sec):
    caught, named, total = counts()[sec]
    assert caught == total and named >= NAMED_SHARE * total, report()


@pytest.mark.parametrize("check", list(TABLE), ids=[c.__name__ for c in TABLE])
def test_every_code_exercise_has_four_wrong_answers(check):
    assert len(TABLE[check]) >= 4


def test_the_table_covers_every_check_of_sections_1_to_4():
    checks = {getattr(module, name) for module in (check1, check23, check4)
              for name in dir(module)
              if getattr(getattr(module, name), "exercise", None) is not None}
    assert checks == set(TABLE)


# Every listed mistake can be reached -------------------------------------------------------

def _pattern(node: ast.expr, module=None) -> str | None:
    """A regular expression for the text of a hint written as a literal or as the name of a
    string constant of ``module`` (an f-string's fields match anything), else None."""
    if isinstance(node, ast.Name) and isinstance(text := getattr(module, node.id, None), str):
        return re.escape(text)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(_pattern(v) or ".*" if isinstance(v, ast.Constant) else ".*"
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pattern(node.left), _pattern(node.right)
        return None if left is None or right is None else left + right
    return None


def _exercises(module) -> dict[str, set[str]]:
    """The exercises each top-level function of a check module speaks for: a check its own,
    a helper those of the checks that call it."""
    checks = {name: fn.exercise.number for name, fn in vars(module).items()
              if getattr(fn, "exercise", None) is not None}
    calls = {name: set(fn.__wrapped__.__code__.co_names) for name, fn in vars(module).items()
             if name in checks}
    return {name: {checks[name]} if name in checks else
            {number for check, number in checks.items() if name in calls[check]}
            for name in vars(module)}


def listed_mistakes(module) -> list[tuple[int, str, set[str]]]:
    """(line, pattern, exercises) of each (value, hint) pair written out in a check module:
    its lists of typical mistakes and the tables of its probes."""
    speaks_for, found = _exercises(module), []
    for top in ast.parse(inspect.getsource(module)).body:
        for node in ast.walk(top):
            if isinstance(node, ast.Tuple) and len(node.elts) == 2:
                value, hint = node.elts
                pattern = _pattern(hint, module)
                if pattern and _pattern(value) is None and " " in pattern:
                    found.append((node.lineno, pattern,
                                  speaks_for.get(getattr(top, "name", ""), set())))
    return found


def _hints_given() -> set[tuple[str, str]]:
    """(exercise, hint) of every message that gives a hint."""
    return {(text.split()[2], hint) for i in range(len(ENTRIES))
            if (text := message(i)) and (hint := hint_of(text))}


@pytest.mark.parametrize("module", [check1, check23, check4], ids=["bayes", "vi", "vae"])
def test_every_listed_mistake_is_reached_by_a_wrong_answer(module):
    """Each (value, hint) pair of a check is the hint of some wrong answer, in an exercise
    whose check uses that pair (pairs of equal text in one exercise count once)."""
    assert_every_mistake_reached(module, _hints_given())


def test_every_mistake_of_the_kl_catalogue_is_reached_in_both_exercises():
    given = _hints_given()
    for _, hint in _catalogue():
        assert ("1.5", hint) in given and ("4.5b", f"the KL term is wrong: {hint}") in given


if __name__ == "__main__":
    print(report())
