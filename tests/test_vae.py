"""The VAE and its objectives: closed forms, bound ordering, the NLL estimator, seams, errors.

The linear-Gaussian model p(z) = N(0, I), p(x | z) = N(W z + b, s² I) has the marginal
N(b, W Wᵀ + s² I) and the posterior N(Λ⁻¹ Wᵀ (x − b) / s², Λ⁻¹) with Λ = I + Wᵀ W / s².
With orthogonal columns in W, Λ is diagonal: the exact posterior is in the diagonal family,
and a linear encoder can output it exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import (Categorical, Independent, MixtureSameFamily,
                                 MultivariateNormal, Normal, kl_divergence)

from nfcourse import objectives
from nfcourse.flows import MLP
from nfcourse.models import VAE, DiagonalGaussian, GaussianLikelihood, PointMass, StandardNormal

F64 = torch.float64
NOISE = 0.7


def linear_gaussian(exact: bool = True, seed: int = 0, d_x: int = 4, d_z: int = 2):
    """(model, exact marginal p(x), exact posterior (mean fn, var)); float64."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d_x, d_x, generator=g, dtype=F64))
    scales = torch.tensor([2.0, 0.8, 1.3][:d_z], dtype=F64)
    W = q[:, :d_z] * scales                       # orthogonal columns: Wᵀ W diagonal
    b = torch.randn(d_x, generator=g, dtype=F64)
    post_var = 1 / (1 + scales**2 / NOISE**2)     # Λ⁻¹, diagonal
    gain = post_var[:, None] * W.T / NOISE**2     # μ(x) = gain (x − b)
    encoder = nn.Linear(d_x, 2 * d_z).to(F64)
    decoder = nn.Linear(d_z, d_x).to(F64)
    with torch.no_grad():
        decoder.weight.copy_(W)
        decoder.bias.copy_(b)
        enc_w, enc_b = gain.clone(), -gain @ b
        log_var = post_var.log()
        if not exact:  # a plausible but imperfect encoder
            enc_w = 0.8 * enc_w + 0.05 * torch.randn(d_z, d_x, generator=g, dtype=F64)
            enc_b = enc_b + 0.2
            log_var = log_var + 0.4
        encoder.weight.copy_(torch.cat([enc_w, torch.zeros(d_z, d_x, dtype=F64)]))
        encoder.bias.copy_(torch.cat([enc_b, log_var]))
    model = VAE(d_x, d_z, likelihood=GaussianLikelihood(NOISE), encoder=encoder,
                decoder=decoder)
    marginal = MultivariateNormal(b, W @ W.T + NOISE**2 * torch.eye(d_x, dtype=F64))
    return model, marginal, (lambda x: (x - b) @ gain.T, post_var)


def data(marginal, n=50, seed=1):
    torch.manual_seed(seed)
    return marginal.sample((n,))


def tiny_vae(seed=0, x_dim=10, z_dim=3, hidden=16, dtype=torch.float32):
    torch.manual_seed(seed)
    return VAE(x_dim, z_dim, hidden).to(dtype)


def binary(n=64, x_dim=10, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, x_dim), 0.3), generator=g)


# The ELBO in closed form ------------------------------------------------------------------

def test_elbo_equals_log_marginal_when_posterior_is_exact():
    model, marginal, _ = linear_gaussian(exact=True)
    x = data(marginal)
    exact = marginal.log_prob(x)
    g = torch.Generator().manual_seed(0)
    # log w = log p(x, z) − log q(z | x) = log p(x) for *every* z: exact with one sample.
    assert torch.allclose(objectives.elbo(model, x, analytic_kl=False, generator=g), exact,
                          atol=1e-10, rtol=0)
    assert torch.allclose(objectives.iwae(model, x, k=7, generator=g), exact, atol=1e-10, rtol=0)
    # The analytic-KL form agrees up to Monte Carlo error in E_q[log p(x | z)].
    k = 4000
    analytic = objectives.elbo(model, x, k=k, analytic_kl=True, generator=g).detach()
    with torch.no_grad():
        log_px_given_z = model(x, k)[0]
    stderr = log_px_given_z.std(0) / math.sqrt(k)
    assert ((analytic - exact).abs() < 5 * stderr).all()
    assert (analytic - exact).abs().max() > 0  # it is an estimate, not the same code path


def test_elbo_is_log_marginal_minus_kl_to_the_exact_posterior():
    model, marginal, (post_mean, post_var) = linear_gaussian(exact=False)
    x = data(marginal, n=20)
    params = model.encode(x).detach()
    q = model.posterior(params).normal
    posterior = Independent(Normal(post_mean(x), post_var.sqrt().expand(len(x), -1)), 1)
    expected = marginal.log_prob(x) - kl_divergence(q, posterior)
    g = torch.Generator().manual_seed(1)
    k = 20000
    with torch.no_grad():
        log_px_z, log_pz, log_q = model(x, k)
    for analytic, terms in [(True, log_px_z), (False, log_px_z + log_pz - log_q)]:
        est = objectives.elbo(model, x, k=k, analytic_kl=analytic, generator=g).detach()
        stderr = terms.std(0) / math.sqrt(k)
        assert ((est - expected).abs() < 5 * stderr).all(), analytic
        # the tolerance is far tighter than the gap, so returning log p(x) would fail
        assert (5 * stderr < 0.5 * (marginal.log_prob(x) - expected)).all()
    gap = marginal.log_prob(x) - expected
    assert gap.min() > 0.05  # the imperfect encoder leaves a visible gap


def test_analytic_kl_matches_torch_distributions():
    params = torch.randn(6, 8, dtype=F64)
    q = DiagonalGaussian()(params)
    mu, log_var = q.mu, q.log_var
    std_normal = Independent(Normal(torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64)), 1)
    expected = kl_divergence(q.normal, std_normal)
    assert torch.allclose(q.kl(StandardNormal(4).to(F64)), expected)
    assert torch.allclose(q.kl(std_normal), expected)
    assert torch.allclose(objectives.kl_std_normal(mu, log_var), expected)


# Bounds and the NLL estimator -------------------------------------------------------------

def test_bounds_are_ordered_in_expectation():
    model = tiny_vae()
    x = binary()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        reps = 100
        elbo = torch.stack([objectives.elbo(model, x, generator=g) for _ in range(reps)])
        iwae5 = torch.stack([objectives.iwae(model, x, 5, generator=g) for _ in range(reps)])
        iwae50 = torch.stack([objectives.iwae(model, x, 50, generator=g) for _ in range(reps)])
    means = [t.mean().item() for t in (elbo, iwae5, iwae50)]
    stderr = [t.mean(1).std().item() / math.sqrt(reps) for t in (elbo, iwae5, iwae50)]
    assert means[0] + 4 * (stderr[0] + stderr[1]) < means[1]
    assert means[1] + 4 * (stderr[1] + stderr[2]) < means[2]
    # and none exceeds the log-likelihood (estimated with many more samples)
    log_px = objectives.log_marginal_is(model, x, samples=5000, generator=g, progress=False)
    assert means[2] < log_px.mean().item()


def test_iwae_bound_with_one_sample_is_the_mc_elbo():
    model = tiny_vae()
    x = binary()
    log_w = objectives.log_weights(model, x, k=1, generator=torch.Generator().manual_seed(0))
    mc = objectives.elbo(model, x, analytic_kl=False, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(objectives.iwae_bound(log_w), mc)


def test_nll_estimator_matches_the_closed_form():
    model, marginal, _ = linear_gaussian(exact=False, seed=4)
    x = data(marginal, n=30, seed=5)
    exact = marginal.log_prob(x)
    g = torch.Generator().manual_seed(6)
    est = objectives.log_marginal_is(model, x, samples=5000, batch_size=8, chunk_size=333,
                                     generator=g, progress=False)
    assert est.shape == (30,) and est.dtype == F64
    assert (est - exact).abs().max() < 0.05
    elbo = objectives.elbo(model, x, k=2000, generator=g).detach()
    # the proposal q is visibly off (the ELBO is loose), yet the estimator is tight
    assert (exact - elbo).mean() > 4 * (est - exact).abs().mean()


def test_nll_estimator_does_not_depend_on_chunking():
    model = tiny_vae()
    x = binary(n=20)
    a = objectives.log_marginal_is(model, x, samples=3000, chunk_size=3000, batch_size=20,
                                   generator=torch.Generator().manual_seed(0), progress=False)
    b = objectives.log_marginal_is(model, x, samples=3000, chunk_size=7, batch_size=6,
                                   generator=torch.Generator().manual_seed(1), progress=False)
    assert (a - b).abs().max() < 0.05
    assert model.training  # mode restored


def test_nll_estimator_under_a_time_limit_returns_the_first_points():
    """The notebooks' guard: past the limit it stops after a batch, and what it returns is
    the first points' estimates, the same as without a limit."""
    model = tiny_vae()
    x = binary(n=20)
    args = dict(samples=200, batch_size=5, progress=False)
    whole = objectives.log_marginal_is(model, x, generator=torch.Generator().manual_seed(0),
                                       **args)
    cut = objectives.log_marginal_is(model, x, generator=torch.Generator().manual_seed(0),
                                     time_limit=0.0, **args)
    assert cut.shape == (5,)                       # one batch, then the limit
    assert torch.equal(cut, whole[:5])


def test_refined_posterior_finds_the_exact_posterior_and_tightens_the_estimate():
    model, marginal, (post_mean, post_var) = linear_gaussian(exact=False, seed=4)
    x = data(marginal, n=30, seed=5)
    exact = marginal.log_prob(x)
    g = torch.Generator().manual_seed(7)
    lam = objectives.refine_posterior(model, x, steps=400, lr=0.01, k=20, generator=g)
    mu, log_var = model.posterior(lam).mu, model.posterior(lam).log_var
    # the exact posterior is in the family, so λ* is it (up to the noise of the last steps),
    # where the encoder's guess was visibly off
    q_enc = model.q(x)
    mu_enc, log_var_enc = q_enc.mu.detach(), q_enc.log_var.detach()
    error, error_enc = ((m - post_mean(x)).abs() / post_var.sqrt() for m in (mu, mu_enc))
    assert error.max() < 0.2 and error.mean() < error_enc.mean() / 4
    assert (log_var - post_var.log()).abs().max() < 0.15
    assert (log_var_enc - post_var.log()).abs().min() > 0.3
    # and with it as proposal, 10 draws estimate log p(x) almost exactly; the encoder's don't
    plain, refined = (objectives.log_marginal_is(
        model, x, samples=10, generator=torch.Generator().manual_seed(8), progress=False,
        refine_steps=steps, refine_lr=0.01, refine_k=20) for steps in (0, 400))
    assert (refined - exact).abs().mean() < 0.03 and (refined - exact).abs().max() < 0.1
    assert (plain - exact).abs().mean() > 5 * (refined - exact).abs().mean()


def test_refining_raises_the_elbo_and_leaves_the_model_alone():
    model = tiny_vae()
    model.train()
    x = binary(n=40)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lam = objectives.refine_posterior(model, x, steps=100,
                                      generator=torch.Generator().manual_seed(0))
    assert lam.shape == (40, 6) and not lam.requires_grad
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        enc = model.encode(x)
        g = torch.Generator().manual_seed(1)
        # many draws: the expectation, not the noise
        gain = (objectives.log_weights(model, x, 4000, g, params=lam).mean(0)
                - objectives.log_weights(model, x, 4000, g, params=enc).mean(0))
    # an untrained decoder: the posterior is near the prior and the gain small, but real
    # (each ELBO here is within ~0.02 of its expectation)
    assert gain.mean() > 0.05 and (gain > -0.05).all()
    # zero steps: the encoder's parameters themselves
    assert torch.equal(objectives.refine_posterior(model, x, steps=0), enc)


@pytest.mark.parametrize("bad", [dict(steps=-1), dict(lr=0.0), dict(k=0)])
def test_refining_with_bad_settings_gets_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"refining the posterior needs steps >= 0, lr > 0"):
        objectives.refine_posterior(tiny_vae(), binary(n=4), **bad)


# The seams ----------------------------------------------------------------------------------

def test_diagonal_gaussian_log_prob_and_gradients():
    params = torch.randn(5, 6, requires_grad=True)
    q = DiagonalGaussian()(params)
    z, log_q = q.rsample_and_log_prob(k=3)
    assert z.shape == (3, 5, 3) and log_q.shape == (3, 5)
    assert torch.allclose(log_q, q.log_prob(z), atol=1e-5)
    z.sum().backward()
    assert params.grad is not None and params.grad.abs().sum() > 0


def test_mixture_prior_plugs_in_with_a_monte_carlo_kl():
    torch.manual_seed(0)
    d = 3
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(4)),
                                Independent(Normal(torch.randn(4, d), torch.ones(4, d)), 1))
    model = VAE(10, d, 16, prior=mixture)
    x = binary()
    bound = objectives.elbo(model, x)  # no closed-form KL: falls back to Monte Carlo
    assert bound.shape == (64,) and torch.isfinite(bound).all()
    with pytest.raises(NotImplementedError):
        objectives.elbo(model, x, analytic_kl=True)
    assert model.sample(5).shape == (5, 10)


def test_torch_standard_normal_prior_gives_the_same_bound():
    model = tiny_vae()
    x = binary()
    torch_prior = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    other = VAE(10, 3, 16, prior=torch_prior)
    other.load_state_dict(model.state_dict())
    a = objectives.elbo(model, x, generator=torch.Generator().manual_seed(0))
    b = objectives.elbo(other, x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-5)


def test_point_mass_posterior_is_an_autoencoder():
    torch.manual_seed(0)
    model = VAE(10, 3, 16, posterior=PointMass())
    x = binary()
    params = model.encode(x)
    z, log_q = model.posterior(params).rsample_and_log_prob(k=2)
    assert torch.equal(z[0], params) and torch.equal(z[1], params) and (log_q == 0).all()
    rec = objectives.reconstruction(model, x)
    assert torch.allclose(rec, objectives.bernoulli_log_likelihood(x, model.decode(params)))
    with pytest.raises(NotImplementedError):
        objectives.elbo(model, x, analytic_kl=True)


def test_bernoulli_log_likelihood_matches_bce():
    x = binary(n=8)
    logits = 4 * torch.randn(8, 10)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    assert torch.allclose(objectives.bernoulli_log_likelihood(x, logits), -bce, atol=1e-5)


def test_float64_and_shapes():
    model = tiny_vae(dtype=F64)
    x = binary(n=7)  # float32 data are cast to the model's dtype
    assert objectives.elbo(model, x).dtype == F64
    assert objectives.iwae(model, x, 4).shape == (7,)
    assert model.reconstruct(x).shape == (7, 10)
    s = model.sample(4)
    assert s.shape == (4, 10) and (s >= 0).all() and (s <= 1).all()
    images = binary(n=3, x_dim=784)
    big = VAE()
    assert objectives.elbo(big, images.view(3, 28, 28)).shape == (3,)
    assert objectives.elbo(big, images.view(3, 1, 28, 28)).shape == (3,)


# Bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("x, message", [
    (torch.rand(4, 9), r"batch of shape \[B, 10\].*got \[4, 9\]"),
    (torch.rand(10), r"one image of shape \[10\]; use x\[None\]"),
    (torch.rand(4, 2, 5, 3), r"got \[4, 2, 5, 3\]"),
    (255 * binary(n=4), r"data in \[0, 1\], got values in \[0, 255\].*1/255"),
    (binary(n=4) - 1, r"data in \[0, 1\], got values in \[-1, 0\]"),
    (torch.full((2, 10), float("nan")), r"NaN"),
])
def test_bad_input_gets_a_clear_error(x, message):
    model = tiny_vae()
    with pytest.raises(ValueError, match=message):
        objectives.elbo(model, x)


def test_non_tensor_input_gets_a_clear_error():
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        tiny_vae().encode([[0.0] * 10])


def test_gated_mlp_layers_are_gated_linear_units():
    net = MLP(6, 2, [4, 3], activation="gated", zero_last=False)
    shapes = [tuple(m.weight.shape) for m in net if isinstance(m, nn.Linear)]
    assert shapes == [(8, 6), (6, 4), (2, 3)]  # each hidden layer: 2h outputs, halved by GLU
    x = torch.randn(5, 6)
    first = net[0](x)
    torch.testing.assert_close(net[1](first), first[:, :4] * torch.sigmoid(first[:, 4:]))
    assert net(x).shape == (5, 2)
    vae = VAE(12, 2, [8, 8], activation="gated")
    assert objectives.elbo(vae, torch.bernoulli(torch.full((3, 12), 0.5))).shape == (3,)
    with pytest.raises(ValueError, match=r"activation='swish' is not one of .*'gated'"):
        MLP(6, 2, 4, activation="swish")


def test_maxout_mlp_layers_take_the_largest_of_four_pieces():
    """R&M's units: h_j = max of a_{4j}, ..., a_{4j+3}; gradients reach only the winner."""
    net = MLP(6, 2, [5, 3], activation="maxout", zero_last=False)
    shapes = [tuple(m.weight.shape) for m in net if isinstance(m, nn.Linear)]
    assert shapes == [(20, 6), (12, 5), (2, 3)]  # each hidden layer: 4h pieces, h units
    x = torch.randn(7, 6)
    pieces = net[0](x)
    expected = torch.stack([pieces[:, 4 * j:4 * j + 4].max(-1).values for j in range(5)], -1)
    torch.testing.assert_close(net[1](pieces), expected)
    a = torch.randn(3, 8, requires_grad=True)
    net[1](a).sum().backward()
    assert (a.grad.view(3, 2, 4).sum(-1) == 1).all() and (a.grad >= 0).all()
    vae = VAE(12, 2, [8], activation="maxout")
    assert objectives.elbo(vae, torch.bernoulli(torch.full((3, 12), 0.5))).shape == (3,)


def test_encoder_can_have_its_own_sizes():
    vae = VAE(12, 2, [8], encoder_hidden=[16, 5])
    sizes = lambda net: [tuple(m.weight.shape) for m in net if isinstance(m, nn.Linear)]
    assert sizes(vae.encoder) == [(16, 12), (5, 16), (4, 5)]   # λ = (μ, log σ²): 2 × 2
    assert sizes(vae.decoder) == [(8, 2), (12, 8)]
    assert sizes(VAE(12, 2, [8]).encoder) == [(8, 12), (4, 8)]   # default: the decoder's
    assert objectives.elbo(vae, torch.bernoulli(torch.full((3, 12), 0.5))).shape == (3,)
    with pytest.raises(ValueError, match="either encoder= .* or encoder_hidden="):
        VAE(12, 2, 8, encoder=nn.Linear(12, 4), encoder_hidden=[16])


def test_dropout_acts_in_training_mode_only():
    net = MLP(6, 2, [32, 32], dropout=0.5, zero_last=False)
    assert sum(isinstance(m, nn.Dropout) for m in net) == 2
    x = torch.randn(4, 6)
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))
    assert not any(isinstance(m, nn.Dropout) for m in MLP(6, 2, [32, 32]))
    with pytest.raises(ValueError, match=r"dropout=1.0 must be in \[0, 1\)"):
        MLP(6, 2, 4, dropout=1.0)


def test_refinement_can_start_anywhere_and_the_estimator_can_take_any_proposal():
    model, x = tiny_vae(), binary(n=6)
    init = model.encode(x).detach() + 0.3
    assert torch.equal(objectives.refine_posterior(model, x, steps=0, init=init), init)
    refined = objectives.refine_posterior(model, x, steps=30, init=init,
                                          generator=torch.Generator().manual_seed(0))
    assert not torch.equal(refined, init)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    default = objectives.log_marginal_is(model, x, samples=50, generator=g(), progress=False)
    given = objectives.log_marginal_is(model, x, samples=50, generator=g(), progress=False,
                                       params=model.encode(x).detach())
    assert torch.equal(default, given)
    other = objectives.log_marginal_is(model, x, samples=50, generator=g(), progress=False,
                                       params=init)
    assert not torch.equal(default, other)


def test_elbo_of_parts_is_the_training_elbo_and_trains_on_the_students_functions():
    """Section 4 trains on the student's reparameterisation and ELBO: assembled from the
    reference parts it is exactly objectives.elbo (same noise), and fit runs on it."""
    from nfcourse.train import TrainConfig, fit
    model = tiny_vae()
    x = binary(n=40)
    parts = objectives.elbo_of_parts()(model, x, 1.0, torch.Generator().manual_seed(0))
    whole = objectives.elbo(model, x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(parts, whole, atol=1e-6)
    calls = []

    def own_elbo(x, x_logits, mu, log_var):
        calls.append(1)
        return objectives.elbo_closed_form(x, x_logits, mu, log_var)
    h = fit(model, objectives.elbo_of_parts(elbo_fn=own_elbo), x, None,
            TrainConfig(epochs=2, batch_size=20, progress=False))
    assert len(calls) == 4 and h.train_loss[-1] < h.train_loss[0] + 5
    with pytest.raises(ValueError, match="no annealing"):
        objectives.elbo_of_parts()(model, x, 0.5, None)
