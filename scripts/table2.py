"""Collect the Table 2 runs into ``docs/results/table2.csv`` and write ``docs/table2.md``.

Each argument is a run directory of ``scripts/train_vae.py`` (its ``result.json``); a run's
row replaces the row of the same posterior, K, seed and flow start (``flow_init``: the
encoder's default initialisation, ``random``, or ``identity``, ``--flow-init identity``).
Then the Markdown table is written from the whole CSV, beside R&M's numbers and the best
public reproduction's (the numbers and the table are ``nfcourse.results``)::

    python scripts/table2.py ~/nfcourse-runs/table2/planar_K80

``hours`` is the training wall time of the run as ``fit`` recorded it.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from nfcourse.results import FIELDS, TABLE2_CSV, key, markdown, read_table2, row_from

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    rows = read_table2(TABLE2_CSV)
    for run in map(Path, argv):
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
