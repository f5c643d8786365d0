"""Where a student stands: every exercise done (✔), failing (✘), started (◐) or not (○).

Read from two places, never by rerunning anything (unless asked with ``run=True``):

- the progress record (:mod:`nfcourse.checks.record`), where each self-check run appended
  its outcome: a code part is ✔ or ✘ as its latest check said;
- the student's notebooks: a Markdown part is ✔ once its *"Your answer"* prompt has been
  replaced, and a code part whose stub has been replaced but never checked is ◐.

An exercise is ✘ if any part is, ✔ if every part is, ○ if none is started, else ◐.
:func:`student_report` prints one table per section and a last line such as "31 of 58
done, 3 failing, next: 4.5b" (the first exercise not done); :func:`group_report` prints
one table of exercises against students, the exercises most often failing first.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nfcourse import exercises
from nfcourse.checks import record

DONE, FAILING, STARTED, TODO = "✔", "✘", "◐", "○"
WORDS = {DONE: "done", FAILING: "failing", STARTED: "started", TODO: "not started"}
_TITLE_WIDTH = 52


@dataclass
class Row:
    """One exercise's standing: its status, last attempt (None: never checked) and a note
    on its parts."""

    entry: exercises.Entry
    status: str
    last: datetime | None
    note: str = ""


def latest(attempts: list[dict]) -> dict[str, dict]:
    """The latest attempt of each exercise (the record is in time order)."""
    return {attempt["exercise"]: attempt for attempt in attempts}


def part_status(part: exercises.Part, answer: list[str] | None, attempt: dict | None) -> str:
    """✔ ✘ ◐ or ○ for one part (see the module's docstring)."""
    written = exercises.answered(answer, part)
    if part.kind == "markdown":
        return DONE if written else TODO
    if attempt is not None and attempt["status"] in (DONE, FAILING):
        return attempt["status"]
    return STARTED if written else TODO


def combined(statuses: list[str]) -> str:
    """An exercise's status from its parts'."""
    if FAILING in statuses:
        return FAILING
    if all(s == DONE for s in statuses):
        return DONE
    return TODO if all(s == TODO for s in statuses) else STARTED


def _row(entry: exercises.Entry, found: dict[int, list[str] | None] | None,
         attempt: dict | None) -> Row:
    statuses = [part_status(p, None if found is None else found.get(p.index), attempt)
                for p in entry.parts]
    note = "no copy of the notebook" if found is None else ""
    if len(entry.parts) > 1 and found is not None:
        names = {"code": "code", "markdown": "Markdown"}
        note = ", ".join(f"{names[p.kind]} {s}" for p, s in zip(entry.parts, statuses))
    if attempt is not None and attempt["status"] == FAILING and attempt.get("detail"):
        note = (note + ": " if note else "") + _short(attempt["detail"], 60)
    last = datetime.fromisoformat(attempt["time"]) if attempt else None
    return Row(entry, combined(statuses), last, note)


def rows(root: Path, folder: Path) -> tuple[list[Row], str | None]:
    """Every exercise's row for the student whose notebooks are in ``folder``, and what was
    wrong with their record (None if nothing)."""
    attempts, problem = record.repair(folder / record.NAME)
    last = latest(attempts)
    found: dict[str, dict | None] = {}
    result = []
    for entry in exercises.catalogue(root):
        if entry.notebook not in found:
            copy = folder / entry.notebook
            found[entry.notebook] = (exercises.answers(root / "solutions" / entry.notebook,
                                                       copy) if copy.exists() else None)
        result.append(_row(entry, found[entry.notebook], last.get(entry.number)))
    return result, problem


def _short(text: str, width: int = _TITLE_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def summary(result: list[Row]) -> str:
    """"31 of 58 done, 3 failing, 2 started, next: 4.5b"."""
    count = {s: sum(r.status == s for r in result) for s in (DONE, FAILING, STARTED)}
    line = f"{count[DONE]} of {len(result)} done, {count[FAILING]} failing"
    if count[STARTED]:
        line += f", {count[STARTED]} started"
    upcoming = next((r.entry.number for r in result if r.status != DONE), None)
    return line + (f", next: {upcoming}" if upcoming else ", all done")


def student_report(root: Path, folder: Path) -> str:
    """The student's progress: one table per section, then the summary line."""
    result, problem = rows(root, folder)
    out = [f"Progress of the notebooks in {folder}"]
    if problem:
        out.append(f"note: {problem}. `python3 tasks.py progress --run` reruns your "
                   "notebooks to refill it.")
    for notebook in dict.fromkeys(r.entry.notebook for r in result):
        section = [r for r in result if r.entry.notebook == notebook]
        head = section[0].entry
        out += ["", f"Section {head.section}: {head.section_title} ({notebook})"]
        body = [[r.entry.number, _short(r.entry.title), f"{r.status} {WORDS[r.status]}",
                 _when(r.last), r.note] for r in section]
        out.append(exercises.table(["exercise", "title", "status", "last attempt", "parts"], body))
    return "\n".join(out + ["", summary(result)])


def student_names(folders: list[Path]) -> list[str]:
    """A short name per folder: its own name, or its parent's for a folder called work."""
    names = []
    for folder in folders:
        path = folder.resolve()
        name = path.parent.name if path.name == "work" else path.name
        names.append(name if name not in names else f"{name}-{len(names) + 1}")
    return names


def group_report(root: Path, folders: list[Path]) -> str:
    """Exercises against students, the exercises most often failing first (then the least
    often done), and each student's count of exercises done."""
    names = student_names(folders)
    per_student, notes = [], []
    for name, folder in zip(names, folders):
        result, problem = rows(root, folder)
        per_student.append(result)
        if problem:
            notes.append(f"note: {name}: {problem}")
    entries = [r.entry for r in per_student[0]]
    statuses = [[result[i].status for result in per_student] for i in range(len(entries))]
    order = sorted(range(len(entries)), key=lambda i: (-statuses[i].count(FAILING),
                                                        statuses[i].count(DONE), i))
    body = [[entries[i].number, _short(entries[i].title, 40), *statuses[i],
             str(statuses[i].count(FAILING))] for i in order]
    body.append(["", "done", *[str(sum(r.status == DONE for r in result))
                               for result in per_student], ""])
    legend = "✔ done  ✘ failing  ◐ started  ○ not started"
    return "\n".join([*notes, exercises.table(["exercise", "title", *names, "failing"], body), "",
                      legend])


def run_notebooks(folder: Path, timeout: int = 600) -> None:
    """Execute each student notebook in ``folder`` headless, in that folder (as JupyterLab
    would: so its self-checks write the folder's record); the notebooks are not changed."""
    import jupytext
    from nbclient import NotebookClient

    for path in sorted(folder.glob("[0-9][0-9]_*.py")):
        print(f"running {path.name} ...", end=" ", flush=True)
        started = time.perf_counter()
        client = NotebookClient(jupytext.read(path), km=_this_python_kernel(),
                                allow_errors=True, timeout=timeout,
                                resources={"metadata": {"path": str(folder)}})
        client.execute()
        print(f"{time.perf_counter() - started:.0f} s", flush=True)


def _this_python_kernel():
    """A kernel manager that starts this Python's ipykernel (never another
    installation's "python3" kernel, which may lack nfcourse)."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                    "{connection_file}"], display_name="nfcourse",
                              language="python")

    return KernelManager(kernel_name="nfcourse", kernel_spec_manager=ThisPython())
