r"""The variational autoencoder (Kingma & Welling 2014; Rezende, Mohamed & Wierstra 2014),
built from four pluggable parts.

The generative model and the amortized posterior are

.. math::

    p_\theta(x, z) = p(z)\, p_\theta(x \mid z), \qquad
    p_\theta(x \mid z) = \prod_{i=1}^{D} \mathrm{Bern}\big(x_i;\ \sigma(\eta_i)\big),\quad
    \eta = \mathrm{decoder}_\theta(z),

.. math::

    q_\phi(z \mid x):\ \lambda = \mathrm{encoder}_\phi(x), \qquad
    z = \mu + \sigma \odot \varepsilon,\ \varepsilon \sim \mathcal N(0, I),\qquad
    (\mu, \log\sigma^2) = \lambda \quad\text{(diagonal Gaussian)} .

The four parts, each replaceable:

``encoder``
    any module ``x [B, D] -> λ [B, P]``: a per-sample parameter vector for the posterior.
    ``P = posterior.param_dim(z_dim)``. Default: an MLP, ``hidden`` units, ReLU
    (``encoder_hidden`` gives the encoder its own sizes: a larger encoder narrows the
    amortization gap, though trained jointly it can leave a worse decoder; docs/vae.md).
``posterior``
    the family :math:`q(z \mid \lambda)`. It must provide
    ``param_dim(z_dim)``, ``rsample_and_log_prob(params, k) -> (z [k, B, d], log q [k, B])``
    (reparameterised, so gradients reach the encoder), and ``mean(params) -> [B, d]``;
    optionally ``kl(params, prior) -> [B]`` in closed form (raise ``NotImplementedError``
    when there is none; the ELBO then uses a Monte Carlo KL). :class:`DiagonalGaussian` is
    one such family. A *flow posterior* (R&M §4: a diagonal Gaussian base pushed through a
    flow whose parameters also come from the encoder) is another: its ``param_dim`` is
    ``2d + flow.param_dim``, and ``rsample_and_log_prob`` splits λ into the base's
    :math:`(\mu, \log\sigma^2)` and the flow's per-sample parameters, returning
    :math:`z_K` and :math:`\log q_0(z_0) - \sum_k \log|\det \partial f_k / \partial z_{k-1}|`.
``prior``
    any object with ``log_prob(z [..., d]) -> [...]`` and ``sample((n,)) -> [n, d]``; a
    :mod:`torch.distributions` object qualifies (e.g. ``MixtureSameFamily``), and so will a
    flow prior. Default: :class:`StandardNormal`.
``likelihood`` (with the ``decoder``)
    the observation model: ``param_dim(x_dim)``, ``log_prob(x, η) -> [...]`` summed over
    pixels, ``mean(η)``, ``sample(η)`` and ``validate(x)`` (the clear error on bad data).
    Default: :class:`Bernoulli` on logits; :class:`GaussianLikelihood` (fixed variance)
    serves the linear-Gaussian model of the tests, whose posterior is known exactly.

Shapes: data ``[B, D]`` (images ``[B, 28, 28]`` or ``[B, 1, 28, 28]`` are flattened);
``k`` posterior samples per data point give ``z`` of shape ``[k, B, d]`` and per-sample
log-densities ``[k, B]``. Devices and dtypes come from the inputs and the parameters.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

__all__ = ["VAE", "DiagonalGaussian", "PointMass", "StandardNormal", "Bernoulli",
           "GaussianLikelihood", "mlp"]

LOG_2PI = math.log(2 * math.pi)

# "gated": h = a ⊙ σ(b) with [a, b] = W x + c (gated linear units, Dauphin et al. 2017; the
# MLPs of Tomczak & Welling's VampPrior VAE).
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU,
                "gated": nn.GLU}


def mlp(in_dim: int, hidden: int | Sequence[int], out_dim: int,
        activation: str = "relu", dropout: float = 0.0) -> nn.Sequential:
    """A multilayer perceptron: ``Linear -> activation`` per hidden layer, then ``Linear``.

    ``activation="gated"`` makes each hidden layer ``Linear(in, 2h) -> GLU``: ``h`` gated
    units, twice the weights of a ReLU layer. ``dropout > 0`` adds ``Dropout(dropout)`` after
    each hidden layer (active in training mode only).

    >>> mlp(784, 400, 80)
    Sequential(
      (0): Linear(in_features=784, out_features=400, bias=True)
      (1): ReLU()
      (2): Linear(in_features=400, out_features=80, bias=True)
    )
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of {sorted(_ACTIVATIONS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    layers: list[nn.Module] = []
    for h in sizes:
        width = 2 * h if activation == "gated" else h  # GLU halves its input
        layers += [nn.Linear(in_dim, width), _ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


# Posteriors -----------------------------------------------------------------------------

class DiagonalGaussian(nn.Module):
    r"""The posterior family :math:`q(z \mid x) = \mathcal N(\mu, \mathrm{diag}\,\sigma^2)`
    with amortized parameters ``params = [μ, log σ²]`` (``[B, 2d]``) from the encoder.

    It holds no parameters of its own.

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
        """``z = μ + σ ε`` of shape ``[k, B, d]`` and ``log q(z | x)`` of shape ``[k, B]``."""
        mu, log_var = self.split(params)
        std = torch.exp(0.5 * log_var)
        eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype,
                          device=mu.device)
        z = mu + std * eps
        # log N(z; μ, σ²) with (z − μ)/σ = ε exactly: no cancellation error.
        log_q = -0.5 * (eps**2 + log_var + LOG_2PI).sum(-1)
        return z, log_q

    def mean(self, params: Tensor) -> Tensor:
        return self.split(params)[0]

    def kl(self, params: Tensor, prior) -> Tensor:
        r"""KL(q ‖ p) in closed form, shape ``[B]``; ``NotImplementedError`` if there is none.

        For the standard normal prior:
        :math:`\tfrac12 \sum_j (\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1)`. Otherwise the
        pair (``Independent(Normal)``, prior) must be registered with
        :func:`torch.distributions.kl_divergence`.
        """
        mu, log_var = self.split(params)
        if isinstance(prior, StandardNormal):
            return 0.5 * (mu**2 + log_var.exp() - log_var - 1).sum(-1)
        if isinstance(prior, Distribution):
            return kl_divergence(self.distribution(params), prior)
        raise NotImplementedError(f"no closed-form KL to a prior of type {type(prior).__name__}")


# Priors -----------------------------------------------------------------------------------

class StandardNormal(nn.Module):
    """The prior :math:`p(z) = \\mathcal N(0, I_d)`, a module so that ``.to(device)`` moves it.

    >>> p = StandardNormal(2)
    >>> p.log_prob(torch.zeros(3, 2))  # −log 2π
    tensor([-1.8379, -1.8379, -1.8379])
    >>> p.sample((4,)).shape
    torch.Size([4, 2])
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("loc", torch.zeros(dim), persistent=False)

    def distribution(self) -> Distribution:
        return Independent(Normal(self.loc, torch.ones_like(self.loc)), 1)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z**2 + LOG_2PI).sum(-1)

    def sample(self, sample_shape: int | Sequence[int] = (),
               generator: torch.Generator | None = None) -> Tensor:
        shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        return torch.randn((*shape, self.dim), generator=generator, dtype=self.loc.dtype,
                           device=self.loc.device)


# Likelihoods ------------------------------------------------------------------------------

def _range(x: Tensor) -> tuple[float, float]:
    return x.min().item(), x.max().item()


class Bernoulli(nn.Module):
    r""":math:`\log p(x \mid z) = \sum_i x_i \log \sigma(\eta_i) + (1 - x_i)\log(1 - \sigma(\eta_i))`,
    from logits :math:`\eta`, summed over pixels (``-BCEWithLogits(reduction='none').sum(-1)``).

    Accepts data in [0, 1] (binary images, or intensities for a continuous Bernoulli-style
    fit); anything outside raises a clear error.
    """

    def param_dim(self, x_dim: int) -> int:
        return x_dim

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        # x·η − softplus(η), summed: the same as −BCEWithLogits(reduction="none").sum(-1),
        # and x broadcasts against k samples of logits without being copied.
        return (x * logits).sum(-1) - F.softplus(logits).sum(-1)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(logits), generator=generator)

    def validate(self, x: Tensor) -> None:
        if x.numel() and (x.min() < 0 or x.max() > 1):
            low, high = _range(x)
            raise ValueError(
                f"the Bernoulli decoder needs data in [0, 1], got values in [{low:g}, {high:g}]; "
                "scale bytes by 1/255 (and binarize, nfcourse.data.binarize) first.")
        if not torch.isfinite(x).all():
            raise ValueError("the data contain NaN or inf")


class GaussianLikelihood(nn.Module):
    r""":math:`p(x \mid z) = \mathcal N(x;\ \eta, \sigma^2 I)` with a fixed ``std`` σ: the
    decoder's output η is the mean. With a linear decoder this is probabilistic PCA / factor
    analysis, whose marginal and posterior are Gaussian in closed form (used by the tests)."""

    def __init__(self, std: float = 1.0):
        super().__init__()
        self.std = float(std)

    def param_dim(self, x_dim: int) -> int:
        return x_dim

    def log_prob(self, x: Tensor, mean: Tensor) -> Tensor:
        return -0.5 * (((x - mean) / self.std) ** 2 + 2 * math.log(self.std) + LOG_2PI).sum(-1)

    def mean(self, mean: Tensor) -> Tensor:
        return mean

    def sample(self, mean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return mean + self.std * torch.randn(mean.shape, generator=generator,
                                             dtype=mean.dtype, device=mean.device)

    def validate(self, x: Tensor) -> None:
        if not torch.isfinite(x).all():
            raise ValueError("the data contain NaN or inf")


# The model --------------------------------------------------------------------------------

class VAE(nn.Module):
    """A VAE: ``encoder`` → ``posterior`` → z → ``decoder`` → ``likelihood``, with ``prior``.

    Defaults follow Rezende & Mohamed's DLGM on binarized MNIST: ``x_dim=784``,
    ``z_dim=40``, 400 hidden units, a diagonal Gaussian posterior, a standard normal prior
    and a Bernoulli decoder. See the module docstring for the contract of each part.

    >>> vae = VAE(x_dim=6, z_dim=2, hidden=8)
    >>> x = torch.bernoulli(torch.full((5, 6), 0.5))
    >>> z, log_q = vae.posterior.rsample_and_log_prob(vae.encode(x), k=3)
    >>> vae.log_joint(x, z).shape     # log p(x, z) for each of the 3 x 5 samples
    torch.Size([3, 5])
    >>> vae(2 * x)                    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the Bernoulli decoder needs data in [0, 1], got values in [0, 2]; ...
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 40, hidden: int | Sequence[int] = 400,
                 *, encoder_hidden: int | Sequence[int] | None = None,
                 activation: str = "relu", dropout: float = 0.0,
                 posterior: nn.Module | None = None, prior=None, likelihood: nn.Module | None = None,
                 encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.posterior = posterior if posterior is not None else DiagonalGaussian()
        self.prior = prior if prior is not None else StandardNormal(z_dim)
        self.likelihood = likelihood if likelihood is not None else Bernoulli()
        if encoder is not None and encoder_hidden is not None:
            raise ValueError("give either encoder= (a module) or encoder_hidden= (its sizes), "
                             "not both")
        self.encoder = encoder if encoder is not None else mlp(
            x_dim, hidden if encoder_hidden is None else encoder_hidden,
            self.posterior.param_dim(z_dim), activation, dropout)
        self.decoder = decoder if decoder is not None else mlp(
            z_dim, hidden, self.likelihood.param_dim(x_dim), activation, dropout)

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
        self.likelihood.validate(flat)
        return flat

    def encode(self, x: Tensor) -> Tensor:
        """The posterior's per-sample parameters λ = encoder(x), ``[B, P]``."""
        return self.encoder(self.prepare(x))

    def decode(self, z: Tensor) -> Tensor:
        """The likelihood's parameters (Bernoulli: logits), ``[..., x_dim]``."""
        return self.decoder(z)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log p(x | z) + log p(z) for ``z`` of shape ``[k, B, d]``: ``[k, B]``.

        ``x`` must already be prepared (``[B, x_dim]``)."""
        return self.likelihood.log_prob(x, self.decode(z)) + self.prior.log_prob(z)

    def forward(self, x: Tensor, k: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """``(log p(x | z), log p(z), log q(z | x))``, each ``[k, B]``, for k posterior draws."""
        x = self.prepare(x)
        z, log_q = self.posterior.rsample_and_log_prob(self.encoder(x), k)
        return self.likelihood.log_prob(x, self.decode(z)), self.prior.log_prob(z), log_q

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True,
               generator: torch.Generator | None = None) -> Tensor:
        """n images from the model: z ~ p(z), then the decoder's mean (or a sample)."""
        prior = self.prior
        try:
            z = prior.sample((n,), generator=generator)
        except TypeError:  # torch.distributions objects take no generator
            z = prior.sample((n,))
        eta = self.decode(z.to(next(self.parameters()).device))
        return self.likelihood.mean(eta) if mean else self.likelihood.sample(eta, generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoder's mean at the posterior mean of each input, ``[B, x_dim]``."""
        params = self.encode(x)
        return self.likelihood.mean(self.decode(self.posterior.mean(params)))


class PointMass(nn.Module):
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

    def kl(self, params: Tensor, prior) -> Tensor:
        raise NotImplementedError("a point mass has no KL to a continuous prior (it is +inf)")
