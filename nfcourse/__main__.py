"""Command line: ``python -m nfcourse build-curriculum`` and ``python -m nfcourse lab``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from nfcourse import curriculum

#: JupyterLab's document types whose files jupytext opens as notebooks on double-click.
JUPYTEXT_VIEWERS = {"python": "Jupytext Notebook", "markdown": "Jupytext Notebook"}


def build_curriculum(args: argparse.Namespace) -> int:
    changed = curriculum.build(check=args.check)
    if args.check:
        if changed:
            names = ", ".join(p.name for p in changed)
            print(f"curriculum/ is out of date: {names}\n"
                  "Run `python -m nfcourse build-curriculum` and commit the result.")
            return 1
        print("curriculum/ is up to date.")
        return 0
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} student notebook(s) changed.")
    return 0


def install_default_viewer(prefix: Path = Path(sys.prefix)) -> Path:
    """Make double-click open .py notebooks as notebooks in this environment's JupyterLab.

    JupyterLab reads ``<prefix>/share/jupyter/lab/settings/overrides.json`` as the
    defaults of this installation only; a user's own settings still win.
    """
    path = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    settings = json.loads(path.read_text()) if path.exists() else {}
    docmanager = settings.setdefault("@jupyterlab/docmanager-extension:plugin", {})
    docmanager.setdefault("defaultViewers", {}).update(JUPYTEXT_VIEWERS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


#: The student's working copies: made from curriculum/ on the first ``lab``, never tracked
#: by git (.gitignore) and never overwritten, so a ``git pull`` of the course cannot touch them.
WORK = "work"


def working_copies(root: Path) -> tuple[list[Path], list[Path]]:
    """Copy each ``curriculum/NN_*.py`` that ``work/`` lacks into it; never overwrite.

    Returns ``(copied, kept)``: the notebooks copied now, and the student's existing copies
    whose curriculum version differs (a course update: the student compares by hand).
    """
    work = root / WORK
    work.mkdir(exist_ok=True)
    copied, kept = [], []
    for source in sorted((root / "curriculum").glob("[0-9][0-9]_*.py")):
        target = work / source.name
        if not target.exists():
            target.write_bytes(source.read_bytes())
            copied.append(target)
        elif target.read_bytes() != source.read_bytes():
            kept.append(target)
    return copied, kept


def lab(args: argparse.Namespace) -> int:
    install_default_viewer()
    root = curriculum.repo_root()
    copied, kept = working_copies(root)
    for path in copied:
        print(f"made your working copy {path.relative_to(root)}")
    if kept:
        print(f"your work in {WORK}/ is kept as it is; the course's current versions are in "
              f"curriculum/ (compare: {', '.join(p.name for p in kept)})")
    # rooted at the repository, so that solutions/ and curriculum/ are reachable beside
    # work/, and opening on work/
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}",
               f"--LabApp.default_url=/lab/tree/{WORK}", *args.jupyter_args]
    print(f"Starting JupyterLab in {root}, on your notebooks in {WORK}/ (Ctrl-C to stop)")
    if os.name == "nt":
        return subprocess.call(command)
    os.execv(sys.executable, command)
    return 0  # pragma: no cover (execv does not return)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfcourse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-curriculum",
                                help="write curriculum/ (student notebooks) from solutions/")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if curriculum/ is out of date")
    build.set_defaults(run=build_curriculum)
    open_lab = commands.add_parser(
        "lab", help="open JupyterLab on the student notebooks; other options "
                    "(e.g. --no-browser --port=8890) go to `jupyter lab`")
    open_lab.set_defaults(run=lab)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.jupyter_args = extra
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
