"""Devices, seeds and progress bars: the plumbing every notebook shares.

Also a paired comparison of two runs scored on the same items (:func:`paired_change`), the
cost of rival pieces of code timed side by side (:func:`fastest_times`), and
the small guards the rest of the package leans on: whether a tensor's values may be
read now (:func:`values_checkable`), a module in eval mode for the length of a block
(:func:`eval_mode`), and where the course's repository is (:func:`repo_root`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import re
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or the environment variable ``NFCOURSE_DEVICE``) overrides the choice,
    e.g. ``"cpu"`` to compare against a GPU run.

    >>> get_device("cpu")
    device(type='cpu')
    """
    choice = prefer or os.environ.get("NFCOURSE_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {choice!r} was asked for but CUDA is not available here; "
                "unset NFCOURSE_DEVICE or pass prefer='cpu'."
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and return a seeded CPU generator.

    On the CPU this makes a run reproducible; on a GPU some kernels stay
    non-deterministic unless ``torch.use_deterministic_algorithms(True)`` is set too.

    >>> _ = seed_everything(0); a = torch.rand(2)
    >>> _ = seed_everything(0); b = torch.rand(2)
    >>> torch.equal(a, b)
    True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def progress(iterable: Iterable[T], desc: str | None = None, total: int | None = None,
             **kwargs) -> Iterable[T]:
    """A tqdm progress bar (a widget in Jupyter, text in a terminal).

    Set ``NFCOURSE_PROGRESS=0`` to silence every bar, e.g. in logs; ``disable=True``
    silences this one.
    """
    silenced = os.environ.get("NFCOURSE_PROGRESS", "1").strip() in {"0", "false", "no"}
    disable = kwargs.pop("disable", False) or silenced
    return tqdm(iterable, desc=desc, total=total, disable=disable, **kwargs)


def paired_change(before: Tensor, after: Tensor) -> tuple[float, float]:
    r"""The mean change :math:`\bar d` of per-item values, :math:`d_n = a_n - b_n` for
    ``after`` :math:`a` and ``before`` :math:`b` scored on the same items, and its standard
    error :math:`\mathrm{sd}(d)/\sqrt N`. What the items share (an easy image scores well in
    both runs) cancels in each :math:`d_n`, so this error is far smaller than either run's.

    >>> paired_change(torch.tensor([1.0, 5.0, 9.0]), torch.tensor([0.0, 4.5, 8.0]))
    (-0.8333333333333334, 0.16666666666666666)
    """
    if before.shape != after.shape:
        raise ValueError(f"paired values need the same items: got shapes {list(before.shape)} "
                         f"and {list(after.shape)}; score both runs on the same items")
    d = (after - before).detach().double()
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()


def fastest_times(*fns, repeats: int = 15) -> list[float]:
    """The least time of ``repeats`` calls of each function, in seconds, called in turn.

    Other work on the machine only ever adds time, so the least time is the nearest to what
    the code itself costs; calling the rivals in turn lets a slow spell hit them all alike,
    and one call each beforehand keeps one-off set-up out of the clock.

    >>> t_small, t_big = fastest_times(lambda: torch.ones(10).sum(), lambda: torch.ones(10**6).sum())
    >>> t_small < t_big
    True
    """
    if not fns or repeats < 1:
        raise ValueError(f"give at least one function and repeats >= 1 (got {len(fns)} "
                         f"functions, repeats={repeats})")
    for fn in fns:
        fn()
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


class Budget:
    """One time budget for a whole notebook: every long cell draws on what is left of it.

    ``budget = Budget(9 * 60)`` starts the clock; ``budget.share(0.5)`` is the time limit
    for the next long step, half of what is left now. A slow machine then shortens every
    later step instead of running past the notebook's budget, which a fixed limit per step
    cannot promise. ``Budget(None)`` (fast mode) never limits: ``share`` returns ``None``.

    >>> Budget(None).share(0.5) is None
    True
    >>> 0 < Budget(60).share(0.5) <= 30
    True
    """

    def __init__(self, seconds: float | None):
        if seconds is not None and seconds <= 0:
            raise ValueError(f"Budget({seconds!r}): give a positive number of seconds, or None "
                             "for no limit")
        self.seconds = seconds
        self.started = time.perf_counter()

    def spent(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float | None:
        return None if self.seconds is None else max(self.seconds - self.spent(), 0.0)

    def share(self, fraction: float = 1.0) -> float | None:
        """``fraction`` of the time left (at least 1 s, so a step always starts)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"share({fraction!r}): a fraction in (0, 1]")
        left = self.left()
        return None if left is None else max(fraction * left, 1.0)

    def __repr__(self) -> str:
        if self.seconds is None:
            return f"Budget(no limit; {self.spent():.0f} s spent)"
        return f"Budget({self.spent():.0f} s of {self.seconds:.0f} s spent)"


def run_info(device: torch.device) -> dict:
    """Where and how a script ran: device, threads, versions, processor, the command line."""
    return {"device": str(device), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "command": " ".join(sys.argv)}


def write_result(result: dict, output: str | os.PathLike | None = None,
                 checkpoint_dir: str | os.PathLike | None = None) -> None:
    """Print a script's result as JSON and write it to ``output``, else to
    ``<checkpoint_dir>/result.json`` (if either is given)."""
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    out = output or (Path(checkpoint_dir) / "result.json" if checkpoint_dir else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


def values_checkable(x: Tensor) -> bool:
    """Whether a check may read ``x``'s values now (``x.min()``, ``bool((x > 0).all())``).

    A check of values (data in a layer's domain, pixels in [0, 1]) turns a tensor into a
    Python number, which three ways of running the same code cannot do:

    * ``torch.compile`` traces the code (:func:`torch.compiler.is_compiling`): a value read
      there breaks the graph, or fails with ``fullgraph=True``;
    * a CUDA graph is being captured on ``x``'s device: reading a value synchronises with
      the GPU, which a capture forbids (the data were checked in the eager warm-up steps);
    * a ``torch.func`` transform (``vmap``, ``jacrev``, ...) is running: ``vmap`` refuses
      data-dependent Python control flow.

    Everywhere else (plain eager code, the common case) this is True, and a check should
    run. Put the check behind it: ``if values_checkable(x) and (x < 0).any(): raise ...``.

    >>> values_checkable(torch.zeros(3))
    True
    >>> torch.func.vmap(lambda v: torch.tensor(values_checkable(v)))(torch.zeros(2)).tolist()
    [False, False]
    """
    if torch.compiler.is_compiling():
        return False
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        return False
    return not torch._C._are_functorch_transforms_active()


@contextlib.contextmanager
def eval_mode(module: M) -> Iterator[M]:
    """``module`` in eval mode inside the ``with`` block, then back as it was.

    Every submodule gets back its own ``training`` flag, also when the block raises, so a
    part kept in eval mode on purpose (a frozen BatchNorm) stays so.

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"eval_mode takes a torch.nn.Module, got {type(module).__name__}")
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in flags:   # parents first, so each child ends with its own flag
            m.train(training)


#: The environment variable that names the course's repository (see :func:`repo_root`).
ROOT_ENV = "NFCOURSE_ROOT"

_NAMES_NFCOURSE = re.compile(r"""^\s*name\s*=\s*["']nfcourse["']\s*(#.*)?$""", re.M)


def _is_course_root(folder: Path) -> bool:
    """A clone of the course: a pyproject.toml declaring ``name = "nfcourse"``, and docs/."""
    pyproject = folder / "pyproject.toml"
    return (pyproject.is_file() and (folder / "docs").is_dir()
            and _NAMES_NFCOURSE.search(pyproject.read_text(errors="replace")) is not None)


def repo_root() -> Path:
    """The course's repository (a git clone: docs/, solutions/, curriculum/ live there).

    Found by one rule, which does not depend on where the package is installed:

    1. ``$NFCOURSE_ROOT``, if set: it must be such a clone;
    2. else the current working directory or the nearest folder above it that holds a
       ``pyproject.toml`` declaring ``name = "nfcourse"`` and a ``docs/`` folder. Notebooks
       run in ``solutions/``, ``curriculum/`` or ``work/``, scripts and tests in the clone
       itself: walking up finds it from each.

    The package's own location (``__file__``) is never used: installed without ``-e`` it
    sits in site-packages, which has no docs/. Raises ``FileNotFoundError`` saying what
    was looked for, and where, when there is no clone.

    >>> (repo_root() / "pyproject.toml").is_file()   # run from inside the clone
    True
    """
    wanted = 'a pyproject.toml declaring name = "nfcourse" beside a docs/ folder'
    given = os.environ.get(ROOT_ENV, "").strip()
    if given:
        root = Path(given).expanduser().resolve()
        if not _is_course_root(root):
            raise FileNotFoundError(
                f"{ROOT_ENV}={given} is not a clone of the course: {wanted} is not there. "
                f"Point {ROOT_ENV} at the folder you cloned (the one holding pyproject.toml, "
                f"docs/ and solutions/), or unset it to search upwards from the working "
                f"directory.")
        return root
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_course_root(folder):
            return folder
    raise FileNotFoundError(
        f"found no clone of the course: looked for {wanted} in {here} and every folder "
        f"above it. Run from inside a clone of the course (git clone it, then work in that "
        f"folder or below it), or set {ROOT_ENV}=/path/to/the/clone.")
