"""Fit flows to R&M's four unnormalised densities by the free energy, over seeds: the full
version of Section 5's exercise 5.6 (R&M Table 1 and Fig. 3).

For each target U1-U4 (confined to the box [-4, 4]² by ``nfcourse.targets.boxed``), each
flow (a Gaussian, planar flows with K = 2, 8, 32, affine-coupling flows with K = 2, 8, 32,
all with a learned Gaussian base) and each seed: ``--steps`` Adam steps (step size
``--lr``, a fifth of it for the coupling flows) on the free energy with ``--samples`` draws per step, R&M's annealing over the
first half; then KL(q ‖ p) on the box by the midpoint rule on 200 x 200 cells
(``nfcourse.targets.kl_to_target``). A fit whose loss became NaN, or whose KL is not finite,
counts as a NaN fit. Rows go to ``--output`` (CSV), one per fit, as they finish; a rerun
skips the fits already there, so an interrupted run resumes. At the end it prints, per
cell, the median KL, its range over seeds and the number of NaN fits, and writes that table
as Markdown (``--markdown``)::

    python scripts/fit_energies.py --threads 1            # docs/results/energies.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from nfcourse import flows as nf
from nfcourse.objectives.free_energy import FreeEnergy
from nfcourse.targets import ENERGIES, boxed, kl_to_target
from nfcourse.train import TrainConfig, TrainingError, fit

FLOWS = [("Gaussian", 0), ("planar", 2), ("planar", 8), ("planar", 32),
         ("coupling", 2), ("coupling", 8), ("coupling", 32)]
FIELDS = ["target", "flow", "K", "seed", "kl", "mass_in_box", "nan", "steps", "samples",
          "seconds"]


def make_flow(kind: str, K: int, lr: float) -> tuple[nf.FlowDistribution, float]:
    """A Gaussian (K = 0), a planar flow, or affine couplings, with a learned Gaussian base,
    and its step size: coupling flows take a fifth of ``lr`` (32 of them diverge at 1e-2)."""
    flow = (None if kind == "Gaussian" else nf.Planar(2, length=K) if kind == "planar"
            else nf.coupling_flow(2, K, hidden=(32,)))
    return (nf.FlowDistribution(flow, shape=(2,), trainable_base=True),
            lr / 5 if kind == "coupling" else lr)


def fit_one(target: str, kind: str, K: int, seed: int, steps: int, samples: int,
            lr: float) -> dict:
    torch.manual_seed(seed)
    q, lr = make_flow(kind, K, lr)
    t0 = time.perf_counter()
    try:
        fit(q, FreeEnergy(boxed(target), samples=samples, anneal=steps // 2),
            config=TrainConfig(max_steps=steps, epoch_steps=steps, lr=lr, seed=seed,
                               progress=False))
        result = kl_to_target(q.log_prob, target)
        kl, mass, nan = result.kl, result.mass, not math.isfinite(result.kl)
    except TrainingError:
        kl, mass, nan = math.nan, math.nan, True
    return dict(target=target, flow=kind, K=K, seed=seed, kl=kl, mass_in_box=mass,
                nan=int(nan), steps=steps, samples=samples,
                seconds=round(time.perf_counter() - t0, 1))


def summary(rows: list[dict]) -> list[str]:
    lines = ["| target | " + " | ".join(f"{k} K={K}" for k, K in FLOWS) + " |",
             "|---|" + "---|" * len(FLOWS)]
    for target in ENERGIES:
        cells = []
        for kind, K in FLOWS:
            fits = [r for r in rows if (r["target"], r["flow"], int(r["K"])) == (target, kind, K)]
            kls = [float(r["kl"]) for r in fits if not int(r["nan"])]
            nans = sum(int(r["nan"]) for r in fits)
            cells.append("—" if not kls else
                         f"{statistics.median(kls):.3f} [{min(kls):.3f}, {max(kls):.3f}]"
                         + (f", {nans} NaN" if nans else ""))
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--targets", nargs="+", default=list(ENERGIES), choices=list(ENERGIES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default="docs/results/energies.csv")
    p.add_argument("--markdown", default="docs/results/energies.md")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(out.open())) if out.exists() else []
    done = {(r["target"], r["flow"], int(r["K"]), int(r["seed"]), int(r["steps"]))
            for r in rows}
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if not rows:
            writer.writeheader()
        for target in args.targets:
            for kind, K in FLOWS:
                for seed in range(args.seeds):
                    if (target, kind, K, seed, args.steps) in done:
                        continue
                    row = fit_one(target, kind, K, seed, args.steps, args.samples, args.lr)
                    writer.writerow(row)
                    f.flush()
                    rows.append({k: str(v) for k, v in row.items()})
                    print(f"{target} {kind:8s} K={K:2d} seed {seed}: KL {row['kl']:.4f} "
                          f"(mass in box {row['mass_in_box']:.3f}, {row['seconds']:.0f} s)",
                          flush=True)
    rows = [r for r in rows if int(r["steps"]) == args.steps]
    table = summary(rows)
    print("\n".join(table))
    header = (f"KL(q ‖ p) on the box [-4, 4]², nats: median [min, max] over "
              f"{args.seeds} seeds; {args.steps} steps of {args.samples} draws, Adam "
              f"{args.lr}; NaN fits counted. From `scripts/fit_energies.py`.\n\n")
    Path(args.markdown).write_text(header + "\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
