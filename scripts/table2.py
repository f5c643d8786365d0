"""Collect the Table 2 runs into ``docs/results/table2.csv`` and write ``docs/table2.md``.

Each argument is a run directory of ``scripts/train_vae.py`` (its ``result.json``); a run's
row replaces the row of the same posterior, K, seed and flow start (``flow_init``: the
encoder's default initialisation, ``random``, or ``identity``, ``--flow-init identity``).
Then the Markdown table is written from the whole CSV, beside R&M's numbers and the best
public reproduction's (the numbers and the table are ``nfcourse.results``)::

    python scripts/table2.py ~/nfcourse-runs/table2/planar_K80

``hours`` is the training wall time of the run as ``fit`` recorded it. With ``--keep``, each
run's ``result.json`` (its command made portable) and its per-image log p(x)
(``result.nll_test.pt``) are first copied into ``docs/results/ablation/<run name>/``, so that
``scripts/ablation.py`` can compare the committed runs image by image::

    python scripts/table2.py --keep ~/nfcourse-runs/table2/nice_10_maxout_clip1000
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from nfcourse.results import (FIELDS, TABLE2_CSV, key, markdown, portable, portable_run_dir,
                              read_table2, row_from)

ROOT = Path(__file__).resolve().parent.parent


def kept_result(run: Path) -> tuple[Path, dict]:
    """Where ``--keep`` copies a finished run (``docs/results/ablation/<run name>/``) and its
    result with a portable command and run directory; or a clear error, before anything is copied."""
    missing = [name for name in ("result.json", "result.nll_test.pt") if not (run / name).exists()]
    if missing:
        sys.exit(f"table2.py --keep: {run} has no {' or '.join(missing)}: keep a run once "
                 "scripts/train_vae.py has finished and evaluated it")
    dest = ROOT / "docs" / "results" / "ablation" / run.resolve().name
    result = json.loads((run / "result.json").read_text())
    result["command"] = portable(result["command"])
    if result.get("config", {}).get("checkpoint_dir"):     # no path of the machine that ran it
        result["config"]["checkpoint_dir"] = portable_run_dir(result["config"]["checkpoint_dir"])
    if (dest / "result.json").exists() and json.loads((dest / "result.json").read_text()) != result:
        sys.exit(f"table2.py --keep: {dest} already holds another result of a run named "
                 f"{dest.name}: rename the new run's directory, or remove {dest} first")
    return dest, result


def keep(run: Path, dest: Path, result: dict) -> Path:
    """Copy the run's result and per-image log p(x) into ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    shutil.copyfile(run / "result.nll_test.pt", dest / "result.nll_test.pt")
    return dest


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (their result.json)")
    p.add_argument("--keep", action="store_true", help="first copy each run's result and "
                   "per-image log p(x) into docs/results/ablation/<run name>/")
    args = p.parse_args(argv)
    rows = read_table2(TABLE2_CSV)
    for row in rows:                     # rows kept before portable() wrote each option once
        row["command"] = portable(row["command"])
    if args.keep:
        checked = [kept_result(run) for run in args.runs]     # every run, before any copy
        args.runs = [keep(run, *where) for run, where in zip(args.runs, checked)]
    for run in args.runs:
        new = row_from(run)
        rows = [r for r in rows if key(r) != key(new)] + [new]
    TABLE2_CSV.parent.mkdir(parents=True, exist_ok=True)
    with TABLE2_CSV.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    doc = ROOT / "docs" / "table2.md"
    text = doc.read_text()
    start, end = "<!-- table2:start -->\n", "<!-- table2:end -->"
    doc.write_text(text[:text.index(start) + len(start)] + table + text[text.index(end):])
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
