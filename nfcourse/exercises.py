"""The course's exercises, read from the notebooks themselves, and a student's answers.

An exercise is a number, a title and one or more *parts*: the marked regions of the
solution notebooks (``### BEGIN SOLUTION`` for code, ``<!-- BEGIN SOLUTION -->`` for
Markdown; see :mod:`nfcourse.curriculum`). Numbers are the ones the student sees:

- a code part takes its self-check's number and title ("Exercise 4.5b (the VAE's ELBO per
  data point)"): the check called on the function the region sits in, as in
  ``check.elbo(elbo)``, names its :class:`~nfcourse.checks.core.Exercise`;
- a Markdown part takes the number of its ``## N.M title`` heading.

Parts with the same number are one exercise (1.5: the derivation and the code), titled by
the heading. Nothing here is a hand-written list: a new exercise in ``solutions/`` is a new
row.

The student's answer to a part is found in their copy (``work/NN_*.py``) as the text
between the unchanged lines around the stub: the student notebook's cells are matched to
the copy's (:class:`difflib.SequenceMatcher`, so added or deleted cells do not matter), and
within the cell the text before and after the stub marks the answer. When the student has
changed those lines too, the whole cell is the answer.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from nfcourse.checks.record import holds_student_notebooks
from nfcourse.curriculum import Region, _stub, find_regions, student_version

_HEADING = re.compile(r"^# ## (?:(?P<number>\d+\.\d+)\s+)?(?P<title>.*?)\s*$")
_SECTION = re.compile(r"^# # Section \d+:\s*(?P<title>.*?)\s*$")
_CHECKS = re.compile(r"^from nfcourse\.checks import (\w+) as check\b", re.M)
_DEF = re.compile(r"^(?P<indent>\s*)def (?P<name>\w+)\(")


@dataclass
class Part:
    """One marked answer: its kind ('code' or 'markdown'), hint, the solution's lines, the
    stub's lines, where it sits (the ``def`` line or the heading), and its index among the
    notebook's marked regions (the key of :func:`answers`)."""

    kind: str
    hint: str
    solution: list[str]
    stub: list[str]
    where: str
    index: int


@dataclass
class Entry:
    """One exercise: its number, title, notebook (file name), section, and parts."""

    number: str
    title: str
    notebook: str
    section: int
    section_title: str
    parts: list[Part] = field(default_factory=list)

    @property
    def kinds(self) -> str:
        """'code', 'Markdown' or 'Markdown + code', as the parts go."""
        names = {"code": "code", "markdown": "Markdown"}
        return " + ".join(dict.fromkeys(names[p.kind] for p in self.parts))


def cells(lines: list[str]) -> list[list[str]]:
    """A py:percent notebook's lines cut at each ``# %%`` line (the header is cell 0)."""
    starts = [0] + [i for i, line in enumerate(lines) if line.startswith("# %%") and i > 0]
    return [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)])]


def _heading(lines: list[str], before: int) -> tuple[str | None, str]:
    """The number (None if it has none) and title of the ``## `` heading above a line."""
    for line in reversed(lines[:before]):
        if (match := _HEADING.match(line)):
            return match.group("number"), match.group("title")
    return None, ""


def _enclosing_def(lines: list[str], region: Region) -> str | None:
    """The ``def`` line of the function a code region sits in (None at top level)."""
    indent = len(lines[region.start - 1]) - len(lines[region.start - 1].lstrip())
    for line in reversed(lines[:region.start - 1]):
        match = _DEF.match(line)
        if match and len(match.group("indent")) < indent:
            return line.strip()
    return None


def _check_exercise(text: str, function: str | None):
    """The self-check's Exercise for the function a code region sits in, or None."""
    module = _CHECKS.search(text)
    if module is None or function is None:
        return None
    name = _DEF.match(function).group("name")
    call = re.search(rf"\bcheck\.(\w+)\(\s*{name}\b", text)
    if call is None:
        return None
    checks = importlib.import_module(f"nfcourse.checks.{module.group(1)}")
    return getattr(getattr(checks, call.group(1), None), "exercise", None)


def _stub_cells(student: list[str], regions: list[Region], lines: list[str]
                ) -> list[tuple[int, list[str]]]:
    """For each region, in order: the index of the student notebook's cell holding its
    stub, and the stub's lines."""
    starts = [0] + [i for i, line in enumerate(student) if line.startswith("# %%") and i > 0]
    found, position = [], 0
    for region in regions:
        indent = re.match(r"\s*", lines[region.start - 1]).group(0)
        stub = _stub(region, indent)
        while student[position:position + len(stub)] != stub:
            position += 1
            if position >= len(student):
                raise ValueError(f"the stub of line {region.start} is not in the student "
                                 "notebook: is curriculum.student_version changed?")
        found.append((sum(1 for s in starts if s <= position) - 1, stub))
        position += len(stub)
    return found


def _number(text: str, lines: list[str], region: Region, section: int, spare: list[int]
            ) -> tuple[str, str, str]:
    """(number, title, where) of a region: a code part's from its check, else the heading's."""
    number, title = _heading(lines, region.start)
    where = f"## {number} {title}" if number else f"## {title}"
    if region.kind == "code":
        where = _enclosing_def(lines, region) or where
        exercise = _check_exercise(text, _enclosing_def(lines, region))
        if exercise is not None:
            return exercise.number, exercise.title, where
    if number is None:
        spare[0] += 1
        number = f"{section}.x{spare[0]}"
    return number, title, where


def notebook_exercises(solution: Path) -> list[Entry]:
    """The exercises of one solution notebook, in the order they first appear."""
    text = solution.read_text(encoding="utf-8")
    lines = text.splitlines()
    regions = find_regions(text, str(solution))
    student = student_version(text, f"solutions/{solution.name}").splitlines()
    section = int(solution.name[:2])
    section_title = next((m.group("title") for line in lines if (m := _SECTION.match(line))),
                         solution.stem)
    entries: dict[str, Entry] = {}
    spare = [0]
    stubs = _stub_cells(student, regions, lines)
    for index, (region, (_, stub)) in enumerate(zip(regions, stubs)):
        number, title, where = _number(text, lines, region, section, spare)
        entry = entries.setdefault(number, Entry(number, title, solution.name, section,
                                                 section_title))
        if region.kind == "markdown" and _heading(lines, region.start)[0] == number:
            entry.title = title       # the heading names the whole exercise
        entry.parts.append(Part(region.kind, region.hint, region.body, stub, where, index))
    return list(entries.values())


def catalogue(root: Path) -> list[Entry]:
    """Every exercise of the course, section by section, from ``root/solutions``."""
    solutions = sorted((root / "solutions").glob("[0-9][0-9]_*.py"))
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks in {root / 'solutions'}")
    return [entry for path in solutions for entry in notebook_exercises(path)]


def find(entries: list[Entry], number: str) -> Entry | None:
    """The exercise numbered ``number`` ("6.3b", "Exercise 6.3B"), or None."""
    wanted = re.sub(r"^exercise\s*", "", number.strip(), flags=re.I).lower()
    return next((e for e in entries if e.number.lower() == wanted), None)


def work_folder(root: Path, folder: Path | None = None) -> Path:
    """The student's folder: ``folder`` if given, else the working directory when it holds
    student notebooks (a notebook's kernel runs in its folder), else ``root/work``."""
    if folder is not None:
        return folder
    return Path.cwd() if holds_student_notebooks(Path.cwd()) else root / "work"


# The student's answers --------------------------------------------------------------------

def strip_blank(lines: list[str]) -> list[str]:
    """The lines without blank lines at either end, trailing spaces removed."""
    lines = [line.rstrip() for line in lines]
    while lines and not lines[0]:
        lines = lines[1:]
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def _find(lines: list[str], wanted: list[str], start: int) -> int | None:
    """Where ``wanted`` first occurs in ``lines`` at or after ``start``."""
    for i in range(start, len(lines) - len(wanted) + 1):
        if lines[i:i + len(wanted)] == wanted:
            return i
    return None


def between(cell: list[str], segments: list[list[str]]) -> list[list[str]] | None:
    """The text between consecutive ``segments`` (the unchanged lines around each stub),
    each found in ``cell`` in order; None when one is not there.

    >>> between(["a", "x", "y", "b"], [["a"], ["b"]])
    [['x', 'y']]
    """
    cell = strip_blank(cell)
    first = strip_blank(segments[0])
    if cell[:len(first)] != first:
        return None
    position, answers = len(first), []
    for k, segment in enumerate(segments[1:], start=1):
        segment = strip_blank(segment)
        if k == len(segments) - 1:
            end = len(cell) - len(segment)
            if end < position or (segment and cell[end:] != segment):
                return None
        else:
            end = _find(cell, segment, position) if segment else position
            if end is None:
                return None
        answers.append(strip_blank(cell[position:end]))
        position = end + len(segment)
    return answers


def _segments(cell: list[str], stubs: list[list[str]]) -> list[list[str]]:
    """A student-notebook cell cut at its stubs: the unchanged text around them."""
    segments, position = [], 0
    for stub in stubs:
        at = _find(cell, stub, position)
        segments.append(cell[position:at])
        position = at + len(stub)
    return segments + [cell[position:]]


def _matched_cells(ours: list[list[str]], theirs: list[list[str]]) -> dict[int, int]:
    """Which of the copy's cells (``theirs``) stands for each student-notebook cell."""
    a, b = ["\n".join(strip_blank(c)) for c in ours], ["\n".join(strip_blank(c)) for c in theirs]
    matched: dict[int, int] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for i in range(i1, i2):
            if tag == "equal":
                matched[i] = j1 + i - i1
            elif tag == "replace":
                ratio = [difflib.SequenceMatcher(None, a[i], b[j]).ratio() for j in range(j1, j2)]
                matched[i] = j1 + max(range(len(ratio)), key=ratio.__getitem__)
    return matched


def answers(solution: Path, copy: Path) -> dict[int, list[str] | None]:
    """The student's answer to each region of a solution notebook, by the region's index
    (its order in the notebook): the lines in their copy, or None when the cell is gone."""
    text = solution.read_text(encoding="utf-8")
    lines = text.splitlines()
    regions = find_regions(text, str(solution))
    ours = cells(student_version(text, f"solutions/{solution.name}").splitlines())
    theirs = cells(copy.read_text(encoding="utf-8").splitlines())
    matched = _matched_cells(ours, theirs)
    stubs = _stub_cells([line for c in ours for line in c], regions, lines)
    found: dict[int, list[str] | None] = {}
    for cell in sorted({c for c, _ in stubs}):
        indices = [k for k, (c, _) in enumerate(stubs) if c == cell]
        copy_cell = theirs[matched[cell]] if cell in matched else None
        if copy_cell is None:
            found.update({k: None for k in indices})
            continue
        got = between(copy_cell, _segments(ours[cell], [stubs[k][1] for k in indices]))
        whole = strip_blank(copy_cell[1:])
        found.update({k: (got[n] if got else whole) for n, k in enumerate(indices)})
    return found


def answered(answer: list[str] | None, part: Part) -> bool:
    """Whether an answer is more than the untouched stub."""
    if answer is None:
        return False
    return bool(strip_blank(answer)) and strip_blank(answer) != strip_blank(part.stub)


def table(header: list[str], body: list[list[str]], indent: str = "  ") -> str:
    """A plain-text table, columns as wide as their widest cell.

    >>> print(table(["n", "title"], [["1.1", "a"], ["10.2", "b"]]))
      n     title
      1.1   a
      10.2  b
    """
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [header, *body])
