"""Devices, seeds and progress bars: the plumbing every notebook shares."""

from __future__ import annotations

import json
import os
import platform
import random
import sys
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
