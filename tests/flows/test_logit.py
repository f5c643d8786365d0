"""Logit's bounded domain: data outside it get a clear error instead of NaN, inside it (all
of it, the range of the sigmoid included) a finite answer, and where values cannot be read
(torch.compile, vmap, a CUDA graph being captured) the check stays out of the way."""

from __future__ import annotations

import re

import pytest
import torch
from torch.func import vmap

from nfcourse import flows as nf


def test_data_off_the_unit_interval_are_refused_naming_domain_range_and_fix():
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError) as info:
        nf.Logit(3, alpha=0.05)(x)
    text = str(info.value)
    assert "Logit(alpha=0.05).forward" in text
    assert "(-0.05556, 1.056)" in text                          # the domain, for this alpha
    assert f"[{x.min().item():g}, {x.max().item():g}]" in text  # what it got
    assert "Rescale the data into (0, 1)" in text and "dequantize" in text
    assert "Inverse(Logit(dim))" in text                        # the other direction


def test_without_alpha_the_domain_is_the_open_unit_interval():
    """alpha = 0: binary pixels 0 and 1 have infinite logits, so they are refused too."""
    layer = nf.Logit(4, alpha=0.0)
    with pytest.raises(ValueError, match=re.escape("takes x in (0, 1), and got values in [0, 1]")):
        layer(torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    y, log_det = layer(torch.tensor([[0.01, 0.5, 0.7, 0.99]]))
    assert torch.isfinite(y).all() and torch.isfinite(log_det).all()


def test_nan_in_the_data_is_named():
    with pytest.raises(ValueError, match=re.escape("got values in [0.2, 0.5] and NaN or inf")):
        nf.Logit(3)(torch.tensor([[0.2, float("nan"), 0.5]]))


@pytest.mark.parametrize("alpha", [0.05, 1e-6])
def test_the_whole_domain_is_accepted_and_the_sigmoid_takes_any_real(alpha):
    """The edges of [0, 1], and the images of the inverse (which reach past [0, 1] when
    alpha > 0): the forward map takes them all, so sampling then scoring always works."""
    layer = nf.Logit(5, alpha=alpha).double()
    y = torch.tensor([[-30.0, -15.0, 0.0, 15.0, 30.0]], dtype=torch.float64)
    x, _ = layer.inverse(y)                      # any real y
    y_back, log_det = layer(x)
    assert torch.isfinite(y_back).all() and torch.isfinite(log_det).all()
    # (at |y| = 30 the round trip is ill-conditioned: 1 - sigmoid(30) is 1e-13)
    torch.testing.assert_close(y_back[:, 1:4], y[:, 1:4], rtol=0, atol=1e-6)
    edges = torch.tensor([[0.0, 1.0, 0.5, 0.0, 1.0]], dtype=torch.float64)
    assert torch.isfinite(layer(edges)[0]).all()


def test_scoring_real_valued_data_with_a_sigmoid_flow_is_refused():
    """The mistake that gave NaN before: log_prob of data that are not in (0, 1)."""
    q = nf.FlowDistribution(nf.Inverse(nf.Logit(2)))
    with pytest.raises(ValueError, match="Rescale the data into"):
        q.log_prob(torch.randn(5, 2) + 3)
    assert torch.isfinite(q.log_prob(torch.rand(5, 2))).all()


def test_no_check_while_compiling(monkeypatch):
    """Under torch.compile the values are not there to read: no check, no graph break."""
    layer = nf.Logit(3)
    x = torch.rand(4, 3)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x)[0], layer(x)[0])
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    y, _ = layer(torch.full((1, 3), 5.0))        # what a traced graph computes: NaN
    assert torch.isnan(y).all()


def test_no_check_under_vmap():
    """vmap refuses data-dependent Python control flow, so the check steps aside."""
    layer = nf.Logit(3)
    x = torch.rand(4, 3)
    y, log_det = vmap(lambda v: layer(v[None]))(x)
    torch.testing.assert_close(y[:, 0], layer(x)[0])


def test_no_check_while_a_cuda_graph_is_captured(device):
    if device.type != "cuda":
        pytest.skip("captures a CUDA graph: run with --device cuda")
    layer = nf.Logit(3).to(device)
    x = torch.rand(4, 3, device=device)
    layer(x)                                      # eager warm-up, checked
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):                 # reading a value here would fail
        y, _ = layer(x)
    x.copy_(torch.rand(4, 3, device=device))
    graph.replay()
    torch.testing.assert_close(y, layer(x)[0])
    with pytest.raises(ValueError, match="Rescale the data into"):
        layer(x + 2)                              # eager again: checked again
