r"""One training loop for every model the course trains: minibatch stochastic gradient
descent with Adam (or RMSprop), with validation, early stopping, a parameter average, a step-size
schedule, checkpoints and exact resume. The settings are one frozen
:class:`TrainConfig`; everything the loop does besides its steps is a callback
(:mod:`nfcourse.callbacks`).

What is trained is said by an objective (:class:`nfcourse.objectives.Objective`), so the
same loop fits

- a VAE on a bound: the ELBO or the IWAE bound (:class:`nfcourse.objectives.Bound`);
- a density flow on data by maximum likelihood (:class:`nfcourse.objectives.MaximumLikelihood`);
- a flow on an unnormalised energy U(z) by the free energy
  (:class:`nfcourse.objectives.FreeEnergy`). There is no data set: the loop counts steps
  (``max_steps``), and what it does at the end of an epoch it does every ``epoch_steps``.

Each step t takes a minibatch :math:`\mathcal B` (or, without data, none) and an Adam step on

.. math::

    \text{loss}_t = \frac{1}{|\mathcal B|} \sum_{i \in \mathcal B} \ell_t(i),

the mean of the objective's loss per item at step t; an objective that anneals (R&M's
:math:`\beta_t = \min(1, 0.01 + t/10000)`) computes its own :math:`\beta_t` from t. With
``clip_grad=c`` the gradient g is first scaled to :math:`g \min(1, c / \lVert g\rVert_2)`,
its norm over all parameters (a bound on how far one bad batch can throw the step). After
every epoch the mean bound on the validation set, :math:`\frac1N\sum_n \mathcal L(x_n)`
(:math:`\beta = 1`, fixed noise), is recorded; training stops after ``patience`` epochs
without a new best, and the best parameters are restored.

Optionally (``ema=ρ``) the parameters are also averaged over the iterates (Polyak
averaging with an exponential window, the usual remedy for the noise of a constant step
size),

.. math::

    \bar\theta_t = \rho_t\, \bar\theta_{t-1} + (1 - \rho_t)\, \theta_t, \qquad
    \rho_t = \min\big(\rho,\ (1 + t) / (10 + t)\big),

and :math:`\bar\theta` is what is validated, kept as the best, and returned; Adam goes on
from :math:`\theta`. (The short window of :math:`\rho_t` early on forgets the random
initialisation.)

Optionally the step size decays in steps (``lr_milestones``, ``lr_gamma``): in epoch
:math:`e` (counted from 1) Adam uses

.. math::

    \eta_e = \eta\, \gamma^{\,|\{m \in \text{milestones}:\ m < e\}|},

a function of the epoch alone, so a resumed run follows the same schedule.

Checkpoints (``checkpoint_dir``) are ``state_dict``\ s only, read back with
``torch.load(..., weights_only=True)``:

- ``last.pt``: model, optimizer, epoch, step, history, the averaged parameters (with
  ``ema``) and the random number generators' states, written atomically after every epoch.
  ``resume=True`` continues from it, and the result is the same as a run that was never
  interrupted (on the CPU).
- ``best.pt``: the model at the best validation bound so far (the averaged one with
  ``ema``), and its epoch.
- ``snaps/epoch_NNNN.pt`` (with ``snapshot_every=n``): a copy of ``last.pt`` after every n-th
  whole epoch, kept, so that two runs' held-out NLLs can be compared at the same epochs
  (``scripts/train_vae.py --eval-only --eval-checkpoint``).

After training, :func:`refit_encoder` can fit the inference network :math:`\phi` alone (a
new or the old encoder) with the generative model :math:`\theta` held fixed. Since

.. math::

    \mathcal L(\theta, \phi; x) = \log p_\theta(x)
        - \mathrm{KL}\big(q_\phi(z \mid x)\,\|\,p_\theta(z \mid x)\big),

ascent in :math:`\phi` alone only shrinks the KL: the model, its likelihood and its samples
stay exactly as they were, and :math:`q_\phi` becomes a better importance-sampling proposal
for that same likelihood (it narrows the *amortization gap*, Cremer, Li & Duvenaud 2018).

A NaN or inf loss stops training at once with a :class:`TrainingError` naming the step;
the checkpoints on disk are those of the last good epoch.

Randomness comes from two generators seeded from ``seed`` (minibatch order on the CPU,
the objective's noise on the model's device) and, for layers that draw from the global
generator (dropout), a forked global state seeded from ``seed`` and saved in ``last.pt``.
So a run is reproducible on the CPU for a fixed seed, resumes exactly, and does not
disturb, or depend on, the global random state after the model is built.

The code follows the loop: :func:`fit` checks the settings (:class:`TrainConfig`,
:func:`schedule`), builds the run (:class:`Run`, the state a checkpoint holds) and the
callbacks the settings ask for, then alternates :func:`train_epoch` (each step in
:func:`take_step`; its forward pass eager or compiled, :mod:`nfcourse.compiled`) and
:func:`end_epoch` (the callbacks validate, keep the best, say why training stops, log and
checkpoint).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from nfcourse.callbacks import (Callback, Checkpoint, EarlyStopping, EpochLog, ParameterAverage,
                                ProgressBar, StepLimit, TimeLimit, Validation, load_checkpoint,
                                save_checkpoint)
from nfcourse.compiled import training_loss
from nfcourse.objectives import Bound, BoundFn, Objective, mean_bound

__all__ = ["fit", "refit_encoder", "evaluate", "as_objective", "TrainConfig", "History",
           "Run", "TrainingError", "load_checkpoint", "save_checkpoint"]


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or inf loss); the message says where and what is kept."""


def _setting(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, once. ``asdict(config)`` is what ``result.json``
    stores, and ``scripts/train_vae.py`` builds its command line from these fields and
    their help strings."""

    epochs: int | None = _setting(None, "passes over the training data (None: 10); none for "
                                        "an objective without data, which counts max_steps")
    batch_size: int = _setting(100, "data points per step")
    lr: float = _setting(1e-3, "the step size (before the first lr milestone)")
    optimizer: str = _setting("adam", "adam, or rmsprop (as R&M's reproductions configure "
                                      "it: lr 1e-5, momentum 0.9)")
    momentum: float = _setting(0.0, "RMSprop's momentum")
    clip_grad: float | None = _setting(None, "scale the gradient down to this total norm "
                                             "when it is larger (before each step)")
    patience: int | None = _setting(None, "early stopping: epochs without a better "
                                          "validation bound")
    ema: float | None = _setting(None, "validate, keep and return a moving average of the "
                                       "parameters with this decay (e.g. 0.999)")
    lr_milestones: tuple[int, ...] = _setting((), "multiply the step size by lr_gamma after "
                                                  "each of these epochs")
    lr_gamma: float = _setting(0.1, "the step size's decay factor at each milestone")
    max_steps: int | None = _setting(None, "stop training after this many steps")
    time_limit: float | None = _setting(None, "stop training after this many seconds (then "
                                              "validate and checkpoint as at an epoch's end)")
    epoch_steps: int = _setting(1000, "steps per 'epoch' of an objective without data")
    seed: int = _setting(0, "seeds the minibatch order and the objective's noise")
    checkpoint_dir: str | None = _setting(None, "where last.pt and best.pt are written")
    snapshot_every: int | None = _setting(None, "keep a copy of last.pt every this many "
                                                "epochs, as snaps/epoch_NNNN.pt in "
                                                "checkpoint_dir")
    resume: bool = _setting(False, "continue from <checkpoint_dir>/last.pt")
    valid_batch_size: int = _setting(1000, "data points per batch in validation")
    loss_every: int = _setting(50, "record the running training loss every this many steps")
    progress: bool = _setting(True, "show a progress bar")
    log: bool = _setting(False, "print one line per epoch")
    compile: bool = _setting(False, "compile the forward pass with torch.compile once "
                                    "annealing is over (nfcourse.compiled)")

    def __post_init__(self):
        object.__setattr__(self, "lr_milestones", tuple(sorted(int(m) for m in
                                                               self.lr_milestones)))
        if any(m < 1 for m in self.lr_milestones) or not 0.0 < self.lr_gamma <= 1.0:
            raise ValueError(f"lr_milestones={list(self.lr_milestones)!r}, lr_gamma="
                             f"{self.lr_gamma!r}: the milestones are epoch numbers >= 1 and "
                             "the decay factor is in (0, 1], e.g. lr_milestones=(300,), "
                             "lr_gamma=0.3")
        if self.ema is not None:
            ParameterAverage(self.ema)         # raises on a bad decay
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not one of {sorted(OPTIMIZERS)}")
        if self.momentum and self.optimizer != "rmsprop":
            raise ValueError(f"momentum={self.momentum!r} is RMSprop's; Adam has its own "
                             "(betas): pass optimizer='rmsprop' or momentum=0")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ValueError(f"clip_grad={self.clip_grad!r}: the largest gradient norm is a "
                             "positive number (e.g. 100), or None for no clipping")
        if self.snapshot_every is not None and not self.snapshot_every >= 1:
            raise ValueError(f"snapshot_every={self.snapshot_every!r} (--snapshot-every): a "
                             "copy of last.pt every n >= 1 epochs, e.g. 50, or None for none")
        if self.snapshot_every is not None and self.checkpoint_dir is None:
            raise ValueError(f"snapshot_every={self.snapshot_every!r} (--snapshot-every) keeps "
                             "copies of last.pt, so it needs checkpoint_dir (--checkpoint-dir), "
                             "e.g. checkpoint_dir='runs/a'")
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", str(self.checkpoint_dir))

    def lr_at(self, epoch: int) -> float:
        """The step size in epoch ``epoch`` (counted from 0): decayed after each milestone."""
        return self.lr * self.lr_gamma ** sum(m <= epoch for m in self.lr_milestones)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def add_arguments(cls, parser, defaults: dict | None = None, skip: Sequence[str] = ()) -> None:
        """One command-line option per setting (``--batch-size`` for ``batch_size``), with
        its type and help string, and the default of ``defaults`` or of the field; settings
        in ``skip`` get none."""
        defaults = defaults or {}
        for f in fields(cls):
            if f.name in skip:
                continue
            default = defaults.get(f.name, f.default)
            flag, kind = "--" + f.name.replace("_", "-"), _ARG_TYPES[f.type]
            if kind is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                    default=default, help=f.metadata["help"])
            else:
                parser.add_argument(flag, type=kind, default=default,
                                    nargs="+" if f.type.startswith("tuple") else None,
                                    help=f"{f.metadata['help']} (default: {default})")

    @classmethod
    def from_args(cls, args, **overrides) -> TrainConfig:
        """The settings parsed by :meth:`add_arguments` (``args``, an ``argparse.Namespace``),
        with ``overrides`` for those the command line does not set."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**given, **overrides})


#: the Python type a command-line option parses, by a field's annotation
_ARG_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float,
              "bool": bool, "str": str, "str | None": str, "tuple[int, ...]": int}


def _adam(params, config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    # fused: one kernel per step for all parameters (3x faster than the loop over them
    # on the CPU, the same update to rounding); where there is none, Adam's default
    return torch.optim.Adam(params, lr=config.lr, fused=fused or None)


def _rmsprop(params, config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum)


#: the optimizers by name: ``(parameters, config, fused available) -> optimizer``
OPTIMIZERS = {"adam": _adam, "rmsprop": _rmsprop}


@dataclass
class History:
    """What a run did, one entry per epoch (and the training loss every few steps)."""

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)   # mean loss over the epoch
    valid_bound: list[float] = field(default_factory=list)  # mean bound, β = 1
    beta: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)      # wall time, cumulative
    loss_steps: list[int] = field(default_factory=list)     # the running loss, every few steps
    loss_values: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_valid: float = -math.inf
    stopped: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def as_objective(objective: str | BoundFn | Objective) -> Objective:
    """``objective`` as an :class:`~nfcourse.objectives.Objective`: a VAE bound by name
    (``"elbo"``, ``"iwae"``, ``"reconstruction"``) or a function ``(model, x, beta,
    generator) -> [B]`` becomes a :class:`~nfcourse.objectives.Bound` (one draw, β = 1;
    build the Bound yourself for ``k`` draws or annealing)."""
    return objective if isinstance(objective, Objective) else Bound(objective)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def evaluate(model, data: Tensor | None, objective: str | BoundFn | Objective = "elbo",
             k: int = 1, batch_size: int = 1000, seed: int = 0) -> float:
    """The mean bound (β = 1) over ``data``, with noise from a generator seeded by ``seed``
    (so two calls on the same model agree). Puts the model back in its previous mode.
    ``k`` draws for a bound given by name; ``data=None`` for an objective without data."""
    if not isinstance(objective, Objective):
        objective = Bound(objective, k)
    elif k != 1:
        raise ValueError(f"k={k!r} sets the draws of a bound given by name; this "
                         f"{type(objective).__name__} carries its own")
    return mean_bound(model, data, objective, batch_size, seed)


# The state of a run ---------------------------------------------------------------------

class Run:
    """The state of a run: what ``last.pt`` holds, where the loop is, and what callbacks
    share (``averaged``: θ̄; ``improved``: this epoch's bound is the best; ``cut``: end the
    epoch after this step; ``best_state``: the parameters to return)."""

    def __init__(self, model: nn.Module, objective: Objective, config: TrainConfig,
                 steps_per_epoch: int, epochs: int):
        self.model, self.objective, self.config = model, objective, config
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        device = self.device
        self.optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config,
                                                      device.type in ("cpu", "cuda"))
        self.shuffle_gen = torch.Generator().manual_seed(config.seed)    # minibatch order
        self.noise_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
        self.history = History()
        self.epoch = self.step = self.bad_epochs = self.taken = 0
        self.averaged: nn.Module | None = None
        self.best_state: dict | None = None
        self.improved = self.cut = self.finished = False
        self.restored: dict | None = None
        self.resumed_from, self.resumed_after = None, 0
        self.elapsed0, self.started = 0.0, time.perf_counter()
        self.callbacks: list[Callback] = []

    @property
    def device(self) -> torch.device:
        return _device(self.model)

    @property
    def validated(self) -> nn.Module:
        return self.averaged if self.averaged is not None else self.model

    @property
    def total_steps(self) -> int:
        total = self.epochs * self.steps_per_epoch
        max_steps = self.config.max_steps
        return total if max_steps is None else min(total, max_steps)

    def seconds(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.started

    def state(self) -> dict:
        device = self.device
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "step": self.step, "bad_epochs": self.bad_epochs,
            "history": self.history.as_dict(),
            "averaged": None if self.averaged is None else self.averaged.state_dict(),
            "rng": {"shuffle": self.shuffle_gen.get_state(), "noise": self.noise_gen.get_state(),
                    "global": torch.get_rng_state(),
                    **({"global_cuda": torch.cuda.get_rng_state(device)}
                       if device.type == "cuda" else {})},
        }

    def restore(self, state: dict, path) -> None:
        """Continue from a ``last.pt`` ``state`` (read from ``path``)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        self.shuffle_gen.set_state(rng["shuffle"].cpu())
        self.noise_gen.set_state(rng["noise"].to(self.noise_gen.get_state().device))
        if "global" in rng:
            torch.set_rng_state(rng["global"].cpu())
            if self.device.type == "cuda" and "global_cuda" in rng:  # else begun on a CPU
                torch.cuda.set_rng_state(rng["global_cuda"].cpu(), self.device)
        self.history = History(**state["history"])
        self.epoch, self.step = state["epoch"] + 1, state["step"]
        self.bad_epochs = state["bad_epochs"]
        self.restored, self.resumed_from, self.resumed_after = state, path, self.epoch
        self.elapsed0 = self.history.seconds[-1] if self.history.seconds else 0.0
        if self.history.stopped.startswith("early stopping"):
            self.epoch = self.epochs  # that run had converged; nothing left to do
        else:
            self.history.stopped = ""  # a time or step limit, or more epochs asked for: go on


def schedule(objective: Objective, train_data: Tensor | None, valid_data: Tensor | None,
             config: TrainConfig) -> tuple[int, int]:
    """``(steps_per_epoch, epochs)`` for these data and settings, or a clear error."""
    if config.patience is not None and valid_data is None:
        raise ValueError(f"patience={config.patience!r} stops on the validation bound, and "
                         "valid_data is None: pass validation data, or a fixed number of "
                         "epochs and patience=None")
    if objective.needs_data:
        if train_data is None:
            raise ValueError(f"a {type(objective).__name__} objective trains on data: pass "
                             "train_data")
        epochs = 10 if config.epochs is None else config.epochs
        return math.ceil(train_data.shape[0] / config.batch_size), epochs
    if train_data is not None or config.epochs is not None or config.max_steps is None:
        raise ValueError(f"a {type(objective).__name__} objective has no data set: give no "
                         "train_data and no epochs, and the number of steps, e.g. "
                         "max_steps=10_000 (the loop validates and checkpoints every "
                         "epoch_steps steps)")
    return config.epoch_steps, math.ceil(config.max_steps / config.epoch_steps)


def standard_callbacks(config: TrainConfig, valid_data: Tensor | None) -> list[Callback]:
    """The callbacks the settings ask for, in the order the loop calls them."""
    callbacks: list[Callback] = []
    if config.checkpoint_dir is not None:     # first: the others start from the restored run
        callbacks.append(Checkpoint(config.checkpoint_dir, config.resume,
                                    config.snapshot_every))
    if config.ema is not None:
        callbacks.append(ParameterAverage(config.ema))
    callbacks.append(Validation(valid_data, config.valid_batch_size))
    if config.patience is not None:
        callbacks.append(EarlyStopping(config.patience))
    if config.max_steps is not None:
        callbacks.append(StepLimit(config.max_steps))
    if config.time_limit is not None:
        callbacks.append(TimeLimit(config.time_limit))
    if config.progress:
        callbacks.append(ProgressBar())
    if config.log:
        callbacks.append(EpochLog())
    return callbacks


# The loop -------------------------------------------------------------------------------

def fit(model, objective: str | BoundFn | Objective = "elbo", train_data: Tensor | None = None,
        valid_data: Tensor | None = None, config: TrainConfig | None = None,
        callbacks: Sequence[Callback] = ()) -> History:
    """Train ``model`` on ``objective`` (an :class:`~nfcourse.objectives.Objective`,
    or a VAE bound by name or function, see :func:`as_objective`) over ``train_data``
    (``[N, ...]``, any device: batches move to the model's device; none for an objective
    without data), validating on ``valid_data``, with the settings of ``config``
    (:class:`TrainConfig`) and extra ``callbacks`` after the standard ones. Returns the
    :class:`History`; the model ends with the best validated parameters (the last ones
    without validation data).

    Training runs on a fork of the global generator seeded from ``config.seed``: dropout
    draws from it, and training neither disturbs nor depends on the caller's random state.
    """
    config = TrainConfig() if config is None else config
    objective = as_objective(objective)
    run = Run(model, objective, config, *schedule(objective, train_data, valid_data, config))
    run.callbacks = standard_callbacks(config, valid_data) + list(callbacks)
    device = run.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed + 3)
        loss_fn = training_loss(model, objective, compile=config.compile)
        model.train()
        try:
            for callback in run.callbacks:
                callback.on_start(run)
            for callback in run.callbacks if run.restored is not None else ():
                callback.load_state(run, run.restored)
            run.started = time.perf_counter()      # the clock of this call's training
            for run.epoch in range(run.epoch, run.epochs):
                train_epoch(run, train_data, loss_fn)
                end_epoch(run)
                if run.history.stopped:
                    break
            run.finished = True
        finally:
            for callback in run.callbacks:
                callback.on_end(run)
    return run.history


def batches(run: Run, data: Tensor | None) -> Iterator[Tensor | None]:
    """One epoch's minibatches in a fresh random order (without data: ``None`` each step)."""
    if data is None:
        yield from [None] * run.steps_per_epoch
        return
    size = run.config.batch_size
    perm = torch.randperm(data.shape[0], generator=run.shuffle_gen)
    for b in range(run.steps_per_epoch):
        yield data[perm[b * size:(b + 1) * size]]


def train_epoch(run: Run, data: Tensor | None, loss_fn) -> None:
    """The steps of one epoch, up to a step or time limit (``run.taken`` counts them)."""
    config, h = run.config, run.history
    for group in run.optimizer.param_groups:
        group["lr"] = config.lr_at(run.epoch)
    epoch_loss, items, running = 0.0, 0, []
    run.taken, run.cut = 0, False
    for batch in batches(run, data):
        value, n = take_step(run, batch, loss_fn)
        run.taken += 1
        epoch_loss += value * n
        items += n
        running.append(value)
        if run.step % config.loss_every == 0:
            window = running[-config.loss_every:]
            h.loss_steps.append(run.step)
            h.loss_values.append(sum(window) / len(window))
        for callback in run.callbacks:
            callback.on_step(run, value)
        if run.cut:
            break
    h.train_loss.append(epoch_loss / items)  # over the batches seen


def take_step(run: Run, batch: Tensor | None, loss_fn) -> tuple[float, int]:
    """One optimizer step on the mean loss of ``batch``; returns (that mean, items in it). A NaN
    or inf loss stops training before the step is taken."""
    if batch is not None:
        batch = batch.to(run.device)
    loss, n = loss_fn(batch, run.step, run.noise_gen)
    value = loss.item()
    if not math.isfinite(value):
        h, last = run.history, (None if run.config.checkpoint_dir is None else
                                f"{run.config.checkpoint_dir}/last.pt")
        where = (f"the last good checkpoint, {last}, is from the end of epoch {h.epoch[-1]}"
                 if last is not None and h.epoch else
                 "no checkpoint was written yet (pass checkpoint_dir)")
        raise TrainingError(
            f"the loss became {value} at step {run.step} (epoch {run.epoch + 1}, batch "
            f"{run.taken + 1} of {run.steps_per_epoch}); training stopped and {where}. Try a "
            "lower learning rate, check the data, or resume from the checkpoint.")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.clip_grad is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip_grad)
    run.optimizer.step()
    run.step += 1
    return value, n


def end_epoch(run: Run) -> None:
    """Record the epoch; the callbacks validate, keep the best and may say why training
    stops (the first reason in their order: patience, steps, time); then the last epoch;
    then checkpoints (``after_epoch``)."""
    h = run.history
    h.epoch.append(run.epoch + 1)
    h.step.append(run.step)
    h.beta.append(run.objective.temperature(run.step))
    reasons = [callback.on_epoch_end(run) for callback in run.callbacks]
    h.seconds.append(run.seconds())                  # validation included
    if run.epoch + 1 == run.epochs:
        reasons.append(f"all {run.epochs} epochs done")
    h.stopped = next((reason for reason in reasons if reason), "")
    for callback in run.callbacks:
        callback.after_epoch(run)


# After training ---------------------------------------------------------------------------

def refit_encoder(model, train_data: Tensor, valid_data: Tensor | None = None,
                  encoder: nn.Module | None = None, config: TrainConfig | None = None,
                  callbacks: Sequence[Callback] = ()) -> History:
    """Fit ``model``'s encoder (and any parameters of its posterior family) on the ELBO at
    β = 1 with :func:`fit`, every other parameter frozen; see the module docstring for why
    this leaves the model's likelihood unchanged. ``encoder``: a new module to fit in place
    of the old one (e.g. a larger MLP, :class:`nfcourse.flows.MLP`); it must output the
    posterior's ``param_dim(z_dim)`` numbers. The ``requires_grad`` flags are restored
    afterwards."""
    device = _device(model)
    if encoder is not None:
        encoder = encoder.to(device)
        want = model.posterior.param_dim(model.z_dim)
        with torch.no_grad():
            got = encoder(model.prepare(train_data[:1].to(device))).shape[-1]
        if got != want:
            raise ValueError(f"the new encoder outputs {got} numbers per image; the posterior "
                             f"needs posterior.param_dim(z_dim) = {want}: make its last "
                             f"layer Linear(..., {want})")
        model.encoder = encoder
    inference = {id(p) for part in (model.encoder, model.posterior) for p in part.parameters()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(id(p) in inference)
    try:
        return fit(model, "elbo", train_data, valid_data, config, callbacks)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
