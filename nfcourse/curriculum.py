"""Student notebooks from solution notebooks: one source, two audiences.

Each section is written once, as a jupytext py:percent file ``solutions/NN_topic.py``.
Inside it, the answer to an exercise sits between two marker lines:

Code (the text after ``BEGIN SOLUTION`` is the hint the student sees)::

    def mle(x):
        ### BEGIN SOLUTION the MLE of a Gaussian mean is a sample statistic
        return x.mean()
        ### END SOLUTION

Markdown (HTML comments, so the solution notebook renders cleanly)::

    # <!-- BEGIN SOLUTION -->
    # Since log t <= t - 1, ...
    # <!-- END SOLUTION -->

A whole cell that gives an answer away (a check that asserts or prints what an exercise
asks for, a Markdown cell that states it, a demonstration that answers a later question)
is marked *solution only* by its first line, code or Markdown::

    # %%
    ### SOLUTION ONLY the answers to (a) to (c), checked
    assert n_free == 9

    # %% [markdown]
    # <!-- SOLUTION ONLY the check of 2.3 -->
    # With q the exact posterior, the "KL" is -log p(x) ...

It stays in the solution notebook (CI runs its asserts there) and is left out of the
student's. A run of consecutive solution-only cells becomes one Markdown cell pointing to
the solution notebook, naming what is there (the text after the marker; without one,
"the worked check of this exercise"). Cells after it must not need its variables, and it
may not hold an exercise (a BEGIN SOLUTION region): the student would never see it.

:func:`build` writes ``curriculum/NN_topic.py`` with every marked region replaced by a
stub: ``raise NotImplementedError(...)`` carrying the hint for code, and a prompt for
Markdown, and every solution-only cell replaced by the pointer.
``python -m nfcourse build-curriculum`` runs it; the test suite fails when
``curriculum/`` is out of date, when solution text leaks into it, or when a student
notebook asserts or states an answer after its exercise.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from nfcourse.utils import repo_root  # found in one place; curriculum.repo_root is kept

#: Every stub's NotImplementedError message starts with this, so a test can tell an
#: unfinished exercise from a real failure.
STUB_PREFIX = "Exercise not done yet"

_CODE_BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?:\s+(?P<hint>.*?))?\s*$")
_CODE_END = re.compile(r"^\s*### END SOLUTION\s*$")
_MD_BEGIN = re.compile(r"^(?P<indent>\s*)# <!-- BEGIN SOLUTION(?:\s+(?P<hint>.*?))? -->\s*$")
_MD_END = re.compile(r"^\s*# <!-- END SOLUTION -->\s*$")
_CELL = re.compile(r"^# %%(?P<rest>.*)$")
_ONLY_CODE = re.compile(r"^### SOLUTION ONLY(?:\s+(?P<what>.*?))?\s*$")
_ONLY_MD = re.compile(r"^# <!-- SOLUTION ONLY(?:\s+(?P<what>.*?))? -->\s*$")
_ONLY_ANY = re.compile(r"^\s*(?:###|# <!--) SOLUTION ONLY\b")

#: What the pointer names when a solution-only cell's marker says nothing.
ONLY_DEFAULT = "the worked check of this exercise"

_POINTER = ("*Not shown here, since it gives an answer away:* {what}. Find it in "
            "`solutions/{name}` once you have done the exercise.")

_BANNER = """\
# %% [markdown]
# > **Student version.** Fill in every `NotImplementedError` stub and every *"Your answer"*
# > prompt; the self-check cell after each exercise tells you what is right or wrong.
# > Generated from `solutions/{name}`; instructors regenerate it with
# > `python -m nfcourse build-curriculum`.
"""


class MarkerError(ValueError):
    """A solution file whose markers do not pair up."""


@dataclass
class Region:
    """One marked answer: its kind ('code' or 'markdown'), lines (1-based) and text."""

    kind: str
    start: int
    end: int
    hint: str
    body: list[str]


def find_regions(text: str, name: str = "<solution>") -> list[Region]:
    """All marked regions of a solution file, checking that markers pair up.

    >>> src = "x = 1\\n### BEGIN SOLUTION use two\\ny = 2\\n### END SOLUTION\\n"
    >>> [(r.kind, r.hint, r.body) for r in find_regions(src)]
    [('code', 'use two', ['y = 2'])]
    """
    regions: list[Region] = []
    open_region: Region | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        begin = _CODE_BEGIN.match(line) or _MD_BEGIN.match(line)
        end_kind = "code" if _CODE_END.match(line) else "markdown" if _MD_END.match(line) else None
        if begin:
            if open_region is not None:
                raise MarkerError(
                    f"{name}:{lineno}: BEGIN SOLUTION inside the region opened at line "
                    f"{open_region.start}; close that one with END SOLUTION first."
                )
            kind = "code" if begin.re is _CODE_BEGIN else "markdown"
            open_region = Region(kind, lineno, -1, (begin.group("hint") or "").strip(), [])
        elif end_kind:
            if open_region is None:
                raise MarkerError(f"{name}:{lineno}: END SOLUTION without a BEGIN SOLUTION.")
            if end_kind != open_region.kind:
                raise MarkerError(
                    f"{name}:{lineno}: a {end_kind} END SOLUTION closes the {open_region.kind} "
                    f"region opened at line {open_region.start}; use the matching marker."
                )
            open_region.end = lineno
            regions.append(open_region)
            open_region = None
        elif open_region is not None:
            if line.startswith("# %%"):
                raise MarkerError(
                    f"{name}:{lineno}: a new cell starts inside the solution region opened at "
                    f"line {open_region.start}; close it before the cell ends."
                )
            open_region.body.append(line)
    if open_region is not None:
        raise MarkerError(
            f"{name}:{open_region.start}: BEGIN SOLUTION is never closed by END SOLUTION."
        )
    return regions


@dataclass
class OnlyCell:
    """One solution-only cell: its kind, lines (1-based: its ``# %%`` line to its last line,
    trailing blank lines included), what the pointer calls it (the text after the marker, or
    "" for none) and its text after the marker line."""

    kind: str
    start: int
    end: int
    what: str
    body: list[str]


def _cells(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) 0-based line ranges of the jupytext cells: a ``# %%`` line to the line
    before the next one."""
    starts = [i for i, line in enumerate(lines) if _CELL.match(line)]
    return list(zip(starts, [s - 1 for s in starts[1:]] + [len(lines) - 1]))


def solution_only_cells(text: str, name: str = "<solution>") -> list[OnlyCell]:
    """The cells marked SOLUTION ONLY, checking that each marker opens its cell.

    >>> src = "# %%\\n### SOLUTION ONLY the check\\nassert 1 + 1 == 2\\n\\n# %%\\nx = 1\\n"
    >>> [(c.kind, c.start, c.end, c.what, c.body) for c in solution_only_cells(src)]
    [('code', 1, 4, 'the check', ['assert 1 + 1 == 2', ''])]
    """
    lines = text.splitlines()
    cells: list[OnlyCell] = []
    marker_lines: set[int] = set()
    for first, last in _cells(lines):
        markdown = re.search(r"\[(markdown|md)\]", lines[first]) is not None
        body = range(first + 1, last + 1)
        opening = next((i for i in body if lines[i].strip()), None)
        if opening is None:
            continue
        marker = (_ONLY_MD if markdown else _ONLY_CODE).match(lines[opening])
        if marker is None:
            if (_ONLY_CODE if markdown else _ONLY_MD).match(lines[opening]):
                raise MarkerError(
                    f"{name}:{opening + 1}: the wrong SOLUTION ONLY marker for this cell: a "
                    "Markdown cell opens with `# <!-- SOLUTION ONLY ... -->`, a code cell with "
                    "`### SOLUTION ONLY ...`.")
            continue
        rest = lines[opening + 1:last + 1]
        for offset, line in enumerate(rest, start=opening + 2):
            if _CODE_BEGIN.match(line) or _MD_BEGIN.match(line):
                raise MarkerError(
                    f"{name}:{offset}: an exercise (BEGIN SOLUTION) inside the solution-only "
                    f"cell of line {first + 1}; the student would never see it. Move it out.")
        marker_lines.add(opening)
        cells.append(OnlyCell("markdown" if markdown else "code", first + 1, last + 1,
                              (marker.group("what") or "").strip(), rest))
    for lineno, line in enumerate(lines):
        if _ONLY_ANY.match(line) and lineno not in marker_lines:
            raise MarkerError(f"{name}:{lineno + 1}: SOLUTION ONLY must be the first line of "
                              "its cell (it marks the whole cell).")
    return cells


def _without_solution_only(text: str, name: str) -> str:
    """The text with each run of consecutive solution-only cells replaced by one pointer."""
    lines = text.splitlines()
    cells = solution_only_cells(text, name)
    if not cells:
        return text
    out: list[str] = []
    position = 0
    runs: list[list[OnlyCell]] = []
    for cell in cells:
        if runs and runs[-1][-1].end + 1 == cell.start:
            runs[-1].append(cell)
        else:
            runs.append([cell])
    for run in runs:
        out.extend(lines[position:run[0].start - 1])
        whats = list(dict.fromkeys(cell.what for cell in run if cell.what)) or [ONLY_DEFAULT]
        pointer = _POINTER.format(what="; ".join(whats), name=Path(name).name)
        out.append("# %% [markdown]")
        out.extend(textwrap.wrap(pointer, 96, initial_indent="# > ", subsequent_indent="# > ",
                                 break_on_hyphens=False))
        last = run[-1]
        blank = 0  # keep the blank lines that separated the run from the next cell
        while last.end - 1 - blank >= last.start and not lines[last.end - 1 - blank].strip():
            blank += 1
        out.extend([""] * max(blank, 1 if last.end < len(lines) else 0))
        position = last.end
    out.extend(lines[position:])
    return "\n".join(out) + "\n"


#: A stub's lines stay within this width, so that JupyterLab shows its hint whole.
STUB_WIDTH = 99


def _stub(region: Region, indent: str) -> list[str]:
    if region.kind == "code":
        hint = f" (hint: {region.hint})" if region.hint else ""
        message = f"{STUB_PREFIX}: replace this line with your code{hint}."
        one_line = f"{indent}raise NotImplementedError({message!r})"
        if len(one_line) <= STUB_WIDTH:
            return [f"{indent}# YOUR CODE HERE", one_line]
        # the message in pieces, one string literal a line (Python joins adjacent literals)
        inner = indent + "    "
        pieces = textwrap.wrap(message, STUB_WIDTH - len(inner) - 4, drop_whitespace=False,
                               break_long_words=False, break_on_hyphens=False)
        return ([f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError("]
                + [f"{inner}{piece!r}" for piece in pieces[:-1]]
                + [f"{inner}{pieces[-1]!r})"])
    hint = f" *Hint: {region.hint}*" if region.hint else ""
    return [f"{indent}# **Your answer:** _write your derivation or explanation here._{hint}"]


#: A stub's ``raise``, its message on one line or in adjacent literals over several.
_STUB_RAISE = re.compile(r"raise NotImplementedError\(\s*((?:'(?:[^'\\\n]|\\.)*'\s*"
                         r"|\"(?:[^\"\\\n]|\\.)*\"\s*)+)\)")


def stub_messages(text: str) -> list[str]:
    """The messages of the ``raise NotImplementedError(...)`` stubs in a student notebook's
    text, in order (a long one is split over lines; Python joins the pieces).

    >>> stub_messages("raise NotImplementedError(\\n    'Exercise not done: '\\n    'add.')")
    ['Exercise not done: add.']
    """
    return [ast.literal_eval(f"({m.group(1)})") for m in _STUB_RAISE.finditer(text)]


def student_version(text: str, name: str = "<solution>") -> str:
    """The student notebook for a solution notebook's text.

    >>> src = "def f():\\n    ### BEGIN SOLUTION add\\n    return 1 + 1\\n    ### END SOLUTION\\n"
    >>> print(student_version(src).split("\\n\\n", 1)[1], end="")  # after the banner
    def f():
        # YOUR CODE HERE
        raise NotImplementedError(
            'Exercise not done yet: replace this line with your code (hint: add).')
    """
    find_regions(text, name)  # validate the markers before rewriting anything
    text = _without_solution_only(text, name)
    out: list[str] = []
    inside: Region | None = None
    for line in text.splitlines():
        begin = _CODE_BEGIN.match(line) or _MD_BEGIN.match(line)
        if begin:
            kind = "code" if begin.re is _CODE_BEGIN else "markdown"
            inside = Region(kind, 0, 0, (begin.group("hint") or "").strip(), [])
            out.extend(_stub(inside, begin.group("indent")))
        elif inside is not None:
            if _CODE_END.match(line) or _MD_END.match(line):
                inside = None
        else:
            out.append(line)
    return _with_banner("\n".join(out) + "\n", name)


def _with_banner(text: str, name: str) -> str:
    """Insert the student banner after the jupytext header (or at the top)."""
    banner = _BANNER.format(name=Path(name).name)
    if text.startswith("# ---\n"):
        end = text.index("\n# ---\n", 4) + len("\n# ---\n")
        return text[:end] + "\n" + banner + text[end:]
    return banner + "\n" + text


def build(solutions: Path | None = None, curriculum: Path | None = None,
          check: bool = False) -> list[Path]:
    """Write ``curriculum/*.py`` from ``solutions/*.py``; return the files that changed.

    With ``check=True`` nothing is written: the returned list names the student
    notebooks that are out of date (missing, different or orphaned).
    """
    root = None if solutions and curriculum else repo_root()
    solutions = solutions or root / "solutions"
    if not solutions.is_dir():
        raise FileNotFoundError(f"no solutions/ folder at {solutions}: the student notebooks "
                                "are built from a clone of the course")
    curriculum = curriculum or root / "curriculum"
    curriculum.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    sources = sorted(solutions.glob("[0-9][0-9]_*.py"))
    for src in sources:
        target = curriculum / src.name
        text = student_version(src.read_text(encoding="utf-8"), name=f"solutions/{src.name}")
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            changed.append(target)
            if not check:
                target.write_text(text, encoding="utf-8")
    wanted = {src.name for src in sources}
    for orphan in sorted(curriculum.glob("[0-9][0-9]_*.py")):
        if orphan.name not in wanted:
            changed.append(orphan)
            if not check:
                orphan.unlink()
    return changed
