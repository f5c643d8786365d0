"""The progress record: every self-check run appends its outcome to a small JSON file.

Where it lives (one rule): ``.progress.json`` in the folder the kernel runs in, which
Jupyter makes the notebook's own folder (``work/`` for a student), provided that folder
holds a student notebook (an ``NN_*.py`` or ``.ipynb`` with the curriculum's *Student
version* banner). Anywhere else (``solutions/``, the clone itself while the tests run, a
script) nothing is written. ``NFCOURSE_RECORD=0`` turns recording off;
``NFCOURSE_RECORD=path`` writes that file instead.

The file::

    {"format": "nfcourse progress record 1",
     "attempts": [{"exercise": "4.5b", "title": "the VAE's ELBO per data point",
                   "status": "✘", "time": "2025-06-02T14:03:11+02:00",
                   "detail": "the ELBO is wrong"}, ...]}

``status`` is ✔ (the check passed), ✘ (it found a wrong answer, or the answer crashed) or
○ (the stub is untouched). Writing never stops a notebook: a record that cannot be read is
kept beside it as ``.progress.json.corrupt`` and a new one is started, with a note.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

NAME = ".progress.json"
FORMAT = "nfcourse progress record 1"
STATUSES = ("✔", "✘", "○")
ENV = "NFCOURSE_RECORD"
#: Only this text of the curriculum's banner marks a folder of student notebooks.
STUDENT_BANNER = "**Student version.**"


def holds_student_notebooks(folder: Path) -> bool:
    """Whether ``folder`` holds a student notebook (the curriculum's banner near its top)."""
    for path in sorted(folder.glob("[0-9][0-9]_*.py")) + sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                if STUDENT_BANNER in file.read(4000):
                    return True
        except OSError:
            continue
    return False


def record_path(folder: Path | None = None) -> Path | None:
    """The record a self-check run in ``folder`` (default: the working directory) writes,
    or None where nothing is recorded (see the module's docstring)."""
    given = os.environ.get(ENV, "").strip()
    if given == "0":
        return None
    if given:
        return Path(given).expanduser()
    folder = Path.cwd() if folder is None else folder
    return folder / NAME if holds_student_notebooks(folder) else None


def _valid(entry: object) -> bool:
    if not isinstance(entry, dict) or entry.get("status") not in STATUSES:
        return False
    if not isinstance(entry.get("exercise"), str) or not isinstance(entry.get("time"), str):
        return False
    try:
        datetime.fromisoformat(entry["time"])
    except ValueError:
        return False
    return True


def read(path: Path) -> tuple[list[dict], str | None]:
    """The attempts in the record at ``path``, oldest first, and what was wrong with it
    (None for a sound record). A missing file is an empty record; unreadable JSON gives no
    attempts; entries that are not attempts are dropped."""
    if not path.exists():
        return [], f"no record yet at {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [], f"{path} could not be read ({type(err).__name__}: {err})"
    attempts = data.get("attempts") if isinstance(data, dict) else None
    if not isinstance(attempts, list):
        return [], f"{path} is not a progress record (no list of attempts)"
    kept = [entry for entry in attempts if _valid(entry)]
    if len(kept) < len(attempts):
        return kept, f"{path} had {len(attempts) - len(kept)} damaged entries"
    return kept, None


def write(path: Path, attempts: list[dict]) -> None:
    """Replace the record with ``attempts``, atomically (a new file, then a rename)."""
    text = json.dumps({"format": FORMAT, "attempts": attempts}, ensure_ascii=False, indent=1)
    handle, tmp = tempfile.mkstemp(prefix=NAME, suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    os.replace(tmp, path)


def repair(path: Path) -> tuple[list[dict], str | None]:
    """Read the record; if it is damaged, keep the damaged file as ``<name>.corrupt``, and
    write back what could be saved. Returns the attempts and the problem (None if sound;
    a missing record is not repaired, only reported)."""
    attempts, problem = read(path)
    if problem is None or not path.exists():
        return attempts, problem
    backup = path.with_name(path.name + ".corrupt")
    os.replace(path, backup)
    write(path, attempts)
    return attempts, (f"{problem}; kept the damaged file as {backup.name} and rebuilt the "
                      f"record with the {len(attempts)} attempts that could be read")


def attempt(exercise: str, title: str, status: str, detail: str = "",
            when: datetime | None = None) -> dict:
    """One entry of the record."""
    when = (when or datetime.now()).astimezone().replace(microsecond=0)
    entry = {"exercise": exercise, "title": title, "status": status, "time": when.isoformat()}
    if detail:
        entry["detail"] = detail
    return entry


def append(entry: dict, folder: Path | None = None) -> Path | None:
    """Add one attempt to the record of ``folder`` (see :func:`record_path`); returns the
    file written, or None. Never raises: a self-check must not fail for its bookkeeping."""
    path = record_path(folder)
    if path is None:
        return None
    try:
        attempts, problem = repair(path)
        if problem and path.exists():
            print(f"note: your progress record: {problem}")
        write(path, attempts + [entry])
    except OSError as err:
        print(f"note: could not update your progress record {path}: {err}")
        return None
    return path
