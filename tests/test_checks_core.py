"""The self-check machinery shared by every section."""

from __future__ import annotations

import pytest
import torch

from nfcourse.checks.core import NOT_ATTEMPTED, Exercise, SelfCheckError, matches, self_check
from nfcourse.curriculum import STUB_PREFIX

EX = Exercise("9.9", "a demo")


@self_check
def check_double(fn):
    EX.close(EX.call(fn, torch.tensor(2.0)), torch.tensor(4.0), "double(2)",
             hint="multiply by two")
    EX.passed("double(2) == 4")


def test_right_answer_prints_one_tick(capsys):
    check_double(lambda x: 2 * x)
    assert capsys.readouterr().out == "✔ Exercise 9.9 (a demo): double(2) == 4\n"


def test_wrong_answer_raises_with_expected_got_and_hint():
    with pytest.raises(SelfCheckError) as info:
        check_double(lambda x: 3 * x)
    message = str(info.value)
    assert "expected: 4" in message and "got:      6" in message
    assert "hint: multiply by two" in message


def test_unfinished_stub_prints_instead_of_stopping_the_notebook(capsys):
    def stub(x):
        raise NotImplementedError(f"{STUB_PREFIX}: replace this line (hint: two)")
    assert check_double(stub) is None
    out = capsys.readouterr().out
    assert out.startswith(f"○ Exercise 9.9 (a demo): {NOT_ATTEMPTED}.") and "hint: two" in out


def test_other_not_implemented_errors_are_not_hidden():
    def half_done(x):
        raise NotImplementedError("the student's own placeholder")
    with pytest.raises(NotImplementedError, match="own placeholder"):
        check_double(half_done)


def test_a_crash_names_the_error_and_the_inputs():
    with pytest.raises(SelfCheckError, match=r"raised ZeroDivisionError.*\n.*tensor\[\]"):
        check_double(lambda x: 1 / 0)


def test_matches_needs_equal_shapes_and_values():
    assert matches(torch.ones(3), torch.ones(3))
    assert not matches(torch.ones(3), torch.ones(1, 3))
    assert not matches(torch.ones(3), torch.ones(3) + 1e-3)


def test_a_mistake_that_gives_nan_is_recognised_by_where_its_nan_is():
    nan = float("nan")
    mistake = torch.tensor([1.0, nan, 2.0])
    assert matches(torch.tensor([1.0, nan, 2.0]), mistake, equal_nan=True)
    assert not matches(torch.tensor([1.0, nan, 2.0]), mistake)
    assert not matches(torch.tensor([1.0, 5.0, 2.0]), mistake, equal_nan=True)
    assert not matches(torch.tensor([nan, nan, 2.0]), mistake, equal_nan=True)
    assert not matches(torch.full((3,), nan), torch.full((3,), nan), equal_nan=True)
    with pytest.raises(SelfCheckError, match="hint: the log of a negative number"):
        EX.verdict(torch.tensor([1.0, nan, 2.0]), torch.ones(3), "f(x)",
                   [(mistake, "the log of a negative number")])


def _off_at_one_number(fn, elsewhere_fn=None):
    """The verdict on fn(3) = 9 + ..., with fn tried at 2 and -1 when it is wrong."""
    def elsewhere():
        for x in (2.0, -1.0):
            yield EX.call(elsewhere_fn or fn, torch.tensor(x)), torch.tensor(x**2)
    with pytest.raises(SelfCheckError) as info:
        EX.verdict(EX.call(fn, torch.tensor(3.0)), torch.tensor(9.0), "f(3)",
                   elsewhere=elsewhere)
    return str(info.value)


def test_one_number_off_by_a_constant_is_seen_at_other_inputs():
    message = _off_at_one_number(lambda x: x**2 + 0.5)
    assert "hint: your values are off by the same constant (+0.5) at each of the 3 inputs " \
           "tried" in message
    assert "hint" not in _off_at_one_number(lambda x: x**2 + x / 6)  # 9.5 at 3, not constant
    assert "hint" not in _off_at_one_number(lambda x: x**2 + 0.5, lambda x: 1 / 0)
    assert "hint" not in _off_at_one_number(lambda x: x**2 + 0.5, lambda x: torch.ones(2))
    with pytest.raises(SelfCheckError) as info:  # without other inputs: no offset to read
        EX.verdict(torch.tensor(9.5), torch.tensor(9.0), "f(3)")
    assert "hint" not in str(info.value)


def test_a_wrong_answer_shows_only_the_verdict_in_jupyter(tmp_path):
    """In a notebook, a failing self-check renders as its ✘ lines: no traceback through the
    checker, whose source lists the known mistakes."""
    import nbformat
    from nbclient import NotebookClient
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from nfcourse.checks import flows as check\n"
        "check.free_energy(lambda log_q, u, beta: (-log_q + beta * u).mean())")])
    NotebookClient(notebook, allow_errors=True, timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    error = notebook.cells[0].outputs[-1]
    assert error.output_type == "error" and error.ename == "SelfCheckError"
    shown = "\n".join(error.traceback)
    assert shown.startswith("✘ Exercise 5.6") and "hint:" in shown
    assert "Traceback" not in shown and "mistakes" not in shown and "File " not in shown
    assert len(error.traceback) <= 6


def test_later_cells_run_the_students_function_only_after_its_check_passed(capsys):
    from nfcourse.checks import yours_or_reference
    ex = Exercise("9.9", "double")

    @self_check
    def check_double(fn):
        ex.verdict(ex.call(fn, torch.tensor([1.0, 2.0])), torch.tensor([2.0, 4.0]), "the doubles")
        ex.passed("doubles")

    def reference(x):
        return 2 * x

    def stub(x):
        raise NotImplementedError(f"{STUB_PREFIX}: double it")

    def wrong(x):
        return 3 * x

    def right(x):
        return x + x

    check_double(stub)
    assert yours_or_reference(stub, reference) is reference
    with pytest.raises(SelfCheckError):
        check_double(wrong)
    assert yours_or_reference(wrong, reference) is reference
    check_double(right)
    assert yours_or_reference(right, reference) is right
    out = capsys.readouterr().out
    assert "running your right (its self-check passed)" in out
    assert "has not passed its self-check yet" in out

    def right(x):                      # redefined after its check: a new function
        return x * 2
    assert yours_or_reference(right, reference) is reference
