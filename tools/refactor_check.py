"""Record a short, seeded VAE training run, to check that a refactor changes no number.

Run it on the commit before a rewrite and on the one after, then compare the two files::

    python tools/refactor_check.py before.json      # on the old commit
    python tools/refactor_check.py after.json       # on the new one
    python tools/refactor_check.py --compare before.json after.json

It trains small VAEs on the first 1000 static binarized MNIST images (NFCOURSE_DATA) on the
CPU with one thread, through the public API only (``VAE``, ``train.fit``, ``train.evaluate``,
``objectives``), in the configurations the course uses: the ELBO with annealing, EMA and a
step-size schedule; the IWAE bound; gated units with dropout; a reconstruction-only
autoencoder. It records every training loss, validation bound, and an importance-sampled
and a refined-proposal log-likelihood, as exact float reprs. ``--compare`` exits 1 unless
every number agrees bit for bit.
"""

from __future__ import annotations

import json
import sys

import torch

from nfcourse import objectives, train
from nfcourse.data import load_binarized_mnist
from nfcourse.models import VAE, PointMass

CONFIGS = {
    "elbo_anneal_ema_schedule": dict(model=dict(), fit=dict(
        objective="elbo", anneal=30, ema=0.9, lr_milestones=[2], lr_gamma=0.5)),
    "iwae_k5": dict(model=dict(), fit=dict(objective="iwae", k=5)),
    "gated_dropout_k2": dict(model=dict(activation="gated", dropout=0.2),
                             fit=dict(objective="elbo", k=2)),
    "reconstruction": dict(model=dict(posterior=PointMass()),
                           fit=dict(objective="reconstruction")),
}


def run() -> dict:
    torch.set_num_threads(1)
    data = load_binarized_mnist("train")[:1200]
    train_x, valid_x = data[:1000], data[1000:]
    out = {}
    for name, cfg in CONFIGS.items():
        torch.manual_seed(0)
        model = VAE(784, 8, 64, **cfg["model"])
        history = train.fit(model, train_x, valid_x, epochs=3, batch_size=50, lr=1e-3,
                            seed=0, progress=False, **cfg["fit"])
        record = {"train_loss": history.train_loss, "valid_bound": history.valid_bound,
                  "loss_values": history.loss_values, "best_epoch": history.best_epoch}
        if name != "reconstruction":
            gen = torch.Generator().manual_seed(7)
            record["log_px"] = objectives.log_marginal_is(
                model, valid_x[:20], samples=64, generator=gen, progress=False).tolist()
            record["log_px_refined"] = objectives.log_marginal_is(
                model, valid_x[:5], samples=16, generator=gen, progress=False,
                refine_steps=3).tolist()
            record["evaluate_iwae"] = train.evaluate(model, valid_x, "iwae", k=3, seed=5)
        out[name] = record
    return json.loads(json.dumps(out), parse_float=repr)  # exact decimal reprs


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--compare":
        a, b = (json.load(open(p)) for p in argv[1:3])
        differ = [name for name in a if a[name] != b.get(name)]
        for name in a:
            print(f"{name:28s} {'identical' if name not in differ else 'DIFFERS'}")
        return 1 if differ or set(a) != set(b) else 0
    result = json.dumps(run(), indent=1)
    with open(argv[0], "w") as f:
        f.write(result)
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
