"""The objectives of Sections 5 and 6 through the one training loop: maximum likelihood of a
density flow (with dequantization, nats and bits per dimension) and the free energy of a
flow fitted to an unnormalised energy."""

from __future__ import annotations

import math

import pytest
import torch

from nfcourse import flows as nf
from nfcourse.data import DIGITS_LEVELS, load_digits, sample_toy
from nfcourse.objectives.density import MaximumLikelihood, bits_per_dim, dequantize, discrete_nll
from nfcourse.objectives.free_energy import FreeEnergy, free_energy
from nfcourse.objectives import anneal_beta
from nfcourse.train import TrainConfig, evaluate, fit, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


# Dequantization, nats and bits ------------------------------------------------------------

def test_dequantized_data_fill_each_cell_of_the_grid():
    x = torch.randint(0, 5, (2000, 3)).float()
    y = dequantize(x, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(5 * y), x)            # each y stays in its own cell
    frac = 5 * y - x
    assert abs(frac.mean().item() - 0.5) < 0.02 and frac.min() >= 0 and frac.max() < 1
    a = dequantize(x, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, dequantize(x, 5, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("bad, message", [
    (torch.tensor([[0.5, 1.0]]), "not all integers"), (torch.tensor([[0.0, 5.0]]), r"\[0, 4\]"),
    (torch.tensor([[-1.0, 0.0]]), r"\[-1, 0\]")])
def test_dequantize_names_bad_data(bad, message):
    with pytest.raises(ValueError, match=message):
        dequantize(bad, 5)


def test_nats_to_bits_per_dim():
    # the uniform density on [0, 1)^D has log q = 0: its discrete NLL is D log k nats,
    # i.e. exactly log2 k bits per dimension
    nll = discrete_nll(torch.zeros(3), dims=64, levels=17)
    torch.testing.assert_close(nll, torch.full((3,), 64 * math.log(17)))
    torch.testing.assert_close(bits_per_dim(nll, 64), torch.full((3,), math.log2(17)))


def test_dequantized_likelihood_is_a_bound_on_the_discrete_probability():
    """For a Gaussian density on y, E_u[log q((x+u)/k)] − D log k ≤ log P(x) (Jensen), with
    P(x) = ∫ q((x+u)/k) k^-D du computed in closed form from the normal CDF."""
    k, loc, scale = 4, 0.5, 0.2
    q = torch.distributions.Normal(torch.tensor(loc, dtype=torch.float64),
                                   torch.tensor(scale, dtype=torch.float64))
    for x in range(k):
        exact = math.log(q.cdf(torch.tensor((x + 1) / k)) - q.cdf(torch.tensor(x / k)))
        y = dequantize(torch.full((200_000, 1), float(x), dtype=torch.float64), k,
                       torch.Generator().manual_seed(x))
        bound = -discrete_nll(q.log_prob(y).sum(-1), dims=1, levels=k).mean().item()
        assert bound <= exact + 1e-3
        assert exact - bound < 0.5     # and not vacuous


# Maximum likelihood -----------------------------------------------------------------------

def realnvp_2d(layers=6):
    torch.manual_seed(0)
    return nf.FlowDistribution(nf.Flow([
        nf.AffineCoupling(nf.half_mask(2, first=i % 2 == 0), hidden=(32, 32))
        for i in range(layers)]))


def test_maximum_likelihood_on_two_moons_lowers_the_nll():
    train = sample_toy("two_moons", 2000, torch.Generator().manual_seed(0)).float()
    valid = sample_toy("two_moons", 500, torch.Generator().manual_seed(1)).float()
    q = realnvp_2d()
    before = -evaluate(q, valid, MaximumLikelihood())
    history = fit(q, MaximumLikelihood(), train, valid,
                  TrainConfig(epochs=15, batch_size=100, lr=3e-3, progress=False))
    after = -evaluate(q, valid, MaximumLikelihood())
    assert after < before - 0.5, (before, after)
    # what validation reports is the held-out log-likelihood itself
    assert after == pytest.approx(-history.best_valid)
    # and the flow beats the best Gaussian (the maximum-likelihood fit), 3.31 nats here
    best_gaussian = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T))
    assert after < -best_gaussian.log_prob(valid).mean().item() - 0.3


def test_maximum_likelihood_on_dequantized_digits_reports_the_discrete_bound():
    x, _ = load_digits()
    train, valid = x[:300], x[300:400]
    torch.manual_seed(0)
    q = nf.FlowDistribution(nf.Flow(
        [nf.AffineCoupling(nf.half_mask(64, first=i % 2 == 0), hidden=(64,)) for i in range(2)]
        + [nf.Inverse(nf.Logit(64, alpha=0.05))]))
    objective = MaximumLikelihood(levels=DIGITS_LEVELS)
    before = -evaluate(q, valid, objective)
    fit(q, objective, train, valid, TrainConfig(epochs=3, batch_size=50, lr=1e-3, progress=False))
    nll = -evaluate(q, valid, objective)
    assert nll < before
    # bits/dim of the discrete images: below the 4.09 of the uniform distribution on 17
    # levels once trained, and evaluate() agrees with the formula on the same draws
    assert bits_per_dim(nll, 64) < math.log2(DIGITS_LEVELS)
    gen = torch.Generator().manual_seed(0)       # evaluate's default seed
    with torch.no_grad():
        y = dequantize(valid, DIGITS_LEVELS, gen)
        by_hand = discrete_nll(q.log_prob(y), 64, DIGITS_LEVELS).mean().item()
    assert nll == pytest.approx(by_hand, rel=1e-6)


# The free energy --------------------------------------------------------------------------

MU, SIGMA = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])


def gaussian_energy(z):
    """U(z) = ½ Σ ((z − μ)/σ)²: exp(−U) is N(μ, diag σ²) times Z = 2π σ1 σ2."""
    return 0.5 * (((z - MU) / SIGMA) ** 2).sum(-1)


def test_free_energy_fit_of_a_gaussian_reaches_the_exact_answer(tmp_path):
    q = nf.FlowDistribution(None, shape=(2,), trainable_base=True)   # a flow of length 0
    objective = FreeEnergy(gaussian_energy, samples=200, anneal=200)
    history = fit(q, objective, config=TrainConfig(max_steps=1500, epoch_steps=500, lr=0.03,
                                                   checkpoint_dir=tmp_path, progress=False))
    assert history.step == [500, 1000, 1500] and history.stopped == "max_steps=1500 reached"
    torch.testing.assert_close(q.loc.detach(), MU, rtol=0, atol=0.05)
    torch.testing.assert_close(q.log_scale.exp().detach(), SIGMA, rtol=0.05, atol=0)
    # F = KL(q‖p) − log Z ≥ −log Z, with equality at q = p
    log_z = math.log(2 * math.pi * SIGMA.prod().item())
    f = free_energy(q, gaussian_energy, 20_000, generator=torch.Generator().manual_seed(0))
    assert -log_z <= f.item() < -log_z + 0.01
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1500


def test_free_energy_anneals_with_rm_schedule():
    objective = FreeEnergy(gaussian_energy)          # R&M's 10 000 warm-up steps
    assert [objective.temperature(t) for t in (0, 4_900, 20_000)] == [
        anneal_beta(0), 0.5, 1.0]
    assert FreeEnergy(gaussian_energy, anneal=False).temperature(0) == 1.0
    q = nf.FlowDistribution(None, shape=(2,))
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    early = objective.loss(q, None, 0, gen())
    late = objective.loss(q, None, 20_000, gen())
    z, log_q = q.sample_and_log_prob((100,), generator=gen())
    torch.testing.assert_close(early, log_q + 0.01 * gaussian_energy(z))
    torch.testing.assert_close(late, log_q + gaussian_energy(z))


def test_planar_flow_free_energy_fit_is_reproducible_and_resumes(tmp_path):
    def run(**kwargs):
        torch.manual_seed(0)
        q = nf.FlowDistribution(nf.Planar(2, length=4))
        h = fit(q, FreeEnergy(gaussian_energy, samples=50, anneal=100),
                config=TrainConfig(epoch_steps=50, lr=1e-2, progress=False, seed=1, **kwargs))
        return q, h
    whole, h_whole = run(max_steps=200)
    run(max_steps=100, checkpoint_dir=tmp_path)
    resumed, h_resumed = run(max_steps=200, checkpoint_dir=tmp_path, resume=True)
    assert h_resumed.train_loss == h_whole.train_loss
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(),
                                                 resumed.state_dict().values()))
    assert h_whole.train_loss[-1] < h_whole.train_loss[0]


def test_an_objective_without_data_counts_steps():
    q = nf.FlowDistribution(None, shape=(2,), trainable_base=True)
    with pytest.raises(ValueError, match="has no data set.*max_steps"):
        fit(q, FreeEnergy(gaussian_energy), config=TrainConfig(epochs=3, progress=False))
    with pytest.raises(ValueError, match="has no data set"):
        fit(q, FreeEnergy(gaussian_energy), torch.zeros(10, 2),
            config=TrainConfig(max_steps=5, progress=False))
    with pytest.raises(ValueError, match="MaximumLikelihood objective trains on data"):
        fit(q, MaximumLikelihood(), config=TrainConfig(max_steps=5, progress=False))
    with pytest.raises(ValueError, match="carries its own"):
        evaluate(q, torch.zeros(10, 2), MaximumLikelihood(), k=5)


def test_a_nan_in_a_free_energy_fit_stops_with_a_clear_error():
    q = nf.FlowDistribution(None, shape=(2,), trainable_base=True)
    bad = lambda z: gaussian_energy(z) * torch.where(z[..., 0] > 3, torch.nan, 1.0)  # noqa: E731
    with pytest.raises(Exception, match=r"the loss became nan at step \d+"):
        fit(q, FreeEnergy(bad, samples=2000, anneal=False),
            config=TrainConfig(max_steps=50, progress=False))
