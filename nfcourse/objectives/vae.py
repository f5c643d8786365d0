r"""Objectives and estimates for latent variable models: ELBO, IWAE bound, importance-sampled
log-likelihood.

With :math:`z_s \sim q_\phi(z \mid x)` drawn by reparameterisation,
:math:`z = \mu + \sigma \odot \varepsilon`, and the *log importance weights*

.. math::

    \log w_s = \log p_\theta(x, z_s) - \log q_\phi(z_s \mid x)
             = \log p_\theta(x \mid z_s) + \log p(z_s) - \log q_\phi(z_s \mid x),

**ELBO** (Monte Carlo KL, any posterior and prior; Kingma & Welling eq. 6):

.. math::

    \mathcal L(x) = \mathbb E_q[\log w] \approx \frac1k \sum_{s=1}^k \log w_s ,

**ELBO** (analytic KL, when q and p have a closed-form KL; K&W eq. 7, R&M's "DLGM diagonal"):

.. math::

    \mathcal L(x) = \mathbb E_q[\log p_\theta(x \mid z)] - \mathrm{KL}(q_\phi(z\mid x)\,\|\,p(z)),
    \qquad \mathrm{KL} = \tfrac12 \sum_j \big(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\big)
    \ \text{for}\ p = \mathcal N(0, I),

**annealed ELBO** (R&M 2015 §6.2, inverse temperature :math:`\beta_t` at step t):

.. math::

    \mathcal L_\beta(x) = \mathbb E_q[\beta \log p_\theta(x, z) - \log q_\phi(z \mid x)],
    \qquad \beta_t = \min\big(1,\ 0.01 + t / 10000\big) \quad(:func:`anneal_beta`),

**IWAE bound** with k samples (Burda et al. 2016), which never decreases with k and tends
to :math:`\log p(x)`:

.. math::

    \mathcal L_k(x) = \mathbb E\Big[\log \frac1k \sum_{s=1}^k w_s\Big]
                   = \mathbb E\big[\operatorname{logsumexp}_s \log w_s\big] - \log k ,
    \qquad \mathcal L = \mathcal L_1 \le \mathcal L_k \le \mathcal L_{k'} \le \log p(x)
    \quad (k < k'),

**importance-sampled log-likelihood** (R&M Appendix E; the test NLL of VAE papers), the
same estimator with many samples S, consistent as :math:`S \to \infty`:

.. math::

    \log p(x) \approx \operatorname{logsumexp}_{s=1}^{S}\big(\log p(x, z_s) - \log q(z_s \mid x)\big) - \log S .

It is computed in chunks of samples, combined with
:math:`\operatorname{logsumexp}(a \cup b) = \log(e^{\operatorname{lse}(a)} + e^{\operatorname{lse}(b)})`,
so S = 5000 fits in memory. Any proposal gives a stochastic *lower* bound on
:math:`\log p(x)` (Jensen: :math:`\mathbb E \log \hat p \le \log \mathbb E \hat p`), so the
reported NLL is an upper bound on the model's, tighter the closer the proposal is to
:math:`p(z \mid x)`.

**Refined proposal** (the *amortization gap*, Cremer et al. 2018; semi-amortized VI, Kim et
al. 2018). The encoder's :math:`\lambda = \mathrm{encoder}_\phi(x)` is one network's guess
for all x; on test data it is worse than the best member of the family. Starting from it,
gradient ascent on that point's own ELBO, with the model fixed,

.. math::

    \lambda^\ast(x) = \arg\max_\lambda\ \mathbb E_{q_\lambda}\big[\log p_\theta(x, z)
    - \log q_\lambda(z)\big],

gives a better proposal for the same estimator; the model, and so its true NLL, is unchanged.

The per-sample formulas of the Section 4 exercises (:func:`reparameterize`,
:func:`bernoulli_log_likelihood`, :func:`kl_std_normal`) live in :mod:`nfcourse.closed_forms`
and are re-exported here. The model-based functions take a :class:`nfcourse.models.VAE`
(anything with ``elbo_terms``), build every bound from :meth:`~nfcourse.models.VAE.elbo_terms`
and return one value per data point, shape ``[B]``.

**What the training loop minimises** (:class:`Objective`): ``loss(model, batch, step,
generator)``, one value per item, whose mean :func:`nfcourse.train.fit` minimises; and
``bound(model, batch, generator)``, the quantity validation reports (higher is better). The
step is passed so that an objective that anneals computes its own :math:`\beta_t`.
:class:`Bound` is the VAE's (ELBO, IWAE, reconstruction); density models use
:class:`nfcourse.objectives.density.MaximumLikelihood`, and flows fitted to an energy use
:class:`nfcourse.objectives.free_energy.FreeEnergy`.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import Tensor

from nfcourse.closed_forms import bernoulli_log_likelihood, kl_std_normal, reparameterize
from nfcourse.objectives.base import Objective, anneal_beta, warmup_steps
from nfcourse.utils import eval_mode
from nfcourse.utils import progress as _progress

__all__ = ["reparameterize", "bernoulli_log_likelihood", "kl_std_normal", "elbo_closed_form",
           "elbo_of_parts", "iwae_bound", "log_weights", "elbo", "iwae", "reconstruction",
           "refine_posterior", "log_marginal_is", "Bound", "BoundFn"]


# The per-sample formulas ------------------------------------------------------------------

def elbo_closed_form(x: Tensor, x_logits: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
    r"""The one-sample ELBO of a Bernoulli-decoder VAE with a diagonal Gaussian posterior and
    a standard normal prior: :math:`\log p(x \mid z) - \mathrm{KL}(q \,\|\, p)` per data point,
    where ``x_logits`` = decoder(z) for one reparameterised z per point. Shapes: ``x`` and
    ``x_logits`` ``[B, D]``, ``mu`` and ``log_var`` ``[B, d]``; returns ``[B]``."""
    return bernoulli_log_likelihood(x, x_logits) - kl_std_normal(mu, log_var)


def elbo_of_parts(reparameterize_fn: Callable = reparameterize,
                  elbo_fn: Callable | None = None) -> Callable:
    """The one-sample ELBO of a diagonal-Gaussian, Bernoulli-decoder VAE assembled from
    ``reparameterize_fn(mu, log_var, eps) -> z`` and ``elbo_fn(x, x_logits, mu, log_var)``
    (default :func:`elbo_closed_form`), as a bound ``(model, x, beta, generator) -> [B]`` for
    :func:`nfcourse.train.fit`: with a student's own two functions, training runs on them.
    No annealing (β = 1): the closed-form ELBO has no separate log p(x, z) to temper."""
    elbo_fn = elbo_closed_form if elbo_fn is None else elbo_fn

    def bound(model, x: Tensor, beta: float, generator: torch.Generator | None) -> Tensor:
        if beta != 1.0:
            raise ValueError(f"beta={beta!r}: an ELBO from parts has no annealing; train with "
                             "anneal=False, or with the objective 'elbo'")
        x = model.prepare(x)
        q = model.posterior(model.encoder(x))
        mu, log_var = q.mu, q.log_var
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return elbo_fn(x, model.decode(reparameterize_fn(mu, log_var, eps)), mu, log_var)
    return bound


def iwae_bound(log_w: Tensor, dim: int = 0) -> Tensor:
    r""":math:`\operatorname{logsumexp}_s \log w_s - \log k`: the k-sample importance-weighted
    bound from k log-weights along ``dim`` (the ELBO is its k = 1 case).

    >>> iwae_bound(torch.log(torch.tensor([[1.0], [3.0]])))   # log((1 + 3)/2)
    tensor([0.6931])
    """
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


# Model-based estimates ----------------------------------------------------------------------

def log_weights(model, x: Tensor, k: int = 1, generator: torch.Generator | None = None,
                params: Tensor | None = None) -> Tensor:
    """log p(x, z_s) − log q(z_s | x) for k reparameterised draws per point: ``[k, B]``.

    ``params``: the posterior's parameters λ (``[B, P]``); default the encoder's, λ = enc(x).
    """
    return model.elbo_terms(x, k, params=params, generator=generator).log_w


def elbo(model, x: Tensor, k: int = 1, analytic_kl: bool | None = None, beta: float = 1.0,
         generator: torch.Generator | None = None) -> Tensor:
    """The ELBO per data point, ``[B]``, averaged over ``k`` posterior draws.

    ``analytic_kl``: ``True`` uses the posterior's closed-form KL (``NotImplementedError``
    if its family declares none for this prior), ``False`` the Monte Carlo KL, ``None``
    (default) the closed form where the family declares one (``has_analytic_kl``).
    ``beta`` < 1 gives R&M's annealed bound E_q[β log p(x, z) − log q(z | x)] (Monte Carlo).
    """
    posterior, prior = model.posterior, model.prior
    closed_form = posterior.has_analytic_kl(prior)
    if analytic_kl and not closed_form:
        raise NotImplementedError(
            f"analytic_kl=True: the {type(posterior).__name__} posterior has no closed-form "
            f"KL to a {type(prior).__name__} prior; pass analytic_kl=None (Monte Carlo KL)")
    t = model.elbo_terms(x, k, generator=generator)
    if beta == 1.0 and analytic_kl is not False and closed_form:
        return t.log_px.mean(0) - t.q.kl(prior)
    return (beta * (t.log_px + t.log_pz) - t.log_q).mean(0)


def iwae(model, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """The k-sample IWAE bound per data point, ``[B]``."""
    return iwae_bound(log_weights(model, x, k, generator))


def reconstruction(model, x: Tensor, k: int = 1,
                   generator: torch.Generator | None = None) -> Tensor:
    """E_q[log p(x | z)] per data point: the whole objective of a deterministic autoencoder
    (nonlinear PCA, with the :class:`~nfcourse.models.PointMass` posterior)."""
    return model.elbo_terms(x, k, generator=generator).log_px.mean(0)


def refine_posterior(model, x: Tensor, steps: int = 100, lr: float = 3e-2, k: int = 5,
                     generator: torch.Generator | None = None,
                     init: Tensor | None = None, progress: bool = False) -> Tensor:
    """The posterior parameters λ*(x), ``[B, P]``: ``steps`` Adam steps (step size ``lr``) on
    each point's own ELBO (``k`` draws per step), starting from ``encoder(x)``, or from
    ``init`` (``[B, P]``; e.g. a Gaussian optimum with an identity flow appended, so that the
    flow's search starts where the Gaussian's ended).

    Only λ moves: the model's parameters get no gradient and its mode (train/eval) is kept.
    Each point's λ follows its own gradient (Adam works element by element), so the result
    does not depend on which points share a batch, up to the draws. ``progress``: a bar.
    """
    if steps < 0 or lr <= 0 or k < 1:
        raise ValueError(f"steps={steps!r}, lr={lr!r}, k={k!r}: refining the posterior needs "
                         "steps >= 0, lr > 0 and k >= 1, e.g. steps=100, lr=3e-2, k=5")
    with eval_mode(model):
        x = model.prepare(x)
        with torch.no_grad():
            lam = model.encoder(x) if init is None else init.detach().clone()
        with torch.enable_grad():
            lam.requires_grad_(True)
            optimizer = torch.optim.Adam([lam], lr=lr)
            for _ in (_progress(range(steps), desc=f"refining q ({len(x)} points)")
                      if progress else range(steps)):
                neg_elbo = -log_weights(model, x, k, generator, params=lam).mean(0).sum()
                lam.grad, = torch.autograd.grad(neg_elbo, lam)  # λ only, not θ or φ
                optimizer.step()
    return lam.detach()


@torch.no_grad()
def log_marginal_is(model, x: Tensor, samples: int = 5000, batch_size: int = 100,
                    chunk_size: int | None = None, generator: torch.Generator | None = None,
                    progress: bool = True, refine_steps: int = 0, refine_lr: float = 3e-2,
                    refine_k: int = 5, params: Tensor | None = None,
                    time_limit: float | None = None) -> Tensor:
    """Importance-sampled log p(x) with ``samples`` (S) draws from q(z | x), ``[N]``.

    With ``refine_steps`` > 0 the proposal is q with the refined parameters of
    :func:`refine_posterior` (``refine_steps``, ``refine_lr``, ``refine_k``) instead of the
    encoder's; with ``params`` (``[N, P]``) it is q with those parameters.

    Works through ``x`` in batches of ``batch_size`` and through S in chunks of
    ``chunk_size`` draws (default: about 2^25 decoder outputs per chunk, ~130 MB in
    float32), combining the chunks with ``logaddexp``. Runs on the model's device; the
    result is on the device of ``x``. The model is put in eval mode.

    ``time_limit`` (seconds): stop after the first batch that ends past it; the result then
    holds the first ``len(result) < N`` points only (a guard for notebooks on slow machines).
    """
    device = next(model.parameters()).device
    n = x.shape[0]
    if chunk_size is None:
        chunk_size = max(1, min(samples, 2**25 // (batch_size * model.x_dim)))
    chunks = [min(chunk_size, samples - s) for s in range(0, samples, chunk_size)]
    out = []
    bar = _progress(range(math.ceil(n / batch_size) * len(chunks)),
                    desc=f"log p(x), S={samples}" + (f", q refined ({refine_steps} steps)"
                                                      if refine_steps else ""),
                    disable=not progress)
    started = time.perf_counter()
    with eval_mode(model), bar:
        for start in range(0, n, batch_size):
            if time_limit is not None and out and time.perf_counter() - started > time_limit:
                break
            xb = model.prepare(x[start:start + batch_size].to(device))
            if params is not None:
                lam = params[start:start + batch_size].to(device)
            elif refine_steps:
                lam = refine_posterior(model, xb, refine_steps, refine_lr, refine_k, generator)
            else:
                lam = model.encoder(xb)
            acc = torch.full((xb.shape[0],), -math.inf, dtype=xb.dtype, device=device)
            for c in chunks:
                log_w = log_weights(model, xb, c, generator, params=lam)
                acc = torch.logaddexp(acc, torch.logsumexp(log_w, 0))
                bar.update(1)
            out.append(acc - math.log(samples))
    return torch.cat(out).to(x.device)


# The VAE's bounds as a training objective ---------------------------------------------------

#: ``(model, x, beta, generator) -> bound per data point [B]``: a VAE bound at inverse
#: temperature beta.
BoundFn = Callable[..., Tensor]


class Bound(Objective):
    """A VAE bound as a training objective: ``"elbo"`` (``k`` draws), ``"iwae"`` (``k``
    draws), ``"reconstruction"`` (a deterministic autoencoder), or a function
    ``(model, x, beta, generator) -> bound [B]``.

    ``anneal``: ``True`` for R&M's β_t = min(1, 0.01 + t/10000), an int for another
    number of warm-up steps, ``False``/0 for β = 1. Validation is at β = 1. Only the ELBO
    (and a function, which receives β) has a tempered form; the IWAE bound and the
    reconstruction would ignore β while the log reported β < 1, so they refuse it.

    >>> Bound("elbo", anneal=True).temperature(4_900)
    0.5
    >>> Bound("iwae", k=5, anneal=True)        # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Bound('iwae', anneal=True): the iwae bound has no annealed form ...
    """

    def __init__(self, bound: str | BoundFn = "elbo", k: int = 1, anneal: bool | int = False):
        self.fn = self._function(bound, k)
        self.warmup = warmup_steps(anneal)
        if self.warmup and bound in ("iwae", "reconstruction"):
            raise ValueError(f"Bound({bound!r}, anneal={anneal!r}): the {bound} bound has no "
                             "annealed form (it would ignore beta while the log reported "
                             "beta < 1); anneal the ELBO, Bound('elbo', anneal=...), or "
                             "train this one with anneal=False")

    @staticmethod
    def _function(bound: str | BoundFn, k: int) -> BoundFn:
        if callable(bound):
            return bound
        if bound == "elbo":
            return lambda m, x, beta, gen: elbo(m, x, k, beta=beta, generator=gen)
        if bound == "iwae":
            return lambda m, x, beta, gen: iwae(m, x, k, generator=gen)
        if bound == "reconstruction":
            return lambda m, x, beta, gen: reconstruction(m, x, generator=gen)
        raise ValueError(f"objective={bound!r}: use 'elbo', 'iwae', 'reconstruction', a "
                         "function (model, x, beta, generator) -> bound per data point, or an "
                         "nfcourse.objectives.Objective")

    def loss(self, model, x, step, generator):
        return -self.fn(model, x, self.temperature(step), generator)

    def bound(self, model, x, generator):
        return self.fn(model, x, 1.0, generator)
