r"""Black-box variational inference (Ranganath, Gerrish & Blei, 2014) for the Bayesian
Gaussian mixture of :mod:`nfcourse.vi.mixture`, with Rao-Blackwellization and control variates.

Same family as CAVI, in unconstrained coordinates λ = (m, log s², logits)::

    q(μ_k) = N(m_k, s_k² I),   q(c_i) = Cat(φ_i),   φ_i = softmax(logits_i)

Scores (∇_λ log q for one sample)::

    ∂/∂m_k       log q(μ_k) = (μ_k − m_k) / s_k²
    ∂/∂log s_k²  log q(μ_k) = −D/2 + ‖μ_k − m_k‖² / (2 s_k²)
    ∂/∂logits_i  log q(c_i) = onehot(c_i) − φ_i

Naive score-function gradient of the ELBO (BBVI eq. 3), z_s = (μ, c)_s ~ q::

    ∇_λ L ≈ 1/S Σ_s ∇_λ log q(z_s) [log p(x, z_s) − log q(z_s)]

Rao-Blackwellized (BBVI eq. 6): the gradient for factor j keeps only the terms of the
log-joint in z_j's Markov blanket (the rest have zero expectation against its score)::

    μ_k:  w_k = log p(μ_k) + Σ_i 1[c_i = k] log N(x_i; μ_k, I) − log q(μ_k)
    c_i:  w_i = log p(c_i) + log N(x_i; μ_{c_i}, I) − log q(c_i)

Control variate per factor, h = its score (E[h] = 0), f = h · w (BBVI eqs. 9–10)::

    ĝ_j = 1/S Σ_s (f_s − a_j h_s),   a_j = Σ_d Cov(f_d, h_d) / Σ_d Var(h_d)

with a_j for sample s estimated on the other S − 1 samples (leave-one-out, using E[h] = 0:
Cov(f, h) = E[f·h], Var(h) = E[h·h]), so that the estimator stays exactly unbiased.

Doubly stochastic (a minibatch B of b of the n points per step, as SVI draws them): the
global weight scales the likelihood terms by n/b, an unbiased estimate of the full sum,

    w_k = log p(μ_k) − log q(μ_k) + (n/b) Σ_{i∈B} 1[c_i = k] log N(x_i; μ_k, I)

and only the c_i of the minibatch are sampled and moved (w_i as above, unscaled: its own
point's term is the only one that survives against the score of c_i). This needs the
Rao-Blackwellized weights: in the naive total weight point i's own term would be scaled by
n/b too, which biases its gradient.

The exact ELBO is available in closed form (:func:`nfcourse.vi.mixture.elbo`), which lets the
tests check these estimators for bias against autograd and lets the notebook plot the true
objective along the noisy ascent.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from nfcourse.utils import progress
from nfcourse.vi.mixture import _as_2d, elbo, update_phi

__all__ = ["sample_q", "log_terms", "scores", "local_weights", "grad_samples",
           "bbvi_gradient", "exact_gradient", "BbviResult", "bbvi"]


def sample_q(m: torch.Tensor, log_s2: torch.Tensor, logits: torch.Tensor, S: int,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """S draws (μ [S, K, D], c [S, n]) from the mean-field q.

    >>> mu, c = sample_q(torch.zeros(3, 2), torch.zeros(3), torch.zeros(5, 3), 4)
    >>> mu.shape, c.shape
    (torch.Size([4, 3, 2]), torch.Size([4, 5]))
    """
    eps = torch.randn((S, *m.shape), generator=generator, dtype=m.dtype).to(m.device)
    mu = m + torch.exp(0.5 * log_s2).unsqueeze(-1) * eps
    probs = torch.softmax(logits, -1).cpu()
    c = torch.multinomial(probs.repeat(S, 1), 1, replacement=True, generator=generator)
    return mu, c.view(S, -1).to(logits.device)


def log_terms(x: torch.Tensor, mu: torch.Tensor, c: torch.Tensor, m: torch.Tensor,
              log_s2: torch.Tensor, logits: torch.Tensor, sigma2: float) -> dict[str, torch.Tensor]:
    """Per-sample log-densities: log p(μ_k), log q(μ_k) [S, K]; log p(c_i), log q(c_i) and
    log N(x_i; μ_{c_i}, I) [S, n]."""
    x = _as_2d(x)
    D, K = x.shape[-1], m.shape[0]
    s2 = log_s2.exp()
    log_p_mu = -0.5 * D * math.log(2 * math.pi * sigma2) - (mu ** 2).sum(-1) / (2 * sigma2)
    log_q_mu = -0.5 * D * torch.log(2 * math.pi * s2) - ((mu - m) ** 2).sum(-1) / (2 * s2)
    mu_c = torch.gather(mu, 1, c.unsqueeze(-1).expand(*c.shape, D))          # [S, n, D]
    log_lik = -0.5 * D * math.log(2 * math.pi) - 0.5 * ((x - mu_c) ** 2).sum(-1)
    log_q_c = torch.gather(torch.log_softmax(logits, -1).expand(c.shape[0], -1, -1), 2,
                           c.unsqueeze(-1)).squeeze(-1)
    log_p_c = torch.full_like(log_q_c, -math.log(K))
    return {"log_p_mu": log_p_mu, "log_q_mu": log_q_mu, "log_lik": log_lik,
            "log_p_c": log_p_c, "log_q_c": log_q_c}


def scores(mu: torch.Tensor, c: torch.Tensor, m: torch.Tensor, log_s2: torch.Tensor,
           logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∇ log q per sample: w.r.t. m [S, K, D], log s² [S, K] and logits [S, n, K]."""
    D = m.shape[-1]
    s2 = log_s2.exp()
    diff = mu - m
    score_m = diff / s2.unsqueeze(-1)
    score_log_s2 = -0.5 * D + (diff ** 2).sum(-1) / (2 * s2)
    onehot = torch.nn.functional.one_hot(c, logits.shape[-1]).to(logits.dtype)
    return score_m, score_log_s2, onehot - torch.softmax(logits, -1)


def local_weights(terms: dict[str, torch.Tensor], c: torch.Tensor, K: int,
                  scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rao-Blackwellized weights: w_k [S, K] for the μ_k factors, w_i [S, n] for the c_i
    (``scale`` = n/b multiplies the likelihood terms of w_k for a minibatch of b points)."""
    onehot = torch.nn.functional.one_hot(c, K).to(terms["log_lik"].dtype)     # [S, n, K]
    w_mu = (terms["log_p_mu"] - terms["log_q_mu"]
            + scale * (onehot * terms["log_lik"].unsqueeze(-1)).sum(1))
    w_c = terms["log_p_c"] + terms["log_lik"] - terms["log_q_c"]
    return w_mu, w_c


def grad_samples(x: torch.Tensor, m: torch.Tensor, log_s2: torch.Tensor, logits: torch.Tensor,
                 sigma2: float, S: int, rao_blackwell: bool = True,
                 generator: torch.Generator | None = None, scale: float = 1.0):
    """Per-sample gradient terms f = score · weight and the scores h, for the global factors
    (f_mu, h_mu: [S, K, D+1], columns m then log s²) and the local ones (f_c, h_c: [S, n, K]).
    ``x`` and ``logits`` may be a minibatch, with ``scale`` = n/b (Rao-Blackwellized only)."""
    mu, c = sample_q(m, log_s2, logits, S, generator)
    terms = log_terms(x, mu, c, m, log_s2, logits, sigma2)
    score_m, score_log_s2, score_logits = scores(mu, c, m, log_s2, logits)
    if rao_blackwell:
        w_mu, w_c = local_weights(terms, c, m.shape[0], scale)
    elif scale != 1.0:
        raise ValueError("a minibatch needs the Rao-Blackwellized weights: in the naive total "
                         "weight each point's own term would be scaled by n/b (biased); "
                         "pass rao_blackwell=True")
    else:
        total = ((terms["log_p_mu"] - terms["log_q_mu"]).sum(-1)
                 + (terms["log_p_c"] + terms["log_lik"] - terms["log_q_c"]).sum(-1))   # [S]
        w_mu, w_c = total.unsqueeze(-1), total.unsqueeze(-1)
    h_mu = torch.cat([score_m, score_log_s2.unsqueeze(-1)], -1)
    return h_mu * w_mu.unsqueeze(-1), h_mu, score_logits * w_c.unsqueeze(-1), score_logits


def _cv_coefficients(f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Leave-one-out a_j for each sample and factor: f, h [S, J, d] → [S, J, 1].

    Since E[h] = 0, Cov(f, h) = E[f h]; sample s gets a_j fitted on the other S − 1 samples,
    which are independent of it, so the control-variate estimator stays exactly unbiased.
    With S = 1 there are no other samples: a = 0, no control variate (the floor is the
    dtype's smallest normal number, so that 0 / floor = 0 in float32 too).

    >>> f = torch.tensor([[[2.0]], [[4.0]]]); h = torch.tensor([[[1.0]], [[2.0]]])
    >>> _cv_coefficients(f, h).flatten()  # a for sample 0 from sample 1: 8/4; and 2/1
    tensor([2., 2.])
    >>> _cv_coefficients(f[:1], h[:1]).flatten()
    tensor([0.])
    """
    fh, hh = (f * h).sum(-1), (h * h).sum(-1)                  # [S, J]
    a = (fh.sum(0) - fh) / (hh.sum(0) - hh).clamp_min(torch.finfo(hh.dtype).tiny)
    return a.unsqueeze(-1)


def bbvi_gradient(x: torch.Tensor, m: torch.Tensor, log_s2: torch.Tensor, logits: torch.Tensor,
                  sigma2: float, S: int, rao_blackwell: bool = True, control_variates: bool = True,
                  generator: torch.Generator | None = None, scale: float = 1.0):
    """The S-sample estimate of ∇ ELBO w.r.t. (m [K, D], log s² [K], logits [n, K]); for a
    minibatch (``x``, ``logits`` its b rows, ``scale`` = n/b) the logits' rows of the batch.

    >>> from nfcourse.vi.mixture import simulate
    >>> sim = simulate(20, 2, generator=torch.Generator().manual_seed(0))
    >>> m, log_s2 = sim.mu.clone(), torch.zeros(2, dtype=torch.float64)
    >>> logits = torch.zeros(20, 2, dtype=torch.float64)
    >>> [g.shape for g in bbvi_gradient(sim.x, m, log_s2, logits, 25.0, S=10)]
    [torch.Size([2, 1]), torch.Size([2]), torch.Size([20, 2])]
    """
    f_mu, h_mu, f_c, h_c = grad_samples(x, m, log_s2, logits, sigma2, S, rao_blackwell,
                                        generator, scale)
    if control_variates:
        f_mu = f_mu - _cv_coefficients(f_mu, h_mu) * h_mu
        f_c = f_c - _cv_coefficients(f_c, h_c) * h_c
    g_mu, g_c = f_mu.mean(0), f_c.mean(0)
    return g_mu[..., :-1], g_mu[..., -1], g_c


def exact_gradient(x: torch.Tensor, m: torch.Tensor, log_s2: torch.Tensor, logits: torch.Tensor,
                   sigma2: float):
    """∇ ELBO w.r.t. (m, log s², logits) by autograd through the closed-form ELBO."""
    params = [p.detach().clone().requires_grad_() for p in (m, log_s2, logits)]
    value = elbo(x, torch.softmax(params[2], -1), params[0], params[1].exp(), sigma2)
    return torch.autograd.grad(value, params)


@dataclass
class BbviResult:
    """Final variational parameters and the exact ELBO along the way."""

    m: torch.Tensor
    s2: torch.Tensor
    phi: torch.Tensor
    steps: list[int] = field(default_factory=list)
    examples: list[int] = field(default_factory=list)
    elbo: list[float] = field(default_factory=list)
    seconds: float = 0.0


def bbvi(x: torch.Tensor, m: torch.Tensor, s2: torch.Tensor, sigma2: float, n_steps: int,
         S: int, lr: float = 0.05, rao_blackwell: bool = True, control_variates: bool = True,
         eval_every: int = 10, generator: torch.Generator | None = None,
         desc: str | None = None, batch_size: int | None = None) -> BbviResult:
    """BBVI by Adam ascent on the score-function gradient, from (m, s²) with φ at its CAVI
    update (as CAVI's first sweep would start). With ``batch_size`` b it is doubly stochastic:
    each step draws b points without replacement, and only their logits move (lazy Adam,
    ``torch.optim.SparseAdam``, so the others keep no stale momentum).

    >>> from nfcourse.vi.mixture import simulate, init_params
    >>> sim = simulate(50, 2, generator=torch.Generator().manual_seed(0))
    >>> m, s2 = init_params(sim.x, 2, torch.Generator().manual_seed(0))
    >>> res = bbvi(sim.x, m, s2, 25.0, n_steps=20, S=5, generator=torch.Generator().manual_seed(0))
    >>> res.elbo[-1] > res.elbo[0]
    True
    """
    x = _as_2d(x)
    n = x.shape[0]
    b = n if batch_size is None else batch_size
    if not 0 < b <= n:
        raise ValueError(f"batch_size={batch_size} must be between 1 and the {n} data points")
    logits = torch.log(update_phi(x, m, s2).clamp_min(1e-12))
    params = [m.clone(), s2.log().clone(), logits]
    if batch_size is None:
        optimizers = [torch.optim.Adam(params, lr=lr, maximize=True)]
    else:
        optimizers = [torch.optim.Adam(params[:2], lr=lr, maximize=True),
                      torch.optim.SparseAdam(params[2:], lr=lr, maximize=True)]
    result = BbviResult(m=m, s2=s2, phi=torch.softmax(logits, -1))

    def record(step):
        result.steps.append(step)
        result.examples.append(step * b)
        result.elbo.append(elbo(x, torch.softmax(params[2], -1), params[0],
                                params[1].exp(), sigma2).item())

    start = time.perf_counter()
    record(0)
    for t in progress(range(1, n_steps + 1), desc=desc, leave=False):
        if batch_size is None:
            grads = bbvi_gradient(x, *params, sigma2, S, rao_blackwell, control_variates,
                                  generator)
        else:
            idx = torch.randperm(n, generator=generator)[:b].to(x.device)
            grads = bbvi_gradient(x[idx], params[0], params[1], params[2][idx], sigma2, S,
                                  rao_blackwell, control_variates, generator, scale=n / b)
            rows = torch.sparse_coo_tensor(idx.unsqueeze(0), grads[2], params[2].shape,
                                           check_invariants=False)  # rows unique: randperm
            grads = (*grads[:2], rows)
        for p, g in zip(params, grads):
            p.grad = g
        for opt in optimizers:
            opt.step()
        if t % eval_every == 0 or t == n_steps:
            record(t)
    result.m, result.s2, result.phi = params[0], params[1].exp(), torch.softmax(params[2], -1)
    result.seconds = time.perf_counter() - start
    return result
