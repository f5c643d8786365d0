r"""The few log-densities every layer of the package uses, written once.

With :math:`\varepsilon \sim \mathcal N(0, I_d)` and :math:`\sigma = \exp(\tfrac12 \log\sigma^2)`:

.. math::

    \log \mathcal N(z;\ 0, I_d) &= -\tfrac12 \textstyle\sum_j \big(z_j^2 + \log 2\pi\big), \\
    z &= \mu + \sigma \odot \varepsilon \qquad\text{(the reparameterisation)}, \\
    \log \mathcal N(z;\ \mu, \operatorname{diag}\sigma^2)
        &= -\tfrac12 \textstyle\sum_j \big(\varepsilon_j^2 + \log\sigma_j^2 + \log 2\pi\big)
        \qquad\text{at } z = \mu + \sigma\odot\varepsilon, \\
    \mathrm{KL}\big(\mathcal N(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal N(0, I)\big)
        &= \tfrac12 \textstyle\sum_j \big(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\big), \\
    \log \textstyle\prod_i \mathrm{Bern}\big(x_i;\ \mathrm{sigmoid}(\eta_i)\big)
        &= \textstyle\sum_i x_i \eta_i - \operatorname{softplus}(\eta_i).

Each sums over the last axis and keeps the others, so ``k`` samples ``[k, B, d]`` give
``[k, B]``. The Gaussian log-density is written in terms of ε, not of z: ``(z − μ)/σ``
would cancel where σ is tiny, ε is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOG_2PI", "std_normal_log_prob", "reparameterize", "diag_normal_log_prob",
           "kl_std_normal", "bernoulli_log_likelihood"]

LOG_2PI = math.log(2 * math.pi)


def std_normal_log_prob(z: Tensor) -> Tensor:
    r""":math:`\log \mathcal N(z; 0, I)`, summed over the last axis.

    >>> std_normal_log_prob(torch.zeros(3, 2))  # −log 2π
    tensor([-1.8379, -1.8379, -1.8379])
    """
    return -0.5 * (z**2 + LOG_2PI).sum(-1)


def reparameterize(mu: Tensor, log_var: Tensor, eps: Tensor) -> Tensor:
    r""":math:`z = \mu + \sigma \odot \varepsilon` with :math:`\sigma = \exp(\tfrac12 \log\sigma^2)`.

    >>> reparameterize(torch.tensor([1.0]), torch.tensor([math.log(4.0)]), torch.tensor([0.5]))
    tensor([2.])
    """
    return mu + torch.exp(0.5 * log_var) * eps


def diag_normal_log_prob(eps: Tensor, log_var: Tensor) -> Tensor:
    r""":math:`\log \mathcal N(\mu + \sigma\varepsilon;\ \mu, \operatorname{diag}\sigma^2)` from
    the standardised ``eps``, summed over the last axis.

    >>> diag_normal_log_prob(torch.zeros(1, 2), torch.full((1, 2), math.log(4.0)))  # −log 8π
    tensor([-3.2242])
    """
    return -0.5 * (eps**2 + log_var + LOG_2PI).sum(-1)


def kl_std_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu, \mathrm{diag}\,\sigma^2) \,\|\, \mathcal N(0, I))`,
    one value per row.

    >>> kl_std_normal(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    return 0.5 * (mu**2 + log_var.exp() - log_var - 1).sum(-1)


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    r""":math:`\sum_i x_i \log\sigma(\eta_i) + (1 - x_i)\log(1 - \sigma(\eta_i))` over the last
    axis, from logits η, as :math:`x\cdot\eta - \mathrm{softplus}(\eta)`: equal to
    ``-F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)``, and ``x``
    broadcasts against k samples of logits without being copied.

    >>> bernoulli_log_likelihood(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))  # 2 log(1/2)
    tensor([-1.3863])
    """
    return (x * logits).sum(-1) - F.softplus(logits).sum(-1)
