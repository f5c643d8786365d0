r"""Self-checks for Section 1 (Bayesian inference, conjugacy and KL).

Each check calls the student's function on fresh inputs and compares the answer with an
*independent* computation (``torch.distributions``, SciPy, Gaussian conditioning, or a
loop over every assignment), never with :mod:`nfcourse.bayes`. When the answer is wrong it
also computes the usual mistakes (a missing log-determinant, KL with its arguments
swapped, the prior forgotten, ...) and, if the answer is one of them, says so.

Inputs come from a private seeded generator, so a check neither depends on nor disturbs
the notebook's random state.

>>> from nfcourse import bayes
>>> kl_diag_std_normal(bayes.kl_diag_std_normal)  # doctest: +ELLIPSIS
✔ Exercise 1.5 (KL to a standard normal): ...
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import scipy.optimize
import scipy.special
import scipy.stats
import torch
from torch import Tensor
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from nfcourse.checks.core import Exercise, Mistake, matches, self_check
from nfcourse.checks.mistakes import kl_diag_std_normal_mistakes
from nfcourse.closed_forms import LOG_2PI

DTYPE = torch.float64



def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=DTYPE)


def _rand(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(shape, generator=gen, dtype=DTYPE)


def _t(value: Any) -> Tensor:
    return torch.as_tensor(value, dtype=DTYPE)


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"




# 1.1 ------------------------------------------------------------------------------------

EX_1_1 = Exercise("1.1", "density of a linear transform")


def _orthogonal(gen: torch.Generator, d: int) -> Tensor:
    q, _ = torch.linalg.qr(_randn(gen, d, d))
    return q


def _linear_cases() -> list[tuple[str, Tensor, Tensor, Tensor]]:
    """(name, A, b, x): a symmetric positive definite A, then a general one with det A < 0.

    Both have |det A| far from 1 so that a wrong volume term shows."""
    gen = _generator(11)
    d, n = 3, 5
    q = _orthogonal(gen, d)
    spd = q @ torch.diag(_t([3.0, 1.5, 0.5])) @ q.T
    q1, q2 = _orthogonal(gen, d), _orthogonal(gen, d)
    general = q1 @ torch.diag(_t([3.0, 2.0, 0.7])) @ q2.T
    if torch.linalg.det(general) > 0:
        general = general @ torch.diag(_t([1.0, 1.0, -1.0]))
    cases = []
    for name, A in [("A symmetric positive definite", spd), ("det A < 0", general)]:
        b = _randn(gen, d)
        cases.append((name, A, b, b + 2 * _randn(gen, n, d)))
    return cases


@self_check
def log_density_linear(fn: Callable) -> None:
    """Check ``fn(x, A, b)``: log p(x) for x = A z + b, z ~ N(0, I), one value per row."""
    ex = EX_1_1
    for name, A, b, x in _linear_cases():
        d = x.shape[-1]
        expected = MultivariateNormal(b, covariance_matrix=A @ A.T).log_prob(x)
        log_det = torch.linalg.slogdet(A).logabsdet
        z_forward = x @ A.T + b
        mistakes: list[Mistake] = [
            (expected + log_det,
             "every value is log|det A| too high: the -log|det A| term of the change of "
             "variables is missing (A stretches volume by |det A|, so the density thins out "
             "by as much)"),
            (expected + 2 * log_det,
             "the volume term has the wrong sign: p(x) = p_z(A^-1(x - b)) / |det A|, so "
             "subtract log|det A|"),
            (expected + 0.5 * log_det,
             "only half the log-det is subtracted: the covariance A A^T has "
             "log det(A A^T) = 2 log|det A|, so -1/2 log det(A A^T) = -log|det A|"),
            (expected + 0.5 * d * LOG_2PI,
             "the -(d/2) log(2 pi) normalising constant of N(0, I) is missing"),
            (MultivariateNormal(torch.zeros(d, dtype=DTYPE), A @ A.T).log_prob(x),
             "the shift b is ignored: z = A^-1 (x - b)"),
            (MultivariateNormal(b, A.T @ A).log_prob(x),
             "you used A^T A as the covariance (e.g. solved A^T z = x - b, or wrote "
             "(x - b) @ inv(A) for row vectors): z = A^-1 (x - b), i.e. (x - b) @ inv(A).T, "
             "and the covariance of A z + b is A A^T"),
            (-0.5 * d * LOG_2PI - 0.5 * (z_forward**2).sum(-1) - log_det,
             "you pushed x forwards (A x + b) instead of inverting the map: z = A^-1 (x - b)"),
            (-0.5 * d * LOG_2PI - 0.5 * (z_forward**2).sum(-1) + log_det,
             "you pushed x forwards (A x + b) instead of inverting the map: z = A^-1 (x - b)"),
            (expected.sum(),
             "you summed over the points: return one log-density per row of x, shape [n]"),
        ]
        if torch.allclose(A, A.T):
            mistakes.insert(0, (
                MultivariateNormal(b, covariance_matrix=A).log_prob(x),
                "you used A as the covariance; the covariance of A z + b is "
                "Cov(A z) = A Cov(z) A^T = A A^T"))
        got = ex.call(fn, x, A, b)
        ex.verdict(got, expected, f"log p(x) ({name})", mistakes,
                 shape_hint="one log-density per point: sum the per-coordinate terms over "
                            "the last axis, giving shape [n]",
                 nan_hint="NaN appears here because det A < 0: use log|det A| "
                          "(torch.linalg.slogdet(A).logabsdet), not log det A")
    ex.passed("matches MultivariateNormal(b, A A^T).log_prob, including det A < 0")


# 1.2 ------------------------------------------------------------------------------------

EX_1_2A = Exercise("1.2a", "joint table of the belief network")
EX_1_2B = Exercise("1.2b", "inference by enumeration")


def _random_cpts(gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random binary CPTs, each row a distribution with entries in [0.1, 0.9]."""
    def rows(*shape: int) -> Tensor:
        u = 0.1 + 0.8 * _rand(gen, *shape)
        return torch.stack([1 - u, u], dim=-1)
    return rows(), rows(2), rows(2), rows(2, 2)


def _joint_by_loops(p_c: Tensor, p_s: Tensor, p_r: Tensor, p_w: Tensor) -> Tensor:
    joint = torch.empty(2, 2, 2, 2, dtype=DTYPE)
    for c, s, r, w in itertools.product(range(2), repeat=4):
        joint[c, s, r, w] = p_c[c] * p_s[c, s] * p_r[c, r] * p_w[s, r, w]
    return joint


@self_check
def joint_table(fn: Callable) -> None:
    """Check ``fn(p_c, p_s_given_c, p_r_given_c, p_w_given_sr)`` -> joint ``[c, s, r, w]``."""
    ex = EX_1_2A
    p_c, p_s, p_r, p_w = _random_cpts(_generator(12))
    expected = _joint_by_loops(p_c, p_s, p_r, p_w)
    ones = torch.ones(2, dtype=DTYPE)
    mistakes: list[Mistake] = [
        (_joint_by_loops(ones, p_s, p_r, p_w), "the factor p(C) is missing"),
        (_joint_by_loops(p_c, torch.ones(2, 2, dtype=DTYPE), p_r, p_w),
         "the factor p(S | C) is missing"),
        (_joint_by_loops(p_c, p_s, torch.ones(2, 2, dtype=DTYPE), p_w),
         "the factor p(R | C) is missing"),
        (_joint_by_loops(p_c, p_s, p_r, torch.ones(2, 2, 2, dtype=DTYPE)),
         "the factor p(W | S, R) is missing"),
        (_joint_by_loops(p_c, p_s.T, p_r, p_w),
         "p(S | C) is read the wrong way round: p_s_given_c[c, s] = p(S=s | C=c), parent "
         "first, so it lines up with axes (C, S) as p_s_given_c[:, :, None, None]"),
        (_joint_by_loops(p_c, p_s, p_r.T, p_w),
         "p(R | C) is read the wrong way round: p_r_given_c[c, r] = p(R=r | C=c), so it "
         "lines up with axes (C, R) as p_r_given_c[:, None, :, None]"),
        (_joint_by_loops(p_c, p_s, p_r, p_w.transpose(0, 1)),
         "p(W | S, R) has S and R swapped: p_w_given_sr[s, r, w] lines up with axes (S, R, W)"),
        (p_c[:, None, None, None] * p_s[:, :, None, None] * p_r[:, :, None, None]
         * p_w[None], "p(R | C) is lined up with the S axis: R is axis 2, so index it as "
                      "p_r_given_c[:, None, :, None]"),
    ]
    got = ex.call(fn, p_c, p_s, p_r, p_w)
    got = ex.tensor(got, "the joint table")
    ex.shape(got, (2, 2, 2, 2), "the joint table",
             hint="one axis per variable, in the order C, S, R, W: joint[c, s, r, w]")
    if not matches(got, expected):
        hint = _which_factor(got, p_c, p_s, p_r, p_w)
        ex.verdict(got, expected, "the joint table", mistakes, hint=hint)
    ex.passed("equals p(c) p(s|c) p(r|c) p(w|s,r) for every assignment (random CPTs)")


def _which_factor(got: Tensor, p_c: Tensor, p_s: Tensor, p_r: Tensor, p_w: Tensor) -> str:
    """Read the CPTs back from a table and name the first that differs from the given one."""
    got = got.detach().to(DTYPE)
    total = got.sum().item()
    if not math.isclose(total, 1.0, rel_tol=1e-6):
        return (f"your table sums to {total:.4g}, not 1. Each CPT row sums to 1, so their "
                "product does too: a factor is missing, repeated or indexed the wrong way")
    c = got.sum((1, 2, 3))
    read_back = [("p(C)", c, p_c),
                 ("p(S | C)", got.sum((2, 3)) / c[:, None], p_s),
                 ("p(R | C)", got.sum((1, 3)) / c[:, None], p_r),
                 ("p(W | S, R)", got.sum(0) / got.sum((0, 3))[..., None], p_w)]
    for name, table, given in read_back:
        if not matches(table, given):
            return f"the {name} that your table implies differs from the CPT you were given"
    return "each CPT reads back correctly, but the table is not their product"


def _posterior_by_loops(joint: Tensor, query: int, evidence: dict[int, int]) -> Tensor:
    """p(query, evidence) by visiting every assignment (unnormalised)."""
    out = torch.zeros(joint.shape[query], dtype=DTYPE)
    for assignment in itertools.product(*(range(k) for k in joint.shape)):
        if all(assignment[axis] == value for axis, value in evidence.items()):
            out[assignment[query]] += joint[assignment]
    return out


@self_check
def posterior(fn: Callable) -> None:
    """Check ``fn(joint, query, evidence)`` -> p(query | evidence), shape ``[k_query]``."""
    ex = EX_1_2B
    gen = _generator(13)
    joint = 0.05 + _rand(gen, 2, 3, 4, 2)  # different sizes, so a wrong axis shows
    joint = joint / joint.sum()
    queries = [(1, {3: 1}), (2, {0: 0, 3: 1}), (0, {}), (3, {2: 3, 1: 0})]
    for query, evidence in queries:
        unnormalised = _posterior_by_loops(joint, query, evidence)
        expected = unnormalised / unnormalised.sum()
        marginal = _posterior_by_loops(joint, query, {})
        what = f"p(axis {query} | evidence {evidence})"
        mistakes: list[Mistake] = [
            (torch.softmax(unnormalised, 0),
             "softmax exponentiates first: it normalises log-probabilities. These are "
             "probabilities already, so divide them by their sum"),
        ]
        if evidence:
            likelihood = unnormalised / marginal
            mistakes += [
                (unnormalised,
                 "these are the joint probabilities p(query, evidence): divide by "
                 "p(evidence), their sum over the query's values, so the answer sums to 1"),
                (marginal, "this is the marginal p(query): the evidence is ignored; keep only "
                           "the entries that agree with the observed values"),
                (likelihood, "this is p(evidence | query); Bayes' rule goes the other way: "
                             "p(query | evidence) = p(query, evidence) / p(evidence)"),
            ]
        hint = None
        if len(evidence) > 1:
            hint = ("with several observed variables, indexing one axis away (joint[..., v]) "
                    "shifts the axes after it; joint.narrow(axis, value, 1) keeps them")
        # any crash here: most likely the shifted axes
        got = ex.call_hinting(fn, joint, query, dict(evidence),
                              crashes=[("", hint)] if hint else [])
        ex.verdict(got, expected, what, mistakes, hint=hint,
                 shape_hint=f"one probability per value of the query variable: shape "
                            f"[joint.shape[query]] = [{joint.shape[query]}]")
    ex.passed("matches enumeration over every assignment, for 4 queries on a random joint")


# 1.3 ------------------------------------------------------------------------------------

EX_1_3A = Exercise("1.3a", "log-likelihood")
EX_1_3B = Exercise("1.3b", "maximum likelihood")
EX_1_3C = Exercise("1.3c", "conjugate posterior")
EX_1_3D = Exercise("1.3d", "MAP estimate")


def _norm_logpdf(x: Tensor, mean: Any, var: Any) -> Tensor:
    return _t(scipy.stats.norm.logpdf(x.numpy(), loc=float(mean), scale=math.sqrt(var)))


@self_check
def log_likelihood(fn: Callable) -> None:
    """Check ``fn(mu, x, noise_var)`` -> log p(D; mu), a number."""
    ex = EX_1_3A
    gen = _generator(14)
    for mu, noise_var in [(-0.3, 2.5), (0.7, 1.0)]:  # sigma^2 != 1 first: it tells more apart
        x = 1.0 + math.sqrt(noise_var) * _randn(gen, 6)
        n = x.numel()
        per_point = _norm_logpdf(x, mu, noise_var)
        expected = per_point.sum()
        squares = ((x - mu) ** 2).sum()
        mistakes: list[Mistake] = [
            (-0.5 * squares / noise_var,
             "the normalising constant -(n/2) log(2 pi sigma^2) is missing; the MLE does not "
             "care, but the evidence and the ELBO (1.6) do"),
            (-0.5 * n * LOG_2PI - 0.5 * squares / noise_var,
             "the constant must be -(n/2) log(2 pi sigma^2): sigma^2 belongs inside the log"),
            (-0.5 * n * math.log(noise_var) - 0.5 * squares / noise_var,
             "the log(2 pi) part of the constant -(n/2) log(2 pi sigma^2) is missing"),
            (-0.5 * math.log(2 * math.pi * noise_var) - 0.5 * squares / noise_var,
             "the constant -1/2 log(2 pi sigma^2) of one density enters once per "
             "observation: n times in the sum"),
            (_norm_logpdf(x, mu, noise_var**2).sum(),
             "noise_var is the variance sigma^2, not the standard deviation"),
            (_norm_logpdf(x, mu, 1.0).sum(), "noise_var is ignored (sigma^2 = 1 hard-coded)"),
            (-0.5 * n * math.log(2 * math.pi * noise_var) - squares / noise_var,
             "the 1/2 in front of the squares is missing: -(x - mu)^2 / (2 sigma^2)"),
            (-expected, "the sign is flipped: this is the negative log-likelihood"),
            (expected.exp(), "this is the likelihood itself; return its log"),
            (expected / n, "you averaged over the observations; the log-likelihood of "
                           "i.i.d. data is a sum"),
            (per_point, "you returned one value per observation: i.i.d. observations "
                        "multiply, so their log-densities add up to one number"),
        ]
        got = ex.call(fn, _t(mu), x, noise_var)
        ex.verdict(got, expected, f"log p(D; mu={mu}) with noise_var={noise_var}", mistakes,
                 shape_hint="return one number for the whole data set (a 0-dim tensor)",
                 elsewhere=_log_likelihood_elsewhere(ex, fn, mu, x, noise_var))
    ex.passed("matches scipy.stats.norm.logpdf summed over the data")


def _log_likelihood_elsewhere(ex: Exercise, fn: Callable, mu: float, x: Tensor,
                              noise_var: float) -> Callable:
    """(got, expected) at other mu and data of the same size and noise: an answer off by
    the same constant at all of them has the part that depends on mu and x right."""
    def values():
        for shift in (1.1, -0.8):
            other_mu, other_x = mu - 0.6 * shift, x.flip(0) + shift
            yield (ex.call(fn, _t(other_mu), other_x, noise_var),
                   _norm_logpdf(other_x, other_mu, noise_var).sum())
    return values


@self_check
def mle(fn: Callable) -> None:
    """Check ``fn(x)`` -> the maximum-likelihood estimate of the mean."""
    ex = EX_1_3B
    gen = _generator(15)
    for n in (9, 4):
        x = 1.3 + _randn(gen, n)
        expected = _t(scipy.stats.norm.fit(x.numpy())[0])
        mistakes: list[Mistake] = [
            (x.sum() / (n + 1), "this is the posterior mean under the N(0, 1) prior; the MLE "
                                "maximises the likelihood alone"),
            (x.sum(), "divide the sum by n"),
            (x.median(), "the median maximises a Laplace likelihood; for a Gaussian set the "
                         "derivative of the log-likelihood to zero"),
        ]
        got = ex.call(fn, x)
        ex.verdict(got, expected, f"the MLE for n={n} points", mistakes,
                 shape_hint="return one number, the estimate of mu (a 0-dim tensor)")
    ex.passed("matches scipy.stats.norm.fit")


def _gaussian_conditioning(x: Tensor, prior_var: float, noise_var: float
                           ) -> tuple[Tensor, Tensor]:
    """p(mu | x) by conditioning the joint Gaussian of (mu, x): no conjugacy algebra used."""
    n = x.numel()
    cov_xx = noise_var * torch.eye(n, dtype=DTYPE) + prior_var * torch.ones(n, n, dtype=DTYPE)
    cov_mu_x = prior_var * torch.ones(n, dtype=DTYPE)
    gain = torch.linalg.solve(cov_xx, cov_mu_x)
    return gain @ x, prior_var - gain @ cov_mu_x


@self_check
def posterior_params(fn: Callable) -> None:
    """Check ``fn(x, prior_var, noise_var)`` -> (posterior mean, posterior variance)."""
    ex = EX_1_3C
    gen = _generator(16)
    for n, prior_var, noise_var in [(5, 1.0, 1.0), (7, 2.0, 0.25)]:
        x = 0.8 + math.sqrt(noise_var) * _randn(gen, n)
        mean, var = _gaussian_conditioning(x, prior_var, noise_var)
        unit = prior_var == noise_var == 1.0
        setting = f"n={n}, prior_var={prior_var}, noise_var={noise_var}"
        out = ex.call(fn, x, prior_var, noise_var)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            ex.fail("should return a pair (mean, variance)", expected="a tuple (mean, variance)",
                    got=_kind(out))
        got_mean, got_var = out
        precision = 1 / prior_var + n / noise_var
        unit_var = _t(1 / (n + 1))
        general_only = [] if unit else [
            (unit_var, "right only when prior_var = noise_var = 1: use the arguments"),
            (_t(1 / (prior_var + n * noise_var)),
             "precisions (inverse variances) add, not variances: "
             "1/sigma_N^2 = 1/sigma_mu^2 + n/sigma^2"),
            (_t(1 / (1 / noise_var + n / prior_var)), "prior_var and noise_var are swapped"),
        ]
        ex.verdict(got_var, var, f"the posterior variance ({setting})", [
            (_t(noise_var / n), "the prior's precision is missing: 1/sigma_N^2 = "
                                "1/sigma_mu^2 + n/sigma^2 (with unit variances: 1/(n+1), "
                                "not 1/n)"),
            (_t(precision), "this is the posterior precision 1/sigma_N^2; return its "
                            "reciprocal, the variance"),
            (var.sqrt(), "this is the standard deviation sigma_N; return the variance"),
            *general_only,
        ])
        ex.verdict(got_mean, mean, f"the posterior mean ({setting})", [
            (x.mean(), "this is the MLE x-bar; the prior pulls the posterior mean towards its "
                       "own mean 0 (with unit variances: sum(x)/(n+1), not sum(x)/n)"),
            (precision * x.sum() / noise_var, "multiply by the posterior variance, not the "
                                              "precision"),
            *([] if unit else _posterior_mean_mistakes(x, prior_var, noise_var)),
        ])
    ex.passed("mean and variance match conditioning the joint Gaussian of (mu, x)")


def _posterior_mean_mistakes(x: Tensor, prior_var: float, noise_var: float) -> list[Mistake]:
    """Wrong posterior means (which is also the MAP) that only variances other than 1 show."""
    n = x.numel()
    var = 1 / (1 / prior_var + n / noise_var)
    return [
        (x.sum() / (n + 1), "right only when prior_var = noise_var = 1: use the arguments"),
        (var * x.sum(), "scale the sum of the data by sigma_N^2 / sigma^2: the division "
                        "by the noise variance is missing"),
        (var * x.sum() * noise_var, "divide the sum of the data by the noise variance, "
                                    "don't multiply"),
        (x.sum() / (1 / noise_var + n / prior_var) / prior_var,
         "prior_var and noise_var are swapped"),
    ]


@self_check
def map_estimate(fn: Callable) -> None:
    """Check ``fn(x, prior_var, noise_var)`` -> the mode of p(mu | D)."""
    ex = EX_1_3D
    gen = _generator(17)
    for n, prior_var, noise_var in [(6, 1.0, 1.0), (4, 3.0, 0.7)]:
        x = -1.1 + math.sqrt(noise_var) * _randn(gen, n)
        xs = x.numpy()

        def neg_log_posterior(mu: float) -> float:
            return -(scipy.stats.norm.logpdf(xs, mu, math.sqrt(noise_var)).sum()
                     + scipy.stats.norm.logpdf(mu, 0.0, math.sqrt(prior_var)))

        expected = _t(scipy.optimize.minimize_scalar(neg_log_posterior, method="brent",
                                                     tol=1e-12).x)
        got = ex.call(fn, x, prior_var, noise_var)
        if isinstance(got, (tuple, list)):
            ex.fail("should return one number, the mode of the posterior",
                    expected="one number", got=_kind(got),
                    hint="return only the location of the posterior's maximum, not "
                         "(mean, variance)")
        mistakes: list[Mistake] = [
            (x.mean(), "this is the MLE; the MAP maximises likelihood x prior, and the prior "
                       "pulls it towards 0"),
        ]
        if not prior_var == noise_var == 1.0:
            mistakes += _posterior_mean_mistakes(x, prior_var, noise_var)
        ex.verdict(got, expected,
                 f"the MAP estimate (n={n}, prior_var={prior_var}, noise_var={noise_var})",
                 mistakes, shape_hint="return one number (a 0-dim tensor)")
    ex.passed("matches scipy.optimize.minimize_scalar on the negative log posterior")


# 1.4 and 1.5 -------------------------------------------------------------------------------

EX_1_4 = Exercise("1.4", "KL between categoricals")
EX_1_5 = Exercise("1.5", "KL to a standard normal")


def _dirichlet(gen: torch.Generator, *shape: int) -> Tensor:
    """Uniform random distributions over the last axis (Dirichlet(1) via exponentials)."""
    e = -torch.log(_rand(gen, *shape))
    return e / e.sum(-1, keepdim=True)


@self_check
def kl_categorical(fn: Callable) -> None:
    """Check ``fn(p, q)`` -> KL(p || q) along the last axis, one value per row."""
    ex = EX_1_4
    gen = _generator(18)
    p, q = _dirichlet(gen, 4, 5), _dirichlet(gen, 4, 5)
    terms = _t(scipy.special.rel_entr(p.numpy(), q.numpy()))
    expected = terms.sum(-1)
    reverse = _t(scipy.special.rel_entr(q.numpy(), p.numpy())).sum(-1)
    mistakes: list[Mistake] = [
        (reverse, "this is KL(q || p): the expectation is under the first argument, "
                  "KL(p || q) = sum_x p(x) log(p(x)/q(x))"),
        (-reverse, "weight the log-ratio by p(x), not q(x)"),
        (expected / math.log(2), "you used log base 2 (bits); use the natural log (nats), "
                                 "as torch.distributions does"),
        (torch.log(p / q).sum(-1), "each log-ratio must be weighted by p(x)"),
        (-expected, "the sign is flipped: log(p/q), not log(q/p)"),
        (terms, "sum the terms over the last axis: one KL per pair of distributions"),
        (expected.sum(), "you summed over the batch too: return one KL per row, shape [4]"),
    ]
    got = ex.call(fn, p, q)
    ex.verdict(got, expected, "KL(p || q) for 4 random pairs", mistakes,
             shape_hint="one KL per pair (row): sum over the last axis only")
    p0 = _t([[0.5, 0.5, 0.0, 0.0]])
    q0 = _t([[0.1, 0.2, 0.3, 0.4]])
    expected0 = _t(scipy.special.rel_entr(p0.numpy(), q0.numpy())).sum(-1)
    got = ex.call(fn, p0, q0)
    ex.verdict(got, expected0, "KL(p || q) when p has zero entries",
             nan_hint="0 log 0 came out as NaN: by convention 0 log 0 = 0 (outcomes that p "
                      "never produces cost nothing); torch.xlogy(p, p) does this for you")
    ex.passed("matches scipy.special.rel_entr, including zeros in p")


@self_check
def kl_diag_std_normal(fn: Callable) -> None:
    """Check ``fn(mu, log_var)`` -> KL(N(mu, diag exp(log_var)) || N(0, I)), shape [batch]."""
    ex = EX_1_5
    gen = _generator(19)
    k = 3
    mu = (1.5 * _randn(gen, 6, k)).requires_grad_()
    log_var = (4 * _rand(gen, 6, k) - 2).requires_grad_()
    m, lv = mu.detach(), log_var.detach()
    var, std = lv.exp(), (0.5 * lv).exp()
    q = Independent(Normal(m, std), 1)
    expected = kl_divergence(q, Independent(Normal(torch.zeros_like(m), torch.ones_like(m)), 1))
    mistakes: list[Mistake] = [
        *kl_diag_std_normal_mistakes(m, lv),
        (0.5 * (var + m**2 - lv - 1), "sum over the last axis: one KL per row"),
        (expected.sum(), "you summed over the batch too: one KL per row, shape [batch]"),
    ]
    got = ex.call(fn, mu, log_var)
    got = ex.verdict(got, expected, "KL for a batch of 6 diagonal Gaussians", mistakes,
                   shape_hint="one KL per row: sum over the last axis only, shape [batch]",
                   nan_hint="log_var = log σ² is negative for σ² < 1, so its log or "
                            "square root is NaN: it is not the variance; σ² = exp(log_var)")
    if not got.requires_grad:
        ex.fail("no gradient flows through your answer",
                hint="keep the computation in torch (no .item(), numpy or math.exp): "
                     "Section 4 trains a VAE through this term")
    grad_mu, grad_lv = torch.autograd.grad(got.sum(), (mu, log_var), allow_unused=True)
    for grad, name in [(grad_mu, "mu"), (grad_lv, "log_var")]:
        if grad is None:
            ex.fail(f"your answer does not depend on {name} through autograd",
                    hint="compute it from the tensors you are given, without .detach()")
    detached = ("the values are right but the gradient is not: part of the computation is "
                "cut off from autograd (.detach(), .item(), numpy or a Python float)")
    ex.close(grad_mu, m, "the gradient with respect to mu is wrong", hint=detached)
    ex.close(grad_lv, 0.5 * (var - 1), "the gradient with respect to log_var is wrong",
             hint=detached)
    ex.passed("matches torch.distributions.kl_divergence, gradients included")


# 1.6 --------------------------------------------------------------------------------------

EX_1_6 = Exercise("1.6", "ELBO of the conjugate model")


@self_check
def elbo_conjugate(fn: Callable) -> None:
    """Check ``fn(m, s2, x, prior_var, noise_var)`` -> the ELBO of q(mu) = N(m, s2)."""
    ex = EX_1_6
    gen = _generator(20)
    for prior_var, noise_var in [(1.0, 1.0), (2.0, 0.5)]:
        x = 0.6 + math.sqrt(noise_var) * _randn(gen, 8)
        n = x.numel()
        cov = noise_var * torch.eye(n, dtype=DTYPE) + prior_var * torch.ones(n, n, dtype=DTYPE)
        log_evidence = MultivariateNormal(torch.zeros(n, dtype=DTYPE), cov).log_prob(x)
        post_mean, post_var = _gaussian_conditioning(x, prior_var, noise_var)
        # Two arbitrary q's, then the exact posterior (where the ELBO must reach log p(x)).
        m = _t([0.3, -1.0, post_mean.item()])
        s2 = _t([0.4, 2.5, post_var.item()])
        expected = log_evidence - kl_divergence(Normal(m, s2.sqrt()),
                                                Normal(post_mean, post_var.sqrt()))
        lik = _t([_norm_logpdf(x, mi, noise_var).sum() for mi in m])
        lik_s2 = -0.5 * n * s2 / noise_var
        prior = _t(scipy.stats.norm.logpdf(m.numpy(), 0.0, math.sqrt(prior_var)))
        prior_s2 = -0.5 * s2 / prior_var
        entropy = 0.5 * torch.log(2 * math.pi * math.e * s2)
        full = lik + lik_s2 + prior + prior_s2 + entropy
        mistakes: list[Mistake] = [
            (full - entropy, "the entropy term -E_q[log q] = 1/2 log(2 pi e s^2) is missing"),
            (full - 2 * entropy, "the entropy enters with a plus sign: "
                                 "ELBO = E_q[log p(x, mu)] - E_q[log q(mu)]"),
            (full - 0.5, "the entropy of N(m, s^2) is 1/2 log(2 pi e s^2): the e (a +1/2) "
                         "is missing"),
            (full - lik_s2 - prior_s2, "both s^2 terms are missing: under q, "
                                       "E[(x_i - mu)^2] = (x_i - m)^2 + s^2 and "
                                       "E[mu^2] = m^2 + s^2"),
            (full - lik_s2, "E_q[(x_i - mu)^2] = (x_i - m)^2 + s^2: the -n s^2/(2 sigma^2) "
                            "term is missing"),
            (full - prior_s2, "E_q[mu^2] = m^2 + s^2: the -s^2/(2 sigma_mu^2) term is missing"),
            (full - prior - prior_s2, "E_q[log p(mu)] is missing: the joint "
                                      "p(x, mu) = p(x | mu) p(mu) includes the prior"),
        ]
        if not prior_var == noise_var == 1.0:
            unit = (_t([_norm_logpdf(x, mi, 1.0).sum() for mi in m]) - 0.5 * n * s2
                    + _t(scipy.stats.norm.logpdf(m.numpy())) - 0.5 * s2 + entropy)
            mistakes.append((unit, "right only when prior_var = noise_var = 1: use the "
                                   "arguments"))
        values = []
        for mi, si in zip(m, s2):
            value = ex.tensor(ex.call(fn, mi, si, x, prior_var, noise_var), "the ELBO")
            ex.shape(value, (), "the ELBO", hint="return one number (a 0-dim tensor)")
            values.append(value.detach().to(DTYPE))
        got = torch.stack(values)
        what = (f"the ELBO at (m, s2) = (0.3, 0.4), (-1, 2.5) and at q = p(mu | x) "
                f"(prior_var={prior_var}, noise_var={noise_var})")
        hint = None
        if (got > log_evidence + 1e-6).any():
            hint = (f"a value exceeds log p(x) = {log_evidence.item():.6g}, but "
                    "ELBO = log p(x) - KL <= log p(x) for every q")
        elif matches(got[:2], expected[:2]):
            hint = "at the exact posterior the KL is 0, so the ELBO must equal log p(x)"
        ex.verdict(got, expected, what, mistakes, hint=hint)
    ex.passed("equals log p(x) - KL(q || p(mu | x)) for several q, and log p(x) at the "
              "posterior")
