"""Command line: ``python -m nfcourse build-curriculum``, ``lab``, ``progress`` and
``compare``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from nfcourse import comparison, curriculum, exercises, progress_report

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


def as_root() -> bool:
    """Whether this process runs as root (never on Windows, which has no such user)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


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
    if as_root() and "--allow-root" not in command:
        # a container or a cloud VM: JupyterLab stops with "Running as root is not
        # recommended" unless told that this is meant
        print("You are root (a container or a cloud VM?): starting JupyterLab with "
              "--allow-root")
        command.append("--allow-root")
    print(f"Starting JupyterLab in {root}, on your notebooks in {WORK}/ (Ctrl-C to stop)")
    if os.name == "nt":
        return subprocess.call(command)
    os.execv(sys.executable, command)
    return 0  # pragma: no cover (execv does not return)


def show_progress(args: argparse.Namespace) -> int:
    """One student's tables (no folder, or one), or the group's (several folders)."""
    root = curriculum.repo_root()
    folders = [Path(f) for f in args.folders] or [exercises.work_folder(root)]
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        print(f"no folder {missing[0]}" + (": `python3 tasks.py course` makes your copies of "
                                           "the notebooks in work/" if not args.folders else ""))
        return 1
    if args.run:
        for folder in folders:
            print(f"Rerunning the notebooks in {folder} to refresh the record")
            progress_report.run_notebooks(folder)
    if len(folders) == 1:
        print(progress_report.student_report(root, folders[0]))
    else:
        print(progress_report.group_report(root, folders))
    return 0


def compare(args: argparse.Namespace) -> int:
    """The list of exercises, or one exercise's answers side by side."""
    root = curriculum.repo_root()
    if args.exercise is None:
        print(comparison.listing(root))
        print("\npython3 tasks.py compare NUMBER shows your answer beside the solution's.")
        return 0
    folder = Path(args.work) if args.work else None
    try:
        view = comparison.exercise_comparison(args.exercise, root, folder)
    except comparison.UnknownExercise as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    print(view.text(side_by_side=args.side_by_side))
    return 0


def _add_study_commands(commands) -> None:
    """The study group's two views: ``progress`` and ``compare``."""
    shown = commands.add_parser(
        "progress", help="which exercises you have done (✔), failing (✘) or not started (○)")
    shown.add_argument("folders", nargs="*", metavar="DIR",
                       help="students' work/ folders (default: yours); several give the "
                            "group's table")
    shown.add_argument("--run", action="store_true",
                       help="rerun the notebooks headless first, to refresh the record")
    shown.set_defaults(handler=show_progress)
    view = commands.add_parser("compare", help="your answer to an exercise beside the solution's")
    view.add_argument("exercise", nargs="?", help="its number, e.g. 6.3b (none: list them)")
    view.add_argument("--side-by-side", action="store_true", help="code in two columns")
    view.add_argument("--work", metavar="DIR", help="the folder of your notebooks "
                                                    "(default: work/)")
    view.set_defaults(handler=compare)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfcourse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-curriculum",
                                help="write curriculum/ (student notebooks) from solutions/")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if curriculum/ is out of date")
    build.set_defaults(handler=build_curriculum)
    open_lab = commands.add_parser(
        "lab", help="open JupyterLab on the student notebooks; other options "
                    "(e.g. --no-browser --port=8890) go to `jupyter lab`")
    open_lab.set_defaults(handler=lab)
    _add_study_commands(commands)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.jupyter_args = extra
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
