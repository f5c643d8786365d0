"""Build the course website into site/: ``python3 tasks.py site`` runs this in .venv.

1. Stage the pages in build/site-src/: the solution notebooks (sections/), the student
   notebooks as .ipynb downloads (downloads/), docs/*.md (studies/) with Table 2 drawn by
   ``nfcourse.results.plot_table2``, and MathJax 3 from the ``sphinx-mathjax-offline`` wheel.
2. ``sphinx-build`` (settings in website/conf.py): myst-nb executes each solution notebook at
   its default settings, with ``NFCOURSE_STATIC=1`` (sliders drawn at their start), and
   keeps its outputs in build/jupyter-cache, so the next build re-executes only the
   notebooks whose code changed. A failing cell fails the build: the site is also the test
   that every solution notebook passes at its default settings.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "site-src"
CACHE = ROOT / "build" / "jupyter-cache"
HTML = ROOT / "build" / "html"      # Sphinx's output; myst-nb writes beside it (build/)
OUT = ROOT / "site"
SECTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))


def stage() -> None:
    if STAGE.exists():
        shutil.rmtree(STAGE)
    shutil.copytree(ROOT / "website", STAGE,
                    ignore=shutil.ignore_patterns("build.py", "__pycache__"))
    (STAGE / "sections").mkdir()
    (STAGE / "downloads").mkdir()
    for solution in SECTIONS:
        student = ROOT / "curriculum" / solution.name
        jupytext.write(jupytext.read(student), STAGE / "downloads" / f"{solution.stem}.ipynb")
        shutil.copy(solution, STAGE / "sections" / solution.name)
    shutil.copytree(ROOT / "docs", STAGE / "studies",
                    ignore=shutil.ignore_patterns("*.pt", "*.pt.*"))
    draw_table2(STAGE / "studies")
    energies = STAGE / "studies" / "results" / "energies.md"   # a table with no title of its own
    energies.write_text("# The four energies: KL(q ‖ p) of each flow\n\n"
                        + energies.read_text("utf-8"), "utf-8")
    mathjax = Path(importlib.util.find_spec("sphinx-mathjax-offline").origin).parent
    shutil.copytree(mathjax / "static" / "mathjax", STAGE / "_static" / "mathjax")


def draw_table2(studies: Path) -> None:
    """Table 2 as a picture (plot_table2), placed under the first heading of table2.md."""
    import matplotlib.pyplot as plt

    from nfcourse.results import plot_table2, read_table2
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    plot_table2(ax, read_table2(ROOT / "docs" / "results" / "table2.csv"))
    fig.tight_layout()
    fig.savefig(studies / "table2.png", dpi=120, bbox_inches="tight")    # the legend is below
    plt.close(fig)
    page = studies / "table2.md"
    title, rest = page.read_text("utf-8").split("\n", 1)
    figure = ("\n```{figure} table2.png\n"
              ":alt: Test NLL against flow length K, R&M's rows and ours\n\n"
              "R&M's Table 2 (test −ln p(x)) and our cells, drawn by "
              "`nfcourse.results.plot_table2` from `docs/results/table2.csv`.\n```\n")
    page.write_text(f"{title}\n{figure}{rest}", "utf-8")


def build(jobs: str, fast: bool) -> int:
    cache = CACHE.with_name(CACHE.name + "-fast") if fast else CACHE
    env = {**os.environ, "NFCOURSE_FAST": "1" if fast else "0", "NFCOURSE_STATIC": "1",
           "NFCOURSE_PROGRESS": "0", "NFCOURSE_ROOT": str(ROOT),
           "NFCOURSE_SITE_CACHE": str(cache)}
    env.pop("MPLBACKEND", None)           # the kernel's own inline backend draws the figures
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-j", jobs, "-q",
               "-d", str(ROOT / "build" / "doctrees"), str(STAGE), str(HTML)]
    print("+", " ".join(command), flush=True)
    code = subprocess.call(command, cwd=ROOT, env=env)
    if code == 0:
        shutil.copytree(HTML, OUT, ignore=shutil.ignore_patterns(".buildinfo"))
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 tasks.py site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", action="store_true",
                        help="forget the executed outputs (build/jupyter-cache) and site/")
    parser.add_argument("-j", "--jobs", default="1",
                        help="sphinx-build's parallel jobs (default 1: the notebooks take "
                             "the CPU's cores themselves)")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode (NFCOURSE_FAST=1), to check the build itself: its "
                             "numbers mean nothing, so never publish it")
    args = parser.parse_args(argv)
    if args.clean:
        for path in (CACHE, CACHE.with_name(CACHE.name + "-fast"), OUT):
            shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    for path in (HTML, OUT):                  # no page of an earlier build survives this one
        shutil.rmtree(path, ignore_errors=True)
    stage()
    code = build(args.jobs, args.fast)
    seconds = time.perf_counter() - started
    if code:
        print(f"site build failed after {seconds:.0f} s (the first error is above)")
        return code
    pages = len([p for p in OUT.rglob("*.html") if "_static" not in p.parts])
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file()) / 2**20
    print(f"site/: {pages} pages, {size:.0f} MiB, built in {seconds:.0f} s; "
          f"open site/index.html, or serve it: python3 -m http.server -d site")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
