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

**q(z | x) is an object.** A family is a module; called on the encoder's λ it returns
the distribution for that batch, ``q = model.posterior(λ)`` (or ``model.q(x)``), as zuko's
conditional distributions do:

- ``q.rsample_and_log_prob(k, generator)``: ``k`` reparameterised draws ``[k, B, d]`` and
  :math:`\log q(z \mid x)` ``[k, B]``, on the way forward;
- ``q.log_prob(z)`` at any ``z`` ``[..., B, d]`` (through the flow's inverse), ``q.sample``,
  ``q.mean`` (the flow's image of the base's mean: :math:`\mathbb E_q[z]` has no closed form);
- ``q.base``: the Gaussian :math:`q_0`, a q of its own (``q.base.rsample_and_log_prob``),
  with ``q.mu`` and ``q.log_var``; ``q.normal`` is :math:`q_0` as a
  :class:`torch.distributions.Distribution`;
- ``q.flow``: the flow with λ's parameters bound, ``z, log_det = q.flow(z0)``, whose
  ``q.flow.layers[k]`` name each layer's parameters per point (planar: ``u``, ``w``, ``b``,
  ``u_hat``; see :meth:`nfcourse.flows.Bijection.parameters_by_name`).

λ's layout is known here and nowhere else: :meth:`Posterior.layout` names its pieces.

**Optional capability: a closed-form KL.** A family declares it with
``has_analytic_kl(prior)``; the ELBO uses ``q.kl(prior)`` only where that is True,
and the Monte Carlo KL otherwise. Nothing is found out by catching exceptions.
"""

from __future__ import annotations

from torch.distributions import Distribution, Independent, Normal, kl_divergence

import torch
from torch import Tensor, nn

from nfcourse.closed_forms import diag_normal_log_prob, kl_std_normal, reparameterize
from nfcourse import flows as nf
from nfcourse.flows import Bijection, FlowDistribution
from nfcourse.models.priors import DistributionPrior, Prior, StandardNormal, as_prior

__all__ = ["Posterior", "DiagonalGaussian", "FlowPosterior", "PointMass", "AmortizedQ",
           "BoundFlow", "PointMassQ", "POSTERIORS", "make_posterior"]


class BoundFlow:
    """A flow with the per-point parameters of one batch bound: ``z, log_det = flow(z0)``
    and ``flow.inverse(z)``, broadcasting λ's ``[B, ...]`` against draws ``[k, B, d]``.
    ``layers[k]`` (also ``flow[k]``) names layer k's parameters: a dict such as
    ``{"u": [B, d], "w": [B, d], "b": [B], "u_hat": [B, d]}`` for a planar layer."""

    def __init__(self, module: Bijection, kwargs: dict[str, Tensor]):
        self.module, self.kwargs = module, kwargs

    def __call__(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.module(z, **self.kwargs)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.module.inverse(z, **self.kwargs)

    @property
    def layers(self) -> list[dict[str, Tensor]]:
        return self.module.parameters_by_name(**self.kwargs)

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        return self.layers[k]

    def __len__(self) -> int:
        return len(self.layers)


class AmortizedQ:
    r""":math:`q(z \mid x)` for a batch of B points: the Gaussian :math:`q_0 = \mathcal N(\mu,
    \operatorname{diag}\sigma^2)` from λ, pushed through the family's flow (if any) with
    λ's per-point parameters. Made by a :class:`Posterior`, ``q = posterior(λ)``; see the
    module docstring for what it offers.

    >>> q = DiagonalGaussian()(torch.zeros(5, 6))     # λ = [μ, log σ²] for 5 points, d = 3
    >>> z, log_q = q.rsample_and_log_prob(k=4)
    >>> z.shape, log_q.shape, q.mean.shape
    (torch.Size([4, 5, 3]), torch.Size([4, 5]), torch.Size([5, 3]))
    """

    def __init__(self, family: Posterior, params: Tensor, mu: Tensor, log_var: Tensor,
                 flow: BoundFlow | None = None):
        self.family, self.params = family, params
        self.mu, self.log_var = mu, log_var
        self.flow = flow

    @property
    def base(self) -> AmortizedQ:
        """q₀, the Gaussian before the flow, as a q of its own (no flow)."""
        return self if self.flow is None else AmortizedQ(_GAUSSIAN, self.base_params,
                                                          self.mu, self.log_var)

    @property
    def normal(self) -> Distribution:
        """q₀ as a :mod:`torch.distributions` object: ``Independent(Normal(μ, σ), 1)``,
        batch ``[B]``, event ``[d]``."""
        return Independent(Normal(self.mu, torch.exp(0.5 * self.log_var)), 1)

    @property
    def base_params(self) -> Tensor:
        """λ of q₀ alone, ``[B, 2d]``, as :class:`DiagonalGaussian` reads it: the Gaussian
        family's parameters for the same base (e.g. to refine the Gaussian of a flow model)."""
        return torch.cat([self.mu, self.log_var], -1)

    def rsample_and_log_prob(self, k: int = 1, generator: torch.Generator | None = None
                             ) -> tuple[Tensor, Tensor]:
        """``k`` reparameterised draws ``z`` ``[k, B, d]`` and ``log q(z | x)`` ``[k, B]``:
        z₀ = μ + σ ⊙ ε scored in ε (exact where σ is tiny), then pushed through the flow,
        log q_K = log q₀ − Σ log|det| (R&M eq. 15)."""
        eps = torch.randn((k, *self.mu.shape), generator=generator, dtype=self.mu.dtype,
                          device=self.mu.device)
        z0, log_q0 = reparameterize(self.mu, self.log_var, eps), diag_normal_log_prob(
            eps, self.log_var)
        if self.flow is None:
            return z0, log_q0
        z, log_det = self.flow(z0)
        return z, log_q0 - log_det

    def sample(self, k: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """``k`` draws ``[k, B, d]`` without gradients."""
        with torch.no_grad():
            return self.rsample_and_log_prob(k, generator)[0]

    def log_prob(self, z: Tensor) -> Tensor:
        """``log q(z | x)`` at any points ``z`` ``[..., B, d]``: the base's density at
        f⁻¹(z) plus the inverse's log-det (numerical for planar layers), ``[..., B]``. A
        flow without an inverse (Sylvester) raises ``NotImplementedError``: score its own
        draws with :meth:`rsample_and_log_prob`."""
        if self.flow is None:
            return self.normal.log_prob(z)
        return self.family.distribution.log_prob(z, base=self.normal, **self.flow.kwargs)

    @property
    def mean(self) -> Tensor:
        """A representative point ``[B, d]``: the flow's image of the base's mean."""
        return self.mu if self.flow is None else self.flow(self.mu)[0]

    def has_analytic_kl(self, prior: Prior | Distribution) -> bool:
        return self.family.has_analytic_kl(prior)

    def kl(self, prior: Prior | Distribution) -> Tensor:
        """KL(q ‖ prior) in closed form, ``[B]``: only where :meth:`has_analytic_kl`."""
        prior = as_prior(prior)
        if not self.has_analytic_kl(prior):
            raise NotImplementedError(f"{type(self.family).__name__} has no closed-form KL to "
                                      f"a {type(prior).__name__} prior; use the Monte Carlo KL")
        if isinstance(prior, StandardNormal):
            return kl_std_normal(self.mu, self.log_var)
        return kl_divergence(self.normal, prior.distribution)


class PointMassQ:
    """A point mass at ``z = λ`` for each of B points: draws are λ itself, ``log q`` is
    returned as zeros (a point mass has no density; no ELBO is defined for it)."""

    def __init__(self, family: Posterior, params: Tensor):
        self.family, self.params, self.flow = family, params, None

    def rsample_and_log_prob(self, k: int = 1, generator: torch.Generator | None = None
                             ) -> tuple[Tensor, Tensor]:
        z = self.params.expand(k, *self.params.shape)
        return z, torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)

    def sample(self, k: int = 1, generator: torch.Generator | None = None) -> Tensor:
        return self.rsample_and_log_prob(k)[0].detach()

    @property
    def mean(self) -> Tensor:
        return self.params

    def has_analytic_kl(self, prior) -> bool:
        return False

    def kl(self, prior) -> Tensor:
        raise NotImplementedError("a point mass has no density: its KL to a prior is +inf")

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError("a point mass has no density: log q(z | x) is undefined")


class Posterior(nn.Module):
    """A posterior family: λ's layout, and ``posterior(λ)``, the distribution q(z | x) of a
    batch. Subclasses give :meth:`layout` and :meth:`forward`."""

    def param_dim(self, z_dim: int) -> int:
        """How many numbers λ the encoder outputs per data point."""
        return max(piece.stop for piece in self.layout(z_dim).values())

    def layout(self, z_dim: int) -> dict[str, slice]:
        """Where each piece of λ sits along its last axis, by name (``"mu"``,
        ``"log_var"``, ``"flow"``, ``"context"``): the one place λ's layout is written."""
        raise NotImplementedError

    def forward(self, params: Tensor) -> AmortizedQ:
        """q(z | x) for the batch whose encoder output is ``params`` ``[B, P]``."""
        raise NotImplementedError

    def has_analytic_kl(self, prior: Prior | Distribution) -> bool:
        """Whether ``q.kl(prior)`` is in closed form. Default: no."""
        return False

    def _checked(self, params: Tensor, z_dim: int) -> dict[str, Tensor]:
        """λ's pieces by name, after checking its width."""
        layout = self.layout(z_dim)
        width = max(piece.stop for piece in layout.values())
        if params.shape[-1] != width:
            raise ValueError(f"{type(self).__name__} with z_dim={z_dim} reads λ of width "
                             f"{width}, got {tuple(params.shape)}: the encoder's last layer "
                             f"must output posterior.param_dim(z_dim) = {width} numbers")
        return {name: params[..., piece] for name, piece in layout.items()}


class DiagonalGaussian(Posterior):
    r""":math:`q(z \mid x) = \mathcal N(\mu, \mathrm{diag}\,\sigma^2)` with amortized
    parameters λ = [μ, log σ²] (``[B, 2d]``) from the encoder. It holds no parameters.

    >>> q = DiagonalGaussian()(torch.zeros(5, 6))
    >>> q.mu.shape, q.normal.event_shape
    (torch.Size([5, 3]), torch.Size([3]))
    """

    def layout(self, z_dim: int) -> dict[str, slice]:
        return {"mu": slice(0, z_dim), "log_var": slice(z_dim, 2 * z_dim)}

    def forward(self, params: Tensor) -> AmortizedQ:
        pieces = self._checked(params, params.shape[-1] // 2)
        return AmortizedQ(self, params, pieces["mu"], pieces["log_var"])

    def has_analytic_kl(self, prior: Prior | Distribution) -> bool:
        prior = as_prior(prior)
        return isinstance(prior, StandardNormal) or (
            isinstance(prior, DistributionPrior) and prior.is_gaussian)


class FlowPosterior(Posterior):
    """R&M's flow posterior: a diagonal Gaussian from the encoder, pushed through ``flow``.

    ``flow``: a layer or :class:`~nfcourse.flows.Flow` on ``z_dim`` features, or ``None``
    (K = 0). λ = [μ, log σ², the amortized layers' parameters, the IAF context], in that
    order: ``param_dim(z_dim) = 2 z_dim + flow.param_dim + flow.context_dim``. Built on
    :class:`~nfcourse.flows.FlowDistribution`, as :class:`~nfcourse.models.FlowPrior` is.

    >>> from nfcourse.flows import Planar
    >>> posterior = FlowPosterior(Planar(3, length=4, amortized=True))
    >>> posterior.param_dim(3)               # μ, log σ² and 4 × (u, w, b)
    34
    >>> q = posterior(torch.randn(5, 34))
    >>> z, log_q = q.rsample_and_log_prob(k=2)
    >>> z.shape, log_q.shape, len(q.flow.layers), q.flow.layers[0]["u_hat"].shape
    (torch.Size([2, 5, 3]), torch.Size([2, 5]), 4, torch.Size([5, 3]))
    """

    def __init__(self, flow: Bijection | None):
        super().__init__()
        if flow is not None and flow.event_dims != 1:
            raise ValueError("a posterior over z [k, B, d] needs a flow on vectors "
                             "(event_dims=1)")
        self.distribution = None if flow is None else FlowDistribution(flow)
        self.register_load_state_dict_pre_hook(_flow_keys_before_distribution)

    @property
    def flow(self) -> Bijection | None:
        """The flow module (its own parameters, if any; per-point ones come from λ)."""
        return None if self.distribution is None else self.distribution.flow

    def layout(self, z_dim: int) -> dict[str, slice]:
        flow = self.flow
        if flow is not None and flow.dim != z_dim:
            raise ValueError(f"the flow acts on {flow.dim} features and z_dim={z_dim}: "
                             "build the flow for z_dim")
        ends = 2 * z_dim + (0 if flow is None else flow.param_dim)
        layout = {"mu": slice(0, z_dim), "log_var": slice(z_dim, 2 * z_dim)}
        if flow is not None and flow.param_dim:
            layout["flow"] = slice(2 * z_dim, ends)
        if flow is not None and flow.context_dim:
            layout["context"] = slice(ends, ends + flow.context_dim)
        return layout

    def forward(self, params: Tensor) -> AmortizedQ:
        flow = self.flow
        pieces = self._checked(params, params.shape[-1] // 2 if flow is None else flow.dim)
        if flow is None:
            return AmortizedQ(self, params, pieces["mu"], pieces["log_var"])
        kwargs = {"params": pieces["flow"]} if "flow" in pieces else {}
        if "context" in pieces:
            kwargs["context"] = pieces["context"]
        return AmortizedQ(self, params, pieces["mu"], pieces["log_var"], BoundFlow(flow, kwargs))

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

    def has_analytic_kl(self, prior: Prior | Distribution) -> bool:
        return self.flow is None and DiagonalGaussian.has_analytic_kl(self, prior)


def _flow_keys_before_distribution(module, state_dict, prefix, *args) -> None:
    """Checkpoints written before the flow sat in a FlowDistribution name its parameters
    ``posterior.flow.…``; read them as ``posterior.distribution.flow.…``."""
    for key in [k for k in state_dict if k.startswith(prefix + "flow.")]:
        state_dict[prefix + "distribution." + key[len(prefix):]] = state_dict.pop(key)


_GAUSSIAN = DiagonalGaussian()   # the family of every q's base q0


class PointMass(Posterior):
    r"""A degenerate "posterior" :math:`z = \mu(x)` with zero variance: the encoder's output
    is the code itself. With the reconstruction-only objective
    (:func:`nfcourse.objectives.reconstruction`) the VAE becomes a deterministic
    autoencoder, i.e. **nonlinear PCA** (Kramer 1991). A point mass has no density, so
    ``log_q`` is returned as zeros and no ELBO is defined for it.
    """

    def layout(self, z_dim: int) -> dict[str, slice]:
        return {"mu": slice(0, z_dim)}

    def forward(self, params: Tensor) -> PointMassQ:
        return PointMassQ(self, params)


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
