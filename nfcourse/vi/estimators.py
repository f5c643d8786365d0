r"""Monte Carlo gradient estimators and control variates.

For a family q_λ and an integrand f, the gradient g = ∇_λ E_{q_λ}[f(z)] has two classic
unbiased estimators from S samples::

    score function (log-derivative trick):  ĝ = 1/S Σ_s f(z_s) ∇_λ log q_λ(z_s),   z_s ~ q_λ
    reparameterisation (z = μ + σ ε):         ĝ = 1/S Σ_s ∇_λ f(μ + σ ε_s),   ε_s ~ N(0, 1)

The score of a univariate Gaussian N(x; μ, σ²), with E[score] = 0::

    ∂/∂μ log N(x; μ, σ²) = (x − μ) / σ²
    ∂/∂σ log N(x; μ, σ²) = −1/σ + (x − μ)² / σ³

A control variate h with known mean E[h] lowers the variance of a plain average of f
(Ranganath, Gerrish & Blei 2014, eqs. 9–10; Ross/Haugh write c = −a)::

    f̂ = 1/S Σ_s [f_s − a (h_s − E[h])],   a* = Cov(f, h) / Var(h)

which has variance (1 − ρ²_{fh}) Var(f)/S at a = a*. For vector-valued f and h of one
factor, a single a* = Σ_d Cov(f_d, h_d) / Σ_d Var(h_d).

Conditioning (conditional Monte Carlo) replaces f by E[f | Z], whose variance is smaller by
E[Var(f | Z)] (law of total variance).
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["normal_score", "score_function_samples", "reparam_samples", "cv_coefficient",
           "control_variate", "variance_reduction"]


def normal_score(x: torch.Tensor, mu: torch.Tensor | float,
                 sigma: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂/∂μ, ∂/∂σ) of log N(x; μ, σ²).

    >>> normal_score(torch.tensor([3.0]), 1.0, 2.0)  # ((3−1)/4, −1/2 + 4/8)
    (tensor([0.5000]), tensor([0.]))
    """
    z = x - mu
    return z / sigma ** 2, -1.0 / sigma + z ** 2 / sigma ** 3


def score_function_samples(f: Callable[[torch.Tensor], torch.Tensor], mu: float, sigma: float,
                           n: int, generator: torch.Generator | None = None,
                           dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """n independent one-sample score-function estimates of ∂/∂μ E_{N(μ,σ²)}[f(X)].

    >>> g = torch.Generator().manual_seed(0)
    >>> est = score_function_samples(lambda x: x ** 2, 1.5, 1.0, 200_000, g)
    >>> abs(est.mean().item() - 3.0) < 4 * est.std().item() / 200_000 ** 0.5
    True
    """
    x = mu + sigma * torch.randn(n, generator=generator, dtype=dtype)
    return f(x) * normal_score(x, mu, sigma)[0]


def reparam_samples(f: Callable[[torch.Tensor], torch.Tensor], mu: float, sigma: float,
                    n: int, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """n independent one-sample reparameterisation estimates of ∂/∂μ E_{N(μ,σ²)}[f(X)]
    (autograd through x = μ + σ ε).

    >>> g = torch.Generator().manual_seed(0)
    >>> est = reparam_samples(lambda x: x ** 2, 1.5, 1.0, 100_000, g)
    >>> round(est.mean().item(), 1), round(est.var().item(), 1)  # 2μ, and Var(2X) = 4
    (3.0, 4.0)
    """
    x = (mu + sigma * torch.randn(n, generator=generator, dtype=dtype)).requires_grad_()
    (grad,) = torch.autograd.grad(f(x).sum(), x)
    return grad  # ∂f/∂x · ∂x/∂μ with ∂x/∂μ = 1


def cv_coefficient(f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """a* = Σ_d Cov(f_d, h_d) / Σ_d Var(h_d) over the samples (dim 0).

    >>> h = torch.tensor([0.0, 1.0, 2.0]); cv_coefficient(3 * h + 1, h)
    tensor(3.)
    """
    fc, hc = f - f.mean(0), h - h.mean(0)
    return (fc * hc).sum() / (hc * hc).sum()


def control_variate(f: torch.Tensor, h: torch.Tensor, h_mean: torch.Tensor | float,
                    a: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The adjusted samples f_s − a (h_s − E[h]) and the coefficient a (a* if not given).

    Average the adjusted samples for the estimate; their variance is the new per-sample
    variance. Estimating a* from the same samples adds an O(1/S) bias; pass an ``a``
    estimated elsewhere for an exactly unbiased estimator.

    >>> g = torch.Generator().manual_seed(0); u = torch.rand(100_000, generator=g)
    >>> adjusted, a = control_variate(torch.exp(u), u, 0.5)
    >>> round(adjusted.mean().item(), 3), round(a.item(), 2)  # e − 1 = 1.718, a* ≈ 1.69
    (1.718, 1.69)
    """
    if a is None:
        a = cv_coefficient(f, h)
    a = torch.as_tensor(a, dtype=f.dtype, device=f.device)
    return f - a * (h - h_mean), a


def variance_reduction(naive: torch.Tensor, improved: torch.Tensor) -> float:
    """Var(naive) / Var(improved) over dim 0, summed over any other dims: the factor by which
    the sample budget of the naive estimator must grow to match the improved one.

    >>> variance_reduction(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0]))
    4.0
    """
    return (naive.var(0).sum() / improved.var(0).sum()).item()
