"""The Section 6 self-checks pass the reference answers and, for plausible wrong answers,
fail with a message that names the mistake."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nfcourse.checks import SelfCheckError
from nfcourse.checks import nfvi as check
from selfcheck_contract import SelfCheckContract


def u_hat(u, w, norm=lambda w2: w2, m=lambda x: -1 + F.softplus(x)):
    wu, w2 = (w * u).sum(-1, keepdim=True), (w * w).sum(-1, keepdim=True)
    return u + (m(wu) - wu) * w / norm(w2)


def planar(z, u_hat, w, b, h=torch.tanh, psi=lambda t: 1 - t**2, log=True, sign=1.0,
           reduce=lambda v: v, dot=lambda w, z: (w * z).sum(-1)):
    t = h(dot(w, z) + b)
    det = 1 + psi(t) * (w * u_hat).sum(-1)
    return z + t[:, None] * u_hat, reduce(sign * (torch.log(det.abs()) if log else det))


REFERENCES = {
    "planar_u_hat": u_hat,
    "planar_layer": planar,
    "flow_free_energy": lambda lq0, ld, lj: (lq0 - ld - lj).mean(0),
}


class TestSelfCheckContract(SelfCheckContract):
    section, checks, references = "6", check, REFERENCES


WRONG = [
    ("planar_u_hat", lambda u, w: u_hat(u, w, norm=torch.sqrt), "divide by ‖w‖², not ‖w‖"),
    ("planar_u_hat", lambda u, w: u_hat(u, w, m=F.softplus), "without the −1"),
    ("planar_u_hat", lambda u, w: u, "û must be corrected"),
    ("planar_u_hat", lambda u, w: u_hat(u, w, norm=lambda w2: w2.sum()), "not over the whole"),
    ("planar_layer", lambda z, u, w, b: planar(z, u, w, b, sign=-1.0), "wrong sign"),
    ("planar_layer", lambda z, u, w, b: planar(z, u, w, b, log=False), "take the log"),
    ("planar_layer", lambda z, u, w, b: planar(z, u, w, b, psi=lambda t: t), "not tanh"),
    ("planar_layer", lambda z, u, w, b: planar(z, u, w, b, reduce=torch.sum),
     "not their sum over the batch"),
    ("planar_layer", lambda z, u, w, b: planar(z, u, w, b, h=lambda a: a), "tanh.* is missing"),
    ("planar_layer", lambda z, u, w, b: z, "return a pair"),
    ("planar_layer", lambda z, u, w, b: planar(z, u, w, b, dot=lambda w, z: (w * z).sum()),
     "one number per point"),
    ("flow_free_energy", lambda lq0, ld, lj: (lq0 + ld - lj).mean(0), "wrong sign"),
    ("flow_free_energy", lambda lq0, ld, lj: (lq0 - lj).mean(0), "log q at z_0"),
    ("flow_free_energy", lambda lq0, ld, lj: (lj + ld - lq0).mean(0), "this is the ELBO"),
    ("flow_free_energy", lambda lq0, ld, lj: (lq0 - ld - lj).mean(), "one free energy per"),
    ("flow_free_energy", lambda lq0, ld, lj: (lq0 - ld - lj).sum(0), "do not sum them"),
    ("flow_free_energy", lambda lq0, ld, lj: (lq0 - ld - lj).mean(1), "dim 1 is the images"),
]


@pytest.mark.parametrize("name, answer, message", WRONG)
def test_wrong_answers_are_named(name, answer, message):
    with pytest.raises(SelfCheckError, match=message):
        getattr(check, name)(answer)


def test_section_6_exercises_take_their_new_numbers():
    assert [f.exercise.number for f in (check.planar_u_hat, check.planar_layer,
                                        check.flow_free_energy)] == ["6.3a", "6.3b", "6.5"]


def test_a_forgotten_keepdim_is_named_not_left_as_a_size_error():
    def no_keepdim(u, w):
        wu, w2 = (w * u).sum(-1), (w * w).sum(-1)
        return u + (-1 + F.softplus(wu) - wu) * w / w2
    with pytest.raises(SelfCheckError) as info:
        check.planar_u_hat(no_keepdim)
    last = str(info.value).splitlines()[-1]
    assert last.startswith("  hint: wᵀu and ‖w‖² are one number per row") and "[B, 1]" in last
