"""Models: the variational autoencoder with pluggable posterior, prior and likelihood.

- :mod:`nfcourse.models.vae`          ``VAE`` and ``ElboTerms`` (the one pipeline)
- :mod:`nfcourse.models.posteriors`   ``Posterior``: ``DiagonalGaussian``, ``FlowPosterior``
  (R&M §4), ``PointMass``; ``posterior(λ)`` is q(z | x) of a batch, an ``AmortizedQ``
- :mod:`nfcourse.models.priors`       ``Prior``: ``StandardNormal``, ``MixturePrior``,
  ``FlowPrior``, ``DistributionPrior``
- :mod:`nfcourse.models.likelihoods`  ``Likelihood``: ``Bernoulli``, ``GaussianLikelihood``

Objectives (ELBO, IWAE, importance-sampled NLL) live in :mod:`nfcourse.objectives`, the
training loop in :mod:`nfcourse.train`.
"""

from nfcourse.models.likelihoods import Bernoulli, GaussianLikelihood, Likelihood
from nfcourse.models.posteriors import (POSTERIORS, AmortizedQ, BoundFlow, DiagonalGaussian,
                                        FlowPosterior, PointMass, PointMassQ, Posterior,
                                        make_posterior)
from nfcourse.models.priors import (DistributionPrior, FlowPrior, MixturePrior, Prior,
                                    StandardNormal)
from nfcourse.models.vae import VAE, ElboTerms

__all__ = ["VAE", "ElboTerms", "Bernoulli", "GaussianLikelihood", "Likelihood",
           "DiagonalGaussian", "FlowPosterior", "PointMass", "Posterior", "POSTERIORS",
           "make_posterior", "AmortizedQ", "BoundFlow", "PointMassQ", "DistributionPrior",
           "FlowPrior", "MixturePrior", "Prior", "StandardNormal"]
