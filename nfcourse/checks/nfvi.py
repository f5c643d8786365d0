r"""Self-checks for Section 6 (variational inference with normalizing flows).

Each check calls the student's function on fresh inputs from a private seeded generator and
compares the answer with an *independent* computation: the planar layer's log-det against
the Jacobian by autograd, :math:`\hat u` against the invertibility condition
:math:`w^\top \hat u > -1`, the free energy against its terms. When an answer is wrong it
computes the usual mistakes (:math:`\lVert w\rVert` where :math:`\lVert w\rVert^2` belongs, the
log-det's sign, :math:`\log q` at :math:`z_0` instead of :math:`z_K`, a log-det summed over the
batch, ...) and, if the answer is one of them, says so.

>>> import torch.nn.functional as F
>>> planar_u_hat(lambda u, w: u + ((-1 + F.softplus((w * u).sum(-1, keepdim=True)))
...              - (w * u).sum(-1, keepdim=True)) * w / (w * w).sum(-1, keepdim=True))
... # doctest: +ELLIPSIS
✔ Exercise 6.5a (the invertible planar layer's û): ...
True
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from nfcourse.checks.core import Exercise, Mistake, self_check

__all__ = ["planar_u_hat", "planar_layer", "flow_free_energy"]

DTYPE = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=DTYPE)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


# 6.5a ---------------------------------------------------------------------------------------

EX_6_5A = Exercise("6.5a", "the invertible planar layer's û")


@self_check
def planar_u_hat(fn: Callable) -> bool:
    """Check ``fn(u, w) -> û = u + (m(wᵀu) − wᵀu) w / ‖w‖²``, ``m(x) = −1 + softplus(x)``,
    for rows ``[B, D]``."""
    ex = EX_6_5A
    gen = _gen(65)
    u, w = 1.5 * _randn(gen, 6, 3), _randn(gen, 6, 3)
    u[0] = -3 * w[0]                     # wᵀu = −3‖w‖² < −1: this layer needs the fix
    wu, w2 = _dot(w, u), _dot(w, w)
    m = -1 + F.softplus(wu)
    expected = u + (m - wu) * w / w2
    mistakes: list[Mistake] = [
        (u + (m - wu) * w / w2.sqrt(), "divide by ‖w‖², not ‖w‖: the correction is the "
                                       "projection on w, (m − wᵀu) w / (wᵀw), so that "
                                       "wᵀû = m(wᵀu) exactly (the bug of pyro PR #2192)"),
        (u + (F.softplus(wu) - wu) * w / w2, "m(x) = −1 + softplus(x): without the −1, wᵀû "
                                             "> 0 instead of > −1"),
        (u, "û must be corrected: u itself can give wᵀu ≤ −1 and a non-invertible layer"),
        (u + (m - wu) * w, "divide by ‖w‖² (the projection on w)"),
        (u + (m - wu) * w / w2.sum(), "‖w‖² is one number per layer (row): sum w * w over "
                                      "the last dimension only (keepdim=True), not over the "
                                      "whole batch"),
    ]
    got = ex.call(fn, u, w)
    got = ex.verdict(got, expected, "û for 6 layers", mistakes,
                     shape_hint="û has the shape of u, [B, D]")
    if not bool((_dot(w, ex.tensor(got, "û")) > -1).all()):
        ex.fail("wᵀû ≤ −1 for some rows: the layer would not be invertible")
    ex.passed("wᵀû = −1 + softplus(wᵀu) > −1 for every row")
    return True


# 6.5b ---------------------------------------------------------------------------------------

EX_6_5B = Exercise("6.5b", "the planar layer and its log-det")


@self_check
def planar_layer(fn: Callable) -> bool:
    """Check ``fn(z, u_hat, w, b) -> (z + û tanh(wᵀz + b), log|1 + ψᵀû|)`` with
    ψ = (1 − tanh²(wᵀz + b)) w, per point, amortized: z, û, w ``[B, D]``, b ``[B]``."""
    ex = EX_6_5B
    gen = _gen(66)
    B, D = 7, 3
    z = 1.2 * _randn(gen, B, D)
    w = _randn(gen, B, D)
    u = _randn(gen, B, D)
    u_hat = u + ((-1 + F.softplus(_dot(w, u))) - _dot(w, u)) * w / _dot(w, w)
    b = 0.5 * _randn(gen, B)
    a = (w * z).sum(-1) + b
    t = torch.tanh(a)
    wu = (w * u_hat).sum(-1)
    expected = z + t[:, None] * u_hat
    det = 1 + (1 - t**2) * wu
    expected_ld = torch.log(det.abs())
    out_mistakes: list[Mistake] = [
        (z + t[:, None] * u, "use û, the corrected u that keeps the layer invertible"),
        (z + a[:, None] * u_hat, "h(wᵀz + b) = tanh(wᵀz + b) is missing: f(z) = z + û h(·)"),
        (z + (1 - t**2)[:, None] * u_hat, "f uses h = tanh; its derivative h' enters the "
                                          "log-det only"),
        (z + torch.tanh((w * z).sum() + b)[:, None] * u_hat,
         "wᵀz + b is one number per point: sum w * z over the last dimension only, not over "
         "the whole batch"),
    ]
    ld_mistakes: list[Mistake] = [
        (-expected_ld, "the log-det has the wrong sign: log|det ∂f/∂z| = +log|1 + ψᵀû|"),
        (det, "the log-det is log|1 + ψᵀû|: take the log"),
        (torch.log((1 + t * wu).abs()), "ψ = h'(wᵀz + b) w with h' = 1 − tanh², not tanh"),
        (torch.log((1 + wu).abs()), "ψ = h'(wᵀz + b) w: the factor 1 − tanh²(wᵀz + b) is "
                                    "missing"),
        (expected_ld.sum(), "one log-det per point (shape [B]), not their sum over the batch"),
    ]
    got = ex.call(fn, z, u_hat, w, b)
    if not isinstance(got, tuple) or len(got) != 2:
        ex.fail("return a pair (f(z), log_det)", got=type(got).__name__)
    out, log_det = got
    ex.verdict(out, expected, "f(z) for 7 points", out_mistakes,
               shape_hint="f(z) has the shape of z, [B, D]")
    ex.verdict(log_det, expected_ld, "the log-det", ld_mistakes,
               shape_hint="one log-det per point: [B]")
    ex.log_det_is_autograds(lambda v: fn(v[None], u_hat[:1], w[:1], b[:1])[0][0], z[0],
                            fn(z[:1], u_hat[:1], w[:1], b[:1])[1])
    ex.passed("f(z) = z + û tanh(wᵀz + b) and log|1 + ψᵀû|, equal to autograd's Jacobian")
    return True


# 6.5c ---------------------------------------------------------------------------------------

EX_6_5C = Exercise("6.5c", "the flow-based free energy (R&M eq. 15)")


@self_check
def flow_free_energy(fn: Callable) -> bool:
    """Check ``fn(log_q0, sum_log_det, log_joint) -> F(x)``, per data point: the mean over
    the k draws of log q0(z0) − Σ_k log|det ∂f_k/∂z_{k−1}| − log p(x, z_K); inputs ``[k, B]``,
    result ``[B]``."""
    ex = EX_6_5C
    gen = _gen(67)
    k, B = 4, 5
    log_q0 = -3 + _randn(gen, k, B)
    log_det = 2 + _randn(gen, k, B)
    log_joint = -90 + 5 * _randn(gen, k, B)
    expected = (log_q0 - log_det - log_joint).mean(0)
    mistakes: list[Mistake] = [
        ((log_q0 + log_det - log_joint).mean(0),
         "the log-det has the wrong sign: log q_K(z_K) = log q_0(z_0) − Σ log|det|, so F "
         "subtracts it"),
        ((log_q0 - log_joint).mean(0),
         "that is log q at z_0: the flow moves z_0 to z_K, and log q_K(z_K) = log q_0(z_0) − "
         "Σ log|det ∂f_k/∂z_(k−1)|"),
        ((log_joint + log_det - log_q0).mean(0), "this is the ELBO, −F: the free energy is "
                                                 "its negative"),
        ((log_q0 - log_det - log_joint).mean(), "one free energy per data point (average over "
                                                "the k draws only, dim 0): shape [B]"),
        ((log_q0 - log_det - log_joint).sum(0), "average over the draws (a Monte Carlo "
                                                "estimate), do not sum them"),
        ((log_q0 - log_det - log_joint).mean(1), "average over dim 0, the k draws: dim 1 is "
                                                 "the images"),
    ]
    got = ex.call(fn, log_q0, log_det, log_joint)
    ex.verdict(got, expected, "F(x) for 5 data points", mistakes,
               shape_hint="one value per data point: [B]")
    ex.passed("F(x) = E[log q_0(z_0) − Σ log|det| − log p(x, z_K)], averaged over the draws")
    return True
