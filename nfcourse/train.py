r"""Training a VAE: minibatch stochastic gradient ascent on a bound, with validation, early
stopping, annealing, checkpoints and resume.

Each step draws a minibatch :math:`\mathcal B` and takes an Adam step on

.. math::

    \text{loss}_t = -\frac{1}{|\mathcal B|} \sum_{x \in \mathcal B} \mathcal L_{\beta_t}(x),
    \qquad \beta_t = \min\big(1,\ 0.01 + t / 10000\big)

(the annealing schedule of Rezende & Mohamed 2015 §6.2, optional; :math:`\beta_t = 1`
without it; see :func:`nfcourse.objectives.elbo`). After every epoch the mean bound on the
validation set, :math:`\frac1N\sum_n \mathcal L(x_n)` at :math:`\beta = 1` with fixed
noise, is recorded; training stops after ``patience`` epochs without a new best, and the
best parameters are restored.

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
posterior noise on the model's device) and, for layers that draw from the global generator
(dropout), a forked global state seeded from ``seed`` and saved in ``last.pt``. So a run is
reproducible on the CPU for a fixed seed, resumes exactly, and does not disturb, or depend
on, the global random state after the model is built.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from nfcourse import objectives
from nfcourse.utils import progress as _progress

__all__ = ["fit", "refit_encoder", "evaluate", "anneal_beta", "History", "TrainingError",
           "load_checkpoint", "save_checkpoint"]

#: ``objective(model, x, beta, generator) -> bound per data point [B]``.
Objective = Callable[..., Tensor]


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or inf loss); the message says where and what is kept."""


def anneal_beta(step: int, start: float = 0.01, steps: int = 10_000) -> float:
    """R&M's inverse temperature β_t = min(1, start + t / steps).

    >>> anneal_beta(0), anneal_beta(4_900), anneal_beta(20_000)
    (0.01, 0.5, 1.0)
    """
    return min(1.0, start + step / steps)


@dataclass
class History:
    """What a run did, one entry per epoch (and the training loss every few steps)."""

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)   # mean −bound over the epoch
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


def _objective(objective: str | Objective, k: int) -> Objective:
    if callable(objective):
        return objective
    if objective == "elbo":
        return lambda m, x, beta, gen: objectives.elbo(m, x, k, beta=beta, generator=gen)
    if objective == "iwae":
        return lambda m, x, beta, gen: objectives.iwae(m, x, k, generator=gen)
    if objective == "reconstruction":
        return lambda m, x, beta, gen: objectives.reconstruction(m, x, generator=gen)
    raise ValueError(f"objective={objective!r}: use 'elbo', 'iwae', 'reconstruction' or a "
                     "function (model, x, beta, generator) -> bound per data point")


def _device_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def evaluate(model, data: Tensor, objective: str | Objective = "elbo", k: int = 1,
             batch_size: int = 1000, seed: int = 0) -> float:
    """The mean bound (β = 1) over ``data``, with noise from a generator seeded by ``seed``
    (so two calls on the same model agree). Puts the model back in its previous mode."""
    fn = _objective(objective, k)
    device = next(model.parameters()).device
    gen = _device_generator(device, seed)
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for start in range(0, data.shape[0], batch_size):
            xb = data[start:start + batch_size].to(device)
            total += fn(model, xb, 1.0, gen).sum().item()
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


@torch.no_grad()
def _average(averaged, model, rho: float) -> None:
    """θ̄ ← ρ θ̄ + (1 − ρ) θ for the parameters; buffers are copied as they are."""
    for p_bar, p in zip(averaged.parameters(), model.parameters()):
        p_bar.lerp_(p, 1.0 - rho)
    for b_bar, b in zip(averaged.buffers(), model.buffers()):
        b_bar.copy_(b)


def _forked_global_rng(fit_fn):
    """Run ``fit_fn`` on a fork of the global generator, seeded from ``seed``: dropout draws
    from it, and training must neither disturb nor depend on the caller's random state."""
    @functools.wraps(fit_fn)
    def wrapper(model, *args, seed: int = 0, **kwargs):
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + 3)
            return fit_fn(model, *args, seed=seed, **kwargs)
    return wrapper


@_forked_global_rng
def fit(model, train_data: Tensor, valid_data: Tensor | None = None, *, epochs: int = 10,
        batch_size: int = 100, lr: float = 1e-3, objective: str | Objective = "elbo",
        k: int = 1, anneal: bool | int = False, patience: int | None = None,
        ema: float | None = None, lr_milestones: tuple[int, ...] | list[int] = (),
        lr_gamma: float = 0.1,
        checkpoint_dir: str | os.PathLike | None = None, resume: bool = False, seed: int = 0,
        max_steps: int | None = None, time_limit: float | None = None,
        valid_batch_size: int = 1000, loss_every: int = 50, progress: bool = True,
        log: Callable[[str], None] | None = None) -> History:
    """Train ``model`` on ``train_data`` (``[N, D]``, on any device: batches move to the
    model's device) with Adam; return the :class:`History`.

    - ``objective``: ``"elbo"`` (with ``k`` samples), ``"iwae"`` (``k`` samples),
      ``"reconstruction"`` (a deterministic autoencoder) or a function
      ``(model, x, beta, generator) -> bound [B]``.
    - ``anneal``: ``True`` for R&M's β_t = min(1, 0.01 + t/10000), an int for another
      number of warm-up steps, ``False`` for β = 1.
    - ``patience``: stop after this many epochs without a better validation bound, and
      restore the best parameters (kept also when ``patience`` is None). Without
      ``valid_data`` nothing is selected: the last epoch's parameters are kept (an annealed
      training loss is no bound to compare epochs by), and ``patience`` is refused.
    - ``ema``: the decay ρ of the parameter average :math:`\bar\theta` (e.g. 0.999: a
      window of about 1000 steps); validation, ``best.pt`` and the returned model use it.
    - ``lr_milestones`` / ``lr_gamma``: multiply the step size by ``lr_gamma`` after each
      of these epochs (see the module docstring); ``lr`` is the step size before the
      first. The schedule is applied on resume too, whatever step size the checkpoint had.
    - ``checkpoint_dir`` / ``resume``: see the module docstring. ``resume=True`` without a
      ``last.pt`` starts afresh.
    - ``max_steps`` / ``time_limit`` (seconds): stop after the step that reaches the limit,
      then validate and checkpoint as at the end of an epoch (the cut epoch counts as done:
      ``resume`` goes on with the next one, so only a resume after an *interruption* at an
      epoch's end repeats an uninterrupted run exactly).
    - ``log``: called with a one-line summary after each epoch (e.g. ``print``).
    """
    device = next(model.parameters()).device
    fn = _objective(objective, k)
    if ema is not None and not 0.0 <= ema < 1.0:
        raise ValueError(f"ema={ema!r}: the decay of the parameter average must be in [0, 1), "
                         "e.g. 0.999; pass None for no averaging")
    milestones = sorted(int(m) for m in lr_milestones)
    if any(m < 1 for m in milestones) or not 0.0 < lr_gamma <= 1.0:
        raise ValueError(f"lr_milestones={list(lr_milestones)!r}, lr_gamma={lr_gamma!r}: the "
                         "milestones are epoch numbers >= 1 and the decay factor is in (0, 1], "
                         "e.g. lr_milestones=[300], lr_gamma=0.3")
    if patience is not None and valid_data is None:
        raise ValueError(f"patience={patience!r} stops on the validation bound, and valid_data "
                         "is None: pass validation data, or a fixed number of epochs and "
                         "patience=None")
    warmup = 10_000 if anneal is True else int(anneal) if anneal else 0
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle_gen = torch.Generator().manual_seed(seed)
    noise_gen = _device_generator(device, seed + 1)
    history = History()
    epoch0, step, bad_epochs = 0, 0, 0
    best_state = None
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    last_path = best_path = None
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
        last_path, best_path = ckpt / "last.pt", ckpt / "best.pt"
    state = None
    if resume and last_path is not None and last_path.exists():
        state = load_checkpoint(last_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        shuffle_gen.set_state(state["rng"]["shuffle"].cpu())
        noise_gen.set_state(state["rng"]["noise"].to(noise_gen.get_state().device))
        if "global" in state["rng"]:
            torch.set_rng_state(state["rng"]["global"].cpu())
            if device.type == "cuda" and "global_cuda" in state["rng"]:  # else begun on a CPU
                torch.cuda.set_rng_state(state["rng"]["global_cuda"].cpu(), device)
        history = History(**state["history"])
        stopped = history.stopped
        epoch0, step, bad_epochs = state["epoch"] + 1, state["step"], state["bad_epochs"]
        if best_path.exists():
            best_state = load_checkpoint(best_path, map_location=device)["model"]
        if log:
            log(f"resumed from {last_path} after epoch {epoch0} (step {step})")
        if stopped.startswith("early stopping"):
            epoch0 = epochs  # that run had converged; nothing left to do
        else:
            history.stopped = ""  # a time or step limit, or more epochs asked for: go on
    averaged = None  # θ̄, a frozen copy of the model
    if ema is not None:
        averaged = copy.deepcopy(model).requires_grad_(False)
        if state is not None and state.get("averaged") is not None:
            averaged.load_state_dict(state["averaged"])

    n = train_data.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    elapsed0 = history.seconds[-1] if history.seconds else 0.0
    started = time.perf_counter()
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    bar = _progress(None, desc="training", total=total_steps, initial=min(step, total_steps)) \
        if progress else None
    model.train()
    try:
        for epoch in range(epoch0, epochs):
            lr_epoch = lr * lr_gamma ** sum(m <= epoch for m in milestones)  # epoch + 1 > m
            for group in optimizer.param_groups:
                group["lr"] = lr_epoch
            perm = torch.randperm(n, generator=shuffle_gen)
            epoch_loss, running = 0.0, []
            for b in range(steps_per_epoch):
                xb = train_data[perm[b * batch_size:(b + 1) * batch_size]].to(device)
                beta = anneal_beta(step, steps=warmup) if warmup else 1.0
                loss = -fn(model, xb, beta, noise_gen).mean()
                value = loss.item()
                if not math.isfinite(value):
                    where = (f"the last good checkpoint, {last_path}, is from the end of epoch "
                             f"{history.epoch[-1]}" if last_path is not None and history.epoch
                             else "no checkpoint was written yet (pass checkpoint_dir)")
                    raise TrainingError(
                        f"the loss became {value} at step {step} (epoch {epoch + 1}, batch "
                        f"{b + 1} of {steps_per_epoch}); training stopped and {where}. Try a "
                        "lower learning rate, check the data, or resume from the checkpoint.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if averaged is not None:
                    _average(averaged, model, min(ema, (1 + step) / (10 + step)))
                step += 1
                epoch_loss += value * xb.shape[0]
                running.append(value)
                if step % loss_every == 0:
                    history.loss_steps.append(step)
                    history.loss_values.append(sum(running[-loss_every:]) / len(running[-loss_every:]))
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix(loss=f"{value:.2f}", beta=f"{beta:.2f}", refresh=False)
                if max_steps is not None and step >= max_steps:
                    break
                if time_limit is not None and time.perf_counter() - started >= time_limit:
                    break
            history.epoch.append(epoch + 1)
            history.step.append(step)
            history.train_loss.append(epoch_loss / min(n, (b + 1) * batch_size))  # seen so far
            history.beta.append(anneal_beta(step, steps=warmup) if warmup else 1.0)
            validated = averaged if averaged is not None else model
            if valid_data is not None:
                valid = evaluate(validated, valid_data, fn, k, valid_batch_size, seed=seed + 2)
                improved = valid > history.best_valid
            else:
                # nothing to select on (an annealed training loss is no bound): keep the last
                valid, improved = math.nan, True
            history.valid_bound.append(valid)
            history.seconds.append(elapsed0 + time.perf_counter() - started)
            if improved:
                history.best_valid, history.best_epoch, bad_epochs = valid, epoch + 1, 0
                best_state = copy.deepcopy(validated.state_dict())
                if best_path is not None:
                    save_checkpoint(best_path, {"model": best_state, "epoch": epoch + 1,
                                                "valid_bound": valid})
            else:
                bad_epochs += 1
            if patience is not None and bad_epochs >= patience:
                history.stopped = (f"early stopping: no better validation bound for {patience} "
                                   f"epochs (best {history.best_valid:.3f} at epoch "
                                   f"{history.best_epoch})")
            elif max_steps is not None and step >= max_steps:
                history.stopped = f"max_steps={max_steps} reached"
            elif time_limit is not None and history.seconds[-1] - elapsed0 >= time_limit:
                history.stopped = (f"time limit of {time_limit:.0f} s reached at step {step}"
                                   + ("" if b + 1 == steps_per_epoch else
                                      f", {b + 1} of {steps_per_epoch} batches into epoch "
                                      f"{epoch + 1}"))
            elif epoch + 1 == epochs:
                history.stopped = f"all {epochs} epochs done"
            if log:
                log(f"epoch {epoch + 1:4d}  step {step:7d}  train loss {history.train_loss[-1]:8.3f}"
                    f"  valid bound {valid:9.3f}  beta {history.beta[-1]:.2f}  lr {lr_epoch:.1e}"
                    f"  {history.seconds[-1]:7.0f} s")
            if last_path is not None:
                save_checkpoint(last_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "step": step, "bad_epochs": bad_epochs,
                    "history": history.as_dict(),
                    "averaged": None if averaged is None else averaged.state_dict(),
                    "rng": {"shuffle": shuffle_gen.get_state(), "noise": noise_gen.get_state(),
                            "global": torch.get_rng_state(),
                            **({"global_cuda": torch.cuda.get_rng_state(device)}
                               if device.type == "cuda" else {})},
                })
            if history.stopped:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def refit_encoder(model, train_data: Tensor, valid_data: Tensor | None = None, *,
                  encoder=None, **fit_kwargs) -> History:
    """Fit ``model``'s encoder (and any parameters of its posterior family) with :func:`fit`,
    every other parameter frozen; see the module docstring for why this leaves the model's
    likelihood unchanged. ``encoder``: a new module to fit in place of the old one (e.g. a
    larger MLP, :func:`nfcourse.models.vae.mlp`); it must output the posterior's
    ``param_dim(z_dim)`` numbers. ``fit_kwargs`` go to :func:`fit`; the bound is the ELBO at
    β = 1, so ``anneal`` is refused. The ``requires_grad`` flags are restored afterwards.
    """
    if fit_kwargs.get("anneal"):
        raise ValueError("refit_encoder fits q to a fixed model at beta = 1; annealing (a "
                         "bound with beta < 1) would not shrink KL(q || p(z | x)): drop anneal")
    device = next(model.parameters()).device
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
