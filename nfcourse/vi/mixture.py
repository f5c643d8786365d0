r"""The Bayesian Gaussian mixture of Blei, Kucukelbir & McAuliffe (2017), §2–3, its ELBO,
and coordinate ascent variational inference (CAVI).

Model (n points in D dimensions, K components; the paper's example is D = 1)::

    μ_k ~ N(0, σ² I)                     k = 1..K
    c_i ~ Cat(1/K, ..., 1/K)              i = 1..n   (one-hot)
    x_i | c_i, μ ~ N(c_iᵀμ, I)

Mean-field family::

    q(μ, c) = Π_k N(μ_k; m_k, s_k² I) · Π_i Cat(c_i; φ_i)

ELBO (the paper's eq. 21, term by term; E[‖μ_k‖²] = ‖m_k‖² + D s_k²)::

    E[log p(μ_k)]        = −D/2 log(2πσ²) − (‖m_k‖² + D s_k²) / (2σ²)
    E[log p(c_i)]        = −log K
    E[log p(x_i|c_i,μ)]  = −D/2 log 2π
                           − ½ Σ_k φ_ik (‖x_i‖² − 2 x_iᵀm_k + ‖m_k‖² + D s_k²)
    −E[log q(c_i)]       = −Σ_k φ_ik log φ_ik
    −E[log q(μ_k)]       = D/2 (log(2π s_k²) + 1)
    ELBO = Σ_k (E[log p(μ_k)] − E[log q(μ_k)])
         + Σ_i (E[log p(c_i)] + E[log p(x_i|c_i,μ)] − E[log q(c_i)])

CAVI updates (the paper's eqs. 26, 34, 35), each the exact maximiser of the ELBO in its
coordinate, so the ELBO never decreases::

    φ_ik ∝ exp{ x_iᵀ m_k − (‖m_k‖² + D s_k²) / 2 }
    m_k  = Σ_i φ_ik x_i / (1/σ² + Σ_i φ_ik)
    s_k² = 1 / (1/σ² + Σ_i φ_ik)

Shapes: ``x`` [n, D], ``phi`` [n, K], ``m`` [K, D], ``s2`` [K]; ``sigma2`` a number.
Everything takes its device and dtype from ``x``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from nfcourse.utils import progress

__all__ = [
    "Simulation", "simulate", "expected_log_lik", "global_terms", "elbo", "elbo_terms",
    "update_phi", "update_m_s2", "cavi_step", "init_params", "CaviResult", "cavi",
    "cavi_restarts", "elbo_ascent", "match_components", "relative_change",
]


@dataclass
class Simulation:
    """Data drawn from the model, with the hidden truth kept for plots and checks."""

    x: torch.Tensor    # [n, D] observations
    c: torch.Tensor    # [n] component index of each point (long)
    mu: torch.Tensor   # [K, D] component means


def simulate(n: int, K: int, D: int = 1, sigma2: float = 25.0,
             generator: torch.Generator | None = None,
             dtype: torch.dtype = torch.float64) -> Simulation:
    """Draw μ_k ~ N(0, σ² I), c_i ~ Cat(1/K), x_i ~ N(μ_{c_i}, I).

    >>> sim = simulate(6, K=3, D=2, generator=torch.Generator().manual_seed(0))
    >>> sim.x.shape, sim.c.shape, sim.mu.shape
    (torch.Size([6, 2]), torch.Size([6]), torch.Size([3, 2]))
    """
    mu = math.sqrt(sigma2) * torch.randn(K, D, generator=generator, dtype=dtype)
    c = torch.randint(K, (n,), generator=generator)
    x = mu[c] + torch.randn(n, D, generator=generator, dtype=dtype)
    return Simulation(x, c, mu)


def _as_2d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(-1) if x.dim() == 1 else x


def _expected_sq_norm(m: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """E‖μ_k‖² = ‖m_k‖² + D s_k², shape [K]."""
    return (m ** 2).sum(-1) + m.shape[-1] * s2


def expected_log_lik(x: torch.Tensor, phi: torch.Tensor, m: torch.Tensor,
                     s2: torch.Tensor) -> torch.Tensor:
    """E_q[log p(x_i | c_i, μ)] for each point, shape [n] (the paper's eq. 21 term).

    In one dimension it equals −½[log 2π + Σ_k φ_ik (x_i² + m_k² + s_k² − 2 x_i m_k)].

    >>> x = torch.tensor([[1.0]]); phi = torch.tensor([[1.0, 0.0]])
    >>> m = torch.tensor([[1.0], [3.0]]); s2 = torch.tensor([0.5, 2.0])
    >>> round(expected_log_lik(x, phi, m, s2).item(), 4)  # −½(log 2π + 1 + 1 + 0.5 − 2)
    -1.1689
    """
    x, m = _as_2d(x), _as_2d(m)
    D = x.shape[-1]
    sq = (x ** 2).sum(-1, keepdim=True) - 2 * x @ m.T + _expected_sq_norm(m, s2)  # [n, K]
    return -0.5 * (D * math.log(2 * math.pi) + (phi * sq).sum(-1))


def global_terms(m: torch.Tensor, s2: torch.Tensor,
                 sigma2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ELBO's terms in q(μ) alone: Σ_k E[log p(μ_k)] and Σ_k −E[log q(μ_k)].

    >>> log_p_mu, entropy_mu = global_terms(torch.zeros(1, 1), torch.ones(1), sigma2=1.0)
    >>> round(float(log_p_mu), 4), round(float(entropy_mu), 4)  # −½ log 2π − ½, ½ log 2πe
    (-1.4189, 1.4189)
    """
    m = _as_2d(m)
    D = m.shape[-1]
    log_p_mu = (-0.5 * D * math.log(2 * math.pi * sigma2)
                - _expected_sq_norm(m, s2) / (2 * sigma2)).sum()
    entropy_mu = (0.5 * D * (torch.log(2 * math.pi * s2) + 1)).sum()
    return log_p_mu, entropy_mu


def elbo_terms(x: torch.Tensor, phi: torch.Tensor, m: torch.Tensor, s2: torch.Tensor,
               sigma2: float) -> dict[str, torch.Tensor]:
    """The five sums that make up the ELBO, by name (see the module docstring)."""
    x, m = _as_2d(x), _as_2d(m)
    n, K = x.shape[0], m.shape[0]
    log_p_mu, entropy_mu = global_terms(m, s2, sigma2)
    log_p_c = x.new_tensor(-n * math.log(K))
    log_p_x = expected_log_lik(x, phi, m, s2).sum()
    entropy_c = -torch.special.xlogy(phi, phi).sum()
    return {"log_p_mu": log_p_mu, "log_p_c": log_p_c, "log_p_x": log_p_x,
            "entropy_c": entropy_c, "entropy_mu": entropy_mu}


def elbo(x: torch.Tensor, phi: torch.Tensor, m: torch.Tensor, s2: torch.Tensor,
         sigma2: float) -> torch.Tensor:
    """The full ELBO of the mixture (a scalar; differentiable in phi, m and s2).

    >>> sim = simulate(50, K=2, generator=torch.Generator().manual_seed(0))
    >>> m, s2 = sim.mu.clone(), torch.full((2,), 0.1, dtype=torch.float64)
    >>> phi = update_phi(sim.x, m, s2)
    >>> new_m, new_s2 = update_m_s2(sim.x, phi, 25.0)
    >>> bool(elbo(sim.x, phi, new_m, new_s2, 25.0) >= elbo(sim.x, phi, m, s2, 25.0))
    True
    """
    return sum(elbo_terms(x, phi, m, s2, sigma2).values())


def update_phi(x: torch.Tensor, m: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """φ_ik ∝ exp{x_iᵀ m_k − (‖m_k‖² + D s_k²)/2}, normalised over k; shape [n, K].

    >>> update_phi(torch.tensor([[0.0]]), torch.tensor([[-1.0], [1.0]]), torch.ones(2))
    tensor([[0.5000, 0.5000]])
    """
    x, m = _as_2d(x), _as_2d(m)
    logits = x @ m.T - 0.5 * _expected_sq_norm(m, s2)
    return torch.softmax(logits, dim=-1)


def update_m_s2(x: torch.Tensor, phi: torch.Tensor,
                sigma2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """m_k = Σ_i φ_ik x_i / (1/σ² + Σ_i φ_ik) and s_k² = 1/(1/σ² + Σ_i φ_ik).

    >>> m, s2 = update_m_s2(torch.tensor([[2.0], [4.0]]), torch.ones(2, 1), sigma2=1.0)
    >>> m, s2  # prior N(0, 1) and two points: precision 3, mean 6/3
    (tensor([[2.]]), tensor([0.3333]))
    """
    x = _as_2d(x)
    precision = 1.0 / sigma2 + phi.sum(0)   # [K]
    s2 = 1.0 / precision
    m = (phi.T @ x) * s2.unsqueeze(-1)      # [K, D]
    return m, s2


def cavi_step(x: torch.Tensor, m: torch.Tensor, s2: torch.Tensor, sigma2: float,
              updates: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sweep of CAVI: every φ_i, then every (m_k, s_k²). Returns (phi, m, s2).

    ``updates``: the two updates ``(update_phi, update_m_s2)`` to run, e.g. a student's own
    (Section 2); default these reference ones."""
    phi_update, m_s2_update = updates or (update_phi, update_m_s2)
    phi = phi_update(x, m, s2)
    m, s2 = m_s2_update(x, phi, sigma2)
    return phi, m, s2


def init_params(x: torch.Tensor, K: int, generator: torch.Generator | None = None,
                method: str = "kmeans++") -> tuple[torch.Tensor, torch.Tensor]:
    """A starting point: m_k at K data points, s_k² = 1.

    ``method="random"`` picks the K points uniformly; ``"kmeans++"`` (the default) picks the
    first uniformly and each next one with probability ∝ its squared distance to the nearest
    point already picked, which spreads the starts over the clusters and makes CAVI's poor
    local optima (one component covering two clusters) much rarer.

    Once every distinct point has been picked (duplicates, or K larger than the number of
    distinct points) all distances are zero and the next pick is uniform.

    >>> x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    >>> m, s2 = init_params(x, 2, torch.Generator().manual_seed(0))
    >>> bool((m[0] - m[1]).abs() > 5), s2
    (True, tensor([1., 1.]))
    """
    x = _as_2d(x)
    n = x.shape[0]
    if method == "random":
        idx = torch.randperm(n, generator=generator)[:K].tolist()
    elif method == "kmeans++":
        idx = [int(torch.randint(n, (1,), generator=generator))]
        d2 = ((x - x[idx[0]]) ** 2).sum(-1).cpu()
        for _ in range(1, K):
            weights = d2 if bool(d2.sum() > 0) else torch.ones_like(d2)
            idx.append(int(torch.multinomial(weights, 1, generator=generator)))
            d2 = torch.minimum(d2, ((x - x[idx[-1]]) ** 2).sum(-1).cpu())
    else:
        raise ValueError(f"method={method!r}: use 'kmeans++' or 'random'")
    return x[idx].clone(), torch.ones(K, dtype=x.dtype, device=x.device)


def relative_change(new: float, old: float) -> float:
    """|new − old| / |old|: the termination statistic for both optimisers."""
    return abs(new - old) / max(abs(old), 1e-300)


@dataclass
class CaviResult:
    """The optimum found and how it was reached."""

    phi: torch.Tensor
    m: torch.Tensor
    s2: torch.Tensor
    elbo: list[float]                 # ELBO after every sweep (elbo[0]: after the first)
    m_history: list[torch.Tensor] = field(default_factory=list)    # m before sweep 1, after each
    phi_history: list[torch.Tensor] = field(default_factory=list)  # phi of each sweep
    iterations: int = 0
    converged: bool = False
    seconds: float = 0.0
    restart_elbos: list[float] = field(default_factory=list)  # final ELBO of each restart


def cavi(x: torch.Tensor, K: int, sigma2: float, m: torch.Tensor | None = None,
         s2: torch.Tensor | None = None, tol: float = 1e-10, max_iter: int = 500,
         generator: torch.Generator | None = None, keep_history: bool = True,
         updates: tuple | None = None) -> CaviResult:
    """CAVI until the relative change of the ELBO falls below ``tol`` (``updates``: the
    pair of update functions to run, see :func:`cavi_step`).

    >>> sim = simulate(200, K=3, generator=torch.Generator().manual_seed(1))
    >>> res = cavi(sim.x, 3, 25.0, generator=torch.Generator().manual_seed(0))
    >>> res.converged, all(b >= a - 1e-9 for a, b in zip(res.elbo, res.elbo[1:]))
    (True, True)
    """
    x = _as_2d(x)
    if m is None or s2 is None:
        m, s2 = init_params(x, K, generator)
    start = time.perf_counter()
    result = CaviResult(phi=torch.empty(0), m=m, s2=s2, elbo=[])
    if keep_history:
        result.m_history.append(m.clone())
    for it in range(1, max_iter + 1):
        phi, m, s2 = cavi_step(x, m, s2, sigma2, updates)
        result.elbo.append(elbo(x, phi, m, s2, sigma2).item())
        if keep_history:
            result.m_history.append(m.clone())
            result.phi_history.append(phi.clone())
        result.iterations = it
        if it > 1 and relative_change(result.elbo[-1], result.elbo[-2]) < tol:
            result.converged = True
            break
    result.phi, result.m, result.s2 = phi, m, s2
    result.seconds = time.perf_counter() - start
    return result


def cavi_restarts(x: torch.Tensor, K: int, sigma2: float, n_restarts: int,
                  generator: torch.Generator | None = None, method: str = "kmeans++",
                  **kwargs) -> CaviResult:
    """The best of ``n_restarts`` CAVI runs, by final ELBO (the ELBO has local optima).

    Each run starts from :func:`init_params` (``method``), drawn in turn from ``generator``;
    extra keyword arguments go to :func:`cavi`. The result is the best run, with the final
    ELBO of every run in ``restart_elbos`` (in the order they ran).

    >>> sim = simulate(200, K=3, generator=torch.Generator().manual_seed(1))
    >>> best = cavi_restarts(sim.x, 3, 25.0, 4, torch.Generator().manual_seed(0))
    >>> len(best.restart_elbos), best.elbo[-1] == max(best.restart_elbos)
    (4, True)
    """
    if n_restarts < 1:
        raise ValueError(f"n_restarts={n_restarts}: need at least one run")
    x = _as_2d(x)
    runs = [cavi(x, K, sigma2, *init_params(x, K, generator, method), **kwargs)
            for _ in range(n_restarts)]
    best = max(runs, key=lambda r: r.elbo[-1])
    best.restart_elbos = [r.elbo[-1] for r in runs]
    return best


def elbo_ascent(x: torch.Tensor, K: int, sigma2: float, m: torch.Tensor, s2: torch.Tensor,
                lr: float = 0.05, tol: float = 1e-10, max_iter: int = 20_000,
                patience: int = 20, desc: str | None = None) -> CaviResult:
    """Direct gradient ascent on the same ELBO with autograd (Adam on unconstrained
    coordinates: softmax logits for φ, log s² for s²), from the same starting point as
    :func:`cavi` (φ from its first update, floored at 1e-8 so that no logit starts deep in
    softmax's flat tail, where its gradient vanishes). Stops once the relative ELBO change
    has stayed below ``tol`` for ``patience`` steps in a row (Adam's steps are not monotone).

    >>> sim = simulate(100, K=2, generator=torch.Generator().manual_seed(0))
    >>> m, s2 = init_params(sim.x, 2, torch.Generator().manual_seed(0))
    >>> a, c = elbo_ascent(sim.x, 2, 25.0, m, s2, lr=0.2), cavi(sim.x, 2, 25.0, m, s2)
    >>> a.converged, abs(a.elbo[-1] - c.elbo[-1]) < 1e-3
    (True, True)
    """
    x = _as_2d(x)
    logits = torch.log(update_phi(x, m, s2).clamp_min(1e-8)).requires_grad_()
    m = m.clone().requires_grad_()
    log_s2 = torch.log(s2).clone().requires_grad_()
    opt = torch.optim.Adam([logits, m, log_s2], lr=lr)
    result = CaviResult(phi=torch.empty(0), m=m, s2=s2, elbo=[])
    start, calm = time.perf_counter(), 0
    for it in progress(range(1, max_iter + 1), desc=desc, leave=False):
        opt.zero_grad()
        value = elbo(x, torch.softmax(logits, -1), m, log_s2.exp(), sigma2)
        (-value).backward()
        opt.step()
        result.elbo.append(value.item())
        result.iterations = it
        calm = calm + 1 if it > 1 and relative_change(result.elbo[-1], result.elbo[-2]) < tol else 0
        if calm >= patience:
            result.converged = True
            break
    with torch.no_grad():
        result.phi, result.m, result.s2 = torch.softmax(logits, -1), m.detach(), log_s2.exp()
        result.elbo.append(elbo(x, result.phi, result.m, result.s2, sigma2).item())
    result.seconds = time.perf_counter() - start
    return result


def match_components(m_ref: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The permutation ``perm`` with ``m[perm]`` closest to ``m_ref`` (labels are arbitrary).

    >>> match_components(torch.tensor([[0.0], [5.0]]), torch.tensor([[5.1], [0.2]]))
    tensor([1, 0])
    """
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(_as_2d(m_ref).double().cpu(), _as_2d(m).double().cpu())
    _, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(cols, dtype=torch.long, device=m.device)
