"""One training step of R&M's NF-VAE (amortized planar flow), ours against pyro-ppl's
``ConditionalPlanar``, side by side in one process.

The step is what ``nfcourse.train.fit`` does per minibatch: forward pass, the one-sample
ELBO, backward pass, Adam (fused, on both sides). Sizes are R&M's: batches of 100 real
binarized MNIST images, z = 40, one hidden layer of 400 units (tanh) in the encoder and in
the decoder, an amortized planar flow of K layers whose parameters come from the encoder's
output layer (400 -> 2z + K(2z + 1)).

- **ours**: ``VAE(posterior=FlowPosterior(Planar(40, length=K, amortized=True)))`` and
  ``nfcourse.objectives.Bound("elbo").loss`` (the path fit runs).
- **pyro**: the same encoder and decoder (same parameter shapes, copied from ours), K
  ``pyro.distributions.transforms.ConditionalPlanar`` whose hypernetwork is that same
  output layer (each transform conditioned on its slice ``(b, u, w)``), the base
  ``Normal(μ, σ)``, ``log q = log q0 − Σ log_abs_det_jacobian``.

Timing: every repeat runs each library for a block of steps, in rotating order; we report
the median over repeats in steps per second and the ratio ours / pyro. With one thread we
time this process's CPU time (robust on a shared machine), with more the wall clock (on a GPU,
the wall clock after a synchronize). ``--compile`` adds a third column: our step with its
forward and backward compiled by ``torch.compile`` (``nfcourse.compiled``, what
``TrainConfig(compile=True)`` trains with: inductor on the CPU; on CUDA also replayed as
CUDA graphs, one launch a step instead of one per kernel). FLOPs
of a step are counted from the matrix products (3 per Linear layer: forward, and the two of
its backward), which dominate; the flow's own arithmetic is about K·B·D·20 and listed apart.

    NFCOURSE_DATA=../shared/data python benchmarks/nfvi.py                 # 1 thread
    NFCOURSE_DATA=../shared/data python benchmarks/nfvi.py --threads 2
    NFCOURSE_DATA=../shared/data python benchmarks/nfvi.py --compile       # + compiled
    NFCOURSE_DATA=../shared/data python benchmarks/nfvi.py --device cuda --compile
    python benchmarks/nfvi.py --quick                                       # smoke run
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from nfcourse import flows as nf
from nfcourse.data import load_binarized_mnist
from nfcourse.models import VAE, FlowPosterior
from nfcourse.compiled import training_loss
from nfcourse.objectives import Bound, elbo

Z, HIDDEN, BATCH = 40, 400, 100


def ours(k: int, seed: int = 0, compile: bool = False, device: str | torch.device = "cpu"):
    """Our NF-VAE on ``device`` and its step's loss: ``nfcourse.compiled.training_loss``,
    the function fit runs, eager or compiled (``torch.compile``, which picks its mode for
    the model's device: so the model is moved first)."""
    torch.manual_seed(seed)
    posterior = FlowPosterior(nf.Planar(Z, length=k, amortized=True)) if k else None
    model = VAE(784, Z, HIDDEN, activation="tanh", posterior=posterior).to(device)
    loss = training_loss(model, Bound("elbo"), compile=compile)
    return model, lambda x, step, gen: loss(x, step, gen)[0]


def _bias_first(layer: dict):
    """pyro's hypernetwork returns (b, u, w); our q names each planar layer's raw u, w, b."""
    return layer["b"][..., None], layer["u"], layer["w"]


class PyroNFVAE(nn.Module):
    """The same NF-VAE on pyro's ConditionalPlanar; parameters copied from ``twin``."""

    def __init__(self, twin: VAE, k: int):
        super().__init__()
        from pyro.distributions.transforms import ConditionalPlanar
        self.encoder, self.decoder = copy.deepcopy(twin.encoder), copy.deepcopy(twin.decoder)
        self.posterior = twin.posterior     # reads λ's layout for both; holds no parameters
        self.transforms = [ConditionalPlanar(_bias_first) for _ in range(k)]

    def elbo(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        q = self.posterior(self.encoder(x))
        mu, log_var = q.mu, q.log_var
        sigma = torch.exp(0.5 * log_var)
        eps = torch.randn(mu.shape, generator=gen, device=mu.device)
        z = mu + sigma * eps
        log_q = torch.distributions.Normal(mu, sigma).log_prob(z).sum(-1)
        for t, layer in zip(self.transforms, q.flow.layers if q.flow is not None else []):
            conditioned = t.condition(layer)
            z_next = conditioned(z)
            log_q = log_q - conditioned.log_abs_det_jacobian(z, z_next)
            z = z_next
        logits = self.decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        return log_px + log_pz - log_q


def pyro(k: int, seed: int = 0):
    twin, _ = ours(k, seed)
    model = PyroNFVAE(twin, k)
    return model, lambda x, step, gen: -model.elbo(x, gen).mean()


def make_step(model, loss_fn, batches, gen):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, fused=True)
    state = {"i": 0}

    def step():
        x = batches[state["i"] % len(batches)]
        loss = loss_fn(x, state["i"], gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state["i"] += 1
    return step


def matmul_flops(k: int) -> float:
    """FLOPs of the matrix products of one step: 2·B·in·out per Linear, times 3."""
    layers = [(784, HIDDEN), (HIDDEN, 2 * Z + k * (2 * Z + 1)), (Z, HIDDEN), (HIDDEN, 784)]
    return 3 * sum(2 * BATCH * i * o for i, o in layers)


def matmul_peak(clock, device) -> float:
    """This machine's matrix-product rate (FLOP/s) at the step's biggest shape."""
    a = torch.randn(BATCH, HIDDEN, device=device)
    b = torch.randn(HIDDEN, 2 * Z + 80 * (2 * Z + 1), device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(7):
        t = clock()
        for _ in range(10):
            a @ b
        times.append((clock() - t) / 10)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", nargs="*", type=int, default=[0, 10, 40, 80])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 repeats of 2 steps")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compile", action="store_true",
                        help="also time our step compiled (nfcourse.compiled)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.quick:
        args.repeats, args.steps = 3, 2
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        def clock():
            torch.cuda.synchronize()
            return time.perf_counter()
        where = torch.cuda.get_device_name(device)
    else:
        clock = time.process_time if args.threads == 1 else time.perf_counter
        where = f"{args.threads} thread(s), {platform.processor() or platform.machine()}"
    data = load_binarized_mnist("train")[:50 * BATCH].to(device)
    batches = list(data.split(BATCH))
    peak = matmul_peak(clock, device)
    print(f"torch {torch.__version__}, {where}; median of {args.repeats} repeats "
          f"of {args.steps} steps, {'CPU' if clock is time.process_time else 'wall'} time; "
          f"matmul peak here {peak / 1e9:.0f} GFLOP/s")
    compiled = (" ours compiled (steps/s) | compiled / eager | compiled / pyro |"
                if args.compile else "")
    print("| K | ours (steps/s) | pyro (steps/s) | ours / pyro |" + compiled
          + " GFLOP per step | fraction of the matmul peak (ours) |")
    print("|---|---|---|---|" + ("---|---|---|" if args.compile else "") + "---|---|")
    for k in args.ks:
        built = {"ours": ours(k), "pyro": pyro(k)}
        for model, _ in built.values():
            model.to(device)
        # the same model: equal Monte Carlo ELBOs at equal parameters and noise (at K = 0
        # ours trains on the closed-form KL, pyro's on the Monte Carlo one)
        x0, g = batches[0], lambda: torch.Generator(device).manual_seed(1)  # noqa: E731
        same = [-elbo(built["ours"][0], x0, analytic_kl=False, generator=g()).mean().item(),
                built["pyro"][1](x0, 0, g()).item()]
        assert abs(same[0] - same[1]) < 1e-5 * abs(same[0]), f"K={k}: losses {same} differ"
        steps = {name: make_step(*b, batches, torch.Generator(device).manual_seed(0))
                 for name, b in built.items()}
        failed = ""
        if args.compile:
            twin = ours(k, compile=True, device=device)
            steps["compiled"] = make_step(*twin, batches, torch.Generator(device).manual_seed(0))
            try:
                steps["compiled"]()                # compiles (a minute on a CPU)
            except Exception as error:            # report why, time the rest
                failed = f"compile failed: {type(error).__name__}: {error}"[:200]
                del steps["compiled"]
        for step in steps.values():         # warm up
            for _ in range(3):
                step()
        samples = {name: [] for name in steps}
        names = list(steps)
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t = clock()
                for _ in range(args.steps):
                    steps[name]()
                samples[name].append(args.steps / (clock() - t))
        rate = {name: statistics.median(v) for name, v in samples.items()}
        flops = matmul_flops(k)
        cells = ""
        if args.compile:
            cells = (f" {rate['compiled']:.1f} | {rate['compiled'] / rate['ours']:.2f}× | "
                     f"{rate['compiled'] / rate['pyro']:.2f}× |"
                     if "compiled" in rate else f" {failed} | — | — |")
        print(f"| {k} | {rate['ours']:.1f} | {rate['pyro']:.1f} | "
              f"{rate['ours'] / rate['pyro']:.2f}× |{cells} {flops / 1e9:.2f} | "
              f"{flops * max(rate['ours'], rate.get('compiled', 0)) / peak:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
