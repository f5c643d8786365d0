r"""Priors :math:`p(z)` for the VAE: the standard normal, a trainable mixture of Gaussians,
and a flow.

**Standard normal**, :math:`\log p(z) = -\tfrac12\sum_j (z_j^2 + \log 2\pi)`.

**Mixture of Gaussians** with C trainable components,

.. math::

    p(z) = \sum_{c=1}^C \pi_c\, \mathcal N(z;\ m_c, \operatorname{diag} s_c^2), \qquad
    \log p(z) = \operatorname{logsumexp}_c\Big(\log\pi_c
        - \tfrac12 \sum_j \big(\varepsilon_{cj}^2 + \log s_{cj}^2 + \log 2\pi\big)\Big),
    \quad \varepsilon_c = (z - m_c) / s_c,

with :math:`\pi = \operatorname{softmax}(\text{logits})`. Sampling picks a component, then
draws :math:`z = m_c + s_c \varepsilon`.

**Flow prior** (Section 5: "flows as VAE priors"): a standard normal :math:`u` pushed through
a flow :math:`g` with a cheap inverse (coupling layers, MAF),

.. math::

    z = g(u), \qquad \log p(z) = \log \mathcal N\big(g^{-1}(z); 0, I\big)
        + \log\left|\det \frac{\partial g^{-1}}{\partial z}\right| .

The VAE needs :math:`\log p(z)` at its posterior's samples, so ``log_prob`` runs the inverse.

None of the last two has a closed-form KL to a Gaussian posterior: with them the ELBO uses
the Monte Carlo KL, :math:`\mathbb E_q[\log q(z \mid x) - \log p(z)]`. A
:mod:`torch.distributions` object can serve as a prior too (:class:`DistributionPrior`).

Every prior takes ``log_prob(z [..., d]) -> [...]`` and
``sample(sample_shape, generator=None) -> [*sample_shape, d]``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from nfcourse.closed_forms import (diag_normal_log_prob, reparameterize, std_normal_log_prob)
from nfcourse.flows import Bijection, FlowDistribution, rsample_base

__all__ = ["Prior", "StandardNormal", "MixturePrior", "FlowPrior", "DistributionPrior",
           "as_prior"]

Shape = int | Sequence[int]


def _shape(sample_shape: Shape) -> tuple[int, ...]:
    return (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)


class Prior(nn.Module):
    """The interface every prior of :class:`~nfcourse.models.VAE` provides. ``dim`` is d."""

    dim: int

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, sample_shape: Shape = (),
               generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


class StandardNormal(Prior):
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
        return std_normal_log_prob(z)

    def sample(self, sample_shape: Shape = (),
               generator: torch.Generator | None = None) -> Tensor:
        return torch.randn((*_shape(sample_shape), self.dim), generator=generator,
                           dtype=self.loc.dtype, device=self.loc.device)


class MixturePrior(Prior):
    """A trainable mixture of ``components`` diagonal Gaussians in ``dim`` dimensions.

    Parameters (own, trained with the VAE): ``logits`` ``[C]``, ``means`` ``[C, d]``
    (initialised from N(0, I), so the components start apart), ``log_vars`` ``[C, d]``.

    >>> p = MixturePrior(2, components=3)
    >>> p.log_prob(torch.zeros(5, 2)).shape, p.sample((4,)).shape
    (torch.Size([5]), torch.Size([4, 2]))
    """

    def __init__(self, dim: int, components: int = 10):
        super().__init__()
        if components < 1:
            raise ValueError(f"components={components!r}: a mixture needs at least one")
        self.dim = dim
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, dim))
        self.log_vars = nn.Parameter(torch.zeros(components, dim))

    def log_prob(self, z: Tensor) -> Tensor:
        eps = (z.unsqueeze(-2) - self.means) * torch.exp(-0.5 * self.log_vars)  # [..., C, d]
        log_components = diag_normal_log_prob(eps, self.log_vars)                # [..., C]
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + log_components, -1)

    def sample(self, sample_shape: Shape = (),
               generator: torch.Generator | None = None) -> Tensor:
        shape = _shape(sample_shape)
        n = 1
        for s in shape:
            n *= s
        c = torch.multinomial(torch.softmax(self.logits, -1), n, replacement=True,
                              generator=generator)
        eps = torch.randn((n, self.dim), generator=generator, dtype=self.means.dtype,
                          device=self.means.device)
        return reparameterize(self.means[c], self.log_vars[c], eps).reshape(*shape, self.dim)


class FlowPrior(Prior):
    """A standard normal pushed through ``flow`` (a layer or a Flow, with its own parameters).

    ``log_prob`` runs ``flow.inverse``, so choose a flow whose inverse is cheap: coupling
    layers (closed form) or MAF (one pass), not IAF (``d`` passes) or Planar (numerical).

    >>> from nfcourse.flows import AffineCoupling, Flow, half_mask
    >>> p = FlowPrior(Flow([AffineCoupling(half_mask(4, first=i % 2 == 0)) for i in range(4)]))
    >>> p.log_prob(torch.zeros(5, 4)).shape, p.sample((3,)).shape
    (torch.Size([5]), torch.Size([3, 4]))
    """

    def __init__(self, flow: Bijection):
        super().__init__()
        if flow.param_dim or flow.context_dim:
            raise ValueError(f"a prior has no per-sample parameters or context, and this "
                             f"{type(flow).__name__} needs them (param_dim={flow.param_dim}, "
                             f"context_dim={flow.context_dim}): build its layers with their "
                             "own parameters")
        self.dim = flow.dim
        self.distribution = FlowDistribution(flow)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.distribution.log_prob(z)

    def sample(self, sample_shape: Shape = (),
               generator: torch.Generator | None = None) -> Tensor:
        return self.distribution.rsample(_shape(sample_shape), generator=generator)


class DistributionPrior(Prior):
    """A :class:`torch.distributions.Distribution` with event shape ``[d]`` as a prior.

    Its ``sample`` draws from the global generator and refuses a ``generator``, except for
    a (diagonal) Normal, which is drawn as μ + σε from it.
    """

    def __init__(self, distribution: Distribution):
        super().__init__()
        if len(distribution.event_shape) != 1:
            raise ValueError(f"a prior's event shape is [d]; this {type(distribution).__name__} "
                             f"has {list(distribution.event_shape)} (wrap a Normal of shape "
                             "[d] in Independent(..., 1))")
        self.distribution = distribution
        self.dim = distribution.event_shape[0]
        base = distribution.base_dist if isinstance(distribution, Independent) else distribution
        #: True for N(μ, diag σ²): a Gaussian posterior then has a closed-form KL to it.
        self.is_gaussian = isinstance(base, Normal)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.distribution.log_prob(z)

    def sample(self, sample_shape: Shape = (),
               generator: torch.Generator | None = None) -> Tensor:
        if generator is None:
            return self.distribution.sample(torch.Size(_shape(sample_shape)))
        return rsample_base(self.distribution, _shape(sample_shape), generator).detach()


def as_prior(prior: Prior | Distribution | None, dim: int | None = None) -> Prior:
    """``prior`` as a :class:`Prior` (of dimension ``dim``, if given): ``None`` gives the
    standard normal, a :mod:`torch.distributions` object is wrapped, a wrong dimension is a
    clear error."""
    if prior is None:
        if dim is None:
            raise ValueError("as_prior(None) needs the dimension for the standard normal")
        return StandardNormal(dim)
    if isinstance(prior, Distribution):
        prior = DistributionPrior(prior)
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a nfcourse.models.Prior (StandardNormal, MixturePrior, "
                        f"FlowPrior) or a torch.distributions.Distribution, got "
                        f"{type(prior).__name__}")
    if dim is not None and prior.dim != dim:
        raise ValueError(f"the prior is over {prior.dim} dimensions and z_dim={dim}: build "
                         "the prior for z_dim")
    return prior
