"""One catalogue of KL mistakes (nfcourse.checks.mistakes) serves Exercise 1.5 (the KL on its
own) and Exercise 4.5b (the KL inside the ELBO): every entry is a formula a student writes,
and both exercises name it, in the same words."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nfcourse.checks import SelfCheckError
from nfcourse.checks import bayes as section1
from nfcourse.checks import vae as section4
from nfcourse.checks.mistakes import kl_diag_std_normal_mistakes

#: A student's wrong KL(N(mu, diag exp(log_var)) || N(0, I)) for each entry of the
#: catalogue, in its order, written the way a student writes it.
STUDENT_KL = {
    "no -1": lambda mu, lv: 0.5 * torch.sum(torch.exp(lv) + mu**2 - lv, dim=-1),
    "sigma for sigma^2": lambda mu, lv: 0.5 * torch.sum(torch.exp(0.5 * lv) + mu**2 - lv - 1, -1),
    "sigma and log sigma": lambda mu, lv: 0.5 * torch.sum(
        torch.exp(0.5 * lv) + mu**2 - torch.log(torch.exp(0.5 * lv)) - 1, -1),
    "no half": lambda mu, lv: torch.sum(lv.exp() + mu.pow(2) - lv - 1, -1),
    "log sign": lambda mu, lv: 0.5 * (lv.exp() + mu**2 + lv - 1).sum(-1),
    "log_var read as log sigma": lambda mu, lv: 0.5 * (
        torch.exp(lv) ** 2 + mu**2 - torch.log(torch.exp(lv) ** 2) - 1).sum(-1),
    "log_var read as the variance": lambda mu, lv: 0.5 * (lv + mu**2 - torch.log(lv) - 1).sum(-1),
    "log of log_var": lambda mu, lv: 0.5 * (lv.exp() + mu**2 - torch.log(lv) - 1).sum(-1),
    "terms cancel": lambda mu, lv: 0.5 * (lv + mu**2 - lv - 1).sum(-1),
    "log_var and exp swapped": lambda mu, lv: 0.5 * (lv + mu**2 - lv.exp() - 1).sum(-1),
    "variance squared": lambda mu, lv: 0.5 * (lv.exp().pow(2) + mu**2 - lv - 1).sum(-1),
    "reverse KL": lambda mu, lv: (0.5 * lv + (1 + mu**2) / (2 * lv.exp()) - 0.5).sum(-1),
    "mean over dimensions": lambda mu, lv: 0.5 * (lv.exp() + mu**2 - lv - 1).mean(-1),
}


def _log_lik(x, x_logits):
    return -F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(-1)


def _hint(check, fn) -> str:
    with pytest.raises(SelfCheckError) as info:
        check(fn)
    return str(info.value).split("\n  hint: ")[-1]


def test_every_entry_of_the_catalogue_has_a_student_formula():
    m, lv = torch.randn(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
    catalogue = kl_diag_std_normal_mistakes(m, lv)
    assert len(catalogue) == len(STUDENT_KL)
    for (value, _), (name, student) in zip(catalogue, STUDENT_KL.items()):
        torch.testing.assert_close(student(m, lv), value, msg=name)


@pytest.mark.parametrize("name", list(STUDENT_KL))
def test_both_exercises_name_each_mistake_in_the_same_words(name):
    student = STUDENT_KL[name]
    m, lv = torch.randn(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
    position = list(STUDENT_KL).index(name)
    expected = kl_diag_std_normal_mistakes(m, lv)[position][1]
    assert _hint(section1.kl_diag_std_normal, student) == expected
    in_elbo = _hint(section4.elbo, lambda x, xl, mu, lv: _log_lik(x, xl) - student(mu, lv))
    assert in_elbo == f"the KL term is wrong: {expected}"


def test_a_mistake_once_known_only_to_section_1_is_named_in_the_elbo():
    """KL(N(0, I) || q), the arguments swapped, was in Exercise 1.5's list alone: the ELBO's
    check said only that the values were wrong."""
    def elbo(x, x_logits, mu, log_var):
        reverse_kl = 0.5 * ((1 + mu**2) / log_var.exp() + log_var - 1).sum(-1)
        return _log_lik(x, x_logits) - reverse_kl
    with pytest.raises(SelfCheckError, match=r"the KL term is wrong: this is KL\(N\(0, I\) ‖ q\)"):
        section4.elbo(elbo)
