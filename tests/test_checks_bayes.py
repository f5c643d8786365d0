"""The Section 1 self-checks pass the reference answers and, for plausible wrong answers,
fail with a message that names the mistake."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from nfcourse import bayes
from nfcourse.checks import SelfCheckError
from nfcourse.checks import bayes as check
from selfcheck_contract import SelfCheckContract

CHECKS = ["log_density_linear", "joint_table", "posterior", "log_likelihood", "mle",
          "posterior_params", "map_estimate", "kl_categorical", "kl_diag_std_normal",
          "elbo_conjugate"]


class TestSelfCheckContract(SelfCheckContract):
    section, checks, references = "1", check, {name: getattr(bayes, name) for name in CHECKS}


# Wrong answers, as a student might write them ------------------------------------------

def _log_det(A):
    return torch.linalg.slogdet(A).logabsdet


def _std_normal_terms(z):
    return -0.5 * math.log(2 * math.pi) - 0.5 * z**2


def _z(x, A, b):
    return torch.linalg.solve(A, (x - b).T).T


WRONG_LINEAR = {
    "no log-det": (lambda x, A, b: bayes.log_density_linear(x, A, b) + _log_det(A),
                   "-log|det A| term of the change of variables is missing"),
    "log-det sign": (lambda x, A, b: bayes.log_density_linear(x, A, b) + 2 * _log_det(A),
                     "volume term has the wrong sign"),
    "A as covariance": (lambda x, A, b: MultivariateNormal(b, A).log_prob(x),
                        "you used A as the covariance"),
    "A^T A covariance": (
        lambda x, A, b: _std_normal_terms((x - b) @ torch.linalg.inv(A)).sum(-1) - _log_det(A),
        "you used A^T A as the covariance"),
    "no abs": (lambda x, A, b: _std_normal_terms(_z(x, A, b)).sum(-1) - torch.logdet(A),
               "because det A < 0"),
    "forward map": (lambda x, A, b: _std_normal_terms(x @ A.T + b).sum(-1) - _log_det(A),
                    "pushed x forwards"),
    "no shift": (lambda x, A, b: bayes.log_density_linear(x, A, torch.zeros_like(b)),
                 "the shift b is ignored"),
    "no 2 pi": (lambda x, A, b: bayes.log_density_linear(x, A, b) + 1.5 * math.log(2 * math.pi),
                "-(d/2) log(2 pi) normalising constant"),
    "per dimension": (lambda x, A, b: _std_normal_terms(_z(x, A, b)) - _log_det(A) / 3,
                      "wrong shape ... \n  expected: [5]\n  got:      [5, 3]"),
    "summed": (lambda x, A, b: bayes.log_density_linear(x, A, b).sum(), "summed over the points"),
    "other constant": (lambda x, A, b: bayes.log_density_linear(x, A, b) + 1.234,
                       "same constant (+1.234)"),
    "garbage": (lambda x, A, b: 2 * bayes.log_density_linear(x, A, b),
                "is wrong\n  expected: [-5.9"),
}


def _joint(p_c, p_s, p_r, p_w):
    return bayes.joint_table(p_c, p_s, p_r, p_w)


WRONG_JOINT = {
    "no p(C)": (lambda c, s, r, w: _joint(torch.ones_like(c), s, r, w), "p(C) is missing"),
    "no p(W|S,R)": (lambda c, s, r, w: _joint(c, s, r, torch.ones_like(w)),
                    "p(W | S, R) is missing"),
    "p(S|C) transposed": (lambda c, s, r, w: _joint(c, s.T, r, w),
                          "p(S | C) is read the wrong way round"),
    "p(R|C) transposed": (lambda c, s, r, w: _joint(c, s, r.T, w),
                          "p(R | C) is read the wrong way round"),
    "p(W|S,R) swapped": (lambda c, s, r, w: _joint(c, s, r, w.transpose(0, 1)),
                         "has S and R swapped"),
    "R on the S axis": (lambda c, s, r, w: c[:, None, None, None] * s[:, :, None, None]
                        * r[:, :, None, None] * w[None], "lined up with the S axis"),
    "wrong p(C)": (lambda c, s, r, w: _joint(c.flip(0), s, r, w),
                   "the p(C) that your table implies differs"),
    "squared": (lambda c, s, r, w: _joint(c, s, r, w) ** 2, "your table sums to 0.1141, not 1"),
    "flat": (lambda c, s, r, w: _joint(c, s, r, w).flatten(), "wrong shape ... order C, S, R, W"),
}


def _unnormalised(joint, query, evidence):
    table = joint
    for axis, value in evidence.items():
        table = table.narrow(axis, value, 1)
    hidden = [a for a in range(joint.ndim) if a != query]
    return table.sum(dim=hidden)


def _select_away(joint, query, evidence):
    """Index the evidence axes away one by one, forgetting that later axes shift."""
    table = joint
    for axis, value in evidence.items():
        table = table.select(axis, value)
    table = table.sum(dim=[a for a in range(table.ndim) if a != query])
    return table / table.sum()


WRONG_POSTERIOR = {
    "not normalised": (_unnormalised, "divide by p(evidence)"),
    "evidence ignored": (lambda j, q, e: bayes.posterior(j, q, {}), "the evidence is ignored"),
    "likelihood": (lambda j, q, e: _unnormalised(j, q, e) / _unnormalised(j, q, {}),
                   "this is p(evidence | query)"),
    "whole table": (lambda j, q, e: j / j.sum(), "wrong shape ... one probability per value"),
    "axes shift": (_select_away, "narrow(axis, value, 1) keeps them"),
}


def _ll_terms(mu, x, noise_var):
    return -0.5 * math.log(2 * math.pi * noise_var) - 0.5 * (x - mu) ** 2 / noise_var


WRONG_LOG_LIK = {
    "no constant": (lambda mu, x, v: -0.5 * ((x - mu) ** 2).sum() / v,
                    "normalising constant -(n/2) log(2 pi sigma^2) is missing"),
    "std": (lambda mu, x, v: _ll_terms(mu, x, v**2).sum(), "not the standard deviation"),
    "no half": (lambda mu, x, v: (_ll_terms(mu, x, v) - 0.5 * (x - mu) ** 2 / v).sum(),
                "the 1/2 in front of the squares is missing"),
    "per point": (_ll_terms, "one value per observation"),
    "average": (lambda mu, x, v: _ll_terms(mu, x, v).mean(), "you averaged"),
    "nll": (lambda mu, x, v: -_ll_terms(mu, x, v).sum(), "negative log-likelihood"),
    "unit variance": (lambda mu, x, v: _ll_terms(mu, x, 1.0).sum(), "noise_var is ignored"),
    "no 2 pi": (lambda mu, x, v: -0.5 * x.numel() * math.log(v) - 0.5 * ((x - mu) ** 2).sum() / v,
                "the log(2 pi) part of the constant"),
    "constant once": (lambda mu, x, v: -0.5 * math.log(2 * math.pi * v)
                      - 0.5 * ((x - mu) ** 2).sum() / v, "enters once per observation"),
    "other constant": (lambda mu, x, v: _ll_terms(mu, x, v).sum() + 1.234,
                       "same constant (+1.234) at each of the 3 inputs tried"),
    "garbage": (lambda mu, x, v: 2 * _ll_terms(mu, x, v).sum(), "is wrong\n  expected: -9.41"),
}

WRONG_MLE = {
    "n + 1": (lambda x: x.sum() / (x.numel() + 1), "posterior mean under the N(0, 1) prior"),
    "sum": (lambda x: x.sum(), "divide the sum by n"),
    "median": (lambda x: x.median(), "the median maximises a Laplace likelihood"),
    "no reduction": (lambda x: x, "wrong shape ... return one number"),
    "norm.fit": (lambda x: torch.tensor([x.mean().item(), x.std().item()]), "wrong shape"),
}


def _post(mean_fn, var_fn):
    def posterior_params(x, prior_var, noise_var):
        n = x.numel()
        var = var_fn(n, prior_var, noise_var)
        return mean_fn(x, n, var, prior_var, noise_var), var
    return posterior_params


def _right_var(n, a, s):
    return 1 / (1 / a + n / s)


def _right_mean(x, n, var, a, s):
    return var * x.sum() / s


WRONG_POSTERIOR_PARAMS = {
    "no prior": (_post(lambda x, n, v, a, s: x.mean(), lambda n, a, s: s / n),
                 "the prior's precision is missing"),
    "n instead of n + 1 in the mean": (_post(lambda x, n, v, a, s: x.mean(), _right_var),
                                       "this is the MLE x-bar"),
    "precision": (_post(_right_mean, lambda n, a, s: 1 / a + n / s), "posterior precision"),
    "std": (_post(_right_mean, lambda n, a, s: math.sqrt(_right_var(n, a, s))),
            "this is the standard deviation"),
    "unit variances": (_post(lambda x, n, v, a, s: x.sum() / (n + 1), lambda n, a, s: 1 / (n + 1)),
                       "right only when prior_var = noise_var = 1"),
    "variances added": (_post(_right_mean, lambda n, a, s: 1 / (a + n * s)),
                        "precisions (inverse variances) add"),
    "swapped": (_post(_right_mean, lambda n, a, s: _right_var(n, s, a)), "are swapped"),
    "mean not divided by noise": (_post(lambda x, n, v, a, s: v * x.sum(), _right_var),
                                  "the division by the noise variance is missing"),
    "mean times precision": (_post(lambda x, n, v, a, s: x.sum() / s / v, _right_var),
                             "multiply by the posterior variance, not the precision"),
    "only the mean": (lambda x, a, s: bayes.posterior_params(x, a, s)[0],
                      "should return a pair (mean, variance) ... got:      a tensor of shape []"),
}

WRONG_MAP = {
    "mle": (lambda x, a, s: x.mean(), "this is the MLE"),
    "tuple": (lambda x, a, s: bayes.posterior_params(x, a, s),
              "expected: one number\n  got:      a tuple of length 2"),
    "unit variances": (lambda x, a, s: x.sum() / (x.numel() + 1), "right only when"),
}

WRONG_KL_CAT = {
    "swapped": (lambda p, q: bayes.kl_categorical(q, p), "this is KL(q || p)"),
    "weighted by q": (lambda p, q: (q * torch.log(p / q)).sum(-1), "not q(x)"),
    "log2": (lambda p, q: (p * torch.log2(p / q)).sum(-1), "log base 2"),
    "unweighted": (lambda p, q: torch.log(p / q).sum(-1), "must be weighted by p(x)"),
    "sign": (lambda p, q: (p * torch.log(q / p)).sum(-1), "the sign is flipped"),
    "terms": (lambda p, q: p * torch.log(p / q), "sum the terms over the last axis"),
    "batch": (lambda p, q: (p * torch.log(p / q)).sum(), "summed over the batch"),
    "0 log 0": (lambda p, q: (p * torch.log(p / q)).sum(-1), "0 log 0 came out as NaN"),
}


def _kl_terms(mu, log_var):
    return 0.5 * (log_var.exp() + mu**2 - log_var - 1)


WRONG_KL_NORMAL = {
    "no -1": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - lv).sum(-1), "the −1 inside the sum"),
    "sigma": (lambda mu, lv: 0.5 * ((0.5 * lv).exp() + mu**2 - lv - 1).sum(-1),
              "σ where σ² belongs"),
    "no half": (lambda mu, lv: (lv.exp() + mu**2 - lv - 1).sum(-1), "the factor ½"),
    "log sign": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 + lv - 1).sum(-1), "the log term"),
    "log sigma": (lambda mu, lv: 0.5 * ((2 * lv).exp() + mu**2 - 2 * lv - 1).sum(-1),
                  "log_var is log σ², not log σ"),
    "reverse": (lambda mu, lv: 0.5 * ((1 + mu**2) / lv.exp() + lv - 1).sum(-1),
                "this is KL(N(0, I) ‖ q)"),
    "log_var as variance": (lambda mu, lv: 0.5 * (lv + mu**2 - lv.log() - 1).sum(-1),
                            "log_var is log σ², not the variance"),
    "log of log_var": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - lv.log() - 1).sum(-1),
                       "log(log_var) is the log of a log"),
    "log_var as variance, log term right": (lambda mu, lv: 0.5 * (lv + mu**2 - lv - 1).sum(-1),
                                            "the σ² and log σ² terms cancel out"),
    "log_var and exp swapped": (lambda mu, lv: 0.5 * (lv + mu**2 - lv.exp() - 1).sum(-1),
                                "log_var and exp(log_var) are swapped"),
    "sigma^4": (lambda mu, lv: 0.5 * (lv.exp() ** 2 + mu**2 - lv - 1).sum(-1),
                "you squared the variance"),
    "sqrt of log_var": (lambda mu, lv: 0.5 * (lv.sqrt() + mu**2 - lv - 1).sum(-1),
                        "contains NaN or inf ... its log or square root is NaN"),
    "mean": (lambda mu, lv: _kl_terms(mu, lv).mean(-1), "you averaged over the dimensions"),
    "per dimension": (_kl_terms, "sum over the last axis: one KL per row"),
    "batch": (lambda mu, lv: _kl_terms(mu, lv).sum(), "summed over the batch too"),
    "numpy": (lambda mu, lv: torch.as_tensor(
        _kl_terms(mu, lv).detach().numpy().sum(-1)), "no gradient flows"),
    "detached log_var": (lambda mu, lv: _kl_terms(mu, lv.detach()).sum(-1),
                         "does not depend on log_var through autograd"),
    "detached exp": (lambda mu, lv: 0.5 * (lv.exp().detach() + mu**2 - lv - 1).sum(-1),
                     "the gradient with respect to log_var is wrong"),
}


def _elbo_parts(m, s2, x, a, s):
    n = x.numel()
    return dict(lik=bayes.log_likelihood(m, x, s), lik_s2=-0.5 * n * s2 / s,
                prior=-0.5 * math.log(2 * math.pi * a) - 0.5 * m**2 / a, prior_s2=-0.5 * s2 / a,
                entropy=0.5 * torch.log(2 * math.pi * math.e * s2))


def _elbo_without(*left_out, entropy_sign=1.0, shift=0.0):
    def elbo(m, s2, x, a, s):
        parts = _elbo_parts(m, s2, x, a, s)
        parts["entropy"] = entropy_sign * parts["entropy"]
        return sum(v for k, v in parts.items() if k not in left_out) + shift
    return elbo


WRONG_ELBO = {
    "no entropy": (_elbo_without("entropy"), "the entropy term"),
    "entropy sign": (_elbo_without(entropy_sign=-1.0), "enters with a plus sign"),
    "no e": (_elbo_without(shift=-0.5), "the e (a +1/2)"),
    "no s2 in likelihood": (_elbo_without("lik_s2"), "-n s^2/(2 sigma^2)"),
    "no s2 in prior": (_elbo_without("prior_s2"), "-s^2/(2 sigma_mu^2)"),
    "no s2 at all": (_elbo_without("lik_s2", "prior_s2"), "both s^2 terms are missing"),
    "no prior": (_elbo_without("prior", "prior_s2"), "E_q[log p(mu)] is missing"),
    "unit variances": (lambda m, s2, x, a, s: bayes.elbo_conjugate(m, s2, x),
                       "right only when prior_var = noise_var = 1"),
    "above the evidence": (_elbo_without(shift=5.0), "a value exceeds log p(x)"),
    "other constant": (_elbo_without(shift=-0.1), "same constant (-0.1)"),
    "off at the posterior": (lambda m, s2, x, a, s: bayes.elbo_conjugate(m, s2, x, a, s)
                             - 0.1 * (s2 < 0.3), "KL is 0, so the ELBO must equal log p(x)"),
    "not a number": (lambda m, s2, x, a, s: bayes.elbo_conjugate(m, s2, x, a, s).reshape(1),
                     "return one number"),
}

CASES = [(name, label, fn, message)
         for name, table in [("log_density_linear", WRONG_LINEAR), ("joint_table", WRONG_JOINT),
                             ("posterior", WRONG_POSTERIOR), ("log_likelihood", WRONG_LOG_LIK),
                             ("mle", WRONG_MLE), ("posterior_params", WRONG_POSTERIOR_PARAMS),
                             ("map_estimate", WRONG_MAP), ("kl_categorical", WRONG_KL_CAT),
                             ("kl_diag_std_normal", WRONG_KL_NORMAL),
                             ("elbo_conjugate", WRONG_ELBO)]
         for label, (fn, message) in table.items()]


@pytest.mark.parametrize("name, fn, message", [(n, f, m) for n, _, f, m in CASES],
                         ids=[f"{n}-{label}" for n, label, _, _ in CASES])
def test_wrong_answer_is_named(name, fn, message):
    with pytest.raises(SelfCheckError) as info:
        getattr(check, name)(fn)
    text = str(info.value)
    assert text.startswith("✘ Exercise 1."), text
    parts = message.split(" ... ")
    assert all(part in text for part in parts), f"{parts!r} not all in:\n{text}"


def test_mistakes_are_told_apart():
    """No typical mistake hides another: each wrong value gets its own hint."""
    hints: dict[tuple[str, str], list[str]] = {}
    for name, label, fn, _ in CASES:
        try:
            getattr(check, name)(fn)
        except SelfCheckError as err:
            if "has the wrong shape" not in str(err):  # shape hints are shared on purpose
                hints.setdefault((name, str(err).split("hint: ")[-1]), []).append(label)
    shared = {key: labels for key, labels in hints.items() if len(labels) > 1}
    assert not shared, shared


def test_exp_log_var_in_the_log_term_is_named_like_log_var_as_the_variance():
    """Both make the sigma^2 and log sigma^2 terms cancel: one value, one hint."""
    with pytest.raises(SelfCheckError, match="terms cancel out"):
        check.kl_diag_std_normal(lambda mu, lv: 0.5 * (lv.exp() + mu**2 - lv.exp() - 1).sum(-1))


def test_value_failures_show_expected_and_got():
    with pytest.raises(SelfCheckError) as info:
        check.kl_diag_std_normal(WRONG_KL_NORMAL["no -1"][0])
    text = str(info.value)
    assert "\n  expected: [" in text and "\n  got:      [" in text and "\n  hint: " in text


def test_messages_have_no_numpy_noise():
    """Values are printed as numbers, not as numpy or tensor reprs."""
    with pytest.raises(SelfCheckError) as info:
        check.mle(WRONG_MLE["sum"][0])
    assert "tensor(" not in str(info.value) and "array(" not in str(info.value)
    assert np.isfinite(float(str(info.value).split("expected: ")[1].split("\n")[0]))
