"""R&M's Table 2 and ours: the published numbers, our runs' rows, and one picture of both.

Rezende & Mohamed (2015), Table 2: test :math:`-\\ln p(x)` in nats on static binarized MNIST,
for a DLGM whose posterior is a diagonal Gaussian (K = 0) pushed through K planar layers
(their NF) or K NICE couplings. Our rows are ``docs/results/table2.csv``, one per run of
``scripts/train_vae.py`` (``scripts/table2.py RUN_DIR`` adds them). A run is a cell of the
table together with its seed, its flow start (``flow_init``: ``random``, the encoder's
default initialisation, or ``identity``, ``--flow-init identity``) and its recipe (the
optimizer, its step size and the hidden units: ``adam 0.0003, tanh`` for every row before
the second round of issue 22). Beside the NLL, R&M's Fig. 4 gives their test bound
:math:`\\mathcal F = -\\text{ELBO}` of the NF row, which our test −ELBO compares with.

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

__all__ = ["PAPER", "PAPER_BOUND", "PUBLIC", "FIELDS", "table2_csv", "row_from", "key", "read_table2",
           "markdown", "plot_table2"]

#: R&M (2015) Table 2, test -ln p(x) in nats; their DLGM with a diagonal Gaussian is K = 0.
PAPER = {("planar", 10): 87.5, ("planar", 20): 86.5, ("planar", 40): 85.7, ("planar", 80): 85.1,
         ("nice", 10): 88.6, ("nice", 20): 87.9, ("nice", 40): 87.3, ("nice", 80): 87.2,
         ("diagonal", 0): 89.9}
#: R&M (2015) Fig. 4, their test bound F (−ELBO, nats) of the NF (planar) row by K.
PAPER_BOUND = {0: 96.7, 10: 93.6, 20: 92.0, 40: 90.6, 80: 89.6}
#: The recipe of every row before the second round (issue 22): Adam at 3e-4, tanh units.
FIRST_RECIPE = "adam 0.0003, tanh"
#: The second round's recipe (issue 22): maxout units, R&M's annealing, the gradient clipped.
BEST_RECIPE = "adam 0.0003, maxout, clip 1000"
#: The best public reproduction of R&M on the same data we know of.
PUBLIC = {("planar", 0): 92.58, ("planar", 10): 88.95, ("planar", 20): 88.09,
          ("planar", 40): 87.45, ("planar", 80): 87.09, ("nice", 10): 89.96,
          ("nice", 20): 89.07, ("nice", 40): 88.41, ("nice", 80): 87.96}
FIELDS = ["posterior", "K", "test_neg_elbo", "test_nll", "nll_stderr", "is_samples", "updates",
          "train_images", "hours", "device", "seed", "command", "flow_init", "recipe"]


def table2_csv() -> Path:
    """Where our rows live: ``docs/results/table2.csv`` in the course's repository (a
    ``FileNotFoundError`` that says how to fix it when there is none here)."""
    return repo_root() / "docs" / "results" / "table2.csv"


def __getattr__(name: str) -> Path:
    """``TABLE2_CSV``, the older name of :func:`table2_csv`'s path, found when asked for."""
    if name == "TABLE2_CSV":
        return table2_csv()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def portable_run_dir(run_dir: str | Path) -> str:
    """A run directory as ``runs/<its name>``: no path of the machine that ran it.

    >>> portable_run_dir("/root/nfcourse-runs/table2/planar_10")
    'runs/planar_10'
    """
    return f"runs/{Path(run_dir).name}"


def portable(command: str) -> str:
    """A run's command as a reader can run it from the repository: the script by its path
    in the repository, the run directory as ``runs/<its name>`` (and a file in it as
    ``runs/<its name>/<file>``), with no path of the machine that ran it, and each option once.

    A runner that shares a prefix of options between cells repeats an option it overrides
    (``--activation tanh ... --activation maxout``); the script's parser keeps the last, so
    that value is written in the first one's place, and the command reads as what ran.

    >>> portable("/x/scripts/train_vae.py --epochs 3 --checkpoint-dir /root/r/planar_10 --seed 0")
    'scripts/train_vae.py --epochs 3 --checkpoint-dir runs/planar_10 --seed 0'
    >>> portable("/x/scripts/train_vae.py --eval-only --eval-checkpoint /root/r/k10/last.pt")
    'scripts/train_vae.py --eval-only --eval-checkpoint runs/k10/last.pt'
    >>> portable("scripts/train_vae.py --activation tanh --anneal --hidden 400 400 --activation maxout")
    'scripts/train_vae.py --activation maxout --anneal --hidden 400 400'
    """
    words = command.split()
    for i, word in enumerate(words):
        if word.endswith(".py") and "/scripts/" in "/" + word:
            words[i] = "scripts/" + Path(word).name
        if i and words[i - 1] == "--checkpoint-dir":
            words[i] = portable_run_dir(word)
        if i and words[i - 1] in ("--eval-checkpoint", "--output"):    # files in a run directory
            words[i] = f"{portable_run_dir(Path(word).parent)}/{Path(word).name}"
    start = next((i for i, word in enumerate(words) if word.startswith("--")), len(words))
    options: dict[str, list[str]] = {}     # option -> its values; a dict keeps first places
    for word in words[start:]:
        if word.startswith("--"):
            option = word
            options[option] = []           # a repeat replaces the values, not the place
        else:
            options[option].append(word)
    return " ".join(words[:start] + [w for option, values in options.items()
                                     for w in (option, *values)])


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
            "flow_init": r.get("flow_init", "random") if r["flow_length"] else "—",
            "recipe": recipe(r)}


def recipe(result: dict) -> str:
    """A run's recipe from its result.json: optimizer, step size (and RMSprop's momentum),
    hidden units, ", no annealing" for a run trained at β = 1 throughout, ", clip c" for one
    that clipped and ", early stopping (patience p)" for one that stopped on validation
    (results without these keys are of the first recipe, which recorded them under these
    keys, annealed, did not clip and ran a fixed number of epochs)."""
    config = result.get("config") or {}
    momentum = config.get("momentum")
    name = f"{config.get('optimizer', 'adam')} {result.get('lr', 3e-4):g}" \
        + (f" momentum {momentum:g}" if momentum else "") + f", {result.get('activation', 'tanh')}"
    clip, patience = config.get("clip_grad"), result.get("patience")
    return name + (", no annealing" if result.get("anneal_steps") == 0 else "") + \
        (f", clip {clip:g}" if clip is not None else "") + \
        (f", early stopping (patience {patience})" if patience is not None else "")


def key(r: dict) -> tuple:
    """A run's place: (posterior, K, seed, flow start, recipe). Rows written before
    ``flow_init`` was recorded were random starts; before ``recipe``, the first recipe."""
    start = r.get("flow_init") or ("random" if int(r["K"]) else "—")
    return r["posterior"], int(r["K"]), int(r["seed"]), start, r.get("recipe") or FIRST_RECIPE


def read_table2(path: str | Path | None = None) -> list[dict]:
    """The rows of ``table2.csv`` (default: :func:`table2_csv`), each with its flow start
    filled in; [] if there is none."""
    path = table2_csv() if path is None else Path(path)
    if not path.exists():
        return []
    rows = list(csv.DictReader(path.open()))
    for r in rows:
        r["flow_init"], r["recipe"] = key(r)[3:]
    return rows


def paper(r: dict) -> float | None:
    """R&M's number for a row's cell (every K = 0 row is their diagonal Gaussian)."""
    if int(r["K"]) == 0:
        return PAPER[("diagonal", 0)]
    return PAPER.get((r["posterior"], int(r["K"])))


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table, beside R&M's and the public reproduction's numbers."""
    lines = ["| posterior | K | flow start | recipe | R&M | public reproduction | ours: test "
             "NLL | R&M's bound F (Fig. 4) | ours: test −ELBO | updates | hours | seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=key):
        bound = PAPER_BOUND.get(int(r["K"])) if r["posterior"] in ("planar", "diagonal") else None
        lines.append(f"| {r['posterior']} | {r['K']} | {key(r)[3]} | {key(r)[4]} | "
                     f"{paper(r) or '—'} | {PUBLIC.get((r['posterior'], int(r['K'])), '—')} | "
                     f"{float(r['test_nll']):.2f} ± {float(r['nll_stderr']):.2f} | "
                     f"{bound or '—'} | {float(r['test_neg_elbo']):.2f} | "
                     f"{int(r['updates']):,} | {float(r['hours']):.2f} | {r['seed']} |")
    return "\n".join(lines) + "\n"


KS = [0, 10, 20, 40, 80]
COLOUR = {"planar": "C0", "nice": "C1", "diagonal": "k"}


def _plot_published(ax) -> None:
    """R&M's two rows (solid), their NF row's test bound F (dashed, Fig. 4), and the public
    reproduction's rows (dotted)."""
    for name, label in (("planar", "NF (planar)"), ("nice", "NICE")):
        rm = [(k, PAPER[(name, k)]) for k in KS[1:]]
        if name == "planar":    # R&M give K = 0, their diagonal Gaussian, in the NF row only
            rm.insert(0, (0, PAPER[("diagonal", 0)]))
        public = [(k, PUBLIC[(name, k)]) for k in KS if (name, k) in PUBLIC]
        ax.plot(*zip(*rm), "-", color=COLOUR[name], alpha=0.6, label=f"{label}, R&M")
        ax.plot(*zip(*public), ":", color=COLOUR[name], alpha=0.6, label=f"{label}, public")
    ax.plot(KS, [PAPER_BOUND[k] for k in KS], "--", color=COLOUR["planar"], alpha=0.4,
            label="NF, R&M's bound F (−ELBO)")


#: markers of the recipes after the first, in the order of their names
RECIPE_MARKERS = ("s", "D", "^", "v", "P", "*", "h", "<", ">")


def plot_table2(ax, rows: list[dict]) -> None:
    """Test NLL against K: the published rows (:func:`_plot_published`) and ours, one series
    per posterior, flow start and recipe, its cells joined by a line: filled markers the NLL
    with its standard error, open markers our test −ELBO, under one legend entry. The second
    round's recipe (:data:`BEST_RECIPE`) is drawn strongest and earlier recipes faint, so the
    rows the table is finished with stand out from the study that led to them."""
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.transforms import ScaledTranslation

    _plot_published(ax)
    marker = {"—": "o", "identity": "o", "random": "x"}
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=key):
        groups.setdefault((r["posterior"], *key(r)[3:]), []).append(r)
    # the first recipe marks the flow's start; each later recipe has a marker of its own
    later = sorted({recipe for *_, recipe in groups} - {FIRST_RECIPE})
    recipe_marker = {recipe: RECIPE_MARKERS[i % len(RECIPE_MARKERS)]
                     for i, recipe in enumerate(later)}
    handles, labels = ax.get_legend_handles_labels()
    for (posterior, start, recipe), group in groups.items():
        label = f"ours, {posterior}" + ("" if start == "—" else f", {start} start")
        label += "" if recipe == FIRST_RECIPE else f", {recipe}"
        fmt = marker.get(start, "o") if recipe == FIRST_RECIPE else recipe_marker[recipe]
        strong = recipe == BEST_RECIPE
        style = dict(color=COLOUR.get(posterior, "C2"), alpha=1.0 if strong else 0.45,
                     markersize=7 if strong else 5, linewidth=1.5 if strong else 0.8)
        k = [int(r["K"]) for r in group]
        nll = ax.errorbar(k, [float(r["test_nll"]) for r in group],
                          yerr=[float(r["nll_stderr"]) for r in group],
                          fmt=fmt + ("-" if len(k) > 1 else ""), capsize=3, **style)
        bound, = ax.plot(k, [float(r["test_neg_elbo"]) for r in group],
                         (fmt if fmt != "x" else "+") + (":" if len(k) > 1 else ""),
                         mfc="none", **style)
        handles.append((nll, bound))
        labels.append(label + (" (second round)" if strong else ""))
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xticks(KS, [str(k) for k in KS])
    ax.set_xlabel("flow length K")
    ax.set_ylabel("test −ln p(x) (filled), −ELBO (open), nats")
    ax.set_title("R&M Table 2, static binarized MNIST")
    # under the K label at any figure size: half an inch below the axes, not a fraction of them
    below = ax.transAxes + ScaledTranslation(0, -0.5, ax.figure.dpi_scale_trans)
    ax.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)}, fontsize=7,
              loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=2)
