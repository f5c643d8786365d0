"""MADE, MAF and IAF: autoregressive structure through gradients, one-pass directions."""

from __future__ import annotations

from functools import partial

import flowcases
import pytest
import torch
from torch.func import jacrev

from nfcourse import flows as nf

pytestmark = pytest.mark.usefixtures("float64")
randomise = partial(flowcases.randomise, scale=0.5)


@pytest.mark.parametrize("dim,hidden,order", [
    (5, (32, 32), None),
    (5, (3,), None),                       # fewer hidden units than features
    (6, (40, 40, 40), [3, 0, 5, 1, 4, 2]),  # a random order
    (2, (16,), [1, 0]),
])
@pytest.mark.parametrize("context_dim", [0, 3])
def test_made_is_autoregressive_through_gradients(dim, hidden, order, context_dim):
    made = randomise(nf.MADE(dim, hidden, out_mult=2, context_dim=context_dim, order=order))
    rank = torch.arange(dim) if order is None else torch.tensor(order)
    allowed = rank[None, :] < rank[:, None]       # out_i may read x_j iff rank j < rank i
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(dim, generator=g)
    c = torch.randn(context_dim, generator=g) if context_dim else None
    for block in range(2):
        jac = jacrev(lambda v: made(v, c)[block])(x)
        assert torch.equal(jac[~allowed], torch.zeros(int((~allowed).sum()))), "reads the future"
        if min(hidden) >= dim:    # and the allowed connections exist (the check can fail)
            assert (jac[allowed] != 0).float().mean() > 0.6
    if context_dim and min(hidden) >= dim:   # with few units, ReLUs may all be off
        jac_c = jacrev(lambda cc: made(x, cc)[0])(c)
        assert (jac_c.abs().sum(-1) > 0).all(), "every output should see the context"


@pytest.mark.parametrize("cls", [nf.MAF, nf.IAF])
@pytest.mark.parametrize("order", [None, [2, 4, 0, 1, 3]])
def test_jacobian_is_triangular_in_the_layer_order(cls, order):
    layer = randomise(cls(5, hidden=(16, 16), order=order), scale=0.4)
    rank = torch.arange(5) if order is None else torch.tensor(order)
    perm = torch.argsort(rank)                  # features sorted by rank
    x = torch.randn(5, generator=torch.Generator().manual_seed(1))
    for fn in (lambda v: layer(v[None])[0][0], lambda v: layer.inverse(v[None])[0][0]):
        jac = jacrev(fn)(x)[perm][:, perm]
        torch.testing.assert_close(jac, jac.tril())
        below = torch.ones(5, 5).tril(-1).bool()
        assert (jac[below].abs() > 1e-6).float().mean() > 0.6      # really coupled


def count_made_calls(layer):
    calls = []
    layer.made.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_maf_scores_in_one_pass_and_samples_in_d_passes():
    layer = randomise(nf.MAF(4, hidden=(8,)))
    calls = count_made_calls(layer)
    y = torch.randn(3, 4)
    x, _ = layer.inverse(y)
    assert len(calls) == 1
    calls.clear()
    layer(x)
    assert len(calls) == 4


def test_iaf_samples_in_one_pass_and_inverts_in_d_passes():
    layer = randomise(nf.IAF(4, hidden=(8,), context_dim=2))
    calls = count_made_calls(layer)
    z, h = torch.randn(3, 4), torch.randn(3, 2)
    y, _ = layer(z, context=h)
    assert len(calls) == 1
    calls.clear()
    layer.inverse(y, context=h)
    assert len(calls) == 4


def made_by_hand(made, v, context=None):
    """The MADE's raw outputs from its weights and 0/1 masks (nothing folded in)."""
    h = v
    for i, layer in enumerate(made.layers):
        h = h @ (layer.weight * (layer.mask != 0)).T + layer.bias
        if i == 0 and context is not None:
            h = h + context @ made.context.weight.T
        h = torch.relu(h)
    out = h @ (made.out.weight * (made.out.mask != 0)).T + made.out.bias
    return out.chunk(made.out_mult, dim=-1)


@pytest.mark.parametrize("cls", [nf.MAF, nf.IAF])
@pytest.mark.parametrize("beta", [3.0, 2.0, 0.7])
def test_one_pass_follows_the_equations_exactly_in_float64(cls, beta):
    """MAF: x = (y - μ(y)) e^{-s(y)}; IAF: y = x e^{s(x)} + μ(x); s = β tanh(s̃/β) with s̃
    the raw MADE output, to rounding in float64 (a 1/β stored as float32, 0.3333333433
    for β = 3, was off by ~1e-8)."""
    layer = randomise(cls(4, hidden=(8,), context_dim=2, log_scale_bound=beta), scale=0.8)
    g = torch.Generator().manual_seed(3)
    v, c = 2 * torch.randn(6, 4, generator=g), torch.randn(6, 2, generator=g)
    s_raw, mu = made_by_hand(layer.made, v, c)
    assert s_raw.abs().max() > beta                  # tanh's curved part is reached
    s = beta * torch.tanh(s_raw / beta)
    if cls is nf.MAF:
        out, log_det = layer.inverse(v, context=c)
        expected, expected_log_det = (v - mu) * torch.exp(-s), -s.sum(-1)
    else:
        out, log_det = layer(v, context=c)
        expected, expected_log_det = v * torch.exp(s) + mu, s.sum(-1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(log_det, expected_log_det, rtol=1e-14, atol=1e-14)


def test_iaf_context_is_the_amortization():
    layer = randomise(nf.IAF(3, hidden=(8,), context_dim=4))
    z = torch.randn(5, 3)
    y1, _ = layer(z, context=torch.randn(5, 4))
    y2, _ = layer(z, context=torch.randn(5, 4))
    assert not torch.allclose(y1, y2)


def test_maf_and_inverse_iaf_shapes():
    maf = nf.MAF(3, hidden=(8,), reverse=True)
    assert maf.made.order.tolist() == [2, 1, 0]
    iaf_like = nf.Inverse(maf)               # one-pass sampler, sequential inverse
    calls = count_made_calls(maf)
    randomise(maf)
    iaf_like(torch.randn(2, 3))
    assert len(calls) == 1


def test_made_refuses_a_bad_order():
    with pytest.raises(ValueError, match="permutation"):
        nf.MADE(3, order=[0, 0, 1])
