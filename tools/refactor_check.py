"""Record a short, seeded VAE training run, to check that a refactor changes no number.

Run it on the commit before a rewrite and on the one after, then compare the two files::

    python tools/refactor_check.py before.json      # on the old commit
    python tools/refactor_check.py after.json       # on the new one
    python tools/refactor_check.py --compare before.json after.json

It trains small VAEs on the first 1000 static binarized MNIST images (NFCOURSE_DATA) on the
CPU with one thread, through the public API only (``VAE``, ``train.fit``, ``train.evaluate``,
``objectives``), in the configurations the course uses: the ELBO with annealing, EMA and a
step-size schedule; the IWAE bound; gated units with dropout; a reconstruction-only
autoencoder; planar (started at the identity) and NICE flow posteriors (Section 6); a
density flow by maximum likelihood and a planar flow on an energy (Section 5, R&M Fig. 3).
It records every training loss, validation bound, and an importance-sampled
and a refined-proposal log-likelihood, as exact float reprs. ``--compare`` exits 1 unless
every number agrees bit for bit.
"""

from __future__ import annotations

import json
import sys

import torch

from nfcourse import flows as nf
from nfcourse import objectives, train
from nfcourse.data import load_binarized_mnist, sample_toy
from nfcourse.models import VAE, PointMass, make_posterior
from nfcourse.targets import ENERGIES

try:
    from nfcourse.objectives import FreeEnergy, MaximumLikelihood
except ImportError:  # before the objectives became one package (issue 21)
    from nfcourse.density import MaximumLikelihood
    from nfcourse.free_energy import FreeEnergy

FLOW_OBJECTIVES = ("maximum_likelihood", "free_energy")

CONFIGS = {
    "elbo_anneal_ema_schedule": dict(model=dict(), fit=dict(
        objective="elbo", anneal=30, ema=0.9, lr_milestones=[2], lr_gamma=0.5)),
    "iwae_k5": dict(model=dict(), fit=dict(objective="iwae", k=5)),
    "gated_dropout_k2": dict(model=dict(activation="gated", dropout=0.2),
                             fit=dict(objective="elbo", k=2)),
    "reconstruction": dict(model=dict(posterior=PointMass()),
                           fit=dict(objective="reconstruction")),
    "planar_k4_identity": dict(model=dict(posterior="planar"), fit=dict(
        objective="elbo", anneal=30, ema=0.9)),
    "nice_k2": dict(model=dict(posterior="nice"), fit=dict(objective="elbo", k=2)),
}


def fit(model, objective, train_x, valid_x, **settings):
    """``train.fit`` through whichever API this commit has: the settings as one
    ``TrainConfig`` where it exists, as keyword arguments before."""
    if hasattr(train, "TrainConfig"):
        names = {f for f in train.TrainConfig.__dataclass_fields__}
        config = train.TrainConfig(**{k: v for k, v in settings.items() if k in names})
        if not isinstance(objective, objectives.Objective):
            objective = objectives.Bound(objective, settings.get("k", 1),
                                         settings.get("anneal", 0))
        return train.fit(model, objective, train_x, valid_x, config)
    return train.fit(model, train_x, valid_x, objective=objective, **settings)


def flow_runs() -> dict:
    """A RealNVP-style density flow on two moons, and a planar flow on U1."""
    out = {}
    torch.manual_seed(0)
    data = sample_toy("two_moons", 600, torch.Generator().manual_seed(1))
    density = nf.FlowDistribution(nf.coupling_flow(2, 4, hidden=(16, 16)))
    h = fit(density, MaximumLikelihood(), data[:500], data[500:], epochs=3,
            batch_size=50, lr=1e-3, seed=0, progress=False)
    out["maximum_likelihood"] = {"train_loss": h.train_loss, "valid_bound": h.valid_bound}
    torch.manual_seed(0)
    q = nf.FlowDistribution(nf.Planar(2, length=4), trainable_base=True)
    h = fit(q, FreeEnergy(ENERGIES["U1"], samples=32, anneal=40), None, None,
            max_steps=60, epoch_steps=20, lr=1e-2, seed=0, progress=False)
    out["free_energy"] = {"train_loss": h.train_loss, "valid_bound": h.valid_bound,
                          "loss_values": h.loss_values}
    return out


def run() -> dict:
    torch.set_num_threads(1)
    data = load_binarized_mnist("train")[:1200]
    train_x, valid_x = data[:1000], data[1000:]
    out = {}
    for name, cfg in CONFIGS.items():
        torch.manual_seed(0)
        kind = cfg["model"].get("posterior")
        if isinstance(kind, str):
            length = {"planar": 4, "nice": 2}[kind]
            model = VAE(784, 8, 64, posterior=make_posterior(kind, 8, length, hidden=16))
            if kind == "planar":
                model.start_flow_near_identity(generator=torch.Generator().manual_seed(0))
        else:
            model = VAE(784, 8, 64, **cfg["model"])
        settings = dict(cfg["fit"])
        history = fit(model, settings.pop("objective"), train_x, valid_x, epochs=3,
                      batch_size=50, lr=1e-3, seed=0, progress=False, **settings)
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
    out.update(flow_runs())
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
