"""Cremer et al.'s inference gaps of a trained VAE, on training and on test images: the
full-scale version of Section 6's exercise 6.9.

For a run directory of ``scripts/train_vae.py`` (its ``result.json`` says how to rebuild the
model, ``best.pt`` holds it), on ``--images`` random training and test images each:

- q: the encoder's posterior, L[q] its ELBO (``--draws`` draws);
- q*: the same family with its parameters optimised for each image (``--refine-steps`` Adam
  steps on that image's ELBO, from the encoder's output), L[q*] its ELBO;
- log p(x): importance sampling with ``--samples`` draws from q*;

and the gaps, approximation = log p(x) − L[q*], amortization = L[q*] − L[q], with standard
errors over images. The result is printed and written as JSON::

    python scripts/inference_gaps.py ~/nfcourse-runs/table2/planar_K80 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from nfcourse import objectives
from nfcourse.data import load_binarized_mnist
from nfcourse.models import VAE, make_posterior
from nfcourse.train import load_checkpoint
from nfcourse.utils import get_device, run_info, write_result


def rebuild(run: Path, device: torch.device) -> VAE:
    r = json.loads((run / "result.json").read_text())
    posterior = make_posterior(r.get("posterior", "diagonal"), r["z_dim"], r.get("flow_length", 0),
                               hidden=r.get("flow_hidden", 200),
                               context_dim=r.get("iaf_context", 40))
    model = VAE(784, r["z_dim"], r["hidden"], encoder_hidden=r.get("encoder_hidden"),
                activation=r["activation"], posterior=posterior).to(device)
    model.load_state_dict(load_checkpoint(run / "best.pt", map_location=device)["model"])
    return model.eval()


def gaps(model: VAE, x: torch.Tensor, args, seed: int) -> dict:
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    x = model.prepare(x.to(next(model.parameters()).device))
    lam_star = torch.cat([objectives.refine_posterior(model, xb, steps=args.refine_steps,
                                                      lr=args.refine_lr, k=10, generator=gen)
                          for xb in x.split(args.batch_size)])
    log_px = objectives.log_marginal_is(model, x, samples=args.samples, params=lam_star,
                                        batch_size=args.batch_size, generator=gen)
    with torch.no_grad():
        elbo_star = torch.cat([objectives.log_weights(model, xb, args.draws, gen,
                                                      params=lb).mean(0)
                               for xb, lb in zip(x.split(args.batch_size),
                                                 lam_star.split(args.batch_size))])
        elbo_q = torch.cat([objectives.log_weights(model, xb, args.draws, gen).mean(0)
                            for xb in x.split(args.batch_size)])

    def stat(v):
        return {"mean": round(v.mean().item(), 3),
                "stderr": round(v.std().item() / math.sqrt(len(v)), 3)}

    return {"log_px": stat(log_px), "elbo_q_star": stat(elbo_star), "elbo_q": stat(elbo_q),
            "approximation_gap": stat(log_px - elbo_star),
            "amortization_gap": stat(elbo_star - elbo_q)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run directory of scripts/train_vae.py")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--draws", type=int, default=200, help="draws per ELBO estimate")
    p.add_argument("--refine-steps", type=int, default=300)
    p.add_argument("--refine-lr", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="default <run>/gaps.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    run = Path(args.run)
    model = rebuild(run, device)
    pick = torch.Generator().manual_seed(args.seed)
    result = {"run": str(run), "images": args.images, "samples": args.samples,
              "refine_steps": args.refine_steps, **run_info(device)}
    for split in ("train", "test"):
        data = load_binarized_mnist(split)
        subset = data[torch.randperm(len(data), generator=pick)[:args.images]]
        result[split] = gaps(model, subset, args, seed=args.seed + (split == "test"))
    write_result(result, args.output or run / "gaps.json")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
