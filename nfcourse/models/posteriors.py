r"""Posterior families :math:`q(z \mid \lambda)` for the VAE, with :math:`\lambda =
\mathrm{encoder}_\phi(x)`: the diagonal Gaussian, the flow posterior of Rezende & Mohamed
(2015, §4), and a point mass.

**Diagonal Gaussian**, :math:`\lambda = (\mu, \log\sigma^2)`:

.. math::

    z = \mu + \sigma \odot \varepsilon, \qquad
    \log q(z \mid x) = -\tfrac12 \sum_j \big(\varepsilon_j^2 + \log\sigma_j^2 + \log 2\pi\big),

with the closed-form :math:`\mathrm{KL}(q \,\|\, \mathcal N(0, I))
= \tfrac12\sum_j(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1)`.

**Flow posterior** (R&M eqs. 13–15): the diagonal Gaussian :math:`q_0` pushed through a
flow of K layers, :math:`z_K = f_K \circ \dots \circ f_1(z_0)`,

.. math::

    \log q_K(z_K \mid x) = \log q_0(z_0 \mid x)
        - \sum_{k=1}^K \log\left|\det \frac{\partial f_k}{\partial z_{k-1}}\right| ,

computed on the way forward: no inverse is ever needed. The encoder's output is split as
:math:`\lambda = [\mu, \log\sigma^2, \lambda_f, h]`:

- :math:`\lambda_f`, ``flow.param_dim`` numbers: the per-sample parameters of amortized
  layers (Planar, Radial, Sylvester built with ``amortized=True``; R&M §4);
- :math:`h`, ``flow.context_dim`` numbers: the context of IAF layers (Kingma et al. 2016);
- layers with their own, global parameters (NICE's couplings, permutations) need nothing:
  R&M's "NICE" posterior.

With no flow (K = 0) it is exactly the diagonal Gaussian, closed-form KL included.

**Optional capability: a closed-form KL.** A family declares it with
``has_analytic_kl(prior)``; the ELBO uses ``kl(params, prior)`` only where that is True,
and the Monte Carlo KL otherwise. Nothing is found out by catching exceptions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from nfcourse.densities import diag_normal_log_prob, kl_std_normal, reparameterize
from nfcourse import flows as nf
from nfcourse.flows import Bijection
from nfcourse.models.priors import DistributionPrior, Prior, StandardNormal, as_prior

__all__ = ["Posterior", "DiagonalGaussian", "FlowPosterior", "PointMass", "POSTERIORS",
           "make_posterior"]


class Posterior(nn.Module):
    """The interface every posterior family of :class:`~nfcourse.models.VAE` provides."""

    def param_dim(self, z_dim: int) -> int:
        """How many numbers λ the encoder outputs per data point."""
        raise NotImplementedError

    def rsample_and_log_prob(self, params: Tensor, k: int = 1,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``k`` reparameterised draws ``z`` ``[k, B, d]`` and ``log q(z | x)`` ``[k, B]``."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """A representative point ``[B, d]`` (for reconstructions)."""
        raise NotImplementedError

    def has_analytic_kl(self, prior: Prior) -> bool:
        """Whether :meth:`kl` gives KL(q ‖ prior) in closed form. Default: no."""
        return False

    def kl(self, params: Tensor, prior: Prior) -> Tensor:
        """KL(q ‖ prior) in closed form, ``[B]``; only where :meth:`has_analytic_kl`."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form KL to a "
                                  f"{type(prior).__name__} prior; use the Monte Carlo KL")


class DiagonalGaussian(Posterior):
    r""":math:`q(z \mid x) = \mathcal N(\mu, \mathrm{diag}\,\sigma^2)` with amortized parameters
    ``params = [μ, log σ²]`` (``[B, 2d]``) from the encoder. It holds no parameters.

    >>> q = DiagonalGaussian()
    >>> params = torch.zeros(5, q.param_dim(3))
    >>> z, log_q = q.rsample_and_log_prob(params, k=4)
    >>> z.shape, log_q.shape
    (torch.Size([4, 5, 3]), torch.Size([4, 5]))
    """

    def param_dim(self, z_dim: int) -> int:
        return 2 * z_dim

    @staticmethod
    def split(params: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ²)`` from the encoder's output ``[..., 2d]``."""
        mu, log_var = params.chunk(2, dim=-1)
        return mu, log_var

    def distribution(self, params: Tensor) -> Distribution:
        """``Independent(Normal(μ, σ), 1)``: batch shape ``[B]``, event shape ``[d]``."""
        mu, log_var = self.split(params)
        return Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)

    def rsample_and_log_prob(self, params: Tensor, k: int = 1,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        mu, log_var = self.split(params)
        eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype,
                          device=mu.device)
        return reparameterize(mu, log_var, eps), diag_normal_log_prob(eps, log_var)

    def mean(self, params: Tensor) -> Tensor:
        return self.split(params)[0]

    def has_analytic_kl(self, prior: Prior | Distribution) -> bool:
        prior = as_prior(prior)
        return isinstance(prior, StandardNormal) or (
            isinstance(prior, DistributionPrior) and prior.is_gaussian)

    def kl(self, params: Tensor, prior: Prior | Distribution) -> Tensor:
        prior = as_prior(prior)
        if isinstance(prior, StandardNormal):
            return kl_std_normal(*self.split(params))
        if isinstance(prior, DistributionPrior) and prior.is_gaussian:
            return kl_divergence(self.distribution(params), prior.distribution)
        return super().kl(params, prior)


class FlowPosterior(Posterior):
    """R&M's flow posterior: a diagonal Gaussian from the encoder, pushed through ``flow``.

    ``flow``: a layer or :class:`~nfcourse.flows.Flow` on ``z_dim`` features, or ``None``
    (K = 0). ``param_dim(z_dim) = 2 z_dim + flow.param_dim + flow.context_dim``: the
    encoder outputs the base's (μ, log σ²), the amortized layers' parameters and the IAF
    context, in that order.

    ``mean(params)`` is the flow's image of the base's mean (E_q[z] has no closed form).

    >>> from nfcourse.flows import Planar
    >>> q = FlowPosterior(Planar(3, length=4, amortized=True))
    >>> q.param_dim(3)               # μ, log σ² and 4 × (u, w, b)
    34
    >>> z, log_q = q.rsample_and_log_prob(torch.randn(5, 34), k=2)
    >>> z.shape, log_q.shape
    (torch.Size([2, 5, 3]), torch.Size([2, 5]))
    """

    def __init__(self, flow: Bijection | None):
        super().__init__()
        if flow is not None and flow.event_dims != 1:
            raise ValueError("a posterior over z [k, B, d] needs a flow on vectors "
                             "(event_dims=1)")
        self.flow = flow
        self.base = DiagonalGaussian()

    def param_dim(self, z_dim: int) -> int:
        if self.flow is None:
            return 2 * z_dim
        if self.flow.dim != z_dim:
            raise ValueError(f"the flow acts on {self.flow.dim} features and z_dim={z_dim}: "
                             "build the flow for z_dim")
        return 2 * z_dim + self.flow.param_dim + self.flow.context_dim

    def _split(self, params: Tensor) -> tuple[Tensor, dict]:
        """The base's ``[μ, log σ²]`` and the flow's keyword arguments."""
        if self.flow is None:
            return params, {}
        base, flow_params, context = params.split(
            [params.shape[-1] - self.flow.param_dim - self.flow.context_dim,
             self.flow.param_dim, self.flow.context_dim], dim=-1)
        kwargs = {}
        if self.flow.param_dim:
            kwargs["params"] = flow_params
        if self.flow.context_dim:
            kwargs["context"] = context
        return base, kwargs

    def rsample_and_log_prob(self, params: Tensor, k: int = 1,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        base, kwargs = self._split(params)
        z0, log_q0 = self.base.rsample_and_log_prob(base, k, generator)
        if self.flow is None:
            return z0, log_q0
        # [B, P] parameters broadcast against the k draws [k, B, d]
        z, log_det = self.flow(z0, **kwargs)
        return z, log_q0 - log_det

    def from_gaussian(self, base: Tensor, scale: float = 0.01,
                      generator: torch.Generator | None = None) -> Tensor:
        """This family's λ ``[B, P]`` from a diagonal Gaussian's ``[B, 2 d]`` (μ, log σ²),
        so that a search over the flow starts where the Gaussian's ended (a flow contains
        the Gaussian): the amortized layers' parameters those of a near-identity flow, at
        ``scale`` from it (not exactly the identity: for the planar flow that is a saddle,
        where no gradient reaches w), the IAF context zero."""
        if self.flow is None:
            return base
        small = self.flow.near_identity_params(base.shape[0], scale, generator, base.dtype,
                                               base.device)
        context = base.new_zeros(base.shape[0], self.flow.context_dim)
        return torch.cat([base, small, context], -1)

    def mean(self, params: Tensor) -> Tensor:
        base, kwargs = self._split(params)
        mu = self.base.mean(base)
        return mu if self.flow is None else self.flow(mu, **kwargs)[0]

    def has_analytic_kl(self, prior: Prior) -> bool:
        return self.flow is None and self.base.has_analytic_kl(prior)

    def kl(self, params: Tensor, prior: Prior) -> Tensor:
        if not self.has_analytic_kl(prior):
            return super().kl(params, prior)
        return self.base.kl(params, prior)


class PointMass(Posterior):
    r"""A degenerate "posterior" :math:`z = \mu(x)` with zero variance: the encoder's output
    is the code itself. With the reconstruction-only objective
    (:func:`nfcourse.objectives.reconstruction`) the VAE becomes a deterministic
    autoencoder, i.e. **nonlinear PCA** (Kramer 1991). A point mass has no density, so
    ``log_q`` is returned as zeros and no ELBO is defined for it.
    """

    def param_dim(self, z_dim: int) -> int:
        return z_dim

    def rsample_and_log_prob(self, params: Tensor, k: int = 1,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        z = params.expand(k, *params.shape)
        return z, torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)

    def mean(self, params: Tensor) -> Tensor:
        return params


#: The posterior families by name, for scripts and notebooks (R&M Table 2 and its extra rows).
POSTERIORS = ("diagonal", "planar", "radial", "nice", "iaf", "sylvester-orthogonal",
              "sylvester-householder", "sylvester-triangular")


def make_posterior(kind: str, z_dim: int, length: int = 0, *, hidden: int = 200,
                   context_dim: int = 40, m: int | None = None,
                   reflections: int = 4) -> Posterior:
    """A posterior family by name, with a flow of ``length`` K:

    - ``"diagonal"``: :class:`DiagonalGaussian` (K = 0);
    - ``"planar"``, ``"radial"``: R&M's amortized flows, parameters from the encoder;
    - ``"nice"``: K additive couplings (alternating halves, MLP conditioners with one hidden
      layer of ``hidden`` units) with their own, global parameters: R&M's NICE posterior;
    - ``"iaf"``: K IAF layers (MADE with one hidden layer of ``hidden`` units, order
      reversed every other layer), the encoder's context of ``context_dim`` numbers;
    - ``"sylvester-orthogonal"`` (``m`` columns, default ``z_dim // 2``),
      ``"sylvester-householder"`` (``reflections`` per layer), ``"sylvester-triangular"``
      (Q the identity and the reversal, alternating): van den Berg et al., amortized.

    >>> make_posterior("planar", 40, 10).param_dim(40)     # μ, log σ² and 10 × (u, w, b)
    890
    """
    if kind not in POSTERIORS:
        raise ValueError(f"posterior {kind!r} is not one of {', '.join(POSTERIORS)}")
    if (kind == "diagonal") != (length == 0):
        raise ValueError(f"posterior {kind!r} with a flow of length {length}: the diagonal "
                         "Gaussian has K = 0, every flow K >= 1")
    if kind == "diagonal":
        return DiagonalGaussian()
    if kind == "planar":
        return FlowPosterior(nf.Planar(z_dim, length=length, amortized=True))
    layers: list[Bijection] = []
    for k in range(length):
        if kind == "radial":
            layers.append(nf.Radial(z_dim, amortized=True))
        elif kind == "nice":
            layers.append(nf.AdditiveCoupling(nf.half_mask(z_dim, first=k % 2 == 0),
                                              hidden=(hidden,)))
        elif kind == "iaf":
            layers.append(nf.IAF(z_dim, hidden=(hidden,), context_dim=context_dim,
                                 reverse=k % 2 == 1))
        elif kind == "sylvester-orthogonal":
            layers.append(nf.OrthogonalSylvester(z_dim, m=m or z_dim // 2, amortized=True))
        elif kind == "sylvester-householder":
            layers.append(nf.HouseholderSylvester(z_dim, n_reflections=reflections,
                                                  amortized=True))
        else:
            layers.append(nf.TriangularSylvester(z_dim, flip=k % 2 == 1, amortized=True))
    return FlowPosterior(nf.Flow(layers))
