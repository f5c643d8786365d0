"""Cremer et al.'s inference gaps of a trained VAE, on training and on test images, for a
diagonal Gaussian and a flow posterior: the full-scale version of Section 6's exercise 6.9.

For a run directory of ``scripts/train_vae.py`` (its ``result.json`` says how to rebuild the
model, ``best.pt`` holds it), on ``--images`` random training and test images each, and for
two families on the same model p(x, z) (Cremer et al. 2018, Table 2): the diagonal Gaussian,
and a flow (the model's own posterior if it has one, else an amortized planar flow of
``--flow-length`` layers):

- q: the encoder's posterior (the model's own family only), L[q] its ELBO (``--draws`` draws);
- q*: the family's parameters optimised for each image (``--refine-steps`` Adam steps on that
  image's ELBO). The Gaussian's starts from its encoder's output (a flow encoder's: the base
  Gaussian); the flow's from the Gaussian's q* with a near-identity flow appended, and from a
  flow encoder's output, keeping per image the better of the two (a flow contains the
  Gaussian, so its q* must be no worse). L[q*] its ELBO;
- log p(x): importance sampling with ``--samples`` draws from the flow's q*;

and the gaps, approximation = log p(x) − L[q*], amortization = L[q*] − L[q], with standard
errors over images. The result is printed as a Markdown table and written as JSON::

    python scripts/inference_gaps.py ~/nfcourse-runs/table2/planar_10 --threads 2
    python scripts/inference_gaps.py --table RUN_A/gaps.json RUN_B/gaps.json   # one table
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
from nfcourse.utils import get_device, progress, run_info, write_result


def rebuild(run: Path, device: torch.device) -> tuple[VAE, dict]:
    r = json.loads((run / "result.json").read_text())
    posterior = make_posterior(r.get("posterior", "diagonal"), r["z_dim"], r.get("flow_length", 0),
                               hidden=r.get("flow_hidden", 200),
                               context_dim=r.get("iaf_context", 40))
    model = VAE(784, r["z_dim"], r["hidden"], encoder_hidden=r.get("encoder_hidden"),
                activation=r["activation"], posterior=posterior).to(device)
    model.load_state_dict(load_checkpoint(run / "best.pt", map_location=device)["model"])
    return model.eval(), r


def family_name(kind: str, length: int) -> str:
    return "diagonal Gaussian" if kind == "diagonal" else f"{kind} K = {length}"


def with_posterior(model: VAE, kind: str, length: int) -> VAE:
    """The same p(x, z) (decoder, prior, likelihood shared) with another posterior family;
    its encoder is never used (q* starts from ``init``)."""
    posterior = make_posterior(kind, model.z_dim, length)
    view = VAE(model.x_dim, model.z_dim, posterior=posterior, prior=model.prior,
               likelihood=model.likelihood, encoder=torch.nn.Identity(), decoder=model.decoder)
    return view.eval()


def stat(v: torch.Tensor) -> dict:
    return {"mean": round(v.mean().item(), 3),
            "stderr": round(v.std().item() / math.sqrt(len(v)), 3)}


def gaps(model: VAE, own: str, flow_kind: str, flow_length: int, x: torch.Tensor, args,
         seed: int) -> dict:
    """L[q*] of both families, L[q] of the model's own, log p(x), and the gaps [N]."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    x = model.prepare(x.to(device))
    batches = x.split(args.batch_size)

    def refine(view, init, name):
        return torch.cat([objectives.refine_posterior(view, xb, steps=args.refine_steps,
                                                      lr=args.refine_lr, k=10, init=ib,
                                                      generator=gen)
                          for xb, ib in progress(zip(batches, init.split(args.batch_size)),
                                                 desc=f"q* ({name}), batches",
                                                 total=len(batches))])

    def elbo(view, lam=None):
        """Each image's ELBO with ``args.draws`` draws, at λ (or at the view's encoder)."""
        lams = [None] * len(batches) if lam is None else lam.split(args.batch_size)
        with torch.no_grad():
            return torch.cat([objectives.log_weights(view, xb, args.draws, gen,
                                                     params=lb).mean(0)
                              for xb, lb in zip(batches, lams)])

    with torch.no_grad():
        encoded = torch.cat([model.encoder(xb) for xb in batches])
    gaussian_name, flow_name = family_name("diagonal", 0), family_name(flow_kind, flow_length)
    if own == "diagonal":
        gaussian_view, flow_view = model, with_posterior(model, flow_kind, flow_length)
        lam_g = refine(gaussian_view, encoded, gaussian_name)
    else:
        gaussian_view, flow_view = with_posterior(model, "diagonal", 0), model
        base = model.posterior(encoded).base_params      # the flow's base q0
        lam_g = refine(gaussian_view, base, gaussian_name)
    # The flow's q*: from the Gaussian's q* with a near-identity flow appended (the flow
    # contains the Gaussian, so its q* should be no worse), and, for a flow encoder, also
    # from its output; per image the better start, chosen on draws not used again below.
    starts = {"gaussian": flow_view.posterior.from_gaussian(lam_g, generator=gen)}
    if own != "diagonal":
        starts["encoder"] = encoded
    candidates = [refine(flow_view, init, f"{flow_name} from the {start}")
                  for start, init in starts.items()]
    choice = torch.stack([elbo(flow_view, lam) for lam in candidates]).argmax(0)
    lam_f = torch.stack(candidates)[choice, torch.arange(len(x), device=device)]
    log_px = objectives.log_marginal_is(flow_view, x, samples=args.samples, params=lam_f,
                                        batch_size=args.batch_size, generator=gen)
    out = {"log_px": stat(log_px), "families": {},
           "flow_q_star_starts": {start: int((choice == i).sum())
                                  for i, start in enumerate(starts)}}
    for name, view, lam in [(gaussian_name, gaussian_view, lam_g), (flow_name, flow_view, lam_f)]:
        elbo_star = elbo(view, lam)
        row = {"elbo_q_star": stat(elbo_star), "approximation_gap": stat(log_px - elbo_star)}
        if view is model:
            elbo_q = elbo(model)
            row.update(elbo_q=stat(elbo_q), amortization_gap=stat(elbo_star - elbo_q))
        out["families"][name] = row
    return out


def table(results: list[dict]) -> str:
    """One Markdown table of gaps.json results: a row per model, split and family."""
    def cell(s):
        return f"{s['mean']:.2f} ± {s['stderr']:.2f}"
    lines = ["| model trained with | images | q family | log p(x) | L[q*] | approximation gap "
             "| amortization gap |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for split in ("train", "test"):
            for name, row in r[split]["families"].items():
                amortization = cell(row["amortization_gap"]) if "amortization_gap" in row else "—"
                lines.append(f"| {r['trained_with']} | {split} | {name} | "
                             f"{cell(r[split]['log_px'])} | {cell(row['elbo_q_star'])} | "
                             f"{cell(row['approximation_gap'])} | {amortization} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", help="a run directory of scripts/train_vae.py")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--draws", type=int, default=200, help="draws per ELBO estimate")
    p.add_argument("--refine-steps", type=int, default=1000,
                   help="Adam steps per q* (300 leave a flow encoder's base Gaussian "
                        "short of the Gaussian's optimum by several nats)")
    p.add_argument("--refine-lr", type=float, default=1e-2)
    p.add_argument("--flow-length", type=int, default=10,
                   help="K of the planar flow family, for a model trained without a flow")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="default <run>/gaps.json")
    p.add_argument("--table", nargs="+", metavar="GAPS_JSON",
                   help="print one Markdown table of these results and stop")
    args = p.parse_args(argv)
    if args.table:
        results = [json.loads(Path(f).read_text()) for f in args.table]
        print(table(results))
        return {"table": results}
    if args.run is None:
        p.error("give a run directory, or --table with gaps.json files")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    run = Path(args.run)
    model, r = rebuild(run, device)
    own = r.get("posterior", "diagonal")
    flow_kind, flow_length = (("planar", args.flow_length) if own == "diagonal"
                              else (own, r["flow_length"]))
    pick = torch.Generator().manual_seed(args.seed)
    result = {"run": str(run), "trained_with": family_name(own, r.get("flow_length", 0)),
              "images": args.images, "samples": args.samples,
              "refine_steps": args.refine_steps, "draws": args.draws, **run_info(device)}
    for split in ("train", "test"):
        data = load_binarized_mnist(split)
        subset = data[torch.randperm(len(data), generator=pick)[:args.images]]
        result[split] = gaps(model, own, flow_kind, flow_length, subset, args,
                             seed=args.seed + (split == "test"))
    write_result(result, args.output or run / "gaps.json")
    print(table([result]))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
