"""The machinery shared by every self-check: calling the student's code, comparing
tensors, and saying what went wrong."""

from __future__ import annotations

import functools
import re
import weakref
from typing import Any, Callable, Iterable

import torch

from nfcourse.checks import record
from nfcourse.curriculum import STUB_PREFIX

#: Printed by a self-check whose exercise still raises its stub's NotImplementedError.
NOT_ATTEMPTED = "not attempted yet"


#: A typical mistake: what the wrong answer would be, and what to tell the student.
Mistake = tuple[torch.Tensor, str]

#: What PyTorch's errors about shapes that do not broadcast contain (for
#: :meth:`Exercise.call_hinting`): "The size of tensor a (6) must match ...", "... shape ...".
SHAPE_ERROR = r"size of tensor|shape"


class SelfCheckError(AssertionError):
    """A self-check found a wrong answer; the message says what and why."""

    def _render_traceback_(self) -> list[str]:
        """What Jupyter shows for a wrong answer (IPython calls this): the ✘ block alone. The
        traceback through the checker would print its source, whose list of known mistakes
        gives answers away, and bury the ✘ lines under forty others."""
        return str(self).splitlines()


class Exercise:
    """A named exercise whose checks share a title in their messages.

    >>> ex = Exercise("1.5", "KL to a standard normal")
    >>> ex.passed("matches the closed form")
    ✔ Exercise 1.5 (KL to a standard normal): matches the closed form
    >>> try:
    ...     ex.fail("the value is off", expected=1.0, got=2.5, hint="check the 1/2")
    ... except SelfCheckError as err:
    ...     print(err)
    ✘ Exercise 1.5 (KL to a standard normal): the value is off
      expected: 1
      got:      2.5
      hint: check the 1/2
    """

    def __init__(self, number: str, title: str):
        self.number = number
        self.title = title

    @property
    def label(self) -> str:
        return f"Exercise {self.number} ({self.title})"

    def passed(self, what: str) -> None:
        print(f"✔ {self.label}: {what}")

    def fail(self, what: str, expected: Any = None, got: Any = None,
             hint: str | None = None) -> None:
        lines = [f"✘ {self.label}: {what}"]
        if expected is not None:
            lines.append(f"  expected: {_show(expected)}")
        if got is not None:
            lines.append(f"  got:      {_show(got)}")
        if hint:
            lines.append(f"  hint: {hint}")
        raise SelfCheckError("\n".join(lines))

    def call(self, fn: Callable, *args, **kwargs) -> Any:
        """Call the student's function; turn a crash into a message (stubs pass through,
        labelled with this exercise for :func:`self_check`)."""
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as err:
            err.exercise = self.label
            raise
        except Exception as err:  # the student's bug, reported with its inputs
            shapes = ", ".join(_describe(a) for a in args)
            raise SelfCheckError(
                f"✘ {self.label}: your function raised {type(err).__name__}: {err}\n"
                f"  called with: ({shapes})"
            ) from err

    def call_hinting(self, fn: Callable, *args, crashes: Iterable[tuple[str, str]]) -> Any:
        """:meth:`call`, with a hint for the crashes whose cause we can guess: ``crashes``
        pairs a regular expression, searched in the error's ``Type: text``, with what to tell
        the student (a broadcasting error from a forgotten ``keepdim``, say), so the message
        ends in words rather than in PyTorch's."""
        try:
            return self.call(fn, *args)
        except SelfCheckError as err:
            cause = err.__cause__
            said = f"{type(cause).__name__}: {cause}"
            hint = next((h for pattern, h in crashes if cause is not None
                         and re.search(pattern, said)), None)
            if hint is None:
                raise
            raise SelfCheckError(f"{err}\n  hint: {hint}") from cause

    def tensor(self, value: Any, what: str) -> torch.Tensor:
        """The answer as a tensor, or a message saying it is not one."""
        if isinstance(value, torch.Tensor):
            return value
        try:
            return torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            self.fail(f"{what} should be a tensor (or a number)", got=type(value).__name__)
            raise AssertionError("unreachable")

    def shape(self, value: torch.Tensor, shape: Iterable[int], what: str,
              hint: str | None = None) -> None:
        if tuple(value.shape) != tuple(shape):
            self.fail(f"{what} has the wrong shape", expected=list(shape),
                      got=list(value.shape), hint=hint)

    def verdict(self, got: Any, expected: torch.Tensor, what: str,
                mistakes: Iterable[Mistake] = (), shape_hint: str | None = None,
                nan_hint: str | None = None, hint: str | None = None,
                elsewhere: Callable[[], Iterable[tuple[Any, torch.Tensor]]] | None = None,
                probe: Callable[[], str | None] | None = None) -> torch.Tensor:
        """``got`` as a tensor if it equals ``expected``; else fail, naming the first
        typical mistake it equals (NaN where the mistake has NaN counts as equal), else the
        property that is off (shape, NaN, a constant offset, or just the values).

        One number cannot show a constant offset; for such an answer ``elsewhere`` yields
        ``(got, expected)`` at a few other inputs, called only when the answer is wrong.
        ``probe`` names the wrong part of an answer that is none of the listed mistakes, by
        calling the student's function again on designed inputs; it returns a hint or None
        (a crash on its inputs counts as None: the message about the values is clearer).
        Its hint comes before the constant offset's, which it can say more precisely."""
        got = self.tensor(got, what)
        if matches(got, expected):
            return got
        for candidate, mistake in mistakes:
            if matches(got, candidate, equal_nan=True):
                self.fail(f"{what} is wrong", expected=expected, got=got, hint=mistake)
        if got.shape != expected.shape:
            self.shape(got, expected.shape, what, hint=shape_hint)
        if not torch.isfinite(got).all():
            self.fail(f"{what} contains NaN or inf", expected=expected, got=got,
                      hint=nan_hint or hint)
        if hint is None and probe is not None:
            try:
                hint = probe()
            except SelfCheckError:
                hint = None
        if hint is None:
            hint = _constant_offset(got, expected, elsewhere)
        self.fail(f"{what} is wrong", expected=expected, got=got, hint=hint)
        raise AssertionError("unreachable")

    def log_det_is_autograds(self, f: Callable, point: torch.Tensor, got: Any,
                             what: str = "the log-det") -> None:
        """``got`` equals log|det ∂f/∂x| at ``point`` (one point ``[D]``; ``f`` maps it to
        ``[D]``), the Jacobian taken by autograd: an independent check of a log-det."""
        jac = torch.autograd.functional.jacobian(f, point)
        self.close(got, torch.linalg.slogdet(jac)[1][None],
                   f"{what} should equal log|det ∂f/∂x| by autograd", rtol=1e-8, atol=1e-10)

    def close(self, got: Any, expected: Any, what: str, hint: str | None = None,
              rtol: float = 1e-5, atol: float = 1e-6) -> None:
        got = self.tensor(got, what)
        expected = torch.as_tensor(expected)
        if got.shape != expected.shape:
            self.shape(got, expected.shape, what)
        if not torch.isfinite(got).all():
            self.fail(f"{what} contains NaN or inf", expected=expected, got=got, hint=hint)
        got = got.to(expected.dtype)
        if not torch.allclose(got, expected, rtol=rtol, atol=atol):
            self.fail(what, expected=expected, got=got, hint=hint)


#: The student functions whose self-check passed, by identity: a function redefined after
#: its check is a new object and must pass again before later cells run it.
_PASSED: weakref.WeakSet = weakref.WeakSet()


def yours_or_reference(yours: Callable, reference: Callable) -> Callable:
    """The student's function once its self-check has passed, else the reference; prints
    which one the cells that follow run, so the notebook goes on either way."""
    if yours in _PASSED:
        print(f"→ running your {yours.__name__} (its self-check passed)")
        return yours
    print(f"→ running the reference {reference.__module__}.{reference.__name__}: your "
          f"{yours.__name__} has not passed its self-check yet")
    return reference


def self_check(check: Callable) -> Callable:
    """Make a check report an unfinished exercise instead of stopping the notebook, and
    record each outcome (✔, ✘ or ○) in the progress record (:mod:`nfcourse.checks.record`).

    A stub's NotImplementedError becomes one printed line, so "Run All" goes on through
    the rest of the notebook; any other error, and every wrong answer, still stops it.
    The exercise is the :class:`Exercise` the check names (``ex = EX_4_5B``): the wrapper's
    ``exercise`` attribute, None for a check that names none (then nothing is recorded).
    """

    @functools.wraps(check)
    def run(*args, **kwargs):
        try:
            result = check(*args, **kwargs)
        except NotImplementedError as err:
            if STUB_PREFIX not in str(err):
                _record(run.exercise, "✘", err)
                raise
            label = getattr(err, "exercise", check.__name__)
            _record(run.exercise, "○")
            print(f"○ {label}: {NOT_ATTEMPTED}. Your function still says: {err}")
            return None
        except Exception as err:
            _record(run.exercise, "✘", err)
            raise
        if args and callable(args[0]):          # the student's function passed
            _PASSED.add(args[0])
        _record(run.exercise, "✔")
        return result

    run.exercise = exercise_named_in(check)
    return run


def exercise_named_in(check: Callable) -> Exercise | None:
    """The one module-level :class:`Exercise` a check's code refers to, else None."""
    code, names = check.__code__, check.__globals__
    found = {id(value): value for name in code.co_names
             if isinstance(value := names.get(name), Exercise)}
    return next(iter(found.values())) if len(found) == 1 else None


def _record(exercise: Exercise | None, status: str, err: BaseException | None = None) -> None:
    """Append an outcome to the progress record (a wrong answer: its first line as detail)."""
    if exercise is None:
        return
    detail = ""
    if err is not None:
        first = (str(err).splitlines() or [""])[0]
        detail = first.removeprefix(f"✘ {exercise.label}: ") or type(err).__name__
    record.append(record.attempt(exercise.number, exercise.title, status, detail))


def matches(got: torch.Tensor, candidate: torch.Tensor, rtol: float = 1e-5,
            atol: float = 1e-6, equal_nan: bool = False) -> bool:
    """Whether an answer equals a candidate (used to recognise a typical mistake). With
    ``equal_nan``, NaN where the candidate has NaN counts as equal (a mistake such as the log
    of a negative number gives NaN), provided the candidate has a finite value somewhere."""
    got, candidate = torch.as_tensor(got), torch.as_tensor(candidate)
    equal_nan = equal_nan and bool(torch.isfinite(candidate).any())
    return got.shape == candidate.shape and torch.allclose(
        got.to(candidate.dtype), candidate, rtol=rtol, atol=atol, equal_nan=equal_nan)


def response(ex: Exercise, fn: Callable, args: tuple, index: int,
             step: float | torch.Tensor = 1.0) -> torch.Tensor | None:
    """How the student's answer moves when ``args[index]`` is raised by ``step`` (everywhere,
    or where a tensor ``step`` says): ``fn(..., args[index] + step, ...) - fn(*args)``, or
    None where a call fails or the two answers differ in shape. For an answer linear in its
    inputs (a free energy, a bound) a move by 1 everywhere is the input's coefficient, which
    says which term is off."""
    moved = list(args)
    moved[index] = args[index] + step
    try:
        before = ex.tensor(ex.call(fn, *args), "the answer")
        after = ex.tensor(ex.call(fn, *moved), "the answer")
    except SelfCheckError:
        return None
    if before.shape != after.shape:
        return None
    return (after.detach() - before.detach()).to(torch.float64)


def wrong_coefficient(ex: Exercise, fn: Callable, args: tuple, what: str,
                      terms: Iterable[tuple[int, float, str, str]]) -> str | None:
    """For an answer linear in its tensor inputs, the first term whose coefficient is off,
    in words: ``terms`` gives, for each input, its index in ``args``, how much ``what``
    should move when that input rises by 1 everywhere, its name, and why."""
    for index, slope, name, why in terms:
        moved = response(ex, fn, args, index)
        if moved is None or torch.allclose(moved, torch.full_like(moved, slope), rtol=1e-6,
                                           atol=1e-9):
            continue
        flat = moved.flatten()
        if flat.numel() and torch.allclose(flat, flat[:1].expand_as(flat)):
            yours = f"yours changes by {flat[0].item():+.4g}"
        else:
            yours = "yours changes by different amounts for different entries"
        return (f"when every {name} rises by 1, {what} should change by {slope:+.4g}; "
                f"{yours}: {why}")
    return None


def _constant_offset(got: torch.Tensor, expected: torch.Tensor,
                     elsewhere: Callable[[], Iterable[tuple[Any, torch.Tensor]]] | None
                     ) -> str | None:
    """The hint for an answer off by the same constant at every input, else None: across
    the values of a tensor, or for one number across the inputs ``elsewhere`` yields."""
    diff = (got.detach().to(expected.dtype) - expected).flatten()
    where = "for every input"
    if diff.numel() == 1 and elsewhere is not None:
        try:
            more = [_difference(other, wanted).to(diff.dtype) for other, wanted in elsewhere()]
        except (SelfCheckError, TypeError, ValueError, RuntimeError):
            return None  # the function fails or gives no number elsewhere: no offset to read
        diff = torch.cat([diff, *more])
        where = f"at each of the {diff.numel()} inputs tried"
    if diff.numel() > 1 and torch.allclose(diff, diff[:1].expand_as(diff), rtol=0, atol=1e-6):
        return (f"your values are off by the same constant ({diff[0].item():+.4g}) {where}: "
                "the part that depends on the input is right, so look at the normalising "
                "constants")
    return None


def _difference(got: Any, expected: Any) -> torch.Tensor:
    """got - expected for one number; ValueError for anything else."""
    expected = torch.as_tensor(expected)
    got = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got)
    if got.numel() != 1 or expected.numel() != 1:
        raise ValueError("not one number")
    return (got.to(expected.dtype) - expected).flatten()


def _show(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() > 6:
            flat = value.detach().flatten()[:6].tolist()
            return f"tensor of shape {list(value.shape)}, starting {_fmt(flat)} ..."
        return _fmt(value.detach().tolist())
    return _fmt(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _describe(arg: Any) -> str:
    if isinstance(arg, torch.Tensor):
        return f"tensor{list(arg.shape)} {arg.dtype}"
    return type(arg).__name__
