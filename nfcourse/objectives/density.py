r"""Density models fitted to data by maximum likelihood (Section 5): dequantization, the
negative log-likelihood in nats and in bits per dimension.

**Maximum likelihood.** A density model :math:`q` (e.g. a
:class:`~nfcourse.flows.FlowDistribution`) is fitted by minimising
:math:`-\frac1N\sum_n \log q(x_n)`.

**Uniform dequantization** (Uria et al. 2013; Theis et al. 2016). Data with :math:`k` levels,
:math:`x \in \{0, \dots, k-1\}^D`, have no density: a continuous :math:`q` can put
unbounded density on the grid points, and its likelihood then grows without limit. Adding
uniform noise and rescaling,

.. math::

    y = (x + u) / k, \qquad u \sim \mathcal U[0, 1)^D, \qquad y \in [0, 1)^D,

turns the discrete model :math:`P(x) = \int_{[0,1)^D} q\big((x + u)/k\big)\, k^{-D}\, du`
into one whose log-likelihood is bounded by Jensen's inequality:

.. math::

    \log P(x) \;\ge\; \mathbb E_u\big[\log q(y)\big] - D \log k .

So the **negative log-likelihood of the discrete data, in nats**, is at most
:math:`-\log q(y) + D\log k` (estimated with one draw of u per image), and **in bits per
dimension**

.. math::

    \text{bits/dim} = \frac{-\log P(x)}{D \ln 2}
    \;\le\; \frac{-\log q(y)}{D \ln 2} + \log_2 k .

Models that work on logits rather than on :math:`[0, 1)` keep the likelihood in data space
with the :class:`~nfcourse.flows.Logit` bijection, whose log-det is part of :math:`\log q(y)`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nfcourse.objectives.base import Objective

__all__ = ["dequantize", "discrete_nll", "bits_per_dim", "MaximumLikelihood"]


def _event_size(x: Tensor) -> int:
    return x[0].numel()


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """``y = (x + u) / levels`` with ``u ~ U[0, 1)``, for integer-valued ``x`` in
    ``[0, levels - 1]`` (any shape; any float or integer dtype, returned as float).

    >>> y = dequantize(torch.tensor([[0.0, 3.0]]), levels=4)
    >>> bool(((y >= torch.tensor([0.0, 0.75])) & (y < torch.tensor([0.25, 1.0]))).all())
    True
    """
    if levels < 2:
        raise ValueError(f"levels={levels!r}: dequantization needs at least 2 levels")
    if x.numel() and (x.min() < 0 or x.max() > levels - 1 or (x != x.round()).any()):
        raise ValueError(
            f"dequantize expects integers in [0, {levels - 1}] (levels={levels}), got values "
            f"in [{x.min().item():g}, {x.max().item():g}]"
            + ("" if bool((x == x.round()).all()) else ", not all integers")
            + "; pass the raw counts (e.g. pixel values 0..16 for the 8x8 digits), not "
              "data already scaled to [0, 1]")
    x = x.float() if not x.is_floating_point() else x
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + u) / levels


def discrete_nll(log_q: Tensor, dims: int, levels: int) -> Tensor:
    r"""The upper bound :math:`-\log q(y) + D \log k` on :math:`-\log P(x)`, in nats, from the
    density ``log_q`` of the dequantized data ``y = (x + u)/k``.

    >>> discrete_nll(torch.tensor([0.0]), dims=2, levels=4)   # 2 log 4
    tensor([2.7726])
    """
    return -log_q + dims * math.log(levels)


def bits_per_dim(nll: Tensor | float, dims: int) -> Tensor | float:
    r"""Nats per data point to bits per dimension: :math:`\text{nll} / (D \ln 2)`.

    >>> bits_per_dim(64 * math.log(2.0), dims=64)
    1.0
    """
    return nll / (dims * math.log(2))


class MaximumLikelihood(Objective):
    r"""Maximum likelihood of a density model (anything with ``log_prob(x) -> [B]``) as a
    training objective for :func:`nfcourse.train.fit`.

    ``levels``: dequantize each batch with fresh uniform noise (from the loop's seeded
    generator) and report the bound on the discrete data, :math:`\log q(y) - D \log k`;
    ``None`` for continuous data, whose log-density is used as it is.
    """

    def __init__(self, levels: int | None = None):
        self.levels = levels

    def bound(self, model, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.levels is None:
            return model.log_prob(x)
        y = dequantize(x, self.levels, generator)
        return -discrete_nll(model.log_prob(y), _event_size(x), self.levels)

    def loss(self, model, x: Tensor, step: int, generator: torch.Generator) -> Tensor:
        return -self.bound(model, x, generator)
