r"""Typical mistakes that more than one self-check looks for, kept in one catalogue so that
every exercise asking for the same quantity names a wrong answer in the same words.

The KL divergence from a diagonal Gaussian to the standard normal, with
:math:`\sigma_j^2 = \exp(\texttt{log\_var}_j)`,

.. math::

    \mathrm{KL}\big(\mathcal N(\mu, \operatorname{diag}\sigma^2) \,\|\, \mathcal N(0, I)\big)
    = \tfrac12 \sum_j \big(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\big),

is asked for on its own in Exercise 1.5 (:func:`nfcourse.checks.bayes.kl_diag_std_normal`)
and inside the VAE's ELBO, :math:`\log p(x \mid z) - \mathrm{KL}`, in Exercise 4.5b
(:func:`nfcourse.checks.vae.elbo`). :func:`kl_diag_std_normal_mistakes` lists the wrong
formulas students write for it, each with what to tell them; each check compares an answer
with these values (the ELBO's check with the log-likelihood minus each of them). Every
entry is a formula a student plausibly writes (``tests/test_checks_mistakes.py`` writes
each one out and checks that both exercises name it).

Mistakes in the *shape* of an answer (a KL per coordinate, a sum over the batch) are not
here: they depend on what the exercise returns, so each check keeps its own.
"""

from __future__ import annotations

from torch import Tensor

from nfcourse.checks.core import Mistake

__all__ = ["kl_diag_std_normal_mistakes"]


def kl_diag_std_normal_mistakes(mu: Tensor, log_var: Tensor) -> list[Mistake]:
    """The wrong values of KL(N(μ, diag exp(log_var)) ‖ N(0, I)) per row (``[..., k]`` in,
    ``[...]`` out) that students compute, each with its hint, most telling first."""
    m, lv = mu.detach(), log_var.detach()
    var, std = lv.exp(), (0.5 * lv).exp()

    def kl(terms: Tensor) -> Tensor:
        return 0.5 * terms.sum(-1)

    right = kl(var + m**2 - lv - 1)
    return [
        (kl(var + m**2 - lv),
         "the −1 inside the sum is missing (check: q = N(0, I), i.e. μ = 0 and "
         "log_var = 0, must give KL = 0)"),
        (kl(std + m**2 - lv - 1),
         "you used σ where σ² belongs: σ² = exp(log_var)"),
        (kl(std + m**2 - 0.5 * lv - 1),
         "you used σ where σ² belongs, and log σ where log σ² belongs: σ² = exp(log_var), "
         "and log σ² = log_var"),
        (2 * right, "the factor ½ in front of the sum is missing"),
        (kl(var + m**2 + lv - 1),
         "the log term has the wrong sign: KL = ½ Σ (μ² + σ² − log σ² − 1)"),
        (kl((2 * lv).exp() + m**2 - 2 * lv - 1),
         "log_var is log σ², not log σ: σ² = exp(log_var)"),
        (kl(lv + m**2 - lv.log() - 1),
         "log_var is log σ², not the variance: σ² = exp(log_var), and log σ² is log_var "
         "itself"),
        (kl(var + m**2 - lv.log() - 1),
         "log σ² is log_var itself: log(log_var) is the log of a log, NaN for log_var < 0"),
        (kl(m**2 - 1),
         "the σ² and log σ² terms cancel out: σ² = exp(log_var), while log σ² = log_var"),
        (kl(lv + m**2 - var - 1),
         "log_var and exp(log_var) are swapped: σ² = exp(log_var) and log σ² = log_var"),
        (kl(var**2 + m**2 - lv - 1),
         "you squared the variance: exp(log_var) is already σ² (its square is σ⁴)"),
        (kl((1 + m**2) / var + lv - 1),
         "this is KL(N(0, I) ‖ q), the arguments swapped: the expectation is under q"),
        (right / m.shape[-1],
         "you averaged over the dimensions (the last axis); the KL of independent "
         "coordinates is their sum"),
    ]
