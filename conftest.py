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


class _NotebookTimer:
    """Adds up cell times per solution notebook. Registered as a global plugin, since
    the converted notebooks live outside this conftest's folder."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            if item.nodeid.startswith("solutions/"):
                self.seconds[item.nodeid.split("::")[0]] += time.perf_counter() - start

    def pytest_terminal_summary(self, terminalreporter):
        if self.seconds:
            terminalreporter.section("nbval time per solution notebook (cells only)")
            for name, seconds in sorted(self.seconds.items()):
                terminalreporter.write_line(f"{name:40s} {seconds:7.1f} s")


def pytest_configure(config):
    config.pluginmanager.register(_NotebookTimer(), "nfcourse-notebook-timer")
