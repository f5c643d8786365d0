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

**annealed ELBO** (R&M 2015 §6.2, inverse temperature :math:`\beta_t`, see
:func:`nfcourse.train.anneal_beta`):
:math:`\mathcal L_\beta(x) = \mathbb E_q[\beta \log p_\theta(x, z) - \log q_\phi(z \mid x)]`,

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

The first three functions are the per-sample formulas of the Section 4 exercises; the
rest take a model (:class:`nfcourse.models.VAE`, or anything with ``prepare``,
``encoder``, ``decode``, ``posterior``, ``prior`` and ``likelihood``) and return one value
per data point, shape ``[B]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nfcourse.utils import progress as _progress

__all__ = ["reparameterize", "bernoulli_log_likelihood", "kl_std_normal", "elbo_closed_form",
           "log_weights", "elbo", "iwae_bound", "iwae", "reconstruction", "refine_posterior",
           "log_marginal_is"]


# The per-sample formulas ------------------------------------------------------------------

def reparameterize(mu: Tensor, log_var: Tensor, eps: Tensor) -> Tensor:
    r""":math:`z = \mu + \sigma \odot \varepsilon` with :math:`\sigma = \exp(\tfrac12 \log\sigma^2)`.

    >>> reparameterize(torch.tensor([1.0]), torch.tensor([math.log(4.0)]), torch.tensor([0.5]))
    tensor([2.])
    """
    return mu + torch.exp(0.5 * log_var) * eps


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    r""":math:`\sum_i x_i \log\sigma(\eta_i) + (1 - x_i)\log(1 - \sigma(\eta_i))` over the last
    axis, from logits η: equal to ``-F.binary_cross_entropy_with_logits(logits, x,
    reduction="none").sum(-1)``, written as :math:`x\cdot\eta - \mathrm{softplus}(\eta)`.

    >>> bernoulli_log_likelihood(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))  # 2 log(1/2)
    tensor([-1.3863])
    """
    return (x * logits).sum(-1) - F.softplus(logits).sum(-1)


def kl_std_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu, \mathrm{diag}\,\sigma^2) \,\|\, \mathcal N(0, I))
    = \tfrac12\sum_j(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1)`, one value per row.

    >>> kl_std_normal(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    return 0.5 * (mu**2 + log_var.exp() - log_var - 1).sum(-1)


def elbo_closed_form(x: Tensor, x_logits: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
    r"""The one-sample ELBO of a Bernoulli-decoder VAE with a diagonal Gaussian posterior and
    a standard normal prior: :math:`\log p(x \mid z) - \mathrm{KL}(q \,\|\, p)` per data point,
    where ``x_logits`` = decoder(z) for one reparameterised z per point. Shapes: ``x`` and
    ``x_logits`` ``[B, D]``, ``mu`` and ``log_var`` ``[B, d]``; returns ``[B]``."""
    return bernoulli_log_likelihood(x, x_logits) - kl_std_normal(mu, log_var)


def iwae_bound(log_w: Tensor, dim: int = 0) -> Tensor:
    r""":math:`\operatorname{logsumexp}_s \log w_s - \log k`: the k-sample importance-weighted
    bound from k log-weights along ``dim`` (the ELBO is its k = 1 case).

    >>> iwae_bound(torch.log(torch.tensor([[1.0], [3.0]])))   # log((1 + 3)/2)
    tensor([0.6931])
    """
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


# Model-based estimates ----------------------------------------------------------------------

def _rsample(model, params: Tensor, k: int, generator: torch.Generator | None):
    if generator is None:
        return model.posterior.rsample_and_log_prob(params, k)
    return model.posterior.rsample_and_log_prob(params, k, generator=generator)


def log_weights(model, x: Tensor, k: int = 1, generator: torch.Generator | None = None,
                params: Tensor | None = None) -> Tensor:
    """log p(x, z_s) − log q(z_s | x) for k reparameterised draws per point: ``[k, B]``.

    ``params``: the posterior's parameters λ (``[B, P]``); default the encoder's, λ = enc(x).
    """
    x = model.prepare(x)
    z, log_q = _rsample(model, model.encoder(x) if params is None else params, k, generator)
    return model.log_joint(x, z) - log_q


def elbo(model, x: Tensor, k: int = 1, analytic_kl: bool | None = None, beta: float = 1.0,
         generator: torch.Generator | None = None) -> Tensor:
    """The ELBO per data point, ``[B]``, averaged over ``k`` posterior draws.

    ``analytic_kl``: ``True`` uses the posterior's closed-form KL (an error if it has none),
    ``False`` the Monte Carlo KL, ``None`` (default) the closed form where it exists.
    ``beta`` < 1 gives R&M's annealed bound E_q[β log p(x, z) − log q(z | x)] (Monte Carlo).
    """
    x = model.prepare(x)
    params = model.encoder(x)
    z, log_q = _rsample(model, params, k, generator)
    log_px = model.likelihood.log_prob(x, model.decode(z))
    if beta == 1.0 and analytic_kl is not False:
        try:
            kl = model.posterior.kl(params, model.prior)
        except (NotImplementedError, AttributeError):
            if analytic_kl:
                raise
        else:
            return log_px.mean(0) - kl
    return (beta * (log_px + model.prior.log_prob(z)) - log_q).mean(0)


def iwae(model, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """The k-sample IWAE bound per data point, ``[B]``."""
    return iwae_bound(log_weights(model, x, k, generator))


def reconstruction(model, x: Tensor, k: int = 1,
                   generator: torch.Generator | None = None) -> Tensor:
    """E_q[log p(x | z)] per data point: the whole objective of a deterministic autoencoder
    (nonlinear PCA, with the :class:`~nfcourse.models.vae.PointMass` posterior)."""
    x = model.prepare(x)
    z, _ = _rsample(model, model.encoder(x), k, generator)
    return model.likelihood.log_prob(x, model.decode(z)).mean(0)


def refine_posterior(model, x: Tensor, steps: int = 100, lr: float = 3e-2, k: int = 5,
                     generator: torch.Generator | None = None) -> Tensor:
    """The posterior parameters λ*(x), ``[B, P]``: ``steps`` Adam steps (step size ``lr``) on
    each point's own ELBO (``k`` draws per step), starting from ``encoder(x)``.

    Only λ moves: the model's parameters get no gradient and its mode (train/eval) is kept.
    Each point's λ follows its own gradient (Adam works element by element), so the result
    does not depend on which points share a batch, up to the draws.
    """
    if steps < 0 or lr <= 0 or k < 1:
        raise ValueError(f"steps={steps!r}, lr={lr!r}, k={k!r}: refining the posterior needs "
                         "steps >= 0, lr > 0 and k >= 1, e.g. steps=100, lr=3e-2, k=5")
    was_training = model.training
    model.eval()
    try:
        x = model.prepare(x)
        with torch.no_grad():
            lam = model.encoder(x)
        with torch.enable_grad():
            lam.requires_grad_(True)
            optimizer = torch.optim.Adam([lam], lr=lr)
            for _ in range(steps):
                neg_elbo = -log_weights(model, x, k, generator, params=lam).mean(0).sum()
                lam.grad, = torch.autograd.grad(neg_elbo, lam)  # λ only, not θ or φ
                optimizer.step()
    finally:
        model.train(was_training)
    return lam.detach()


@torch.no_grad()
def log_marginal_is(model, x: Tensor, samples: int = 5000, batch_size: int = 100,
                    chunk_size: int | None = None, generator: torch.Generator | None = None,
                    progress: bool = True, refine_steps: int = 0, refine_lr: float = 3e-2,
                    refine_k: int = 5) -> Tensor:
    """Importance-sampled log p(x) with ``samples`` (S) draws from q(z | x), ``[N]``.

    With ``refine_steps`` > 0 the proposal is q with the refined parameters of
    :func:`refine_posterior` (``refine_steps``, ``refine_lr``, ``refine_k``) instead of the
    encoder's.

    Works through ``x`` in batches of ``batch_size`` and through S in chunks of
    ``chunk_size`` draws (default: about 2^25 decoder outputs per chunk, ~130 MB in
    float32), combining the chunks with ``logaddexp``. Runs on the model's device; the
    result is on the device of ``x``. The model is put in eval mode.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = x.shape[0]
    if chunk_size is None:
        chunk_size = max(1, min(samples, 2**25 // (batch_size * model.x_dim)))
    chunks = [min(chunk_size, samples - s) for s in range(0, samples, chunk_size)]
    out = []
    bar = _progress(range(math.ceil(n / batch_size) * len(chunks)),
                    desc=f"log p(x), S={samples}" + (f", q refined ({refine_steps} steps)"
                                                      if refine_steps else "")) \
        if progress else None
    try:
        for start in range(0, n, batch_size):
            xb = model.prepare(x[start:start + batch_size].to(device))
            params = (refine_posterior(model, xb, refine_steps, refine_lr, refine_k, generator)
                      if refine_steps else model.encoder(xb))
            acc = torch.full((xb.shape[0],), -math.inf, dtype=xb.dtype, device=device)
            for c in chunks:
                z, log_q = _rsample(model, params, c, generator)
                acc = torch.logaddexp(acc, torch.logsumexp(model.log_joint(xb, z) - log_q, 0))
                if bar is not None:
                    bar.update(1)
            out.append(acc - math.log(samples))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return torch.cat(out).to(x.device)
