"""Your answer beside the solution's, exercise by exercise.

``python3 tasks.py compare 6.3b`` prints, for each part of Exercise 6.3b, the student's
answer from ``work/`` against the solution's from ``solutions/``, both found through the
notebooks' own markers (:mod:`nfcourse.exercises`): code as a unified diff (``-`` only in
yours, ``+`` only in the solution) or side by side, Markdown one answer after the other,
with the hint. In a notebook, ``nfcourse.compare("6.3b")`` shows the same as HTML, the
diff highlighted and the Markdown rendered (with its LaTeX).
"""

from __future__ import annotations

import difflib
import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from nfcourse import exercises
from nfcourse.utils import repo_root


class UnknownExercise(LookupError):
    """An exercise number the course does not have; the message lists the valid ones."""


@dataclass
class Comparison:
    """One exercise: its entry, the student's answer to each part (None where their copy
    lacks it), and the two files compared."""

    entry: exercises.Entry
    answers: list[list[str] | None]
    yours: Path
    solution: Path

    def __str__(self) -> str:
        return self.text()

    def text(self, side_by_side: bool = False, width: int | None = None) -> str:
        """The comparison as plain text (a unified diff, or ``side_by_side`` columns)."""
        width = width or shutil.get_terminal_size((120, 24)).columns
        out = [self.heading()]
        for part, answer in zip(self.entry.parts, self.answers):
            out += ["", self._part_heading(part)]
            if answer is None:
                out.append(f"(no answer found in {self.yours}: is the notebook there?)")
            if part.kind == "code":
                out.append(code_view(answer or [], part.solution, self._names(), side_by_side,
                                     width))
            else:
                out += [f"── yours ({self.yours}) ──", *markdown_text(answer or []),
                        f"── the solution ({self.solution}) ──",
                        *markdown_text(part.solution)]
        return "\n".join(out)

    def heading(self) -> str:
        return (f"Exercise {self.entry.number}: {self.entry.title} "
                f"({self.entry.notebook}, {self.entry.kinds})")

    def _part_heading(self, part: exercises.Part) -> str:
        kind = "Code" if part.kind == "code" else "Markdown answer"
        hint = f"  (hint: {part.hint})" if part.hint else ""
        return f"{kind}, in {part.where}{hint}"

    def _names(self) -> tuple[str, str]:
        return f"yours ({self.yours})", f"solution ({self.solution})"

    def _repr_html_(self) -> str:
        return comparison_html(self)


def markdown_text(lines: list[str]) -> list[str]:
    """Markdown lines of a py:percent cell without their leading ``# ``."""
    return [re.sub(r"^\s*# ?", "", line) if line.lstrip().startswith("#") else line
            for line in lines]


def code_view(yours: list[str], solution: list[str], names: tuple[str, str],
              side_by_side: bool = False, width: int = 120) -> str:
    """A unified diff of the two answers (whole, as context), or two columns."""
    if exercises.strip_blank(yours) == exercises.strip_blank(solution):
        return "Your code is the solution's, line for line."
    if side_by_side:
        return columns(yours, solution, names, width)
    diff = difflib.unified_diff(yours, solution, *names, n=max(len(yours), len(solution)),
                                lineterm="")
    return "\n".join(diff)


def columns(left: list[str], right: list[str], names: tuple[str, str], width: int) -> str:
    """Two answers side by side; the middle mark says ``|`` same, ``!`` changed, ``<`` only
    on the left, ``>`` only on the right."""
    half = max(20, (width - 3) // 2)

    def cut(text: str) -> str:
        return (text if len(text) <= half else text[:half - 1] + "…").ljust(half)

    out = [f"{cut(names[0])}   {names[1]}", f"{'-' * half}   {'-' * half}"]
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        mark = {"equal": "|", "replace": "!", "delete": "<", "insert": ">"}[tag]
        for k in range(max(i2 - i1, j2 - j1)):
            a = left[i1 + k] if i1 + k < i2 else ""
            b = right[j1 + k] if j1 + k < j2 else ""
            out.append(f"{cut(a)} {mark} {b[:half]}".rstrip())
    return "\n".join(out)


def exercise_comparison(number: str, root: Path | None = None, folder: Path | None = None
               ) -> Comparison:
    """Exercise ``number`` of the course at ``root``, with the answers in ``folder`` (by
    default the student's, :func:`nfcourse.exercises.work_folder`)."""
    root = root or repo_root()
    entries = exercises.catalogue(root)
    entry = exercises.find(entries, number)
    if entry is None:
        valid = ", ".join(e.number for e in entries)
        raise UnknownExercise(f"there is no exercise {number!r}. The exercises are: {valid}")
    folder = exercises.work_folder(root, folder)
    solution, yours = root / "solutions" / entry.notebook, folder / entry.notebook
    found = exercises.answers(solution, yours) if yours.exists() else {}
    return Comparison(entry, [found.get(p.index) for p in entry.parts], _shown(yours, root),
                      _shown(solution, root))


def _shown(path: Path, root: Path) -> Path:
    """A path as short as it can be said: relative to the course when inside it."""
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def compare(number: str) -> Comparison:
    """In a notebook: show Exercise ``number``, your answer beside the solution's.

    ``nfcourse.compare("6.3b")`` as the last line of a cell renders it as HTML; ``print``
    it for plain text."""
    return exercise_comparison(number)


def listing(root: Path) -> str:
    """Every exercise: number, kind, notebook and title."""
    body = [[e.number, e.kinds, e.notebook, e.title] for e in exercises.catalogue(root)]
    return exercises.table(["exercise", "kind", "notebook", "title"], body)


# HTML ------------------------------------------------------------------------------------

def _markdown_html(lines: list[str]) -> str:
    """Markdown rendered to HTML (math left for JupyterLab to typeset); plain text if
    nbconvert's renderer is missing."""
    text = "\n".join(markdown_text(lines))
    try:
        from nbconvert.filters.markdown_mistune import markdown2html_mistune
    except ImportError:
        return f"<pre>{html.escape(text)}</pre>"
    return markdown2html_mistune(text)


def _diff_html(yours: list[str], solution: list[str], names: tuple[str, str]) -> str:
    """The unified diff, highlighted by pygments (inline styles: no stylesheet needed)."""
    text = code_view(yours, solution, names)
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import DiffLexer
    except ImportError:
        return f"<pre>{html.escape(text)}</pre>"
    return highlight(text, DiffLexer(), HtmlFormatter(noclasses=True, nobackground=True))


def comparison_html(view: Comparison) -> str:
    """The comparison as HTML, for a notebook's output."""
    out = [f"<h4>{html.escape(view.heading())}</h4>"]
    box = "border-left:3px solid {};padding:0 0.8em;margin:0.4em 0"
    for part, answer in zip(view.entry.parts, view.answers):
        hint = f" — <i>hint: {html.escape(part.hint)}</i>" if part.hint else ""
        kind = "Code" if part.kind == "code" else "Markdown answer"
        out.append(f"<p><b>{kind}</b>, in <code>{html.escape(part.where)}</code>{hint}</p>")
        if part.kind == "code":
            out.append(_diff_html(answer or [], part.solution, view._names()))
            continue
        for label, lines, colour in ((f"yours ({view.yours})", answer or [], "#d9822b"),
                                     (f"the solution ({view.solution})", part.solution,
                                      "#2b8a3e")):
            out.append(f"<div style='{box.format(colour)}'><p><b>{html.escape(label)}</b></p>"
                       f"{_markdown_html(lines)}</div>")
    return "<div class='nfcourse-compare'>" + "\n".join(out) + "</div>"
