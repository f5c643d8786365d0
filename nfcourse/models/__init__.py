"""Models: the variational autoencoder with pluggable posterior, prior and likelihood.

- :mod:`nfcourse.models.vae`  ``VAE``, ``DiagonalGaussian`` and ``PointMass`` posteriors,
  ``StandardNormal`` prior, ``Bernoulli`` and ``GaussianLikelihood`` decoders, ``mlp``.

Objectives (ELBO, IWAE, importance-sampled NLL) live in :mod:`nfcourse.objectives`, the
training loop in :mod:`nfcourse.train`.
"""

from nfcourse.models.vae import (VAE, Bernoulli, DiagonalGaussian, GaussianLikelihood,
                                 PointMass, StandardNormal, mlp)

__all__ = ["VAE", "Bernoulli", "DiagonalGaussian", "GaussianLikelihood", "PointMass",
           "StandardNormal", "mlp"]
