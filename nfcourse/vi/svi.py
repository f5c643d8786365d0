r"""Stochastic variational inference (Hoffman, Blei, Wang & Paisley, 2013) for the Bayesian
Gaussian mixture of :mod:`nfcourse.vi.mixture`, and plain SGD on the same ELBO.

Global factor q(μ_k) = N(m_k, s_k² I) in natural parameters, for the sufficient statistics
(μ_k, −‖μ_k‖²/2)::

    λ_k = (λ_k¹, λ_k²) = (m_k / s_k², 1 / s_k²)           prior: λ⁰ = (0, 1/σ²)

Natural-gradient step on a minibatch B of b of the n points, with the local φ_i (i ∈ B)
set to their CAVI optimum under the current q(μ)::

    λ̂_k = λ⁰ + (n/b) Σ_{i∈B} φ_ik (x_i, 1)                intermediate global parameter
    λ_k ← (1 − ρ_t) λ_k + ρ_t λ̂_k                  (λ̂ − λ is the natural gradient)
    ρ_t = (t + τ)^(−κ),  κ ∈ (0.5, 1], τ ≥ 0       Robbins–Monro: Σρ = ∞, Σρ² < ∞

With b = n and ρ = 1 the step is exactly one CAVI sweep.

Plain SGD instead follows the Euclidean gradient of the same objective with the local φ
optimised out (the "global ELBO")::

    L(m, s²) = max_φ ELBO = Σ_k (E[log p(μ_k)] − E[log q(μ_k)])
               + Σ_i [ −log K − D/2 log 2π − ‖x_i‖²/2
                       + log Σ_k exp(x_iᵀm_k − (‖m_k‖² + D s_k²)/2) ]

estimated on a minibatch by scaling the sum over i by n/b, in the coordinates (m, log s²).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from nfcourse.utils import progress
from nfcourse.vi.mixture import _as_2d, _expected_sq_norm, global_terms, update_phi

__all__ = ["to_natural", "from_natural", "robbins_monro", "svi_step", "global_elbo",
           "SviResult", "svi", "sgd"]


def to_natural(m: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, s²) → λ = (m/s², 1/s²).

    >>> to_natural(torch.tensor([[2.0]]), torch.tensor([0.5]))
    (tensor([[4.]]), tensor([2.]))
    """
    return m / s2.unsqueeze(-1), 1.0 / s2


def from_natural(lam1: torch.Tensor, lam2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """λ = (m/s², 1/s²) → (m, s²).

    >>> from_natural(*to_natural(torch.tensor([[2.0]]), torch.tensor([0.5])))
    (tensor([[2.]]), tensor([0.5000]))
    """
    s2 = 1.0 / lam2
    return lam1 * s2.unsqueeze(-1), s2


def robbins_monro(t: int, tau: float = 1.0, kappa: float = 0.7) -> float:
    """The step size ρ_t = (t + τ)^(−κ).

    >>> robbins_monro(0, tau=1.0), round(robbins_monro(3, tau=1.0, kappa=0.5), 3)
    (1.0, 0.5)
    """
    return (t + tau) ** (-kappa)


def svi_step(x_batch: torch.Tensor, n: int, m: torch.Tensor, s2: torch.Tensor,
             sigma2: float, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One natural-gradient step on a minibatch ``x_batch`` drawn from n points.

    >>> x = torch.tensor([[1.0], [3.0]]); m = torch.tensor([[0.0]]); s2 = torch.ones(1)
    >>> svi_step(x, 2, m, s2, sigma2=1.0, rho=1.0)  # = one CAVI sweep: precision 1 + 2
    (tensor([[1.3333]]), tensor([0.3333]))
    """
    x_batch = _as_2d(x_batch)
    phi = update_phi(x_batch, m, s2)                   # local step, [b, K]
    scale = n / x_batch.shape[0]
    hat1 = scale * phi.T @ x_batch                     # λ̂¹ = 0 + (n/b) Σ φ_ik x_i
    hat2 = 1.0 / sigma2 + scale * phi.sum(0)           # λ̂² = 1/σ² + (n/b) Σ φ_ik
    lam1, lam2 = to_natural(m, s2)
    return from_natural((1 - rho) * lam1 + rho * hat1, (1 - rho) * lam2 + rho * hat2)


def global_elbo(x: torch.Tensor, m: torch.Tensor, s2: torch.Tensor, sigma2: float,
                scale: float = 1.0) -> torch.Tensor:
    """max_φ ELBO(φ, m, s²) in closed form (the local sum multiplied by ``scale``).

    >>> from nfcourse.vi.mixture import elbo, simulate
    >>> sim = simulate(30, 2, generator=torch.Generator().manual_seed(0))
    >>> m, s2 = sim.mu, torch.full((2,), 0.3, dtype=torch.float64)
    >>> bool(torch.isclose(global_elbo(sim.x, m, s2, 25.0),
    ...                    elbo(sim.x, update_phi(sim.x, m, s2), m, s2, 25.0)))
    True
    """
    x, m = _as_2d(x), _as_2d(m)
    D, K = x.shape[-1], m.shape[0]
    log_p_mu, entropy_mu = global_terms(m, s2, sigma2)
    local = (torch.logsumexp(x @ m.T - 0.5 * _expected_sq_norm(m, s2), dim=-1)
             - math.log(K) - 0.5 * D * math.log(2 * math.pi) - 0.5 * (x ** 2).sum(-1))
    return log_p_mu + entropy_mu + scale * local.sum()


@dataclass
class SviResult:
    """Final global parameters and the full-data ELBO against the number of points seen."""

    m: torch.Tensor
    s2: torch.Tensor
    examples: list[int] = field(default_factory=list)
    elbo: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _minibatches(n: int, b: int, generator: torch.Generator | None):
    """Indices of minibatches of size b: shuffled passes through the data."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - b + 1, b):
            yield perm[start:start + b]


def svi(x: torch.Tensor, m: torch.Tensor, s2: torch.Tensor, sigma2: float, batch_size: int,
        n_steps: int, tau: float = 10.0, kappa: float = 0.7, eval_every: int = 1,
        generator: torch.Generator | None = None, desc: str | None = None) -> SviResult:
    """Natural-gradient SVI from (m, s²) for ``n_steps`` minibatch steps, ρ_t = (t + τ)^-κ.

    The default τ = 10 damps the first steps (t counts from 0, so ρ_0 = 10^-0.7 ≈ 0.20):
    with τ = 1, ρ_0 = 1 and the first minibatch, scaled up n/b times, *replaces* the starting
    point; with b = 10 out of 10 000 points that collapses a mixture component for good (1.95
    nats per point short of the optimum after 10 passes; Section 3 runs it).

    >>> from nfcourse.vi.mixture import simulate, init_params
    >>> sim = simulate(500, 3, generator=torch.Generator().manual_seed(1))
    >>> m, s2 = init_params(sim.x, 3, torch.Generator().manual_seed(0))
    >>> res = svi(sim.x, m, s2, 25.0, batch_size=50, n_steps=100, eval_every=10)
    >>> res.examples[-1], res.elbo[-1] > res.elbo[0]
    (5000, True)
    """
    x = _as_2d(x)
    n = x.shape[0]
    result = SviResult(m=m, s2=s2)
    start = time.perf_counter()
    batches = _minibatches(n, batch_size, generator)
    for t in progress(range(n_steps), desc=desc, leave=False):
        idx = next(batches).to(x.device)
        m, s2 = svi_step(x[idx], n, m, s2, sigma2, robbins_monro(t, tau, kappa))
        if (t + 1) % eval_every == 0 or t == n_steps - 1:
            result.examples.append((t + 1) * batch_size)
            result.elbo.append(global_elbo(x, m, s2, sigma2).item())
    result.m, result.s2, result.seconds = m, s2, time.perf_counter() - start
    return result


def sgd(x: torch.Tensor, m: torch.Tensor, s2: torch.Tensor, sigma2: float, batch_size: int,
        n_steps: int, lr: float, tau: float = 10.0, kappa: float = 0.7, eval_every: int = 1,
        generator: torch.Generator | None = None, desc: str | None = None) -> SviResult:
    """Plain SGD on the global ELBO in (m, log s²) with step ``lr · ρ_t / n`` (the 1/n keeps
    the step of a per-point average; the Euclidean gradient grows with n).

    >>> from nfcourse.vi.mixture import simulate, init_params
    >>> sim = simulate(500, 3, generator=torch.Generator().manual_seed(1))
    >>> m, s2 = init_params(sim.x, 3, torch.Generator().manual_seed(0))
    >>> res = sgd(sim.x, m, s2, 25.0, batch_size=50, n_steps=100, lr=1.0, eval_every=10)
    >>> res.elbo[-1] > res.elbo[0]
    True
    """
    x = _as_2d(x)
    n = x.shape[0]
    m = m.clone().requires_grad_()
    log_s2 = s2.log().clone().requires_grad_()
    result = SviResult(m=m, s2=s2)
    start = time.perf_counter()
    batches = _minibatches(n, batch_size, generator)
    for t in progress(range(n_steps), desc=desc, leave=False):
        idx = next(batches).to(x.device)
        objective = global_elbo(x[idx], m, log_s2.exp(), sigma2, scale=n / batch_size)
        grad_m, grad_log_s2 = torch.autograd.grad(objective, (m, log_s2))
        step = lr * robbins_monro(t, tau, kappa) / n
        with torch.no_grad():
            m += step * grad_m
            log_s2 += step * grad_log_s2
            if (t + 1) % eval_every == 0 or t == n_steps - 1:
                result.examples.append((t + 1) * batch_size)
                result.elbo.append(global_elbo(x, m, log_s2.exp(), sigma2).item())
    result.m, result.s2 = m.detach(), log_s2.detach().exp()
    result.seconds = time.perf_counter() - start
    return result
