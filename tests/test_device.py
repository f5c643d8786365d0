"""The VAE pipeline on the device chosen with ``--device`` (the CPU by default, so these run
in CI too): a flow posterior and a learned prior, training with checkpoints and exact
resume, the chunked NLL estimate, sampling; on a GPU, agreement with the CPU."""

from __future__ import annotations

from dataclasses import replace
import pytest
import torch

from nfcourse import flows as nf
from nfcourse import objectives
from nfcourse.objectives.free_energy import FreeEnergy
from nfcourse.models import VAE, FlowPosterior, FlowPrior, MixturePrior
from nfcourse.objectives import Bound
from nfcourse.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def data(n, seed, x_dim=12):
    protos = torch.bernoulli(torch.full((3, x_dim), 0.5),
                             generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    return (protos[torch.randint(0, 3, (n,), generator=g)]
            + torch.bernoulli(torch.full((n, x_dim), 0.05), generator=g)) % 2


POSTERIORS = {
    "planar": lambda: FlowPosterior(nf.Planar(2, length=4, amortized=True)),
    "iaf": lambda: FlowPosterior(nf.Flow([nf.IAF(2, hidden=(8,), context_dim=4),
                                          nf.ReversePermutation(2),
                                          nf.IAF(2, hidden=(8,), context_dim=4)])),
    "nice": lambda: FlowPosterior(nf.Flow([nf.AdditiveCoupling(nf.half_mask(2, first=i % 2 == 0),
                                                               hidden=(8,)) for i in range(4)])),
}
PRIORS = {
    "mixture": lambda: MixturePrior(2, 3),
    "realnvp": lambda: FlowPrior(nf.Flow([nf.AffineCoupling(nf.half_mask(2, first=i % 2 == 0),
                                                            hidden=(8,)) for i in range(2)])),
}


def build(posterior, prior, device, seed=0):
    torch.manual_seed(seed)
    return VAE(12, 2, 16, posterior=POSTERIORS[posterior](), prior=PRIORS[prior]()).to(device)


@pytest.mark.parametrize("posterior", list(POSTERIORS))
@pytest.mark.parametrize("prior", list(PRIORS))
def test_the_vae_trains_resumes_and_estimates_on_the_device(posterior, prior, device, tmp_path):
    train, valid = data(120, 1), data(40, 2)
    elbo = Bound("elbo", anneal=10)
    config = TrainConfig(epochs=3, batch_size=40, lr=5e-3, ema=0.9, seed=1, progress=False)
    whole = build(posterior, prior, device)
    h_whole = fit(whole, elbo, train, valid, config)
    assert h_whole.valid_bound[-1] > h_whole.valid_bound[0]
    fit(build(posterior, prior, device), elbo, train, valid,
        replace(config, epochs=1, checkpoint_dir=tmp_path))
    resumed = build(posterior, prior, device, seed=5)
    h_resumed = fit(resumed, elbo, train, valid,
                    replace(config, checkpoint_dir=tmp_path, resume=True))
    assert h_resumed.valid_bound == h_whole.valid_bound
    gen = torch.Generator(device=device).manual_seed(0)
    log_px = objectives.log_marginal_is(whole, valid[:8], samples=64, chunk_size=10,
                                        generator=gen, progress=False)
    assert log_px.shape == (8,) and torch.isfinite(log_px).all()
    elbo = objectives.elbo(whole, valid[:8].to(device), k=16,
                           generator=torch.Generator(device=device).manual_seed(0))
    assert (log_px.to(device) > elbo - 0.5).all()   # IS with 64 draws sits above the ELBO
    images = whole.sample(5, generator=torch.Generator(device=device).manual_seed(1))
    assert images.device.type == device.type and images.shape == (5, 12)


def test_a_free_energy_fit_runs_on_the_device(device):
    torch.manual_seed(0)
    q = nf.FlowDistribution(nf.Planar(2, length=8)).to(device)
    energy = lambda z: 0.5 * ((z - 1.0) ** 2).sum(-1)  # noqa: E731
    history = fit(q, FreeEnergy(energy, samples=100, anneal=50),
                  config=TrainConfig(max_steps=300, epoch_steps=100, lr=1e-2, progress=False))
    assert history.train_loss[-1] < history.train_loss[0]


def test_the_device_agrees_with_the_cpu(device):
    if device.type == "cpu":
        pytest.skip("compares a GPU with the CPU: run with --device cuda (or mps)")
    cpu = build("planar", "realnvp", "cpu")
    gpu = build("planar", "realnvp", device)
    x = data(16, 3)
    params = cpu.encode(x)
    z, log_q = cpu.posterior(params).rsample_and_log_prob(4, torch.Generator().manual_seed(0))
    log_px = cpu.likelihood.log_prob(cpu.prepare(x), cpu.decode(z))
    g_params = gpu.encode(x.to(device))
    torch.testing.assert_close(g_params.cpu(), params, rtol=1e-5, atol=1e-5)
    g_log_px = gpu.likelihood.log_prob(gpu.prepare(x.to(device)), gpu.decode(z.to(device)))
    torch.testing.assert_close(g_log_px.cpu(), log_px, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gpu.prior.log_prob(z.to(device)).cpu(), cpu.prior.log_prob(z),
                               rtol=1e-5, atol=1e-4)
