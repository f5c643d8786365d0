"""A run's held-out NLL along its training: its kept copies of ``last.pt``, evaluated and
compared with another run's at the same epochs.

A run trained with ``--snapshot-every n`` keeps ``snaps/epoch_NNNN.pt``. For each copy this
evaluates, once, the −ELBO and the importance-sampled NLL (``--nll-samples`` S from the
encoder's proposal) on the first ``--test-size`` test images and on as many training
images (``scripts/train_vae.py --eval-only --eval-checkpoint``; each evaluation is kept as
``epoch_NNNN.test.json`` and ``epoch_NNNN.train.json``, with each image's log p(x) beside
it, and redone only when the copy is newer or the images or S differ). Then it prints, per
epoch,

.. math::

    \\text{NLL}_\\text{test}, \\quad \\text{NLL}_\\text{train}, \\quad
    \\text{NLL}_\\text{test} - \\text{NLL}_\\text{train}

(a gap that grows while the test NLL stops falling is overfitting), and with ``--base B``
the paired change of the test NLL from run B at the same epoch,
:math:`\\bar d \\pm \\mathrm{SE}` over the images (``scripts/ablation.py``)::

    python scripts/snapshots.py runs/nice_10 --base runs/planar_10

The model is rebuilt from the run's ``args.json`` (written when training starts) or its
``result.json``; for a run that has neither, give its model settings after ``--``
(``-- --posterior planar --flow-length 80 --activation maxout``). The first test images are
harder than the average, so read the differences and the trends, not the levels.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablation  # noqa: E402
import train_vae  # noqa: E402

IMAGES = ("test", "train")


def copies(run: Path) -> list[Path]:
    """The run's kept copies of last.pt (``snaps/*.pt``, not the per-image files beside
    their evaluations), in the order of their names."""
    return sorted(p for p in (run / "snaps").glob("*.pt") if "." not in p.stem)


def current(out: Path, copy: Path, test_size: int, samples: int) -> bool:
    """Whether the evaluation ``out`` on disk is of this copy (written after it) with these
    numbers of images and draws: if so it is kept, else redone."""
    if not out.exists() or out.stat().st_mtime < copy.stat().st_mtime:
        return False
    r = json.loads(out.read_text())
    return r.get("test_images") == test_size and r.get("nll_samples") == samples


def evaluate(run: Path, model_args: list[str], test_size: int, samples: int) -> None:
    """Evaluate each copy of ``run`` on the test and the training images, once (an
    evaluation on disk of the same copy, images and S is kept)."""
    for copy in copies(run):
        for images in IMAGES:
            out = copy.with_suffix(f".{images}.json")
            if current(out, copy, test_size, samples):
                continue
            print(f"evaluating {copy} on {test_size} {images} images (S = {samples})",
                  file=sys.stderr, flush=True)
            with contextlib.redirect_stdout(io.StringIO()):   # train_vae prints its result
                train_vae.main([*model_args, "--checkpoint-dir", str(run.resolve()),
                                "--eval-only", "--eval-checkpoint", str(copy.resolve()),
                                "--eval-images", images,
                                "--test-size", str(test_size), "--nll-samples", str(samples),
                                "--output", str(out)])


def evaluations(run: Path) -> dict[int, dict[str, Path]]:
    """``{epoch: {images: evaluation's json}}`` of the copies evaluated so far."""
    by_epoch: dict[int, dict[str, Path]] = {}
    for images in IMAGES:
        for path in (run / "snaps").glob(f"*.{images}.json"):
            by_epoch.setdefault(json.loads(path.read_text())["epochs"], {})[images] = path
    return dict(sorted(by_epoch.items()))


def table(run: Path, base: Path | None = None) -> str:
    """The run's NLL by epoch (and the paired change from ``base`` at the same epoch)."""
    mine, theirs = evaluations(run), evaluations(base) if base else {}
    head = ["epoch", "test −ELBO", "test NLL", "train NLL", "test − train"]
    if base:
        head.append(f"Δ test NLL vs {base.name}, paired ± SE")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for epoch, paths in mine.items():
        r = {images: json.loads(path.read_text()) for images, path in paths.items()}
        test, train = r.get("test"), r.get("train")
        cells = [str(epoch), f"{test['neg_elbo_test']:.2f}" if test else "",
                 f"{test['nll_test']:.2f}" if test else "",
                 f"{train['nll_test']:.2f}" if train else "",
                 f"{test['nll_test'] - train['nll_test']:.2f}" if test and train else ""]
        if base:
            other = theirs.get(epoch, {}).get("test")
            if test and other:
                mean, se = ablation.paired(ablation.per_image(other),
                                           ablation.per_image(paths["test"]))
                cells.append(f"{mean:+.3f} ± {se:.3f}")
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_arguments(run: Path, given: list[str], base: bool = False) -> list[str]:
    """The options that rebuild the run's model: ``given``, or those its args.json or
    result.json record, or a clear error."""
    if given:
        return given
    settings = train_vae.trained_settings(run)
    if settings is None:
        how = (f"write them to {run / 'args.json'}, e.g. {{\"posterior\": \"planar\", "
               f"\"flow_length\": 80, \"activation\": \"maxout\"}}" if base else
               "give them after --, e.g. -- --posterior planar --flow-length 80 "
               "--activation maxout")
        sys.exit(f"snapshots.py: {run}{' (--base)' if base else ''} has no args.json or "
                 f"result.json to rebuild its model from: {how}")
    return train_vae.model_arguments(settings)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    given = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run directory with kept copies in snaps/")
    p.add_argument("--base", type=Path, default=None,
                   help="a run to compare with at the same epochs (its copies are evaluated "
                        "too, with the model settings of its own args.json or result.json)")
    p.add_argument("--test-size", type=int, default=1000,
                   help="images of each kind (at most 10000, the test set)")
    p.add_argument("--nll-samples", type=int, default=500, help="importance samples S")
    args = p.parse_args(argv)
    if not 1 <= args.test_size <= 10_000:
        p.error(f"--test-size {args.test_size}: the first N test (and training) images, "
                "1 <= N <= 10000")
    for run in (args.run, args.base):
        if run is not None and not copies(run):
            sys.exit(f"snapshots.py: {run / 'snaps'} holds no copies of last.pt: train the run "
                     "with --snapshot-every N (scripts/train_vae.py)")
    evaluate(args.run, model_arguments(args.run, given), args.test_size, args.nll_samples)
    if args.base is not None:
        evaluate(args.base, model_arguments(args.base, [], base=True), args.test_size,
                 args.nll_samples)
    try:
        print(table(args.run, args.base))
    except ValueError as e:        # the two runs' copies scored on different images
        sys.exit(f"snapshots.py: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
