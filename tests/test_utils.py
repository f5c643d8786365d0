"""The guards in nfcourse.utils: whether values may be read (values_checkable), a module in
eval mode for a block (eval_mode), and where the course's repository is (repo_root), with
the modules that find docs/ and solutions/ through it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import vmap

from nfcourse import curriculum, results
from nfcourse.utils import ROOT_ENV, eval_mode, fastest_times, repo_root, values_checkable

ROOT = Path(__file__).resolve().parent.parent


# values_checkable ---------------------------------------------------------------------------

def test_values_are_checkable_in_plain_eager_code():
    assert values_checkable(torch.zeros(3))
    assert values_checkable(torch.zeros(3, requires_grad=True))


def test_values_are_not_checkable_while_compiling(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not values_checkable(torch.zeros(3))


def test_values_are_not_checkable_under_vmap_or_jacrev():
    seen = []

    def f(v):
        seen.append(values_checkable(v))
        return v.sin()
    vmap(f)(torch.zeros(2, 3))
    torch.func.jacrev(f)(torch.zeros(3))
    assert seen == [False, False]


def test_values_are_not_checkable_while_a_cuda_graph_is_captured(device):
    if device.type != "cuda":
        pytest.skip("captures a CUDA graph: run with --device cuda")
    x = torch.zeros(3, device=device)
    seen = []
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        seen.append(values_checkable(x))
        y = x + 1
    assert seen == [False] and values_checkable(y)
    # the CPU tensors of a capture stay readable
    with torch.cuda.graph(torch.cuda.CUDAGraph()):
        seen.append(values_checkable(torch.zeros(1)))
        _ = x * 2
    assert seen == [False, True]


# eval_mode ----------------------------------------------------------------------------------

def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))


def test_eval_mode_sets_eval_and_restores_training():
    net = _net()
    with eval_mode(net) as inside:
        assert inside is net
        assert not any(m.training for m in net.modules())
    assert all(m.training for m in net.modules())


def test_eval_mode_leaves_a_module_in_eval_mode_in_eval_mode():
    net = _net().eval()
    with eval_mode(net):
        pass
    assert not any(m.training for m in net.modules())


def test_eval_mode_restores_each_submodules_own_flag():
    """A part frozen in eval mode on purpose (here the BatchNorm) stays frozen."""
    net = _net()
    net[2].eval()
    with eval_mode(net):
        assert not net.training
    assert [m.training for m in net.modules()] == [True, True, True, False]


def test_eval_mode_restores_the_flags_when_the_block_raises():
    net = _net()
    with pytest.raises(RuntimeError, match="inside"):
        with eval_mode(net):
            raise RuntimeError("inside")
    assert all(m.training for m in net.modules())


def test_eval_mode_names_a_wrong_argument():
    with pytest.raises(TypeError, match="eval_mode takes a torch.nn.Module, got Tensor"):
        with eval_mode(torch.zeros(2)):
            pass


# repo_root ----------------------------------------------------------------------------------

def _fake_clone(folder: Path, rows: str = "") -> Path:
    """A folder that looks like a clone of the course: its pyproject.toml and docs/."""
    (folder / "docs" / "results").mkdir(parents=True)
    (folder / "pyproject.toml").write_text('[project]\nname = "nfcourse"\nversion = "0"\n')
    if rows:
        (folder / "docs" / "results" / "table2.csv").write_text(rows)
    return folder


def test_repo_root_is_found_from_the_clone_and_from_its_subfolders(monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    for where in (ROOT, ROOT / "solutions", ROOT / "nfcourse" / "checks"):
        monkeypatch.chdir(where)
        assert repo_root() == ROOT
    assert results.table2_csv() == ROOT / "docs" / "results" / "table2.csv"
    assert curriculum.repo_root is repo_root   # the name the command line and tests use


def test_repo_root_skips_a_project_of_another_name(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    clone = _fake_clone(tmp_path / "course")
    other = clone / "work" / "mine"
    (other / "docs").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "my-notes"\n')
    monkeypatch.chdir(other)
    assert repo_root() == clone


def test_the_environment_variable_names_the_root(tmp_path, monkeypatch):
    clone = _fake_clone(tmp_path / "elsewhere", rows="posterior,K,seed\nplanar,10,0\n")
    monkeypatch.setenv(ROOT_ENV, str(clone))
    monkeypatch.chdir(ROOT)                      # it wins over the clone we stand in
    assert repo_root() == clone
    assert [r["posterior"] for r in results.read_table2()] == ["planar"]
    assert results.TABLE2_CSV == clone / "docs" / "results" / "table2.csv"


def test_an_environment_variable_that_names_no_clone_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        repo_root()
    text = str(info.value)
    assert f"{ROOT_ENV}={tmp_path} is not a clone of the course" in text
    assert 'name = "nfcourse"' in text and "unset it" in text


def test_outside_a_clone_the_error_says_what_was_looked_for_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    for find in (repo_root, results.table2_csv, results.read_table2, curriculum.build):
        with pytest.raises(FileNotFoundError) as info:
            find()
        text = str(info.value)
        assert f'pyproject.toml declaring name = "nfcourse" beside a docs/ folder in ' \
               f'{tmp_path.resolve()} and every folder above it' in text
        assert "Run from inside a clone of the course" in text
        assert f"{ROOT_ENV}=/path/to/the/clone" in text


def test_importing_results_works_outside_a_clone(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != ROOT_ENV}
    code = ("import nfcourse.results as r, nfcourse.curriculum\n"
            "try:\n    r.TABLE2_CSV\nexcept FileNotFoundError:\n    print('clear error')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clear error"


def test_fastest_times_calls_the_rivals_in_turn_and_keeps_the_least_time():
    calls, slow_calls = [], {("a", 0), ("a", 3), ("b", 1)}   # the warm-up and two slow spells

    def timed(name):
        def fn():
            if (name, sum(c == name for c in calls)) in slow_calls:
                time.sleep(0.05)
            calls.append(name)
        return fn

    t_a, t_b = fastest_times(timed("a"), timed("b"), repeats=4)
    assert calls == ["a", "b"] + ["a", "b"] * 4      # one warm-up each, then in turn
    assert t_a < 0.01 and t_b < 0.01                  # neither slow spell counted


def test_fastest_times_names_a_bad_call():
    with pytest.raises(ValueError, match="at least one function"):
        fastest_times()
    with pytest.raises(ValueError, match="repeats=0"):
        fastest_times(lambda: None, repeats=0)
