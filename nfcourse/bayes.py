r"""Section 1: Bayesian inference, conjugacy and the KL divergence.

The reference answers to the exercises of Section 1, in the notebook's notation. Later
sections import them: the VAE's KL term is :func:`kl_diag_std_normal`, and the conjugate
Gaussian model (:func:`posterior_params`, :func:`log_evidence`, :func:`elbo_conjugate`) is
the test bed on which approximate inference can be compared with the exact answer.

**1.1 Change of variables.** If :math:`z \sim \mathcal N(0, I_d)` and :math:`x = Az + b`
with :math:`A` invertible, then :math:`z = A^{-1}(x - b)` and

.. math::

    \log p(x) = -\tfrac d2 \log 2\pi - \tfrac12 \lVert A^{-1}(x - b)\rVert^2
                - \log\lvert\det A\rvert,

the log-density of :math:`\mathcal N(b, AA^\top)`.

**1.2 Belief network** (the sprinkler network :math:`C \to S`, :math:`C \to R`,
:math:`(S, R) \to W`):

.. math::

    p(c, s, r, w) = p(c)\, p(s \mid c)\, p(r \mid c)\, p(w \mid s, r), \qquad
    p(q \mid e) = \frac{\sum_h p(q, e, h)}{\sum_{q', h} p(q', e, h)}.

**1.3 Conjugate Gaussian mean.** :math:`x_i \sim \mathcal N(\mu, \sigma^2)` i.i.d.,
:math:`\mu \sim \mathcal N(0, \sigma_\mu^2)`:

.. math::

    \log p(D; \mu) &= -\tfrac n2 \log 2\pi\sigma^2 - \textstyle\sum_i (x_i - \mu)^2 / 2\sigma^2,
    \qquad \mu_{\mathrm{MLE}} = \bar x, \\
    p(\mu \mid D) &= \mathcal N(\mu_N, \sigma_N^2), \qquad
    \sigma_N^{-2} = \sigma_\mu^{-2} + n\sigma^{-2}, \qquad
    \mu_N = \sigma_N^2 \textstyle\sum_i x_i / \sigma^2 = \mu_{\mathrm{MAP}}, \\
    \log p(D) &= \log \mathcal N(D;\ 0,\ \sigma^2 I + \sigma_\mu^2 \mathbf 1\mathbf 1^\top).

**1.4** :math:`\mathrm{KL}(p \,\|\, q) = \sum_x p(x) \log \frac{p(x)}{q(x)} \ge 0`,
with :math:`0 \log 0 = 0`.

**1.5** :math:`\mathrm{KL}(\mathcal N(\mu, \operatorname{diag}\sigma^2) \,\|\, \mathcal N(0, I))
= \tfrac12 \sum_i (\sigma_i^2 + \mu_i^2 - \log\sigma_i^2 - 1)`.

**1.6** Tzikas et al., *The Variational Approximation for Bayesian Inference*, Eq. (7):
:math:`\log p(x) = F(q) + \mathrm{KL}(q \,\|\, p(z \mid x))` with the ELBO
:math:`F(q) = \mathbb E_q[\log p(x, z)] - \mathbb E_q[\log q(z)]`. For the conjugate model
and :math:`q(\mu) = \mathcal N(m, s^2)`:

.. math::

    F(m, s^2) = -\tfrac n2 \log 2\pi\sigma^2
                - \frac{\sum_i (x_i - m)^2 + n s^2}{2\sigma^2}
                - \tfrac12 \log 2\pi\sigma_\mu^2 - \frac{m^2 + s^2}{2\sigma_\mu^2}
                + \tfrac12 \log 2\pi e s^2.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from nfcourse.closed_forms import kl_std_normal, std_normal_log_prob


# 1.1 Change of variables -----------------------------------------------------------


def log_density_linear(x: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """log p(x) for x = A z + b, z ~ N(0, I): one value per row of ``x``.

    ``x`` is ``[n, d]`` (or any ``[..., d]``), ``A`` an invertible ``[d, d]``, ``b`` ``[d]``.

    >>> A = torch.tensor([[2.0, 0.0], [0.0, 0.5]])  # |det A| = 1: volume is preserved
    >>> round(log_density_linear(torch.zeros(1, 2), A, torch.zeros(2)).item(), 4)
    -1.8379
    """
    # Solve A z = x - b rather than forming A^{-1}: cheaper and better conditioned.
    z = torch.linalg.solve(A, (x - b).unsqueeze(-1)).squeeze(-1)
    # The volume term: A stretches space by |det A|, so the density thins out by as much.
    log_abs_det = torch.linalg.slogdet(A).logabsdet
    return std_normal_log_prob(z) - log_abs_det


# 1.2 Belief network -----------------------------------------------------------------

#: Axis of each variable in the sprinkler network's joint table ``joint[c, s, r, w]``.
CLOUDY, SPRINKLER, RAIN, WET = 0, 1, 2, 3


class SprinklerCPTs(NamedTuple):
    """Conditional probability tables of the sprinkler network, indexed parents first."""

    p_c: Tensor           #: ``[2]``: ``p_c[c] = p(C=c)``
    p_s_given_c: Tensor   #: ``[2, 2]``: ``p_s_given_c[c, s] = p(S=s | C=c)``
    p_r_given_c: Tensor   #: ``[2, 2]``: ``p_r_given_c[c, r] = p(R=r | C=c)``
    p_w_given_sr: Tensor  #: ``[2, 2, 2]``: ``p_w_given_sr[s, r, w] = p(W=w | S=s, R=r)``


def sprinkler_cpts(dtype: torch.dtype | None = None) -> SprinklerCPTs:
    """The textbook sprinkler network (Murphy's numbers): 0 = false, 1 = true.

    >>> sprinkler_cpts().p_s_given_c.sum(-1)  # every row is a distribution
    tensor([1., 1.])
    """
    def t(values):
        return torch.tensor(values, dtype=dtype or torch.get_default_dtype())

    return SprinklerCPTs(
        p_c=t([0.5, 0.5]),
        p_s_given_c=t([[0.5, 0.5], [0.9, 0.1]]),   # the sprinkler rarely runs when cloudy
        p_r_given_c=t([[0.8, 0.2], [0.2, 0.8]]),   # rain is likely when cloudy
        p_w_given_sr=t([[[1.0, 0.0], [0.1, 0.9]],  # s = 0: r = 0, r = 1
                        [[0.1, 0.9], [0.01, 0.99]]]),
    )


def joint_table(p_c: Tensor, p_s_given_c: Tensor, p_r_given_c: Tensor,
                p_w_given_sr: Tensor) -> Tensor:
    """The joint ``[c, s, r, w]`` of the sprinkler network, the product of its CPTs.

    Each factor is lined up with the axes of the variables it mentions (``None`` adds
    an axis of length 1) and broadcasting multiplies them entry by entry.

    >>> joint = joint_table(*sprinkler_cpts())
    >>> tuple(joint.shape), round(joint.sum().item(), 6)
    ((2, 2, 2, 2), 1.0)
    """
    return (p_c[:, None, None, None]
            * p_s_given_c[:, :, None, None]
            * p_r_given_c[:, None, :, None]
            * p_w_given_sr[None, :, :, :])


def posterior(joint: Tensor, query: int, evidence: dict[int, int]) -> Tensor:
    """p(query | evidence) by enumeration: one probability per value of the query variable.

    ``joint`` has one axis per variable; ``query`` is an axis and ``evidence`` maps axes to
    observed values.

    >>> joint = joint_table(*sprinkler_cpts())
    >>> round(posterior(joint, SPRINKLER, {WET: 1})[1].item(), 4)
    0.4298
    """
    if query in evidence:
        raise ValueError(f"the query variable (axis {query}) is also in the evidence")
    table = joint
    for axis, value in evidence.items():
        table = table.narrow(axis, value, 1)  # keep the axis, so axis numbers stay valid
    hidden = [axis for axis in range(joint.ndim) if axis != query]
    p_query_and_evidence = table.sum(dim=hidden) if hidden else table
    return p_query_and_evidence / p_query_and_evidence.sum()  # divide by p(evidence)


# 1.3 Conjugate Gaussian mean --------------------------------------------------------


def log_likelihood(mu: Tensor | float, x: Tensor, noise_var: Tensor | float = 1.0) -> Tensor:
    """log p(D; mu) of i.i.d. data ``x`` (shape ``[n]``) under N(mu, noise_var).

    ``mu`` may be a tensor of candidate means (e.g. a grid); the result has its shape.

    >>> round(log_likelihood(0.0, torch.zeros(2)).item(), 4)  # 2 * log N(0; 0, 1)
    -1.8379
    """
    mu = torch.as_tensor(mu, dtype=x.dtype)
    noise_var = torch.as_tensor(noise_var, dtype=x.dtype)
    n = x.shape[-1]
    squares = ((x - mu.unsqueeze(-1)) ** 2).sum(-1)
    return -0.5 * n * torch.log(2 * math.pi * noise_var) - 0.5 * squares / noise_var


def mle(x: Tensor) -> Tensor:
    """The maximum-likelihood estimate of a Gaussian mean: the sample mean.

    >>> mle(torch.tensor([1.0, 2.0, 6.0]))
    tensor(3.)
    """
    return x.mean(-1)


def posterior_params(x: Tensor, prior_var: Tensor | float = 1.0,
                     noise_var: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
    """Mean and variance of p(mu | D) for the prior mu ~ N(0, prior_var).

    Precisions add: the prior contributes 1/prior_var, each observation 1/noise_var.

    >>> mean, var = posterior_params(torch.tensor([1.0, 2.0, 6.0]))  # = sum / (n + 1)
    >>> mean.item(), var.item()
    (2.25, 0.25)
    """
    prior_var = torch.as_tensor(prior_var, dtype=x.dtype)
    noise_var = torch.as_tensor(noise_var, dtype=x.dtype)
    precision = 1 / prior_var + x.shape[-1] / noise_var
    var = 1 / precision
    return var * x.sum(-1) / noise_var, var


def map_estimate(x: Tensor, prior_var: Tensor | float = 1.0,
                 noise_var: Tensor | float = 1.0) -> Tensor:
    """The MAP estimate of mu: the mode of a Gaussian posterior is its mean.

    >>> map_estimate(torch.tensor([1.0, 2.0, 6.0])).item()
    2.25
    """
    return posterior_params(x, prior_var, noise_var)[0]


def log_evidence(x: Tensor, prior_var: Tensor | float = 1.0,
                 noise_var: Tensor | float = 1.0) -> Tensor:
    """log p(D), the marginal likelihood of the conjugate model.

    Bayes' rule holds at every mu, so log p(D) = log p(D | mu) + log p(mu) - log p(mu | D);
    at mu = mu_N the last term is the posterior's peak, -1/2 log(2 pi sigma_N^2).

    >>> round(log_evidence(torch.zeros(1)).item(), 4)  # x_1 ~ N(0, 1 + 1)
    -1.2655
    """
    prior_var = torch.as_tensor(prior_var, dtype=x.dtype)
    mean, var = posterior_params(x, prior_var, noise_var)
    log_prior = -0.5 * torch.log(2 * math.pi * prior_var) - 0.5 * mean**2 / prior_var
    return log_likelihood(mean, x, noise_var) + log_prior + 0.5 * torch.log(2 * math.pi * var)


# 1.4 and 1.5 KL divergences ----------------------------------------------------------


def kl_categorical(p: Tensor, q: Tensor) -> Tensor:
    """KL(p || q) between categorical distributions along the last axis (0 log 0 = 0).

    >>> p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.25, 0.5])
    >>> round(kl_categorical(p, q).item(), 4)  # log 2
    0.6931
    """
    # xlogy(p, .) is 0 where p = 0: outcomes p never produces cost nothing.
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)


#: 1.5: KL(N(mu, diag exp(log_var)) || N(0, I)), summed over the last axis, parametrised by
#: log sigma^2 as an encoder outputs it. It is the VAE's KL term, so it lives with the other
#: shared log-densities in :mod:`nfcourse.closed_forms`.
kl_diag_std_normal = kl_std_normal


# 1.6 The ELBO of the conjugate model -------------------------------------------------


def elbo_conjugate(m: Tensor | float, s2: Tensor | float, x: Tensor,
                   prior_var: Tensor | float = 1.0,
                   noise_var: Tensor | float = 1.0) -> Tensor:
    """F(q) for q(mu) = N(m, s2) in the conjugate model, in closed form.

    ``m`` and ``s2`` may be tensors of one shape (a grid of q's); the result has it.

    >>> x = torch.tensor([1.0, 2.0, 6.0])
    >>> mean, var = posterior_params(x)
    >>> torch.allclose(elbo_conjugate(mean, var, x), log_evidence(x))  # q = p(mu | D)
    True
    """
    m = torch.as_tensor(m, dtype=x.dtype)
    s2 = torch.as_tensor(s2, dtype=x.dtype)
    prior_var = torch.as_tensor(prior_var, dtype=x.dtype)
    noise_var = torch.as_tensor(noise_var, dtype=x.dtype)
    n = x.shape[-1]
    # E_q[(x_i - mu)^2] = (x_i - m)^2 + s^2: q's spread costs likelihood ...
    expected_log_lik = log_likelihood(m, x, noise_var) - 0.5 * n * s2 / noise_var
    expected_log_prior = -0.5 * torch.log(2 * math.pi * prior_var) - 0.5 * (m**2 + s2) / prior_var
    # ... and the entropy rewards it.
    entropy = 0.5 * torch.log(2 * math.pi * math.e * s2)
    return expected_log_lik + expected_log_prior + entropy
