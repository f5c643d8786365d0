"""Coupling layers and masks: structure of the Jacobian, bounded scales, the equations."""

from __future__ import annotations

from functools import partial

import flowcases
import pytest
import torch
from torch.func import jacrev

from nfcourse import flows as nf

pytestmark = pytest.mark.usefixtures("float64")
randomise = partial(flowcases.randomise, scale=0.7)


def test_vector_masks():
    assert nf.half_mask(4).tolist() == [True, True, False, False]
    assert nf.half_mask(5, first=False).tolist() == [False, False, True, True, True]
    assert nf.alternating_mask(5).tolist() == [True, False, True, False, True]
    assert torch.equal(nf.alternating_mask(5, even=False), ~nf.alternating_mask(5))


def test_image_masks():
    cb = nf.checkerboard_mask(3, 4)
    assert cb.shape == (1, 3, 4)
    assert cb[0, 0, 0] and not cb[0, 0, 1] and not cb[0, 1, 0] and cb[0, 1, 1]
    assert torch.equal(nf.checkerboard_mask(3, 4, even=False), ~cb)
    assert cb.sum() == 6
    ch = nf.channel_mask(4)
    assert ch.shape == (4, 1, 1) and ch.flatten().tolist() == [True, True, False, False]


@pytest.mark.parametrize("cls", [nf.AffineCoupling, nf.AdditiveCoupling])
@pytest.mark.parametrize("mask", [nf.half_mask(5), nf.alternating_mask(5, even=False),
                                  torch.tensor([False, True, True, False, True])])
def test_vector_coupling_jacobian_is_block_triangular(cls, mask):
    layer = randomise(cls(mask, hidden=(16, 16)))
    x = torch.randn(5)
    jac = jacrev(lambda v: layer(v[None])[0][0])(x)
    a, b = mask, ~mask
    torch.testing.assert_close(jac[a][:, a], torch.eye(int(a.sum())))     # y_A = x_A
    assert torch.equal(jac[a][:, b], torch.zeros(int(a.sum()), int(b.sum())))  # y_A ignores x_B
    block = jac[b][:, b]
    torch.testing.assert_close(block, torch.diag(block.diagonal()))     # elementwise in x_B
    assert jac[b][:, a].abs().max() > 1e-3                              # y_B depends on x_A


def test_affine_coupling_follows_the_equations():
    """y_A = x_A, y_B = x_B exp(s) + t with s = β tanh(s̃/β), (s̃, t) = net(x_A): by hand."""
    mask = torch.tensor([True, False, True, False, False])
    layer = randomise(nf.AffineCoupling(mask, hidden=(8,), log_scale_bound=2.0), scale=1.5)
    x = torch.randn(6, 5)
    s_raw, t = layer.net(x[:, mask]).chunk(2, -1)
    s = 2.0 * torch.tanh(s_raw / 2.0)
    expected = x.clone()
    expected[:, ~mask] = x[:, ~mask] * torch.exp(s) + t
    y, log_det = layer(x)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(log_det, s.sum(-1))


def test_log_scale_is_bounded_even_for_huge_weights():
    layer = randomise(nf.AffineCoupling(nf.half_mask(6), hidden=(16,), log_scale_bound=3.0),
                      scale=100.0)
    x = 10 * torch.randn(64, 6)
    y, log_det = layer(x)
    assert log_det.abs().max() <= 3.0 * 3
    assert log_det.abs().max() > 3.0 * 3 * 0.9          # saturated: the bound is what acts
    x_back, _ = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9)


def test_fresh_coupling_is_the_identity_and_randomised_is_not():
    """Documented behaviour (zero last layer) -- and why the generic tests randomise."""
    layer = nf.AffineCoupling(nf.half_mask(4), hidden=(8,))
    x = torch.randn(3, 4)
    y, log_det = layer(x)
    assert torch.equal(y, x) and torch.equal(log_det, torch.zeros(3))
    randomise(layer)
    assert not torch.allclose(layer(x)[0], x)


def test_context_changes_the_map():
    layer = randomise(nf.AffineCoupling(nf.half_mask(4), hidden=(8,), context_dim=2))
    x = torch.randn(3, 4)
    y1, _ = layer(x, context=torch.zeros(3, 2))
    y2, _ = layer(x, context=torch.ones(3, 2))
    assert not torch.allclose(y1, y2)
    # a context shared by the batch broadcasts
    torch.testing.assert_close(layer(x, context=torch.ones(2))[0], y2)


@pytest.mark.parametrize("mask", [nf.checkerboard_mask(4, 4), nf.channel_mask(4)])
def test_image_coupling_keeps_the_masked_entries(mask):
    layer = randomise(nf.AffineCoupling(mask, channels=4, hidden=8), scale=0.3)
    x = torch.randn(2, 4, 4, 4)
    y, log_det = layer(x)
    keep = mask.expand(4, 4, 4)
    torch.testing.assert_close(y[:, keep], x[:, keep])
    assert (y[:, ~keep] - x[:, ~keep]).abs().max() > 0.1
    # the conditioner never sees the transformed entries
    x2 = x.clone()
    x2[:, ~keep] += 1.0
    y2, log_det2 = layer(x2)
    torch.testing.assert_close(log_det2, log_det)


def test_nice_with_diagonal_scaling():
    """NICE: additive couplings (volume preserving) topped by a diagonal scaling."""
    flow = nf.Flow([randomise(nf.AdditiveCoupling(nf.alternating_mask(4, even=i % 2 == 0),
                                                  hidden=(8,)), seed=i) for i in range(4)]
                   + [nf.DiagonalScaling(4)])
    with torch.no_grad():
        flow[-1].log_scale.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    x = torch.randn(5, 4)
    y, log_det = flow(x)
    torch.testing.assert_close(log_det, torch.full((5,), 1.5))
    torch.testing.assert_close(flow.inverse(y)[0], x)


def test_bad_masks_are_refused():
    with pytest.raises(ValueError, match="keep some features"):
        nf.AffineCoupling(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="1-D"):
        nf.AffineCoupling(torch.ones(2, 2, dtype=torch.bool))
