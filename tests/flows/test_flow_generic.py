"""Checks every layer of the registry goes through (see flowcases.py)."""

from __future__ import annotations

import io

import pytest
import torch
from flowcases import CASES, Case
from torch.func import jacrev, vmap

ids = [case.name for case in CASES]
INVERTIBLE = [case for case in CASES if case.invertible]
inv_ids = [case.name for case in INVERTIBLE]


def per_sample(layer, fn="forward"):
    """A function of one sample (and its context/params) returning ``(y, log_det)``."""
    call = layer if fn == "forward" else layer.inverse

    def f(x, kwargs):
        y, ld = call(x[None], **{k: v[None] for k, v in kwargs.items()})
        return y[0], ld[0]
    return f


def autograd_log_det(layer, x, kwargs):
    f = per_sample(layer)

    def flat(xi, kw):
        return f(xi, kw)[0].flatten()

    jac = vmap(jacrev(flat))(x, kwargs)                 # [B, D, *event]
    jac = jac.flatten(2)
    sign, logabsdet = torch.linalg.slogdet(jac)
    return sign, logabsdet


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_log_det_matches_autograd_jacobian(case: Case, device):
    layer = case.make(device=device)
    x, kwargs = case.inputs(layer, device=device)
    y, log_det = layer(x, **kwargs)
    assert log_det.shape == x.shape[:1]
    sign, expected = autograd_log_det(layer, x, kwargs)
    assert bool((sign != 0).all()), "singular Jacobian"
    torch.testing.assert_close(log_det, expected, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_randomised_layer_is_not_the_identity(case: Case):
    """Guards the other tests: a layer that does nothing would pass them trivially."""
    layer = case.make()
    x, kwargs = case.inputs(layer)
    y, log_det = layer(x, **kwargs)
    if y.shape == x.shape:
        assert (y - x).abs().max() > 0.1
    if case.volume_preserving:
        assert bool((log_det == 0).all())
    else:
        assert log_det.abs().max() > 1e-2


@pytest.mark.parametrize("case", INVERTIBLE, ids=inv_ids)
def test_inverse_round_trip_float64(case: Case, device):
    layer = case.make(device=device)
    x, kwargs = case.inputs(layer, device=device)
    y, log_det = layer(x, **kwargs)
    x_back, log_det_inv = layer.inverse(y, **kwargs)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-6)
    torch.testing.assert_close(log_det_inv, -log_det, rtol=0, atol=1e-6)
    # and from the other side: any point y, not only images of the forward map
    y2 = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype) * 2
    y2 = y2.to(device)
    x2, log_det_inv2 = layer.inverse(y2, **kwargs)
    y2_back, log_det2 = layer(x2, **kwargs)
    torch.testing.assert_close(y2_back, y2, rtol=0, atol=1e-6)
    torch.testing.assert_close(log_det_inv2, -log_det2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", INVERTIBLE, ids=inv_ids)
def test_inverse_round_trip_float32(case: Case, device):
    layer = case.make(dtype=torch.float32, device=device)
    x, kwargs = case.inputs(layer, dtype=torch.float32, device=device)
    y, log_det = layer(x, **kwargs)
    assert y.dtype == log_det.dtype == torch.float32
    x_back, log_det_inv = layer.inverse(y, **kwargs)
    assert x_back.dtype == torch.float32
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-4)
    torch.testing.assert_close(log_det_inv, -log_det, rtol=0, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_gradients_reach_every_parameter(case: Case, device):
    layer = case.make(device=device)
    x, kwargs = case.inputs(layer, device=device)
    x.requires_grad_(True)
    for v in kwargs.values():
        v.requires_grad_(True)
    directions = ["forward"] + (["inverse"] if case.invertible else [])
    for direction in directions:
        layer.zero_grad()
        if direction == "inverse":   # start from the output side (its shape may differ)
            x = layer(x, **kwargs)[0].detach().requires_grad_(True)
        call = layer if direction == "forward" else layer.inverse
        y, log_det = call(x, **kwargs)
        (y.square().sum() + log_det.sum()).backward()
        for name, p in layer.named_parameters():
            assert p.grad is not None, f"{direction}: no gradient reaches {name}"
            assert torch.isfinite(p.grad).all(), f"{direction}: non-finite gradient in {name}"
            assert p.grad.abs().sum() > 0, f"{direction}: zero gradient for {name}"
        for k, v in [("x", x), *kwargs.items()]:
            assert v.grad is not None and v.grad.abs().sum() > 0, f"{direction}: no gradient to {k}"
            v.grad = None


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_batch_shapes(case: Case, device):
    layer = case.make(device=device)
    x, kwargs = case.inputs(layer, batch=3, device=device)
    for batch in [1, 3]:
        xb = x[:batch]
        kb = {k: v[:batch] for k, v in kwargs.items()}
        y, log_det = layer(xb, **kb)
        assert log_det.shape == (batch,)
        if case.invertible:
            assert layer.inverse(y, **kb)[0].shape == xb.shape
    if len(case.event) == 1:
        # extra leading dims, e.g. S importance samples for each of B data points;
        # context and params of shape [B, ...] broadcast over S; the second sample is a
        # fresh draw of the case's inputs, so it stays in the layer's domain (Logit's)
        other, _ = case.inputs(layer, batch=3, seed=2, device=device)
        xs = torch.stack([x, other])
        y, log_det = layer(xs, **kwargs)
        assert y.shape == xs.shape and log_det.shape == (2, 3)
        torch.testing.assert_close(log_det[0], layer(x, **kwargs)[1])


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_state_dict_round_trip(case: Case):
    layer = case.make(seed=0)
    other = case.make(seed=1)
    x, kwargs = case.inputs(layer)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    y, log_det = layer(x, **kwargs)
    y2, log_det2 = other(x, **kwargs)
    torch.testing.assert_close(y2, y, rtol=0, atol=0)
    torch.testing.assert_close(log_det2, log_det, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_clear_errors_for_wrong_inputs(case: Case):
    layer = case.make()
    x, kwargs = case.inputs(layer)
    wrong = x[..., :-1] if len(case.event) == 1 else x[:, :1]
    with pytest.raises(ValueError, match="expects"):
        layer(wrong, **kwargs)
    if "context" in kwargs:
        with pytest.raises(ValueError, match="context"):
            layer(x, params=kwargs["params"]) if "params" in kwargs else layer(x)
    if "params" in kwargs:
        with pytest.raises(ValueError, match="params"):
            layer(x, context=kwargs["context"]) if "context" in kwargs else layer(x)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_device_matches_cpu(case: Case, device):
    if device.type == "cpu":
        pytest.skip("compares a GPU with the CPU: run with --device cuda (or mps)")
    layer = case.make()
    x, kwargs = case.inputs(layer)
    y, log_det = layer(x, **kwargs)
    gpu = case.make(device=device)
    xg, kg = x.to(device), {k: v.to(device) for k, v in kwargs.items()}
    yg, log_det_g = gpu(xg, **kg)
    assert yg.device.type == device.type
    torch.testing.assert_close(yg.cpu(), y, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(log_det_g.cpu(), log_det, rtol=1e-6, atol=1e-8)
    if case.invertible:
        torch.testing.assert_close(gpu.inverse(yg, **kg)[0].cpu(), x, rtol=0, atol=1e-6)
