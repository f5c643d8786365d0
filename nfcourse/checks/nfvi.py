r"""Self-checks for Section 6 (variational inference with normalizing flows): the planar
layer's :math:`\hat u` (6.3a), the planar layer and its log-det (6.3b), and the flow-based
free energy, R&M's eq. 15 (6.5).

Each check calls the student's function on fresh inputs from a private seeded generator and
compares the answer with an *independent* computation: the planar layer's log-det against
the Jacobian by autograd, :math:`\hat u` against the invertibility condition
:math:`w^\top \hat u = m(w^\top u) > -1`, the free energy against its terms. When an answer
is wrong it computes the usual mistakes (:math:`\lVert w\rVert` where
:math:`\lVert w\rVert^2` belongs, the log-det's sign, :math:`\log q` at :math:`z_0` instead
of :math:`z_K`, a log-det summed over the batch, ...) and, if the answer is one of them, says
so. Otherwise it probes: it calls the function again on designed inputs (b = 0 against
b ≠ 0, :math:`\hat u = 0`, :math:`w^\top \hat u = 0`, a row with :math:`w^\top \hat u < -1`,
one draw against many, an input raised by 1) and says which part is off. A forgotten
``keepdim`` that breaks broadcasting is named, not left as PyTorch's size error.

>>> import torch.nn.functional as F
>>> planar_u_hat(lambda u, w: u + ((-1 + F.softplus((w * u).sum(-1, keepdim=True)))
...              - (w * u).sum(-1, keepdim=True)) * w / (w * w).sum(-1, keepdim=True))
... # doctest: +ELLIPSIS
✔ Exercise 6.3a (the invertible planar layer's û): ...
True
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from nfcourse.checks.core import (SHAPE_ERROR, Exercise, Mistake, matches, response,
                                  self_check, wrong_coefficient)

__all__ = ["planar_u_hat", "planar_layer", "flow_free_energy"]

DTYPE = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=DTYPE)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


def _m(x: Tensor) -> Tensor:
    """R&M's m(x) = −1 + softplus(x) > −1."""
    return -1 + F.softplus(x)


# 6.3a ---------------------------------------------------------------------------------------

EX_6_3A = Exercise("6.3a", "the invertible planar layer's û")

#: A broadcasting crash: wᵀu or ‖w‖² of shape [B] against w of shape [B, D].
_KEEPDIM = ("wᵀu and ‖w‖² are one number per row: sum over the last dimension with "
            "keepdim=True, so they are [B, 1] and broadcast against w [B, D]")

#: wᵀu or ‖w‖² summed over the whole batch.
_PER_ROW = ("wᵀu and ‖w‖² are one number per layer (row): sum w * u and w * w over the last "
            "dimension only (keepdim=True), not over the whole batch")


def _u_hat_mistakes(u: Tensor, w: Tensor, expected: Tensor) -> list[Mistake]:
    wu, w2 = _dot(w, u), _dot(w, w)
    m = _m(wu)
    wu_all = (w * u).sum()
    return [
        (u + (m - wu) * w / w2.sqrt(), "divide by ‖w‖², not ‖w‖: the correction is the "
                                       "projection on w, (m − wᵀu) w / (wᵀw), so that "
                                       "wᵀû = m(wᵀu) exactly (a bug a widely used library once "
                                       "shipped: pyro's pull request #2192 fixed it)"),
        (u + (F.softplus(wu) - wu) * w / w2, "m(x) = −1 + softplus(x): without the −1, wᵀû "
                                             "> 0 instead of > −1"),
        (u, "û must be corrected: u itself can give wᵀu ≤ −1 and a non-invertible layer"),
        (u + (m - wu) * w, "divide by ‖w‖² (the projection on w)"),
        (u + m * w / w2, "the correction replaces wᵀu by m(wᵀu): subtract wᵀu, "
                         "u + (m(wᵀu) − wᵀu) w / ‖w‖²"),
        (u - (m - wu) * w / w2, "the correction has the wrong sign: û = u + (m(wᵀu) − wᵀu) "
                                "w / ‖w‖², so that wᵀû = m(wᵀu)"),
        (torch.where(wu < -1, expected, u), "correct every row, not only those with wᵀu < −1: "
                                            "û is a smooth function of u (the optimiser "
                                            "follows it), with wᵀû = m(wᵀu) in every row"),
        (u + (m - wu) * w / w2.sum(), _PER_ROW),
        (u + (_m(wu_all) - wu_all) * w / w2, _PER_ROW),
        (u + (_m(wu_all) - wu_all) * w / w2.sum(), _PER_ROW),
    ]


def _u_hat_probe(got: Tensor, u: Tensor, w: Tensor) -> str | None:
    """Which property of a wrong û fails: wᵀû = m(wᵀu), or a correction along w."""
    cases = [
        (not matches(_dot(w, got), _m(_dot(w, u))),
         "wᵀû should equal m(wᵀu) = −1 + softplus(wᵀu) in every row (so that wᵀû > −1 and "
         "the layer is invertible); yours does not"),
        (True, "wᵀû = m(wᵀu) in every row, as it should be, but û − u is not a multiple of w: "
               "the correction moves u along w only, (m(wᵀu) − wᵀu) w / ‖w‖²"),
    ]
    return next(hint for wrong, hint in cases if wrong)


@self_check
def planar_u_hat(fn: Callable) -> bool:
    """Check ``fn(u, w) -> û = u + (m(wᵀu) − wᵀu) w / ‖w‖²``, ``m(x) = −1 + softplus(x)``,
    for rows ``[B, D]`` (B ≠ D, so a forgotten keepdim cannot broadcast by accident)."""
    ex = EX_6_3A
    gen = _gen(65)
    u, w = 1.5 * _randn(gen, 6, 3), _randn(gen, 6, 3)
    u[0] = -3 * w[0]                     # wᵀu = −3‖w‖² < −1: this layer needs the fix
    wu, w2 = _dot(w, u), _dot(w, w)
    expected = u + (_m(wu) - wu) * w / w2
    got = ex.call_hinting(fn, u, w, crashes=[(SHAPE_ERROR, _KEEPDIM)])
    ex.verdict(got, expected, "û for 6 layers", _u_hat_mistakes(u, w, expected),
               shape_hint="û has the shape of u, [B, D]",
               probe=functools.partial(_u_hat_probe, ex.tensor(got, "û"), u, w))
    ex.passed("wᵀû = −1 + softplus(wᵀu) > −1 for every row")
    return True


# 6.3b ---------------------------------------------------------------------------------------

EX_6_3B = Exercise("6.3b", "the planar layer and its log-det")

#: A broadcasting crash: wᵀz + b as [B] against û [B, D], or [B, 1] + b [B] = [B, B].
_ONE_PER_POINT = ("wᵀz + b is one number per point: (w * z).sum(-1) + b has shape [B] (b is "
                  "[B]; with keepdim=True add b[:, None]); make it [B, 1], tanh(...)[:, None], "
                  "to scale the rows of û [B, D]")


#: The determinant 1 + ψᵀû itself, or its absolute value.
_TAKE_LOG = "the log-det is log|1 + ψᵀû|: take the log"


def _planar_reference(z: Tensor, u_hat: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.tanh((w * z).sum(-1) + b)
    return z + t[:, None] * u_hat, torch.log((1 + (1 - t**2) * (w * u_hat).sum(-1)).abs())


def _planar_pair(ex: Exercise, got: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        ex.fail("return a pair (f(z), log_det)", got=type(got).__name__)
    return ex.tensor(got[0], "f(z)"), ex.tensor(got[1], "the log-det")


def _planar_inputs(gen: torch.Generator, B: int = 7, D: int = 3):
    """Points and layers; in row 0 wᵀû = −2 (a û not corrected) and wᵀz + b = 0.2, so that
    1 + ψᵀû < 0 there: only |·| keeps its log-det finite."""
    z, w, u = 1.2 * _randn(gen, B, D), _randn(gen, B, D), _randn(gen, B, D)
    b = 0.5 * _randn(gen, B)
    u_hat = u + (_m(_dot(w, u)) - _dot(w, u)) * w / _dot(w, w)
    u_hat[0] = -2 * w[0] / _dot(w, w)[0]
    z[0] = z[0] - ((w[0] * z[0]).sum() + b[0] - 0.2) * w[0] / _dot(w, w)[0]
    return z, u_hat, w, b


def _planar_output_mistakes(z, u_hat, w, b) -> list[Mistake]:
    a = (w * z).sum(-1) + b
    t = torch.tanh(a)
    return [
        (z + a[:, None] * u_hat, "h(wᵀz + b) = tanh(wᵀz + b) is missing: f(z) = z + û h(·)"),
        (z + (1 - t**2)[:, None] * u_hat, "f uses h = tanh; its derivative h' enters the "
                                          "log-det only"),
        (z + torch.tanh((w * z).sum() + b)[:, None] * u_hat,
         "wᵀz + b is one number per point: sum w * z over the last dimension only, not over "
         "the whole batch"),
        (t[:, None] * u_hat, "the z is missing: f(z) = z + û h(wᵀz + b) moves z, it does not "
                             "replace it"),
    ]


def _planar_log_det_mistakes(z, u_hat, w, b, expected_ld) -> list[Mistake]:
    t = torch.tanh((w * z).sum(-1) + b)
    wu = (w * u_hat).sum(-1)
    det = 1 + (1 - t**2) * wu
    psi = (1 - t**2)[:, None] * w
    return [
        (-expected_ld, "the log-det has the wrong sign: log|det ∂f/∂z| = +log|1 + ψᵀû|"),
        (det, _TAKE_LOG),
        (det.abs(), _TAKE_LOG),
        (torch.log(det), "1 + ψᵀû is negative in the row where wᵀû < −1 (a û that was not "
                         "corrected): the log-det is log|1 + ψᵀû|, with the absolute value"),
        (torch.log((1 + t * wu).abs()), "ψ = h'(wᵀz + b) w with h' = 1 − tanh², not tanh"),
        (torch.log((1 + wu).abs()), "ψ = h'(wᵀz + b) w: the factor 1 − tanh²(wᵀz + b) is "
                                    "missing"),
        (torch.log(((1 - t**2) * wu).abs()), "the 1 is missing: det(I + û ψᵀ) = 1 + ψᵀû"),
        (torch.log1p(((1 - t**2) * wu).abs()), "the absolute value goes around 1 + ψᵀû, not "
                                               "around ψᵀû alone: log|1 + ψᵀû|"),
        (torch.log((1 + (1 - t**2) * (w * w).sum(-1)).abs()),
         "ψ = h' w is dotted with û, not with w: log|1 + ψᵀû|"),
        (torch.log((1 + psi * u_hat).abs()).sum(-1),
         "the determinant lemma gives one scalar per point: log|1 + ψᵀû| with ψᵀû = Σ_d ψ_d û_d, "
         "the sum inside the log"),
        (expected_ld.sum(), "one log-det per point (shape [B]), not their sum over the batch"),
    ]


def _planar_output_probe(ex: Exercise, fn: Callable, z, u_hat, w, b) -> str | None:
    """Which part of a wrong f(z) is off: b moved by 1, b = 0, û = 0."""
    def yours(bias=b, u=u_hat):
        return _planar_pair(ex, ex.call(fn, z, u, w, bias))[0]

    zero = torch.zeros_like(b)
    cases = [
        (lambda: matches(yours(b + 1.0), yours()),
         "your f(z) ignores b: f(z) = z + û tanh(wᵀz + b), with b inside the tanh"),
        (lambda: matches(yours(zero), _planar_reference(z, u_hat, w, zero)[0]),
         "your f(z) is right when b = 0 but not otherwise: b is added to wᵀz inside the tanh, "
         "tanh(wᵀz + b), one b per point"),
        (lambda: not matches(yours(u=torch.zeros_like(u_hat)), z),
         "with û = 0 the layer must return z itself: f(z) = z + û h(wᵀz + b)"),
    ]
    return next((hint for holds, hint in cases if holds()), None)


def _planar_log_det_probe(ex: Exercise, fn: Callable, z, u_hat, w, b) -> str | None:
    """Which part of a wrong log-det is off: b moved by 1, b = 0, wᵀû = 0, and the rows where
    wᵀû > −1 against the one where it is not."""
    def yours(bias=b, u=u_hat):
        return _planar_pair(ex, ex.call(fn, z, u, w, bias))[1]

    zero = torch.zeros_like(b)
    flat = u_hat - _dot(w, u_hat) * w / _dot(w, w)           # wᵀû = 0: det = 1
    expected = _planar_reference(z, u_hat, w, b)[1]
    cases = [
        (lambda: matches(yours(b + 1.0), yours()),
         "your log-det does not depend on b: ψ = h'(wᵀz + b) w, with h' at the same wᵀz + b "
         "as in f(z)"),
        (lambda: matches(yours(zero), _planar_reference(z, u_hat, w, zero)[1]),
         "your log-det is right when b = 0 but not otherwise: h' = 1 − tanh² is taken at "
         "wᵀz + b"),
        (lambda: not matches(yours(u=flat), torch.zeros_like(b)),
         "with wᵀû = 0 the log-det must be 0 (1 + ψᵀû = 1 + h' · wᵀû = 1); yours is not"),
        (lambda: matches(yours()[1:], expected[1:]),
         "your log-det is right in the rows where wᵀû > −1 but not in row 0, where wᵀû < −1 "
         "(a û that was not corrected) and 1 + ψᵀû < 0: keep the absolute value, "
         "log|1 + ψᵀû|"),
    ]
    return next((hint for holds, hint in cases if holds()), None)


@self_check
def planar_layer(fn: Callable) -> bool:
    """Check ``fn(z, u_hat, w, b) -> (z + û tanh(wᵀz + b), log|1 + ψᵀû|)`` with
    ψ = (1 − tanh²(wᵀz + b)) w, per point, amortized: z, û, w ``[B, D]``, b ``[B]``; one row
    has wᵀû < −1 and 1 + ψᵀû < 0, where the |·| matters."""
    ex = EX_6_3B
    z, u_hat, w, b = _planar_inputs(_gen(66))
    expected, expected_ld = _planar_reference(z, u_hat, w, b)
    got = ex.call_hinting(fn, z, u_hat, w, b, crashes=[(SHAPE_ERROR, _ONE_PER_POINT)])
    if not isinstance(got, tuple) or len(got) != 2:
        ex.fail("return a pair (f(z), log_det)", got=type(got).__name__)
    out, log_det = got
    ex.verdict(out, expected, "f(z) for 7 points", _planar_output_mistakes(z, u_hat, w, b),
               shape_hint="f(z) has the shape of z, [B, D]",
               probe=functools.partial(_planar_output_probe, ex, fn, z, u_hat, w, b))
    ex.verdict(log_det, expected_ld, "the log-det",
               _planar_log_det_mistakes(z, u_hat, w, b, expected_ld),
               shape_hint="one log-det per point: [B]",
               nan_hint="NaN comes from the log of a negative number: 1 + ψᵀû < 0 in the row "
                        "where wᵀû < −1; the log-det is log|1 + ψᵀû|",
               probe=functools.partial(_planar_log_det_probe, ex, fn, z, u_hat, w, b))
    ex.log_det_is_autograds(lambda v: fn(v[None], u_hat[:1], w[:1], b[:1])[0][0], z[0],
                            fn(z[:1], u_hat[:1], w[:1], b[:1])[1])
    ex.passed("f(z) = z + û tanh(wᵀz + b) and log|1 + ψᵀû|, equal to autograd's Jacobian")
    return True


# 6.5 ----------------------------------------------------------------------------------------

EX_6_5 = Exercise("6.5", "the flow-based free energy (R&M eq. 15)")


def _flow_free_energy_mistakes(log_q0, log_det, log_joint) -> list[Mistake]:
    right = log_q0 - log_det - log_joint
    k = log_q0.shape[0]
    return [
        ((log_q0 + log_det - log_joint).mean(0),
         "the log-det has the wrong sign: log q_K(z_K) = log q_0(z_0) − Σ log|det|, so F "
         "subtracts it"),
        ((log_q0 - log_joint).mean(0),
         "that is log q at z_0: the flow moves z_0 to z_K, and log q_K(z_K) = log q_0(z_0) − "
         "Σ log|det ∂f_k/∂z_(k−1)|"),
        ((log_joint + log_det - log_q0).mean(0), "this is the ELBO, −F: the free energy is "
                                                 "its negative"),
        ((log_q0 - log_det + log_joint).mean(0), "log p(x, z_K) enters F with a minus sign: "
                                                 "F = E[log q_K(z_K) − log p(x, z_K)]"),
        (-(torch.logsumexp(-right, 0) - torch.log(torch.tensor(float(k), dtype=right.dtype))),
         "that is the IWAE bound (negated), the log of an average of weights; eq. 15 "
         "averages the log-weights: a plain mean over the draws"),
        (right.mean(), "one free energy per data point (average over the k draws only, dim "
                       "0): shape [B]"),
        (right.sum(0), "average over the draws (a Monte Carlo estimate), do not sum them"),
        (right.mean(1), "average over dim 0, the k draws: dim 1 is the images"),
    ]


def _flow_free_energy_probe(ex: Exercise, fn: Callable, log_q0, log_det,
                            log_joint) -> str | None:
    """Which part of a wrong F is off: a single draw (k = 1) against k, the coefficient of
    each term, read by raising it by 1, and whether one data point's inputs move only its
    own F."""
    k = log_q0.shape[0]
    args = (log_q0, log_det, log_joint)
    terms = ("log q_0(z_0)", "Σ log|det|", "log p(x, z_K)")
    one = ex.tensor(ex.call(fn, *(v[:1] for v in args)), "F(x)")
    if matches(one, log_q0[0] - log_det[0] - log_joint[0]):
        return (f"your answer is right for a single draw (k = 1) but not for k = {k}: average "
                "over the draws, along dim 0")
    hint = wrong_coefficient(ex, fn, args, "F(x)", [
        (0, 1.0, terms[0], "F = mean over the draws of log q_0(z_0) − Σ log|det| − "
                           "log p(x, z_K)"),
        (1, -1.0, terms[1], "log q_K(z_K) = log q_0(z_0) − Σ log|det|: F subtracts the "
                            "log-dets, averaged over the draws"),
        (2, -1.0, terms[2], "F subtracts the log-joint, averaged over the draws")])
    if hint is not None:
        return hint
    first = torch.zeros_like(log_q0)
    first[:, 0] = 1.0                                  # data point 0's draws only
    for index, name in enumerate(terms):
        moved = response(ex, fn, args, index, first)
        others = None if moved is None or moved.shape != first[0].shape else moved[1:]
        if others is not None and bool(others.abs().max() > 1e-9):
            return (f"raising {name} of data point 0 alone changes your F of the other data "
                    "points: each image has its own F(x), so reduce over the draws (dim 0) "
                    "only")
    return None


@self_check
def flow_free_energy(fn: Callable) -> bool:
    """Check ``fn(log_q0, sum_log_det, log_joint) -> F(x)``, per data point: the mean over
    the k draws of log q0(z0) − Σ_k log|det ∂f_k/∂z_{k−1}| − log p(x, z_K); inputs ``[k, B]``,
    result ``[B]``."""
    ex = EX_6_5
    gen = _gen(67)
    k, B = 4, 5
    log_q0 = -3 + _randn(gen, k, B)
    log_det = 2 + _randn(gen, k, B)
    log_joint = -90 + 5 * _randn(gen, k, B)
    got = ex.call(fn, log_q0, log_det, log_joint)
    ex.verdict(got, (log_q0 - log_det - log_joint).mean(0), "F(x) for 5 data points",
               _flow_free_energy_mistakes(log_q0, log_det, log_joint),
               shape_hint="one value per data point: [B]",
               probe=functools.partial(_flow_free_energy_probe, ex, fn, log_q0, log_det,
                                       log_joint))
    ex.passed("F(x) = E[log q_0(z_0) − Σ log|det| − log p(x, z_K)], averaged over the draws")
    return True
