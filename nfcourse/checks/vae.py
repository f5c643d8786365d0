r"""Self-checks for Section 4 (amortized VI and the variational autoencoder).

Each check calls the student's function on fresh inputs from a private seeded generator
and compares the answer with an *independent* computation (:mod:`torch.distributions`:
``Bernoulli``, ``Normal``, ``kl_divergence``; a float64 sum of weights for the IWAE bound),
never with :mod:`nfcourse.objectives`. When the answer is wrong it computes the usual
mistakes (``exp(log_var)`` where ``exp(0.5 log_var)`` belongs, the KL's sign flipped or the
KL forgotten, a ``mean`` reduction of the binary cross-entropy, IWAE without ``- log k``,
...) and, if the answer is one of them, says so. The ELBO is also tried at the confident
logits of a trained decoder, in float32, where log σ(η) computed from σ(η) breaks down.

>>> from nfcourse import objectives
>>> iwae_bound(objectives.iwae_bound)  # doctest: +ELLIPSIS
✔ Exercise 4.5c (the IWAE bound): ...
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from nfcourse.checks.core import Exercise, Mistake, self_check
from nfcourse.checks.mistakes import kl_diag_std_normal_mistakes

__all__ = ["reparam_gradient_terms", "reparameterize", "elbo", "iwae_bound"]

DTYPE = torch.float64



def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=DTYPE)


def _same(a: Tensor, b: Tensor) -> bool:
    """Two calls gave the same values, NaN where both have NaN included (σ = sqrt(log_var)
    is NaN for log_var < 0 on every call: that is a wrong σ, not fresh noise)."""
    return torch.allclose(a.detach(), b.detach().to(a.dtype), rtol=0, atol=0, equal_nan=True)




# 4.2 ----------------------------------------------------------------------------------------

EX_4_2 = Exercise("4.2", "reparameterisation gradient of E[X²]")


@self_check
def reparam_gradient_terms(fn: Callable) -> None:
    """Check ``fn(eps, mu)``: the per-sample reparameterisation estimates of
    d/dμ E_{N(μ,1)}[X²] with X = μ + ε, i.e. 2(μ + ε), one per ε."""
    ex = EX_4_2
    gen = _gen(42)
    for mu in (1.5, -0.7):
        eps = _randn(gen, 7)
        x = mu + eps
        expected = 2 * x
        mistakes: list[Mistake] = [
            (x**2, "this is f(X) = X², not its derivative: the reparameterised estimator "
                   "differentiates f along the path, d/dμ f(μ + ε) = f'(μ + ε) · 1 = 2(μ + ε)"),
            (x**2 * eps, "this is the score-function estimator f(X)(X − μ) of Section 3; the "
                         "reparameterisation estimator differentiates f itself: 2(μ + ε)"),
            (2 * eps, "X = μ + ε: the μ is missing, so the average is 0 instead of 2μ"),
            (x, "the factor 2 is missing: d/dμ (μ + ε)² = 2(μ + ε)"),
            (2 * mu + eps, "the brackets are missing: 2(μ + ε) doubles ε too"),
            (2 * mu * torch.ones_like(eps), "this is the exact gradient 2μ for every sample; "
                                            "the estimator is 2(μ + ε), one value per ε"),
            (expected.mean(), "return one estimate per sample ε (shape [n]); the notebook "
                              "averages them"),
            (2 * (mu - eps), "X = μ + ε, not μ − ε (the same in distribution, but not the "
                             "values asked for)"),
        ]
        got = ex.call(fn, eps, mu)
        ex.verdict(got, expected, f"the per-sample estimates at μ = {mu}", mistakes,
                 shape_hint="one estimate per ε: shape [n]")
    ex.passed("2(μ + ε) per sample, unbiased for d/dμ E[X²] = 2μ")


# 4.5a ---------------------------------------------------------------------------------------

EX_4_5A = Exercise("4.5a", "the reparameterised sample")


@self_check
def reparameterize(fn: Callable) -> None:
    """Check ``fn(mu, log_var, eps)`` -> z = μ + exp(½ log σ²) ε, elementwise, with gradients."""
    ex = EX_4_5A
    gen = _gen(45)
    mu = (1.5 * _randn(gen, 4, 3)).requires_grad_()
    log_var = (3 * torch.rand(4, 3, generator=gen, dtype=DTYPE) - 1.5).requires_grad_()
    eps = _randn(gen, 4, 3)
    m, lv = mu.detach(), log_var.detach()
    std = torch.exp(0.5 * lv)
    expected = m + std * eps
    mistakes: list[Mistake] = [
        (m + lv.exp() * eps, "you scaled ε by exp(log_var) = σ², the variance; scale it by the "
                             "standard deviation σ = exp(0.5 · log_var)"),
        (m + lv * eps, "log_var is log σ², not σ: scale ε by σ = exp(0.5 · log_var)"),
        (m + lv.sqrt() * eps, "log_var is log σ², not σ²: σ = exp(0.5 · log_var)"),
        (m + torch.exp(-0.5 * lv) * eps, "the sign in the exponent is flipped: "
                                         "σ = exp(+0.5 · log_var)"),
        (m + 0.5 * lv.exp() * eps, "the ½ belongs inside the exponent: σ = exp(0.5 · log_var), "
                                   "not 0.5 · exp(log_var)"),
        (m + eps, "ε is not scaled: z = μ + σ ε with σ = exp(0.5 · log_var)"),
        (m * eps + std, "μ and σ are swapped: z = μ + σ ε (σ scales the noise, μ shifts it)"),
        (m, "the noise is missing: z = μ + σ ε (returning μ gives the deterministic "
            "autoencoder of Exercise 4.6)"),
    ]
    got = ex.call(fn, mu, log_var, eps)
    got_again = ex.call(fn, mu, log_var, eps)
    got_t = ex.tensor(got, "z")
    if (isinstance(got_again, Tensor) and got_t.shape == got_again.shape
            and not _same(got_t, got_again)):
        ex.fail("two calls with the same eps gave different z",
                hint="use the eps you are given instead of drawing new noise (torch.randn): "
                     "the caller owns the randomness, which makes the sample reproducible")
    got = ex.verdict(got, expected, "z for a batch of 4 three-dimensional Gaussians",
                   mistakes, shape_hint="elementwise: z has the shape of mu")
    if not got.requires_grad:
        ex.fail("no gradient flows through z",
                hint="the whole point of the trick: keep the computation in torch (no .item(), "
                     ".detach() or numpy), so dz/dμ and dz/dlog σ² exist")
    g_mu, g_lv = torch.autograd.grad(got.sum(), (mu, log_var), allow_unused=True)
    if g_mu is None or g_lv is None:
        ex.fail("z does not depend on " + ("mu" if g_mu is None else "log_var")
                + " through autograd", hint="compute z from the tensors you are given")
    ex.close(g_mu, torch.ones_like(m), "dz/dμ (should be 1)")
    ex.close(g_lv, 0.5 * std * eps, "dz/dlog σ² (should be ½ σ ε)")
    ex.passed("z = μ + exp(½ log σ²) ε, and gradients reach μ and log σ²")


# 4.5b ---------------------------------------------------------------------------------------

EX_4_5B = Exercise("4.5b", "the VAE's ELBO per data point")


@self_check
def elbo(fn: Callable) -> None:
    """Check ``fn(x, x_logits, mu, log_var)`` -> log p(x | z) − KL(q ‖ N(0, I)), shape [B]."""
    ex = EX_4_5B
    gen = _gen(46)
    B, D, d = 5, 12, 3
    x = torch.bernoulli(torch.full((B, D), 0.4, dtype=DTYPE), generator=gen)
    x_logits = (2 * _randn(gen, B, D)).requires_grad_()
    mu = _randn(gen, B, d).requires_grad_()
    log_var = (2 * torch.rand(B, d, generator=gen, dtype=DTYPE) - 1).requires_grad_()
    eta, m, lv = x_logits.detach(), mu.detach(), log_var.detach()
    ll = Bernoulli(logits=eta).log_prob(x).sum(-1)
    q = Independent(Normal(m, torch.exp(0.5 * lv)), 1)
    p = Independent(Normal(torch.zeros_like(m), torch.ones_like(m)), 1)
    kl = kl_divergence(q, p)
    expected = ll - kl
    var = lv.exp()
    probs = torch.sigmoid(eta)
    mistakes: list[Mistake] = [
        (ll + kl, "the KL enters with a minus sign: ELBO = E_q[log p(x|z)] − KL(q ‖ p)"),
        (ll, "the KL term is missing: ELBO = E_q[log p(x|z)] − KL(q ‖ p(z))"),
        (-expected, "you returned the loss, −ELBO; return the ELBO itself (the training loop "
                    "minimises its negative)"),
        (-kl - ll, "the log-likelihood has the wrong sign: binary_cross_entropy is −log p(x|z), "
                   "so log p(x|z) = −BCE"),
        (ll / D - kl, "the binary cross-entropy was averaged over pixels (reduction='mean'); "
                      "log p(x|z) is the sum over the D pixels: reduction='none', then .sum(-1)"),
        (ll.sum() / (B * D) - kl, "the binary cross-entropy was averaged over pixels and "
                                  "batch (reduction='mean'); use reduction='none' and sum over "
                                  "the pixels of each image"),
        (ll.sum() - kl, "the binary cross-entropy was summed over the whole batch "
                        "(reduction='sum'); use reduction='none' and .sum(-1): one value per "
                        "image"),
        (ll - kl.sum(), "the KL was summed over the batch too: one KL per image, summed over "
                        "the latents only (.sum(-1))"),
        (-((probs - x) ** 2).sum(-1) - kl,
         "that is a squared error, the log-likelihood of a Gaussian decoder; this decoder is "
         "Bernoulli: use binary_cross_entropy_with_logits"),
        (expected.mean(), "you averaged over the batch; return one ELBO per data point, "
                          "shape [B]"),
        (expected.sum(), "you summed over the batch; return one ELBO per data point, shape [B]"),
        (Bernoulli(probs=torch.sigmoid(probs)).log_prob(x).sum(-1) - kl,
         "the sigmoid was applied twice: x_logits are logits, so use "
         "binary_cross_entropy_with_logits (or sigmoid once)"),
        ((x * eta).sum(-1) - kl, "log σ(η) is not η: use binary_cross_entropy_with_logits, "
                                 "or x·η − softplus(η)"),
        ((eta * x - F.softplus(x)).sum(-1) - kl,
         "the arguments of binary_cross_entropy_with_logits are swapped: the logits come "
         "first (input), the data x second (target)"),
        (-F.binary_cross_entropy(x, probs, reduction="none").sum(-1) - kl,
         "the arguments of binary_cross_entropy are swapped: the predicted probabilities "
         "come first (input), the data x second (target)"),
        *[(ll - wrong_kl, f"the KL term is wrong: {hint}")
          for wrong_kl, hint in kl_diag_std_normal_mistakes(m, lv)],
    ]
    got = ex.call(fn, x, x_logits, mu, log_var)
    got = ex.verdict(got, expected, "the ELBO of 5 images (12 pixels, 3 latents)", mistakes,
                   shape_hint="one ELBO per data point: sum over pixels and latents, not over "
                              "the batch, giving shape [B]",
                   nan_hint="NaN or inf comes from a log of 0 or of a negative number: "
                            "log(sigmoid(η)) can be log 0 (binary_cross_entropy_with_logits "
                            "never is), and log_var = log σ² is negative for σ² < 1, so it is "
                            "no variance: σ² = exp(log_var)")
    if not got.requires_grad:
        ex.fail("no gradient flows through your ELBO",
                hint="keep the computation in torch (no .item(), numpy, or math.exp)")
    grads = torch.autograd.grad(got.sum(), (x_logits, mu, log_var), allow_unused=True)
    for grad, name in zip(grads, ("x_logits", "mu", "log_var")):
        if grad is None:
            ex.fail(f"your ELBO does not depend on {name} through autograd",
                    hint="compute it from the tensors you are given, without .detach()")
    cut = "the values are right but a gradient is not: part of the computation is cut off"
    ex.close(grads[0], x - probs, "the gradient with respect to x_logits", hint=cut)
    ex.close(grads[1], -m, "the gradient with respect to mu", hint=cut)
    ex.close(grads[2], -0.5 * (var - 1), "the gradient with respect to log_var", hint=cut)
    _confident_logits(ex, fn, gen, x, m, lv)
    ex.passed("matches Bernoulli(logits).log_prob − kl_divergence(q, N(0, I)), gradients "
              "included, and stays exact for confident logits (|η| up to 150) in float32")


def _confident_logits(ex: Exercise, fn: Callable, gen: torch.Generator, x: Tensor, m: Tensor,
                      lv: Tensor) -> None:
    """The ELBO at the logits of a confident decoder, ±20 to ±150, in the float32 of
    training: σ(η) rounds to 1 there for η > 17 (and to 0 for η < −103), so log(1 − σ(η))
    and log σ(η) computed from σ(η) are log 0 = −inf, or −100 where binary_cross_entropy
    clamps them, while the forms that work with the logits (binary_cross_entropy_with_logits,
    softplus, logsigmoid) stay exact."""
    B, D = x.shape
    sign = torch.where(torch.rand(B, D, generator=gen, dtype=DTYPE) < 0.5, -1.0, 1.0)
    eta = (sign * (20 + 130 * torch.rand(B, D, generator=gen, dtype=DTYPE))).float()
    x32, mu32, lv32 = x.float(), m.float(), lv.float()
    q = Independent(Normal(mu32.double(), torch.exp(0.5 * lv32.double())), 1)
    kl = kl_divergence(q, Independent(Normal(torch.zeros_like(m), torch.ones_like(m)), 1))
    expected = Bernoulli(logits=eta.double()).log_prob(x).sum(-1) - kl
    unstable = -F.binary_cross_entropy(torch.sigmoid(eta), x32, reduction="none").sum(-1)
    got = ex.call(fn, x32, eta, mu32, lv32)
    ex.verdict(got, expected, "the ELBO for confident logits (|η| from 20 to 150, float32)",
               [(unstable.double() - kl,
                 "sigmoid(η) rounds to exactly 1 in float32 once η > 17 (to 0 below −103), "
                 "and binary_cross_entropy clamps the log 0 that follows at −100: give the "
                 "logits themselves to binary_cross_entropy_with_logits")],
               shape_hint="one ELBO per data point, shape [B]",
               nan_hint="log(sigmoid(η)) or log(1 − sigmoid(η)) is log 0 once sigmoid(η) "
                        "rounds to 0 or 1 (for η > 17 in float32), and exp(η) overflows for "
                        "η > 88: work with the logits (binary_cross_entropy_with_logits or "
                        "softplus)",
               hint="right for moderate logits but not for confident ones: log σ(η) taken "
                    "from sigmoid(η) loses everything once sigmoid(η) rounds to 0 or 1; work "
                    "with the logits (binary_cross_entropy_with_logits or softplus)")


# 4.5c ---------------------------------------------------------------------------------------

EX_4_5C = Exercise("4.5c", "the IWAE bound")


def _lse64(log_w: Tensor) -> Tensor:
    """log(1/k Σ w) in float64, shifting by the max by hand (independent of torch.logsumexp)."""
    top = log_w.max(0).values
    return top + torch.log(torch.exp(log_w - top).sum(0)) - math.log(log_w.shape[0])


@self_check
def iwae_bound(fn: Callable) -> None:
    """Check ``fn(log_w)`` -> log (1/k Σ_s exp(log_w[s])) per column, from ``[k, B]``."""
    ex = EX_4_5C
    gen = _gen(47)
    k, B = 6, 4
    log_w = -90 + 3 * _randn(gen, k, B)
    expected = _lse64(log_w)
    lse = expected + math.log(k)
    mistakes: list[Mistake] = [
        (expected + 2 * math.log(k), "subtract log k, do not add it: log (1/k) Σ w = "
                                     "logsumexp − log k"),
        (lse, f"the −log k is missing: the bound averages the k weights, "
              f"log (1/k) Σ w = logsumexp − log k (here log {k} = {math.log(k):.4f})"),
        (lse / k, f"the 1/k sits inside the log: subtract log k (here {math.log(k):.4f}) "
                  "instead of dividing by k"),
        (log_w.mean(0), "you averaged the log-weights: that is the k-sample ELBO, not the IWAE "
                        "bound; average the weights inside the log"),
        (torch.logsumexp(log_w, 1) - math.log(B), "the reduction runs over the wrong axis: the "
                                                  "k samples are along dim 0, data along dim 1"),
        (torch.logsumexp(log_w, 1) - math.log(k), "the reduction runs over the wrong axis: "
                                                  "the k samples are along dim 0, data along "
                                                  "dim 1"),
        (log_w.max(0).values, "you kept only the largest weight; add all k of them "
                              "(logsumexp does, stably)"),
        (log_w.max(0).values - math.log(k), "you kept only the largest weight; add all k of "
                                            "them (logsumexp does, stably)"),
        (log_w.sum(0) - math.log(k), "a sum of logs is the log of a product; the bound needs "
                                     "the log of a sum: torch.logsumexp"),
        (expected.mean(), "return one bound per data point, shape [B]"),
    ]
    got = ex.call(fn, log_w)
    ex.verdict(got, expected, f"the bound for k = {k} samples of {B} data points", mistakes,
             shape_hint="one value per data point: reduce over the k samples (dim 0) only",
             nan_hint="the weights exp(log_w) underflow to 0 for log_w near −90 in float32, "
                      "or −800 in float64: subtract the max first, or use torch.logsumexp")
    # Realistic log-weights of a VAE on MNIST (about −100 nats) in float32, and very
    # negative ones in float64: a naive log(mean(exp)) returns -inf here.
    deep = (-800 + 2 * _randn(gen, k, B))
    got = ex.call(fn, deep)
    ex.verdict(got, _lse64(deep), "the bound for log-weights near −800",
             nan_hint="exp(−800) underflows to 0 even in float64, so log(mean(exp(log_w))) is "
                      "−inf: use torch.logsumexp(log_w, 0) − log k, which subtracts the max "
                      "first")
    single = log_w[:1]
    got = ex.call(fn, single)
    ex.verdict(got, single[0], "the bound for k = 1",
             hint="with one sample the IWAE bound is the ELBO: log w itself")
    ex.passed("logsumexp − log k along the samples, stable for log-weights near −800")
