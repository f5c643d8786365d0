#!/usr/bin/env python3
"""Set up and run the course with nothing but Python 3.10+ and pip.

    python3 tasks.py course   # make .venv, install nfcourse, open JupyterLab on work/ (your copies)
    python3 tasks.py test     # make .venv, install nfcourse[test], run the whole test suite
    python3 tasks.py progress # which exercises you have done, which fail, which are next
    python3 tasks.py compare 6.3b  # your answer to Exercise 6.3b beside the solution's
    python3 tasks.py site     # install nfcourse[site], build the course website into site/

Each creates ``.venv`` on first use and reinstalls only when pyproject.toml changes.
Arguments after ``test`` go to pytest (e.g. ``python3 tasks.py test -k curriculum``);
after ``course`` to JupyterLab (e.g. ``--no-browser``); after ``progress`` and ``compare``
to ``python -m nfcourse progress`` / ``compare`` (``--help`` lists them: ``progress --run``
reruns your notebooks first; ``progress DIR DIR ...`` is the group's table).

To install a particular torch build (say the CPU one), pin it with pip's own
``PIP_CONSTRAINT`` variable; CI does that with .ci/constraints.txt.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("NFCOURSE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def run(*command: str | Path) -> None:
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=ROOT)


def ensure_env(extra: str | None) -> None:
    """Create .venv and install the package (with an extra) unless already current."""
    if sys.version_info < (3, 10):
        sys.exit(f"nfcourse needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    spec = f".[{extra}]" if extra else "."
    stamp_text = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest() + spec
    stamp_text += os.environ.get("PIP_CONSTRAINT", "")
    stamp = VENV / f".nfcourse-installed-{extra or 'base'}"
    if PYTHON.exists() and stamp.exists() and stamp.read_text() == stamp_text:
        return
    if not PYTHON.exists():
        print(f"Creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(PYTHON, "-m", "pip", "install", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "-e", spec)
    stamp.write_text(stamp_text)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"course", "test", "progress", "compare", "site"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "course":
        ensure_env(None)
        return subprocess.call([str(PYTHON), "-m", "nfcourse", "lab", *rest], cwd=ROOT)
    if command in {"progress", "compare"}:
        # run where the user is (folders given are relative to it), on this clone
        ensure_env(None)
        env = {**os.environ, "NFCOURSE_ROOT": os.environ.get("NFCOURSE_ROOT") or str(ROOT)}
        return subprocess.call([str(PYTHON), "-m", "nfcourse", command, *rest], env=env)
    if command == "site":    # options: website/build.py --help
        ensure_env("site")
        return subprocess.call([str(PYTHON), str(ROOT / "website" / "build.py"), *rest], cwd=ROOT)
    ensure_env("test")
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
