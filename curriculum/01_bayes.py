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
# > **Student version.** Fill in every `NotImplementedError` stub and every *"Your answer"*
# > prompt; the self-check cell after each exercise tells you what is right or wrong.
# > Generated from `solutions/01_bayes.py`; instructors regenerate it with
# > `python -m nfcourse build-curriculum`.

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
# **Your answer:** _write your derivation or explanation here._ *Hint: invert the map, apply the change of variables formula, then collect the quadratic form*

# %% [markdown]
# Implement $\log p(x)$ for a batch of points `x` of shape `[n, d]`, returning shape `[n]`.
# Solve linear systems with `torch.linalg.solve` rather than inverting `A`, and get
# $\log\lvert\det A\rvert$ from `torch.linalg.slogdet`.


# %%
def log_density_linear(x, A, b):
    """log p(x) for x = A z + b, z ~ N(0, I), as above. x: [n, d], A: [d, d], b: [d]. Returns [n]."""
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: solve for z = A^-1 (x - '
        'b) row by row, then use your derivation).')


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
# **Your answer:** _write your derivation or explanation here._ *Hint: each node contributes p(node | parents); a query sums the joint over the unobserved variables*

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
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: p_c[:, None, None, None]'
        ' lines p(C) up with axis 0; likewise the rest).')


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
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: restrict to the evidence'
        ' with narrow, sum over all other axes, normalise).')


# %%
check.posterior(posterior)

# %% [markdown]
# > *Not shown here, since it gives an answer away:* the answers to (a) to (c), each checked a
# > different way from how it was computed, and explaining away in a picture. Find it in
# > `solutions/01_bayes.py` once you have done the exercise.

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
# **Your answer:** _write your derivation or explanation here._ *Hint: the log-likelihood is a quadratic in mu; complete the square for the posterior*

# %%
mu_true = 1.5
n_max = 100
x_all = mu_true + torch.randn(n_max)  # sigma^2 = 1


# %%
def log_likelihood(mu, x, noise_var=1.0):
    """log p(D; mu) for i.i.d. x ~ N(mu, noise_var). mu: a number (0-dim tensor), x: [n]."""
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: sum the log-densities of'
        ' the observations, normalising constant included).')


# %%
check.log_likelihood(log_likelihood)


# %%
def mle(x):
    """The maximum-likelihood estimate of mu from the data x: [n]."""
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: set the derivative of '
        'the log-likelihood to zero).')


# %%
check.mle(mle)


# %%
def posterior_params(x, prior_var=1.0, noise_var=1.0):
    """Mean and variance of p(mu | D) under the prior mu ~ N(0, prior_var), as a tuple."""
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: read mean and variance '
        'off the completed square of your derivation (c)).')


# %%
check.posterior_params(posterior_params)


# %%
def map_estimate(x, prior_var=1.0, noise_var=1.0):
    """The MAP estimate of mu: the maximiser of p(mu | D)."""
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: where is a Gaussian '
        'density highest?).')


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

# %% [markdown]
# > *Not shown here, since it gives an answer away:* the closed forms of (b) and (c) in the
# > exercise's setting, checked. Find it in `solutions/01_bayes.py` once you have done the
# > exercise.

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
# **Your answer:** _write your derivation or explanation here._ *Hint: write -KL as an expectation of log(p/q) under q and apply the bound inside it*

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
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: torch.xlogy(a, b) '
        'computes a * log(b) and is 0 where a is 0).')


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
# > *Not shown here, since it gives an answer away:* the KL landscapes (which way round
# > matters), which answer exercise 2.1 of Section 2. Find it in `solutions/01_bayes.py` once
# > you have done the exercise.

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
# **Your answer:** _write your derivation or explanation here._ *Hint: both densities factorise over coordinates; use E[z_i^2] = sigma_i^2 + mu_i^2*

# %% [markdown]
# Implement it for a batch: `mu` and `log_var` $= \log\sigma^2$ of shape `[batch, k]`, returning
# `[batch]`. The VAE of Section 4 uses exactly this function: its encoder outputs `log_var`
# because any real number is a valid log-variance, and it trains through the KL, so keep
# everything in torch (gradients must flow).


# %%
def kl_diag_std_normal(mu, log_var):
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) for each row: [batch, k] -> [batch]."""
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: sigma^2 = exp(log_var); '
        'sum over the last axis only).')


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
# **Your answer:** _write your derivation or explanation here._ *Hint: log p(x) does not depend on z: average it under q, then split p(x) = p(x, z) / p(z | x)*


# %%
def elbo_conjugate(m, s2, x, prior_var=1.0, noise_var=1.0):
    """F(q) for q(mu) = N(m, s2): m, s2 numbers (0-dim tensors), x: [n]. Returns a number."""
    # YOUR CODE HERE
    raise NotImplementedError(
        'Exercise not done yet: replace this line with your code (hint: expected log-likelihood '
        '+ expected log-prior + entropy of q).')


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
