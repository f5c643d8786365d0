r"""Fitting a flow to an unnormalised density (Rezende & Mohamed 2015, §6.1, Fig. 3).

The target is known only up to its normaliser, :math:`p(z) = e^{-U(z)} / Z`. For a
distribution :math:`q` we can sample from and score (a flow on the VI path), the
**free energy**

.. math::

    \mathcal F(q) = \mathbb E_{q}\big[\log q(z) + U(z)\big]
                  = \mathrm{KL}\big(q \,\|\, p\big) - \log Z \;\ge\; -\log Z

is computable without :math:`Z`, and minimising it minimises the reverse KL: the constant
:math:`\log Z` does not move the minimiser. Its Monte Carlo estimate from :math:`n` draws
:math:`z_s = f(z_{0,s})` is :math:`\frac1n\sum_s \log q(z_s) + U(z_s)`, with
:math:`\log q(z_s)` from the change of variables on the way forward (no inverse).

R&M anneal the energy at the start of training, :math:`\mathcal F_{\beta_t}(q) =
\mathbb E_q[\log q(z) + \beta_t U(z)]`, with the inverse temperature

.. math::

    \beta_t = \min\big(1,\ 0.01 + t / 10000\big)

(:func:`nfcourse.objectives.anneal_beta`), so that the flow spreads before it is pulled into
the modes. :math:`-\mathcal F(q) = \log Z - \mathrm{KL}(q\|p)` is a lower bound on
:math:`\log Z`; it is what validation reports.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfcourse.objectives.base import Objective, warmup_steps
from nfcourse.targets import Energy

__all__ = ["free_energy_terms", "free_energy", "FreeEnergy"]


def free_energy_terms(q, energy: Energy, samples: int, beta: float = 1.0,
                      generator: torch.Generator | None = None) -> Tensor:
    r""":math:`\log q(z_s) + \beta\, U(z_s)` for ``samples`` reparameterised draws from ``q``
    (anything with ``sample_and_log_prob(shape, generator=...)``): ``[samples]``."""
    z, log_q = q.sample_and_log_prob((samples,), generator=generator)
    return log_q + beta * energy(z)


def free_energy(q, energy: Energy, samples: int = 1000, beta: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    r"""The Monte Carlo free energy :math:`\mathbb E_q[\log q(z) + \beta U(z)]`, a scalar.

    >>> from nfcourse.flows import FlowDistribution
    >>> q = FlowDistribution(None, shape=(2,))             # N(0, I) ...
    >>> energy = lambda z: 0.5 * (z**2).sum(-1)             # ... against exp(-U) = N(0, I) Z
    >>> round(float(free_energy(q, energy, 100)), 4)       # −log Z = −log 2π, exactly
    -1.8379
    """
    return free_energy_terms(q, energy, samples, beta, generator).mean()


class FreeEnergy(Objective):
    """The free energy of ``energy`` as a training objective for :func:`nfcourse.train.fit`,
    with ``samples`` draws per step and R&M's annealing (``anneal=True``; an int for another
    number of warm-up steps; ``False`` for β = 1). It has no data set: give ``fit`` no data
    and a number of steps (``max_steps``)."""

    needs_data = False

    def __init__(self, energy: Energy, samples: int = 100, anneal: bool | int = True):
        if samples < 1:
            raise ValueError(f"samples={samples!r}: the free energy needs at least one draw")
        self.energy, self.samples = energy, samples
        self.warmup = warmup_steps(anneal)

    def loss(self, q, batch: None, step: int, generator: torch.Generator) -> Tensor:
        return free_energy_terms(q, self.energy, self.samples, self.temperature(step), generator)

    def bound(self, q, batch: None, generator: torch.Generator) -> Tensor:
        return -free_energy_terms(q, self.energy, self.samples, 1.0, generator)
