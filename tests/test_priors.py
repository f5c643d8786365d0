"""The VAE's priors: the mixture of Gaussians and the flow prior, with generators."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from nfcourse import flows as nf
from nfcourse import objectives
from nfcourse.models import VAE, DistributionPrior, FlowPrior, MixturePrior, StandardNormal
from nfcourse.train import TrainConfig, evaluate, fit


def realnvp_prior(dim=2, layers=4, seed=0, scale=0.15):
    torch.manual_seed(seed)
    flow = nf.Flow([nf.AffineCoupling(nf.half_mask(dim, first=i % 2 == 0), hidden=(16,))
                    for i in range(layers)])
    with torch.no_grad():   # not the identity: random conditioners (larger scales give
        for p in flow.parameters():  # tails too heavy for a grid to hold)
            p.copy_(scale * torch.randn_like(p))
    return FlowPrior(flow)


def test_mixture_prior_is_the_mixture_density():
    torch.manual_seed(0)
    prior = MixturePrior(3, components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4))
        prior.log_vars.copy_(0.5 * torch.randn(4, 3))
    reference = MixtureSameFamily(
        Categorical(logits=prior.logits),
        Independent(Normal(prior.means, torch.exp(0.5 * prior.log_vars)), 1))
    z = 2 * torch.randn(2, 7, 3)
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z), rtol=1e-5, atol=1e-5)


def test_mixture_prior_samples_follow_the_mixture():
    torch.manual_seed(0)
    prior = MixturePrior(2, components=3)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, 2.0]))
        prior.means.copy_(torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]))
    z = prior.sample((20_000,), generator=torch.Generator().manual_seed(1))
    weights = torch.softmax(prior.logits, 0)
    expected_mean = (weights[:, None] * prior.means).sum(0)
    # std of each coordinate is at most ~4, so 20 000 draws pin the mean to ~0.03
    torch.testing.assert_close(z.mean(0), expected_mean.detach(), rtol=0, atol=0.1)
    # the heaviest component (mean (4, 0)) gets its share, softmax([0, 1, 2])[2] = 0.665
    assert abs((z[:, 0] > 2).float().mean().item() - weights[2].item()) < 0.02


def test_flow_prior_density_is_normalised():
    prior = realnvp_prior()
    ticks = torch.linspace(-12, 12, 481)
    grid = torch.cartesian_prod(ticks, ticks)
    with torch.no_grad():
        log_p = prior.log_prob(grid)
    mass = log_p.exp().sum() * (ticks[1] - ticks[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3
    # and it is not the standard normal it started from (which would pass trivially)
    near = grid.norm(dim=1) < 3
    assert (log_p - StandardNormal(2).log_prob(grid))[near].abs().max() > 1.0


def test_flow_prior_refuses_an_amortized_flow():
    with pytest.raises(ValueError, match="a prior has no per-sample parameters"):
        FlowPrior(nf.Planar(2, amortized=True))


@pytest.mark.parametrize("make_prior", [
    lambda d: StandardNormal(d), lambda d: MixturePrior(d, 5),
    lambda d: realnvp_prior(d, seed=1),
    lambda d: Independent(Normal(torch.zeros(d), torch.ones(d)), 1)],
    ids=["standard_normal", "mixture", "flow", "torch_normal"])
def test_vae_samples_are_reproducible_with_a_generator(make_prior):
    torch.manual_seed(0)
    vae = VAE(12, 4, 16, prior=make_prior(4))
    a = vae.sample(6, mean=False, generator=torch.Generator().manual_seed(3))
    b = vae.sample(6, mean=False, generator=torch.Generator().manual_seed(3))
    c = vae.sample(6, mean=False, generator=torch.Generator().manual_seed(4))
    assert a.shape == (6, 12) and torch.equal(a, b) and not torch.equal(a, c)


def test_a_torch_prior_without_a_generator_path_says_so():
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(3)),
                                Independent(Normal(torch.randn(3, 2), torch.ones(3, 2)), 1))
    prior = DistributionPrior(mixture)
    assert prior.sample((4,)).shape == (4, 2)
    with pytest.raises(ValueError, match="MixtureSameFamily base draws from the global generator"):
        prior.sample((4,), generator=torch.Generator().manual_seed(0))


def test_wrong_prior_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="prior is over 3 dimensions and z_dim=2"):
        VAE(12, 2, 16, prior=MixturePrior(3))


def binary_data(n, seed):
    protos = torch.bernoulli(torch.full((3, 12), 0.5), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    return (protos[torch.randint(0, 3, (n,), generator=g)]
            + torch.bernoulli(torch.full((n, 12), 0.05), generator=g)) % 2


@pytest.mark.parametrize("make_prior", [lambda: MixturePrior(2, 4), lambda: realnvp_prior(2)],
                         ids=["mixture", "flow"])
def test_learned_priors_train_a_vae_with_a_monte_carlo_kl(make_prior):
    torch.manual_seed(0)
    prior = make_prior()
    vae = VAE(12, 2, 16, prior=prior)
    assert not vae.posterior.has_analytic_kl(vae.prior)   # so the ELBO is Monte Carlo
    with pytest.raises(NotImplementedError):
        objectives.elbo(vae, binary_data(4, 1), analytic_kl=True)
    train, valid = binary_data(300, 1), binary_data(100, 2)
    before_prior = [p.detach().clone() for p in prior.parameters()]
    before = evaluate(vae, valid)
    history = fit(vae, "elbo", train, valid,
                  TrainConfig(epochs=6, batch_size=32, lr=1e-2, progress=False))
    assert evaluate(vae, valid) > before + 2.0
    assert history.train_loss[-1] < history.train_loss[0]
    moved = max((p - q).abs().max().item() for p, q in zip(prior.parameters(), before_prior))
    assert moved > 1e-2   # the prior's own parameters were trained with the VAE
    assert math.isfinite(history.best_valid)
