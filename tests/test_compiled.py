"""The compiled training step (nfcourse.compiled) trains as the eager one does: the same
losses step by step and the same parameters, to float rounding. On the CPU here (inductor);
on a GPU with ``--device cuda`` (CUDA graphs through ``mode="reduce-overhead"``)."""

from __future__ import annotations

import pytest
import torch

from nfcourse import flows as nf
from nfcourse.models import VAE, FlowPosterior
from nfcourse.objectives import Bound
from nfcourse.train import TrainConfig, fit

pytestmark = pytest.mark.slow


def synthetic(n=240, x_dim=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((2, x_dim), 0.5), generator=g)
    flip = torch.bernoulli(torch.full((n, x_dim), 0.1), generator=g)
    return (protos[torch.randint(0, 2, (n,), generator=g)] + flip) % 2


def trained(device, compile, tmp=None, **settings):
    """A planar NF-VAE, annealed over the first 12 steps (eager in both runs), then β = 1;
    240 points in batches of 32: 7 full batches and one of 16 an epoch."""
    torch.manual_seed(0)
    model = VAE(12, 2, 16, posterior=FlowPosterior(nf.Planar(2, length=3, amortized=True)))
    model = model.to(device)
    config = TrainConfig(**{**dict(epochs=3, batch_size=32, lr=3e-3, seed=0, progress=False,
                                   ema=0.9, loss_every=1, compile=compile,
                                   checkpoint_dir=tmp), **settings})
    history = fit(model, Bound("elbo", anneal=12), synthetic(), synthetic(60, seed=1), config)
    return model, history


def assert_same_training(a, b, rtol=1e-4, atol=1e-5):
    (model_a, h_a), (model_b, h_b) = a, b
    assert len(h_a.loss_values) == len(h_b.loss_values) == 24
    torch.testing.assert_close(torch.tensor(h_a.loss_values), torch.tensor(h_b.loss_values),
                               rtol=rtol, atol=1e-4)
    for p, q in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol)


def test_the_compiled_step_trains_as_the_eager_one(device):
    from torch._dynamo.utils import counters
    eager = trained(device, compile=False)
    graphs = counters["stats"]["unique_graphs"]
    compiled = trained(device, compile=True)
    assert counters["stats"]["unique_graphs"] > graphs       # it did compile
    assert_same_training(compiled, eager)
    # the annealed steps ran eagerly in both, so their losses agree exactly
    assert compiled[1].loss_values[:12] == eager[1].loss_values[:12]


def test_a_compiled_run_resumes_where_it_stopped(device, tmp_path):
    whole = trained(device, True, tmp_path / "whole")
    trained(device, True, tmp_path / "cut", epochs=2)
    resumed = trained(device, True, tmp_path / "cut", resume=True)
    assert_same_training(resumed, whole)
