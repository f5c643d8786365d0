"""The student notebooks: generated from the solutions, free of solution text, and
failing, when executed, only at exercise stubs."""

from __future__ import annotations

import ast
import os
import re
import textwrap
import time
from pathlib import Path

import jupytext
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

from nfcourse import curriculum
from nfcourse.checks.core import NOT_ATTEMPTED
from nfcourse.curriculum import (ONLY_DEFAULT, STUB_PREFIX, MarkerError, find_regions,
                                 solution_only_cells, stub_messages, student_version)

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
    """No line of an answer region or of a SOLUTION ONLY cell is in the student notebook
    (unless the same line also stands in the shared text, say a blank `return`)."""
    text = solution.read_text(encoding="utf-8")
    secrets = [(r.start, r.body) for r in find_regions(text, solution.name)]
    secrets += [(c.start, c.body) for c in solution_only_cells(text, solution.name)]
    outside = set(_lines(_without_secrets(text)))
    student = set(_lines((ROOT / "curriculum" / solution.name).read_text(encoding="utf-8")))
    for start, body in secrets:
        secret = [line for line in _lines("\n".join(body)) if line not in outside]
        leaked = [line for line in secret if line in student]
        assert not leaked, f"{solution.name}:{start}: solution text in curriculum/: {leaked}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_no_answer_after_its_exercise(solution: Path):
    """What a student sees after an exercise, up to the next section heading, neither asserts
    nor states its answer (move such a cell into a SOLUTION ONLY cell). Three patterns:

    - an `assert` that compares (`==`, `abs(a - b)`, `isclose`, `allclose`) with a number
      that the notebook has not shown before: the answer, asked for and then asserted
      (1.2's p(S=1 | W=1) = 0.4298, 1.3's posterior variance 1 / 21);
    - a number of three or more significant digits that the answer region states and the
      question does not (1.2's 0.4298);
    - a formula (a LaTeX span with an operator or relation) that the answer region states
      and the question does not (2.3's "KL to p(z, x)" = KL - log p(x)).

    A check of a claim the question states (1.5's closed form against Monte Carlo) passes:
    its numbers and formulas are shown before the exercise.

    A fourth pattern covers words: an assert message, a plot's title or label, or a comment in
    a code cell between the exercise's own heading and the end of its section that shares a
    phrase (three content words in a row) with the answer, when neither the text before that
    heading nor the Markdown between it and the prompt has the phrase (4.5(b)'s "the log-variances carry less class information than
    the means", shown above its prompt)."""
    found = answers_after_exercises(solution.read_text(encoding="utf-8"),
                                    (ROOT / "curriculum" / solution.name).read_text("utf-8"))
    assert not found, f"{solution.name}: answers in view after their exercise:\n" + "\n".join(found)


_REFERENCE = re.compile(r"reference run|\brun [A-Z]\b", re.I)


#: An operator with spaces on both sides: how the notebooks write formulas in prose.
_SPACED_OPERATOR = re.compile(r"(?<=\S) [+−\-*/·×=] (?=\S)")


def stub_docstring_formulas(text: str) -> list[str]:
    """The sentences of stub docstrings (the docstring of a function whose body is an answer
    region) that write a formula, two spaced operators or more, without saying it is the
    one the question gave ("as above"): a formula there hands the student the answer."""
    lines, found = text.splitlines(), []
    for region in find_regions(text):
        if region.kind != "code":
            continue
        top = max((i for i in range(region.start - 1) if lines[i].lstrip().startswith("def ")),
                  default=None)
        if top is None:
            continue
        doc = re.search(r'"""(.*?)"""', "\n".join(lines[top + 1:region.start - 1]), re.S)
        for sentence in re.split(r"(?<=[.;])\s", doc.group(1) if doc else ""):
            if len(_SPACED_OPERATOR.findall(sentence)) >= 2 and "as above" not in sentence:
                found.append(f"line {top + 1}: {' '.join(sentence.split())}")
    return found


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_no_stub_docstring_states_the_answer(solution: Path):
    found = stub_docstring_formulas(solution.read_text("utf-8"))
    assert not found, (f"{solution.name}: a stub's docstring writes a formula the question does "
                       "not give (say what to compute; a formula restated from the question "
                       "says 'as above'):\n" + "\n".join(found))


def test_stub_docstring_detector_catches_the_old_free_energy_leak():
    old = ("def flow_free_energy(log_q0, sum_log_det, log_joint):\n"
           '    """R&M\'s free energy per image: mean over draws of log q0 − Σ log|det| − log p(x, z_K)."""\n'
           "    ### BEGIN SOLUTION what is log q_K(z_K)?\n"
           "    return (log_q0 - sum_log_det - log_joint).mean(0)\n    ### END SOLUTION\n")
    assert len(stub_docstring_formulas(old)) == 1
    restated = old.replace("z_K).", "z_K), as above.")
    assert stub_docstring_formulas(restated) == []
    interface = old.replace("mean over draws of log q0 − Σ log|det| − log p(x, z_K)",
                            "F(x) for each image, [B], from per-draw terms [k, B]")
    assert stub_docstring_formulas(interface) == []


@pytest.mark.parametrize("solution", [p for p in SOLUTIONS if p.name < "05"],
                         ids=lambda p: p.name)
def test_reference_run_numbers_are_in_the_docs(solution: Path):
    """A number a notebook quotes from a run it does not repeat (a paragraph that says
    "reference run" or names a run of the docs, "run K") must be the number the docs record:
    three or more significant digits, found in docs/*.md. (Sections 1-4; 5-6 quote figures
    that docs/ does not hold yet.)"""
    docs = _numbers("\n".join(p.read_text("utf-8") for p in (ROOT / "docs").glob("*.md")))
    text = solution.read_text(encoding="utf-8")
    paragraphs = re.split(r"\n#\s*\n|\n(?!#)", text)
    quoted = [(para.strip().splitlines()[0][:60], number) for para in paragraphs
              if _REFERENCE.search(para) for number in _telling_numbers(para)]
    assert quoted or solution.name < "04", "no reference run quoted: is the pattern stale?"
    missing = [f"{number:g} ({where}...)" for where, number in quoted if number not in docs]
    assert not missing, f"{solution.name}: reference-run numbers not in docs/*.md: {missing}"


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
    stubs = stub_messages(text)
    assert len(stubs) == text.count("raise NotImplementedError("), "a stub the regex misses"
    unreached = [message for message in stubs if message not in reached]
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


def test_long_hint_is_split_to_the_cell_width():
    hint = "a hint " * 30 + "(x - b)"
    src = f"def f(x):\n    ### BEGIN SOLUTION {hint}\n    return x * x\n    ### END SOLUTION\n"
    out = student_version(src).split("\n\n", 1)[1]
    assert max(len(line) for line in out.splitlines()) <= curriculum.STUB_WIDTH
    assert stub_messages(out) == [f"{STUB_PREFIX}: replace this line with your code "
                                  f"(hint: {hint.strip()})."]
    namespace: dict = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError, match=re.escape("(x - b)")):
        namespace["f"](3)


@pytest.mark.parametrize("student", STUDENT, ids=lambda p: p.name)
def test_stubs_fit_the_cell_width(student: Path):
    """A stub's hint is read on screen: no line of it runs past the cell's width."""
    text = student.read_text("utf-8")
    long = [line for line in text.splitlines()
            if len(line) > curriculum.STUB_WIDTH and (STUB_PREFIX in line
                                                      or "NotImplementedError" in line)]
    spans = [text[text.rfind("\n", 0, m.start()) + 1:m.end()] for m in
             curriculum._STUB_RAISE.finditer(text)]
    long += [line for span in spans for line in span.splitlines()
             if len(line) > curriculum.STUB_WIDTH]
    assert not long, f"{student.name}: stub lines wider than {curriculum.STUB_WIDTH}: {long}"


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


_CELLS = """\
# %%
x = 1

# %% [markdown]
# <!-- SOLUTION ONLY the answer, checked -->
# The answer is 42.

# %%
### SOLUTION ONLY
assert 6 * 7 == 42


# %%
y = x + 1
"""


def test_solution_only_cells_become_one_pointer():
    out = student_version(_CELLS, name="solutions/07_demo.py")
    assert "42" not in out and "SOLUTION" not in out
    assert "x = 1" in out and "y = x + 1" in out
    cells = jupytext.reads(out, fmt="py:percent").cells[1:]  # after the banner
    assert [c.cell_type for c in cells] == ["code", "markdown", "code"]
    pointer = cells[1].source
    assert pointer.count("the answer, checked") == 1 and "`solutions/07_demo.py`" in pointer
    namespace: dict = {}
    exec(out, namespace)  # what is left still runs
    assert namespace["y"] == 2


def test_solution_only_pointer_without_description_and_for_separate_runs():
    src = _CELLS.replace(" the answer, checked", "") + "\n# %%\n### SOLUTION ONLY\nz = 3\n"
    out = student_version(src)
    assert out.count(ONLY_DEFAULT) == 2 and "z = 3" not in out
    cells = solution_only_cells(src)
    assert [(c.kind, c.what) for c in cells] == [("markdown", ""), ("code", ""), ("code", "")]
    assert cells[1].body == ["assert 6 * 7 == 42", "", ""]


@pytest.mark.parametrize("src, message", [
    ("# %%\nx = 1\n### SOLUTION ONLY\n", "first line of its cell"),
    ("### SOLUTION ONLY\n# %%\nx = 1\n", "first line of its cell"),
    ("# %% [markdown]\n### SOLUTION ONLY\n", "wrong SOLUTION ONLY marker"),
    ("# %%\n# <!-- SOLUTION ONLY -->\nx = 1\n", "wrong SOLUTION ONLY marker"),
    ("# %%\n### SOLUTION ONLY\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "never see it"),
])
def test_broken_solution_only_markers_are_reported(src: str, message: str):
    with pytest.raises(MarkerError, match=message):
        student_version(src, name="demo.py")


_CODE, _MD = "# %%\n", "# %% [markdown]\n"


@pytest.mark.parametrize("question, after, found", [
    ("Compute p.", _CODE + "assert abs(p - 0.4298) < 1e-4", "0.4298"),    # asked, then asserted
    ("Compute p.", _CODE + "assert math.isclose(v, 1 / 21)", "21"),
    ("Compute p.", _CODE + "assert (x - 0.4298 == y).all()", "0.4298"),
    ("Compute p.", _CODE + "assert torch.allclose(v, w, atol=1e-3)", None),  # tolerances: fine
    ("Compute p.", _CODE + "assert abs(integral - 1) < 1e-6", None),         # so are 0, 1, 2
    ("Show Var = 4.", _CODE + "assert abs(v - 4) < 0.1", None),              # the question's 4
    ("Compute p.", _CODE + "x = 5.0\nassert abs(y - 5.0) < 0.1", None),     # shown before
    ("Compute p.", _CODE + "print(p)  # about 0.4298", "0.4298"),            # the answer's number
    ("Compute p, about 0.4298.", _CODE + "print(p)  # 0.4298", None),        # ... the question's
    ("Compute p.", _MD + "# So $\\mathrm{KL}(q) - \\log p(x)$ it is.", "KL"),  # its formula
    ("Compute p.", _MD + "# $\\mathcal N(\\mu, \\sigma^2)$", None),           # notation is fine
    ("Compute p.", _MD + "# ## 1.2 Next\n\n" + _CODE + "assert abs(p - 0.4298) < 1e-4", None),
    # the answer's words in what a code cell shows, above or below the prompt
    ("Compute p.", _CODE + "assert p < 0, 'KL minus log evidence stays negative'", "negative"),
    ("Compute p.", _CODE + "plt.title('KL minus log evidence: negative')", "plot text"),
    ("Compute p.", _CODE + "x = 1  # KL minus log evidence is negative", "comment"),
    ("Compute p.", _CODE + "assert p < 0, 'p is below zero'", None),
    ("Is KL minus log evidence negative?", _CODE + "# KL minus log evidence, plotted", None),
])
def test_answers_after_exercises_detector(question: str, after: str, found: str | None):
    solution = (f"# %% [markdown]\n# ## 1.1 Demo\n# {question}\n# <!-- BEGIN SOLUTION -->\n"
                "# $p \\approx 0.4298$, as $\\mathrm{KL}(q) - \\log p(x)$ is negative:\n"
                "# KL minus log evidence is negative.\n"
                "# <!-- END SOLUTION -->\n\n" + after + "\n")
    hits = answers_after_exercises(solution, student_version(solution))
    if found is None:
        assert not hits
    else:
        assert hits and all(found in hit for hit in hits), hits


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


def _without_secrets(text: str) -> str:
    """The text outside answer regions and SOLUTION ONLY cells: what both notebooks share."""
    spans = [(r.start, r.end) for r in find_regions(text)]
    spans += [(c.start, c.end) for c in solution_only_cells(text)]
    inside = {n for start, end in spans for n in range(start, end + 1)}
    return "\n".join(line for n, line in enumerate(text.splitlines(), 1) if n not in inside)


# Answers after their exercise ------------------------------------------------------

_STUB_LINE = re.compile(rf"raise NotImplementedError\((?:(['\"]){STUB_PREFIX}|$)"
                        r"|\*\*Your answer:\*\*")
_HEADING = re.compile(r"^# #{1,2} ")                   # a section: Markdown # or ## heading
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w])")
_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.S)
_SPACING = re.compile(r"\\[,;:!]|\\(?:big|Big|bigg|Bigg|left|right)(?![a-zA-Z])|\s")
_OPERATOR = re.compile(r"(?<=.)[=+\-<>/]|\\(?:approx|le|ge|leq|geq|propto|frac|tfrac|cdot|times)"
                       r"(?![a-zA-Z])")
_CLOSE = {"isclose", "allclose"}
_PLAIN = {0.0, 1.0, 2.0}                                # values too common to be an answer


def _numbers(text: str) -> set[float]:
    return {float(token) for token in _NUMBER.findall(text)}


def _telling_numbers(text: str) -> set[float]:
    """Decimals with three or more significant digits: 0.4298 and 4.22, not 0.5 or 26."""
    return {float(token) for token in _NUMBER.findall(text)
            if "." in token and len(token.replace(".", "").strip("0")) >= 3}


def _formulas(text: str) -> set[str]:
    """LaTeX spans, spacing removed, that contain an operator or relation (not notation)."""
    text = "\n".join(line.strip().lstrip("#").strip() for line in text.splitlines())
    spans = {_SPACING.sub("", a or b) for a, b in _MATH.findall(text)}
    return {span for span in spans if len(span) >= 10 and _OPERATOR.search(span)}


def _compared(test: ast.expr) -> list[ast.expr]:
    """The expressions an assert compares for equality or closeness."""
    found: list[ast.expr] = []
    for node in ast.walk(test):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                if isinstance(op, (ast.Eq, ast.NotEq)):
                    found += sides[i:i + 2]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _CLOSE:
                found += node.args[:2]
            elif name == "abs" and isinstance(func, ast.Name) and node.args:
                found.append(node.args[0])                      # abs(a - b)
            elif name == "abs" and isinstance(func, ast.Attribute):
                found.append(func.value)                        # (a - b).abs()
    return found


def _literals(node: ast.expr) -> set[float]:
    return {abs(float(n.value)) for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)}


def answers_after_exercises(solution: str, student: str) -> list[str]:
    """Where the student notebook asserts or states an answer after its exercise (see
    test_no_answer_after_its_exercise), as "line N: what" strings; empty when none."""
    regions = find_regions(solution)
    lines = student.splitlines()
    stubs = [i for i, line in enumerate(lines) if _STUB_LINE.search(line)]
    assert len(stubs) == len(regions), "a stub per answer region"
    headings = [i for i, line in enumerate(lines) if _HEADING.match(line)] + [len(lines)]
    found = []
    for region, stub in zip(regions, stubs):
        end = next(h for h in headings if h > stub)
        before, after = "\n".join(lines[:stub]), "\n".join(lines[stub + 1:end])
        answer = "\n".join(region.body)
        for number in sorted((_telling_numbers(answer) - _numbers(before))
                             & _telling_numbers(after)):
            found.append(f"line {stub + 1}: the answer's number {number:g} is shown after it")
        for formula in sorted((_formulas(answer) - _formulas(before)) & _formulas(after)):
            found.append(f"line {stub + 1}: the answer's formula ${formula}$ is shown after it")
    found += _phrases_in_view(regions, lines, stubs)
    # Asserts against a value not shown before: only within a section that has an exercise.
    starts = [i for i, line in enumerate(lines) if line.startswith("# %%")] + [len(lines)]
    exercise_open = False
    for start, stop in zip(starts, starts[1:]):
        cell = lines[start + 1:stop]
        if any(_HEADING.match(line) for line in cell):
            exercise_open = False
        if any(_STUB_LINE.search(line) for line in cell):
            exercise_open = True
            continue
        if "[markdown]" in lines[start] or not exercise_open:
            continue
        try:
            tree = ast.parse(textwrap.dedent("\n".join(cell)))
        except SyntaxError:
            continue
        comments = "\n".join(line.split("#", 1)[1] for line in cell if "#" in line)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                above = "\n".join(lines[:start + node.lineno])  # the cell up to the assert
                shown = _numbers(above + "\n" + comments) | _PLAIN
                new = sorted(set().union(*map(_literals, _compared(node.test))) - shown)
                if new:
                    found.append(f"line {start + 1 + node.lineno}: `{ast.unparse(node)}` asserts "
                                 f"a value not shown before ({', '.join(f'{v:g}' for v in new)})")
    return found


_SUBHEADING = re.compile(r"^# #{1,3} ")                 # an exercise's own heading, ### too
_WORD = re.compile(r"[^\W\d_][\w'’²-]*")
_FILLER = set("the and for with from than then that this these those are was were its can "
              "not nor but into onto over under only all any each per one two our your you "
              "their they them what when where how why which more less most same other has "
              "have had does did".split())
_LABELS = {"title", "set_title", "suptitle", "set", "xlabel", "ylabel", "set_xlabel",
           "set_ylabel", "legend", "plot", "text", "annotate", "show_images"}


def _phrases(text: str) -> set[tuple[str, ...]]:
    """Three content words in a row (short words and filler dropped), lower-cased."""
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _FILLER]
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def _shown_strings(cell: list[str]) -> list[tuple[str, str]]:
    """What a code cell shows in words: comments, assert messages, plot titles and labels."""
    shown = [("comment", line.split("#", 1)[1]) for line in cell if "#" in line]
    try:
        tree = ast.parse(textwrap.dedent("\n".join(cell)))
    except SyntaxError:
        return shown
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.msg is not None:
            shown.append(("assert message", ast.unparse(node.msg)))
        elif isinstance(node, ast.Call):
            func = node.func
            if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")) \
                    not in _LABELS:
                continue
            texts = list(node.args) + [k.value for k in node.keywords
                                       if k.arg in ("title", "label", "xlabel", "ylabel")]
            shown += [("plot text", ast.unparse(t)) for t in texts
                      if isinstance(t, (ast.Constant, ast.JoinedStr))]
    return shown


def _phrases_in_view(regions, lines: list[str], stubs: list[int]) -> list[str]:
    """The fourth pattern of test_no_answer_after_its_exercise."""
    sections = [i for i, line in enumerate(lines) if _HEADING.match(line)] + [len(lines)]
    cells = [i for i, line in enumerate(lines) if line.startswith("# %%")] + [len(lines)]
    markdown = {i for start, stop in zip(cells, cells[1:]) if "[markdown]" in lines[start]
                for i in range(start, stop)}
    found = []
    for region, stub in zip(regions, stubs):
        zone = max((i for i in range(stub) if _SUBHEADING.match(lines[i])), default=0)
        end = next(h for h in sections if h > stub)
        told = lines[:zone] + [lines[i] for i in range(zone, stub) if i in markdown]
        new = _phrases("\n".join(region.body)) - _phrases("\n".join(told))
        for start, stop in zip(cells, cells[1:]):
            if not zone < start < end or "[markdown]" in lines[start]:
                continue
            for kind, text in _shown_strings(lines[start + 1:stop]):
                if hit := sorted(_phrases(text) & new):
                    found.append(f"line {start + 1}: a {kind} states the answer of the exercise "
                                 f"at line {stub + 1} ({' '.join(hit[0])}): {text.strip()}")
    return found


def _calls(node: ast.AST) -> set[str]:
    """The names of the functions and methods called under ``node`` (``torch.exp`` -> exp)."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name:
                names.add(name)
    return names


def rewritten_answers(solution_text: str, student_text: str, name: str) -> list[str]:
    """Expressions of the student notebook that recompute a code answer in other words: they
    call every function the answer calls (at least two) and at most one more. The literal
    test above misses these, since the names differ (3.9b's tail_given, once written out
    again in 3.8's demonstration as ``torch.exp(-(t - Z).clamp_min(0))``)."""
    found = []
    cells = [c.source for c in jupytext.reads(student_text, fmt="py:percent").cells
             if c.cell_type == "code"]
    for region in find_regions(solution_text, name):
        if region.kind != "code":
            continue
        try:
            wanted = _calls(ast.parse(textwrap.dedent("\n".join(region.body))))
        except SyntaxError:
            continue
        if len(wanted) < 2:
            continue
        for source in cells:
            try:
                tree = ast.parse(source)
            except SyntaxError:                  # IPython magics
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.expr):
                    called = _calls(node)
                    if wanted <= called and len(called) <= len(wanted) + 1:
                        found.append(f"{name}:{region.start} ({sorted(wanted)}): "
                                     f"{ast.unparse(node)[:80]}")
    return found


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_no_answer_rewritten_elsewhere(solution: Path):
    student = (ROOT / "curriculum" / solution.name).read_text(encoding="utf-8")
    found = rewritten_answers(solution.read_text(encoding="utf-8"), student, solution.name)
    assert not found, "the student notebook computes an answer in other words:\n" + \
        "\n".join(found)


def test_rewritten_answer_detector_catches_the_old_3_8_leak():
    solution = textwrap.dedent('''\
        # %%
        def tail_given(y, t, rate):
            ### BEGIN SOLUTION the survival function
            return torch.exp(-rate * (t - y).clamp_min(0))
            ### END SOLUTION
        ''')
    leak = "# %%\nest = torch.exp(-(t_tail - Zr).clamp_min(0)).mean()\n"
    fine = "# %%\nest = estimators.tail_given(Zr, t_tail, 1.0).mean()\nz = torch.exp(x)\n"
    assert rewritten_answers(solution, leak, "s.py")
    assert not rewritten_answers(solution, fine, "s.py")
