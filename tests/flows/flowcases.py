"""The registry every flow layer goes through (zuko style): one factory per case.

Each case builds a layer whose parameters are *randomised* (zero-initialised last layers
included), so no check passes because a layer happens to be the identity, and draws
inputs, contexts and amortized parameters that reach every regime of the layer
(saturated and linear tanh, points near a radial centre, clipped log-scales).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from nfcourse import flows as nf

D, C, H, W = 5, 4, 4, 4   # odd D: uneven halves; images [C, H, W]
CTX = 3


@dataclass
class Case:
    name: str
    build: Callable[[], nf.Bijection]
    event: tuple[int, ...] = (D,)
    scale: float = 0.7                # std of the random parameters
    invertible: bool = True
    volume_preserving: bool = False
    x_scale: float = 2.0              # std of the inputs
    input_fn: Callable | None = None  # (layer, x) -> x, to place some inputs in special spots
    adjust: Callable | None = None    # (layer) -> None, after randomising: special parameters
    tags: set = field(default_factory=set)

    def make(self, dtype=torch.float64, seed=0, device="cpu") -> nf.Bijection:
        torch.manual_seed(seed)
        layer = self.build()
        if hasattr(layer, "_initialized"):
            layer._initialized = True
            layer.initialized.fill_(True)
        for m in layer.modules():        # ActNorm inside a composite, too
            if isinstance(m, nf.ActNorm):
                m._initialized = True
                m.initialized.fill_(True)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * self.scale)
        layer = layer.to(device=device, dtype=dtype)
        if self.adjust is not None:
            with torch.no_grad():
                self.adjust(layer)
        return layer

    def inputs(self, layer, batch=8, dtype=torch.float64, seed=1, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, *self.event, generator=g, dtype=dtype) * self.x_scale
        if self.input_fn is not None:
            x = self.input_fn(layer, x.to(device))
        kwargs = {}
        if layer.context_dim:
            kwargs["context"] = torch.randn(batch, layer.context_dim, generator=g, dtype=dtype)
        if layer.param_dim:
            kwargs["params"] = torch.randn(batch, layer.param_dim, generator=g, dtype=dtype)
        return x.to(device), {k: v.to(device) for k, v in kwargs.items()}


def _near_centre(layer, x):
    """Put two inputs very close to the radial centre z0 (small-r regime)."""
    if not layer.amortized:
        x = x.clone()
        x[0] = layer.z0.detach() + 1e-3 * x[0]
        x[1] = layer.z0.detach() + 1e-6 * x[1]
    return x


def _nearly_equal_columns(layer, gap=1e-6):
    """Make column 1 of Q̃ column 0 plus a 1e-6 perturbation: Q̃ is nearly rank-deficient
    (30 steps of the paper's orthogonalisation iteration left ‖QᵀQ - I‖ ~ 0.5 here)."""
    q = layer.q.view(layer.dim, layer.m)
    noise = torch.randn(layer.dim, generator=torch.Generator().manual_seed(0), dtype=q.dtype)
    q[:, 1] = q[:, 0] + gap * noise.to(q.device)


def _coupling_net_vec(n_in, n_out):
    return nf.MLP(n_in, n_out, hidden=(16, 16))


CASES = [
    Case("planar", lambda: nf.Planar(D), scale=1.0),
    Case("planar_amortized", lambda: nf.Planar(D, amortized=True)),
    Case("planar_length4", lambda: nf.Planar(D, length=4), scale=1.0),
    Case("planar_length3_amortized", lambda: nf.Planar(D, length=3, amortized=True)),
    Case("radial", lambda: nf.Radial(D), input_fn=_near_centre),
    Case("radial_amortized", lambda: nf.Radial(D, amortized=True)),
    Case("sylvester_orthogonal", lambda: nf.OrthogonalSylvester(D, m=3), invertible=False),
    Case("sylvester_orthogonal_nearly_rank_deficient", lambda: nf.OrthogonalSylvester(D, m=3),
         adjust=_nearly_equal_columns, invertible=False),
    Case("sylvester_orthogonal_amortized", lambda: nf.OrthogonalSylvester(D, m=3, amortized=True),
         invertible=False),
    Case("sylvester_householder", lambda: nf.HouseholderSylvester(D, n_reflections=3),
         invertible=False),
    Case("sylvester_householder_amortized",
         lambda: nf.HouseholderSylvester(D, n_reflections=3, amortized=True), invertible=False),
    Case("sylvester_triangular", lambda: nf.TriangularSylvester(D), invertible=False),
    Case("sylvester_triangular_flip_amortized",
         lambda: nf.TriangularSylvester(D, flip=True, amortized=True), invertible=False),
    Case("additive_coupling_half", lambda: nf.AdditiveCoupling(nf.half_mask(D), hidden=(16, 16)),
         volume_preserving=True),
    Case("additive_coupling_alternating_ctx",
         lambda: nf.AdditiveCoupling(nf.alternating_mask(D), hidden=(16,), context_dim=CTX),
         volume_preserving=True),
    Case("affine_coupling_half_ctx",
         lambda: nf.AffineCoupling(nf.half_mask(D, first=False), hidden=(16, 16), context_dim=CTX)),
    Case("affine_coupling_alternating",
         lambda: nf.AffineCoupling(nf.alternating_mask(D, even=False), hidden=(16, 16)),
         scale=1.5),  # large weights: some log-scales saturate at the bound
    Case("affine_coupling_checkerboard",
         lambda: nf.AffineCoupling(nf.checkerboard_mask(H, W), channels=C, hidden=8),
         event=(C, H, W), scale=0.3),
    Case("affine_coupling_channel_ctx",
         lambda: nf.AffineCoupling(nf.channel_mask(C), hidden=8, context_dim=CTX),
         event=(C, H, W), scale=0.3),
    Case("additive_coupling_checkerboard",
         lambda: nf.AdditiveCoupling(nf.checkerboard_mask(H, W, even=False), channels=C, hidden=8),
         event=(C, H, W), scale=0.3, volume_preserving=True),
    Case("diagonal_scaling", lambda: nf.DiagonalScaling(D)),
    Case("reverse_permutation", lambda: nf.ReversePermutation(D), volume_preserving=True),
    Case("random_permutation", lambda: nf.RandomPermutation(D), volume_preserving=True),
    Case("actnorm_vector", lambda: nf.ActNorm(D)),
    Case("actnorm_image", lambda: nf.ActNorm(C, event_dims=3), event=(C, H, W), scale=0.3),
    Case("inv_conv_1x1_lu", lambda: nf.InvConv1x1(C), event=(C, H, W), scale=0.3),
    Case("inv_conv_1x1_plain", lambda: nf.InvConv1x1(C, lu=False), event=(C, H, W), scale=0.6),
    Case("lu_linear", lambda: nf.LULinear(D), scale=0.4),
    Case("squeeze", lambda: nf.Squeeze(C), event=(C, H, W), volume_preserving=True),
    Case("unsqueeze", lambda: nf.Inverse(nf.Squeeze(C)), event=(4 * C, H // 2, W // 2),
         volume_preserving=True),
    Case("factor_out",
         lambda: nf.FactorOut(nf.Flow([nf.AffineCoupling(nf.channel_mask(2), hidden=8),
                                       nf.InvConv1x1(2)]), channels=C),
         event=(C, H, W), scale=0.3),
    Case("maf_ctx", lambda: nf.MAF(D, hidden=(16, 16), context_dim=CTX), scale=0.4),
    Case("maf_reverse", lambda: nf.MAF(D, hidden=(16,), reverse=True), scale=0.4),
    Case("iaf", lambda: nf.IAF(D, hidden=(16, 16)), scale=0.4),
    Case("iaf_ctx_random_order",
         lambda: nf.IAF(D, hidden=(8, 8), context_dim=CTX, order=[3, 0, 4, 1, 2]), scale=0.4),
    Case("inverse_maf", lambda: nf.Inverse(nf.MAF(D, hidden=(16,))), scale=0.4),
    Case("masked_coupling", lambda: nf.MaskedCoupling(nf.alternating_mask(D), hidden=(16, 16)),
         scale=0.5),
    Case("logit", lambda: nf.Logit(D, alpha=0.05), input_fn=lambda layer, x: torch.sigmoid(x)),
    Case("logit_image", lambda: nf.Logit(C, alpha=1e-6, event_dims=3), event=(C, H, W),
         input_fn=lambda layer, x: torch.sigmoid(x)),
    Case("flow_mixed",  # a composite: context and amortized params routed to the right layers
         lambda: nf.Flow([nf.AffineCoupling(nf.half_mask(D), hidden=(8,), context_dim=CTX),
                          nf.RandomPermutation(D), nf.Planar(D, amortized=True),
                          nf.ActNorm(D), nf.Radial(D, amortized=True), nf.LULinear(D)]),
         scale=0.4),
]

BY_NAME = {case.name: case for case in CASES}


def randomise(module, scale=0.5, seed=0):
    """Overwrite every parameter with N(0, scale²) draws: layers initialised to the identity
    (zeroed last layers) would otherwise pass the tests trivially."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module
