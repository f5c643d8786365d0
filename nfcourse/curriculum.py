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

:func:`build` writes ``curriculum/NN_topic.py`` with every marked region replaced by a
stub: ``raise NotImplementedError(...)`` carrying the hint for code, and a prompt for
Markdown. ``python -m nfcourse build-curriculum`` runs it; the test suite fails when
``curriculum/`` is out of date or when solution text leaks into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: Every stub's NotImplementedError message starts with this, so a test can tell an
#: unfinished exercise from a real failure.
STUB_PREFIX = "Exercise not done yet"

_CODE_BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?:\s+(?P<hint>.*?))?\s*$")
_CODE_END = re.compile(r"^\s*### END SOLUTION\s*$")
_MD_BEGIN = re.compile(r"^(?P<indent>\s*)# <!-- BEGIN SOLUTION(?:\s+(?P<hint>.*?))? -->\s*$")
_MD_END = re.compile(r"^\s*# <!-- END SOLUTION -->\s*$")

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


def _stub(region: Region, indent: str) -> list[str]:
    if region.kind == "code":
        hint = f" (hint: {region.hint})" if region.hint else ""
        message = f"{STUB_PREFIX}: replace this line with your code{hint}."
        return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({message!r})"]
    hint = f" *Hint: {region.hint}*" if region.hint else ""
    return [f"{indent}# **Your answer:** _write your derivation or explanation here._{hint}"]


def student_version(text: str, name: str = "<solution>") -> str:
    """The student notebook for a solution notebook's text.

    >>> src = "def f():\\n    ### BEGIN SOLUTION add\\n    return 1 + 1\\n    ### END SOLUTION\\n"
    >>> print(student_version(src).split("\\n\\n", 1)[1], end="")  # after the banner
    def f():
        # YOUR CODE HERE
        raise NotImplementedError('Exercise not done yet: replace this line with your code (hint: add).')
    """
    find_regions(text, name)  # validate the markers before rewriting anything
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


def repo_root() -> Path:
    """The checkout this package was installed from (solutions/ and curriculum/ live there)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "solutions").is_dir():
        raise FileNotFoundError(
            f"no solutions/ folder next to the nfcourse package ({root}); build-curriculum "
            "works from a git checkout of the course, installed with `pip install -e .`."
        )
    return root


def build(solutions: Path | None = None, curriculum: Path | None = None,
          check: bool = False) -> list[Path]:
    """Write ``curriculum/*.py`` from ``solutions/*.py``; return the files that changed.

    With ``check=True`` nothing is written: the returned list names the student
    notebooks that are out of date (missing, different or orphaned).
    """
    root = None if solutions and curriculum else repo_root()
    solutions = solutions or root / "solutions"
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
