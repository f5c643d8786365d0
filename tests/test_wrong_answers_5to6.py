"""Plausible wrong answers to every checked code exercise of Sections 5 and 6, written the way
a student writes them, and what the self-check says to each (issue #25).

Built like ``test_wrong_answers_1to4.py`` (whose helpers it reuses): each entry of
:data:`TABLE` is a check, a wrong answer, and either the part of the message that names the
mistake (a substring; ``" ... "`` separates several parts) or :data:`NOT_NAMED`: the check
catches the answer but can only say that the values are wrong. The tests ask that every
wrong answer is caught, that each named one gets its hint, that at least 80 % of each
section's wrong answers are named, and that every mistake listed in the checks (their lists
and their probes' tables) is reached by one of these answers.
``python tests/test_wrong_answers_5to6.py`` prints the table (caught / named / total)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from nfcourse.checks import flows as check5
from nfcourse.checks import nfvi as check6

sys.path.insert(0, str(Path(__file__).parent))  # when run as a script
from test_wrong_answers_1to4 import (NAMED_SHARE, NOT_NAMED,  # noqa: E402
                                     assert_caught_and_named, assert_every_mistake_reached,
                                     entries_of, hint_of, ids_of, messages, names, section)

pytestmark = pytest.mark.usefixtures("one_thread")


# 5.4 the masked affine coupling ------------------------------------------------------------

def _coupling(forward, inverse, log_det=lambda b, s, inv: (-1 if inv else 1)
              * ((1 - b) * s).sum(-1), sees=lambda x, b: b * x):
    """A coupling as a student writes it: the two output formulas, the log-det, and what the
    net is given, each replaceable by a wrong one."""
    def layer(x, mask, net, inverse_=False):
        s, t = net(sees(x, mask))
        out = (inverse if inverse_ else forward)(x, mask, s, t)
        return out, log_det(mask, s, inverse_)
    return layer


def _fwd(x, b, s, t):
    return b * x + (1 - b) * (x * torch.exp(s) + t)


def _inv(x, b, s, t):
    return b * x + (1 - b) * (x - t) * torch.exp(-s)


COUPLING = {
    "log-det +Σs both ways": (_coupling(_fwd, _inv, lambda b, s, inv: ((1 - b) * s).sum(-1)),
                              "log-det has the wrong sign"),
    "log-det over all coordinates": (_coupling(_fwd, _inv, lambda b, s, inv: s.sum(-1)),
                                     "sums s over all coordinates"),
    "log-det summed over the batch": (_coupling(_fwd, _inv, lambda b, s, inv: ((1 - b) * s).sum()),
                                      "one log-det per sample"),
    "log-det over the kept half": (_coupling(_fwd, _inv, lambda b, s, inv: (b * s).sum(-1)),
                                   "sums s over the kept coordinates"),
    "log-det of e^s": (_coupling(_fwd, _inv, lambda b, s, inv: ((1 - b) * s.exp()).sum(-1)),
                       "not of scales e^s"),
    "log-det averaged": (_coupling(_fwd, _inv, lambda b, s, inv: ((1 - b) * s).mean(-1)),
                         "do not average them"),
    "log-det not summed": (_coupling(_fwd, _inv, lambda b, s, inv: (1 - b) * s),
                           "wrong shape ... one log-det per sample: [B]"),
    "log-det includes t": (lambda x, m, net, inv=False: (
        _coupling(_fwd, _inv)(x, m, net, inv)[0],
        (-1 if inv else 1) * ((1 - m) * (net(m * x)[0] + net(m * x)[1])).sum(-1)),
        "it depends on s alone"),
    "mask forgotten": (_coupling(lambda x, b, s, t: x * torch.exp(s) + t,
                                 lambda x, b, s, t: (x - t) * torch.exp(-s)),
                       "the mask is forgotten"),
    "mask inverted": (_coupling(lambda x, b, s, t: _fwd(x, 1 - b, s, t),
                                lambda x, b, s, t: _inv(x, 1 - b, s, t)),
                      "the wrong half is transformed"),
    "t not masked": (_coupling(lambda x, b, s, t: b * x + (1 - b) * x * torch.exp(s) + t, _inv),
                     "the shift t is added to the kept coordinates too"),
    "(1 − mask) forgotten on the output": (_coupling(
        lambda x, b, s, t: b * x + x * torch.exp(s) + t, _inv), "not multiplied by (1 − mask)"),
    "s for e^s": (_coupling(lambda x, b, s, t: b * x + (1 - b) * (x * s + t),
                            lambda x, b, s, t: b * x + (1 - b) * (x - t) / s),
                  "the scale is e^s, not s"),
    "shift before scale": (_coupling(lambda x, b, s, t: b * x + (1 - b) * (x + t) * torch.exp(s),
                                     _inv), "scale first, then shift"),
    "x − t in the forward": (_coupling(lambda x, b, s, t: b * x + (1 - b) * (x * torch.exp(s) - t),
                                       _inv), "with s = 0 the layer only shifts"),
    "e^(−s) in the forward": (_coupling(lambda x, b, s, t: _fwd(x, b, -s, t), _inv),
                              "with t = 0 the layer only multiplies"),
    "inverse: y·e^(−s) − t": (_coupling(_fwd, lambda x, b, s, t: b * x + (1 - b)
                                        * (x * torch.exp(-s) - t)), "(y − t)·e^(−s)"),
    "inverse multiplies by e^s": (_coupling(_fwd, lambda x, b, s, t: b * x + (1 - b) * (x - t)
                                            * torch.exp(s)), "divides by the scale"),
    "inverse flag ignored": (_coupling(_fwd, _fwd, lambda b, s, inv: ((1 - b) * s).sum(-1)),
                             "returned the forward map"),
    "Glow's sigmoid scale": (_coupling(
        lambda x, b, s, t: b * x + (1 - b) * (x * torch.sigmoid(s + 2) + t), _inv,
        lambda b, s, inv: ((1 - b) * F.logsigmoid(s + 2)).sum(-1)), "leave x unchanged"),
    "halves hard-coded": (lambda x, mask, net, inverse=False: _coupling(_fwd, _inv)(
        x, (torch.arange(x.shape[1]) < x.shape[1] // 2).to(x.dtype), net, inverse),
        "with a mask of all ones every coordinate is kept"),
    "log-det of a hard-coded half": (_coupling(_fwd, _inv, lambda b, s, inv: (-1 if inv else 1)
                                               * s[:, s.shape[1] // 2:].sum(-1)),
                                     "with a mask of all ones nothing is scaled"),
    "log of the summed scales": (_coupling(_fwd, _inv, lambda b, s, inv: (-1 if inv else 1)
                                           * torch.log(((1 - b) * s.exp()).sum(-1))),
                                 "with a net that returns s = 0 nothing is scaled"),
    "net sees all of x": (_coupling(_fwd, _inv, sees=lambda x, b: x),
                          "net must see the kept coordinates only"),
    "net sees the changed half": (_coupling(_fwd, _inv, sees=lambda x, b: (1 - b) * x),
                                  "right whenever net returns constants"),
    "net(…).chunk(2)": (lambda x, mask, net, inverse=False: _coupling(_fwd, _inv)(
        x, mask, lambda v: net(v).chunk(2, -1), inverse), "unpack it, s, t = net(mask * x)"),
    "output only": (lambda x, mask, net, inverse=False: _coupling(_fwd, _inv)(
        x, mask, net, inverse)[0], "should return a pair"),
    "indexing by the mask": (lambda x, mask, net, inverse=False: (x[:, mask], None),
                             "not an index"),
}


# 5.5 bits per dimension ---------------------------------------------------------------------

LN2 = math.log(2)

BITS = {
    "nats per dimension": (lambda lq, ld, D, k: (-(lq + ld) + D * math.log(k)) / D,
                           "that is nats per dimension"),
    "no D log k": (lambda lq, ld, D, k: -(lq + ld) / (D * LN2), "D·log k is missing"),
    "logit log-det left out": (lambda lq, ld, D, k: (-lq + D * math.log(k)) / (D * LN2),
                               "the logit's log-det is left out"),
    "log-det subtracted": (lambda lq, ld, D, k: (-(lq - ld) + D * math.log(k)) / (D * LN2),
                           "the logit's log-det has the wrong sign"),
    "− D log k": (lambda lq, ld, D, k: (-(lq + ld) - D * math.log(k)) / (D * LN2),
                  "D·log k enters with a plus sign"),
    "+log q": (lambda lq, ld, D, k: ((lq + ld) + D * math.log(k)) / (D * LN2),
               "the density term enters with a minus sign"),
    "log₂ k, rest in nats": (lambda lq, ld, D, k: -(lq + ld) / D + math.log2(k),
                             "still in nats"),
    "ln k with the rest in bits": (lambda lq, ld, D, k: -(lq + ld) / (D * LN2) + math.log(k),
                                   "log k is in nats while the rest is in bits"),
    "bits per image": (lambda lq, ld, D, k: (-(lq + ld) + D * math.log(k)) / LN2,
                       "that is bits per image"),
    "D log₂ k not divided": (lambda lq, ld, D, k: -(lq + ld) / (D * LN2) + D * math.log2(k),
                             "divide it by D too"),
    "log k without D": (lambda lq, ld, D, k: (-(lq + ld) + math.log(k)) / (D * LN2),
                        "D·log k per image, not log k"),
    "log(k − 1)": (lambda lq, ld, D, k: (-(lq + ld) + D * math.log(k - 1)) / (D * LN2),
                   "not log(k − 1)"),
    "batch mean": (lambda lq, ld, D, k: ((-(lq + ld) + D * math.log(k)) / (D * LN2)).mean(),
                   "one value per image"),
    "256 levels hard-coded": (lambda lq, ld, D, k: (-(lq + ld) + D * math.log(256)) / (D * LN2),
                              "with twice the levels"),
    "log₂ of the log-det only": (lambda lq, ld, D, k: -(lq / LN2 + ld) / D + math.log2(k),
                                 "when every logit log-det rises by 1"),
    "torch.log(levels)": (lambda lq, ld, D, k: (-(lq + ld) + D * torch.log(k)) / (D * LN2),
                          "dims and levels are Python ints"),
}


# 5.6 the free energy -----------------------------------------------------------------------

FREE_ENERGY = {
    "−log q": (lambda lq, u, b: (-lq + b * u).mean(), "the entropy term has the wrong sign"),
    "−βU": (lambda lq, u, b: (lq - b * u).mean(), "it enters with a plus sign"),
    "no β": (lambda lq, u, b: (lq + u).mean(), "β multiplies the energy (the annealing"),
    "β on both": (lambda lq, u, b: (b * (lq + u)).mean(), "β multiplies the energy only"),
    "β on log q": (lambda lq, u, b: (b * lq + u).mean(), "β belongs to the energy"),
    "U / β": (lambda lq, u, b: (lq + u / b).mean(), "when every U(z_s) rises by 1"),
    "−F": (lambda lq, u, b: -(lq + b * u).mean(), "this is −F"),
    "no mean": (lambda lq, u, b: lq + b * u, "the free energy is one number"),
    "sum": (lambda lq, u, b: (lq + b * u).sum(), "not their sum"),
    "first draw only": (lambda lq, u, b: lq[0] + b * u[0], "right for a single draw"),
    "β·mean(U) per sample": (lambda lq, u, b: lq + b * u.mean(), "the free energy is a scalar"),
    "sum / (n − 1)": (lambda lq, u, b: (lq + b * u).sum() / (len(lq) - 1),
                      "when every log q(z_s) rises by 1"),
}


# 5.P the flow prior ------------------------------------------------------------------------

def _log_n(v):
    return Normal(0.0, 1.0).log_prob(v).sum(-1)


PRIOR = {
    "− log-det": (lambda z, f: _log_n(f.inverse(z)[0]) - f.inverse(z)[1],
                  "the log-det has the wrong sign"),
    "flow(z), + log-det": (lambda z, f: _log_n(f(z)[0]) + f(z)[1], "goes the wrong way"),
    "flow(z), − log-det": (lambda z, f: _log_n(f(z)[0]) - f(z)[1], "not flow(z)"),
    "no flow": (lambda z, f: _log_n(z), "the flow is missing"),
    "flow(z), no log-det": (lambda z, f: _log_n(f(z)[0]), "with a flow that only shifts"),
    "z scored, log-det added": (lambda z, f: _log_n(z) + f.inverse(z)[1],
                                "not z itself"),
    "no log-det": (lambda z, f: _log_n(f.inverse(z)[0]), "log-det of the inverse is missing"),
    "batch sum of log N": (lambda z, f: Normal(0.0, 1.0).log_prob(f.inverse(z)[0]).sum()
                           + f.inverse(z)[1], "not over the whole batch"),
    "log N not summed": (lambda z, f: Normal(0.0, 1.0).log_prob(f.inverse(z)[0])
                         + f.inverse(z)[1], "one value per coordinate, [B, d]"),
    "no normaliser": (lambda z, f: (-0.5 * f.inverse(z)[0] ** 2).sum(-1) + f.inverse(z)[1],
                      "the base density's part is off"),
    "mean over coordinates": (lambda z, f: Normal(0.0, 1.0).log_prob(f.inverse(z)[0]).mean(-1)
                              + f.inverse(z)[1], "the base density's part is off"),
    "inverse not unpacked": (lambda z, f: _log_n(f.inverse(z)), "unpack it"),
    "log-det summed over the batch": (lambda z, f: _log_n(f.inverse(z)[0])
                                      + f.inverse(z)[1].sum(), "the log-det's part is off"),
}


# 6.3a û ------------------------------------------------------------------------------------

def _u_hat(u, w, norm=lambda w2: w2, m=lambda x: -1 + F.softplus(x), sign=1.0, subtract=True,
           wu=lambda w, u: (w * u).sum(-1, keepdim=True),
           w2=lambda w: (w * w).sum(-1, keepdim=True)):
    a, n2 = wu(w, u), w2(w)
    return u + sign * (m(a) - (a if subtract else 0)) * w / norm(n2)


U_HAT = {
    "‖w‖": (lambda u, w: _u_hat(u, w, norm=torch.sqrt), "divide by ‖w‖², not ‖w‖"),
    "torch.norm(w, dim=-1)": (lambda u, w: _u_hat(
        u, w, w2=lambda w: torch.norm(w, dim=-1, keepdim=True)), "divide by ‖w‖², not ‖w‖"),
    "no −1 in m": (lambda u, w: _u_hat(u, w, m=F.softplus), "without the −1"),
    "û = u": (lambda u, w: u, "û must be corrected"),
    "no division": (lambda u, w: _u_hat(u, w, norm=lambda w2: 1.0), "divide by ‖w‖²"),
    "no − wᵀu": (lambda u, w: _u_hat(u, w, subtract=False), "subtract wᵀu"),
    "sign of the correction": (lambda u, w: _u_hat(u, w, sign=-1.0), "the wrong sign"),
    "only rows with wᵀu < −1": (lambda u, w: torch.where(
        (w * u).sum(-1, keepdim=True) < -1, _u_hat(u, w), u), "correct every row"),
    "‖w‖² over the batch": (lambda u, w: _u_hat(u, w, w2=lambda w: (w * w).sum()),
                            "not over the whole batch"),
    "torch.norm(w) ** 2": (lambda u, w: _u_hat(u, w, w2=lambda w: torch.norm(w) ** 2),
                           "not over the whole batch"),
    "wᵀu over the batch": (lambda u, w: _u_hat(u, w, wu=lambda w, u: (w * u).sum()),
                           "not over the whole batch"),
    "keepdim forgotten": (lambda u, w: _u_hat(u, w, wu=lambda w, u: (w * u).sum(-1),
                                               w2=lambda w: (w * w).sum(-1)),
                          "keepdim=True, so they are [B, 1]"),
    "keepdim forgotten on ‖w‖²": (lambda u, w: _u_hat(u, w, w2=lambda w: (w * w).sum(-1)),
                                   "keepdim=True, so they are [B, 1]"),
    "w @ u.T": (lambda u, w: _u_hat(u, w, wu=lambda w, u: w @ u.T),
                "one number per row"),
    "m = −1 + relu": (lambda u, w: _u_hat(u, w, m=lambda x: -1 + torch.relu(x)),
                      "wᵀû should equal m(wᵀu) = −1 + softplus(wᵀu)"),
    "u rescaled instead": (lambda u, w: u * (-1 + F.softplus(a := (w * u).sum(-1, keepdim=True)))
                           / a, "not a multiple of w"),
}


# 6.3b the planar layer ---------------------------------------------------------------------

def _planar(z, u_hat, w, b, h=torch.tanh, dh=lambda t: 1 - t**2, at=None, log=torch.log,
            abs_=torch.abs, one=1.0, move=True, scale=None, reduce=lambda v: v):
    a = (w * z).sum(-1) + b
    t = h(a)
    t_psi = h(a if at is None else at(w, z, b))
    det = one + dh(t_psi) * (w * u_hat).sum(-1)
    f = (z if move else 0) + (t if scale is None else scale(t))[:, None] * u_hat
    return f, reduce(log(abs_(det)))


PLANAR = {
    "log-det sign": (lambda z, u, w, b: (_planar(z, u, w, b)[0], -_planar(z, u, w, b)[1]),
                     "the log-det has the wrong sign"),
    "no log": (lambda z, u, w, b: _planar(z, u, w, b, log=lambda v: v, abs_=lambda v: v),
               "take the log"),
    "tanh for h′": (lambda z, u, w, b: _planar(z, u, w, b, dh=lambda t: t), "not tanh"),
    "no h′": (lambda z, u, w, b: _planar(z, u, w, b, dh=lambda t: 1.0), "factor 1 − tanh"),
    "log-det summed": (lambda z, u, w, b: _planar(z, u, w, b, reduce=torch.sum),
                       "not their sum over the batch"),
    "no tanh in f": (lambda z, u, w, b: _planar(z, u, w, b, h=lambda a: a, dh=lambda a: 1.0),
                     "tanh(wᵀz + b) is missing"),
    "h′ in f": (lambda z, u, w, b: _planar(z, u, w, b, scale=lambda t: 1 - t**2),
                "its derivative h' enters the log-det only"),
    "w for û in f": (lambda z, u, w, b: (_planar(z, w, w, b)[0], _planar(z, u, w, b)[1]),
                     "with û = 0 the layer must return z itself"),
    "z missing": (lambda z, u, w, b: _planar(z, u, w, b, move=False), "the z is missing"),
    "wᵀz over the batch": (lambda z, u, w, b: (z + torch.tanh((w * z).sum() + b)[:, None] * u,
                                               _planar(z, u, w, b)[1]),
                           "one number per point: sum w * z"),
    "b forgotten": (lambda z, u, w, b: _planar(z, u, w, torch.zeros_like(b)),
                    "your f(z) ignores b"),
    "b outside the tanh": (lambda z, u, w, b: (z + (torch.tanh((w * z).sum(-1)) + b)[:, None] * u,
                                               _planar(z, u, w, b)[1]),
                           "right when b = 0"),
    "h′ without b": (lambda z, u, w, b: _planar(z, u, w, b, at=lambda w, z, b: (w * z).sum(-1)),
                     "your log-det does not depend on b"),
    "h′ at b twice": (lambda z, u, w, b: _planar(z, u, w, b,
                                                 at=lambda w, z, b: (w * z).sum(-1) + 2 * b),
                      "log-det is right when b = 0"),
    "no abs": (lambda z, u, w, b: _planar(z, u, w, b, abs_=lambda v: v), "absolute value"),
    "clamped, no abs": (lambda z, u, w, b: _planar(z, u, w, b, abs_=lambda v: v.clamp_min(1e-6)),
                        "right in the rows where wᵀû > −1"),
    "log1p(|ψᵀû|)": (lambda z, u, w, b: _planar(z, u, w, b, one=0.0, log=torch.log1p),
                     "goes around 1 + ψᵀû"),
    "no 1 in the det": (lambda z, u, w, b: _planar(z, u, w, b, one=0.0), "the 1 is missing"),
    "ψᵀw": (lambda z, u, w, b: (_planar(z, u, w, b)[0], _planar(z, w, w, b)[1]),
            "dotted with û, not with w"),
    "log-det per coordinate, summed": (lambda z, u, w, b: (
        _planar(z, u, w, b)[0],
        torch.log((1 + (1 - torch.tanh((w * z).sum(-1) + b) ** 2)[:, None] * w * u).abs()
                  ).sum(-1)), "the sum inside the log"),
    "ûᵀû for wᵀû": (lambda z, u, w, b: (_planar(z, u, w, b)[0], torch.log(
        (1 + (1 - torch.tanh((w * z).sum(-1) + b) ** 2) * (u * u).sum(-1)).abs())),
        "with wᵀû = 0 the log-det must be 0"),
    "t without [:, None]": (lambda z, u, w, b: (z + torch.tanh((w * z).sum(-1) + b) * u,
                                                _planar(z, u, w, b)[1]), "make it [B, 1]"),
    "keepdim, then + b": (lambda z, u, w, b: (
        z + torch.tanh((w * z).sum(-1, keepdim=True) + b) * u, _planar(z, u, w, b)[1]),
        "with keepdim=True add b[:, None]"),
    "only f(z)": (lambda z, u, w, b: _planar(z, u, w, b)[0], "return a pair"),
}


# 6.5 the flow free energy ------------------------------------------------------------------

FLOW_FREE_ENERGY = {
    "+ log-det": (lambda lq0, ld, lj: (lq0 + ld - lj).mean(0), "wrong sign"),
    "no log-det": (lambda lq0, ld, lj: (lq0 - lj).mean(0), "that is log q at z_0"),
    "the ELBO": (lambda lq0, ld, lj: (lj + ld - lq0).mean(0), "this is the ELBO"),
    "+ log p": (lambda lq0, ld, lj: (lq0 - ld + lj).mean(0), "enters F with a minus sign"),
    "IWAE": (lambda lq0, ld, lj: -(torch.logsumexp(lj + ld - lq0, 0) - math.log(lq0.shape[0])),
             "IWAE bound"),
    "mean over everything": (lambda lq0, ld, lj: (lq0 - ld - lj).mean(), "one free energy per"),
    "sum over draws": (lambda lq0, ld, lj: (lq0 - ld - lj).sum(0), "do not sum them"),
    "mean over dim 1": (lambda lq0, ld, lj: (lq0 - ld - lj).mean(1), "dim 1 is the images"),
    "first draw only": (lambda lq0, ld, lj: (lq0 - ld - lj)[0], "right for a single draw"),
    "keepdim": (lambda lq0, ld, lj: (lq0 - ld - lj).mean(0, keepdim=True),
                "wrong shape ... one value per data point"),
    "log-det averaged over everything": (lambda lq0, ld, lj: lq0.mean(0) - ld.mean()
                                         - lj.mean(0), "of data point 0 alone"),
    "log q0 summed": (lambda lq0, ld, lj: lq0.sum(0) - (ld + lj).mean(0),
                      "right for a single draw"),
    "−log q0": (lambda lq0, ld, lj: (-lq0 - ld - lj).mean(0),
                "when every log q_0(z_0) rises by 1"),
}


# The table ---------------------------------------------------------------------------------

TABLE: dict[Callable, dict[str, tuple[Callable, str | None]]] = {
    check5.affine_coupling: COUPLING, check5.dequantized_bits_per_dim: BITS,
    check5.free_energy: FREE_ENERGY, check5.flow_prior_log_prob: PRIOR,
    check6.planar_u_hat: U_HAT, check6.planar_layer: PLANAR,
    check6.flow_free_energy: FLOW_FREE_ENERGY,
}

ENTRIES = entries_of(TABLE)
IDS = ids_of(ENTRIES)
message = messages(ENTRIES)


def _named(i: int) -> bool:
    text, hint = message(i), ENTRIES[i][3]
    return text is not None and hint is not NOT_NAMED and names(text, hint)


def counts(rows: list[int]) -> tuple[int, int, int]:
    """(caught, named, total) over ``rows`` of ENTRIES."""
    return (sum(message(i) is not None for i in rows), sum(_named(i) for i in rows), len(rows))


def report() -> str:
    lines = [f"{'exercise':<48} {'caught':>6} {'named':>6} {'total':>6}"]
    for sec in sorted({section(check) for check in TABLE}):
        for check in TABLE:
            if section(check) == sec:
                c, n, t = counts([i for i, e in enumerate(ENTRIES) if e[0] is check])
                lines.append(f"  {check.exercise.number:<5} {check.exercise.title[:40]:<41} "
                             f"{c:>6} {n:>6} {t:>6}")
        c, n, t = counts([i for i, e in enumerate(ENTRIES) if section(e[0]) == sec])
        lines.append(f"Section {sec:<40} {c:>6} {n:>6} {t:>6}   ({n / t:.0%} named)")
    return "\n".join(lines)


# Tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(ENTRIES)), ids=IDS)
def test_wrong_answer_is_caught_and_named(index):
    assert_caught_and_named(ENTRIES, message, index)


@pytest.mark.parametrize("sec", ["5", "6"])
def test_most_wrong_answers_of_each_section_are_named(sec):
    caught, named, total = counts([i for i, e in enumerate(ENTRIES) if section(e[0]) == sec])
    assert caught == total and named >= NAMED_SHARE * total, report()


@pytest.mark.parametrize("check", list(TABLE), ids=[c.__name__ for c in TABLE])
def test_every_code_exercise_has_six_wrong_answers(check):
    assert len(TABLE[check]) >= 6


def test_the_table_covers_every_check_of_sections_5_and_6():
    checks = {getattr(module, name) for module in (check5, check6) for name in dir(module)
              if getattr(getattr(module, name), "exercise", None) is not None}
    assert checks == set(TABLE)


def test_no_message_ends_in_a_raw_pytorch_error():
    """A crash the checks can explain (a forgotten keepdim, a float mask used as an index,
    torch.log of an int) ends in a hint, not in PyTorch's text."""
    for i in range(len(ENTRIES)):
        text = message(i)
        if text is not None and "your function raised" in text:
            assert hint_of(text) is not None, text


def _hints_given() -> set[tuple[str, str]]:
    """(exercise, hint) of every message that gives a hint."""
    return {(text.split()[2], hint) for i in range(len(ENTRIES))
            if (text := message(i)) and (hint := hint_of(text))}


@pytest.mark.parametrize("module", [check5, check6], ids=["flows", "nfvi"])
def test_every_listed_mistake_is_reached_by_a_wrong_answer(module):
    """Each (value, hint) pair of a check, in its lists of mistakes and in its probes'
    tables, is the hint of some wrong answer in an exercise whose check uses that pair."""
    assert_every_mistake_reached(module, _hints_given())


if __name__ == "__main__":
    print(report())
