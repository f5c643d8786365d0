"""Planar and Radial: invertibility constraints, numerical inverses, amortization."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev, vmap

from nfcourse.flows import Planar, Radial
from nfcourse.flows import planar as planar_module
from nfcourse.flows.planar import ROOT_TOL, ROOT_TOL_FLOAT32, root_precision, solve_monotone

pytestmark = pytest.mark.usefixtures("float64")


def planar_with(u, w, b=0.0):
    layer = Planar(len(u)).double()
    with torch.no_grad():
        layer.u.copy_(u), layer.w.copy_(w), layer.b.fill_(b)
    return layer


def jacobian_sign_and_logdet(layer, z):
    jac = vmap(jacrev(lambda v: layer(v[None])[0][0]))(z)
    return torch.linalg.slogdet(jac)


def test_u_hat_uses_squared_norm_of_w():
    """wᵀû = m(wᵀu) = softplus(wᵀu) - 1 holds only with ‖w‖² (pyro PR #2192)."""
    torch.manual_seed(0)
    for _ in range(20):
        u, w = 3 * torch.randn(4), 3 * torch.randn(4)
        u_hat, w_, _, sigma = planar_with(u, w)._parameters_for(None)
        torch.testing.assert_close((w * u_hat).sum(), F.softplus((w * u).sum()) - 1)
        torch.testing.assert_close(sigma[0] - 1, F.softplus((w * u).sum()) - 1)


ADVERSARIAL = list(itertools.product([-1e4, -30.0, -1.0, 0.0, 1.0, 1e4],  # u = k * w (+ noise)
                                     [1e-8, 1e-3, 1.0, 1e3]))            # size of w


@pytest.mark.parametrize("k,size", ADVERSARIAL)
def test_planar_stays_invertible_for_adversarial_parameters(k, size):
    g = torch.Generator().manual_seed(1)
    w = size * torch.randn(3, generator=g)
    u = k * w + 0.1 * torch.randn(3, generator=g)
    layer = planar_with(u, w, b=0.3)
    u_hat, _, _, sigma = layer._parameters_for(None)
    wu_hat = (w * u_hat).sum()
    assert wu_hat >= -1 - 1e-12, float(wu_hat)       # to working precision, however large u
    torch.testing.assert_close(wu_hat, sigma[0] - 1, rtol=0, atol=1e-12)
    # probe points where tanh is in its linear regime: there a violated constraint would flip
    # the Jacobian's sign
    xi, tau = torch.randn(16, 3, generator=g), 0.5 * torch.randn(16, 1, generator=g)
    z = xi - ((xi @ w)[:, None] + 0.3 - tau) / (w * w).sum() * w    # wᵀz + b = tau
    y, log_det = layer(z)
    assert torch.isfinite(y).all() and torch.isfinite(log_det).all()
    sign, logabsdet = jacobian_sign_and_logdet(layer, z)
    assert bool((sign > 0).all()), "Jacobian determinant is not positive"
    torch.testing.assert_close(log_det, logabsdet, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", [-1e4, -30.0, 1e4])
def test_planar_constraint_survives_float32(k):
    g = torch.Generator().manual_seed(1)
    w = 30 * torch.randn(3, generator=g)
    layer = planar_with(k * w + torch.randn(3, generator=g), w, b=0.1).float()
    u_hat, w, _, sigma = layer._parameters_for(None)
    assert (w * u_hat).sum() >= -1 - 1e-5
    z = torch.randn(64, 3, generator=g, dtype=torch.float32)
    y, log_det = layer(z)
    assert torch.isfinite(y).all() and torch.isfinite(log_det).all()


def test_planar_with_zero_w_is_a_translation():
    layer = planar_with(torch.tensor([1.0, -2.0]), torch.zeros(2), b=0.5)
    z = torch.randn(5, 2)
    y, log_det = layer(z)
    torch.testing.assert_close(y, z + math.tanh(0.5) * torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(log_det, torch.zeros(5))


@pytest.mark.parametrize("k", [-1e3, -1.0, 0.5, 50.0])
def test_planar_inverse_on_arbitrary_points(k):
    """log_prob needs f⁻¹ at any point, including far away ones (pyro #2718)."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, generator=g)
    layer = planar_with(k * w + torch.randn(4, generator=g), w, b=-0.7)
    y = 50 * torch.randn(64, 4, generator=g)
    y[:8] /= 100                                   # and some near the hyperplane
    z, log_det_inv = layer.inverse(y)
    y_back, log_det = layer(z)
    torch.testing.assert_close(y_back, y, rtol=0, atol=1e-8)
    torch.testing.assert_close(log_det_inv, -log_det, rtol=0, atol=1e-8)


def test_planar_inverse_gradient_is_the_implicit_one():
    """Gradients through the numerical inverse are right (last Newton step on autograd)."""
    layer = Planar(3, amortized=True)
    g = torch.Generator().manual_seed(3)
    y = torch.randn(4, 3, generator=g, requires_grad=True)
    params = torch.randn(4, layer.param_dim, generator=g, requires_grad=True)

    def f(y, params):
        z, ld = layer.inverse(y, params=params)
        return z.sum(-1) + ld

    assert torch.autograd.gradcheck(f, (y, params))


def test_solve_monotone_bisects_where_newton_fails():
    # arctan: Newton diverges from far away, bisection rescues it
    g = lambda x: (torch.atan(x) - 0.5, 1 / (1 + x * x))  # noqa: E731
    lo, hi = torch.full((3,), -100.0), torch.full((3,), 100.0)
    root = solve_monotone(g, lo, hi, torch.tensor([-90.0, 0.0, 90.0]))
    torch.testing.assert_close(root, torch.full((3,), math.tan(0.5)), rtol=0, atol=1e-12)
    # zero derivative at the start (c = -1, tanh = 0): no division blow-up
    g2 = lambda x: (x - torch.tanh(x) - 1e-3, 1 - (1 - torch.tanh(x) ** 2))  # noqa: E731
    root = solve_monotone(g2, torch.full((1,), -2.0), torch.full((1,), 2.0), torch.zeros(1))
    assert abs(float(root - torch.tanh(root)) - 1e-3) < 1e-12


def test_root_precision_is_float64_except_on_mps():
    """MPS has no float64: the inverse's root-find runs in float32 there, in float64 elsewhere."""
    assert root_precision(torch.device("cpu")) == (torch.float64, ROOT_TOL)
    assert root_precision(torch.device("cuda", 0)) == (torch.float64, ROOT_TOL)
    assert root_precision(torch.device("mps")) == (torch.float32, ROOT_TOL_FLOAT32)


@pytest.mark.parametrize("device_type", ["cpu", "mps"])
def test_planar_inverse_solves_in_the_precision_of_the_device(device_type, monkeypatch):
    """On CPU the solve runs in float64 even for float32 inputs; on MPS (simulated here by
    handing the CPU the MPS precision) in float32, and float32 round trips stay within the
    stated 1e-4 either way."""
    dtype, tol = root_precision(torch.device(device_type))
    monkeypatch.setattr(planar_module, "root_precision", lambda device: (dtype, tol))
    solves = []

    def spy(g, lo, hi, x0, tol, max_iter=100):
        evaluations = []

        def counted(x):
            evaluations.append(1)
            return g(x)
        root = solve_monotone(counted, lo, hi, x0, tol=tol, max_iter=max_iter)
        solves.append((lo.dtype, tol, len(evaluations)))
        return root
    monkeypatch.setattr(planar_module, "solve_monotone", spy)
    g = torch.Generator().manual_seed(9)
    layer = Planar(4, length=3).float()
    with torch.no_grad():
        w = torch.randn(3, 4, generator=g)
        k = torch.tensor([-1.0, 0.5, 5.0])[:, None]
        layer.w.copy_(w), layer.u.copy_(k * w + torch.randn(3, 4, generator=g))
        layer.b.copy_(torch.randn(3, generator=g))
    y = 5 * torch.randn(256, 4, generator=g, dtype=torch.float32)
    z, log_det_inv = layer.inverse(y)
    assert z.dtype == log_det_inv.dtype == torch.float32
    assert [(d, t) for d, t, _ in solves] == [(dtype, tol)] * 3
    assert max(n for _, _, n in solves) < 40          # converged, not stopped by max_iter
    y_back, log_det = layer(z)
    torch.testing.assert_close(y_back, y, rtol=0, atol=1e-4)
    torch.testing.assert_close(log_det_inv, -log_det, rtol=0, atol=1e-4)


def test_solve_monotone_stops_when_rounding_limits_it():
    """In float32 with large terms (|c|, |wᵀy| ~ 1e3, as for a planar layer with a long w)
    Newton's steps cannot fall below 1e-6 (1 + |α|): they bounce between neighbours of the
    root. Bisection then closes the bracket and the solver stops, instead of running to
    max_iter, at a root as good as float32 allows."""
    g0 = torch.Generator().manual_seed(0)
    c = 3000 * torch.rand(4096, generator=g0, dtype=torch.float32)
    b = torch.randn(4096, generator=g0, dtype=torch.float32)
    wy = 2.4 * (torch.rand(4096, generator=g0, dtype=torch.float32) - 0.5) * c
    evaluations = []

    def g(alpha):
        evaluations.append(1)
        t = torch.tanh(alpha + b)
        return alpha + c * t - wy, 1 + c * (1 - t * t)
    root = solve_monotone(g, wy - c, wy + c, wy.clone(), tol=ROOT_TOL_FLOAT32)
    assert root.dtype == torch.float32 and len(evaluations) < 60
    root, c, b, wy = (v.double() for v in (root, c, b, wy))
    residual = root + c * torch.tanh(root + b) - wy            # in float64
    resolution = torch.finfo(torch.float32).eps * (root.abs() + c + wy.abs())
    assert bool((residual.abs() <= 2 * resolution).all())


def test_solve_monotone_does_not_cycle_across_the_tanh_knee():
    """Plain Newton on α + c tanh(α + b) = wᵀy 2-cycles for some c > 1 (here between
    α ≈ -9.57 and 0.95, both inside the bracket); the solver used to return one of the two
    after max_iter, and Planar.inverse a point 9.7 away from the answer."""
    c, b, wy = 10.788083507984137, 0.9067229229182777, -9.837505213724107

    def g(alpha):
        t = torch.tanh(alpha + b)
        return alpha + c * t - wy, 1 + c * (1 - t * t)
    wy_ = torch.tensor([wy])
    root = solve_monotone(g, wy_ - c, wy_ + c, wy_.clone())
    assert abs(float(g(root)[0])) < 1e-12
    # and over many equations of this kind
    gen = torch.Generator().manual_seed(12)
    c = 1 + 60 * torch.rand(20000, generator=gen)
    b, wy = 2 * torch.randn(20000, generator=gen), 15 * torch.randn(20000, generator=gen)
    root = solve_monotone(g, wy - c, wy + c, wy.clone())
    value, slope = g(root)
    assert float((value.abs() / slope).max()) < 1e-12 * (1 + float(root.abs().max()))


def test_planar_inverse_where_newton_cycles():
    g = torch.Generator().manual_seed(9)
    w = torch.randn(4, generator=g)
    layer = planar_with(5 * w + torch.randn(4, generator=g), w, b=0.9)
    y = 10 * torch.randn(4096, 4, generator=g)
    z, log_det_inv = layer.inverse(y)
    y_back, log_det = layer(z)
    torch.testing.assert_close(y_back, y, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_det_inv, -log_det, rtol=0, atol=1e-10)


def test_planar_of_length_k_equals_k_single_layers():
    from nfcourse.flows import Flow
    torch.manual_seed(8)
    stacked = Planar(3, length=4)
    with torch.no_grad():
        for p in stacked.parameters():
            p.normal_()
        singles = Flow([planar_with(stacked.u[k], stacked.w[k], stacked.b[k].item())
                        for k in range(4)])
    z = torch.randn(10, 3)
    y, log_det = stacked(z)
    y1, log_det1 = singles(z)
    torch.testing.assert_close(y, y1)
    torch.testing.assert_close(log_det, log_det1)
    z_back, log_det_inv = stacked.inverse(y)
    torch.testing.assert_close(z_back, z)
    torch.testing.assert_close(log_det_inv, -log_det)


def test_amortized_planar_equals_shared_per_sample():
    torch.manual_seed(4)
    amortized = Planar(3, amortized=True)
    z, params = torch.randn(6, 3), torch.randn(6, 7)
    y, log_det = amortized(z, params=params)
    for i in range(6):
        u, w, b = params[i, :3], params[i, 3:6], params[i, 6]
        yi, ldi = planar_with(u, w, b.item())(z[i:i + 1])
        torch.testing.assert_close(y[i], yi[0])
        torch.testing.assert_close(log_det[i], ldi[0])


def radial_with(z0, alpha_raw, beta_raw):
    layer = Radial(len(z0)).double()
    with torch.no_grad():
        layer.z0.copy_(z0), layer.alpha_raw.fill_(alpha_raw), layer.beta_raw.fill_(beta_raw)
    return layer


@pytest.mark.parametrize("alpha_raw,beta_raw", list(itertools.product([-30.0, 0.0, 30.0],
                                                                       [-40.0, -3.0, 0.0, 40.0])))
def test_radial_stays_invertible_for_adversarial_parameters(alpha_raw, beta_raw):
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(3, generator=g)
    layer = radial_with(z0, alpha_raw, beta_raw)
    alpha = F.softplus(torch.tensor(alpha_raw))
    beta_hat = -alpha + F.softplus(torch.tensor(beta_raw))
    assert beta_hat >= -alpha
    z = z0 + torch.randn(16, 3, generator=g) * torch.logspace(-4, 1, 16)[:, None]
    y, log_det = layer(z)
    assert torch.isfinite(y).all() and torch.isfinite(log_det).all()
    sign, logabsdet = jacobian_sign_and_logdet(layer, z)
    assert bool((sign > 0).all())
    torch.testing.assert_close(log_det, logabsdet, rtol=1e-6, atol=1e-6)
    if beta_raw > -40:   # at beta_raw=-40 the map squeezes a ball to ~e^-40: not invertible in floats
        z_back, _ = layer.inverse(y)
        torch.testing.assert_close(z_back, z, rtol=1e-6, atol=1e-8)


def test_radial_inverse_at_the_centre_and_far_away():
    z0 = torch.tensor([0.5, -1.0])
    layer = radial_with(z0, 0.2, 1.5)
    z, _ = layer.inverse(z0[None])
    torch.testing.assert_close(z, z0[None])
    y = 1e3 * torch.randn(10, 2)
    torch.testing.assert_close(layer(layer.inverse(y)[0])[0], y, rtol=1e-10, atol=1e-8)


def test_radial_matches_the_paper_formula():
    """f(z) = z + β h(α, r)(z - z0) with h = 1/(α + r), computed naively."""
    g = torch.Generator().manual_seed(6)
    z0, z = torch.randn(4, generator=g), torch.randn(7, 4, generator=g)
    layer = radial_with(z0, 0.3, -0.8)
    alpha = F.softplus(torch.tensor(0.3))
    beta = -alpha + F.softplus(torch.tensor(-0.8))
    r = (z - z0).norm(dim=-1, keepdim=True)
    h = 1 / (alpha + r)
    expected = z + beta * h * (z - z0)
    log_det = 3 * torch.log1p(beta * h) + torch.log1p(beta * h - beta * r / (alpha + r) ** 2)
    y, ld = layer(z)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(ld, log_det.squeeze(-1))


# The hand-written backward of the planar chain ---------------------------------------------

@pytest.mark.parametrize("amortized", [False, True], ids=["own", "amortized"])
@pytest.mark.parametrize("draws", [None, 3], ids=["no_draws", "3_draws"])
def test_planar_hand_written_backward_matches_autograd(float64, amortized, draws):
    """The custom backward of Planar against autograd through the same forward, for own and
    per-sample parameters, with draws [S, B, D] broadcasting against params [B, ...]."""
    from nfcourse.flows.planar import _by_layer, _chain, _PlanarChain
    torch.manual_seed(0)
    layer = Planar(4, length=5, amortized=amortized)
    params = torch.randn(6, layer.param_dim) if amortized else None
    if not amortized:
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p))
    shape = (6, 4) if draws is None else (draws, 6, 4)
    z = 1.5 * torch.randn(shape)
    u_hat, w, b, sigma = layer._parameters_for(params)
    layered = (z, _by_layer(u_hat), _by_layer(w), _by_layer(b, 0), _by_layer(sigma, 0))
    inputs = [v.detach().requires_grad_(True) for v in layered]
    g_z, g_ld = torch.randn(shape), torch.randn(shape[:-1])
    for fn in (_PlanarChain.apply, _chain):
        y, log_det = fn(*inputs)[:2]
        grads = torch.autograd.grad((y * g_z).sum() + (log_det * g_ld).sum(), inputs)
        if fn is _chain:
            for got, want in zip(hand, grads):
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        hand = grads
    assert torch.autograd.gradcheck(lambda *v: _PlanarChain.apply(*v)[:2],
                                    [v.detach().requires_grad_(True) for v in inputs])


def test_planar_takes_the_hand_written_backward_only_when_a_gradient_is_needed():
    layer = Planar(3, length=4)
    z = torch.randn(5, 3)
    y, log_det = layer(z)
    assert type(y.grad_fn).__name__ == "_PlanarChainBackward"
    with torch.no_grad():
        y2, log_det2 = layer(z)
    assert torch.equal(y2, y.detach()) and torch.equal(log_det2, log_det.detach())
