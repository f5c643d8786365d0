"""nfcourse.flows side by side with normflows, zuko and pyro-ppl, in one process.

Layers (same sizes for every library):

* **Planar**, K = 10 and 32 layers, in the sampling direction with its log-det (the VI
  path of Rezende & Mohamed): ours ``Planar(D, length=K)``; normflows ``Planar``;
  pyro ``Planar`` (``T(x)`` then ``log_abs_det_jacobian``). zuko has no planar flow.
* **RealNVP**, 8 affine couplings, MLP conditioners with two hidden layers of 64 (ReLU),
  in the density direction (data to noise, what ``log_prob`` needs): ours
  ``AffineCoupling`` with alternating half masks; normflows ``AffineCouplingBlock`` +
  ``Permute('swap')``; zuko ``RealNVP``; pyro ``AffineCoupling`` + ``Permute``.
* **MAF**, 5 layers, MADE with two hidden layers of 64, order reversed every other layer,
  in the density direction, i.e. one MADE pass per layer: ours ``MAF.inverse``; zuko
  ``MAF`` (its transform maps data to noise); pyro ``AffineAutoregressive`` (its one-pass
  direction); normflows ``MaskedAffineAutoregressive.forward`` (its one-pass direction;
  note that normflows' own ``log_prob`` runs this layer's *sequential* inverse).

Modes: ``fwd`` is the map and its log-det under ``torch.no_grad()``; ``fwd+bwd`` adds
``backward()`` of ``sum(y**2) + sum(log_det)`` to every parameter.

Timing: every repeat runs each library once, in rotating order, on fresh input tensors
(pyro caches its last input); each timed block lasts at least ``--min-time`` seconds; we
report the median over repeats, as samples per second, and ratios nfcourse/peer (> 1:
nfcourse is faster). By default torch runs one thread and we time this process's CPU
time, which a busy shared machine disturbs far less than wall-clock time (``--threads 0
--clock wall`` for all cores). Run ``python benchmarks/flows.py --quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import sys
import time
from typing import Callable

import torch

import nfcourse.flows as ours

PEERS = ["normflows", "zuko", "pyro"]


def pin_malloc() -> bool:
    """Stop glibc from returning freed memory to the OS between calls.

    With its default, adaptive thresholds glibc unmaps or trims large freed blocks
    depending on the order of allocations, and the next [batch, hidden] buffer is paid in
    page faults (1 ms for 2.5 MB here), which swamps the arithmetic by luck of layout. Pinned
    thresholds (process-wide, the same for every library) measure the work itself.
    Returns False where glibc's ``mallopt`` is not available."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def _version(name: str) -> str:
    try:
        return importlib.metadata.version("pyro-ppl" if name == "pyro" else name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _try_import(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


# --------------------------------------------------------------------------------------
# builders: each returns (module holding the parameters, fn(x) -> (y, log_det)) or None
# --------------------------------------------------------------------------------------

def _chain(steps):
    """Run maps x -> (y, log_det) one after the other, summing the log-dets."""
    def run(x):
        log_det = 0
        for step in steps:
            x, ld = step(x)
            log_det = log_det + ld
        return x, log_det
    return run


def _pyro_step(t):
    """A pyro Transform as a map x -> (y, log_det)."""
    def step(x):
        y = t(x)
        return y, t.log_abs_det_jacobian(x, y)
    return step


def build_planar(lib: str, dim: int, k: int):
    if lib == "nfcourse":
        flow = ours.Planar(dim, length=k)
        return flow, flow
    if lib == "normflows":
        import normflows as nf
        layers = torch.nn.ModuleList([nf.flows.Planar((dim,)) for _ in range(k)])

        return layers, _chain(layers)
    if lib == "pyro":
        from pyro.distributions import transforms as T
        layers = torch.nn.ModuleList([T.Planar(dim) for _ in range(k)])

        return layers, _chain([_pyro_step(t) for t in layers])
    return None


def build_realnvp(lib: str, dim: int, n: int = 8, hidden: int = 64):
    half = dim // 2
    if lib == "nfcourse":
        flow = ours.Flow([ours.AffineCoupling(ours.half_mask(dim, first=i % 2 == 0),
                                              hidden=(hidden, hidden)) for i in range(n)])
        return flow, flow.inverse
    if lib == "normflows":
        import normflows as nf
        layers = []
        for _ in range(n):
            net = nf.nets.MLP([half, hidden, hidden, 2 * (dim - half)], init_zeros=True)
            layers += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(dim, mode="swap")]
        model = torch.nn.ModuleList(layers)

        # NormalizingFlow.inverse_and_log_det, without its float32 accumulator
        return model, _chain([layer.inverse for layer in reversed(model)])
    if lib == "zuko":
        import zuko
        flow = zuko.flows.RealNVP(dim, transforms=n, hidden_features=(hidden, hidden))
        return flow, lambda x: flow().transform.call_and_ladj(x)
    if lib == "pyro":
        from pyro.distributions import transforms as T
        from pyro.nn import DenseNN
        layers = []
        for _ in range(n):
            net = DenseNN(half, [hidden, hidden], [dim - half, dim - half])
            layers += [T.AffineCoupling(half, net), T.Permute(torch.arange(dim).flip(0))]
        params = torch.nn.ModuleList([t for t in layers if isinstance(t, torch.nn.Module)])

        return params, _chain([_pyro_step(t.inv) for t in reversed(layers)])
    return None


def build_maf(lib: str, dim: int, n: int = 5, hidden: int = 64):
    if lib == "nfcourse":
        flow = ours.Flow([ours.MAF(dim, hidden=(hidden, hidden), reverse=i % 2 == 1)
                          for i in range(n)])
        return flow, flow.inverse
    if lib == "normflows":
        import normflows as nf
        layers = torch.nn.ModuleList([
            nf.flows.MaskedAffineAutoregressive(dim, hidden, num_blocks=1,
                                                use_residual_blocks=False)
            for _ in range(n)])

        return layers, _chain(layers)
    if lib == "zuko":
        import zuko
        flow = zuko.flows.MAF(dim, transforms=n, hidden_features=(hidden, hidden))
        return flow, lambda x: flow().transform.call_and_ladj(x)
    if lib == "pyro":
        from pyro.distributions import transforms as T
        from pyro.nn import AutoRegressiveNN
        layers = torch.nn.ModuleList()
        for i in range(n):
            order = torch.arange(dim)
            net = AutoRegressiveNN(dim, [hidden, hidden], permutation=order.flip(0) if i % 2 else order)
            layers.append(T.AffineAutoregressive(net))

        return layers, _chain([_pyro_step(t) for t in layers])
    return None


BUILDERS: dict[str, Callable] = {
    "planar K=10": lambda lib, d: build_planar(lib, d, 10),
    "planar K=32": lambda lib, d: build_planar(lib, d, 32),
    "realnvp 8": build_realnvp,
    "maf 5": build_maf,
}


# --------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------

def make_step(module, fn, mode: str, inputs: list[torch.Tensor], counter: list[int]):
    """One call of ``fn``. ``counter`` is per library and survives the change of mode, so
    a library never sees the same input object twice in a row (pyro caches its last one)."""
    params = [p for p in module.parameters()]

    def step():
        x = inputs[counter[0] % len(inputs)]
        counter[0] += 1
        if mode == "fwd":
            with torch.no_grad():
                fn(x)
        else:
            for p in params:
                p.grad = None
            y, log_det = fn(x)
            (y.square().sum() + log_det.sum()).backward()
    return step


def time_row(steps: dict[str, Callable], repeats: int, min_time: float,
             clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per call for each library, interleaving libraries in every repeat."""
    inner = {}
    for name, step in steps.items():          # warm up, then size the timed blocks
        step(), step()
        t = clock()
        step()
        inner[name] = max(1, int(min_time / max(clock() - t, 1e-7)))
    samples = {name: [] for name in steps}
    names = list(steps)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step, n = steps[name], inner[name]
            t = clock()
            for _ in range(n):
                step()
            samples[name].append((clock() - t) / n)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.02,
                        help="seconds per timed block (default 0.02)")
    parser.add_argument("--quick", action="store_true",
                        help="3 repeats, short blocks: checks that everything runs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stable on a shared machine; 0 = torch's default)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default=None,
                        help="cpu: this process's CPU time (default with 1 thread; robust on a "
                             "shared machine), wall: elapsed time (default otherwise)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's adaptive malloc thresholds alone (see pin_malloc)")
    parser.add_argument("--layers", nargs="*", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--batches", nargs="*", type=int, default=[100, 10_000])
    parser.add_argument("--dims", nargs="*", type=int, default=[2, 40])
    parser.add_argument("--modes", nargs="*", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    parser.add_argument("--markdown", help="also write the table, as Markdown, to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.min_time = 3, 0.005
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock is None:
        args.clock = "cpu" if torch.get_num_threads() == 1 else "wall"
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    malloc = "default malloc" if args.default_malloc or not pin_malloc() else "pinned malloc thresholds"
    torch.manual_seed(0)

    libs = ["nfcourse"] + [p for p in PEERS if _try_import(p) is not None]
    header = (f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
              f"{platform.processor() or platform.machine()}, Python {platform.python_version()}; "
              + ", ".join(f"{p} {_version(p)}" for p in PEERS)
              + f"; median of {args.repeats} repeats, {args.clock} time, {malloc}")
    print(header)
    columns = ["layer", "batch", "D", "mode", "nfcourse"] + PEERS + [f"×{p}" for p in PEERS] + ["×best"]
    rows = []
    print(" | ".join(columns))
    for layer in args.layers:
        for batch in args.batches:
            for dim in args.dims:
                built = {lib: BUILDERS[layer](lib, dim) for lib in libs}
                built = {lib: b for lib, b in built.items() if b is not None}
                inputs = [torch.randn(batch, dim) for _ in range(4)]
                counters = {lib: [0] for lib in built}
                for mode in args.modes:
                    steps = {lib: make_step(m, fn, mode, inputs, counters[lib])
                             for lib, (m, fn) in built.items()}
                    secs = time_row(steps, args.repeats, args.min_time, clock)
                    rate = {lib: batch / s for lib, s in secs.items()}
                    peers = [rate.get(p) for p in PEERS]
                    ratios = [rate["nfcourse"] / r if r else None for r in peers]
                    present = [r for r in peers if r]
                    best = rate["nfcourse"] / max(present) if present else None
                    cells = [layer, str(batch), str(dim), mode, f"{rate['nfcourse']:.3g}"]
                    cells += [f"{r:.3g}" if r else "—" for r in peers]
                    cells += [f"{q:.2f}" if q else "—" for q in ratios + [best]]
                    rows.append(cells)
                    print(" | ".join(cells), flush=True)
    ratios = [float(r[-1]) for r in rows if r[-1] != "—"]
    if ratios:
        print(f"nfcourse / fastest peer: worst {min(ratios):.2f}, best {max(ratios):.2f}, "
              f"median {statistics.median(ratios):.2f}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(header + "\n\n")
            f.write("| " + " | ".join(columns) + " |\n")
            f.write("|" + "---|" * len(columns) + "\n")
            for cells in rows:
                f.write("| " + " | ".join(cells) + " |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
