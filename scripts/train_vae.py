"""Train the Section 4 VAE on statically binarized MNIST and measure its test bound and NLL.

The full-scale reproduction of the "DLGM diagonal covariance" row of Rezende & Mohamed
(2015), Table 2 (-ln p(x) <= 89.9 nats), with z = 40 and MLPs of 400 hidden units. Run P in
docs/vae.md reached test NLL 89.60 +- 0.23 with the encoder's proposal (S = 5000). It trained
for 51 minutes on two CPU threads, on the training and validation images, for the 673 epochs
that run K's early stopping chose::

    NFCOURSE_DATA=../shared/data python scripts/train_vae.py \\
        --epochs 673 --batch-size 100 --lr 3e-4 --anneal --ema 0.999 \\
        --activation tanh --threads 2 --train-plus-valid --nll-samples 5000 \\
        --checkpoint-dir runs/vae_p --resume --seed 0

(on a GPU, drop ``--threads``). Run K is the same recipe on the 50 000 training images alone,
with early stopping on the validation set (``--epochs 2000 --patience 50`` instead of
``--epochs 673 --train-plus-valid``). It reached 90.03, or 89.33 with the refined proposal
(``--proposal both``). Add ``--refit-encoder 400 400`` to fit a larger encoder to the finished
model and measure with it (``nfcourse.train.refit_encoder``). On K this gave 89.93.

Re-running the same command after an interruption continues from the last epoch
(``--resume``). The result (-ELBO and NLL on the 10000 test images, epochs, compute) is
printed as JSON and written to ``<checkpoint-dir>/result.json``. On a GPU nothing changes
but ``--device cuda`` (the default picks CUDA when there is one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from nfcourse import objectives
from nfcourse.data import load_binarized_mnist
from nfcourse.callbacks import Checkpoint
from nfcourse.models import POSTERIORS, VAE, FlowPrior, MixturePrior, make_posterior
from nfcourse.flows import ACTIVATIONS, MLP, coupling_flow, maf_flow
from nfcourse.objectives import Bound
from nfcourse.train import TrainConfig, evaluate, fit, load_checkpoint, refit_encoder
from nfcourse.utils import get_device, run_info, seed_everything, write_result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--z-dim", type=int, default=40)
    p.add_argument("--hidden", type=int, nargs="+", default=[400],
                   help="hidden units per layer of the encoder and decoder MLPs (default: 400)")
    p.add_argument("--encoder-hidden", type=int, nargs="+", default=None,
                   help="hidden units per layer of the encoder only (default: --hidden)")
    p.add_argument("--posterior", default="diagonal", choices=POSTERIORS,
                   help="the posterior family (R&M Table 2: diagonal, planar, nice; extra rows: "
                        "radial, iaf, the Sylvester flows); see nfcourse.models.make_posterior")
    p.add_argument("--flow-length", type=int, default=0, metavar="K",
                   help="the number of flow layers K (0 with --posterior diagonal)")
    p.add_argument("--flow-hidden", type=int, default=200,
                   help="hidden units of the NICE and IAF conditioners (one hidden layer)")
    p.add_argument("--flow-init", choices=["random", "identity"], default="random",
                   help="an amortized flow's start: the encoder's default initialisation "
                        "(random flows), or near the identity for every x "
                        "(VAE.start_flow_near_identity)")
    p.add_argument("--iaf-context", type=int, default=40,
                   help="size of the context h the encoder gives the IAF layers")
    p.add_argument("--sylvester-m", type=int, default=None,
                   help="columns M of Q in the orthogonal Sylvester flow (default z_dim // 2)")
    p.add_argument("--reflections", type=int, default=4,
                   help="Householder reflections per layer of the Householder Sylvester flow")
    p.add_argument("--prior", default="standard", choices=["standard", "mixture", "realnvp",
                                                           "maf"],
                   help="the prior p(z): standard normal, a trainable mixture of Gaussians "
                        "(--prior-components), or a flow prior (--prior-layers RealNVP couplings "
                        "or MAF layers, hidden units --prior-hidden); see nfcourse.models.priors")
    p.add_argument("--prior-components", type=int, default=20)
    p.add_argument("--prior-layers", type=int, default=6)
    p.add_argument("--prior-hidden", type=int, default=128)
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS),
                   help="hidden units of the encoder and decoder (R&M: maxout, pool 4)")
    p.add_argument("--anneal", nargs="?", type=int, const=10_000, default=0,
                   help="R&M's schedule beta_t = min(1, 0.01 + t/N) over N steps "
                        "(N = 10000 when given without a value)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout after each hidden layer of both MLPs, in training only")
    p.add_argument("--k", type=int, default=1, help="posterior samples per ELBO estimate")
    p.add_argument("--nll-samples", type=int, default=5000,
                   help="importance samples S per test image for the NLL (0 to skip)")
    p.add_argument("--nll-batch-size", type=int, default=100)
    p.add_argument("--proposal", choices=["encoder", "refined", "both"], default="encoder",
                   help="the importance sampling proposal for the NLL: q with the encoder's "
                        "parameters, or with parameters refined per test image by gradient "
                        "ascent on its ELBO (the model is unchanged; see "
                        "nfcourse.objectives.refine_posterior), or both")
    p.add_argument("--refine-steps", type=int, default=100)
    p.add_argument("--refine-lr", type=float, default=3e-2)
    p.add_argument("--refine-k", type=int, default=5, help="draws per refinement step")
    p.add_argument("--refit-encoder", type=int, nargs="+", default=None, metavar="H",
                   help="after training, fit a new encoder with these hidden sizes to the "
                        "fixed model (nfcourse.train.refit_encoder) and measure with it: the "
                        "model is unchanged, its q a better proposal. Checkpoints in "
                        "<checkpoint-dir>/refit")
    p.add_argument("--refit-epochs", type=int, default=300,
                   help="at most this many (with --train-plus-valid, which leaves no "
                        "validation set, exactly this many)")
    p.add_argument("--refit-lr", type=float, default=1e-3)
    p.add_argument("--refit-patience", type=int, default=20,
                   help="early stopping of the refit on the validation ELBO")
    p.add_argument("--train-size", type=int, default=None, help="use the first N training images")
    p.add_argument("--train-plus-valid", action="store_true",
                   help="train on the training and validation images together (60 000), for "
                        "a fixed --epochs chosen by an earlier run with early stopping; no "
                        "validation curve, so no --patience")
    p.add_argument("--test-size", type=int, default=None, help="evaluate on the first N test images")
    p.add_argument("--eval-only", action="store_true",
                   help="skip training; evaluate <checkpoint-dir>/best.pt")
    p.add_argument("--eval-checkpoint", default=None, metavar="PATH",
                   help="with --eval-only, evaluate this checkpoint instead of best.pt: a "
                        "last.pt (or a copy of one taken during training), whose averaged "
                        "parameters are used when it has them")
    p.add_argument("--eval-images", choices=["test", "train"], default="test",
                   help="measure the -ELBO and the NLL on the test images, or on the first "
                        "--test-size training images (overfitting: the train-image NLL "
                        "beside the test NLL)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--output", default=None, help="JSON result file "
                                                  "(default <checkpoint-dir>/result.json)")
    # the training settings, each written once: nfcourse.train.TrainConfig's fields
    TrainConfig.add_arguments(p, defaults={"epochs": 2000, "log": True},
                              skip=("epoch_steps", "loss_every"))
    return p.parse_args(argv)


def make_prior(args: argparse.Namespace):
    """The prior named by --prior (None: the VAE's standard normal)."""
    if args.prior == "mixture":
        return MixturePrior(args.z_dim, args.prior_components)
    if args.prior == "realnvp":
        return FlowPrior(coupling_flow(args.z_dim, args.prior_layers,
                                       hidden=(args.prior_hidden, args.prior_hidden)))
    if args.prior == "maf":
        return FlowPrior(maf_flow(args.z_dim, args.prior_layers, hidden=(args.prior_hidden,),
                                  alpha=None))
    return None


#: the settings that shape the model: a checkpoint holds its weights, not these
ARCHITECTURE = ("posterior", "flow_length", "z_dim", "hidden", "encoder_hidden", "activation",
                "prior")
#: every setting that builds the model, so that a checkpoint can be rebuilt from args.json
MODEL_SETTINGS = ARCHITECTURE + ("flow_hidden", "iaf_context", "sylvester_m", "reflections",
                                 "prior_components", "prior_layers", "prior_hidden", "dropout")


def model_arguments(settings: dict) -> list[str]:
    """The command-line options that rebuild a run's model from its ``args.json``."""
    argv = []
    for name in MODEL_SETTINGS:
        value = settings.get(name)
        if value is not None:
            argv += ["--" + name.replace("_", "-"),
                     *map(str, value if isinstance(value, list) else [value])]
    return argv


def trained_settings(checkpoint_dir: str | Path) -> dict | None:
    """The settings a run was trained with: the ``args.json`` written when training started
    (every model setting), else, for a run older than args.json, its ``result.json``
    (None for neither)."""
    for name in ("args.json", "result.json"):
        path = Path(checkpoint_dir) / name
        if path.exists():
            return json.loads(path.read_text())
    return None


def check_architecture(args: argparse.Namespace, option: str = "--eval-only") -> None:
    """With --eval-only or --resume, the model's settings must be the trained run's: a
    state_dict of the same shapes loads into another activation without a word (tanh weights
    under relu)."""
    trained = Path(args.checkpoint_dir)
    r = trained_settings(trained)
    if r is None:
        return
    given = {"encoder_hidden": args.encoder_hidden or args.hidden, "flow_length": args.flow_length}
    wrong = [f"--{name.replace('_', '-')} {r[name]} (given: {given.get(name, getattr(args, name))})"
             for name in ARCHITECTURE
             if name in r and r[name] != given.get(name, getattr(args, name))]
    if wrong:
        sys.exit(f"{option}: {trained} was trained with " + ", ".join(wrong)
                 + "; give the same model settings to evaluate or resume it")


def save_per_image(log_px: torch.Tensor, key: str, args: argparse.Namespace) -> None:
    """Each image's log p(x) beside the result (``result.nll_test.pt`` for ``result.json``),
    so that two runs can be compared image by image (``scripts/ablation.py``)."""
    where = args.output or (args.checkpoint_dir and Path(args.checkpoint_dir) / "result.json")
    if where:
        torch.save(log_px.detach().cpu(), Path(where).with_suffix(f".{key}.pt"))


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    try:
        config = TrainConfig.from_args(args)
    except ValueError as e:
        sys.exit(f"train_vae.py: {e}")
    if args.train_plus_valid and args.patience is not None:
        sys.exit("--train-plus-valid leaves no validation set for --patience: give a fixed "
                 "--epochs instead (e.g. the best epoch of a run with early stopping)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    seed_everything(args.seed)
    t0 = time.perf_counter()
    train = load_binarized_mnist("train")[:args.train_size]
    valid = load_binarized_mnist("valid")
    if args.train_plus_valid:
        train, valid = torch.cat([train, valid]), None
    test = load_binarized_mnist("test")[:args.test_size]
    posterior = make_posterior(args.posterior, args.z_dim, args.flow_length,
                               hidden=args.flow_hidden, context_dim=args.iaf_context,
                               m=args.sylvester_m, reflections=args.reflections)
    model = VAE(784, args.z_dim, args.hidden, encoder_hidden=args.encoder_hidden,
                activation=args.activation, dropout=args.dropout,
                posterior=posterior, prior=make_prior(args)).to(device)
    if args.flow_init == "identity":
        try:
            model.start_flow_near_identity(generator=torch.Generator().manual_seed(args.seed))
        except ValueError as e:
            sys.exit(f"--flow-init identity: {e}")

    def log(line: str) -> None:
        print(line, flush=True)

    if args.eval_only:
        if args.checkpoint_dir is None:
            sys.exit("--eval-only needs --checkpoint-dir")
        check_architecture(args)
        state = load_checkpoint(args.eval_checkpoint or Path(args.checkpoint_dir) / "best.pt",
                                map_location=device)
        model.load_state_dict(state.get("averaged") or state["model"])
        # a copy of last.pt carries the history up to it; best.pt does not
        history = state.get("history") or load_checkpoint(
            Path(args.checkpoint_dir) / "last.pt")["history"]
        train_seconds = history["seconds"][-1]
    else:
        if args.checkpoint_dir:     # the model's settings, for evaluating its checkpoints later
            if args.resume and (Path(args.checkpoint_dir) / "last.pt").exists():
                check_architecture(args, "--resume")
            try:
                Checkpoint(args.checkpoint_dir, args.resume).check_fresh()
            except ValueError as e:
                sys.exit(f"train_vae.py: {e}")
            (Path(args.checkpoint_dir) / "args.json").write_text(json.dumps(
                {**{name: getattr(args, name) for name in MODEL_SETTINGS},
                 "encoder_hidden": args.encoder_hidden or args.hidden,   # as result.json
                 "command": " ".join(sys.argv)}, indent=1) + "\n")
        history = fit(model, Bound("elbo", args.k, args.anneal), train, valid,
                      config).as_dict()
        train_seconds = history["seconds"][-1]
    log(f"training: {history['stopped']}")
    refit = {}
    if args.refit_encoder:
        # theta stays as trained; only q changes, so every number below is of the same model
        refit["neg_elbo_test_joint_encoder"] = round(
            -evaluate(model, test, "elbo", batch_size=1000, seed=args.seed + 3), 3)
        torch.manual_seed(args.seed + 5)
        encoder = MLP(model.x_dim, model.posterior.param_dim(args.z_dim), args.refit_encoder,
                      args.activation, zero_last=False)
        refit_history = refit_encoder(model, train, valid, encoder, TrainConfig(
            epochs=args.refit_epochs, batch_size=config.batch_size, lr=args.refit_lr,
            ema=config.ema, patience=None if valid is None else args.refit_patience,
            checkpoint_dir=None if config.checkpoint_dir is None
            else Path(config.checkpoint_dir) / "refit", resume=config.resume, seed=config.seed,
            progress=config.progress, log=config.log))
        refit.update(refit_encoder=args.refit_encoder, refit_lr=args.refit_lr,
                     refit_best_valid_elbo=None if valid is None
                     else round(refit_history.best_valid, 3),
                     refit_best_epoch=refit_history.best_epoch,
                     refit_epochs=refit_history.epoch[-1] if refit_history.epoch else 0,
                     refit_stopped=refit_history.stopped,
                     refit_seconds=round(refit_history.seconds[-1], 1)
                     if refit_history.seconds else 0.0)
        log(f"encoder refit: {refit_history.stopped}")
    if args.eval_images == "train":
        test = train[:args.test_size]
    log(f"evaluating on {len(test)} {args.eval_images} images")
    t_eval = time.perf_counter()
    neg_elbo = -evaluate(model, test, "elbo", batch_size=1000, seed=args.seed + 3)
    result = {
        "neg_elbo_test": round(neg_elbo, 3),
        "nll_test": None,
        "nll_samples": args.nll_samples,
        # with --train-plus-valid there is no validation set, so no best validation bound
        "best_valid_elbo": None if args.train_plus_valid else round(history["best_valid"], 3),
        "best_epoch": history["best_epoch"],
        "epochs": history["epoch"][-1] if history["epoch"] else 0,
        "steps": history["step"][-1] if history["step"] else 0,
        "stopped": history["stopped"],
        "train_seconds": round(train_seconds, 1),
        **refit,
    }
    if args.nll_samples:
        # result keys (mean, standard error, seconds) and refinement steps of each proposal
        names = {"encoder": ("nll_test", "nll_stderr", "nll_seconds", 0),
                 "refined": ("nll_test_refined", "nll_refined_stderr", "nll_refined_seconds",
                             args.refine_steps)}
        for proposal in (["encoder", "refined"] if args.proposal == "both" else [args.proposal]):
            key, stderr_key, seconds_key, refine = names[proposal]
            gen = torch.Generator(device=device).manual_seed(args.seed + 4)
            t_nll = time.perf_counter()
            log_px = objectives.log_marginal_is(
                model, test, samples=args.nll_samples, batch_size=args.nll_batch_size,
                generator=gen, refine_steps=refine, refine_lr=args.refine_lr,
                refine_k=args.refine_k)
            result[key] = round(-log_px.mean().item(), 3)
            save_per_image(log_px, key, args)
            result[stderr_key] = round(log_px.std().item() / len(log_px) ** 0.5, 3)
            result[seconds_key] = round(time.perf_counter() - t_nll, 1)
        if args.proposal != "encoder":
            result.update(refine_steps=args.refine_steps, refine_lr=args.refine_lr,
                          refine_k=args.refine_k)
    result.update({
        "eval_seconds": round(time.perf_counter() - t_eval, 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "test_images": len(test), "train_images": len(train), "eval_images": args.eval_images,
        **({"eval_checkpoint": args.eval_checkpoint} if args.eval_checkpoint else {}),
        "train_plus_valid": args.train_plus_valid,
        "posterior": args.posterior, "flow_length": args.flow_length, "prior": args.prior,
        **({"prior_components": args.prior_components} if args.prior == "mixture" else {}),
        **({"prior_layers": args.prior_layers, "prior_hidden": args.prior_hidden}
           if args.prior in ("realnvp", "maf") else {}),
        **({"flow_hidden": args.flow_hidden} if args.posterior in ("nice", "iaf") else {}),
        **({"flow_init": args.flow_init} if args.flow_init != "random" else {}),
        **({"iaf_context": args.iaf_context} if args.posterior == "iaf" else {}),
        "z_dim": args.z_dim, "hidden": args.hidden,
        "encoder_hidden": args.encoder_hidden or args.hidden, "activation": args.activation,
        "dropout": args.dropout, "seed": args.seed,
        # the training settings are not in the checkpoint: --eval-only cannot vouch for them
        **({"evaluated": str(args.eval_checkpoint or Path(args.checkpoint_dir) / "best.pt")}
           if args.eval_only else {
            "config": config.as_dict(), "anneal_steps": args.anneal, "k": args.k,
            # the settings' old flat keys, which earlier results and readers use
            **{name: getattr(config, name) for name in ("batch_size", "lr", "lr_milestones",
                                                        "lr_gamma", "patience", "ema")}}),
        **run_info(device),
    })
    write_result(result, args.output, args.checkpoint_dir)
    return result


if __name__ == "__main__":
    main()
