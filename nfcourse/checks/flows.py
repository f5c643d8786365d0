r"""Self-checks for Section 5 (normalizing flows): the masked affine coupling (5.4), bits per
dimension of dequantized data (5.5), the free energy (5.6) and the flow prior's
log-density (the lecture's exercise, 5.P).

Each check calls the student's function on fresh inputs from a private seeded generator
and compares the answer with an *independent* computation: the coupling layer against a
hand-written split into kept and changed coordinates and its Jacobian by autograd, the
flow prior against :mod:`torch.distributions` and the flow's own inverse, the bound and the
free energy against their terms. When an answer is wrong it computes the usual mistakes
(the log-det's sign, the mask forgotten or swapped, nats for bits, β on the wrong term, ...)
and, if the answer is one of them, says so. Otherwise it probes: it calls the function again
on designed inputs (a net that returns constants, a mask of all ones, a flow that only
shifts or only scales, one draw against many, an input raised by 1, twice the levels) and
says which part is off.

>>> from nfcourse.flows import masked_affine_coupling
>>> affine_coupling(masked_affine_coupling)  # doctest: +ELLIPSIS
✔ Exercise 5.4 (the masked affine coupling layer): ...
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from nfcourse.checks.core import (SHAPE_ERROR, Exercise, Mistake, matches, self_check,
                                  wrong_coefficient)

__all__ = ["affine_coupling", "dequantized_bits_per_dim", "free_energy", "flow_prior_log_prob"]

DTYPE = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=DTYPE)


def _pair(ex: Exercise, got: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        ex.fail(f"{what} should return a pair (output, log_det)", got=type(got).__name__)
    return got[0], got[1]


class _ReluNet(nn.Module):
    """A fixed random ReLU MLP returning (s, t): the coupling's conditioner."""

    def __init__(self, dim: int, gen: torch.Generator):
        super().__init__()
        self.w1, self.b1 = 0.8 * _randn(gen, dim, 16), 0.3 * _randn(gen, 16)
        self.w2 = 0.4 * _randn(gen, 16, 2 * dim)

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        out = torch.relu(v @ self.w1 + self.b1) @ self.w2
        return out.chunk(2, dim=-1)


class _ConstNet:
    """A conditioner that returns the same s and t at every coordinate, whatever it sees:
    the probes' designed nets (s = 0 makes the layer a shift, t = 0 a scaling)."""

    def __init__(self, s: float, t: float):
        self.s, self.t = s, t

    def __call__(self, v: Tensor) -> tuple[Tensor, Tensor]:
        return torch.full_like(v, self.s), torch.full_like(v, self.t)


# 5.4 ----------------------------------------------------------------------------------------

EX_5_4 = Exercise("5.4", "the masked affine coupling layer")

#: A crash on the mask: it is a float tensor of 0s and 1s, not an index.
_MASK_INDEX = ("mask is a float tensor of 0s and 1s, not an index: use it arithmetically, "
               "mask * x for the kept part and (1 − mask) * (...) for the changed one")


#: A crash on net's answer, which is already the pair (s, t).
_NET_PAIR = "net(mask * x) returns the pair (s, t): unpack it, s, t = net(mask * x)"


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
    forward = keep * x + change * (x * torch.exp(s) + t)
    if inverse:
        no_mask = (x - t) * torch.exp(-s)
        swapped = change * x + keep * (x - t) * torch.exp(-s)
        wrong_order = keep * x + change * (x * torch.exp(-s) - t)
        order_hint = ("the inverse must undo the forward step by step: forward is x·e^s + t, "
                      "so the inverse is (y − t)·e^(−s)")
        net_sees_all = keep * x + change * (x - t_all) * torch.exp(-s_all)
        no_exp = keep * x + change * (x - t) / s
        extra = [(keep * x + change * (x - t) * torch.exp(s),
                  "the inverse divides by the scale: (y − t)·e^(−s), not (y − t)·e^s"),
                 (forward, "with inverse=True your function returned the forward map: undo "
                           "it, x = (y − t)·e^(−s) on the coordinates with mask = 0")]
    else:
        no_mask = x * torch.exp(s) + t
        swapped = change * x + keep * (x * torch.exp(s) + t)
        wrong_order = keep * x + change * (x + t) * torch.exp(s)
        order_hint = "scale first, then shift: x·e^s + t, not (x + t)·e^s"
        net_sees_all = keep * x + change * (x * torch.exp(s_all) + t_all)
        no_exp = keep * x + change * (x * s + t)
        extra = [(keep * x + change * x * torch.exp(s) + t,
                  "the shift t is added to the kept coordinates too: (1 − mask) multiplies the "
                  "whole bracket, (1 − b) ⊙ (x·e^s + t)"),
                 (keep * x + x * torch.exp(s) + t,
                  "the changed part is not multiplied by (1 − mask), so the kept coordinates "
                  "get it too: y = b ⊙ x + (1 − b) ⊙ (x·e^s + t)")]
    return extra + [
        (net_sees_all, "net must see the kept coordinates only: s, t = net(mask * x). The "
                       "inverse can recompute s and t only from what passed unchanged"),
        (no_mask, "the mask is forgotten: every coordinate was scaled and shifted; the kept "
                  "ones (mask = 1) must pass unchanged: y = b ⊙ x + (1 − b) ⊙ (...)"),
        (swapped, "the wrong half is transformed: mask = 1 marks the kept coordinates, which "
                  "pass unchanged (and are what net sees); scale and shift those with mask = 0"),
        (wrong_order, order_hint),
        (no_exp, "the scale is e^s, not s: s is a log-scale, and e^s > 0 keeps the layer "
                 "invertible whatever net returns"),
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
        (sign * (change * s).mean(-1), "sum the log-scales over the coordinates, do not "
                                       "average them: the determinant is a product of scales"),
        (expected.sum(), "one log-det per sample: sum over the coordinates (dim=-1), not over "
                         "the batch; shape [B]"),
    ]


def _first_wrong(ex: Exercise, fn: Callable, x: Tensor, inverse: bool, cases: list,
                 part: int, what: str) -> str:
    """The hint of the first probe ``((mask, net, want), hint)`` whose ``what`` (part 0 of
    the answer: the output; 1: the log-det) differs from ``want``; if none does, the error
    lies in what net is given."""
    for (probe_mask, probe_net, want), hint in cases:
        got = _pair(ex, ex.call(fn, x, probe_mask, probe_net, inverse), "your function")[part]
        if not matches(ex.tensor(got, f"the {what}"), want):
            return hint
    return (f"your {what} is right whenever net returns constants, so look at what net is "
            "given: s, t = net(mask * x), the kept coordinates only")


def _coupling_output_probe(ex: Exercise, fn: Callable, x: Tensor, mask: Tensor, net,
                           inverse: bool) -> str | None:
    """Which part of a wrong output is off, from nets that return constants (s = t = 0: the
    identity; s = 0: a shift; t = 0: a scaling) and a mask of all ones (nothing changes)."""
    sign, c = (-1.0 if inverse else 1.0), 0.7
    change, ones = 1 - mask, torch.ones_like(mask)
    cases = [
        ((mask, _ConstNet(0.0, 0.0), x),
         "with a net that returns s = 0 and t = 0 the layer must leave x unchanged (e^0 = 1, "
         "no shift); yours changes it: look at how s and t enter"),
        ((ones, net, x),
         "with a mask of all ones every coordinate is kept and must pass unchanged; yours "
         "changes some: the transformed part is multiplied by (1 − mask)"),
        ((mask, _ConstNet(0.0, c), x + sign * change * c),
         "with s = 0 the layer only shifts the coordinates with mask = 0 by t (forward + t, "
         "inverse − t); yours does something else: look at how t enters"),
        ((mask, _ConstNet(c, 0.0), x * torch.exp(sign * change * c)),
         "with t = 0 the layer only multiplies the coordinates with mask = 0 by e^s (the "
         "inverse by e^(−s)); yours does something else: look at how s enters"),
    ]
    return _first_wrong(ex, fn, x, inverse, cases, part=0, what="output")


def _coupling_log_det_probe(ex: Exercise, fn: Callable, x: Tensor, mask: Tensor, net,
                            inverse: bool) -> str | None:
    """Which part of a wrong log-det is off, from the same designed nets and masks."""
    sign, c = (-1.0 if inverse else 1.0), 0.7
    B, changed = x.shape[0], int((1 - mask).sum())
    zeros, ones = torch.zeros(B, dtype=x.dtype), torch.ones_like(mask)
    scaled = torch.full((B,), sign * c * changed, dtype=x.dtype)
    cases = [
        ((mask, _ConstNet(0.0, 0.0), zeros),
         "with a net that returns s = 0 nothing is scaled (e^0 = 1), so the log-det must be 0; "
         "yours is not: log|det| = Σ (1 − b_i) s_i"),
        ((ones, net, zeros),
         "with a mask of all ones nothing is scaled, so the log-det must be 0: sum s over the "
         "coordinates with mask = 0 only"),
        ((mask, _ConstNet(c, 0.3), scaled),
         f"with s = {c} at every coordinate the log-det is {sign * c * changed:+.4g} "
         f"({'−' if inverse else '+'}{c} for each of the {changed} coordinates with mask = 0); "
         "yours is not: it depends on s alone (not on t or x), summed over those coordinates"),
    ]
    return _first_wrong(ex, fn, x, inverse, cases, part=1, what="log-det")


@self_check
def affine_coupling(fn: Callable) -> bool:
    """Check ``fn(x, mask, net, inverse=False) -> (y, log_det)``: RealNVP's masked affine
    coupling, forward and inverse, against an independent computation and autograd; a wrong
    part is located with nets that return constants and a mask of all ones."""
    ex = EX_5_4
    gen = _gen(54)
    B, D = 6, 5
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=DTYPE)
    net = _ReluNet(D, gen)
    x = 1.5 * _randn(gen, B, D)
    crashes = [("tensors used as indices|IndexError", _MASK_INDEX), ("'tuple' object", _NET_PAIR)]
    for inverse in (False, True):
        direction = "inverse" if inverse else "forward"
        expected, expected_ld = _coupling_reference(x, mask, net, inverse)
        out, log_det = _pair(ex, ex.call_hinting(fn, x, mask, net, inverse, crashes=crashes),
                             f"the {direction} call")
        ex.verdict(out, expected, f"the {direction} output", _coupling_mistakes(
            x, mask, net, inverse), shape_hint="the output has the input's shape [B, D]",
            probe=functools.partial(_coupling_output_probe, ex, fn, x, mask, net, inverse))
        ex.verdict(log_det, expected_ld, f"the {direction} log-det", _log_det_mistakes(
            x, mask, net, inverse, expected_ld), shape_hint="one log-det per sample: [B]",
            probe=functools.partial(_coupling_log_det_probe, ex, fn, x, mask, net, inverse))
    # the inverse undoes the forward, whatever the net (which is not invertible itself)
    y, _ = fn(x, mask, net, False)
    x_back, _ = fn(torch.as_tensor(y, dtype=DTYPE), mask, net, True)
    ex.close(x_back, x, "inverse(forward(x)) should give x back", rtol=1e-10, atol=1e-10)
    # and the log-det is that of the Jacobian (autograd, one sample at a time)
    ex.log_det_is_autograds(lambda v: fn(v[None], mask, net, False)[0][0], x[0],
                            fn(x[:1], mask, net, False)[1])
    ex.passed("forward, inverse and log-det agree with the split by index and with autograd")
    return True


# 5.5 ----------------------------------------------------------------------------------------

EX_5_5 = Exercise("5.5", "bits per dimension of dequantized data")

#: A crash on ``dims`` or ``levels``, which are Python ints.
_INTS = ("dims and levels are Python ints: use math.log(levels) (torch.log takes tensors "
         "only)")

#: A bound summed or averaged over the batch.
_PER_IMAGE = "one value per image, shape [B]: do not sum or average over the batch"

#: The batches the check scores: (images, dimensions D, levels k).
_BPD_CASES = [(5, 64, 17), (3, 12, 256)]


def _bpd_reference(log_q_s: Tensor, log_det: Tensor, dims: int, levels: int) -> Tensor:
    """Independent: log₂ of the density of y in bits per dimension, plus log₂ k."""
    return -(log_q_s + log_det) * math.log2(math.e) / dims + math.log2(levels)


def _bpd_mistakes(log_q_s: Tensor, log_det: Tensor, dims: int, levels: int) -> list[Mistake]:
    ln2, lnk, D = math.log(2), math.log(levels), dims
    log_q_y = log_q_s + log_det
    nll = -log_q_y + D * lnk                       # nats per image
    return [
        (nll / D, "that is nats per dimension: divide by ln 2 as well (bits = nats / ln 2)"),
        (-log_q_y / (D * ln2), "the dequantization's D·log k is missing: P(x) = ∫ q((x + u)/k) "
                               "k^(−D) du, so −log P(x) ≤ −log q(y) + D log k"),
        ((-log_q_s + D * lnk) / (D * ln2),
         "the logit's log-det is left out: the density of y is log q_S(s) + log|det ∂s/∂y|, "
         "not the density of s alone"),
        ((-log_q_s + log_det + D * lnk) / (D * ln2),
         "the logit's log-det has the wrong sign: log q(y) = log q_S(s) + log|det ∂s/∂y|, "
         "and the NLL is −log q(y)"),
        ((-log_q_y - D * lnk) / (D * ln2),
         "D·log k enters with a plus sign: −log P(x) ≤ −log q(y) + D log k (the k^(−D) of the "
         "dequantization)"),
        ((log_q_y + D * lnk) / (D * ln2), "the NLL is −log q(y): the density term enters with a "
                                          "minus sign"),
        (-log_q_y / D + math.log2(levels), "log₂ k is in bits but −log q(y)/D is still in nats: "
                                           "divide that by ln 2 too"),
        (-log_q_y / (D * ln2) + lnk, "log k is in nats while the rest is in bits: add "
                                     "log₂ k = ln k / ln 2"),
        (nll / ln2, "that is bits per image: divide by the number of dimensions D as well"),
        (-log_q_y / (D * ln2) + D * math.log2(levels),
         "D·log₂ k is per image; per dimension it is log₂ k: divide it by D too"),
        ((-log_q_y + lnk) / (D * ln2), "the k^(−D) of the dequantization gives log k once per "
                                       "dimension: D·log k per image, not log k"),
        ((-log_q_y + D * math.log(levels - 1)) / (D * ln2),
         "k is levels, the number of values a pixel takes (0 … k − 1): log k, not log(k − 1)"),
        ((nll / (D * ln2)).mean(), _PER_IMAGE),
        ((nll / (D * ln2)).sum(), _PER_IMAGE),
    ]


def _bpd_probe(ex: Exercise, fn: Callable, log_q_s: Tensor, log_det: Tensor, dims: int,
               levels: int) -> str | None:
    """Which term of a wrong bound is off: its coefficients in log q_S and in the log-det,
    read by raising each by 1 nat, and its change when the levels double (1 bit per
    dimension)."""
    slope = -1 / (dims * math.log(2))
    why = ("−log q(y) = −(log q_S(s) + log|det ∂s/∂y|) nats per image, divided by D ln 2 "
           "for bits per dimension")
    hint = wrong_coefficient(ex, fn, (log_q_s, log_det, dims, levels), "the bits/dim", [
        (0, slope, "log q_S(s)", why), (1, slope, "logit log-det", why)])
    if hint is not None:
        return hint
    doubled = ex.tensor(ex.call(fn, log_q_s, log_det, dims, 2 * levels), "the bits/dim")
    before = ex.tensor(ex.call(fn, log_q_s, log_det, dims, levels), "the bits/dim")
    if doubled.shape == before.shape and not matches(doubled - before, torch.ones_like(before)):
        return ("with twice the levels every dimension needs one more bit, so the bits/dim "
                "should rise by exactly 1; yours does not: the dequantization adds log₂ k "
                "per dimension (use the levels you are given)")
    return None


@self_check
def dequantized_bits_per_dim(fn: Callable) -> bool:
    """Check ``fn(log_q_s, log_det_logit, dims, levels) -> [B]``: the bound on −log₂ P(x) per
    dimension for images of ``dims`` pixels with ``levels`` levels, dequantized to
    y = (x + u)/k and scored in logit space, log q(y) = log q_S(s) + log|det ∂s/∂y|:
    (−log q(y) + D ln k) / (D ln 2)."""
    ex = EX_5_5
    gen = _gen(55)
    for B, D, k in _BPD_CASES:
        # realistic sizes: −log q(y) a little below D log k, the logit's log-det ≈ 2.3 D
        log_q_s = -D + 0.1 * D * _randn(gen, B)
        log_det = 2.3 * D + 0.15 * D * _randn(gen, B)
        got = ex.call_hinting(fn, log_q_s, log_det, D, k, crashes=[("must be Tensor", _INTS)])
        ex.verdict(got, _bpd_reference(log_q_s, log_det, D, k),
                   f"the bits/dim of {B} images of {D} pixels with {k} levels",
                   _bpd_mistakes(log_q_s, log_det, D, k),
                   shape_hint="one value per image: shape [B]",
                   probe=functools.partial(_bpd_probe, ex, fn, log_q_s, log_det, D, k))
    ex.passed("(−(log q_S + log-det) + D ln k) / (D ln 2) per image: the bound on −log₂ P(x) "
              "per dimension")
    return True


# 5.6 ----------------------------------------------------------------------------------------

EX_5_6 = Exercise("5.6", "the free energy")


def _free_energy_mistakes(log_q: Tensor, energy: Tensor, beta: float) -> list[Mistake]:
    right = log_q + beta * energy
    return [
        ((-log_q + beta * energy).mean(), "the entropy term has the wrong sign: F = E_q[log "
                                          "q(z) + β U(z)] = −H(q) + β E_q[U]"),
        ((log_q - beta * energy).mean(), "U is an energy, −log of the unnormalised density: "
                                         "it enters with a plus sign"),
        ((log_q + energy).mean(), "β multiplies the energy (the annealing of R&M)"),
        ((beta * (log_q + energy)).mean(), "β multiplies the energy only, not log q"),
        ((beta * log_q + energy).mean(), "β belongs to the energy, not to log q: "
                                         "F = mean(log q + β U)"),
        (-right.mean(), "this is −F, which training would maximise: the free energy is "
                        "mean(log q + β U), the objective to minimise"),
        (right, "average over the samples: the free energy is one number"),
        (right.sum(), "average over the samples (mean), not their sum"),
    ]


def _free_energy_probe(ex: Exercise, fn: Callable, log_q: Tensor, energy: Tensor,
                       beta: float) -> str | None:
    """Which part of a wrong free energy is off: a single draw against many (the average),
    then the coefficients of log q and U, read by raising each by 1."""
    one = ex.tensor(ex.call(fn, log_q[:1], energy[:1], beta), "the free energy")
    if matches(one, (log_q[:1] + beta * energy[:1]).mean()):
        return (f"your answer is right for a single draw but not for {len(log_q)}: average "
                "over the draws (the mean over the samples)")
    return wrong_coefficient(ex, fn, (log_q, energy, beta), "F", [
        (0, 1.0, "log q(z_s)", "log q enters once, averaged, with a plus sign: "
                               "F = mean(log q + β U)"),
        (1, beta, "U(z_s)", "β multiplies the energy, averaged: F = mean(log q + β U)")])


@self_check
def free_energy(fn: Callable) -> bool:
    """Check ``fn(log_q, energy_values, beta)`` -> the Monte Carlo free energy
    mean(log q(z_s) + β U(z_s)), a scalar, from per-sample log q and U, at β = 1 and β = 0.3."""
    ex = EX_5_6
    gen = _gen(56)
    log_q = -2 + _randn(gen, 50)
    energy = 3 + _randn(gen, 50).abs()
    for beta in (1.0, 0.3):
        got = ex.call(fn, log_q, energy, beta)
        ex.verdict(got, (log_q + beta * energy).mean(), f"the free energy at β = {beta}",
                   _free_energy_mistakes(log_q, energy, beta),
                   shape_hint="the free energy is a scalar: average over the samples",
                   probe=functools.partial(_free_energy_probe, ex, fn, log_q, energy, beta))
    ex.passed("mean(log q + β U): the reverse KL to exp(−βU)/Z, up to −log Z")
    return True


# The lecture's exercise: a flow prior --------------------------------------------------------

EX_PRIOR = Exercise("5.P", "the flow prior's log-density")

#: A broadcasting crash: the base density per coordinate added to the log-det per point.
_PER_POINT = ("Normal(0, 1).log_prob(u) is one value per coordinate, [B, d]: sum it over the "
              "last dimension (.sum(-1)) to one log-density per point, [B], then add the "
              "log-det")

#: A crash on flow.inverse's answer, a pair.
_UNPACK = ("flow.inverse(z) returns a pair (u, log_det_inv): unpack it, "
           "u, log_det_inv = flow.inverse(z)")


class _AffineFlow:
    """z = a·u + c in the package's convention (``flow(u) -> (z, log_det)``,
    ``flow.inverse(z) -> (u, log_det_inv)``): the probes' simple flows."""

    def __init__(self, scale: float, shift: float):
        self.scale, self.shift = scale, shift

    def _log_det(self, v: Tensor) -> Tensor:
        return torch.full(v.shape[:1], v.shape[-1] * math.log(self.scale), dtype=v.dtype)

    def __call__(self, u: Tensor) -> tuple[Tensor, Tensor]:
        return self.scale * u + self.shift, self._log_det(u)

    forward = __call__

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return (z - self.shift) / self.scale, -self._log_det(z)


def _std_normal(v: Tensor) -> Tensor:
    return Independent(Normal(torch.zeros_like(v), torch.ones_like(v)), 1).log_prob(v)


def _prior_probe(ex: Exercise, fn: Callable, z: Tensor) -> str | None:
    """Which part of a wrong log p(z) is off, from flows whose answer is known in closed
    form: the identity (the base density alone), a shift (the direction, log-det 0) and a
    scaling (the log-det)."""
    d = z.shape[-1]
    cases = [
        ((1.0, 0.0, _std_normal(z)),
         "with the identity flow (u = z, log-det 0) log p(z) must be log N(z; 0, I) = "
         "−½‖z‖² − (d/2) log 2π; yours is not: the base density's part is off"),
        ((1.0, 1.5, _std_normal(z - 1.5)),
         "with a flow that only shifts, z = u + 1.5 (log-det 0), log p(z) must be "
         "log N(z − 1.5; 0, I); yours is not: score u = flow.inverse(z), the noise the flow "
         "maps to z"),
        ((2.0, 0.0, _std_normal(z / 2) - d * math.log(2.0)),
         "with a flow that only scales, z = 2u, log p(z) = log N(z/2; 0, I) − d log 2; yours "
         "is not: the log-det's part is off; add the one flow.inverse returns, "
         "log|det ∂f⁻¹/∂z|, one per point"),
    ]
    for (scale, shift, want), hint in cases:
        if not matches(ex.tensor(ex.call(fn, z, _AffineFlow(scale, shift)), "log p(z)"), want):
            return hint
    return None


@self_check
def flow_prior_log_prob(fn: Callable) -> bool:
    """Check ``fn(z, flow) -> log p(z)`` for the prior z = f(u), u ~ N(0, I), where ``flow``
    follows the package's convention (``flow(u) -> (z, log_det)``, ``flow.inverse(z) ->
    (u, log_det_inv)``): on a random coupling flow, and, for a wrong answer, on flows that
    only shift or only scale."""
    from nfcourse.flows import AffineCoupling, Flow, half_mask
    ex = EX_PRIOR
    gen = _gen(57)
    D = 4
    with torch.random.fork_rng(devices=[]):  # the layers' default initialisation draws
        flow = Flow([AffineCoupling(half_mask(D, first=k % 2 == 0), hidden=(8,))
                     for k in range(3)]).to(DTYPE)
    with torch.no_grad():  # random, not the identity; small enough for log p of a few nats
        for p in flow.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=gen, dtype=DTYPE))
    z = 1.3 * _randn(gen, 7, D)
    with torch.no_grad():
        u, ld_inv = flow.inverse(z)
        u_fwd, ld_fwd = flow(z)
        base = _std_normal(u)
        expected = base + ld_inv
        mistakes: list[Mistake] = [
            (base - ld_inv, "the log-det has the wrong sign: with u = f⁻¹(z), "
                            "log p(z) = log N(u) + log|det ∂f⁻¹/∂z|, and inverse() "
                            "returns that log-det already"),
            (_std_normal(u_fwd) + ld_fwd, "the prior scores z through the inverse, u = f⁻¹(z): "
                                          "the flow maps noise to z, so flow(z) goes the wrong "
                                          "way"),
            (_std_normal(u_fwd) - ld_fwd, "use flow.inverse(z), not flow(z): the flow maps "
                                          "noise to z"),
            (_std_normal(z), "the flow is missing: score u = f⁻¹(z), plus the log-det"),
            (_std_normal(z) + ld_inv, "score u = f⁻¹(z), not z itself: log N(f⁻¹(z); 0, I) "
                                      "plus the log-det"),
            (base, "the log-det of the inverse is missing (change of variables)"),
            (base.sum() + ld_inv, "sum log N over the coordinates of each point (.sum(-1)), "
                                  "not over the whole batch"),
        ]
        got = ex.call_hinting(fn, z, flow, crashes=[(SHAPE_ERROR, _PER_POINT),
                                                    ("must be a Tensor|'tuple'", _UNPACK)])
        ex.verdict(got, expected, "log p(z) for 7 points", mistakes,
                   shape_hint="one log-density per point: [B]",
                   probe=functools.partial(_prior_probe, ex, fn, z))
    ex.passed("log N(f⁻¹(z); 0, I) + log|det ∂f⁻¹/∂z|, through the flow's inverse")
    return True
