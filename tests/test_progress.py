"""The study group's two views: the progress record and table, and compare."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import nfcourse
import nfcourse.__main__ as cli
from nfcourse import comparison, exercises
from nfcourse.checks import bayes, record
from nfcourse.curriculum import STUB_PREFIX, find_regions, stub_messages

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = exercises.catalogue(ROOT)


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A student's work/ folder with their copy of Section 1, as the kernel's directory."""
    folder = tmp_path / "alice" / "work"
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "curriculum" / "01_bayes.py", folder)
    monkeypatch.delenv(record.ENV, raising=False)
    monkeypatch.chdir(folder)
    return folder


def answer(folder: Path, stub_hint: str, lines: str) -> None:
    """Replace the stub whose line contains ``stub_hint`` in the copy of Section 1."""
    path = folder / "01_bayes.py"
    text = path.read_text(encoding="utf-8").splitlines()
    # a code stub's hint may be split over the lines of its raise statement: find it in the
    # statement's message, and replace the whole statement
    spans = []
    for start, line in enumerate(text):
        if "raise NotImplementedError(" in line:
            end = next(i for i in range(start, len(text))
                       if text[i].rstrip().endswith(("')", '")')))
            spans.append((start, end, " ".join(stub_messages("\n".join(text[start:end + 1])))))
    start, end = next(((a, b) for a, b, message in spans if stub_hint in message), (None, None))
    if start is None:                                  # a Markdown prompt: one line
        start = end = next(i for i, line in enumerate(text) if stub_hint in line)
    first = start - 1 if text[start - 1].strip() == "# YOUR CODE HERE" else start
    text[first:end + 1] = lines.splitlines()
    path.write_text("\n".join(text) + "\n", encoding="utf-8")


def report_line(report: str, number: str) -> str:
    return next(line for line in report.splitlines() if line.split()[:1] == [number])


# The list of exercises, from the notebooks ---------------------------------------------

def test_the_exercises_come_from_the_notebooks():
    numbers = [e.number for e in ENTRIES]
    assert len(numbers) == len(set(numbers)) > 50
    regions = sum(len(find_regions(p.read_text("utf-8")))
                  for p in (ROOT / "solutions").glob("[0-9][0-9]_*.py"))
    assert sum(len(e.parts) for e in ENTRIES) == regions          # every answer, once
    assert not [n for n in numbers if ".x" in n], "a Markdown answer under no N.M heading"


def test_each_code_part_takes_its_self_checks_number():
    from nfcourse.checks import flows, nfvi, vae, vi
    labels = {f.exercise.number: f.exercise.title for m in (bayes, vi, vae, flows, nfvi)
              for f in vars(m).values() if callable(f) and hasattr(f, "exercise")}
    code = {e.number for e in ENTRIES if any(p.kind == "code" for p in e.parts)}
    assert code == set(labels), "a code exercise without its self-check, or the reverse"
    assert exercises.find(ENTRIES, "4.5b").title == labels["4.5b"]
    assert exercises.find(ENTRIES, "Exercise 6.3B").number == "6.3b"


# The record ------------------------------------------------------------------------------

def test_a_self_check_appends_its_outcome_beside_the_notebook(work, capsys):
    bayes.mle(lambda x: x.mean())
    with pytest.raises(AssertionError):
        bayes.mle(lambda x: x.mean() + 1)

    def stub(x):
        raise NotImplementedError(f"{STUB_PREFIX}: replace this line")
    bayes.mle(stub)
    attempts, problem = record.read(work / record.NAME)
    assert problem is None
    assert [(a["exercise"], a["status"]) for a in attempts] == [("1.3b", "✔"), ("1.3b", "✘"),
                                                                 ("1.3b", "○")]
    assert attempts[1]["detail"] and "Exercise" not in attempts[1]["detail"]


def test_nothing_is_recorded_outside_a_folder_of_student_notebooks(tmp_path, monkeypatch):
    monkeypatch.delenv(record.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    bayes.mle(lambda x: x.mean())
    assert not (tmp_path / record.NAME).exists()
    assert record.record_path(ROOT / "solutions") is None
    assert record.record_path(ROOT / "curriculum") == ROOT / "curriculum" / record.NAME
    monkeypatch.setenv(record.ENV, "0")
    assert record.record_path(ROOT / "curriculum") is None


@pytest.mark.parametrize("damage", ["{not json", '{"attempts": 3}', "\udcff",
                                    '{"attempts": [{"exercise": "1.1"}, 7]}'])
def test_a_corrupt_record_is_reported_and_rebuilt(work, damage, capsys):
    (work / record.NAME).write_text(damage, encoding="utf-8", errors="surrogateescape")
    assert cli.main(["progress"]) == 0            # a report, never a traceback
    out = capsys.readouterr().out
    assert "note:" in out and "rebuilt" in out and "0 of" in out
    assert record.read(work / record.NAME) == ([], None)
    assert (work / (record.NAME + ".corrupt")).exists()
    (work / record.NAME).write_text("{not json", encoding="utf-8")
    bayes.mle(lambda x: x.mean())                 # a self-check starts a new record
    assert "progress record" in capsys.readouterr().out
    assert [a["status"] for a in record.read(work / record.NAME)[0]] == ["✔"]


def test_a_missing_record_is_reported(work, capsys):
    assert cli.main(["progress"]) == 0
    assert "no record yet" in capsys.readouterr().out


# The progress table, from a notebook run as a student runs it ---------------------------

@pytest.mark.slow
def test_progress_table_after_running_a_students_notebook(work, monkeypatch, capsys):
    answer(work, "set the derivative of the log-likelihood", "    return x.mean()")   # right
    answer(work, "where is a Gaussian density highest", "    return x.mean()")      # wrong
    answer(work, "complete the square for the posterior",
           "# The posterior is Gaussian: completing the square gives its mean and variance.")
    monkeypatch.setenv("NFCOURSE_FAST", "1")
    assert cli.main(["progress", "--run"]) == 0
    report = capsys.readouterr().out
    print(report)
    assert re.search(r"✔ done\s+\d{4}-\d\d-\d\d \d\d:\d\d", report_line(report, "1.3b"))
    assert "✘ failing" in report_line(report, "1.3d")
    assert "✔ done" in report_line(report, "1.3")                  # the Markdown answer
    assert "○ not started" in report_line(report, "1.1")
    assert "no copy of the notebook" in report_line(report, "6.3b")
    assert "Section 1: Bayesian inference" in report
    assert report.rstrip().splitlines()[-1] == \
        f"2 of {len(ENTRIES)} done, 1 failing, next: 1.1"
    statuses = {(a["exercise"], a["status"]) for a in record.read(work / record.NAME)[0]}
    assert {("1.3b", "✔"), ("1.3d", "✘"), ("1.1", "○")} <= statuses


def test_group_table_puts_the_most_often_failing_first(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(record.ENV, raising=False)
    folders = []
    for name, failing in [("alice", ["4.5b"]), ("bob", ["4.5b", "1.4"]), ("carol", [])]:
        folder = tmp_path / name / "work"
        folder.mkdir(parents=True)
        attempts = [record.attempt(n, "", "✘", "wrong") for n in failing]
        attempts.append(record.attempt("1.3b", "", "✔"))
        record.write(folder / record.NAME, attempts)
        folders.append(str(folder))
    assert cli.main(["progress", *folders]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["exercise", "title", "alice", "bob", "carol", "failing"]
    assert lines[1].split()[0] == "4.5b" and lines[1].split()[-4:] == ["✘", "✘", "○", "2"]
    assert lines[2].split()[0] == "1.4" and lines[2].split()[-1] == "1"
    done = next(i for i, line in enumerate(lines) if line.split()[:1] == ["done"])
    assert lines[done].split() == ["done", "1", "1", "1"]
    assert lines[done - 1].split()[0] == "1.3b"           # done by all: the least stuck, last


# compare -----------------------------------------------------------------------------------

def test_compare_code_shows_a_diff(work):
    answer(work, "where is a Gaussian density highest", "    return x.mean()")
    view = comparison.exercise_comparison("1.3d", ROOT, work)
    text = view.text()
    assert "Exercise 1.3d: MAP estimate (01_bayes.py, code)" in text
    assert "hint: where is a Gaussian density highest?" in text
    assert "-    return x.mean()" in text
    assert "+    return posterior_params(x, prior_var, noise_var)[0]" in text
    assert "| " in view.text(side_by_side=True, width=100) or "!" in view.text(True, 100)
    answer(work, "set the derivative of the log-likelihood", "    return x.mean()")
    assert "line for line" in comparison.exercise_comparison("1.3b", ROOT, work).text()


def test_compare_markdown_shows_both_answers_with_the_hint(work):
    answer(work, "complete the square for the posterior", "# My answer: *complete the square*.")
    text = comparison.exercise_comparison("1.3", ROOT, work).text()
    yours, solution = text.index("── yours"), text.index("── the solution")
    assert yours < text.index("My answer: *complete the square*.") < solution
    assert "Precisions add" in text[solution:]                       # the solution's text
    assert "hint: the log-likelihood is a quadratic in mu" in text


def test_compare_in_a_notebook_renders_html(work, monkeypatch):
    monkeypatch.setenv("NFCOURSE_ROOT", str(ROOT))
    view = nfcourse.compare("1.5")          # Markdown + code, found from the kernel's folder
    html = view._repr_html_()
    assert "<h4>Exercise 1.5:" in html and "<span style=" in html   # the diff, highlighted
    assert "Markdown answer" in html and "hint:" in html
    assert view.yours == work / "01_bayes.py"      # the copy in the kernel's folder


def test_compare_lists_and_refuses_unknown_numbers(capsys, monkeypatch):
    monkeypatch.setenv("NFCOURSE_ROOT", str(ROOT))
    assert cli.main(["compare"]) == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^  {re.escape(e.number)}\s", out, re.M) for e in ENTRIES)
    assert cli.main(["compare", "9.9"]) == 2
    err = capsys.readouterr().err
    assert "no exercise '9.9'" in err and "1.3b, 1.3c" in err and "6.3b" in err


def test_student_answers_are_found_around_the_stub():
    assert exercises.between(["# %%", "def f():", "    x = 1", "    return x", ""],
                             [["# %%", "def f():"], [""]]) == [["    x = 1", "    return x"]]
    assert exercises.between(["# %%", "def g():", "    pass"], [["# %%", "def f():"], []]) \
        is None

