"""Compare Table 2 runs image by image: the paired difference of their test NLLs.

Two runs evaluated on the same images by ``scripts/train_vae.py`` leave each image's
log p(x) beside their results (``result.nll_test.pt`` next to ``result.json``). For the
change from run A to run B, with :math:`d_n = -\\log p_B(x_n) + \\log p_A(x_n)`,

.. math::

    \\bar d = \\frac1N \\sum_n d_n, \\qquad
    \\mathrm{SE}(\\bar d) = \\frac{\\mathrm{sd}(d)}{\\sqrt N},

which is far smaller than the standard errors of the two NLLs apart (0.2 nats each on
10 000 test images): most of an image's NLL is the image (a 1 is easier than an 8), and
that part cancels in the pair. A change moves the NLL if :math:`|\\bar d| > 2\\,\\mathrm{SE}`.

    python scripts/ablation.py BASE/result.json OTHER/result.json [MORE/result.json ...]

prints a Markdown table: each run against the first, negative is better. A result may also
be the evaluation of a checkpoint kept during training (``--snapshot-every``, then
``--eval-only --eval-checkpoint RUN/snaps/epoch_0100.pt --output RUN/snaps/epoch_0100.test.json``),
so two runs compare at the same epoch before either ends.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from nfcourse.utils import paired_change


def per_image(result: Path, key: str = "nll_test") -> torch.Tensor:
    """log p(x) per image saved beside ``result`` (a result.json), or a clear error."""
    path = result.with_suffix(f".{key}.pt")
    if not path.exists():
        sys.exit(f"{path} is missing: evaluate the run with scripts/train_vae.py (--eval-only "
                 f"--checkpoint-dir {result.parent}) to save each image's log p(x)")
    return torch.load(path, weights_only=True).double()


def paired(base: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the NLL change from ``base`` to ``other`` (their log p(x)
    per image), image by image (``paired_change`` refuses runs scored on different images)."""
    return paired_change(-base, -other)


def run_name(path: Path, result: dict) -> str:
    """The run's directory; for an evaluation of a kept checkpoint (``--eval-checkpoint``,
    e.g. ``RUN/snaps/epoch_0100.pt``), the run's directory and the checkpoint's epoch."""
    if "eval_checkpoint" not in result:
        return path.parent.name
    checkpoint = Path(result["eval_checkpoint"])
    run = checkpoint.parent.parent if checkpoint.parent.name == "snaps" else checkpoint.parent
    # a relative path ("snaps/epoch_0100.pt", given inside the run) names no run: use where
    # the evaluation lies
    name = run.name or path.resolve().parent.parent.name
    return f"{name}, epoch {result['epochs']}"


def table(results: list[Path], key: str = "nll_test") -> str:
    base_log_px = per_image(results[0], key)
    first = json.loads(results[0].read_text())
    lines = ["| run | images | −ELBO | NLL | Δ NLL vs the first, paired ± SE |",
             "|---|---|---|---|---|"]
    for path in results:
        r = json.loads(path.read_text())
        images = [(x.get("eval_images", "test"), x["test_images"]) for x in (first, r)]
        if images[0] != images[1]:
            raise ValueError(f"{results[0]} was evaluated on the {images[0][1]} "
                             f"{images[0][0]} images and {path} on the {images[1][1]} "
                             f"{images[1][0]} images: compare runs evaluated on the same images")
        mean, se = paired(base_log_px, per_image(path, key))
        delta = "—" if path == results[0] else f"{mean:+.3f} ± {se:.3f}"
        lines.append(f"| {run_name(path, r)} | {r.get('eval_images', 'test')} | "
                     f"{r['neg_elbo_test']:.2f} | {r[key]:.2f} | {delta} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="result.json files, the base first")
    p.add_argument("--key", default="nll_test", help="nll_test, or nll_test_refined")
    args = p.parse_args(argv)
    try:
        print(table(args.results, args.key))
    except ValueError as e:
        sys.exit(f"ablation.py: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
