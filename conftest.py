"""Test-suite set-up shared by every test, and nbval collection of the solution notebooks.

- Fast mode on (``NFCOURSE_FAST=1``) and downloads off (``NFCOURSE_OFFLINE=1``): no test
  touches the network. Notebook kernels inherit these variables.
- ``NFCOURSE_DATA`` defaults to ``../shared/data`` beside the checkout, where CI keeps it.
- Each ``solutions/NN_*.py`` is converted (jupytext) to a notebook in a temporary folder
  and handed to nbval, which runs it cell by cell; a failing ``assert`` fails the test.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SOLUTIONS = ROOT / "solutions"

os.environ.setdefault("NFCOURSE_FAST", "1")
os.environ["NFCOURSE_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
if "NFCOURSE_DATA" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["NFCOURSE_DATA"] = str(ROOT.parent / "shared" / "data")

_NOTEBOOK_DIR = Path(tempfile.mkdtemp(prefix="nfcourse-nbval-"))
_cell_seconds: dict[str, float] = defaultdict(float)


def _is_solution(path: Path) -> bool:
    return path.parent == SOLUTIONS and path.suffix == ".py" and path.name[:2].isdigit()


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent):
    collected = yield
    if not _is_solution(file_path):
        return collected
    # A solution is a notebook, not a module: never import it for doctests.
    import jupytext
    from nbval.plugin import IPyNbFile

    notebook = _NOTEBOOK_DIR / f"{file_path.stem}.ipynb"
    jupytext.write(jupytext.read(file_path), notebook)
    return [IPyNbFile.from_parent(parent, path=notebook,
                                  nodeid=f"solutions/{file_path.name}")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        if item.nodeid.startswith("solutions/"):
            _cell_seconds[item.nodeid.split("::")[0]] += time.perf_counter() - start


def pytest_terminal_summary(terminalreporter):
    if _cell_seconds:
        terminalreporter.section("nbval time per solution notebook (cells only)")
        for name, seconds in sorted(_cell_seconds.items()):
            terminalreporter.write_line(f"{name:40s} {seconds:7.1f} s")
