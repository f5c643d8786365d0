"""The Section 4 self-checks pass the reference answers and, for plausible wrong answers,
fail with a message that names the mistake."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nfcourse import objectives
from nfcourse.checks import SelfCheckError
from nfcourse.checks import vae as check
from selfcheck_contract import SelfCheckContract

REFERENCES = {
    "reparam_gradient_terms": lambda eps, mu: 2 * (mu + eps),
    "reparameterize": objectives.reparameterize,
    "elbo": objectives.elbo_closed_form,
    "iwae_bound": objectives.iwae_bound,
}


class TestSelfCheckContract(SelfCheckContract):
    section, checks, references = "4", check, REFERENCES


def _bce(x, logits, reduction):
    return F.binary_cross_entropy_with_logits(logits, x, reduction=reduction)


WRONG = [
    # 4.2
    ("reparam_gradient_terms", lambda eps, mu: (mu + eps) ** 2, "not its derivative"),
    ("reparam_gradient_terms", lambda eps, mu: (mu + eps) ** 2 * eps, "score-function"),
    ("reparam_gradient_terms", lambda eps, mu: 2 * eps, "the μ is missing"),
    ("reparam_gradient_terms", lambda eps, mu: (2 * (mu + eps)).mean(), "one estimate per"),
    # 4.5a
    ("reparameterize", lambda m, lv, e: m + lv.exp() * e, r"exp\(log_var\) = σ², the variance"),
    ("reparameterize", lambda m, lv, e: m + lv * e, "log_var is log σ², not σ"),
    # NaN where log_var < 0, on both calls alike: a wrong σ, not fresh noise
    ("reparameterize", lambda m, lv, e: m + lv.sqrt() * e, "log_var is log σ², not σ²: σ ="),
    ("reparameterize", lambda m, lv, e: m + torch.exp(-0.5 * lv) * e, "sign in the exponent"),
    ("reparameterize", lambda m, lv, e: m + e, "ε is not scaled"),
    ("reparameterize", lambda m, lv, e: m, "the noise is missing"),
    ("reparameterize", lambda m, lv, e: m + torch.exp(0.5 * lv) * torch.randn_like(m),
     "use the eps you are given"),
    ("reparameterize", lambda m, lv, e: (m + torch.exp(0.5 * lv) * e).detach(),
     "no gradient flows"),
    # 4.5b
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "none").sum(-1) + objectives.kl_std_normal(m, lv),
     "KL enters with a minus sign"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "none").sum(-1), "KL term is missing"),
    ("elbo", lambda x, xl, m, lv: _bce(x, xl, "none").sum(-1) + objectives.kl_std_normal(m, lv),
     r"returned the loss, −ELBO"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "mean") - objectives.kl_std_normal(m, lv),
     r"averaged over pixels and batch \(reduction='mean'\)"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "none").mean(-1) - objectives.kl_std_normal(m, lv),
     r"averaged over pixels \(reduction='mean'\)"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "sum") - objectives.kl_std_normal(m, lv),
     r"summed over the whole batch \(reduction='sum'\)"),
    ("elbo", lambda x, xl, m, lv: objectives.elbo_closed_form(x, xl, m, lv).mean(),
     "averaged over the batch"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, torch.sigmoid(xl), "none").sum(-1)
     - objectives.kl_std_normal(m, lv), "sigmoid was applied twice"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "none").sum(-1)
     - 0.5 * (lv.exp() + m**2 - lv).sum(-1),
     "the KL term is wrong: the −1 inside the sum"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "none").sum(-1)
     - 0.5 * (torch.exp(0.5 * lv) + m**2 - lv - 1).sum(-1), "σ where σ²"),
    ("elbo", lambda x, xl, m, lv: objectives.elbo_closed_form(x, xl, m, lv).detach(),
     "no gradient flows"),
    ("elbo", lambda x, xl, m, lv: -_bce(xl, x, "none").sum(-1) - objectives.kl_std_normal(m, lv),
     "arguments of binary_cross_entropy_with_logits are swapped"),
    ("elbo", lambda x, xl, m, lv: -F.binary_cross_entropy(x, torch.sigmoid(xl), reduction="none")
     .sum(-1) - objectives.kl_std_normal(m, lv), "arguments of binary_cross_entropy are swapped"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "none").sum(-1)
     - 0.5 * (lv.exp() ** 2 + m**2 - lv - 1).sum(-1),
     "the KL term is wrong: you squared the variance"),
    ("elbo", lambda x, xl, m, lv: -_bce(x, xl, "none").sum(-1)
     - 0.5 * (lv + m**2 - lv.log() - 1).sum(-1),
     "the KL term is wrong: log_var is log σ², not the variance"),
    # 4.5b, unstable forms: exact for moderate logits, not for confident ones in float32
    ("elbo", lambda x, xl, m, lv: -F.binary_cross_entropy(torch.sigmoid(xl), x, reduction="none")
     .sum(-1) - objectives.kl_std_normal(m, lv), "clamps the log 0 that follows at −100"),
    ("elbo", lambda x, xl, m, lv: (x * torch.log(torch.sigmoid(xl))
                                   + (1 - x) * torch.log(1 - torch.sigmoid(xl))).sum(-1)
     - objectives.kl_std_normal(m, lv), "confident logits .* contains NaN or inf"),
    ("elbo", lambda x, xl, m, lv: (x * xl - torch.log1p(torch.exp(xl))).sum(-1)
     - objectives.kl_std_normal(m, lv), "overflows for η > 88"),
    ("elbo", lambda x, xl, m, lv: torch.distributions.Bernoulli(probs=torch.sigmoid(xl))
     .log_prob(x).sum(-1) - objectives.kl_std_normal(m, lv),
     "right for moderate logits but not for confident ones"),
    # 4.5c
    ("iwae_bound", lambda lw: torch.logsumexp(lw, 0), "−log k is missing"),
    ("iwae_bound", lambda lw: lw.mean(0), "averaged the log-weights"),
    ("iwae_bound", lambda lw: torch.log(torch.exp(lw).mean(0)), "underflows"),
    ("iwae_bound", lambda lw: torch.logsumexp(lw, 1) - math.log(lw.shape[1]), "wrong axis"),
    ("iwae_bound", lambda lw: lw.max(0).values, "only the largest weight"),
    ("iwae_bound", lambda lw: torch.logsumexp(lw, 0).mean() - math.log(lw.shape[0]),
     "one bound per data point"),
]


STABLE_LOG_LIKELIHOODS = {
    "with logits": lambda x, xl: -_bce(x, xl, "none").sum(-1),
    "x η − softplus(η)": lambda x, xl: (x * xl - F.softplus(xl)).sum(-1),
    "−softplus(∓η)": lambda x, xl: (-x * F.softplus(-xl) - (1 - x) * F.softplus(xl)).sum(-1),
    "logsigmoid": lambda x, xl: (x * F.logsigmoid(xl) + (1 - x) * F.logsigmoid(-xl)).sum(-1),
    "Bernoulli(logits)": lambda x, xl: torch.distributions.Bernoulli(logits=xl).log_prob(x)
    .sum(-1),
    "max trick": lambda x, xl: -(xl.clamp(min=0) - x * xl
                                 + torch.log1p(torch.exp(-xl.abs()))).sum(-1),
}


@pytest.mark.parametrize("form", list(STABLE_LOG_LIKELIHOODS))
def test_stable_forms_of_the_log_likelihood_pass(form, capsys):
    log_lik = STABLE_LOG_LIKELIHOODS[form]
    check.elbo(lambda x, xl, m, lv: log_lik(x, xl) - objectives.kl_std_normal(m, lv))
    assert capsys.readouterr().out.startswith("✔ Exercise 4.5b")


@pytest.mark.parametrize("name, wrong, hint", WRONG, ids=[f"{n}:{h}" for n, _, h in WRONG])
def test_typical_mistake_is_named(name, wrong, hint):
    with pytest.raises(SelfCheckError, match=hint) as info:
        getattr(check, name)(wrong)
    assert str(info.value).startswith("✘ Exercise 4.")
