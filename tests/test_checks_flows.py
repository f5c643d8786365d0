"""The Section 5 self-checks pass the reference answers and, for plausible wrong answers,
fail with a message that names the mistake."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from nfcourse.checks import SelfCheckError
from nfcourse.checks import flows as check
from nfcourse.flows import masked_affine_coupling
from nfcourse.objectives.density import bits_per_dim, discrete_nll
from selfcheck_contract import SelfCheckContract


def prior_reference(z, flow):
    u, log_det_inv = flow.inverse(z)
    return Normal(0.0, 1.0).log_prob(u).sum(-1) + log_det_inv


REFERENCES = {
    "affine_coupling": masked_affine_coupling,
    "dequantized_bits_per_dim": lambda log_q_s, log_det, dims, levels: bits_per_dim(
        discrete_nll(log_q_s + log_det, dims, levels), dims),
    "free_energy": lambda log_q, u, beta: (log_q + beta * u).mean(),
    "flow_prior_log_prob": prior_reference,
}


class TestSelfCheckContract(SelfCheckContract):
    section, checks, references = "5", check, REFERENCES


def coupling(transform, log_det):
    """A coupling law built from a wrong output formula or a wrong log-det formula."""
    def law(x, mask, net, inverse=False):
        s, t = net(mask * x)
        return transform(x, mask, s, t, inverse), log_det(x, mask, s, t, inverse)
    return law


def right_output(x, b, s, t, inverse):
    return masked_affine_coupling(x, b, lambda v: (s, t), inverse)[0]


def right_log_det(x, b, s, t, inverse):
    return (-1 if inverse else 1) * ((1 - b) * s).sum(-1)


def net_sees_all(x, mask, net, inverse=False):
    """The right law, except that net is given all of x instead of mask * x."""
    s, t = net(x)
    return right_output(x, mask, s, t, inverse), right_log_det(x, mask, s, t, inverse)


WRONG = [
    ("affine_coupling", coupling(right_output, lambda x, b, s, t, inv: ((1 - b) * s).sum(-1)),
     "log-det has the wrong sign"),
    ("affine_coupling", coupling(right_output, lambda x, b, s, t, inv:
                                 (-1 if inv else 1) * s.sum(-1)), "sums s over all coordinates"),
    ("affine_coupling", coupling(right_output, lambda x, b, s, t, inv:
                                 (-1 if inv else 1) * ((1 - b) * s).sum()),
     "one log-det per sample"),
    ("affine_coupling", coupling(right_output, lambda x, b, s, t, inv:
                                 (-1 if inv else 1) * (b * s).sum(-1)),
     "sums s over the kept coordinates"),
    ("affine_coupling", coupling(lambda x, b, s, t, inv: (x - t) * torch.exp(-s) if inv
                                 else x * torch.exp(s) + t, right_log_det), "mask is forgotten"),
    ("affine_coupling", coupling(lambda x, b, s, t, inv: right_output(x, 1 - b, s, t, inv),
                                 right_log_det), "wrong half is transformed"),
    ("affine_coupling", coupling(lambda x, b, s, t, inv:
                                 b * x + (1 - b) * (x * torch.exp(-s) - t) if inv
                                 else right_output(x, b, s, t, inv), right_log_det),
     r"\(y − t\)·e\^\(−s\)"),
    ("affine_coupling", coupling(lambda x, b, s, t, inv:
                                 b * x + (1 - b) * (x - t) * torch.exp(s) if inv
                                 else right_output(x, b, s, t, inv), right_log_det),
     r"divides by the scale"),
    ("affine_coupling", net_sees_all, "net must see the kept coordinates"),
    ("affine_coupling", lambda x, mask, net, inverse=False: x, "pair"),
    ("free_energy", lambda lq, u, b: (-lq + b * u).mean(), "entropy term has the wrong sign"),
    ("free_energy", lambda lq, u, b: (lq + u).mean(), "β multiplies the energy"),
    ("free_energy", lambda lq, u, b: lq + b * u, "one number"),
    ("free_energy", lambda lq, u, b: (lq + b * u).sum(), "not their sum"),
    ("flow_prior_log_prob", lambda z, f: Normal(0.0, 1.0).log_prob(f.inverse(z)[0]).sum(-1)
     - f.inverse(z)[1], "log-det has the wrong sign"),
    ("flow_prior_log_prob", lambda z, f: Normal(0.0, 1.0).log_prob(f(z)[0]).sum(-1) + f(z)[1],
     "goes the wrong way"),
    ("flow_prior_log_prob", lambda z, f: Normal(0.0, 1.0).log_prob(z).sum(-1),
     "flow is missing"),
    ("flow_prior_log_prob", lambda z, f: Normal(0.0, 1.0).log_prob(f.inverse(z)[0]).sum(-1),
     "log-det of the inverse is missing"),
]


@pytest.mark.parametrize("name, answer, message", WRONG)
def test_wrong_answers_are_named(name, answer, message):
    with pytest.raises(SelfCheckError, match=message):
        getattr(check, name)(answer)


def test_the_flow_prior_shows_log_densities_of_ordinary_size():
    """The expected values a wrong answer is shown against are a few nats, not −51 000."""
    with pytest.raises(SelfCheckError) as info:
        check.flow_prior_log_prob(lambda z, f: Normal(0.0, 1.0).log_prob(z).sum(-1))
    line = next(x for x in str(info.value).splitlines() if x.startswith("  expected:"))
    values = [float(v) for v in line.split("starting [")[1].split("]")[0].split(", ")]
    assert all(-15 < v < -3 for v in values), line


def test_bits_per_dim_is_exercise_5_5():
    assert check.dequantized_bits_per_dim.exercise.number == "5.5"
    assert "dequantized_bits_per_dim" in check.__all__
