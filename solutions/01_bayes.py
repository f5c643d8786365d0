# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Section 1: Bayesian inference, conjugacy and the KL divergence
#
# Everything later in the course rests on four ideas, one exercise each (or two):
#
# | | idea | where it comes back |
# |---|---|---|
# | 1.1 | the **change of variables** formula: a transformed density picks up a log-determinant | every normalizing flow (Sections 5 and 6) |
# | 1.2 | a **belief network** factorises a joint; a query is a sum over what we did not observe | latent variable models are belief networks with hidden nodes |
# | 1.3 | **conjugacy**: with a Gaussian prior and likelihood the posterior is Gaussian and exact | our test bed: approximate inference can be compared with the truth |
# | 1.4, 1.5 | the **KL divergence** is never negative, and has a closed form between Gaussians | the VAE's regulariser (Section 4) |
# | 1.6 | $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q \,\|\, p(z \mid x))$ | the objective of all variational inference (Sections 2 to 6) |
#
# **How to work through it.** Each exercise states what is asked, then asks for a derivation
# (Markdown and LaTeX) and a small function. The cell after each function is a *self-check*: it
# calls your function on fresh inputs, compares with an independent computation
# (`torch.distributions`, SciPy, brute-force enumeration) and, when something is off, tells you
# what, expected versus got, with a hint for the usual mistakes. The cells after a check use the
# reference implementation from `nfcourse.bayes`, so the notebook runs to the end even before you
# have finished an exercise. Its source and docstrings state the answers, like the solution
# notebook: open them after the exercises, not before.
#
# **Notation.** Logs are natural (nats). The same table opens Sections 2 to 4; a symbol that
# means something else there says so.
#
# | symbol | meaning in this section | code name |
# |---|---|---|
# | $\mathcal N(x; \mu, \Sigma)$ | the Gaussian density with mean $\mu$ and covariance $\Sigma$ | `Normal`, `MultivariateNormal` |
# | $z$; $A$, $b$ | 1.1: a standard Gaussian vector and the matrix and shift applied to it | `z`; `A`, `b` |
# | $D = \{x_1, \ldots, x_n\}$ | the data: $n$ observations | `x`, `x_all` |
# | $\mu$ | the unknown mean of the data, the latent variable of 1.3 and 1.6 (Sections 2 and 3: the component means $\mu_k$; Section 4: the encoder's mean $\mu_\phi(x)$) | `mu` |
# | $\sigma^2$ | the **noise** variance of each $x_i$ given $\mu$ (Sections 2 and 3 follow Blei et al., for whom $\sigma^2$ is the **prior** variance; Section 4: the encoder's variance) | `noise_var` |
# | $\sigma_\mu^2$ | the **prior** variance of $\mu$ | `prior_var` |
# | $\mu_N$, $\sigma_N^2$ | the mean and variance of the posterior $p(\mu \mid D)$ | `post_mean`, `post_var` |
# | $q$; $m$, $s^2$ | an approximate posterior; its mean and variance | `m`, `s2` |
# | $\mathrm{KL}(q \,\Vert\, p)$ | the KL divergence; the expectation is under the first argument | `kl_categorical(q, p)`, `kl_divergence(q, p)` |
# | $\mu_i$, $\sigma_i^2$ | 1.5 only: the mean and variance of coordinate $i$ of a diagonal Gaussian, as the VAE's encoder outputs them (Section 4) | `mu`, `log_var` $= \log\sigma_i^2$ |
# | $F(q)$ | the ELBO (Tzikas et al.'s name; in Section 3, $F$ is a Fisher information) | `elbo_conjugate` |

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import scipy.optimize
import scipy.stats
import torch
from ipywidgets import FloatSlider, IntSlider
from torch.distributions import (Dirichlet, Independent, MultivariateNormal, Normal,
                                 kl_divergence)

from nfcourse import bayes, pick, seed_everything
from nfcourse.checks import bayes as check
from nfcourse.widgets import interact

# Float64 throughout: the identities below are checked to 1e-10, beyond float32's reach.
torch.set_default_dtype(torch.float64)
_ = seed_everything(0)

# %% [markdown]
# ## 1.1 Density of a linear transform of a standard Gaussian
#
# Let $z \sim \mathcal N(0, I_d)$ and $x = Az + b$ with $A$ an invertible $d \times d$ matrix.
# Use the change of variables formula to derive the density $p(x)$, and show that it is the
# multivariate Gaussian $\mathcal N(b, AA^\top)$.
#
# <!-- BEGIN SOLUTION invert the map, apply the change of variables formula, then collect the quadratic form -->
# The map $g(z) = Az + b$ is invertible with $g^{-1}(x) = A^{-1}(x - b)$, whose Jacobian is
# $\partial g^{-1} / \partial x = A^{-1}$. The change of variables formula gives
#
# $$
# p_x(x) = p_z\big(g^{-1}(x)\big)\,\Big\lvert \det \frac{\partial g^{-1}}{\partial x} \Big\rvert
#        = \mathcal N\big(A^{-1}(x - b);\, 0, I\big)\, \lvert\det A\rvert^{-1}.
# $$
#
# With $p_z(z) = (2\pi)^{-d/2} \exp(-\tfrac12 z^\top z)$ and
# $\lVert A^{-1}(x - b)\rVert^2 = (x - b)^\top A^{-\top} A^{-1} (x - b) = (x - b)^\top (AA^\top)^{-1} (x - b)$,
# and since $\lvert \det A\rvert = \det(AA^\top)^{1/2}$,
#
# $$
# p_x(x) = (2\pi)^{-d/2} \det(\Sigma)^{-1/2} \exp\!\big(-\tfrac12 (x - b)^\top \Sigma^{-1} (x - b)\big),
# \qquad \Sigma = AA^\top,
# $$
#
# which is $\mathcal N(x; b, AA^\top)$. In logs, the form we implement:
#
# $$
# \log p(x) = -\tfrac d2 \log 2\pi - \tfrac12 \lVert A^{-1}(x - b) \rVert^2 - \log\lvert\det A\rvert.
# $$
#
# The last term is the whole story of normalizing flows in miniature: $A$ stretches volume by
# $\lvert\det A\rvert$, so the same probability mass is spread thinner by that factor.
# <!-- END SOLUTION -->

# %% [markdown]
# Implement $\log p(x)$ for a batch of points `x` of shape `[n, d]`, returning shape `[n]`.
# Solve linear systems with `torch.linalg.solve` rather than inverting `A`, and get
# $\log\lvert\det A\rvert$ from `torch.linalg.slogdet`.


# %%
def log_density_linear(x, A, b):
    """log p(x) for x = A z + b, z ~ N(0, I), as above. x: [n, d], A: [d, d], b: [d]. Returns [n]."""
    ### BEGIN SOLUTION solve for z = A^-1 (x - b) row by row, then use your derivation
    d = x.shape[-1]
    z = torch.linalg.solve(A, (x - b).T).T
    return (-0.5 * d * math.log(2 * math.pi) - 0.5 * (z**2).sum(-1)
            - torch.linalg.slogdet(A).logabsdet)
    ### END SOLUTION


# %%
check.log_density_linear(log_density_linear)

# %% [markdown]
# From here on the notebook uses the reference `bayes.log_density_linear`. First the check the
# exercise asks for, against `torch.distributions.MultivariateNormal` on random inputs:

# %%
d = 4
A = torch.randn(d, d)
b = torch.randn(d)
x = 3 * torch.randn(1000, d)
reference = MultivariateNormal(b, covariance_matrix=A @ A.T).log_prob(x)
assert torch.allclose(bayes.log_density_linear(x, A, b), reference, rtol=0, atol=1e-10)

# %% [markdown]
# A density must integrate to one. On a 2-D grid it does. Without the $-\log\lvert\det A\rvert$
# term, that is, evaluating the standard normal density at $z = A^{-1}(x - b)$ and stopping
# there, it integrates to $\lvert\det A\rvert$ instead: the missing log-determinant is not a
# small error.

# %%
A2 = torch.tensor([[1.5, 0.8], [-0.4, 1.2]])  # det A = 2.12: it doubles areas
b2 = torch.tensor([1.0, -0.5])
grid = torch.linspace(-12, 12, 601)  # wide enough that the tails beyond hold < 1e-9
gx, gy = torch.meshgrid(grid, grid, indexing="ij")
points = torch.stack([gx.flatten(), gy.flatten()], -1)
log_p = bayes.log_density_linear(points, A2, b2).reshape(gx.shape)


def integrate_2d(values):
    return torch.trapezoid(torch.trapezoid(values, grid), grid).item()


abs_det = torch.linalg.det(A2).abs().item()
assert abs(integrate_2d(log_p.exp()) - 1) < 1e-6
# The tempting mistake, computed on its own: N(z; 0, I) at z = A^-1 (x - b), no log-det term.
z_grid = torch.linalg.solve(A2, (points - b2).T).T
no_log_det = Normal(0.0, 1.0).log_prob(z_grid).sum(-1).exp().reshape(gx.shape)
assert abs(integrate_2d(no_log_det) - abs_det) < 1e-6

z = torch.randn(2000, 2)
samples = z @ A2.T + b2
fig, ax = plt.subplots(figsize=(5, 4.5))
ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.3, label="x = A z + b, z ~ N(0, I)")
ax.contour(gx, gy, log_p.exp(), levels=6, cmap="viridis")
ax.set(xlim=(-4, 6), ylim=(-5, 4), xlabel="x₁", ylabel="x₂",
       title="samples and the density p(x) from 1.1")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# ## 1.2 Belief networks
#
# *This exercise replaces part 1 of Exercise 3.35 of David Barber's* Bayesian Reasoning and
# Machine Learning *(the curriculum's reading), whose text we do not have. It practises the same
# skills on a self-contained network: reading a factorisation off a graph, and answering a query
# by enumeration.*
#
# The **sprinkler network** has four binary variables (0 = false, 1 = true): whether it is
# cloudy ($C$), whether the sprinkler ran ($S$), whether it rained ($R$), and whether the grass is
# wet ($W$). The edges are $C \to S$, $C \to R$, $S \to W$, $R \to W$, with the conditional
# probability tables (CPTs)
#
# | | |
# |---|---|
# | $p(C{=}1) = 0.5$ | |
# | $p(S{=}1 \mid C{=}0) = 0.5$ | $p(S{=}1 \mid C{=}1) = 0.1$ |
# | $p(R{=}1 \mid C{=}0) = 0.2$ | $p(R{=}1 \mid C{=}1) = 0.8$ |
# | $p(W{=}1 \mid S{=}0, R{=}0) = 0$, $\ p(W{=}1 \mid S{=}1, R{=}0) = 0.9$ | $p(W{=}1 \mid S{=}0, R{=}1) = 0.9$, $\ p(W{=}1 \mid S{=}1, R{=}1) = 0.99$ |
#
# **(a)** Write the joint distribution $p(C, S, R, W)$ as the product the graph implies. How many
# free parameters do the CPTs have, and how many would a table of the full joint need?
#
# **(b)** Are $S$ and $R$ independent? Independent given $C$? Independent given $C$ and $W$?
#
# **(c)** Compute $p(S{=}1 \mid W{=}1)$, $p(R{=}1 \mid W{=}1)$ and $p(S{=}1 \mid W{=}1, R{=}1)$ by
# enumeration, and explain why the last is smaller than the first.
#
# <!-- BEGIN SOLUTION each node contributes p(node | parents); a query sums the joint over the unobserved variables -->
# **(a)** Each node contributes its probability given its parents:
#
# $$
# p(C, S, R, W) = p(C)\, p(S \mid C)\, p(R \mid C)\, p(W \mid S, R).
# $$
#
# A binary variable with $k$ binary parents needs one number per parent configuration: $1 + 2 + 2 + 4
# = 9$ free parameters, against $2^4 - 1 = 15$ for an unstructured joint table. The saving grows
# exponentially with the number of variables; it is why we write models as graphs.
#
# **(b)** $S$ and $R$ share the parent $C$, so marginally they are dependent (cloudiness makes rain
# likelier and the sprinkler rarer). Given $C$ they are independent, because
# $p(S, R \mid C) = \sum_W p(C)p(S \mid C)p(R \mid C)p(W \mid S, R) / p(C) = p(S \mid C)\,p(R \mid C)$. Given $C$ **and** $W$
# they become dependent again: $W$ is a common child (a collider), and observing it couples its
# parents. This is *explaining away*.
#
# **(c)** By enumeration, $p(q \mid e) = \sum_h p(q, e, h) \,/\, \sum_{q', h} p(q', e, h)$, summing
# over the hidden variables $h$:
#
# $$
# p(S{=}1 \mid W{=}1) = \frac{\sum_{c, r} p(c, S{=}1, r, W{=}1)}{\sum_{c, s, r} p(c, s, r, W{=}1)}
# = \frac{0.2781}{0.6471} \approx 0.4298, \qquad p(R{=}1 \mid W{=}1) \approx 0.7079,
# $$
#
# and $p(S{=}1 \mid W{=}1, R{=}1) \approx 0.1945$. Wet grass makes both causes likelier; once we
# also know it rained, the rain already explains the wet grass and the sprinkler drops back below
# its prior $p(S{=}1) = 0.3$ (the sprinkler rarely runs on the cloudy days that bring rain).
# <!-- END SOLUTION -->

# %% [markdown]
# Now in code. The joint is a tensor `joint[c, s, r, w]` with one axis per variable; the CPTs
# are indexed parents first, `p_s_given_c[c, s]` $= p(S{=}s \mid C{=}c)$ and
# `p_w_given_sr[s, r, w]` $= p(W{=}w \mid S{=}s, R{=}r)$. Build the joint by **broadcasting**: line
# each CPT up with the axes of the variables it mentions (`None` inserts an axis of length one)
# and multiply.

# %%
C, S, R, W = bayes.CLOUDY, bayes.SPRINKLER, bayes.RAIN, bayes.WET  # axes 0, 1, 2, 3
cpts = bayes.sprinkler_cpts()


def joint_table(p_c, p_s_given_c, p_r_given_c, p_w_given_sr):
    """The joint p(c, s, r, w) as a [2, 2, 2, 2] tensor, the product of the four CPTs."""
    ### BEGIN SOLUTION p_c[:, None, None, None] lines p(C) up with axis 0; likewise the rest
    return (p_c[:, None, None, None] * p_s_given_c[:, :, None, None]
            * p_r_given_c[:, None, :, None] * p_w_given_sr[None, :, :, :])
    ### END SOLUTION


# %%
check.joint_table(joint_table)

# %% [markdown]
# A query $p(\text{query} \mid \text{evidence})$: keep the entries of the joint that agree with the
# evidence (a dict `{axis: value}`), sum out every other variable except the query, and normalise.
# `joint.narrow(axis, value, 1)` keeps only `value` along `axis` without removing the axis, so the
# axis numbers stay valid.


# %%
def posterior(joint, query, evidence):
    """p(query | evidence) by enumeration: a tensor with one probability per query value."""
    ### BEGIN SOLUTION restrict to the evidence with narrow, sum over all other axes, normalise
    table = joint
    for axis, value in evidence.items():
        table = table.narrow(axis, value, 1)
    p_query_and_evidence = table.sum(dim=[a for a in range(joint.ndim) if a != query])
    return p_query_and_evidence / p_query_and_evidence.sum()
    ### END SOLUTION


# %%
check.posterior(posterior)

# %% [markdown]
# <!-- SOLUTION ONLY the answers to (a) to (c), each checked a different way from how it was computed, and explaining away in a picture -->
# With the reference implementations, the answers to (a) to (c), each checked a different way
# from how it was computed:

# %%
### SOLUTION ONLY
joint = bayes.joint_table(*cpts)
assert abs(joint.sum().item() - 1) < 1e-12

# (a) one free number per CPT row (the row's other entry is 1 minus it)
n_free = sum(table[..., 0].numel() for table in cpts)
assert n_free == 9 and joint.numel() - 1 == 15

# (b) S and R: dependent, independent given C, dependent again given C and W
p_sr = joint.sum((C, W))
assert not torch.allclose(p_sr, p_sr.sum(1, keepdim=True) * p_sr.sum(0, keepdim=True))
p_csr = joint.sum(W)
p_sr_given_c = p_csr / p_csr.sum((1, 2), keepdim=True)
assert torch.allclose(p_sr_given_c, cpts.p_s_given_c[:, :, None] * cpts.p_r_given_c[:, None, :])
p_sr_given_cw1 = joint[..., 1] / joint[..., 1].sum((1, 2), keepdim=True)
product = p_sr_given_cw1.sum(2, keepdim=True) * p_sr_given_cw1.sum(1, keepdim=True)
assert not torch.allclose(p_sr_given_cw1, product, atol=1e-3)

# (c) the three queries, and Bayes' rule from marginals as a second route to the first one
p_s_w = bayes.posterior(joint, S, {W: 1})[1].item()
p_r_w = bayes.posterior(joint, R, {W: 1})[1].item()
p_s_wr = bayes.posterior(joint, S, {W: 1, R: 1})[1].item()
p_w1_given_s1 = joint[:, 1, :, 1].sum() / joint[:, 1].sum()
assert math.isclose(p_s_w, (p_w1_given_s1 * joint[:, 1].sum() / joint[..., 1].sum()).item())
assert abs(p_s_w - 0.4298) < 5e-5 and abs(p_r_w - 0.7079) < 5e-5 and abs(p_s_wr - 0.1945) < 5e-5
assert p_s_wr < bayes.posterior(joint, S, {})[1] < p_s_w  # explaining away
print(f"p(S=1|W=1) = {p_s_w:.4f}   p(R=1|W=1) = {p_r_w:.4f}   p(S=1|W=1,R=1) = {p_s_wr:.4f}")

# %% [markdown]
# <!-- SOLUTION ONLY -->
# Explaining away in one picture: how the belief in each cause moves as evidence comes in.

# %%
### SOLUTION ONLY
evidences = {"nothing": {}, "W=1": {W: 1}, "W=1, R=1": {W: 1, R: 1}, "W=1, S=1": {W: 1, S: 1}}
fig, ax = plt.subplots(figsize=(7, 3))
width = 0.35
for i, (name, cause) in enumerate([("sprinkler on", S), ("rain", R)]):
    beliefs = [bayes.posterior(joint, cause, e)[1].item() if cause not in e else 1.0
               for e in evidences.values()]
    ax.bar(np.arange(len(evidences)) + (i - 0.5) * width, beliefs, width, label=f"p({name} | ...)")
ax.set_xticks(range(len(evidences)), [f"given {k}" for k in evidences])
ax.set(ylim=(0, 1.05), ylabel="probability",
       title="observing one cause of wet grass explains away the other")
ax.legend()
plt.show()

# %% [markdown]
# ## 1.3 Posterior inference via conjugacy
#
# Data $D$ are i.i.d. observations $x_1, \ldots, x_n \sim \mathcal N(\mu, \sigma^2 = 1)$.
#
# **(a)** Specify the likelihood $p(D; \mu)$. **(b)** Derive the maximum likelihood estimate of
# $\mu$. **(c)** With the prior $\mu \sim \mathcal N(0, \sigma_\mu^2 = 1)$, derive the posterior
# $p(\mu \mid D)$ using conjugacy, and the MAP estimate of $\mu$.
#
# We keep $\sigma^2$ (`noise_var`) and $\sigma_\mu^2$ (`prior_var`) as symbols: the exercise's
# setting is $\sigma^2 = \sigma_\mu^2 = 1$, and the general formulas show where each variance
# enters.
#
# <!-- BEGIN SOLUTION the log-likelihood is a quadratic in mu; complete the square for the posterior -->
# **(a)** Independence turns the joint density into a product, and the log into a sum:
#
# $$
# p(D; \mu) = \prod_{i=1}^n \mathcal N(x_i; \mu, \sigma^2), \qquad
# \log p(D; \mu) = -\frac n2 \log 2\pi\sigma^2 - \frac{1}{2\sigma^2}\sum_{i=1}^n (x_i - \mu)^2.
# $$
#
# **(b)** $\frac{\partial}{\partial\mu} \log p(D; \mu) = \frac1{\sigma^2} \sum_i (x_i - \mu) = 0$
# gives $\mu_{\mathrm{MLE}} = \bar x = \frac1n \sum_i x_i$, a maximum since the second derivative
# $-n/\sigma^2$ is negative.
#
# **(c)** Bayes' rule, keeping only the terms that depend on $\mu$:
#
# $$
# \log p(\mu \mid D) = \log p(D \mid \mu) + \log p(\mu) + \text{const}
# = -\frac12 \Big(\frac{1}{\sigma_\mu^2} + \frac{n}{\sigma^2}\Big) \mu^2
#   + \mu \frac{\sum_i x_i}{\sigma^2} + \text{const}.
# $$
#
# A quadratic in $\mu$ with negative leading coefficient is the log of a Gaussian (that is
# conjugacy: Gaussian prior times Gaussian likelihood stays Gaussian). Completing the square,
# $p(\mu \mid D) = \mathcal N(\mu_N, \sigma_N^2)$ with
#
# $$
# \frac{1}{\sigma_N^2} = \frac{1}{\sigma_\mu^2} + \frac{n}{\sigma^2}, \qquad
# \mu_N = \sigma_N^2\, \frac{\sum_i x_i}{\sigma^2}.
# $$
#
# Precisions add: the prior counts as one more observation's worth of information when
# $\sigma_\mu^2 = \sigma^2$. In the exercise's setting $\sigma^2 = \sigma_\mu^2 = 1$:
# $\mu_N = \frac{\sum_i x_i}{n + 1}$ and $\sigma_N^2 = \frac{1}{n+1}$.
#
# A Gaussian's mode is its mean, so $\mu_{\mathrm{MAP}} = \mu_N = \frac{n}{n+1}\bar x$: the MLE
# shrunk towards the prior mean 0, by a factor that tends to 1 as $n$ grows.
# <!-- END SOLUTION -->

# %%
mu_true = 1.5
n_max = 100
x_all = mu_true + torch.randn(n_max)  # sigma^2 = 1


# %%
def log_likelihood(mu, x, noise_var=1.0):
    """log p(D; mu) for i.i.d. x ~ N(mu, noise_var). mu: a number (0-dim tensor), x: [n]."""
    ### BEGIN SOLUTION sum the log-densities of the observations, normalising constant included
    n = x.shape[-1]
    return -0.5 * n * math.log(2 * math.pi * noise_var) - 0.5 * ((x - mu) ** 2).sum() / noise_var
    ### END SOLUTION


# %%
check.log_likelihood(log_likelihood)


# %%
def mle(x):
    """The maximum-likelihood estimate of mu from the data x: [n]."""
    ### BEGIN SOLUTION set the derivative of the log-likelihood to zero
    return x.mean()
    ### END SOLUTION


# %%
check.mle(mle)


# %%
def posterior_params(x, prior_var=1.0, noise_var=1.0):
    """Mean and variance of p(mu | D) under the prior mu ~ N(0, prior_var), as a tuple."""
    ### BEGIN SOLUTION read mean and variance off the completed square of your derivation (c)
    var = 1 / (1 / prior_var + x.shape[-1] / noise_var)
    return var * x.sum() / noise_var, var
    ### END SOLUTION


# %%
check.posterior_params(posterior_params)


# %%
def map_estimate(x, prior_var=1.0, noise_var=1.0):
    """The MAP estimate of mu: the maximiser of p(mu | D)."""
    ### BEGIN SOLUTION where is a Gaussian density highest?
    return posterior_params(x, prior_var, noise_var)[0]
    ### END SOLUTION


# %%
check.map_estimate(map_estimate)

# %% [markdown]
# The checks the exercise asks for, with the reference implementations: the closed forms against
# SciPy's optimiser and against prior $\times$ likelihood normalised numerically on a grid.

# %%
x20 = x_all[:20]
neg_log_lik = lambda m: -bayes.log_likelihood(m, x20).item()  # noqa: E731
neg_log_post = lambda m: neg_log_lik(m) - scipy.stats.norm.logpdf(m)  # noqa: E731
assert abs(scipy.optimize.minimize_scalar(neg_log_lik).x - bayes.mle(x20).item()) < 1e-6
assert abs(scipy.optimize.minimize_scalar(neg_log_post).x - bayes.map_estimate(x20).item()) < 1e-6
assert abs(bayes.mle(x20).item() - scipy.stats.norm.fit(x20.numpy())[0]) < 1e-12

# Bayes' rule on a grid, normalised by the trapezoid rule: no conjugacy algebra involved.
mu_grid = torch.linspace(-3, 4, 2001)
log_unnormalised = bayes.log_likelihood(mu_grid, x20) + Normal(0.0, 1.0).log_prob(mu_grid)
grid_posterior = (log_unnormalised - log_unnormalised.max()).exp()
grid_posterior /= torch.trapezoid(grid_posterior, mu_grid)
mean20, var20 = bayes.posterior_params(x20)
assert torch.allclose(grid_posterior, Normal(mean20, var20.sqrt()).log_prob(mu_grid).exp(),
                      atol=1e-6)

# With all the data the posterior concentrates on mu_true (4 posterior standard deviations).
mean_all, var_all = bayes.posterior_params(x_all)
assert abs(mean_all - mu_true) < 4 * var_all.sqrt()

# %%
### SOLUTION ONLY the closed forms of (b) and (c) in the exercise's setting, checked
# sigma^2 = sigma_mu^2 = 1: mu_N = sum(x) / (n + 1), sigma_N^2 = 1 / (n + 1), MAP = n / (n + 1) MLE.
assert math.isclose(mean20.item(), x20.sum().item() / 21) and math.isclose(var20.item(), 1 / 21)
assert math.isclose(bayes.map_estimate(x20).item(), 20 / 21 * bayes.mle(x20).item())
assert abs(bayes.map_estimate(x_all) - bayes.mle(x_all)) < 0.05  # MAP -> MLE as n grows

# %% [markdown]
# ### The posterior as $n$ grows
#
# The prior (fixed), the likelihood of the first $n$ points (rescaled to unit area, so it can be
# drawn on the same axes) and the posterior, which is their normalised product. Watch the
# posterior start at the prior, follow the likelihood, and narrow as $n$ grows.

# %%
mu_plot = torch.linspace(-2.5, 3.5, 601)


def plot_posterior(ax, n):
    """Prior, rescaled likelihood of x_all[:n], and posterior of mu on one axis."""
    data = x_all[:n]
    ax.plot(mu_plot, Normal(0.0, 1.0).log_prob(mu_plot).exp(), "C0", label="prior")
    if n > 0:
        log_lik = bayes.log_likelihood(mu_plot, data)
        lik = (log_lik - log_lik.max()).exp()
        ax.plot(mu_plot, lik / torch.trapezoid(lik, mu_plot), "C1--", label="likelihood (rescaled)")
    mean, var = bayes.posterior_params(data)
    ax.plot(mu_plot, Normal(mean, var.sqrt()).log_prob(mu_plot).exp(), "C2", lw=2,
            label="posterior")
    ax.axvline(mu_true, color="k", lw=0.8, ls=":", label="true mu")
    ax.set(title=f"n = {n}", xlabel="μ", ylabel="density")


fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
for ax, n in zip(axes.flat, [0, 1, 2, 5, 20, 100]):
    plot_posterior(ax, n)
axes[0, 1].legend(fontsize=8)
fig.tight_layout()
plt.show()


# %%
@interact(n=IntSlider(value=5, min=0, max=n_max, description="n"))
def explore_posterior(n):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_posterior(ax, n)
    ax.legend(fontsize=8)
    plt.show()


# %% [markdown]
# The same story as numbers: the MLE and the posterior mean with a $\pm 2\sigma_N$ band, against
# $n$. How fast does the band shrink, and how far is the posterior mean from the MLE? Compare
# with your derivation (c).

# %%
ns = torch.arange(1, n_max + 1)
posteriors = [bayes.posterior_params(x_all[:n]) for n in ns]
means = torch.stack([mean for mean, _ in posteriors])
sds = torch.stack([var for _, var in posteriors]).sqrt()
mles = torch.stack([bayes.mle(x_all[:n]) for n in ns])
fig, ax = plt.subplots(figsize=(7, 3))
ax.fill_between(ns, means - 2 * sds, means + 2 * sds, alpha=0.3, label="posterior mean ± 2 sd")
ax.plot(ns, means, label="posterior mean")
ax.plot(ns, mles, ".", ms=3, label="MLE")
ax.axhline(mu_true, color="k", lw=0.8, ls=":")
ax.set(xscale="log", xlabel="n", ylabel="mu")
ax.legend()
plt.show()

# %% [markdown]
# ## 1.4 The KL divergence is nonnegative
#
# Prove that $\mathrm{KL}(q \,\|\, p) = \mathbb E_{q}\big[\log \frac{q(x)}{p(x)}\big] \ge 0$.
# *Hint:* apply $\log t \le t - 1$ to $t = p(x)/q(x)$.
#
# <!-- BEGIN SOLUTION write -KL as an expectation of log(p/q) under q and apply the bound inside it -->
# Let $\mathcal X_q = \{x : q(x) > 0\}$ be the support of $q$ (terms with $q(x) = 0$ contribute
# $0 \log 0 = 0$). For $x \in \mathcal X_q$ with $p(x) > 0$, $t = p(x)/q(x) > 0$, and
# $\log t \le t - 1$ gives
#
# $$
# -\mathrm{KL}(q \,\|\, p) = \sum_{x \in \mathcal X_q} q(x) \log \frac{p(x)}{q(x)}
# \le \sum_{x \in \mathcal X_q} q(x) \Big(\frac{p(x)}{q(x)} - 1\Big)
# = \sum_{x \in \mathcal X_q} p(x) - 1 \le 1 - 1 = 0.
# $$
#
# (If $p(x) = 0$ somewhere on $\mathcal X_q$, that term is $-\infty$ and $\mathrm{KL} = +\infty \ge 0$.)
# For densities replace sums by integrals. Equality needs equality in $\log t \le t - 1$, i.e.
# $t = 1$ wherever $q > 0$, and all of $p$'s mass on $\mathcal X_q$: the KL is zero exactly when
# $p = q$. It is *not* symmetric, which is why the order of the arguments matters in everything
# that follows.
# <!-- END SOLUTION -->

# %% [markdown]
# A numerical check needs a KL to compute. Implement it for categorical distributions given as
# probability vectors along the last axis, one KL per row. Our code follows
# `torch.distributions.kl_divergence(p, q)`: the first argument is the distribution the expectation
# is taken under, so `kl_categorical(p, q)` is
# $\mathrm{KL}(p \,\|\, q) = \sum_x p(x) \log\frac{p(x)}{q(x)}$, and the $\mathrm{KL}(q \,\|\, p)$ of the
# proof is `kl_categorical(q, p)`. Use $0 \log 0 = 0$.


# %%
def kl_categorical(p, q):
    """KL(p || q) for probability vectors along the last axis: [..., k] -> [...]."""
    ### BEGIN SOLUTION torch.xlogy(a, b) computes a * log(b) and is 0 where a is 0
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)
    ### END SOLUTION


# %%
check.kl_categorical(kl_categorical)

# %% [markdown]
# The proof, checked on many random pairs (sparse ones included: Dirichlet(0.3) puts most of the
# mass on a few outcomes) in the proof's direction, $\mathrm{KL}(q \,\|\, p)$, that is
# `kl_categorical(q, p)`, along with the bound it uses, $-\mathrm{KL}(q \,\|\, p) \le \sum_{q > 0} p - 1$.

# %%
n_pairs = pick(full=200_000, fast=20_000)
p = Dirichlet(torch.full((6,), 0.3)).sample((n_pairs,))
q = Dirichlet(torch.full((6,), 0.3)).sample((n_pairs,))
kl_qp = bayes.kl_categorical(q, p)  # KL(q || p): the expectation is under q, as in the proof
assert (kl_qp >= 0).all() and (bayes.kl_categorical(q, q).abs() < 1e-12).all()
assert (-kl_qp <= (p * (q > 0)).sum(-1) - 1 + 1e-12).all()  # the bound from the proof
assert np.allclose(kl_qp[:1000].numpy(), scipy.stats.entropy(q[:1000].numpy(), p[:1000].numpy(),
                                                             axis=-1), rtol=1e-10)
assert not torch.allclose(kl_qp, bayes.kl_categorical(p, q))  # not symmetric
print(f"{n_pairs} random pairs: smallest KL(q || p) {kl_qp.min():.2e}, none negative")

# %% [markdown]
# <!-- SOLUTION ONLY the KL landscapes (which way round matters), which answer exercise 2.1 of Section 2 -->
# ### KL landscapes: which way round matters
#
# *Exercise 2.1 asks which Gaussian minimises each direction of the KL, and why; this answers it.*
#
# Fit a single Gaussian $q = \mathcal N(m, s^2)$ to a two-component mixture $p$ by minimising a KL.
# On a fine grid a density is a categorical distribution, so the KL is a sum (we work with log-
# densities to avoid $0 \cdot \log 0$ underflow far in the tails). Minimising
# $\mathrm{KL}(q \,\|\, p)$, the direction variational inference uses, makes $q$ *avoid* where $p$
# is small: it locks onto one mode (mode-seeking). Minimising $\mathrm{KL}(p \,\|\, q)$ makes $q$
# *cover* everywhere $p$ has mass: it matches $p$'s mean and variance (mass-covering).

# %%
### SOLUTION ONLY
xs = torch.linspace(-10, 10, 1001)
dx = (xs[1] - xs[0]).item()
modes, width = 2.0, 0.6
log_p_mix = torch.logsumexp(torch.stack([Normal(-modes, width).log_prob(xs),
                                         Normal(modes, width).log_prob(xs)]), 0) - math.log(2)
ms = torch.linspace(-4, 4, 81)
log_ss = torch.linspace(-1, 1.5, 51)
log_q = Normal(ms[:, None, None], log_ss.exp()[None, :, None]).log_prob(xs)  # [m, s, x]
kl_q_p = (log_q.exp() * (log_q - log_p_mix)).sum(-1) * dx
kl_p_q = (log_p_mix.exp() * (log_p_mix - log_q)).sum(-1) * dx


def argmin_2d(values):
    i, j = divmod(values.argmin().item(), values.shape[1])
    return ms[i].item(), log_ss[j].exp().item()


m_rev, s_rev = argmin_2d(kl_q_p)
m_fwd, s_fwd = argmin_2d(kl_p_q)
assert abs(abs(m_rev) - modes) < 0.15 and abs(s_rev - width) < 0.1  # one mode
assert abs(m_fwd) < 0.15 and abs(s_fwd - math.sqrt(width**2 + modes**2)) < 0.1  # moments

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for ax, values, title, (m_best, s_best) in [
        (axes[0], kl_q_p, "KL(q || p): mode-seeking", (m_rev, s_rev)),
        (axes[1], kl_p_q, "KL(p || q): mass-covering", (m_fwd, s_fwd))]:
    image = ax.contourf(ms, log_ss.exp(), values.T.clamp(max=5), levels=30, cmap="magma_r")
    ax.plot(m_best, s_best, "c*", ms=12)
    ax.set(yscale="log", xlabel="m (mean of q)", ylabel="s (standard deviation of q)",
           title=title)
    fig.colorbar(image, ax=ax, label=f"{title.split(':')[0]} in nats (cut off at 5)")
axes[2].plot(xs, log_p_mix.exp(), "k", label="p (mixture)")
axes[2].plot(xs, Normal(m_rev, s_rev).log_prob(xs).exp(), label="argmin KL(q || p)")
axes[2].plot(xs, Normal(m_fwd, s_fwd).log_prob(xs).exp(), label="argmin KL(p || q)")
axes[2].set(xlim=(-6, 6), xlabel="x", ylabel="density", title="the two best Gaussians")
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 1.5 KL between a diagonal Gaussian and $\mathcal N(0, I)$
#
# Show that
#
# $$
# \mathrm{KL}\Big(\mathcal N\big((\mu_1, \ldots, \mu_k)^\top, \operatorname{diag}(\sigma_1^2, \ldots, \sigma_k^2)\big) \,\Big\|\, \mathcal N(0, I)\Big)
# = \frac12 \sum_{i=1}^k \big(\sigma_i^2 + \mu_i^2 - \ln \sigma_i^2 - 1\big).
# $$
#
# <!-- BEGIN SOLUTION both densities factorise over coordinates; use E[z_i^2] = sigma_i^2 + mu_i^2 -->
# Both distributions factorise over coordinates, so the log-ratio is a sum over $i$ and so is the
# KL. For one coordinate, with $q_i = \mathcal N(\mu_i, \sigma_i^2)$ and $z_i \sim q_i$,
#
# $$
# \log \frac{q_i(z_i)}{\mathcal N(z_i; 0, 1)}
# = -\tfrac12 \log 2\pi\sigma_i^2 - \frac{(z_i - \mu_i)^2}{2\sigma_i^2} + \tfrac12 \log 2\pi + \frac{z_i^2}{2}.
# $$
#
# Under $q_i$, $\mathbb E[(z_i - \mu_i)^2] = \sigma_i^2$ and $\mathbb E[z_i^2] = \sigma_i^2 + \mu_i^2$, so
#
# $$
# \mathrm{KL}(q_i \,\|\, \mathcal N(0, 1)) = -\tfrac12 \log \sigma_i^2 - \tfrac12 + \tfrac12(\sigma_i^2 + \mu_i^2),
# $$
#
# and summing over $i$ gives the formula. Each term is $\ge 0$ (1.4), and zero exactly at
# $\mu_i = 0, \sigma_i = 1$: $\sigma^2 - \log\sigma^2 - 1 \ge 0$ is $\log t \le t - 1$ again.
# <!-- END SOLUTION -->

# %% [markdown]
# Implement it for a batch: `mu` and `log_var` $= \log\sigma^2$ of shape `[batch, k]`, returning
# `[batch]`. The VAE of Section 4 uses exactly this function: its encoder outputs `log_var`
# because any real number is a valid log-variance, and it trains through the KL, so keep
# everything in torch (gradients must flow).


# %%
def kl_diag_std_normal(mu, log_var):
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) for each row: [batch, k] -> [batch]."""
    ### BEGIN SOLUTION sigma^2 = exp(log_var); sum over the last axis only
    return 0.5 * (log_var.exp() + mu**2 - log_var - 1).sum(-1)
    ### END SOLUTION


# %%
check.kl_diag_std_normal(kl_diag_std_normal)

# %% [markdown]
# Closed form, `torch.distributions.kl_divergence` and Monte Carlo must agree. The Monte Carlo
# estimate $\frac1N\sum_j \log\frac{q(z_j)}{\mathcal N(z_j; 0, I)}$, $z_j \sim q$, is unbiased with
# standard error $\hat\sigma / \sqrt N$; with a fixed seed we require it within 4 standard errors
# (a fluke that large has probability $6 \cdot 10^{-5}$ per estimate).

# %%
k = 3
mu_q = torch.tensor([[0.0, 0.0, 0.0], [1.0, -0.5, 2.0], [0.3, 0.1, -0.2], [-1.5, 0.0, 0.7]])
log_var_q = torch.tensor([[0.0, 0.0, 0.0], [0.5, -1.0, 0.2], [-2.0, 1.0, 0.0], [1.5, 1.5, -0.5]])
q_dist = Independent(Normal(mu_q, (0.5 * log_var_q).exp()), 1)
std_normal = Independent(Normal(torch.zeros(k), torch.ones(k)), 1)

closed = bayes.kl_diag_std_normal(mu_q, log_var_q)
assert torch.allclose(closed, kl_divergence(q_dist, std_normal), rtol=0, atol=1e-12)
assert closed[0] == 0  # q = N(0, I)

n_mc = pick(full=400_000, fast=50_000)
z_mc = q_dist.sample((n_mc,))  # [n_mc, batch, k]
log_ratio = q_dist.log_prob(z_mc) - std_normal.log_prob(z_mc)
mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n_mc)
assert ((mc - closed).abs() <= 4 * se + 1e-12).all(), (mc, closed, se)
for c, m, s in zip(closed.tolist(), mc.tolist(), se.tolist()):
    print(f"closed form {c:.4f}   Monte Carlo {m:.4f} ± {s:.4f}")

# %% [markdown]
# How the Monte Carlo estimate settles: the running mean for one $q$, with its $\pm 2$ standard
# error band, closing in on the closed form like $1/\sqrt N$.

# %%
j = 1
counts = torch.arange(1, n_mc + 1)
running = log_ratio[:, j].cumsum(0) / counts
shown = torch.logspace(0, math.log10(n_mc), 500).long().unique() - 1  # enough points for a log axis
counts, running = counts[shown], running[shown]
band = 2 * log_ratio[:, j].std() / counts.sqrt()
fig, ax = plt.subplots(figsize=(7, 3))
ax.fill_between(counts, closed[j] - band, closed[j] + band, alpha=0.3, label="closed form ± 2 se")
ax.plot(counts, running, lw=1, label="running Monte Carlo mean")
ax.axhline(closed[j].item(), color="k", lw=0.8)
ax.set(xscale="log", xlabel="samples N", ylabel="KL", ylim=(closed[j] - 2, closed[j] + 2))
ax.legend()
plt.show()

# %% [markdown]
# ## 1.6 The evidence decomposes into the ELBO and a KL
#
# Derive Equation (7) of Tzikas, Likas and Galatsanos, *The Variational Approximation for Bayesian
# Inference*: for observed $x$, latent $z$ and *any* distribution $q(z)$,
#
# $$
# \log p(x) = F(q) + \mathrm{KL}\big(q(z) \,\|\, p(z \mid x)\big), \qquad
# F(q) = \int q(z) \log \frac{p(x, z)}{q(z)}\, dz,
# $$
#
# and conclude that $F(q)$, the *evidence lower bound* (ELBO), is at most $\log p(x)$, with equality
# exactly at the posterior. Then compute $F$ in closed form for the conjugate model of 1.3 and
# $q(\mu) = \mathcal N(m, s^2)$.
#
# <!-- BEGIN SOLUTION log p(x) does not depend on z: average it under q, then split p(x) = p(x, z) / p(z | x) -->
# Since $\log p(x)$ does not depend on $z$ and $q$ integrates to one,
#
# $$
# \log p(x) = \int q(z) \log p(x)\, dz
# = \int q(z) \log \frac{p(x, z)}{p(z \mid x)}\, dz
# = \underbrace{\int q(z) \log \frac{p(x, z)}{q(z)}\, dz}_{F(q)}
# + \underbrace{\int q(z) \log \frac{q(z)}{p(z \mid x)}\, dz}_{\mathrm{KL}(q \,\|\, p(z \mid x))},
# $$
#
# multiplying and dividing by $q(z)$ inside the log. The KL is $\ge 0$ (1.4), so
# $F(q) \le \log p(x)$, with equality if and only if $q(z) = p(z \mid x)$. Maximising $F$ over $q$
# therefore minimises the KL to the posterior, without ever computing $p(x)$: this is variational
# inference.
#
# **The conjugate model.** $F(q) = \mathbb E_q[\log p(x \mid \mu)] + \mathbb E_q[\log p(\mu)] - \mathbb E_q[\log q(\mu)]$.
# Under $q = \mathcal N(m, s^2)$: $\mathbb E_q[(x_i - \mu)^2] = (x_i - m)^2 + s^2$,
# $\mathbb E_q[\mu^2] = m^2 + s^2$, and the entropy of a Gaussian is $-\mathbb E_q[\log q] = \tfrac12 \log 2\pi e s^2$. So
#
# $$
# F(m, s^2) = -\frac n2 \log 2\pi\sigma^2 - \frac{\sum_i (x_i - m)^2 + n s^2}{2\sigma^2}
# - \frac12 \log 2\pi\sigma_\mu^2 - \frac{m^2 + s^2}{2\sigma_\mu^2} + \frac12 \log 2\pi e s^2.
# $$
#
# Setting $\partial F / \partial m = 0$ and $\partial F / \partial s^2 = 0$ recovers $m = \mu_N$ and
# $1/s^2 = 1/\sigma_\mu^2 + n/\sigma^2$: the ELBO's maximiser is the exact posterior of 1.3.
# <!-- END SOLUTION -->


# %%
def elbo_conjugate(m, s2, x, prior_var=1.0, noise_var=1.0):
    """F(q) for q(mu) = N(m, s2): m, s2 numbers (0-dim tensors), x: [n]. Returns a number."""
    ### BEGIN SOLUTION expected log-likelihood + expected log-prior + entropy of q
    n = x.shape[-1]
    expected_log_lik = (-0.5 * n * math.log(2 * math.pi * noise_var)
                        - 0.5 * (((x - m) ** 2).sum() + n * s2) / noise_var)
    expected_log_prior = -0.5 * math.log(2 * math.pi * prior_var) - 0.5 * (m**2 + s2) / prior_var
    entropy = 0.5 * torch.log(2 * math.pi * math.e * s2)
    return expected_log_lik + expected_log_prior + entropy
    ### END SOLUTION


# %%
check.elbo_conjugate(elbo_conjugate)

# %% [markdown]
# Equation (7) on the conjugate model, with the reference implementation and the first ten
# observations: the identity holds to $10^{-10}$ for a thousand random $q$'s, the ELBO never exceeds
# the exact log evidence (computed independently, as the marginal Gaussian
# $\mathcal N(x; 0, \sigma^2 I + \sigma_\mu^2 \mathbf 1 \mathbf 1^\top)$), and reaches it at the posterior.
# A Monte Carlo estimate of $F$ (the average of $\log p(x, \mu) - \log q(\mu)$ over $\mu \sim q$,
# which is how Sections 3 to 6 estimate the ELBO) agrees with the closed form.

# %%
x10 = x_all[:10]
n10 = x10.numel()
marginal = MultivariateNormal(torch.zeros(n10), torch.eye(n10) + torch.ones(n10, n10))
log_ev = bayes.log_evidence(x10)
assert abs(log_ev - marginal.log_prob(x10)) < 1e-10

post_mean, post_var = bayes.posterior_params(x10)
exact_posterior = Normal(post_mean, post_var.sqrt())
m_rand, s2_rand = 3 * torch.randn(1000), torch.rand(1000) * 2 + 1e-3
elbo_rand = bayes.elbo_conjugate(m_rand, s2_rand, x10)
kl_rand = kl_divergence(Normal(m_rand, s2_rand.sqrt()), exact_posterior)
assert ((elbo_rand + kl_rand - log_ev).abs() < 1e-10).all()  # Equation (7)
assert (elbo_rand <= log_ev).all()                              # a lower bound ...
assert abs(bayes.elbo_conjugate(post_mean, post_var, x10) - log_ev) < 1e-10  # ... and tight

m0, s20 = torch.tensor(0.5), torch.tensor(0.3)
mu_s = Normal(m0, s20.sqrt()).sample((n_mc,))
log_w = (bayes.log_likelihood(mu_s, x10) + Normal(0.0, 1.0).log_prob(mu_s)
         - Normal(m0, s20.sqrt()).log_prob(mu_s))
elbo_mc, elbo_se = log_w.mean(), log_w.std() / math.sqrt(n_mc)
assert abs(elbo_mc - bayes.elbo_conjugate(m0, s20, x10)) < 4 * elbo_se
print(f"log p(x) = {log_ev:.4f}; at q = N({m0:.1f}, {s20:.1f}): ELBO = "
      f"{bayes.elbo_conjugate(m0, s20, x10):.4f} (Monte Carlo {elbo_mc:.4f} ± {elbo_se:.4f})")

# %% [markdown]
# ### The gap is the KL
#
# Left: the ELBO as $q$'s mean moves, for a few widths $s^2$, under the flat line $\log p(x)$ that
# no $q$ can exceed; only the curve with $s^2 = \sigma_N^2$ touches it, at $m = \mu_N$. Right: the
# whole landscape over $(m, s^2)$, maximised at the exact posterior (the star).

# %%
m_line = torch.linspace(post_mean.item() - 1.5, post_mean.item() + 1.5, 301)
m_grid = torch.linspace(post_mean.item() - 1.5, post_mean.item() + 1.5, 121)
s2_grid = torch.logspace(-2.5, 0.5, 121)
elbo_grid = bayes.elbo_conjugate(m_grid[:, None], s2_grid[None, :], x10)
i_best, j_best = divmod(elbo_grid.argmax().item(), len(s2_grid))
assert abs(m_grid[i_best] - post_mean) < 0.05 and abs(s2_grid[j_best].log() - post_var.log()) < 0.05

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for factor in [0.25, 1.0, 4.0]:
    axes[0].plot(m_line, bayes.elbo_conjugate(m_line, factor * post_var, x10),
                 label=f"ELBO, s² = {factor:g} σ_N²")
axes[0].axhline(log_ev.item(), color="k", ls="--", label="log p(x)")
axes[0].set(xlabel="m (mean of q)", ylabel="nats", ylim=(log_ev.item() - 8, log_ev.item() + 1),
            title="ELBO = log p(x) − KL(q ‖ p(μ | x))")
axes[0].legend(fontsize=8)
image = axes[1].contourf(m_grid, s2_grid, (log_ev - elbo_grid).T.clamp(max=8), levels=30,
                         cmap="viridis")
axes[1].plot(post_mean, post_var, "r*", ms=12, label="exact posterior")
axes[1].set(yscale="log", xlabel="m (mean of q)", ylabel="s² (variance of q)",
            title="the gap log p(x) − ELBO = KL")
axes[1].legend()
fig.colorbar(image, ax=axes[1], label="log p(x) − ELBO in nats (cut off at 8)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Explore the gap yourself: move $q$'s mean and log-variance, and watch $q$ against the posterior
# and the ELBO against $\log p(x)$.

# %%
mu_axis = torch.linspace(post_mean.item() - 3, post_mean.item() + 3, 401)


@interact(m=FloatSlider(value=0.0, min=-2.0, max=4.0, step=0.05, description="m"),
          log_s2=FloatSlider(value=0.0, min=-5.0, max=1.0, step=0.1, description="log s²"))
def explore_elbo(m, log_s2):
    s2 = torch.tensor(log_s2).exp()
    elbo = bayes.elbo_conjugate(m, s2, x10).item()
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [3, 1]})
    ax.plot(mu_axis, exact_posterior.log_prob(mu_axis).exp(), "k", label="p(μ | x)")
    ax.plot(mu_axis, Normal(m, s2.sqrt()).log_prob(mu_axis).exp(), label="q(μ)")
    ax.set(xlabel="μ", ylabel="density", title=f"KL(q ‖ p(μ | x)) = {log_ev.item() - elbo:.3f}")
    ax.legend()
    bar.bar(["log p(x)", "ELBO"], [log_ev.item(), elbo], color=["k", "C1"])
    bar.set(ylabel="nats", ylim=(log_ev.item() - 10, log_ev.item() + 1))
    plt.show()


# %% [markdown]
# ## What to take away
#
# - A transformed density picks up $-\log\lvert\det J\rvert$; forget it and the "density" no longer
#   integrates to one (1.1).
# - A belief network is a factorised joint; exact inference sums over everything unobserved, which
#   is exponential in the number of hidden variables (1.2).
# - Conjugacy makes the posterior exact and cheap; it is the benchmark for every approximation (1.3).
# - $\mathrm{KL} \ge 0$ and is not symmetric: which way round matters, as Section 2 shows (1.4);
#   between diagonal Gaussians it has a closed form (1.5).
# - $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q \,\|\, p(z \mid x))$: maximising the ELBO is
#   approximate posterior inference (1.6). Section 2 does it when the posterior is *not* Gaussian.
