"""Devices, seeds and progress bars: the plumbing every notebook shares."""

from __future__ import annotations

import os
import random
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
