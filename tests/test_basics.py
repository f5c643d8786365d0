"""Fast mode, devices, seeding and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nfcourse
from nfcourse import __main__ as cli
from nfcourse.utils import get_device, seed_everything

ROOT = Path(__file__).resolve().parent.parent


def _fast_flag(value: str) -> subprocess.CompletedProcess:
    code = "import nfcourse.config as c; print(c.FAST, c.pick(full='full', fast='fast'))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"NFCOURSE_FAST": value, "PATH": ""})


@pytest.mark.parametrize("value, expected", [("1", "True fast"), ("0", "False full"),
                                             ("", "False full"), ("yes", "True fast")])
def test_fast_mode_is_read_from_the_environment(value, expected):
    result = _fast_flag(value)
    assert result.stdout.strip() == expected, result.stderr


def test_fast_mode_rejects_nonsense_with_a_clear_message():
    result = _fast_flag("maybe")
    assert result.returncode != 0 and "NFCOURSE_FAST='maybe'" in result.stderr


def test_tests_run_in_fast_mode():
    assert nfcourse.FAST, "conftest.py should set NFCOURSE_FAST=1 for the test suite"


def test_device_choice_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("NFCOURSE_DEVICE", raising=False)
    mps = getattr(torch.backends, "mps", None)
    for cuda, has_mps, expected in [(True, True, "cuda"), (False, True, "mps"),
                                    (False, False, "cpu")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        if mps is not None:
            monkeypatch.setattr(mps, "is_available", lambda has_mps=has_mps: has_mps)
        elif has_mps:
            continue
        assert get_device().type == expected


def test_device_override(monkeypatch):
    monkeypatch.setenv("NFCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda")


def test_seed_everything_reproduces_torch_and_numpy():
    import numpy as np
    g = seed_everything(123)
    first = (torch.randn(3), np.random.rand(3), torch.rand(2, generator=g))
    g = seed_everything(123)
    second = (torch.randn(3), np.random.rand(3), torch.rand(2, generator=g))
    assert torch.equal(first[0], second[0]) and (first[1] == second[1]).all()
    assert torch.equal(first[2], second[2])


def test_build_curriculum_check_command_agrees():
    result = subprocess.run([sys.executable, "-m", "nfcourse", "build-curriculum", "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_default_viewer_makes_python_files_open_as_notebooks(tmp_path):
    path = tmp_path / "share/jupyter/lab/settings/overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "dark"}}))
    cli.install_default_viewer(tmp_path)
    settings = json.loads(path.read_text())
    viewers = settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["python"] == "Jupytext Notebook"
    assert settings["@jupyterlab/apputils-extension:themes"] == {"theme": "dark"}  # kept


def test_jupytext_provides_the_notebook_viewer_we_name():
    """The viewer name we configure must be one jupytext's lab extension registers."""
    labext = Path(sys.prefix) / "share/jupyter/labextensions"
    bundles = list(labext.glob("jupyterlab-jupytext/static/*.js"))
    assert bundles, f"jupytext's JupyterLab extension is not installed under {labext}"
    assert any("Jupytext Notebook" in p.read_text(errors="ignore") for p in bundles)


def test_working_copies_are_made_once_and_never_overwritten(tmp_path):
    """The student's notebooks live in work/, copied from curriculum/ on the first `lab` and
    never overwritten by a later one, so an update of the course cannot touch them."""
    (tmp_path / "curriculum").mkdir()
    (tmp_path / "curriculum" / "01_a.py").write_text("course v1")
    copied, kept = cli.working_copies(tmp_path)
    assert [p.name for p in copied] == ["01_a.py"] and kept == []
    (tmp_path / "work" / "01_a.py").write_text("my answers")          # the student works
    (tmp_path / "curriculum" / "01_a.py").write_text("course v2")     # the course updates
    (tmp_path / "curriculum" / "02_b.py").write_text("a new section")
    copied, kept = cli.working_copies(tmp_path)
    assert [p.name for p in copied] == ["02_b.py"] and [p.name for p in kept] == ["01_a.py"]
    assert (tmp_path / "work" / "01_a.py").read_text() == "my answers"
    assert (tmp_path / "work" / "02_b.py").read_text() == "a new section"


def test_work_is_ignored_by_git():
    root = Path(cli.__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "check-ignore", "work/01_bayes.py"], cwd=root,
                             capture_output=True, text=True)
    assert ignored.returncode == 0, "work/ must be in .gitignore"


def test_one_budget_shrinks_every_later_share():
    """A notebook's budget: a slow early cell leaves the later ones less, never more."""
    from nfcourse import Budget
    budget = Budget(10.0)
    first = budget.share(0.5)
    assert 4.9 < first <= 5.0
    budget.started -= 8.0                       # as if the first cell took 8 s
    assert budget.share(0.5) <= 1.0 + 1e-9 and budget.left() <= 2.0
    budget.started -= 100.0                     # past the budget: a step still gets 1 s
    assert budget.share(0.5) == 1.0 and budget.left() == 0.0
    assert Budget(None).share(0.3) is None
    with pytest.raises(ValueError, match="positive number of seconds"):
        Budget(0)
    with pytest.raises(ValueError, match="fraction"):
        Budget(5).share(1.5)


@pytest.mark.parametrize("root", [True, False])
def test_the_course_starts_as_root_too(monkeypatch, tmp_path, root, capsys):
    """In a container or a cloud VM the student is root, and JupyterLab refuses to start
    there without --allow-root: the lab command passes it, and says so."""
    import argparse
    launched = {}
    monkeypatch.setattr(cli, "as_root", lambda: root)
    monkeypatch.setattr(cli, "install_default_viewer", lambda: None)
    monkeypatch.setattr(cli, "working_copies", lambda r: ([], []))
    monkeypatch.setattr(cli.os, "execv", lambda exe, command: launched.update(command=command))
    monkeypatch.setattr(cli.os, "name", "posix")
    cli.lab(argparse.Namespace(jupyter_args=["--no-browser"]))
    assert ("--allow-root" in launched["command"]) == root
    assert ("--allow-root" in capsys.readouterr().out) == root
