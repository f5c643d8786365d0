r"""Planar flow (Rezende & Mohamed 2015, §4.1 and Appendix A.1).

.. math::

    f(z) = z + \hat u \, h(w^\top z + b), \qquad h = \tanh,

    \log\left|\det \frac{\partial f}{\partial z}\right| = \log\left|1 + \psi(z)^\top \hat u\right|,
    \qquad \psi(z) = h'(w^\top z + b)\, w .

**Invertibility** (Appendix A.1): :math:`f` is invertible iff :math:`w^\top \hat u \ge -1`.
Any raw :math:`u` is mapped to

.. math::

    \hat u = u + \big[m(w^\top u) - w^\top u\big] \frac{w}{\lVert w\rVert^2},
    \qquad m(x) = -1 + \operatorname{softplus}(x),

so that :math:`w^\top \hat u = m(w^\top u) > -1` (note :math:`\lVert w\rVert^2`, not
:math:`\lVert w\rVert`: the bug of pyro PR #2192). Numerically, softplus is floored at
machine epsilon, the projection on :math:`w` is applied twice (for large
:math:`|w^\top u|` one pass cancels), and :math:`w = 0` is a translation.

We use :math:`w^\top \hat u = m(w^\top u)` directly in the log-det: with
:math:`t = \tanh(w^\top z + b)` and :math:`\sigma = \operatorname{softplus}(w^\top u)`,

.. math::

    1 + \psi^\top \hat u = 1 + (1 - t^2)(\sigma - 1) = \sigma + t^2 (1 - \sigma) > 0,

a sum of non-negative terms, so it stays positive even for adversarial :math:`u, w`
where computing :math:`w^\top \hat u` by a dot product would cancel catastrophically.

**Inverse** (numerical). Project :math:`y = f(z)` on :math:`w`: with :math:`\alpha = w^\top z`
and :math:`c = w^\top \hat u`,

.. math::

    g(\alpha) = \alpha + c \tanh(\alpha + b) - w^\top y = 0, \qquad
    g'(\alpha) = 1 + c\,(1 - \tanh^2(\alpha + b)) \ge 0,

a monotone scalar equation whose root lies in :math:`[w^\top y - |c|, w^\top y + |c|]`.
We solve it by Newton's method safeguarded by bisection on that bracket, then
:math:`z = y - \hat u \tanh(\alpha + b)`. A last Newton step taken with autograd on gives
the implicit-function gradient. The solve runs in float64 to a relative tolerance of
:math:`10^{-12}`, except on Apple's MPS devices, which have no float64: there it runs in
float32 to :math:`10^{-6}` (about 8 units in the last place); see :func:`root_precision`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfcourse.flows.base import Bijection

__all__ = ["Planar", "solve_monotone", "root_precision"]

#: Stopping rule of the scalar root-finds: ``|step|`` or bracket ``<= ROOT_TOL * (1 + |x|)``.
ROOT_TOL = 1e-12
#: The same rule where the root-find has to run in float32 (about 8 ulps).
ROOT_TOL_FLOAT32 = 1e-6


def root_precision(device: torch.device) -> tuple[torch.dtype, float]:
    """``(dtype, tol)`` of the numerical inverses' root-finds on ``device``: float64 and
    :data:`ROOT_TOL`, except on MPS (no float64 there): float32 and :data:`ROOT_TOL_FLOAT32`.

    >>> root_precision(torch.device("cpu")), root_precision(torch.device("mps"))
    ((torch.float64, 1e-12), (torch.float32, 1e-06))
    """
    if device.type == "mps":
        return torch.float32, ROOT_TOL_FLOAT32
    return torch.float64, ROOT_TOL


def solve_monotone(g, lo: Tensor, hi: Tensor, x0: Tensor, tol: float = ROOT_TOL,
                   max_iter: int = 200) -> Tensor:
    """Root of a non-decreasing ``g`` inside ``[lo, hi]``, elementwise and vectorised.

    ``g(x)`` returns ``(value, derivative)``. Newton's method safeguarded as in Numerical
    Recipes' ``rtsafe``: a Newton step that leaves the current bracket, divides by a zero
    derivative, or does not at least halve the step of two iterations before is replaced
    by bisection. (Newton alone can cycle across the knee of a tanh, e.g. between
    ``α ≈ -9.57`` and ``0.95`` for ``α + 10.8 tanh(α + 0.91) = -9.84``.) So the bracket at
    least halves every other iteration and the iteration always converges; it stops when
    every step, or every bracket, is below ``tol * (1 + |x|)``: the latter also ends it
    where rounding in ``g`` (float32 with large terms) keeps Newton's steps from shrinking.

    >>> g = lambda x: (x**3 - 2, 3 * x**2)
    >>> lo, hi = torch.zeros(1, dtype=torch.float64), torch.full((1,), 2.0, dtype=torch.float64)
    >>> root = solve_monotone(g, lo, hi, lo.clone())
    >>> abs(root.item() - 2 ** (1 / 3)) < 1e-12
    True
    """
    x = x0.clamp(lo, hi)
    step_last = step_before = hi - lo
    for i in range(max_iter):
        value, slope = g(x)
        lo = torch.where(value < 0, x, lo)
        hi = torch.where(value > 0, x, hi)
        newton = x - value / slope
        # Inclusive: near the root a Newton iterate may round onto a bracket end, and
        # bisecting from there would throw the converged x away.
        use_newton = ((newton >= lo) & (newton <= hi)
                      & ((newton - x).abs() <= 0.5 * step_before.abs()))
        step = torch.where(use_newton, newton, 0.5 * (lo + hi)) - x
        x = x + step
        step_before, step_last = step_last, step
        small = tol * (1 + x.abs())
        done = (step.abs() <= small) | (hi - lo <= small) | (value == 0)
        if i % 4 == 3 and bool(done.all()):
            break
    return x


class Planar(Bijection):
    """Planar flow of ``length`` K layers ``z_k = z_{k-1} + û_k tanh(w_kᵀ z_{k-1} + b_k)``.

    ``Planar(D)`` is one layer; ``Planar(D, length=K)`` is R&M's flow of length K (eq. 13)
    with its parameters stacked as ``[K, D]``, so that the reparameterisation of all K
    layers runs as one batched computation (same maps as K separate layers, fewer ops).

    Parameters: own (``u``, ``w``: ``[K, D]``, ``b``: ``[K]``), or, with ``amortized=True``,
    per sample from an encoder: ``params`` of shape ``[..., K * (2D + 1)]``, read as
    ``[..., K, (u, w, b)]``.

    ``inverse`` is numerical: per layer a Newton/bisection solve of a scalar equation to a
    relative tolerance of 1e-12 in float64 (round trips agree to ~1e-10 in float64 and
    ~1e-6 in float32); on MPS, which has no float64, the solve runs in float32 to a
    relative tolerance of 1e-6 (float32 round trips as accurate as elsewhere, ~1e-6).

    >>> layer = Planar(2)
    >>> z = torch.randn(3, 2)
    >>> y, log_det = layer(z)
    >>> z_back, log_det_inv = layer.inverse(y)
    >>> torch.allclose(z_back, z, atol=1e-5), torch.allclose(log_det_inv, -log_det, atol=1e-5)
    (True, True)
    >>> amortized = Planar(2, length=4, amortized=True)
    >>> params = torch.randn(3, amortized.param_dim)   # e.g. from an encoder
    >>> amortized(z, params=params)[0].shape
    torch.Size([3, 2])
    """

    def __init__(self, dim: int, length: int = 1, amortized: bool = False):
        super().__init__()
        self.dim, self.length, self.amortized = dim, length, amortized
        if amortized:
            self.param_dim = length * (2 * dim + 1)
        else:
            bound = 1 / math.sqrt(dim)
            self.u = nn.Parameter(torch.empty(length, dim).uniform_(-bound, bound))
            self.w = nn.Parameter(torch.empty(length, dim).uniform_(-bound, bound))
            self.b = nn.Parameter(torch.zeros(length))

    def near_identity_params(self, n: int, scale: float = 0.01,
                             generator: torch.Generator | None = None,
                             dtype: torch.dtype | None = None,
                             device: torch.device | str | None = None) -> Tensor:
        """``params`` ``[n, K (2D + 1)]`` of K layers close to the identity: û of size
        ``scale``. Small raw u and w would not do: the invertibility map gives
        wᵀû = m(wᵀu) → m(0) = −0.31, so û = −0.31 w/‖w‖² grows as w shrinks. Instead
        w ~ N(0, I/D), b = 0 and u = c w/‖w‖² + ε with c = log(e − 1), the root of m:
        then û = ε + O(ε) along w."""
        shape = (n, self.length, self.dim)
        w = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        w = w / math.sqrt(self.dim)
        eps = scale * torch.randn(shape, generator=generator, dtype=dtype, device=device)
        u = math.log(math.e - 1) * w / (w * w).sum(-1, keepdim=True) + eps
        b = w.new_zeros(n, self.length, 1)
        return torch.cat([u, w, b], -1).flatten(-2)

    def _parameters_for(self, params: Tensor | None):
        """Return ``(u_hat, w, b, sigma)``, shapes ``[..., K, D]`` and ``[..., K]``, with
        ``sigma = softplus(wᵀu) = 1 + wᵀû``."""
        u, w, b = self._own_or_amortized(params, lambda: (self.u, self.w, self.b[:, None]),
                                         [self.dim, self.dim, 1], (self.length, 2 * self.dim + 1))
        b = b.squeeze(-1)
        finfo = torch.finfo(w.dtype)
        wu, w2 = (w * u).sum(-1), (w * w).sum(-1)
        # σ = 1 + m(wᵀu) > 0, floored at machine epsilon so that rounding cannot reach
        # wᵀû = -1; w = 0 makes the layer a translation (1 + wᵀû = 1).
        sigma = torch.where(w2 > finfo.tiny, F.softplus(wu).clamp_min(finfo.eps), 1.0)
        w2 = w2.clamp_min(finfo.tiny)
        sigma_m1 = sigma - 1
        u_hat = torch.addcmul(u, ((sigma_m1 - wu) / w2).unsqueeze(-1), w)
        # Second pass: for large |wᵀu| the first one cancels, leaving an error ~eps|wᵀu|
        # along w; projecting again makes wᵀû = σ - 1 to working precision.
        u_hat = torch.addcmul(u_hat, ((sigma_m1 - (w * u_hat).sum(-1)) / w2).unsqueeze(-1), w)
        return u_hat, w, b, sigma

    def parameters_by_name(self, params: Tensor | None = None,
                           context: Tensor | None = None) -> list[dict[str, Tensor]]:
        """Per layer k: the raw ``u``, ``w`` (``[..., D]``), ``b`` (``[...]``) and the
        invertible ``u_hat`` that the layer applies."""
        if self.param_dim:   # the raw u: the first D of each layer's (u, w, b)
            u = self._check_params(params).unflatten(-1, (self.length, -1))[..., :self.dim]
        else:
            u = self.u
        u_hat, w, b, _ = self._parameters_for(params)
        return [{"u": u[..., k, :], "w": w[..., k, :], "b": b[..., k], "u_hat": u_hat[..., k, :]}
                for k in range(self.length)]

    _preactivation = staticmethod(lambda z, w, b: _preactivation(z, w, b))

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_x(z)
        u_hat, w, b, sigma = self._parameters_for(params)
        # layer by layer: [K, ..., D] and [K, ...], each layer's slice one dense block
        inputs = (z, _by_layer(u_hat), _by_layer(w), _by_layer(b, 0), _by_layer(sigma, 0))
        if torch.is_grad_enabled() and any(v.requires_grad for v in inputs):
            return _PlanarChain.apply(*inputs)[:2]
        return _chain(*inputs)[:2]

    def inverse(self, y: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        u_hat, w, b, sigma = self._parameters_for(params)
        layers = zip(u_hat.unbind(-2), w.unbind(-2), b.unbind(-1), sigma.unbind(-1))
        log_det = 0
        for u_k, w_k, b_k, sigma_k in reversed(list(layers)):
            y, ld = self._invert_one(y, u_k, w_k, b_k, sigma_k)
            log_det = log_det + ld
        return y, log_det

    def _invert_one(self, y, u_hat, w, b, sigma):
        c = sigma - 1                                   # = wᵀû
        wy = self._preactivation(y, w, torch.zeros_like(b))

        dtype, tol = root_precision(y.device)
        with torch.no_grad():
            c_, b_, wy_ = (v.detach().to(dtype) for v in (c, b, wy))

            def g(alpha):
                t = torch.tanh(alpha + b_)
                return alpha + c_ * t - wy_, 1 + c_ * (1 - t * t)

            radius = c_.abs().expand_as(wy_)
            alpha = solve_monotone(g, wy_ - radius, wy_ + radius, wy_.clone(), tol=tol)
        alpha = alpha.to(y.dtype)
        # One Newton step with autograd on: exact to first order, so gradients are right.
        t = torch.tanh(alpha + b)
        alpha = alpha - (alpha + c * t - wy) / (1 + c * (1 - t * t))
        t = torch.tanh(alpha + b)
        z = y - t.unsqueeze(-1) * u_hat
        return z, -torch.log(torch.addcmul(sigma, t * t, c, value=-1))


def _preactivation(z: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """wᵀz + b per sample."""
    if w.dim() == 1 and z.dim() == 2:   # shared parameters: one fused matrix-vector product
        return torch.addmv(b, z, w)
    return (z * w).sum(-1) + b


def _by_layer(v: Tensor, dims: int = 1) -> Tensor:
    """Parameters ``[..., K, D]`` (or ``[..., K]``, ``dims=0``) as ``[K, ..., D]``,
    contiguous, so that each layer's slice is one dense block: elementwise kernels run
    several times slower on the strided slices ``v[..., k, :]``."""
    return v.movedim(-1 - dims, 0).contiguous()


def _like(v: Tensor, ref: Tensor) -> Tensor:
    """``v`` ``[K, *P]`` with singleton dimensions inserted after K to broadcast against
    ``ref`` ``[K, *batch]`` (P aligned to the right of batch)."""
    return v.reshape(v.shape[:1] + (1,) * (ref.dim() - v.dim()) + v.shape[1:])


def _chain(z: Tensor, u_hat: Tensor, w: Tensor, b: Tensor, sigma: Tensor, keep: bool = False):
    """The K layers forward: ``(z_K, log_det)``, and with ``keep`` also the stacked inputs
    z_{k-1} ``[K, ..., D]``, activations t_k and factors 1 + ψᵀû ``[K, ...]`` (for the
    backward). Parameters layer by layer, ``[K, *P, D]`` and ``[K, *P]`` (:func:`_by_layer`),
    P broadcasting against z's batch dimensions."""
    zs, ts = [], []
    for u_k, w_k, b_k in zip(u_hat, w, b):
        if keep:
            zs.append(z)
        t = torch.tanh(_preactivation(z, w_k, b_k))
        z = torch.addcmul(z, t.unsqueeze(-1), u_k)
        ts.append(t)
    t = torch.stack(ts)
    sigma = _like(sigma, t)
    # 1 + ψᵀû = 1 + (1 - t²)(σ - 1) = σ + t²(1 - σ): positive, no cancellation
    det = torch.addcmul(sigma, t * t, sigma - 1, value=-1)
    log_det = torch.log(det).sum(0)
    if not keep:
        return z, log_det
    return z, log_det, torch.stack(zs), t, det


class _PlanarChain(torch.autograd.Function):
    r"""The K planar layers with a hand-written backward: the same forward as
    :func:`_chain`, whose autograd graph has some 25 small nodes per layer, which at
    K = 80 cost more than the layers' arithmetic. With :math:`a_k = w_k^\top z_{k-1} + b_k`,
    :math:`t_k = \tanh a_k`, :math:`d_k = \sigma_k + t_k^2 (1 - \sigma_k)` and the incoming
    gradients :math:`\bar z_K`, :math:`\bar\ell` (of the summed :math:`\log d_k`), going
    down the layers:

    .. math::

        \bar t_k = \hat u_k^\top \bar z_k + \bar\ell\, \frac{2 t_k (1 - \sigma_k)}{d_k},
        \qquad \bar a_k = \bar t_k (1 - t_k^2), \qquad
        \bar z_{k-1} = \bar z_k + \bar a_k\, w_k,

    and then, for all K at once, :math:`\bar{\hat u}_k = t_k \bar z_k`,
    :math:`\bar w_k = \bar a_k z_{k-1}`, :math:`\bar b_k = \bar a_k`,
    :math:`\bar\sigma_k = \bar\ell (1 - t_k^2) / d_k`, summed over the dimensions the
    parameters were broadcast along.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(z, u_hat, w, b, sigma):
        return _chain(z, u_hat, w, b, sigma, keep=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, u_hat, w, b, sigma = inputs
        _, _, zs, ts, dets = output
        ctx.mark_non_differentiable(zs, ts, dets)
        ctx.save_for_backward(u_hat, w, b, sigma, zs, ts, dets)

    @staticmethod
    def backward(ctx, g_z, g_ld, *_):
        u_hat, w, b, sigma, zs, ts, dets = ctx.saved_tensors
        g_z = torch.zeros_like(zs[0]) if g_z is None else g_z
        g_ld = torch.zeros_like(ts[0]) if g_ld is None else g_ld
        slope = 1 - ts * ts                                     # ∂ t_k / ∂ a_k
        g_t_from_ld = g_ld * 2 * ts * (1 - _like(sigma, ts)) / dets   # ∂ log d_k / ∂ t_k
        g_zs, g_as = [], []
        for u_k, w_k, g_t_k, slope_k in zip(*(v.unbind(0)[::-1]
                                              for v in (u_hat, w, g_t_from_ld, slope))):
            g_zs.append(g_z)
            g_a = ((g_z * u_k).sum(-1) + g_t_k) * slope_k
            g_as.append(g_a)
            g_z = torch.addcmul(g_z, g_a.unsqueeze(-1), w_k)
        g_zs, g_as = torch.stack(g_zs[::-1]), torch.stack(g_as[::-1])   # [K, ..., D], [K, ...]
        g_u = _to_param(g_zs * ts.unsqueeze(-1), u_hat)
        g_w = _to_param(g_as.unsqueeze(-1) * zs, w)
        g_b = _to_param(g_as, b)
        g_sigma = _to_param(g_ld * slope / dets, sigma)
        return g_z, g_u, g_w, g_b, g_sigma


def _to_param(g: Tensor, param: Tensor) -> Tensor:
    """A gradient ``[K, *batch, ...]`` summed over the dimensions ``param`` ``[K, *P, ...]``
    was broadcast along."""
    extra = g.dim() - param.dim()                     # leading batch dims P does not have
    if extra:
        g = g.sum(tuple(range(1, 1 + extra)))
    return g.sum_to_size(param.shape)
