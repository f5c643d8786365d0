r"""Self-checks for Section 5 (normalizing flows).

Each check calls the student's function on fresh inputs from a private seeded generator
and compares the answer with an *independent* computation: the coupling layer against a
hand-written split into kept and changed coordinates and its Jacobian by autograd, the
flow prior against :mod:`torch.distributions` and the layer's own inverse. When an answer
is wrong it computes the usual mistakes (the log-det's sign, the mask forgotten or
swapped, a log-det summed over the batch, ...) and, if the answer is one of them, says so.

>>> from nfcourse.flows import masked_affine_coupling
>>> affine_coupling(masked_affine_coupling)  # doctest: +ELLIPSIS
✔ Exercise 5.4 (the masked affine coupling layer): ...
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from nfcourse.checks.core import Exercise, Mistake, self_check

__all__ = ["affine_coupling", "free_energy", "flow_prior_log_prob"]

DTYPE = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=DTYPE)


class _ReluNet(nn.Module):
    """A fixed random ReLU MLP returning (s, t): the coupling's conditioner."""

    def __init__(self, dim: int, gen: torch.Generator):
        super().__init__()
        self.w1, self.b1 = 0.8 * _randn(gen, dim, 16), 0.3 * _randn(gen, 16)
        self.w2 = 0.4 * _randn(gen, 16, 2 * dim)

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        out = torch.relu(v @ self.w1 + self.b1) @ self.w2
        return out.chunk(2, dim=-1)


# 5.4 ----------------------------------------------------------------------------------------

EX_5_4 = Exercise("5.4", "the masked affine coupling layer")


def _coupling_reference(x, mask, net, inverse):
    """Independent: split into kept (A) and changed (B) coordinates by index."""
    kept, changed = mask.bool(), ~mask.bool()
    s, t = net(mask * x)
    out = x.clone()
    if inverse:
        out[:, changed] = (x[:, changed] - t[:, changed]) * torch.exp(-s[:, changed])
        return out, -s[:, changed].sum(-1)
    out[:, changed] = x[:, changed] * torch.exp(s[:, changed]) + t[:, changed]
    return out, s[:, changed].sum(-1)


def _coupling_mistakes(x, mask, net, inverse) -> list[Mistake]:
    s, t = net(mask * x)
    s_all, t_all = net(x)
    keep, change = mask, 1 - mask
    if inverse:
        no_mask = (x - t) * torch.exp(-s)
        swapped = change * x + keep * (x - t) * torch.exp(-s)
        wrong_order = keep * x + change * (x * torch.exp(-s) - t)
        order_hint = ("the inverse must undo the forward step by step: forward is x·e^s + t, "
                      "so the inverse is (y − t)·e^(−s)")
        net_sees_all = keep * x + change * (x - t_all) * torch.exp(-s_all)
        extra = [(keep * x + change * (x - t) * torch.exp(s),
                  "the inverse divides by the scale: (y − t)·e^(−s), not (y − t)·e^s")]
    else:
        no_mask = x * torch.exp(s) + t
        swapped = change * x + keep * (x * torch.exp(s) + t)
        wrong_order = keep * x + change * (x + t) * torch.exp(s)
        order_hint = "scale first, then shift: x·e^s + t, not (x + t)·e^s"
        net_sees_all = keep * x + change * (x * torch.exp(s_all) + t_all)
        extra = []
    return extra + [
        (net_sees_all, "net must see the kept coordinates only: s, t = net(mask * x). The "
                       "inverse can recompute s and t only from what passed unchanged"),
        (no_mask, "the mask is forgotten: every coordinate was scaled and shifted; the kept "
                  "ones (mask = 1) must pass unchanged: y = b ⊙ x + (1 − b) ⊙ (...)"),
        (swapped, "the wrong half is transformed: mask = 1 marks the kept coordinates, which "
                  "pass unchanged (and are what net sees); scale and shift those with mask = 0"),
        (wrong_order, order_hint),
    ]


def _log_det_mistakes(x, mask, net, inverse, expected) -> list[Mistake]:
    s, _ = net(mask * x)
    change = 1 - mask
    sign = -1.0 if inverse else 1.0
    return [
        (-expected, "the log-det has the wrong sign: forward adds Σ s over the changed "
                    "coordinates, the inverse subtracts it"),
        (sign * s.sum(-1), "the log-det sums s over all coordinates; only the changed ones "
                           "(mask = 0) are scaled, the kept ones contribute log 1 = 0"),
        (sign * (mask * s).sum(-1), "the log-det sums s over the kept coordinates; the "
                                    "changed ones (mask = 0) carry the scaling"),
        (sign * (change * torch.exp(s)).sum(-1), "the log-det is a sum of log-scales s, not of "
                                                 "scales e^s: log|det diag(e^s)| = Σ s"),
        (expected.sum(), "one log-det per sample: sum over the coordinates (dim=-1), not over "
                         "the batch; shape [B]"),
    ]


@self_check
def affine_coupling(fn: Callable) -> bool:
    """Check ``fn(x, mask, net, inverse=False) -> (y, log_det)``: RealNVP's masked affine
    coupling, forward and inverse, against an independent computation and autograd."""
    ex = EX_5_4
    gen = _gen(54)
    B, D = 6, 5
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=DTYPE)
    net = _ReluNet(D, gen)
    x = 1.5 * _randn(gen, B, D)
    for inverse in (False, True):
        direction = "inverse" if inverse else "forward"
        expected, expected_ld = _coupling_reference(x, mask, net, inverse)
        got = ex.call(fn, x, mask, net, inverse)
        if not isinstance(got, tuple) or len(got) != 2:
            ex.fail(f"the {direction} call should return a pair (output, log_det)",
                    got=type(got).__name__)
        out, log_det = got
        ex.verdict(out, expected, f"the {direction} output", _coupling_mistakes(
            x, mask, net, inverse), shape_hint="the output has the input's shape [B, D]")
        ex.verdict(log_det, expected_ld, f"the {direction} log-det", _log_det_mistakes(
            x, mask, net, inverse, expected_ld), shape_hint="one log-det per sample: [B]")
    # the inverse undoes the forward, whatever the net (which is not invertible itself)
    y, _ = fn(x, mask, net, False)
    x_back, _ = fn(torch.as_tensor(y, dtype=DTYPE), mask, net, True)
    ex.close(x_back, x, "inverse(forward(x)) should give x back", rtol=1e-10, atol=1e-10)
    # and the log-det is that of the Jacobian (autograd, one sample at a time)
    ex.log_det_is_autograds(lambda v: fn(v[None], mask, net, False)[0][0], x[0],
                            fn(x[:1], mask, net, False)[1])
    ex.passed("forward, inverse and log-det agree with the split by index and with autograd")
    return True


# 5.6 ----------------------------------------------------------------------------------------

EX_5_6 = Exercise("5.6", "the free energy")


@self_check
def free_energy(fn: Callable) -> bool:
    """Check ``fn(log_q, energy_values, beta)`` -> the Monte Carlo free energy
    mean(log q(z_s) + β U(z_s)), a scalar, from per-sample log q and U."""
    ex = EX_5_6
    gen = _gen(56)
    log_q = -2 + _randn(gen, 50)
    energy = 3 + _randn(gen, 50).abs()
    for beta in (1.0, 0.3):
        expected = (log_q + beta * energy).mean()
        mistakes: list[Mistake] = [
            ((-log_q + beta * energy).mean(), "the entropy term has the wrong sign: F = E_q[log "
                                              "q(z) + β U(z)] = −H(q) + β E_q[U]"),
            ((log_q - beta * energy).mean(), "U is an energy, −log of the unnormalised density: "
                                             "it enters with a plus sign"),
            ((log_q + energy).mean(), "β multiplies the energy (the annealing of R&M)"),
            ((beta * (log_q + energy)).mean(), "β multiplies the energy only, not log q"),
            (log_q + beta * energy, "average over the samples: the free energy is one number"),
            ((log_q + beta * energy).sum(), "average over the samples (mean), not their sum"),
        ]
        got = ex.call(fn, log_q, energy, beta)
        ex.verdict(got, expected, f"the free energy at β = {beta}", mistakes,
                   shape_hint="the free energy is a scalar: average over the samples")
    ex.passed("mean(log q + β U): the reverse KL to exp(−βU)/Z, up to −log Z")
    return True


# The lecture's exercise: a flow prior --------------------------------------------------------

EX_PRIOR = Exercise("5.P", "the flow prior's log-density")


@self_check
def flow_prior_log_prob(fn: Callable) -> bool:
    """Check ``fn(z, flow) -> log p(z)`` for the prior z = f(u), u ~ N(0, I), where ``flow``
    follows the package's convention (``flow(u) -> (z, log_det)``, ``flow.inverse(z) ->
    (u, log_det_inv)``)."""
    from nfcourse.flows import AffineCoupling, Flow, half_mask
    ex = EX_PRIOR
    gen = _gen(57)
    D = 4
    with torch.random.fork_rng():
        torch.manual_seed(57)
        flow = Flow([AffineCoupling(half_mask(D, first=k % 2 == 0), hidden=(8,))
                     for k in range(3)]).to(DTYPE)
        with torch.no_grad():
            for p in flow.parameters():
                p.copy_(0.4 * torch.randn_like(p))
    z = 1.3 * _randn(gen, 7, D)
    base = Independent(Normal(torch.zeros(D, dtype=DTYPE), torch.ones(D, dtype=DTYPE)), 1)
    with torch.no_grad():
        u, ld_inv = flow.inverse(z)
        u_fwd, ld_fwd = flow(z)
    expected = base.log_prob(u) + ld_inv
    mistakes: list[Mistake] = [
        (base.log_prob(u) - ld_inv, "the log-det has the wrong sign: with u = f⁻¹(z), "
                                    "log p(z) = log N(u) + log|det ∂f⁻¹/∂z|, and inverse() "
                                    "returns that log-det already"),
        (base.log_prob(u_fwd) + ld_fwd, "the prior scores z through the inverse, u = f⁻¹(z): "
                                        "the flow maps noise to z, so flow(z) goes the wrong way"),
        (base.log_prob(u_fwd) - ld_fwd, "use flow.inverse(z), not flow(z): the flow maps noise "
                                        "to z"),
        (base.log_prob(z), "the flow is missing: score u = f⁻¹(z), plus the log-det"),
        (base.log_prob(u), "the log-det of the inverse is missing (change of variables)"),
    ]
    with torch.no_grad():
        got = ex.call(fn, z, flow)
    ex.verdict(got, expected, "log p(z) for 7 points", mistakes,
               shape_hint="one log-density per point: [B]")
    ex.passed("log N(f⁻¹(z); 0, I) + log|det ∂f⁻¹/∂z|, through the flow's inverse")
    return True
