"""Train a density flow on dequantized images and report its test NLL in nats and bits per
dimension: the full-scale version of Section 5's image study (exercise 5.5).

Data: scikit-learn's 8x8 digits (17 levels; shipped with scikit-learn, split 1200 / 300 /
297 after a seeded shuffle, as in the notebook) or grayscale MNIST (256 levels; the last
10 000 training images validate). Models (``nfcourse.flows``): a factorised Gaussian in logit
space, single-scale RealNVP, the multi-scale flow with Glow's steps, or MAF. Uniform
dequantization, maximum likelihood with Adam, the epoch with the best validation NLL kept,
checkpoints and resume (``--checkpoint-dir``, ``--resume``). The result is printed as JSON
and written to ``<checkpoint-dir>/result.json`` (or ``--output``)::

    python scripts/train_flow.py --data digits --model multiscale --epochs 500 \\
        --checkpoint-dir ~/nfcourse-runs/flows/digits_multiscale --resume --threads 1

Grayscale MNIST needs its four idx files in ``$NFCOURSE_DATA/mnist/`` (downloaded when
online); ``../shared/data`` holds the test split only, so this command was not run here::

    python scripts/train_flow.py --data mnist --model multiscale --steps 8 --hidden 64 \\
        --epochs 100 --checkpoint-dir ~/nfcourse-runs/flows/mnist_multiscale --resume
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from nfcourse import flows as nf
from nfcourse.data import DIGITS_LEVELS, load_digits, load_mnist
from nfcourse.objectives.density import MaximumLikelihood, bits_per_dim
from nfcourse.train import TrainConfig, evaluate, fit
from nfcourse.utils import get_device, run_info, seed_everything, write_result


def load(data: str):
    """(train, valid, test) as images [N, 1, H, W] of integer levels, and the level count."""
    if data == "digits":
        x, _ = load_digits()
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
        x = x.view(-1, 1, 8, 8)
        return x[:1200], x[1200:1500], x[1500:], DIGITS_LEVELS
    train, _ = load_mnist("train")
    test, _ = load_mnist("test")
    levels = (255 * train).round().view(-1, 1, 28, 28), (255 * test).round().view(-1, 1, 28, 28)
    return levels[0][:50_000], levels[0][50_000:], levels[1], 256


def build(model: str, size: int, args) -> nf.FlowDistribution:
    dim = size * size
    if model == "gaussian":
        return nf.FlowDistribution(nf.Inverse(nf.Logit(1, event_dims=3)), shape=(1, size, size),
                                   trainable_base=True)
    if model == "realnvp":
        return nf.FlowDistribution(nf.realnvp_image(size, couplings=args.couplings,
                                                    hidden=args.hidden), shape=(1, size, size))
    if model == "multiscale":
        return nf.FlowDistribution(nf.multiscale_image(size, steps=args.steps,
                                                       hidden=args.hidden),
                                   shape=(4, size // 2, size // 2))
    return nf.FlowDistribution(nf.maf_flow(dim, layers=args.layers, hidden=(args.maf_hidden,)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["digits", "mnist"], default="digits")
    p.add_argument("--model", choices=["gaussian", "realnvp", "multiscale", "maf"],
                   default="multiscale")
    p.add_argument("--couplings", type=int, default=8, help="RealNVP: checkerboard couplings")
    p.add_argument("--steps", type=int, default=3, help="multi-scale: Glow steps per scale")
    p.add_argument("--hidden", type=int, default=32, help="conv channels of the conditioners")
    p.add_argument("--layers", type=int, default=5, help="MAF layers")
    p.add_argument("--maf-hidden", type=int, default=128)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    TrainConfig.add_arguments(p, defaults={"epochs": 500, "log": True},
                              skip=("epoch_steps",))
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    seed_everything(args.seed)
    train, valid, test, levels = load(args.data)
    size = train.shape[-1]
    q = build(args.model, size, args).to(device)
    if args.model == "maf":                          # a vector model: [N, H*W]
        train, valid, test = (v.flatten(1) for v in (train, valid, test))
    objective = MaximumLikelihood(levels=levels)
    t0 = time.perf_counter()
    try:
        config = TrainConfig.from_args(args)
    except ValueError as e:
        sys.exit(f"train_flow.py: {e}")
    history = fit(q, objective, train, valid, config)
    nll = -evaluate(q, test, objective, seed=args.seed + 3)
    result = {
        "data": args.data, "model": args.model, "test_nll": round(nll, 3),
        "test_bits_per_dim": round(bits_per_dim(nll, train[0].numel()), 4),
        "best_valid_nll": round(-history.best_valid, 3), "best_epoch": history.best_epoch,
        "epochs": history.epoch[-1] if history.epoch else 0, "stopped": history.stopped,
        "train_seconds": round(history.seconds[-1], 1) if history.seconds else 0.0,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "parameters": sum(v.numel() for v in q.parameters()),
        "levels": levels, "train_images": len(train), "test_images": len(test),
        **run_info(device), "max_epochs": args.epochs, "config": config.as_dict(),
    }
    # the settings, without overwriting what was measured (e.g. the epochs trained)
    result.update({k: v for k, v in vars(args).items()
                   if k not in result and k not in ("output", "device", "epochs")})
    write_result(result, args.output, args.checkpoint_dir)
    return result


if __name__ == "__main__":
    main()
