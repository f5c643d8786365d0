"""R&M's flow posterior in the VAE: log q by the change of variables against autograd,
reproducibility with generators, exact resume, and K = 0 as the diagonal Gaussian."""

from __future__ import annotations

from dataclasses import replace
import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from nfcourse import flows as nf
from nfcourse import objectives
from nfcourse.closed_forms import diag_normal_log_prob
from nfcourse.models import VAE, DiagonalGaussian, FlowPosterior, make_posterior
from nfcourse.objectives import Bound
from nfcourse.train import TrainConfig, fit

D = 3       # latent dimension
F64 = torch.float64

# Every kind of flow a posterior can hold: amortized (parameters from the encoder), IAF
# (context from the encoder), and global (own parameters: R&M's NICE posterior).
FLOWS = {
    "planar": lambda: nf.Planar(D, length=3, amortized=True),
    "radial": lambda: nf.Flow([nf.Radial(D, amortized=True) for _ in range(2)]),
    "sylvester_orthogonal": lambda: nf.OrthogonalSylvester(D, m=2, amortized=True),
    "sylvester_householder": lambda: nf.HouseholderSylvester(D, n_reflections=2, amortized=True),
    "sylvester_triangular": lambda: nf.Flow([nf.TriangularSylvester(D, amortized=True),
                                             nf.TriangularSylvester(D, flip=True,
                                                                    amortized=True)]),
    "iaf": lambda: nf.Flow([nf.IAF(D, hidden=(8,), context_dim=4), nf.ReversePermutation(D),
                            nf.IAF(D, hidden=(8,), context_dim=4)]),
    "nice": lambda: nf.Flow([nf.AdditiveCoupling(nf.half_mask(D, first=i % 2 == 0),
                                                 hidden=(8,)) for i in range(4)]
                            + [nf.DiagonalScaling(D)]),
}


def randomised(module: nn.Module, scale=0.5, seed=0) -> nn.Module:
    """Random parameters everywhere: zero-initialised layers would make the flow the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


@pytest.mark.parametrize("name", list(FLOWS))
def test_log_q_is_the_change_of_variables(name):
    """log q(z_K | x) = log q0(z0) − log|det ∂z_K/∂z0|, the Jacobian by autograd (float64)."""
    flow = randomised(FLOWS[name]()).to(F64)
    q = FlowPosterior(flow)
    batch, k = 4, 3
    params = torch.randn(batch, q.param_dim(D), generator=torch.Generator().manual_seed(1),
                         dtype=F64)
    z, log_q = q(params).rsample_and_log_prob(k, generator=torch.Generator().manual_seed(2))
    assert z.shape == (k, batch, D) and log_q.shape == (k, batch)

    mu, log_var = params[:, :D], params[:, D:2 * D]
    eps = torch.randn((k, batch, D), generator=torch.Generator().manual_seed(2), dtype=F64)
    z0 = mu + torch.exp(0.5 * log_var) * eps
    kwargs = q(params).flow.kwargs

    def push(z0_one, kw_one):       # one point: z0 [D] -> z_K [D]
        return flow(z0_one[None], **{key: v[None] for key, v in kw_one.items()})[0][0]

    for s in range(k):
        torch.testing.assert_close(z[s], vmap(push)(z0[s], kwargs), rtol=0, atol=1e-12)
        jac = vmap(jacrev(push))(z0[s], kwargs)                     # [B, D, D]
        expected = diag_normal_log_prob(eps[s], log_var) - torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(log_q[s], expected, rtol=1e-10, atol=1e-10)
    assert (log_q - diag_normal_log_prob(eps, log_var)).abs().max() > 1e-3  # the flow acts


@pytest.mark.parametrize("name", list(FLOWS))
def test_param_dim_accounts_for_everything(name):
    """VAE(posterior=FlowPosterior(...)) needs nothing else: the encoder's width follows."""
    torch.manual_seed(0)
    flow = FLOWS[name]()
    vae = VAE(10, D, 16, posterior=FlowPosterior(flow))
    expected = 2 * D + flow.param_dim + flow.context_dim
    assert vae.encoder[-1].out_features == expected
    x = torch.bernoulli(torch.full((5, 10), 0.5))
    bound = objectives.elbo(vae, x, k=2)
    assert bound.shape == (5,) and torch.isfinite(bound).all()
    bound.sum().backward()
    assert all(p.grad is not None for p in vae.encoder.parameters())


def test_no_inverse_on_the_vi_path():
    """The ELBO of a flow posterior never calls an inverse (IAF's is D passes, Planar's is
    numerical)."""
    torch.manual_seed(0)
    flow = nf.Flow([nf.Planar(D, amortized=True), nf.IAF(D, hidden=(8,), context_dim=2)])
    for layer in flow.layers:
        layer.inverse = lambda *a, **k: pytest.fail("an inverse was called on the VI path")
    vae = VAE(10, D, 16, posterior=FlowPosterior(flow))
    objectives.elbo(vae, torch.bernoulli(torch.full((4, 10), 0.5)), k=3).sum().backward()


def test_a_flow_for_the_wrong_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match=r"flow acts on 4 features and z_dim=3"):
        VAE(10, 3, 16, posterior=FlowPosterior(nf.Planar(4, amortized=True)))


def test_zero_length_flow_posterior_is_exactly_the_diagonal_gaussian():
    torch.manual_seed(0)
    gaussian = VAE(10, D, 16)
    torch.manual_seed(0)
    flow_k0 = VAE(10, D, 16, posterior=FlowPosterior(None))
    assert all(torch.equal(a, b) for a, b in zip(gaussian.state_dict().values(),
                                                 flow_k0.state_dict().values()))
    x = torch.bernoulli(torch.full((8, 10), 0.4), generator=torch.Generator().manual_seed(3))
    for analytic in (None, False):   # closed-form KL (declared for K = 0) and Monte Carlo
        a = objectives.elbo(gaussian, x, k=2, analytic_kl=analytic,
                            generator=torch.Generator().manual_seed(5))
        b = objectives.elbo(flow_k0, x, k=2, analytic_kl=analytic,
                            generator=torch.Generator().manual_seed(5))
        assert torch.equal(a, b), analytic
    assert flow_k0.posterior.has_analytic_kl(flow_k0.prior)
    assert not FlowPosterior(nf.Planar(D, amortized=True)).has_analytic_kl(flow_k0.prior)
    with pytest.raises(NotImplementedError, match="no closed-form KL"):
        objectives.elbo(VAE(10, D, 16, posterior=FlowPosterior(nf.Planar(D, amortized=True))),
                        x, analytic_kl=True)


def planar_vae(seed=0):
    torch.manual_seed(seed)
    return VAE(12, 2, 16, posterior=FlowPosterior(nf.Planar(2, length=4, amortized=True)))


def binary_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((2, 12), 0.5), generator=torch.Generator().manual_seed(0))
    return (protos[torch.randint(0, 2, (n,), generator=g)]
            + torch.bernoulli(torch.full((n, 12), 0.1), generator=g)) % 2


def test_planar_posterior_elbo_is_bit_identical_with_a_seed():
    vae, x = planar_vae(), binary_data(16, 1)
    a = objectives.elbo(vae, x, k=3, generator=torch.Generator().manual_seed(0))
    b = objectives.elbo(vae, x, k=3, generator=torch.Generator().manual_seed(0))
    c = objectives.elbo(vae, x, k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_planar_posterior_training_resumes_exactly(tmp_path):
    train, valid = binary_data(160, 1), binary_data(40, 2)
    elbo = Bound("elbo", anneal=20)
    config = TrainConfig(epochs=4, batch_size=32, lr=3e-3, ema=0.9, seed=3, progress=False)
    whole = planar_vae()
    h_whole = fit(whole, elbo, train, valid, config)
    fit(planar_vae(), elbo, train, valid, replace(config, checkpoint_dir=tmp_path, epochs=2))
    resumed = planar_vae(seed=99)   # different initial parameters: all comes from last.pt
    h_resumed = fit(resumed, elbo, train, valid,
                    replace(config, checkpoint_dir=tmp_path, resume=True))
    assert h_resumed.valid_bound == h_whole.valid_bound
    assert h_resumed.train_loss == h_whole.train_loss
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(),
                                                 resumed.state_dict().values()))
    again = fit(planar_vae(), elbo, train, valid, config)    # and the run is reproducible
    assert again.valid_bound == h_whole.valid_bound


def test_flow_posterior_mean_is_the_flow_of_the_base_mean():
    flow = randomised(nf.Planar(D, length=2, amortized=True))
    q = FlowPosterior(flow)
    params = torch.randn(5, q.param_dim(D))
    expected = flow(params[:, :D], params=params[:, 2 * D:])[0]
    torch.testing.assert_close(q(params).mean, expected)
    assert torch.equal(FlowPosterior(None)(params[:, :2 * D]).mean,
                       DiagonalGaussian()(params[:, :2 * D]).mean)


def test_the_fast_paths_train_as_the_plain_ones_to_float_tolerance(monkeypatch):
    """fit's fused Adam and Planar's hand-written backward change no result beyond rounding:
    the same run with torch's plain Adam and autograd through the planar layers agrees."""
    from nfcourse.flows import planar

    train, valid = binary_data(160, 1), binary_data(40, 2)
    elbo = Bound("elbo", anneal=20)
    config = TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=3, progress=False)
    fast = planar_vae()
    h_fast = fit(fast, elbo, train, valid, config)

    plain_adam = torch.optim.Adam

    def unfused(params, lr, fused=None, **options):
        return plain_adam(params, lr=lr, fused=False, **options)

    monkeypatch.setattr(torch.optim, "Adam", unfused)
    monkeypatch.setattr(planar._PlanarChain, "apply", lambda *v: planar._chain(*v))
    slow = planar_vae()
    h_slow = fit(slow, elbo, train, valid, config)
    torch.testing.assert_close(h_fast.valid_bound, h_slow.valid_bound, rtol=1e-5, atol=1e-4)
    for a, b in zip(fast.state_dict().values(), slow.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(FLOWS))
def test_from_gaussian_starts_the_flow_where_the_gaussian_is(name):
    q = FlowPosterior(FLOWS[name]())
    base = torch.randn(6, 2 * D, generator=torch.Generator().manual_seed(1))
    lam = q.from_gaussian(base, generator=torch.Generator().manual_seed(2))
    assert lam.shape == (6, q.param_dim(D)) and torch.equal(lam[:, :2 * D], base)
    assert torch.equal(lam[:, 2 * D + q.flow.param_dim:], torch.zeros(6, q.flow.context_dim))
    if q.flow.param_dim:  # amortized layers: the flow is near the identity, so q is the Gaussian
        z, log_q = q(lam).rsample_and_log_prob(k=4, generator=torch.Generator().manual_seed(3))
        z0, log_q0 = DiagonalGaussian()(base).rsample_and_log_prob(
            k=4, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(z, z0, atol=0.05) and torch.allclose(log_q, log_q0, atol=0.05)
        assert not torch.equal(z, z0)  # near the identity, not at it (a saddle for planar)


def test_an_nf_vae_can_start_as_the_gaussian_vae():
    torch.manual_seed(0)
    model = VAE(20, D, 16, posterior=FlowPosterior(nf.Planar(D, length=5, amortized=True)))
    x = torch.bernoulli(torch.full((8, 20), 0.5))

    def flow_vs_base(m):
        lam = m.encode(x)
        q = m.posterior(lam)
        z, log_q = q.rsample_and_log_prob(3, torch.Generator().manual_seed(1))
        z0, log_q0 = q.base.rsample_and_log_prob(3, torch.Generator().manual_seed(1))
        return (z - z0).abs().max(), (log_q - log_q0).abs().max()

    assert min(flow_vs_base(model)) > 0.1        # the default start: a random flow per x
    model.start_flow_near_identity(generator=torch.Generator().manual_seed(0))
    dz, dlog_q = flow_vs_base(model)
    assert dz < 0.05 and dlog_q < 0.05 and dz > 0  # near the identity, not at its saddle
    with pytest.raises(ValueError, match="amortized flow posterior"):
        VAE(20, D, 16).start_flow_near_identity()


def test_nice_starts_at_the_identity_and_so_needs_no_identity_start():
    """`--flow-init identity` holds for every flow posterior: NICE's couplings start at the
    identity, so it is left as it is; once it has moved, it is refused, not reset."""
    torch.manual_seed(0)
    model = VAE(20, D, 16, posterior=make_posterior("nice", D, 4, hidden=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.start_flow_near_identity()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with torch.no_grad():
        model.posterior.flow.layers[0].net[-1].bias.add_(0.1)       # a trained NICE
    with pytest.raises(ValueError, match="no flow at the identity"):
        model.start_flow_near_identity()


def test_a_checkpoint_from_before_the_flow_distribution_still_loads():
    """state_dicts written when FlowPosterior held its flow as ``posterior.flow`` (NICE's and
    IAF's own parameters) load into today's ``posterior.distribution.flow``."""
    torch.manual_seed(0)
    model = VAE(20, D, 16, posterior=make_posterior("nice", D, 2, hidden=8))
    old = {k.replace("posterior.distribution.flow.", "posterior.flow."): v
           for k, v in model.state_dict().items()}
    assert any(k.startswith("posterior.flow.") for k in old)
    torch.manual_seed(1)
    fresh = VAE(20, D, 16, posterior=make_posterior("nice", D, 2, hidden=8))
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 fresh.state_dict().values()))


def test_a_wrong_width_of_lambda_is_named():
    q = FlowPosterior(nf.Planar(D, length=2, amortized=True))
    with pytest.raises(ValueError, match=rf"reads λ of width {q.param_dim(D)}, got \(5, 7\)"):
        q(torch.zeros(5, 7))
    with pytest.raises(ValueError, match=r"reads λ of width 6, got \(5, 7\)"):
        DiagonalGaussian()(torch.zeros(5, 7))
