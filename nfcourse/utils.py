"""Devices, seeds and progress bars: the plumbing every notebook shares."""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Iterable, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

T = TypeVar("T")


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

    Set ``NFCOURSE_PROGRESS=0`` to silence every bar, e.g. in logs.
    """
    disable = os.environ.get("NFCOURSE_PROGRESS", "1").strip() in {"0", "false", "no"}
    return tqdm(iterable, desc=desc, total=total, disable=disable, **kwargs)


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
