r"""Observation models :math:`p_\theta(x \mid z)` for the VAE: the decoder outputs their
parameters η, and they score the data.

.. math::

    \text{Bernoulli:}\quad \log p(x \mid z) = \sum_i x_i \eta_i - \operatorname{softplus}(\eta_i),
    \qquad
    \text{Gaussian:}\quad \log p(x \mid z) = -\tfrac12 \sum_i \Big(\frac{(x_i - \eta_i)^2}{s^2}
    + \log s^2 + \log 2\pi\Big).

Each sums over pixels, and ``x`` ``[B, D]`` broadcasts against ``k`` samples of η
``[k, B, D]``. ``validate(x)`` is where bad data get their clear error.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nfcourse.closed_forms import LOG_2PI, bernoulli_log_likelihood

__all__ = ["Likelihood", "Bernoulli", "GaussianLikelihood"]


class Likelihood(nn.Module):
    """The interface every observation model of :class:`~nfcourse.models.VAE` provides."""

    def param_dim(self, x_dim: int) -> int:
        """How many numbers η the decoder outputs per data point."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, eta: Tensor) -> Tensor:
        """:math:`\\log p(x \\mid z)` summed over pixels: ``[...]`` for η ``[..., D]``."""
        raise NotImplementedError

    def mean(self, eta: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, eta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def validate(self, x: Tensor) -> None:
        """Raise a ``ValueError`` that names the problem and the fix, for data it cannot score."""
        if not torch.isfinite(x).all():
            raise ValueError("the data contain NaN or inf")


def _range(x: Tensor) -> tuple[float, float]:
    return x.min().item(), x.max().item()


class Bernoulli(Likelihood):
    r"""Pixels :math:`x_i \sim \mathrm{Bern}(\sigma(\eta_i))` from logits η
    (``-BCEWithLogits(reduction='none').sum(-1)``).

    Accepts data in [0, 1] (binary images, or intensities for a continuous Bernoulli-style
    fit); anything outside raises a clear error.
    """

    def param_dim(self, x_dim: int) -> int:
        return x_dim

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        return bernoulli_log_likelihood(x, logits)

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
        super().validate(x)


class GaussianLikelihood(Likelihood):
    r""":math:`p(x \mid z) = \mathcal N(x;\ \eta, s^2 I)` with a fixed ``std`` s: the
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
