"""Fast mode, in one place.

``NFCOURSE_FAST=1`` (set by the test suite) shrinks data sizes and iteration counts so
that every solution notebook runs in CI in seconds to a minute. The default is the
student's setting: meaningful results in minutes on a laptop CPU.

A notebook never writes ``if FAST:``; it asks for a size with :func:`pick`::

    n_steps = pick(full=5_000, fast=200)
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _read_fast_flag() -> bool:
    raw = os.environ.get("NFCOURSE_FAST", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"NFCOURSE_FAST={raw!r} is not understood; use 1 (fast, as in CI) or 0 (full)."
    )


#: True when ``NFCOURSE_FAST`` is set: the whole suite must run in CI time.
FAST: bool = _read_fast_flag()


def pick(full: T, fast: T) -> T:
    """Return ``fast`` in fast mode, else ``full``.

    >>> pick(full=10_000, fast=100) in (10_000, 100)
    True
    """
    return fast if FAST else full
