r"""One training loop for every model the course trains: minibatch stochastic gradient
descent with Adam, with validation, early stopping, a parameter average, a step-size
schedule, checkpoints and exact resume.

What is trained is said by an objective (:class:`nfcourse.objectives.Objective`), so the
same loop fits

- a VAE on a bound: the ELBO or the IWAE bound (:class:`nfcourse.objectives.Bound`);
- a density flow on data by maximum likelihood (:class:`nfcourse.objectives.density.MaximumLikelihood`);
- a flow on an unnormalised energy U(z) by the free energy
  (:class:`nfcourse.objectives.free_energy.FreeEnergy`). There is no data set: the loop counts steps
  (``max_steps``), and what it does at the end of an epoch it does every ``epoch_steps``.

Each step t takes a minibatch :math:`\mathcal B` (or, without data, none) and an Adam step on

.. math::

    \text{loss}_t = \frac{1}{|\mathcal B|} \sum_{i \in \mathcal B} \ell_t(i),

the mean of the objective's loss per item at step t; an objective that anneals (R&M's
:math:`\beta_t = \min(1, 0.01 + t/10000)`) computes its own :math:`\beta_t` from t. After
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

The code follows the loop: :func:`fit` reads its settings (:class:`_Settings`), starts or
restores a run (:class:`_Run`, the state a checkpoint holds), then alternates
:func:`_train_epoch` (each step in :func:`_step`) and :func:`_end_epoch` (validate, keep
the best, say why it stops, checkpoint).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from nfcourse.objectives import Bound, BoundFn, Objective
from nfcourse.utils import progress as _progress

__all__ = ["fit", "refit_encoder", "evaluate", "as_objective", "History", "TrainingError",
           "load_checkpoint", "save_checkpoint"]


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or inf loss); the message says where and what is kept."""


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


def as_objective(objective: str | BoundFn | Objective, k: int = 1,
                 anneal: bool | int = False) -> Objective:
    """``objective`` as an :class:`~nfcourse.objectives.Objective`: a name or a bound
    function becomes a VAE :class:`~nfcourse.objectives.Bound` with ``k`` and ``anneal``;
    an objective is returned as it is (it carries its own settings)."""
    if isinstance(objective, Objective):
        if k != 1 or anneal:
            raise ValueError(f"k={k!r}, anneal={anneal!r}: these set a VAE bound given by "
                             f"name; a {type(objective).__name__} carries its own settings")
        return objective
    return Bound(objective, k, anneal)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _device_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def evaluate(model, data: Tensor | None, objective: str | BoundFn | Objective = "elbo",
             k: int = 1, batch_size: int = 1000, seed: int = 0) -> float:
    """The mean bound (β = 1) over ``data``, with noise from a generator seeded by ``seed``
    (so two calls on the same model agree). Puts the model back in its previous mode.
    ``data=None`` for an objective without data (one batch of its own draws)."""
    objective = as_objective(objective, k)
    device = _device(model)
    gen = _device_generator(device, seed)
    was_training = model.training
    model.eval()
    try:
        if data is None:
            return objective.bound(model, None, gen).mean().item()
        total = 0.0
        for start in range(0, data.shape[0], batch_size):
            xb = data[start:start + batch_size].to(device)
            total += objective.bound(model, xb, gen).sum().item()
    finally:
        model.train(was_training)
    return total / data.shape[0]


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """A checkpoint written by :func:`fit`, loaded with ``weights_only=True``."""
    return torch.load(path, map_location=map_location, weights_only=True)


# Settings and state ---------------------------------------------------------------------

@dataclass
class _Settings:
    """What :func:`fit` was asked to do, checked once."""

    objective: Objective
    epochs: int
    steps_per_epoch: int
    batch_size: int
    lr: float
    milestones: list[int]
    lr_gamma: float
    patience: int | None
    ema: float | None
    max_steps: int | None
    time_limit: float | None
    seed: int
    checkpoint_dir: Path | None
    valid_batch_size: int
    loss_every: int
    log: Callable[[str], None] | None
    cuda_graph: bool = False

    @property
    def total_steps(self) -> int:
        total = self.epochs * self.steps_per_epoch
        return total if self.max_steps is None else min(total, self.max_steps)

    def lr_at(self, epoch: int) -> float:
        """The step size in epoch ``epoch`` (counted from 0): decayed after each milestone."""
        return self.lr * self.lr_gamma ** sum(m <= epoch for m in self.milestones)

    def path(self, name: str) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / name


def _settings(objective: Objective, train_data: Tensor | None, valid_data: Tensor | None,
              epochs: int | None, epoch_steps: int, batch_size: int, ema: float | None,
              lr_milestones, lr_gamma: float, patience: int | None, max_steps: int | None,
              checkpoint_dir, **rest) -> _Settings:
    if ema is not None and not 0.0 <= ema < 1.0:
        raise ValueError(f"ema={ema!r}: the decay of the parameter average must be in [0, 1), "
                         "e.g. 0.999; pass None for no averaging")
    milestones = sorted(int(m) for m in lr_milestones)
    if rest.get("cuda_graph") and milestones:
        raise ValueError("cuda_graph=True bakes the step size into the captured step: train "
                         "without lr_milestones, or with cuda_graph=False")
    if any(m < 1 for m in milestones) or not 0.0 < lr_gamma <= 1.0:
        raise ValueError(f"lr_milestones={list(lr_milestones)!r}, lr_gamma={lr_gamma!r}: the "
                         "milestones are epoch numbers >= 1 and the decay factor is in (0, 1], "
                         "e.g. lr_milestones=[300], lr_gamma=0.3")
    if patience is not None and valid_data is None:
        raise ValueError(f"patience={patience!r} stops on the validation bound, and valid_data "
                         "is None: pass validation data, or a fixed number of epochs and "
                         "patience=None")
    if objective.needs_data:
        if train_data is None:
            raise ValueError(f"a {type(objective).__name__} objective trains on data: pass "
                             "train_data")
        epochs = 10 if epochs is None else epochs
        steps_per_epoch = math.ceil(train_data.shape[0] / batch_size)
    else:
        if train_data is not None or epochs is not None or max_steps is None:
            raise ValueError(f"a {type(objective).__name__} objective has no data set: give "
                             "no train_data and no epochs, and the number of steps, e.g. "
                             "max_steps=10_000 (the loop validates and checkpoints every "
                             "epoch_steps steps)")
        steps_per_epoch = epoch_steps
        epochs = math.ceil(max_steps / epoch_steps)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
    return _Settings(objective, epochs, steps_per_epoch, batch_size, milestones=milestones,
                     lr_gamma=lr_gamma, patience=patience, ema=ema, max_steps=max_steps,
                     checkpoint_dir=ckpt, **rest)


@dataclass
class _Run:
    """The state of a run: what ``last.pt`` holds, and where the loop is."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle_gen: torch.Generator   # minibatch order, on the CPU
    noise_gen: torch.Generator     # the objective's noise, on the model's device
    averaged: nn.Module | None = None  # θ̄, a frozen copy of the model
    history: History = field(default_factory=History)
    epoch: int = 0                 # the epoch under way, counted from 0
    step: int = 0
    bad_epochs: int = 0
    best_state: dict | None = None
    elapsed0: float = 0.0          # seconds of training before this call (resume)
    started: float = field(default_factory=time.perf_counter)
    graph: _Graph | None = None    # the captured step (cuda_graph=True)

    @property
    def device(self) -> torch.device:
        return _device(self.model)

    @property
    def validated(self) -> nn.Module:
        return self.averaged if self.averaged is not None else self.model

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


def _start(model: nn.Module, s: _Settings, resume: bool) -> _Run:
    """A new run, or the one in ``last.pt`` when ``resume`` and it exists."""
    device = _device(model)
    if s.cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True replays the training step on a CUDA device, and the "
                         f"model is on {device}: move it there (model.to('cuda')), or pass "
                         "cuda_graph=False")
    # fused: one kernel per step for all parameters (3x faster than the loop over them on
    # the CPU, the same update to rounding); where there is none, Adam's default
    fused = device.type in ("cpu", "cuda")
    run = _Run(model, torch.optim.Adam(model.parameters(), lr=s.lr, fused=fused or None,
                                       capturable=s.cuda_graph),
               torch.Generator().manual_seed(s.seed), _device_generator(device, s.seed + 1))
    last = s.path("last.pt")
    state = None
    if resume and last is not None and last.exists():
        state = load_checkpoint(last, map_location=device)
        _restore(run, s, state)
    if s.ema is not None:
        run.averaged = copy.deepcopy(model).requires_grad_(False)
        if state is not None and state.get("averaged") is not None:
            run.averaged.load_state_dict(state["averaged"])
    run.elapsed0 = run.history.seconds[-1] if run.history.seconds else 0.0
    run.started = time.perf_counter()
    return run


def _restore(run: _Run, s: _Settings, state: dict) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    run.shuffle_gen.set_state(rng["shuffle"].cpu())
    run.noise_gen.set_state(rng["noise"].to(run.noise_gen.get_state().device))
    if "global" in rng:
        torch.set_rng_state(rng["global"].cpu())
        if run.device.type == "cuda" and "global_cuda" in rng:  # else begun on a CPU
            torch.cuda.set_rng_state(rng["global_cuda"].cpu(), run.device)
    run.history = History(**state["history"])
    run.epoch, run.step, run.bad_epochs = state["epoch"] + 1, state["step"], state["bad_epochs"]
    best = s.path("best.pt")
    if best.exists():
        run.best_state = load_checkpoint(best, map_location=run.device)["model"]
    if s.log:
        s.log(f"resumed from {s.path('last.pt')} after epoch {run.epoch} (step {run.step})")
    if run.history.stopped.startswith("early stopping"):
        run.epoch = s.epochs  # that run had converged; nothing left to do
    else:
        run.history.stopped = ""  # a time or step limit, or more epochs asked for: go on


# The loop -------------------------------------------------------------------------------

def _forked_global_rng(fit_fn):
    """Run ``fit_fn`` on a fork of the global generator, seeded from ``seed``: dropout draws
    from it, and training must neither disturb nor depend on the caller's random state."""
    @functools.wraps(fit_fn)
    def wrapper(model, *args, seed: int = 0, **kwargs):
        device = _device(model)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + 3)
            return fit_fn(model, *args, seed=seed, **kwargs)
    return wrapper


@_forked_global_rng
def fit(model, train_data: Tensor | None = None, valid_data: Tensor | None = None, *,
        epochs: int | None = None, batch_size: int = 100, lr: float = 1e-3,
        objective: str | BoundFn | Objective = "elbo", k: int = 1, anneal: bool | int = False,
        patience: int | None = None, ema: float | None = None,
        lr_milestones: tuple[int, ...] | list[int] = (), lr_gamma: float = 0.1,
        checkpoint_dir: str | os.PathLike | None = None, resume: bool = False, seed: int = 0,
        max_steps: int | None = None, time_limit: float | None = None,
        epoch_steps: int = 1000, valid_batch_size: int = 1000, loss_every: int = 50,
        progress: bool = True, log: Callable[[str], None] | None = None,
        cuda_graph: bool = False) -> History:
    """Train ``model`` with Adam on ``objective``; return the :class:`History`.

    - ``objective``: an :class:`~nfcourse.objectives.Objective`, or for a VAE a bound by
      name, ``"elbo"`` / ``"iwae"`` (``k`` samples) / ``"reconstruction"``, or a function
      ``(model, x, beta, generator) -> bound [B]``, with ``anneal`` (``True`` for R&M's
      β_t = min(1, 0.01 + t/10000), an int for another number of warm-up steps).
    - ``train_data`` (``[N, ...]``, any device: batches move to the model's device) for
      ``epochs`` epochs (default 10); an objective without data (``FreeEnergy``) takes
      none, and ``max_steps`` steps with an "epoch" every ``epoch_steps`` steps.
    - ``patience``: stop after this many epochs without a better validation bound, and
      restore the best parameters (kept also when ``patience`` is None). Without
      ``valid_data`` nothing is selected: the last epoch's parameters are kept (an annealed
      training loss is no bound to compare epochs by), and ``patience`` is refused.
    - ``ema``: the decay ρ of the parameter average :math:`\\bar\\theta` (e.g. 0.999: a
      window of about 1000 steps); validation, ``best.pt`` and the returned model use it.
    - ``lr_milestones`` / ``lr_gamma``: multiply the step size by ``lr_gamma`` after each
      of these epochs (see the module docstring); ``lr`` is the step size before the
      first. The schedule is applied on resume too, whatever step size the checkpoint had.
    - ``checkpoint_dir`` / ``resume``: see the module docstring. ``resume=True`` without a
      ``last.pt`` starts afresh.
    - ``max_steps`` / ``time_limit`` (seconds): stop after the step that reaches the limit,
      then validate and checkpoint as at an epoch's end (the cut epoch counts as done, so
      only a resume after an interruption at an epoch's end repeats a run exactly).
    - ``log``: called with a one-line summary after each epoch (e.g. ``print``).
    - ``cuda_graph``: replay the step from a CUDA graph after annealing (:func:`_capture`).
    """
    s = _settings(as_objective(objective, k, anneal), train_data, valid_data, epochs,
                  epoch_steps, batch_size, ema, lr_milestones, lr_gamma, patience, max_steps,
                  checkpoint_dir, lr=lr, time_limit=time_limit, seed=seed,
                  valid_batch_size=valid_batch_size, loss_every=loss_every, log=log,
                  cuda_graph=cuda_graph)
    run = _start(model, s, resume)
    bar = _progress(None, desc="training", total=s.total_steps,
                    initial=min(run.step, s.total_steps)) if progress else None
    model.train()
    try:
        for run.epoch in range(run.epoch, s.epochs):
            batches = _train_epoch(run, s, train_data, bar)
            _end_epoch(run, s, valid_data, batches)
            if run.history.stopped:
                break
        if bar is not None:        # a planned stop (limit, patience) is a finished bar
            bar.total = bar.n
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    return run.history


def _batches(run: _Run, s: _Settings, data: Tensor | None) -> Iterator[Tensor | None]:
    """One epoch's minibatches in a fresh random order (without data: ``None`` each step)."""
    if data is None:
        yield from [None] * s.steps_per_epoch
        return
    perm = torch.randperm(data.shape[0], generator=run.shuffle_gen)
    for b in range(s.steps_per_epoch):
        yield data[perm[b * s.batch_size:(b + 1) * s.batch_size]]


def _limit_reached(run: _Run, s: _Settings) -> bool:
    return ((s.max_steps is not None and run.step >= s.max_steps)
            or (s.time_limit is not None and time.perf_counter() - run.started >= s.time_limit))


def _train_epoch(run: _Run, s: _Settings, data: Tensor | None, bar) -> int:
    """The steps of one epoch, up to a step or time limit; returns how many were taken."""
    for group in run.optimizer.param_groups:
        group["lr"] = s.lr_at(run.epoch)
    epoch_loss, items, running = 0.0, 0, []
    taken = 0
    for batch in _batches(run, s, data):
        value, n = _step(run, s, batch, taken)
        taken += 1
        epoch_loss += value * n
        items += n
        running.append(value)
        if run.step % s.loss_every == 0:
            window = running[-s.loss_every:]
            run.history.loss_steps.append(run.step)
            run.history.loss_values.append(sum(window) / len(window))
        if bar is not None:
            _show_progress(bar, run, s, value)
        if _limit_reached(run, s):
            break
    run.history.train_loss.append(epoch_loss / items)  # over the batches seen
    return taken


def _show_progress(bar, run: _Run, s: _Settings, loss: float) -> None:
    """One step on the bar; every 10 steps the loss, β and, under a time limit, a total that
    the limit will let training reach (so that the bar's time estimate is honest)."""
    bar.update(1)
    if bar.disable or run.step % 10:      # a disabled tqdm has no counters (NFCOURSE_PROGRESS=0)
        return
    bar.set_postfix(loss=f"{loss:.2f}", beta=f"{s.objective.temperature(run.step - 1):.2f}",
                    refresh=False)
    elapsed = time.perf_counter() - run.started
    done = bar.n - bar.initial
    if s.time_limit is not None and done and elapsed > 0:
        reachable = bar.n + int(done / elapsed * max(s.time_limit - elapsed, 0.0))
        bar.total = max(bar.n, min(s.total_steps, reachable))


def _step(run: _Run, s: _Settings, batch: Tensor | None, b: int) -> tuple[float, int]:
    """One Adam step on the mean loss of ``batch``; returns (that mean, items in it)."""
    if batch is not None:
        batch = batch.to(run.device)
    graphed = _graph_for(run, s, batch)
    if graphed is not None:          # forward, backward and Adam in one replay
        if batch is not None:
            graphed.x.copy_(batch)
        graphed.graph.replay()
        loss, n = graphed.loss, graphed.n
    else:
        losses = s.objective.loss(run.model, batch, run.step, run.noise_gen)
        loss, n = losses.mean(), losses.shape[0]
    value = loss.item()
    if not math.isfinite(value):
        last, h = s.path("last.pt"), run.history
        where = (f"the last good checkpoint, {last}, is from the end of epoch {h.epoch[-1]}"
                 if last is not None and h.epoch else
                 "no checkpoint was written yet (pass checkpoint_dir)")
        raise TrainingError(
            f"the loss became {value} at step {run.step} (epoch {run.epoch + 1}, batch "
            f"{b + 1} of {s.steps_per_epoch}); training stopped and {where}. Try a lower "
            "learning rate, check the data, or resume from the checkpoint.")
    if graphed is None:
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
    if run.averaged is not None:
        _average(run.averaged, run.model, min(s.ema, (1 + run.step) / (10 + run.step)))
    run.step += 1
    return value, n


@dataclass
class _Graph:
    """The training step captured in a CUDA graph: its static input, its mean loss, and
    the number of items a step averages over."""

    graph: torch.cuda.CUDAGraph
    x: Tensor | None
    loss: Tensor
    n: int


def _graph_for(run: _Run, s: _Settings, batch: Tensor | None) -> _Graph | None:
    """The captured step, when this step may replay it: ``cuda_graph`` on, annealing over
    (β is baked into the graph), a full batch (so is its shape), Adam's state made (by an
    eager step first). Captured on first use."""
    if (not s.cuda_graph or run.step < s.objective.warmup or not run.optimizer.state
            or (batch is not None and batch.shape[0] != s.batch_size)):
        return None
    if run.graph is None:
        run.graph = _capture(run, s, batch)
    return run.graph


def _capture(run: _Run, s: _Settings, batch: Tensor | None) -> _Graph:
    """Capture forward, backward and Adam once, for ``fit(cuda_graph=True)``: one launch a
    step instead of one per kernel. Capture needs a few warm-up steps on a side stream; the
    parameters, Adam's state and the generators are put back after them, so the run goes on
    as if they had not been taken. Partial batches and annealed steps run eagerly. A NaN
    loss is seen after its replayed step, so the model in memory has taken it: resume from
    ``last.pt``. The step size is baked in too, so not with ``lr_milestones``.

    Not yet run on a GPU (2026-12-04): it follows the capture that ``benchmarks/nfvi.py
    --cuda-graph`` ran on an H200, and ``tests/test_train.py`` checks it against eager
    training, step by step and on resume, under ``pytest --device cuda``."""
    tensors = list(run.model.parameters()) + [
        v for state in run.optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    saved = [t.detach().clone() for t in tensors]
    noise, global_cuda = run.noise_gen.get_state(), torch.cuda.get_rng_state(run.device)
    x = None if batch is None else batch.clone()
    side = torch.cuda.Stream(run.device)
    side.wait_stream(torch.cuda.current_stream(run.device))
    with torch.cuda.stream(side):
        for _ in range(3):
            run.optimizer.zero_grad(set_to_none=True)
            s.objective.loss(run.model, x, run.step, run.noise_gen).mean().backward()
            run.optimizer.step()
    torch.cuda.current_stream(run.device).wait_stream(side)
    with torch.no_grad():
        for t, v in zip(tensors, saved):
            t.copy_(v)
    run.noise_gen.set_state(noise)
    torch.cuda.set_rng_state(global_cuda, run.device)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(run.noise_gen)
    run.optimizer.zero_grad(set_to_none=True)   # the captured backward writes fresh gradients
    with torch.cuda.graph(graph):
        losses = s.objective.loss(run.model, x, run.step, run.noise_gen)
        loss = losses.mean()
        loss.backward()
        run.optimizer.step()
    return _Graph(graph, x, loss, losses.shape[0])


@torch.no_grad()
def _average(averaged: nn.Module, model: nn.Module, rho: float) -> None:
    """θ̄ ← ρ θ̄ + (1 − ρ) θ for the parameters; buffers are copied as they are."""
    for p_bar, p in zip(averaged.parameters(), model.parameters()):
        p_bar.lerp_(p, 1.0 - rho)
    for b_bar, b in zip(averaged.buffers(), model.buffers()):
        b_bar.copy_(b)


def _end_epoch(run: _Run, s: _Settings, valid_data: Tensor | None, taken: int) -> None:
    """Validate, keep the best, say why training stops (if it does), log, checkpoint."""
    h = run.history
    h.epoch.append(run.epoch + 1)
    h.step.append(run.step)
    h.beta.append(s.objective.temperature(run.step))
    if valid_data is not None:
        valid = evaluate(run.validated, valid_data, s.objective,
                         batch_size=s.valid_batch_size, seed=s.seed + 2)
        improved = valid > h.best_valid
    else:
        # nothing to select on (an annealed training loss is no bound): keep the last
        valid, improved = math.nan, True
    h.valid_bound.append(valid)
    h.seconds.append(run.seconds())
    if improved:
        h.best_valid, h.best_epoch, run.bad_epochs = valid, run.epoch + 1, 0
        run.best_state = copy.deepcopy(run.validated.state_dict())
        if s.checkpoint_dir is not None:
            save_checkpoint(s.path("best.pt"), {"model": run.best_state,
                                                "epoch": run.epoch + 1, "valid_bound": valid})
    else:
        run.bad_epochs += 1
    h.stopped = _stop_reason(run, s, taken)
    if s.log:
        s.log(f"epoch {run.epoch + 1:4d}  step {run.step:7d}  train loss {h.train_loss[-1]:8.3f}"
              f"  valid bound {valid:9.3f}  beta {h.beta[-1]:.2f}  lr {s.lr_at(run.epoch):.1e}"
              f"  {h.seconds[-1]:7.0f} s")
    if s.checkpoint_dir is not None:
        save_checkpoint(s.path("last.pt"), run.state())


def _stop_reason(run: _Run, s: _Settings, taken: int) -> str:
    """Why training stops after this epoch, or "" to go on."""
    h = run.history
    if s.patience is not None and run.bad_epochs >= s.patience:
        return (f"early stopping: no better validation bound for {s.patience} epochs (best "
                f"{h.best_valid:.3f} at epoch {h.best_epoch})")
    if s.max_steps is not None and run.step >= s.max_steps:
        return f"max_steps={s.max_steps} reached"
    if s.time_limit is not None and h.seconds[-1] - run.elapsed0 >= s.time_limit:
        cut = ("" if taken == s.steps_per_epoch else
               f", {taken} of {s.steps_per_epoch} batches into epoch {run.epoch + 1}")
        return f"time limit of {s.time_limit:.0f} s reached at step {run.step}{cut}"
    if run.epoch + 1 == s.epochs:
        return f"all {s.epochs} epochs done"
    return ""


# After training ---------------------------------------------------------------------------

def refit_encoder(model, train_data: Tensor, valid_data: Tensor | None = None, *,
                  encoder=None, **fit_kwargs) -> History:
    """Fit ``model``'s encoder (and any parameters of its posterior family) with :func:`fit`,
    every other parameter frozen; see the module docstring for why this leaves the model's
    likelihood unchanged. ``encoder``: a new module to fit in place of the old one (e.g. a
    larger MLP, :class:`nfcourse.flows.MLP`); it must output the posterior's
    ``param_dim(z_dim)`` numbers. ``fit_kwargs`` go to :func:`fit`; the bound is the ELBO at
    β = 1, so ``anneal`` is refused. The ``requires_grad`` flags are restored afterwards.
    """
    if fit_kwargs.get("anneal"):
        raise ValueError("refit_encoder fits q to a fixed model at beta = 1; annealing (a "
                         "bound with beta < 1) would not shrink KL(q || p(z | x)): drop anneal")
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
        return fit(model, train_data, valid_data, **fit_kwargs)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
