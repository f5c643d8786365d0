r"""The training loss of one step, eager or compiled: the one place ``torch.compile`` is
used, by :func:`nfcourse.train.fit` (``TrainConfig(compile=True)``) and
``benchmarks/nfvi.py``.

A step computes the mean loss of a batch :math:`\mathcal B` at step :math:`t`,

.. math::

    \text{loss}_t = \frac{1}{|\mathcal B|}\sum_{i \in \mathcal B} \ell_t(i),

then its gradient and Adam's update. Compiled, the forward pass and its backward become a
few fused kernels (inductor on the CPU; on CUDA ``mode="reduce-overhead"``, which also
replays them as CUDA graphs: one launch instead of one per kernel). The update stays
Adam's own fused kernel.

What compiling must not change:

- **β is a constant of the compiled graph.** While an objective anneals, β_t changes
  every step and would recompile every step; so the first ``objective.warmup`` steps run
  eagerly, and the compiled function is called with a step past the warm-up, where
  :math:`\beta = 1`.
- **The noise** comes from the loop's seeded generator, inside the graph, so a compiled
  run draws the same ε as an eager one and agrees with it to float rounding (inductor
  fuses and reorders the arithmetic; ``tests/test_compiled.py`` checks the tolerance).
- **The NaN check** sees the loss before the update: only the forward and backward are
  compiled, the loop checks the loss, then steps.
- **Each batch shape compiles once** (``dynamic=False``): the last, smaller batch of an
  epoch gets a graph of its own, compiled on its first use.
- **Data checks** that read values (a Bernoulli decoder's data in [0, 1]) are skipped
  while compiling (:func:`nfcourse.utils.values_checkable`): the first, eager steps have
  checked the data's values.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from nfcourse.objectives import Objective

__all__ = ["training_loss"]

#: ``(batch, step, generator) -> (mean loss, items in the batch)``
LossFn = Callable[[Tensor | None, int, torch.Generator], tuple[Tensor, int]]


def training_loss(model, objective: Objective, compile: bool = False) -> LossFn:
    """The mean training loss of a batch at a step, eager, or compiled after the warm-up
    (see the module docstring). ``compile`` on a device without a compiler backend
    (Apple's MPS) falls back to eager with a warning."""

    def eager(batch: Tensor | None, step: int, generator: torch.Generator):
        losses = objective.loss(model, batch, step, generator)
        return losses.mean(), losses.shape[0]

    if not compile:
        return eager
    device = next(model.parameters()).device
    if device.type not in ("cpu", "cuda"):
        import warnings
        warnings.warn(f"compile=True: torch.compile has no backend for {device.type}; "
                      "training eagerly", stacklevel=2)
        return eager
    after_warmup = objective.warmup

    def forward(batch: Tensor | None, generator: torch.Generator) -> Tensor:
        return objective.loss(model, batch, after_warmup, generator)

    compiled = torch.compile(forward, mode="reduce-overhead" if device.type == "cuda"
                             else None, dynamic=False)

    def step_loss(batch: Tensor | None, step: int, generator: torch.Generator):
        if step < after_warmup:
            return eager(batch, step, generator)
        losses = compiled(batch, generator)
        return losses.mean(), losses.shape[0]

    return step_loss
