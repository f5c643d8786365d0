"""The student notebooks: generated from the solutions, free of solution text, and
failing, when executed, only at exercise stubs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import jupytext
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

from nfcourse import curriculum
from nfcourse.checks.core import NOT_ATTEMPTED
from nfcourse.curriculum import STUB_PREFIX, MarkerError, find_regions, student_version

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))
STUDENT = sorted((ROOT / "curriculum").glob("[0-9][0-9]_*.py"))


def test_there_are_notebooks():
    assert SOLUTIONS, "no solution notebooks found in solutions/"
    assert [p.name for p in STUDENT] == [p.name for p in SOLUTIONS]


def test_curriculum_is_up_to_date():
    stale = curriculum.build(check=True)
    assert not stale, (
        f"curriculum/ is out of date ({', '.join(p.name for p in stale)}): "
        "run `python -m nfcourse build-curriculum` and commit the result."
    )


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_no_solution_text_leaks(solution: Path):
    text = solution.read_text(encoding="utf-8")
    regions = find_regions(text, solution.name)
    outside = set(_lines(_without_regions(text)))
    student = set(_lines((ROOT / "curriculum" / solution.name).read_text(encoding="utf-8")))
    for region in regions:
        # Lines that also stand outside any region (say, a blank `return`) are not leaks.
        secret = [line for line in _lines("\n".join(region.body)) if line not in outside]
        leaked = [line for line in secret if line in student]
        assert not leaked, f"{solution.name}:{region.start}: solution text in curriculum/: {leaked}"


def test_every_solution_has_exercises():
    for solution in SOLUTIONS:
        if solution.name.startswith("00_"):
            continue
        assert find_regions(solution.read_text(encoding="utf-8")), f"{solution.name} has none"


@pytest.mark.parametrize("student", STUDENT, ids=lambda p: p.name)
def test_student_notebook_fails_only_at_stubs(student: Path, tmp_path: Path):
    """Executed as a student gets it, the notebook may stop only at an unfinished stub, and
    every stub must be reached: by its self-check (which prints "not attempted yet" and
    lets Run All go on) or by a cell that calls it."""
    notebook = jupytext.read(student)
    km = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME,
                       kernel_spec_manager=NbvalKernelspecManager())
    client = NotebookClient(notebook, km=km, allow_errors=True, timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    if os.environ.get("NFCOURSE_FAST") == "0":        # --full: the default settings
        assert seconds <= 600, f"{student.name} took {seconds:.0f} s, over its 10 minutes"
    outputs = [(i, out) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
               for out in cell.get("outputs", [])]
    errors = [(i, out) for i, out in outputs if out.output_type == "error"]
    wrong = [f"cell {i}: {out.ename}: {out.evalue}" for i, out in errors
             if out.ename != "NotImplementedError" or STUB_PREFIX not in out.evalue]
    assert not wrong, "student notebook fails outside an exercise stub:\n" + "\n".join(wrong)
    shown = " ".join(str(out.get("data", {}).get("text/plain", "")) for _, out in outputs)
    assert "torch._C.Generator object" not in shown, "a cell displays a generator: assign it"
    reached = " ".join(out.evalue for _, out in errors)
    reached += " ".join(out.get("text", "") for _, out in outputs
                        if out.output_type == "stream" and NOT_ATTEMPTED in out.get("text", ""))
    text = student.read_text("utf-8")
    stubs = re.findall(r"raise NotImplementedError\((['\"])(.*?)\1\)", text)
    assert len(stubs) == text.count("raise NotImplementedError("), "a stub the regex misses"
    unreached = [message for _, message in stubs if message not in reached]
    assert not unreached, f"no cell reaches these stubs (add a self-check): {unreached}"


# The builder itself ---------------------------------------------------------------

def test_code_region_becomes_stub_with_hint_and_indent():
    src = "def f(x):\n    ### BEGIN SOLUTION square it\n    return x * x\n    ### END SOLUTION\n"
    out = student_version(src)
    assert "x * x" not in out
    assert "    raise NotImplementedError(" in out and "square it" in out
    namespace: dict = {}
    exec(out.split("\n\n", 1)[1], namespace)
    with pytest.raises(NotImplementedError, match=STUB_PREFIX):
        namespace["f"](3)


def test_markdown_region_becomes_prompt():
    src = ("# %% [markdown]\n# Prove it.\n# <!-- BEGIN SOLUTION use log t <= t-1 -->\n"
           "# Since log t <= t - 1, the sum is nonnegative.\n# <!-- END SOLUTION -->\n")
    out = student_version(src)
    assert "nonnegative" not in out
    assert "**Your answer:**" in out and "use log t <= t-1" in out


@pytest.mark.parametrize("src, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without a BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside the region"),
    ("### BEGIN SOLUTION\nx = 1\n# <!-- END SOLUTION -->\n", "matching marker"),
    ("### BEGIN SOLUTION\nx = 1\n# %%\n### END SOLUTION\n", "new cell starts"),
])
def test_broken_markers_are_reported_with_line(src: str, message: str):
    with pytest.raises(MarkerError, match=message):
        student_version(src, name="demo.py")


def test_build_writes_and_checks(tmp_path: Path):
    solutions, student = tmp_path / "solutions", tmp_path / "curriculum"
    solutions.mkdir()
    (solutions / "01_demo.py").write_text("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n")
    (student.mkdir())
    (student / "02_orphan.py").write_text("old")
    assert {p.name for p in curriculum.build(solutions, student, check=True)} == {
        "01_demo.py", "02_orphan.py"}
    assert not (student / "01_demo.py").exists()  # check mode writes nothing
    curriculum.build(solutions, student)
    assert curriculum.build(solutions, student, check=True) == []
    assert not (student / "02_orphan.py").exists()


def _lines(text: str) -> list[str]:
    """Meaningful lines: stripped of indent and comment marks, long enough to be telling."""
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if len(line) >= 6 and "SOLUTION" not in line:
            out.append(line)
    return out


def _without_regions(text: str) -> str:
    regions = find_regions(text)
    inside = {n for r in regions for n in range(r.start, r.end + 1)}
    return "\n".join(line for n, line in enumerate(text.splitlines(), 1) if n not in inside)
