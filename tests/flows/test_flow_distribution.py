"""FlowDistribution, the composite Flow and the torch.distributions adapter."""

from __future__ import annotations

from functools import partial

import math

import flowcases
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, TransformedDistribution

from nfcourse import flows as nf

# one_thread (tests/conftest.py): the grid test's mid-sized elementwise ops would otherwise
# run on torch's thread pool, which stalls on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("float64", "one_thread")
randomise = partial(flowcases.randomise, scale=0.7)


FLOWS_2D = {
    "planar+radial": lambda: nf.Flow([nf.Planar(2, length=3), nf.Radial(2), nf.Planar(2)]),
    "realnvp": lambda: nf.Flow([nf.AffineCoupling(nf.half_mask(2, first=i % 2 == 0), hidden=(16,))
                                for i in range(4)]),
    "maf": lambda: nf.Flow([nf.MAF(2, hidden=(16,), reverse=i % 2 == 1) for i in range(3)]),
    "iaf": lambda: nf.Flow([nf.IAF(2, hidden=(16,)), nf.ReversePermutation(2), nf.IAF(2, hidden=(16,))]),
}


@pytest.mark.parametrize("name", list(FLOWS_2D))
def test_vi_path_agrees_with_the_density_path(name):
    q = nf.FlowDistribution(randomise(FLOWS_2D[name](), scale=0.5))
    x, log_q = q.sample_and_log_prob((64,))
    torch.testing.assert_close(q.log_prob(x), log_q, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["planar+radial", "realnvp"])
def test_density_integrates_to_one(name):
    """log_prob at every point of a grid (not only at samples) is a normalised density."""
    q = nf.FlowDistribution(randomise(FLOWS_2D[name](), scale=0.3))
    ticks = torch.linspace(-12, 12, 201)
    grid = torch.cartesian_prod(ticks, ticks)
    with torch.no_grad():
        density = q.log_prob(grid).exp()
    mass = density.sum() * (ticks[1] - ticks[0]) ** 2
    assert abs(float(mass) - 1) < 1e-3


def test_rsample_carries_gradients_and_sample_does_not():
    q = nf.FlowDistribution(randomise(nf.Flow([nf.Planar(2, length=2)])))
    x = q.rsample((10,))
    x.sum().backward()
    assert q.flow[0].u.grad is not None and q.flow[0].u.grad.abs().sum() > 0
    assert not q.sample((10,)).requires_grad


def test_amortized_vi_with_a_per_sample_base_and_params():
    """The VAE posterior of R&M §4: the encoder gives mu, sigma and the flow parameters."""
    batch, samples, dim = 4, 3, 2
    flow = nf.Flow([nf.Planar(dim, length=2, amortized=True), nf.Radial(dim, amortized=True)])
    q = nf.FlowDistribution(flow)
    mu, sigma = torch.randn(batch, dim), torch.rand(batch, dim) + 0.5
    params = torch.randn(batch, flow.param_dim)
    base = Independent(Normal(mu, sigma), 1)
    z, log_q = q.sample_and_log_prob((samples,), params=params, base=base)
    assert z.shape == (samples, batch, dim) and log_q.shape == (samples, batch)
    torch.testing.assert_close(q.log_prob(z, params=params, base=base), log_q)
    # each data point's posterior uses its own parameters
    i = 2
    zi, ld = flow.inverse(z[:, i], params=params[i].expand(samples, -1))
    torch.testing.assert_close(base.log_prob(zi[:, None].expand(-1, batch, -1))[:, i] + ld, log_q[:, i])


def test_conditional_flow_with_context():
    q = nf.FlowDistribution(randomise(nf.Flow([nf.MAF(2, hidden=(8,), context_dim=3),
                                               nf.AffineCoupling(nf.half_mask(2), hidden=(8,),
                                                                 context_dim=3)])))
    c = torch.randn(5, 3)
    x, log_q = q.sample_and_log_prob((5,), context=c)
    torch.testing.assert_close(q.log_prob(x, context=c), log_q)
    assert not torch.allclose(q.log_prob(x, context=c + 1), log_q)
    with pytest.raises(ValueError, match="context"):
        q.log_prob(x)


def test_lu_linear_flow_is_the_gaussian_torch_knows():
    layer = randomise(nf.LULinear(3), scale=0.5)
    q = nf.FlowDistribution(layer)
    w, b = layer.lu.weight(), layer.bias
    gaussian = MultivariateNormal(b, covariance_matrix=w @ w.T)
    x = torch.randn(20, 3)
    torch.testing.assert_close(q.log_prob(x), gaussian.log_prob(x))


def test_torch_transform_adapter():
    flow = randomise(nf.Flow([nf.Planar(2, length=2), nf.AffineCoupling(nf.half_mask(2), hidden=(8,))]))
    base = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    q_torch = TransformedDistribution(base, [nf.BijectionTransform(flow)])
    q_ours = nf.FlowDistribution(flow)
    x = 3 * torch.randn(7, 2)                          # any points: goes through the inverse
    torch.testing.assert_close(q_torch.log_prob(x), q_ours.log_prob(x))
    y = q_torch.rsample((5,))                          # its samples: scored from the cache
    torch.testing.assert_close(q_torch.log_prob(y), q_ours.log_prob(y))


def test_flow_routes_params_and_refuses_wrong_ones():
    flow = nf.Flow([nf.Planar(2, amortized=True), nf.ReversePermutation(2), nf.Radial(2, amortized=True)])
    assert flow.param_dim == 5 + 4
    z = torch.randn(3, 2)
    params = torch.randn(3, 9)
    y, ld = flow(z, params=params)
    y1, ld1 = flow[0](z, params=params[:, :5])
    y2, _ = flow[1](y1)
    y3, ld3 = flow[2](y2, params=params[:, 5:])
    torch.testing.assert_close(y, y3)
    torch.testing.assert_close(ld, ld1 + ld3)
    with pytest.raises(ValueError, match="params"):
        flow(z)
    with pytest.raises(ValueError, match=r"\[\.\.\., 9\]"):
        flow(z, params=torch.randn(3, 8))
    with pytest.raises(ValueError, match="no amortized layers"):
        nf.Flow([nf.Planar(2)])(z, params=params)
    with pytest.raises(ValueError, match="owns its parameters"):
        nf.Planar(2)(z, params=params[:, :5])


def test_default_base_follows_device_and_dtype():
    q = nf.FlowDistribution(nf.Planar(3)).float()
    with torch.no_grad():
        x, log_q = q.sample_and_log_prob((4,))
    assert x.dtype == log_q.dtype == torch.float32
    assert math.isfinite(log_q.sum().item())
