"""ActNorm, invertible 1x1 convolution, LU linear, squeeze and multi-scale factor-out."""

from __future__ import annotations

from functools import partial

import io

import flowcases
import pytest
import torch
from torch.func import jacrev

from nfcourse import flows as nf

pytestmark = pytest.mark.usefixtures("float64")
randomise = partial(flowcases.randomise, scale=0.3)


@pytest.mark.parametrize("event_dims,shape", [(1, (500, 3)), (3, (50, 3, 4, 4))])
def test_actnorm_initialises_its_output_from_the_first_batch(event_dims, shape):
    dims = (0,) if event_dims == 1 else (0, 2, 3)
    data = 3 + 2 * torch.randn(shape) * torch.tensor([1.0, 5.0, 0.1]).view(-1, *[1] * (len(shape) - 2))
    # forward first (e.g. a VI posterior): the output y is standardised
    layer = nf.ActNorm(3, event_dims=event_dims)
    y, _ = layer(data)
    torch.testing.assert_close(y.mean(dims), torch.zeros(3), rtol=0, atol=1e-8)
    torch.testing.assert_close(y.std(dims, unbiased=False), torch.ones(3), rtol=0, atol=1e-5)
    # inverse first (density estimation: data enters through the inverse)
    layer = nf.ActNorm(3, event_dims=event_dims)
    x, _ = layer.inverse(data)
    torch.testing.assert_close(x.mean(dims), torch.zeros(3), rtol=0, atol=1e-8)
    torch.testing.assert_close(x.std(dims, unbiased=False), torch.ones(3), rtol=0, atol=1e-5)
    # later batches do not re-initialise
    before = layer.log_scale.clone()
    layer.inverse(data * 7)
    assert torch.equal(layer.log_scale, before)


def test_actnorm_state_dict_carries_the_initialisation():
    trained = nf.ActNorm(2)
    trained(torch.randn(100, 2) * 4)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = nf.ActNorm(2)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(10, 2)
    torch.testing.assert_close(fresh(x)[0], trained(x)[0])  # not re-initialised on x


def test_actnorm_image_log_det_counts_pixels():
    layer = randomise(nf.ActNorm(2, event_dims=3))
    layer._initialized = True
    _, log_det = layer(torch.randn(1, 2, 3, 5))
    torch.testing.assert_close(log_det, 15 * layer.log_scale.sum().expand(1))


@pytest.mark.parametrize("lu", [True, False])
def test_inv_conv_is_the_same_matrix_at_every_pixel(lu):
    layer = randomise(nf.InvConv1x1(3, lu=lu), scale=0.5)
    x = torch.randn(2, 3, 4, 5)
    y, log_det = layer(x)
    w = layer.lu.weight() if lu else layer.weight
    torch.testing.assert_close(y, torch.einsum("oc,bchw->bohw", w, x))
    torch.testing.assert_close(log_det, 20 * torch.linalg.slogdet(w)[1].expand(2))


def test_lu_weight_is_p_l_u_and_its_log_det_is_the_diagonal_sum():
    layer = randomise(nf.LULinear(4), scale=0.5)
    lower, upper = layer.lu.factors()
    assert torch.equal(lower.diagonal(), torch.ones(4)) and torch.equal(lower, lower.tril())
    assert torch.equal(upper, upper.triu())
    w = layer.lu.weight()
    torch.testing.assert_close(w, layer.lu.p @ lower @ upper)
    torch.testing.assert_close(layer.lu.log_abs_det(), torch.linalg.slogdet(w)[1])
    x = torch.randn(6, 4)
    torch.testing.assert_close(layer(x)[0], x @ w.T + layer.bias)


def test_fresh_inv_conv_and_lu_start_as_rotations():
    torch.manual_seed(0)
    for w in [nf.InvConv1x1(4).lu.weight(), nf.LULinear(4).lu.weight()]:
        torch.testing.assert_close(w @ w.T, torch.eye(4), rtol=0, atol=1e-5)


def test_squeeze_moves_entries_and_refuses_odd_sizes():
    layer = nf.Squeeze(2)
    x = torch.arange(2 * 4 * 6.0).view(1, 2, 4, 6)
    y, log_det = layer(x)
    assert y.shape == (1, 8, 2, 3) and torch.equal(log_det, torch.zeros(1))
    assert torch.equal(y.flatten().sort().values, x.flatten())       # a permutation
    # channel group k = 2i + j holds sub-pixel (i, j) of every 2x2 block
    for i in range(2):
        for j in range(2):
            k = 2 * i + j
            assert torch.equal(y[0, 2 * k:2 * k + 2], x[0, :, i::2, j::2])
    assert torch.equal(layer.inverse(y)[0], x)
    with pytest.raises(ValueError, match="even"):
        layer(torch.zeros(1, 2, 3, 4))


def test_factor_out_leaves_the_factored_channels_alone():
    inner = randomise(nf.Flow([nf.AffineCoupling(nf.channel_mask(2), hidden=8), nf.InvConv1x1(2)]))
    layer = nf.FactorOut(inner, channels=4)
    x = torch.randn(3, 4, 4, 4)
    y, log_det = layer(x)
    assert torch.equal(y[:, 2:], x[:, 2:])
    y_inner, log_det_inner = inner(x[:, :2])
    torch.testing.assert_close(y[:, :2], y_inner)
    torch.testing.assert_close(log_det, log_det_inner)


def multiscale_realnvp():
    """RealNVP's architecture on 1x8x8 images, written in the data-to-noise order of the
    paper and wrapped in Inverse so that forward samples."""
    def coupling(mask, channels, seed):
        return randomise(nf.AffineCoupling(mask, channels=channels, hidden=8), seed=seed)
    normalizing = nf.Flow([
        coupling(nf.checkerboard_mask(8, 8), 1, 0),
        coupling(nf.checkerboard_mask(8, 8, even=False), 1, 1),
        nf.Squeeze(1),                                      # [4, 4, 4]
        coupling(nf.channel_mask(4), 4, 2),
        coupling(nf.channel_mask(4, first=False), 4, 3),
        nf.FactorOut(nf.Flow([                              # half goes on at the next scale
            coupling(nf.checkerboard_mask(4, 4), 2, 4),
            randomise(nf.InvConv1x1(2), seed=5),
        ]), channels=4),
    ])
    return nf.Inverse(normalizing)


def test_multiscale_flow_log_det_and_round_trip():
    flow = multiscale_realnvp()
    z = torch.randn(3, 4, 4, 4)                              # latent shape
    x, log_det = flow(z)
    assert x.shape == (3, 1, 8, 8)
    jac = jacrev(lambda v: flow(v[None])[0][0])(z[0]).reshape(64, 64)
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jac)[1])
    z_back, log_det_inv = flow.inverse(x)
    torch.testing.assert_close(z_back, z)
    torch.testing.assert_close(log_det_inv, -log_det)


def test_multiscale_flow_as_a_distribution_over_images():
    q = nf.FlowDistribution(multiscale_realnvp(), shape=(4, 4, 4)).double()
    x, log_q = q.sample_and_log_prob((5,))
    assert x.shape == (5, 1, 8, 8)
    torch.testing.assert_close(q.log_prob(x), log_q)
