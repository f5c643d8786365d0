r"""The variational autoencoder (Kingma & Welling 2014; Rezende, Mohamed & Wierstra 2014),
built from four pluggable parts.

The generative model and the amortized posterior are

.. math::

    p_\theta(x, z) = p(z)\, p_\theta(x \mid z), \qquad
    p_\theta(x \mid z) = \prod_{i=1}^{D} \mathrm{Bern}\big(x_i;\ \sigma(\eta_i)\big),\quad
    \eta = \mathrm{decoder}_\theta(z),

.. math::

    q_\phi(z \mid x):\ \lambda = \mathrm{encoder}_\phi(x), \qquad
    z_s \sim q(z \mid \lambda) \ \text{(reparameterised)}, \qquad
    \log w_s = \log p_\theta(x \mid z_s) + \log p(z_s) - \log q_\phi(z_s \mid x).

:meth:`VAE.elbo_terms` is the one place this chain, encoder → posterior → prior and
decoder → likelihood, is spelled out: it returns the three log-densities of k draws per
point, and every bound and estimator of :mod:`nfcourse.objectives` is built from them.

The four parts, each replaceable (their interfaces are declared once, as base classes):

``encoder``
    any module ``x [B, D] -> λ [B, P]``, ``P = posterior.param_dim(z_dim)``. Default: an
    MLP (:class:`nfcourse.flows.MLP`) with ``hidden`` units (``encoder_hidden`` gives it
    its own sizes: a larger encoder narrows the amortization gap, though trained jointly it
    can leave a worse decoder; docs/vae.md).
``posterior``
    a :class:`~nfcourse.models.posteriors.Posterior`: :class:`DiagonalGaussian` (default),
    :class:`FlowPosterior` (R&M §4) or :class:`PointMass`.
``prior``
    a :class:`~nfcourse.models.priors.Prior`: :class:`StandardNormal` (default),
    :class:`MixturePrior`, :class:`FlowPrior`, or a :mod:`torch.distributions` object.
``likelihood`` (with the ``decoder``)
    a :class:`~nfcourse.models.likelihoods.Likelihood`: :class:`Bernoulli` on logits
    (default), or :class:`GaussianLikelihood` (fixed variance), which serves the
    linear-Gaussian model of the tests, whose posterior is known exactly.

Shapes: data ``[B, D]`` (images ``[B, 28, 28]`` or ``[B, 1, 28, 28]`` are flattened);
``k`` posterior samples per data point give ``z`` of shape ``[k, B, d]`` and per-sample
log-densities ``[k, B]``. Devices and dtypes come from the inputs and the parameters.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from nfcourse.flows import MLP
from nfcourse.models.likelihoods import Bernoulli, Likelihood
from nfcourse.utils import values_checkable
from nfcourse.models.posteriors import AmortizedQ, DiagonalGaussian, Posterior
from nfcourse.models.priors import Prior, as_prior

__all__ = ["VAE", "ElboTerms"]


class ElboTerms(NamedTuple):
    """What :meth:`VAE.elbo_terms` computes for ``k`` draws per data point."""

    x: Tensor       #: the prepared data, ``[B, D]``
    q: AmortizedQ   #: q(z | x) of the batch, ``model.posterior(λ)``
    z: Tensor       #: the draws, ``[k, B, d]``
    log_px: Tensor  #: log p(x | z), ``[k, B]``
    log_pz: Tensor  #: log p(z), ``[k, B]``
    log_q: Tensor   #: log q(z | x), ``[k, B]``

    @property
    def log_w(self) -> Tensor:
        """The log importance weights log p(x, z) − log q(z | x), ``[k, B]``."""
        return self.log_px + self.log_pz - self.log_q


class VAE(nn.Module):
    """A VAE: ``encoder`` → ``posterior`` → z → ``decoder`` → ``likelihood``, with ``prior``.

    Defaults follow Rezende & Mohamed's DLGM on binarized MNIST: ``x_dim=784``,
    ``z_dim=40``, 400 hidden units, a diagonal Gaussian posterior, a standard normal prior
    and a Bernoulli decoder. See the module docstring for the contract of each part.

    >>> vae = VAE(x_dim=6, z_dim=2, hidden=8)
    >>> x = torch.bernoulli(torch.full((5, 6), 0.5))
    >>> terms = vae.elbo_terms(x, k=3)
    >>> terms.log_w.shape              # log p(x, z) − log q(z | x) for 3 x 5 draws
    torch.Size([3, 5])
    >>> vae(2 * x)                    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the Bernoulli decoder needs data in [0, 1], got values in [0, 2]; ...
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 40, hidden: int | Sequence[int] = 400,
                 *, encoder_hidden: int | Sequence[int] | None = None,
                 activation: str = "relu", dropout: float = 0.0,
                 posterior: Posterior | None = None, prior: Prior | Distribution | None = None,
                 likelihood: Likelihood | None = None,
                 encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.posterior = posterior if posterior is not None else DiagonalGaussian()
        self.prior = as_prior(prior, z_dim)
        self.likelihood = likelihood if likelihood is not None else Bernoulli()
        if encoder is not None and encoder_hidden is not None:
            raise ValueError("give either encoder= (a module) or encoder_hidden= (its sizes), "
                             "not both")
        self.encoder = encoder if encoder is not None else MLP(
            x_dim, self.posterior.param_dim(z_dim),
            hidden if encoder_hidden is None else encoder_hidden, activation, dropout,
            zero_last=False)
        self.decoder = decoder if decoder is not None else MLP(
            z_dim, self.likelihood.param_dim(x_dim), hidden, activation, dropout,
            zero_last=False)

    # Input checks: the one place that turns bad data into a clear message.
    def prepare(self, x: Tensor) -> Tensor:
        """``x`` as ``[B, x_dim]`` in the model's dtype, after checking shape and values."""
        if not isinstance(x, Tensor):
            raise TypeError(f"the VAE takes a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 1 and x.shape[0] == self.x_dim:
            raise ValueError(
                f"the VAE takes a batch [B, {self.x_dim}], got one image of shape "
                f"{list(x.shape)}; use x[None] (or x.unsqueeze(0)) for a batch of one")
        flat = x.reshape(x.shape[0], -1) if x.dim() >= 2 else x
        if x.dim() < 2 or flat.shape[-1] != self.x_dim:
            raise ValueError(
                f"the VAE takes a batch of shape [B, {self.x_dim}] (or images whose pixels "
                f"number {self.x_dim}), got {list(x.shape)}")
        dtype = next(self.parameters()).dtype
        flat = flat.to(dtype)
        if values_checkable(flat):   # not while compiling: eager steps checked the data
            self.likelihood.validate(flat)
        return flat

    def encode(self, x: Tensor) -> Tensor:
        """The posterior's per-sample parameters λ = encoder(x), ``[B, P]``."""
        return self.encoder(self.prepare(x))

    def q(self, x: Tensor) -> AmortizedQ:
        """q(z | x) for a batch, as a distribution: ``posterior(encoder(x))``."""
        return self.posterior(self.encode(x))

    def decode(self, z: Tensor) -> Tensor:
        """The likelihood's parameters (Bernoulli: logits), ``[..., x_dim]``."""
        return self.decoder(z)

    def elbo_terms(self, x: Tensor, k: int = 1, params: Tensor | None = None,
                   generator: torch.Generator | None = None) -> ElboTerms:
        """log p(x | z), log p(z) and log q(z | x) for ``k`` reparameterised draws per point.

        ``params``: the posterior's parameters λ (``[B, P]``); default the encoder's,
        λ = encoder(x) (pass others to refine q for a fixed model). ``generator``: where
        the posterior's noise comes from (default: the global generator).
        """
        x = self.prepare(x)
        q = self.posterior(self.encoder(x) if params is None else params)
        z, log_q = q.rsample_and_log_prob(k, generator)
        log_px = self.likelihood.log_prob(x, self.decode(z))
        return ElboTerms(x, q, z, log_px, self.prior.log_prob(z), log_q)

    def forward(self, x: Tensor, k: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """``(log p(x | z), log p(z), log q(z | x))``, each ``[k, B]``, for k posterior draws."""
        terms = self.elbo_terms(x, k)
        return terms.log_px, terms.log_pz, terms.log_q

    @torch.no_grad()
    def start_flow_near_identity(self, scale: float = 0.01,
                                 generator: torch.Generator | None = None) -> None:
        """Start an amortized flow posterior near the identity for every x, so that the
        NF-VAE starts as the Gaussian VAE: the encoder's last layer gets zero weights and,
        as biases, one near-identity draw (``flow.near_identity_params``) in the rows
        of the flow's parameters. A default-initialised layer instead starts each x on a
        random flow, for planar layers far from the identity (û = −0.31 w/‖w‖² for small
        u and w). The rows of μ and log σ² keep their initialisation.

        A flow with only its own, global parameters (NICE's couplings, whose conditioners'
        last layers start at zero) that already starts at the identity needs nothing."""
        rows = self.posterior.layout(self.z_dim).get("flow")
        if rows is None and self._flow_starts_at_identity():
            return
        if rows is None:
            raise ValueError("start_flow_near_identity needs an amortized flow posterior "
                             "(planar, radial, Sylvester) or a flow that starts at the "
                             "identity (NICE); this VAE's posterior is "
                             f"{type(self.posterior).__name__} with no flow parameters and "
                             "no flow at the identity")
        last = self.encoder[-1] if isinstance(self.encoder, nn.Sequential) else None
        if not isinstance(last, nn.Linear):
            raise ValueError("start_flow_near_identity sets the encoder's last nn.Linear; "
                             f"this encoder ends in {type(last).__name__}")
        last.weight[rows] = 0.0
        # drawn on the CPU (``generator`` is a CPU one), the same on every device
        start = self.posterior.flow.near_identity_params(1, scale, generator, last.bias.dtype)
        last.bias[rows] = start[0].to(last.bias.device)

    @torch.no_grad()
    def _flow_starts_at_identity(self) -> bool:
        """Whether the posterior's flow, as it stands, maps a probe to itself."""
        flow = getattr(self.posterior, "flow", None)
        if flow is None or flow.param_dim:
            return False
        like = next(self.parameters())     # the VAE's device and dtype
        z = torch.randn(8, self.z_dim, generator=torch.Generator().manual_seed(0)).to(like)
        context = {"context": z.new_zeros(8, flow.context_dim)} if flow.context_dim else {}
        out, log_det = flow(z, **context)
        return bool(torch.equal(out, z) and not log_det.abs().max())

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True,
               generator: torch.Generator | None = None) -> Tensor:
        """n images from the model: z ~ p(z), then the decoder's mean (or a sample)."""
        z = self.prior.sample((n,), generator=generator)
        eta = self.decode(z.to(next(self.parameters()).device))
        return self.likelihood.mean(eta) if mean else self.likelihood.sample(eta, generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoder's mean at the posterior's mean of each input, ``[B, x_dim]``."""
        return self.likelihood.mean(self.decode(self.q(x).mean))
