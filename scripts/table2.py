"""Collect the Table 2 runs into ``docs/results/table2.csv`` and write ``docs/table2.md``.

Each argument is a run directory of ``scripts/train_vae.py`` (its ``result.json``); a run's
row replaces the row of the same posterior, K, seed and flow start (``flow_init``: the
encoder's default initialisation, ``random``, or ``identity``, ``--flow-init identity``).
Then the Markdown table is written from the whole CSV, beside R&M's numbers and the best
public reproduction's::

    python scripts/table2.py ~/nfcourse-runs/table2/planar_K80

``hours`` is the training wall time of the run as ``fit`` recorded it.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "docs" / "results" / "table2.csv"
FIELDS = ["posterior", "K", "test_neg_elbo", "test_nll", "nll_stderr", "is_samples", "updates",
          "train_images", "hours", "device", "seed", "command", "flow_init"]
#: R&M (2015) Table 2, test -ln p(x) in nats; the DLGM diagonal row is their K = 0.
PAPER = {("planar", 10): 87.5, ("planar", 20): 86.5, ("planar", 40): 85.7, ("planar", 80): 85.1,
         ("nice", 10): 88.6, ("nice", 20): 87.9, ("nice", 40): 87.3, ("nice", 80): 87.2,
         ("diagonal", 0): 89.9}
#: The best public reproduction of R&M on the same data we know of.
PUBLIC = {("planar", 0): 92.58, ("planar", 10): 88.95, ("planar", 20): 88.09,
          ("planar", 40): 87.45, ("planar", 80): 87.09, ("nice", 10): 89.96,
          ("nice", 20): 89.07, ("nice", 40): 88.41, ("nice", 80): 87.96}


def row_from(run: Path) -> dict:
    r = json.loads((run / "result.json").read_text())
    threads = r.get("torch_threads")
    return {"posterior": r["posterior"], "K": r["flow_length"],
            "test_neg_elbo": r["neg_elbo_test"], "test_nll": r["nll_test"],
            "nll_stderr": r["nll_stderr"], "is_samples": r["nll_samples"], "updates": r["steps"],
            "train_images": r["train_images"], "hours": round(r["train_seconds"] / 3600, 2),
            "device": f"{r['device']} ({r['cpus']}-core {r['cpu']}, {threads} threads)",
            "seed": r["seed"], "command": r["command"],
            "flow_init": r.get("flow_init", "random") if r["flow_length"] else "—"}


def key(r: dict) -> tuple:
    """A cell of the table: rows before flow_init existed were random starts."""
    start = r.get("flow_init") or ("random" if int(r["K"]) else "—")
    return r["posterior"], int(r["K"]), int(r["seed"]), start


def markdown(rows: list[dict]) -> str:
    lines = ["| posterior | K | flow start | R&M | public reproduction | ours: test NLL "
             "| test −ELBO | updates | hours | seed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=key):
        cell = (r["posterior"], int(r["K"]))
        paper = PAPER.get(cell, PAPER.get(("diagonal", 0)) if int(r["K"]) == 0 else None)
        lines.append(f"| {r['posterior']} | {r['K']} | {key(r)[3]} | {paper or '—'} | "
                     f"{PUBLIC.get(cell, '—')} | {float(r['test_nll']):.2f} ± "
                     f"{float(r['nll_stderr']):.2f} | {float(r['test_neg_elbo']):.2f} | "
                     f"{int(r['updates']):,} | {float(r['hours']):.2f} | {r['seed']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    rows = list(csv.DictReader(CSV.open())) if CSV.exists() else []
    for r in rows:
        r["flow_init"] = key(r)[3]
    for run in map(Path, argv):
        new = row_from(run)
        rows = [r for r in rows if key(r) != key(new)] + [new]
    with CSV.open("w", newline="") as f:
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
