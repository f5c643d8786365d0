r"""What the training loop does besides its steps, as callbacks.

:func:`nfcourse.train.fit` takes steps; everything else a run does is a callback, called
at these points of the loop:

- ``on_start(run)``: before the first step (a resumed run has been restored by then);
- ``on_step(run, loss)``: after each step, with its mean loss;
- ``on_epoch_end(run)``: after each epoch, in the order the callbacks are given; it may
  return why training stops (a sentence), or ``""`` to go on;
- ``after_epoch(run)``: once every callback has seen the epoch's end and the reason to
  stop (if any) is recorded (checkpoints are written here);
- ``on_end(run)``: once, after the last epoch (also after an error);

and ``load_state(run, state)`` when a run resumes from a checkpoint, after every
``on_start``. ``run`` is the state
of the loop (:class:`nfcourse.train.Run`): the model, the optimizer, the settings
(``run.config``), the history, the epoch and step, and what callbacks share on it
(``run.averaged``, ``run.improved``, ``run.bad_epochs``, ``run.cut``: end this epoch now;
``run.finished``: the loop ended without an error).

The features, each the equations or rules of the module docstring of
:mod:`nfcourse.train`:

- :class:`ParameterAverage`, the exponential moving average
  :math:`\bar\theta_t = \rho_t \bar\theta_{t-1} + (1 - \rho_t)\theta_t` with
  :math:`\rho_t = \min(\rho, (1 + t)/(10 + t))`;
- :class:`Validation`: the mean bound on held-out data, and the best parameters so far;
- :class:`EarlyStopping`: stop after ``patience`` epochs without a better bound;
- :class:`StepLimit` and :class:`TimeLimit`: stop after the step that reaches the limit;
- :class:`ProgressBar`: a bar whose time estimate is honest under a time limit;
- :class:`SharedBar` with :func:`loop_bar`: one bar over a loop of fits, each step weighted
  by its cost, so that the time left covers the whole loop;
- :class:`EpochLog`: one line per epoch;
- :class:`Checkpoint`: ``last.pt`` and ``best.pt``, and resume.

Write your own by subclassing :class:`Callback` and passing it in ``callbacks=``.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import torch
from torch import nn

from nfcourse.objectives import mean_bound
from nfcourse.utils import progress as _progress

__all__ = ["Callback", "ParameterAverage", "Validation", "EarlyStopping", "StepLimit", "TimeLimit",
           "ProgressBar", "SharedBar", "loop_bar", "EpochLog", "Checkpoint", "save_checkpoint",
           "load_checkpoint"]


class Callback:
    """The protocol: override the hooks you need; each default does nothing."""

    def on_start(self, run) -> None:
        pass

    def on_step(self, run, loss: float) -> None:
        pass

    def on_epoch_end(self, run) -> str:
        return ""

    def after_epoch(self, run) -> None:
        pass

    def on_end(self, run) -> None:
        pass

    def load_state(self, run, state: dict) -> None:
        pass


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """A checkpoint written by :func:`nfcourse.train.fit`, loaded with ``weights_only=True``."""
    return torch.load(path, map_location=map_location, weights_only=True)


@torch.no_grad()
def average_into(averaged: nn.Module, model: nn.Module, rho: float) -> None:
    """θ̄ ← ρ θ̄ + (1 − ρ) θ for the parameters; buffers are copied as they are."""
    for p_bar, p in zip(averaged.parameters(), model.parameters()):
        p_bar.lerp_(p, 1.0 - rho)
    for b_bar, b in zip(averaged.buffers(), model.buffers()):
        b_bar.copy_(b)


class ParameterAverage(Callback):
    """θ̄, a frozen copy of the model averaged after every step (``run.averaged``), which
    validation, ``best.pt`` and the returned model use; Adam goes on from θ."""

    def __init__(self, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema={decay!r}: the decay of the parameter average must be in "
                             "[0, 1), e.g. 0.999; pass None for no averaging")
        self.decay = decay

    def on_start(self, run) -> None:
        run.averaged = copy.deepcopy(run.model).requires_grad_(False)

    def load_state(self, run, state: dict) -> None:
        if state.get("averaged") is not None:
            run.averaged.load_state_dict(state["averaged"])
        else:        # averaging begins on resume: from the restored parameters
            run.averaged.load_state_dict(run.model.state_dict())

    def on_step(self, run, loss: float) -> None:
        step = run.step - 1                   # the step just taken, counted from 0
        average_into(run.averaged, run.model, min(self.decay, (1 + step) / (10 + step)))


class Validation(Callback):
    """After each epoch the mean bound (β = 1, fixed noise) on ``data``, recorded in the
    history; the parameters at the best bound are kept (``run.best_state``) and restored at
    the end. Without data nothing is selected: the last epoch is kept (an annealed training
    loss is no bound to compare epochs by)."""

    def __init__(self, data: torch.Tensor | None, batch_size: int = 1000):
        self.data, self.batch_size = data, batch_size

    def on_epoch_end(self, run) -> str:
        h = run.history
        if self.data is not None:
            valid = mean_bound(run.validated, self.data, run.objective,
                               batch_size=self.batch_size, seed=run.config.seed + 2)
            run.improved = valid > h.best_valid
        else:
            valid, run.improved = math.nan, True
        h.valid_bound.append(valid)
        if run.improved:
            h.best_valid, h.best_epoch, run.bad_epochs = valid, run.epoch + 1, 0
            run.best_state = copy.deepcopy(run.validated.state_dict())
        else:
            run.bad_epochs += 1
        return ""

    def on_end(self, run) -> None:
        # after an error the model stays as it was (at the last good step)
        if run.finished and run.best_state is not None:
            run.model.load_state_dict(run.best_state)


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better validation bound (after
    :class:`Validation`, which counts them in ``run.bad_epochs``)."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, run) -> str:
        h = run.history
        if run.bad_epochs >= self.patience:
            return (f"early stopping: no better validation bound for {self.patience} epochs "
                    f"(best {h.best_valid:.3f} at epoch {h.best_epoch})")
        return ""


class StepLimit(Callback):
    """Stop after ``max_steps`` steps in all (counted across resumes); the cut epoch is
    validated and checkpointed as at an epoch's end."""

    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def on_step(self, run, loss: float) -> None:
        if run.step >= self.max_steps:
            run.cut = True

    def on_epoch_end(self, run) -> str:
        return f"max_steps={self.max_steps} reached" if run.step >= self.max_steps else ""


class TimeLimit(Callback):
    """Stop after the step that reaches ``seconds`` of training in this call; the cut epoch
    is validated and checkpointed as at an epoch's end."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_step(self, run, loss: float) -> None:
        if time.perf_counter() - run.started >= self.seconds:
            run.cut = True

    def on_epoch_end(self, run) -> str:
        if run.seconds() - run.elapsed0 < self.seconds:
            return ""
        cut = ("" if run.taken == run.steps_per_epoch else
               f", {run.taken} of {run.steps_per_epoch} batches into epoch {run.epoch + 1}")
        return f"time limit of {self.seconds:.0f} s reached at step {run.step}{cut}"


class ProgressBar(Callback):
    """A bar over the steps, with the loss and β every 10 steps. Under a time limit its
    total is what the limit lets training reach, so that its time estimate is honest; a
    planned stop (limit, patience) ends it complete."""

    bar = None

    def on_start(self, run) -> None:
        total = run.total_steps
        self.bar = _progress(None, desc="training", total=total, initial=min(run.step, total))

    def on_step(self, run, loss: float) -> None:
        bar = self.bar
        bar.update(1)
        if bar.disable or run.step % 10:   # a disabled tqdm has no counters (NFCOURSE_PROGRESS=0)
            return
        beta = run.objective.temperature(run.step - 1)
        bar.set_postfix(loss=f"{loss:.2f}", beta=f"{beta:.2f}", refresh=False)
        elapsed, done, limit = time.perf_counter() - run.started, bar.n - bar.initial, \
            run.config.time_limit
        if limit is not None and done and elapsed > 0:
            reachable = bar.n + int(done / elapsed * max(limit - elapsed, 0.0))
            bar.total = max(bar.n, min(run.total_steps, reachable))

    def on_end(self, run) -> None:
        if self.bar is None:               # an earlier on_start failed
            return
        if run.finished:                   # a planned stop is a finished bar
            self.bar.total = self.bar.n
            self.bar.refresh()
        self.bar.close()


class SharedBar(Callback):
    """One progress bar over a loop of fits (made by :func:`loop_bar`): each training step
    moves it by ``cost``, the step's rough cost relative to the other fits' steps, so that
    its time estimate covers the whole loop. ``cost=0`` leaves the bar alone."""

    def __init__(self, bar, cost: float = 1.0):
        self.bar, self.cost = bar, cost

    def on_step(self, run, loss: float) -> None:
        self.bar.update(self.cost)


def loop_bar(total: float, desc: str):
    """A bar for :class:`SharedBar`, in units of cost, with the percentage and the time
    left (no smoothing: the rate over the whole loop so far)."""
    return _progress(None, desc=desc, total=total, smoothing=0, bar_format=(
        "{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, {remaining} left"))


class EpochLog(Callback):
    """One line per epoch through ``log`` (default ``print``)."""

    def __init__(self, log=None):
        self.log = log or (lambda line: print(line, flush=True))

    def on_start(self, run) -> None:
        if run.resumed_from is not None:
            self.log(f"resumed from {run.resumed_from} after epoch {run.resumed_after} "
                     f"(step {run.step})")

    def on_epoch_end(self, run) -> str:
        h = run.history
        self.log(f"epoch {run.epoch + 1:4d}  step {run.step:7d}  train loss "
                 f"{h.train_loss[-1]:8.3f}  valid bound {h.valid_bound[-1]:9.3f}  beta "
                 f"{h.beta[-1]:.2f}  lr {run.config.lr_at(run.epoch):.1e}  "
                 f"{run.seconds():7.0f} s")
        return ""


class Checkpoint(Callback):
    """``state_dict`` checkpoints in ``directory``, read back with ``weights_only=True``:
    ``last.pt`` after every epoch (the run's whole state: model, optimizer, epoch, step,
    history, θ̄, the generators), ``best.pt`` when validation improves, and with
    ``snapshot_every=n`` a kept copy of ``last.pt`` after every n-th whole epoch
    (``snaps/epoch_NNNN.pt``; an epoch cut short by a step or time limit gets none; a run
    that starts afresh refuses a directory holding another run's copies). With
    ``resume``, ``on_start`` continues from ``last.pt`` when it exists; the result is that of
    a run never interrupted (on the CPU). :func:`nfcourse.train.fit` puts it first, so that
    the others start from the restored run."""

    def __init__(self, directory: str | os.PathLike, resume: bool = False,
                 snapshot_every: int | None = None):
        self.directory, self.resume = Path(directory), resume
        self.snapshot_every = snapshot_every
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def last(self) -> Path:
        return self.directory / "last.pt"

    def check_fresh(self) -> None:
        """A run that starts afresh must not leave another run's kept copies beside its own:
        they would be read as its epochs."""
        if self.resume and self.last.exists():
            return
        stale = sorted((self.directory / "snaps").glob("epoch_*.pt"))
        if stale:
            raise ValueError(
                f"{self.directory} holds {len(stale)} kept copies of an earlier run's last.pt "
                f"({stale[0].name}, ...) in snaps/: continue that run with resume=True "
                "(--resume), or start this one in a new checkpoint_dir (--checkpoint-dir)")

    def on_start(self, run) -> None:
        self.check_fresh()
        if self.resume and self.last.exists():
            run.restore(load_checkpoint(self.last, map_location=run.device), self.last)
            best = self.directory / "best.pt"
            if best.exists():
                run.best_state = load_checkpoint(best, map_location=run.device)["model"]

    def after_epoch(self, run) -> None:
        if run.improved:
            save_checkpoint(self.directory / "best.pt",
                            {"model": run.best_state, "epoch": run.epoch + 1,
                             "valid_bound": run.history.valid_bound[-1]})
        state = run.state()
        save_checkpoint(self.last, state)
        epoch = run.epoch + 1
        whole = run.taken == run.steps_per_epoch     # a limit may fall on its last batch
        if self.snapshot_every and whole and epoch % self.snapshot_every == 0:
            (self.directory / "snaps").mkdir(exist_ok=True)
            save_checkpoint(self.directory / "snaps" / f"epoch_{epoch:04d}.pt", state)
