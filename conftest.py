"""Test-suite set-up shared by every test, and nbval collection of the solution notebooks.

- Fast mode on (``NFCOURSE_FAST=1``) and downloads off (``NFCOURSE_OFFLINE=1``): no test
  touches the network. Notebook kernels inherit these variables.
- ``NFCOURSE_DATA`` defaults to ``../shared/data`` beside the checkout, where CI keeps it.
- ``NFCOURSE_ROOT`` is this checkout: the tests run student notebooks in temporary folders
  outside it, where a student's notebook (in ``work/``, inside the clone) never is, and
  Section 6 reads ``docs/results/`` (:func:`nfcourse.utils.repo_root`).
- ``--full`` runs only the notebooks, solutions and student versions, at their DEFAULT
  settings (``NFCOURSE_FAST=0``), each solution within 10 minutes: what students run.
- ``--device cpu|cuda|mps`` (default cpu) runs the flow and VAE tests that take the
  ``device`` fixture on that device; a device that is not there is a usage error, never a
  silent skip. Tests that need float64 skip on MPS, which has none.
- Each ``solutions/NN_*.py`` is read as a notebook by jupytext (in memory; no .ipynb is
  written) and run by nbval cell by cell, in its own kernel whose working directory is
  ``solutions/``; a failing ``assert`` fails the test.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent
SOLUTIONS = ROOT / "solutions"

os.environ.setdefault("NFCOURSE_FAST", "1")
os.environ["NFCOURSE_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NFCOURSE_ROOT", str(ROOT))
if "NFCOURSE_DATA" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["NFCOURSE_DATA"] = str(ROOT.parent / "shared" / "data")

#: The time a notebook may take at its default settings, on a 2-core CPU (GUIDE.md).
FULL_BUDGET_SECONDS = 600


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=["cpu", "cuda", "mps"],
                     help="run the flow and VAE tests that take the `device` fixture on this "
                          "device (default: cpu)")
    parser.addoption("--full", action="store_true",
                     help="run the solution and student notebooks at their DEFAULT settings "
                          "(what students run, not fast mode), each within "
                          f"{FULL_BUDGET_SECONDS} s; nothing else is collected")


def _check_device(name: str) -> None:
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda: CUDA is not available on this machine")
    mps = getattr(torch.backends, "mps", None)
    if name == "mps" and not (mps is not None and mps.is_available()):
        raise pytest.UsageError("--device mps: MPS is not available on this machine")


@pytest.fixture(scope="session")
def device(request):
    """The torch.device chosen with ``--device`` (default: the CPU)."""
    import torch
    return torch.device(request.config.getoption("--device"))


def _is_solution(path: Path) -> bool:
    return path.parent == SOLUTIONS and path.suffix == ".py" and path.name[:2].isdigit()


class _JupytextReader:
    """Stands in for nbformat inside nbval: reads a py:percent file as a notebook."""

    @staticmethod
    def read(path, as_version=4):
        import jupytext
        return jupytext.read(path, as_version=as_version)


def _solution_notebook(parent, file_path: Path):
    from nbval import plugin

    class SolutionNotebook(plugin.IPyNbFile):
        """nbval's notebook collector, fed by jupytext instead of an .ipynb file, so the
        test items point at solutions/NN_*.py itself (and `pytest solutions/01_x.py` works)."""

        def collect(self):
            with mock.patch.object(plugin, "nbformat", _JupytextReader):
                yield from super().collect()

    return SolutionNotebook.from_parent(parent, path=file_path)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent):
    collected = yield
    if not _is_solution(file_path):
        return collected
    # A solution is a notebook, not a module: nbval runs it; it is never imported.
    return [_solution_notebook(parent, file_path)]


class _NotebookTimer:
    """Adds up the cell times of each solution notebook, for the summary at the end."""

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

    def over_budget(self) -> dict[str, float]:
        return {name: t for name, t in self.seconds.items() if t > FULL_BUDGET_SECONDS}


def pytest_configure(config):
    _check_device(config.getoption("--device"))
    if config.getoption("--full"):
        # the notebooks' kernels inherit it; the default settings are what students run
        os.environ["NFCOURSE_FAST"] = "0"
    config.pluginmanager.register(_NotebookTimer(), "nfcourse-notebook-timer")


def pytest_collection_modifyitems(config, items):
    """With --full, only the notebooks: nbval of the solutions, and the student notebooks."""
    if not config.getoption("--full"):
        return
    keep = [item for item in items if item.nodeid.startswith("solutions/")
            or "test_student_notebook" in item.nodeid]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    """With --full, a solution notebook over its time budget fails the run."""
    if not session.config.getoption("--full"):
        return
    over = session.config.pluginmanager.get_plugin("nfcourse-notebook-timer").over_budget()
    if over:
        for name, seconds in over.items():
            print(f"\n{name} took {seconds:.0f} s at its default settings, over the "
                  f"{FULL_BUDGET_SECONDS} s budget")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
