r"""What the training loop minimises: the interface every objective provides.

An objective gives, for a model and a batch, one value per item (data point or draw):

.. math::

    \text{loss}_t(i) \quad\text{(minimised at step } t\text{)}, \qquad
    \text{bound}(i) \quad\text{(higher is better; what validation reports)},

and, when it anneals (Rezende & Mohamed 2015, §6.2), the inverse temperature

.. math::

    \beta_t = \min\big(1,\ 0.01 + t / N\big), \qquad N = 10\,000 \text{ by default}.

The three kinds live beside this module: :mod:`nfcourse.objectives.vae` (a VAE's ELBO or
IWAE bound), :mod:`nfcourse.objectives.density` (a flow's likelihood of data) and
:mod:`nfcourse.objectives.free_energy` (a flow fitted to an energy).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfcourse.utils import eval_mode

__all__ = ["Objective", "anneal_beta", "warmup_steps", "mean_bound"]


def anneal_beta(step: int, start: float = 0.01, steps: int = 10_000) -> float:
    """R&M's inverse temperature β_t = min(1, start + t / steps).

    >>> anneal_beta(0), anneal_beta(4_900), anneal_beta(20_000)
    (0.01, 0.5, 1.0)
    """
    return min(1.0, start + step / steps)



class Objective:
    """The interface of what :func:`nfcourse.train.fit` trains on.

    - ``loss(model, batch, step, generator)``: one value per item (data point, or draw),
      whose mean is minimised at step ``step``;
    - ``bound(model, batch, generator)``: one value per item, higher is better, what
      validation reports (no annealing);
    - ``temperature(step)``: the inverse temperature β_t in use (1 without annealing),
      for the training log;
    - ``needs_data``: ``False`` for an objective with no data set (a free energy), which
      is given ``batch=None`` and trained for a number of steps.
    """

    needs_data: bool = True
    #: the number of warm-up steps of R&M's annealing, 0 for none (see :func:`warmup_steps`)
    warmup: int = 0

    def loss(self, model, batch: Tensor | None, step: int,
             generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def bound(self, model, batch: Tensor | None, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def temperature(self, step: int) -> float:
        return anneal_beta(step, steps=self.warmup) if self.warmup else 1.0


def warmup_steps(anneal: bool | int) -> int:
    """``True``: R&M's 10 000 steps; an int: that many; ``False`` or 0: no annealing.

    >>> warmup_steps(True), warmup_steps(500), warmup_steps(False)
    (10000, 500, 0)
    """
    if anneal is not True and anneal is not False and int(anneal) < 0:
        raise ValueError(f"anneal={anneal!r}: True, False or a number of warm-up steps >= 0")
    return 10_000 if anneal is True else int(anneal) if anneal else 0


@torch.no_grad()
def mean_bound(model, data: Tensor | None, objective: Objective, batch_size: int = 1000,
               seed: int = 0) -> float:
    r""":math:`\frac1N \sum_n \text{bound}(x_n)` over ``data`` in eval mode (β = 1), with
    noise from a generator seeded by ``seed`` (so two calls on the same model agree);
    ``data=None`` for an objective without data (one batch of its own draws)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    with eval_mode(model):
        if data is None:
            return objective.bound(model, None, gen).mean().item()
        total = 0.0
        for start in range(0, data.shape[0], batch_size):
            xb = data[start:start + batch_size].to(device)
            total += objective.bound(model, xb, gen).sum().item()
    return total / data.shape[0]
