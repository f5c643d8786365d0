"""R&M's Table 2 and ours: the published numbers, our runs' rows, and one picture of both.

Rezende & Mohamed (2015), Table 2: test :math:`-\\ln p(x)` in nats on static binarized MNIST,
for a DLGM whose posterior is a diagonal Gaussian (K = 0) pushed through K planar layers
(their NF) or K NICE couplings. Our rows are ``docs/results/table2.csv``, one per run of
``scripts/train_vae.py`` (``scripts/table2.py RUN_DIR`` adds them). A run is a cell of the
table together with its seed and its flow start (``flow_init``: ``random``, the encoder's
default initialisation, or ``identity``, ``--flow-init identity``).

The CSV lives in the course's repository, which :func:`nfcourse.utils.repo_root` finds
(``$NFCOURSE_ROOT``, else upwards from the working directory), never beside the installed
package: :func:`table2_csv` is its path, and ``TABLE2_CSV``, the same path, is looked up
only when asked for, so importing this module works anywhere.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from nfcourse.utils import repo_root

__all__ = ["PAPER", "PUBLIC", "FIELDS", "table2_csv", "row_from", "key", "read_table2",
           "markdown", "plot_table2"]

#: R&M (2015) Table 2, test -ln p(x) in nats; their DLGM with a diagonal Gaussian is K = 0.
PAPER = {("planar", 10): 87.5, ("planar", 20): 86.5, ("planar", 40): 85.7, ("planar", 80): 85.1,
         ("nice", 10): 88.6, ("nice", 20): 87.9, ("nice", 40): 87.3, ("nice", 80): 87.2,
         ("diagonal", 0): 89.9}
#: The best public reproduction of R&M on the same data we know of.
PUBLIC = {("planar", 0): 92.58, ("planar", 10): 88.95, ("planar", 20): 88.09,
          ("planar", 40): 87.45, ("planar", 80): 87.09, ("nice", 10): 89.96,
          ("nice", 20): 89.07, ("nice", 40): 88.41, ("nice", 80): 87.96}
FIELDS = ["posterior", "K", "test_neg_elbo", "test_nll", "nll_stderr", "is_samples", "updates",
          "train_images", "hours", "device", "seed", "command", "flow_init"]


def table2_csv() -> Path:
    """Where our rows live: ``docs/results/table2.csv`` in the course's repository (a
    ``FileNotFoundError`` that says how to fix it when there is none here)."""
    return repo_root() / "docs" / "results" / "table2.csv"


def __getattr__(name: str) -> Path:
    """``TABLE2_CSV``, the older name of :func:`table2_csv`'s path, found when asked for."""
    if name == "TABLE2_CSV":
        return table2_csv()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def portable(command: str) -> str:
    """A run's command as a reader can run it from the repository: the script by its path
    in the repository and the run directory as ``runs/<its name>``, with no path of the
    machine that ran it.

    >>> portable("/x/scripts/train_vae.py --epochs 3 --checkpoint-dir /root/r/planar_10 --seed 0")
    'scripts/train_vae.py --epochs 3 --checkpoint-dir runs/planar_10 --seed 0'
    """
    words = command.split()
    for i, word in enumerate(words):
        if word.endswith(".py") and "/scripts/" in "/" + word:
            words[i] = "scripts/" + Path(word).name
        if i and words[i - 1] == "--checkpoint-dir":
            words[i] = f"runs/{Path(word).name}"
    return " ".join(words)


def row_from(run: Path) -> dict:
    """The table's row of one run directory of ``scripts/train_vae.py`` (its result.json)."""
    r = json.loads((Path(run) / "result.json").read_text())
    threads = r.get("torch_threads")
    return {"posterior": r["posterior"], "K": r["flow_length"],
            "test_neg_elbo": r["neg_elbo_test"], "test_nll": r["nll_test"],
            "nll_stderr": r["nll_stderr"], "is_samples": r["nll_samples"], "updates": r["steps"],
            "train_images": r["train_images"], "hours": round(r["train_seconds"] / 3600, 2),
            "device": f"{r['device']} ({r['cpus']}-core {r['cpu']}, {threads} threads)",
            "seed": r["seed"], "command": portable(r["command"]),
            "flow_init": r.get("flow_init", "random") if r["flow_length"] else "—"}


def key(r: dict) -> tuple:
    """A run's place: (posterior, K, seed, flow start). Rows written before ``flow_init``
    was recorded were random starts."""
    start = r.get("flow_init") or ("random" if int(r["K"]) else "—")
    return r["posterior"], int(r["K"]), int(r["seed"]), start


def read_table2(path: str | Path | None = None) -> list[dict]:
    """The rows of ``table2.csv`` (default: :func:`table2_csv`), each with its flow start
    filled in; [] if there is none."""
    path = table2_csv() if path is None else Path(path)
    if not path.exists():
        return []
    rows = list(csv.DictReader(path.open()))
    for r in rows:
        r["flow_init"] = key(r)[3]
    return rows


def paper(r: dict) -> float | None:
    """R&M's number for a row's cell (every K = 0 row is their diagonal Gaussian)."""
    if int(r["K"]) == 0:
        return PAPER[("diagonal", 0)]
    return PAPER.get((r["posterior"], int(r["K"])))


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table, beside R&M's and the public reproduction's numbers."""
    lines = ["| posterior | K | flow start | R&M | public reproduction | ours: test NLL "
             "| test −ELBO | updates | hours | seed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=key):
        lines.append(f"| {r['posterior']} | {r['K']} | {key(r)[3]} | {paper(r) or '—'} | "
                     f"{PUBLIC.get((r['posterior'], int(r['K'])), '—')} | "
                     f"{float(r['test_nll']):.2f} ± {float(r['nll_stderr']):.2f} | "
                     f"{float(r['test_neg_elbo']):.2f} | {int(r['updates']):,} | "
                     f"{float(r['hours']):.2f} | {r['seed']} |")
    return "\n".join(lines) + "\n"


def plot_table2(ax, rows: list[dict]) -> None:
    """Test NLL against K: R&M's two rows (solid), the public reproduction's (dotted) and
    ours (markers with their standard errors), one series per posterior and flow start."""
    ks = [0, 10, 20, 40, 80]
    colour = {"planar": "C0", "nice": "C1", "diagonal": "k"}
    for name, label in (("planar", "NF (planar)"), ("nice", "NICE")):
        rm = [(k, PAPER[(name, k)]) for k in ks[1:]]
        if name == "planar":    # R&M give K = 0, their diagonal Gaussian, in the NF row only
            rm.insert(0, (0, PAPER[("diagonal", 0)]))
        public = [(k, PUBLIC[(name, k)]) for k in ks if (name, k) in PUBLIC]
        ax.plot(*zip(*rm), "-", color=colour[name], alpha=0.6, label=f"{label}, R&M")
        ax.plot(*zip(*public), ":", color=colour[name], alpha=0.6, label=f"{label}, public")
    marker = {"—": "o", "identity": "o", "random": "x"}
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=key):
        groups.setdefault((r["posterior"], key(r)[3]), []).append(r)
    for (posterior, start), group in groups.items():
        label = f"ours, {posterior}" + ("" if start == "—" else f", flow start {start}")
        ax.errorbar([int(r["K"]) for r in group], [float(r["test_nll"]) for r in group],
                    yerr=[float(r["nll_stderr"]) for r in group], fmt=marker.get(start, "s"),
                    color=colour.get(posterior, "C2"), capsize=3, label=label)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("flow length K")
    ax.set_ylabel("test −ln p(x), nats")
    ax.set_title("R&M Table 2, static binarized MNIST")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
