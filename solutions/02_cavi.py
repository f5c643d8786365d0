# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Section 2: Variational inference and CAVI
#
# Exact posteriors are rarely available. Variational inference (VI) picks a tractable family
# $\mathcal Q$ and finds the member closest to the posterior in the *reverse* KL divergence,
# which amounts to maximising the evidence lower bound (ELBO)
#
# $$\mathrm{ELBO}(q) = \mathbb E_q[\log p(\mathbf z, \mathbf x)] - \mathbb E_q[\log q(\mathbf z)]
#   = \log p(\mathbf x) - \mathrm{KL}\big(q(\mathbf z)\,\|\,p(\mathbf z \mid \mathbf x)\big).$$
#
# With a mean-field family $q(\mathbf z) = \prod_j q_j(z_j)$ the ELBO can be maximised one factor
# at a time: coordinate ascent VI (CAVI). This notebook answers every exercise of section 2 of
# the curriculum:
#
# | # | exercise | where |
# |---|---|---|
# | 2.1 | forward vs reverse KL (and the *Additional* numerical fit) | §2.1 |
# | 2.2 | EM vs variational inference | §2.2 |
# | 2.3 | ELBO as a KL divergence? | §2.3 |
# | 2.4 | the expected log-likelihood term of Blei et al. eq. (21) | §2.4 |
# | 2.5 | the biggest challenge to CAVI's scalability | §2.5 |
# | 2.6 | why complete conditionals in the exponential family help | §2.6 |
# | 2.7 | the rest of the ELBO, and the CAVI updates from its gradient (*Additional*) | §2.7 |
# | 2.8 | CAVI for the Bayesian Gaussian mixture, against gradient ascent (*Additional*) | §2.8 |
#
# Reading: Blei, Kucukelbir & McAuliffe (2017), *Variational Inference: A Review for
# Statisticians*, §2–3 (we call it "Blei et al."); Tzikas, Likas & Galatsanos (2008), *The
# Variational Approximation for Bayesian Inference*. The reference code lives in
# `nfcourse.vi` (`kl_fit`, `mixture`); the notebook imports it rather than copying it. Its
# source and docstrings state the answers: open them after the exercises, not before.
#
# **Notation.** From 2.2 on, the model is Blei et al.'s Bayesian mixture of unit-variance
# Gaussians (defined before 2.4), and we keep their symbols. Where a symbol means something else
# in another section, the table says so:
#
# | symbol | meaning in this section | code name |
# |---|---|---|
# | $P$; $Q = \mathcal N(a, b^2)$ | 2.1: a two-bump target and the Gaussian fitted to it | `P`; `mean`, `log_std` $= \log b$ |
# | $x_i$; $n$, $D$ | data point $i$; the number of points and their dimension | `x` $[n, D]$ |
# | $\mu_k$, $K$ | the mean of mixture component $k$ (a latent variable); the number of components | `sim.mu` (the simulated truth), `K` |
# | $c_i$ | the component of point $i$, a one-hot vector (a latent variable) | `sim.c` |
# | $\sigma^2$ | the **prior** variance of each $\mu_k$ (Blei et al.'s notation; the noise variance is 1). In Section 1, $\sigma^2$ was the **noise** variance and $\sigma_\mu^2$ the prior variance | `SIGMA2`, `sigma2` |
# | $m_k$, $s_k^2$ | the mean and variance of the factor $q(\mu_k) = \mathcal N(m_k, s_k^2 I)$ (as $m$, $s^2$ in Section 1) | `m` $[K, D]$, `s2` $[K]$ |
# | $\varphi_{ik}$ | $q(c_{ik} = 1)$: the probability that $q$ gives to point $i$ belonging to component $k$ (Blei et al.'s $\varphi$). In Section 4, $\phi$ is the encoder's weights, unrelated | `phi` $[n, K]$ |
# | $\theta$ | 2.2: model parameters that EM estimates by a point (Section 4: the decoder's weights) | |
# | $\eta_j$, $t$, $a$ | 2.6: the natural parameter, sufficient statistics and log-normaliser of an exponential family (Section 4: $\eta$ is the decoder's logits) | |
# | $\mathrm{ELBO}(q)$, $\mathcal L$ | the evidence lower bound ($F(q)$ in Section 1) | `mixture.elbo`, `res.elbo` |

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
from ipywidgets import IntSlider
from torch.distributions import Categorical, Normal

from nfcourse import bayes, pick, seed_everything
from nfcourse.checks import vi as check
from nfcourse.checks import yours_or_reference
from nfcourse.vi import kl_fit, mixture
from nfcourse.widgets import interact

# The problems here are tiny: one thread is faster than several (threads only add overhead).
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
_ = seed_everything(0)

# Every size in one place; NFCOURSE_FAST=1 (the tests) picks the small ones.
KL_STEPS = pick(full=1500, fast=600)      # gradient-descent steps per KL fit
KL_NODES = pick(full=801, fast=401)       # quadrature nodes for the KL integrals
KL_GRID = pick(full=(33, 13), fast=(17, 7))  # starting points (means x log-stds) for reverse KL
MC_SAMPLES = pick(full=2000, fast=300)    # Monte Carlo samples per step of the sampling-based fit
MC_STEPS = pick(full=1500, fast=400)
N_1D = pick(full=1000, fast=300)          # data points, 1-D mixture (K = 3)
N_2D = pick(full=2000, fast=500)          # data points, 2-D mixture (K = 5)
RESTARTS = pick(full=10, fast=3)          # CAVI restarts (the ELBO has local optima)
SIGMA2 = 25.0                             # prior variance of the component means, sigma^2

# %% [markdown]
# ## 2.1 Forward vs reverse KL
#
# *Let $P = \tfrac12\mathcal N(-5, 1) + \tfrac12\mathcal N(5, 1)$. How does the Gaussian $Q$
# look that minimises (i) $\mathrm{KL}(Q\|P)$ and (ii) $\mathrm{KL}(P\|Q)$? Which behaviour is
# preferable for posterior inference, and which objective is more tractable? Additional: fit
# the optimal $Q$ numerically in each case.*

# %% [markdown]
# <!-- BEGIN SOLUTION think about where each KL puts an infinite penalty -->
# **(ii) Forward, $\mathrm{KL}(P\|Q) = \mathbb E_P[\log p - \log q]$: mass-covering.** The
# penalty is large wherever $P$ has mass and $q$ is small, so $Q$ must cover *both* bumps. For a
# Gaussian $Q = \mathcal N(a, b^2)$ only the cross-entropy depends on $Q$:
#
# $$-\mathbb E_P[\log q(x)] = \tfrac12\log(2\pi b^2) + \frac{\mathrm{Var}_P[x] + (\mathbb E_P[x] - a)^2}{2b^2}.$$
#
# Setting the derivatives to zero, $\partial_a: (a - \mathbb E_P x)/b^2 = 0$ and
# $\partial_b: 1/b - (\mathrm{Var}_P x + (\mathbb E_P x - a)^2)/b^3 = 0$, gives *moment matching*:
# $a = \mathbb E_P[x] = 0$ and $b^2 = \mathrm{Var}_P[x] = 1 + 25 = 26$ (within-component variance
# plus the variance of the component means). $Q$ puts its mode at $0$, where $P$ has almost no mass.
#
# **(i) Reverse, $\mathrm{KL}(Q\|P) = \mathbb E_Q[\log q - \log p]$: mode-seeking.** The
# penalty is large wherever $Q$ has mass and $p$ is small ("zero-forcing"): a Gaussian stretched
# over both bumps pays $\log p(0) = -12.5 - \tfrac12\log 2\pi \approx -13.4$ in the valley. The
# best $Q$ sits on one bump,
# $Q \approx \mathcal N(\pm5, 1)$, where
# $\mathrm{KL} = \log 2 - \mathbb E_Q\big[\log(1 + q'(x)/q(x))\big] \approx \log 2$ ($q'$ the other
# component, negligible under $Q$). By symmetry there are two such optima, and which one we
# find depends on the initialisation. The numerical fit below finds a third, much worse local
# minimum as well: a wide Gaussian centred at $0$ ($b \approx 4.2$, KL $\approx 3.31$; the fit is
# deterministic quadrature and gradient descent, so every run prints about these numbers).
#
# **Which is preferable for posterior inference?** It depends on the use. The reverse KL
# under-estimates posterior variance and misses modes, but its $Q$ puts mass only where the
# posterior is plausible: its samples and its mean are "typical" values. The forward KL gets
# the overall spread right but its mode can sit where the posterior has no mass at all (here
# at $0$). For multimodal posteriors that arise from symmetries (label switching in mixtures),
# one mode is all we want, and mode-seeking is the better behaviour.
#
# **Which is more tractable?** The reverse KL. It needs expectations under $Q$, which we
# choose to be easy to sample and integrate, and only the *unnormalised* posterior: with
# $p(z\mid x) = p(z, x)/p(x)$, $\mathrm{KL}(Q\|P) = \mathbb E_Q[\log q - \log p(z, x)] + \log p(x)$
# and the constant $\log p(x)$ drops out (this is the ELBO). The forward KL needs expectations
# under the posterior itself, which is the very thing we cannot compute.
# <!-- END SOLUTION -->

# %% [markdown]
# ### Exercise: the reverse KL by sampling
#
# In general $\mathrm{KL}(Q\|P)$ has no closed form, and we estimate it by Monte Carlo.
# Write $x = a + b\,\varepsilon$ with $\varepsilon \sim \mathcal N(0, 1)$ (the
# *reparameterisation*), so that the estimate
# $\frac1n\sum_s [\log q(x_s) - \log p(x_s)]$ stays differentiable in $a$ and $\log b$.
# Use `torch.randn` for $\varepsilon$, and `p.log_prob`.

# %%
def reverse_kl_mc(p, mean, log_std, n):
    """An n-sample reparameterised Monte Carlo estimate of KL(Q || p), Q = N(mean, exp(log_std)^2).

    mean, log_std: 0-dim tensors (requires_grad); returns a 0-dim tensor.
    """
    ### BEGIN SOLUTION x = mean + exp(log_std) * eps; average log q(x) - log p(x)
    std = log_std.exp()
    x = mean + std * torch.randn(n, dtype=mean.dtype)
    return (Normal(mean, std).log_prob(x) - p.log_prob(x)).mean()
    ### END SOLUTION


# %%
check.reverse_kl_mc(reverse_kl_mc)

# %% [markdown]
# <!-- SOLUTION ONLY the numerical fits of 2.1 (forward KL; reverse KL by sampling and from a grid of starts) and their picture -->
# **Numerically.** Both KLs are one-dimensional integrals. `kl_fit.forward_kl` and
# `kl_fit.reverse_kl` compute them by quadrature on a fine grid (the module docstring explains
# why Gauss–Hermite quadrature is a poor choice here), differentiably in $a$ and $\log b$, so
# gradient descent can fit $Q$; so can the Monte Carlo estimate of the exercise above. The
# forward fit, from a deliberately bad start:

# %%
### SOLUTION ONLY
P = kl_fit.bimodal(loc=5.0, scale=1.0)
fwd = kl_fit.fit_gaussian(P, kl_fit.forward_kl, mean0=torch.tensor([-3.0, 4.0]),
                          log_std0=torch.tensor([0.0, 1.0]), steps=KL_STEPS, lr=0.1,
                          optimizer="adam", n_nodes=KL_NODES)
# Moment matching, from P's components: E[x] = sum_j w_j mu_j, and by the law of total
# variance Var[x] = sum_j w_j s_j^2 + sum_j w_j (mu_j - E[x])^2 (= 1 + 25).
w_P, mu_P = P.mixture_distribution.probs, P.component_distribution.loc
s_P = P.component_distribution.scale
mean_P = (w_P * mu_P).sum()
var_P = (w_P * s_P ** 2).sum() + (w_P * (mu_P - mean_P) ** 2).sum()
print("forward-KL fits: mean", [round(v, 4) for v in fwd.mean.tolist()],
      "variance", [round(v, 4) for v in (fwd.std ** 2).tolist()],
      f"\nmoments of P:    mean {mean_P.item():.4f}, variance {var_P.item():.4f}")
assert torch.allclose(fwd.mean, mean_P.expand(2), atol=1e-3), "forward KL: mean should be E_P[x]"
assert torch.allclose(fwd.std ** 2, var_P.expand(2), atol=1e-2), "forward KL: variance Var_P[x]"

# %% [markdown]
# <!-- SOLUTION ONLY -->
# With the sampling estimator (the reference `kl_fit.reverse_kl_mc`) and Adam, a fit that
# starts at $a = 2$ walks to the right-hand mode:

# %%
### SOLUTION ONLY
_ = seed_everything(1)
mean = torch.tensor(2.0, requires_grad=True)
log_std = torch.tensor(0.5, requires_grad=True)
opt = torch.optim.Adam([mean, log_std], lr=0.05)
for _ in range(MC_STEPS):
    opt.zero_grad()
    kl_fit.reverse_kl_mc(P, mean, log_std, MC_SAMPLES).backward()
    opt.step()
print(f"sampling-based reverse-KL fit: a = {mean.item():.3f}, b = {log_std.exp().item():.3f}")
assert abs(mean.item() - 5.0) < 0.1 and abs(log_std.exp().item() - 1.0) < 0.1

# %% [markdown]
# <!-- SOLUTION ONLY -->
# **Which start reaches which optimum?** We run plain gradient descent on the (quadrature)
# reverse KL from a grid of starting points $(a_0, \log b_0)$, all at once, and label each by
# the optimum it reaches. The step is $1.0$ in $a$ and $0.08$ in $\log b$: the KL curves far
# more steeply in $\log b$ than in $a$ (about 2 times at the modes, over 300 times at the wide
# centre minimum; computed after the fit), and one step size for both would crawl in $a$.

# %%
### SOLUTION ONLY
a0, l0 = torch.meshgrid(torch.linspace(-8, 8, KL_GRID[0]), torch.linspace(-1, 2, KL_GRID[1]),
                        indexing="ij")
rev = kl_fit.fit_gaussian(P, kl_fit.reverse_kl, a0, l0, steps=KL_STEPS, lr=(1.0, 0.08),
                          optimizer="gd", n_nodes=KL_NODES, desc="reverse-KL fits")
label = torch.where(rev.mean < -2.5, -1, torch.where(rev.mean > 2.5, 1, 0))  # left/centre/right
for name, k in [("left mode", -1), ("centre (wide)", 0), ("right mode", 1)]:
    sel = label == k
    print(f"{name:14s}: {int(sel.sum()):3d} starts -> a = {rev.mean[sel].mean():+.3f}, "
          f"b = {rev.std[sel].mean():.3f}, KL = {rev.kl[sel].mean():.4f}")

# The two mode-seeking optima, with KL close to log 2 ...
for k in (-1, 1):
    sel = label == k
    assert torch.allclose(rev.mean[sel], torch.full_like(rev.mean[sel], 5.0 * k), atol=1e-2)
    assert torch.allclose(rev.std[sel], torch.ones_like(rev.std[sel]), atol=1e-2)
    assert torch.allclose(rev.kl[sel], torch.full_like(rev.kl[sel], math.log(2)), atol=1e-3)
# ... reached from every start on their side, away from the centre ...
assert (label[a0 <= -2.5] == -1).all() and (label[a0 >= 2.5] == 1).all()
# ... and a third, worse local minimum: a wide Gaussian at 0, reached from central, wide starts.
centre = label == 0
assert centre.any() and (rev.mean[centre].abs() < 0.05).all()
assert ((rev.std[centre] - 4.22).abs() < 0.05).all() and (rev.kl[centre] > 3.2).all()


def curvature_ratio(a, b):
    """∂²KL/∂(log b)² over ∂²KL/∂a² at (a, b): how much steeper the KL is in log b."""
    h = torch.autograd.functional.hessian(
        lambda v: kl_fit.reverse_kl(P, v[0], v[1], n_nodes=KL_NODES),
        torch.tensor([a, math.log(b)], dtype=torch.float64))
    return (h[1, 1] / h[0, 0]).item()


at_mode = curvature_ratio(5.0, 1.0)
at_centre = curvature_ratio(0.0, rev.std[centre].mean().item())
print(f"curvature in log b over curvature in a: {at_mode:.1f} at a mode, "
      f"{at_centre:.0f} at the wide centre minimum")
assert 1.5 < at_mode < 3 and at_centre > 300

# %%
### SOLUTION ONLY
x_grid = torch.linspace(-12, 12, 600)
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
ax = axes[0]
ax.fill_between(x_grid, P.log_prob(x_grid).exp(), alpha=0.3, color="gray", label="P")
ax.plot(x_grid, Normal(0.0, math.sqrt(26.0)).log_prob(x_grid).exp(), lw=2,
        label="argmin KL(P‖Q) = N(0, 26)")
for k, style in [(-1, "--"), (1, "--"), (0, ":")]:
    sel = label == k
    a, b = round(rev.mean[sel].mean().item(), 1) + 0.0, rev.std[sel].mean().item()  # no "-0.0"
    ax.plot(x_grid, Normal(a, b).log_prob(x_grid).exp(), style, lw=2,
            label=f"local min of KL(Q‖P): N({a:.1f}, {b:.2f}²)")
ax.set(xlabel="x", ylabel="density", title="Forward vs reverse KL")
ax.legend(fontsize=8)

ax = axes[1]
aa, ll = torch.meshgrid(torch.linspace(-8, 8, 121), torch.linspace(-1, 2, 61), indexing="ij")
landscape = kl_fit.reverse_kl(P, aa, ll, n_nodes=KL_NODES)
cs = ax.contour(aa, ll, landscape.log(), levels=20, cmap="Greys", linewidths=0.7)
ax.scatter(a0, l0, c=label, cmap="coolwarm", s=25, edgecolor="k", linewidth=0.3)
for i in range(0, KL_GRID[0], max(1, KL_GRID[0] // 8)):      # a few gradient-descent paths
    path_a = torch.stack([p_[i, -2] for p_ in rev.path_mean])
    path_l = torch.stack([p_[i, -2] for p_ in rev.path_log_std])
    ax.plot(path_a, path_l, color="k", lw=0.8, alpha=0.6)
ax.plot([-5, 5, 0], [0, 0, math.log(4.22)], "k*", ms=14, label="local minima")
ax.set(xlabel="initial mean a₀", ylabel="initial log b₀",
       title="Reverse KL: where each start ends (blue: left, grey: centre, red: right)")
ax.legend(loc="lower left", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# <!-- SOLUTION ONLY -->
# Starts on either side go to the mode on that side. Starts near $a_0 = 0$ that are already
# wide enough to cover both bumps settle in the shallow central minimum; narrow central starts
# fall off the ridge to one side. The contour lines are $\log \mathrm{KL}(Q\|P)$.

# %% [markdown]
# ## 2.2 EM vs variational inference
#
# *Describe how Bayesian inference of latent variables and unknown parameters can be seen as a
# special case of EM. Extend the analogy to compare CAVI with mean-field variational EM.*

# %% [markdown]
# <!-- BEGIN SOLUTION write EM as coordinate ascent on one bound, F(q, theta) -->
# EM maximises the same lower bound as VI, now also a function of parameters $\theta$:
#
# $$F(q, \theta) = \mathbb E_{q(z)}[\log p(x, z\mid\theta)] + H[q] = \log p(x\mid\theta)
#   - \mathrm{KL}(q(z)\,\|\,p(z\mid x, \theta)),$$
#
# by coordinate ascent: the **E-step** maximises over $q$ with no restriction, giving
# $q(z) = p(z\mid x, \theta)$ (the bound becomes tight); the **M-step** maximises over a point
# $\theta$.
#
# *Bayesian inference as a special case.* Make the parameters random too, with a prior, and
# put them into the latent variables: $z' = (z, \theta)$. Nothing is left for the M-step; one
# E-step over $z'$ returns the exact joint posterior $p(z, \theta\mid x)$, which is Bayesian
# inference. (Conversely, EM is "Bayesian inference" for $z$ with $q(\theta)$ restricted to a
# point mass.) The catch is that the E-step over $(z, \theta)$ is rarely tractable.
#
# *CAVI vs mean-field variational EM.* Variational EM restricts the E-step to a family, say
# $q(z) = \prod_i q(z_i)$, and updates each factor in turn,
# $q(z_i) \propto \exp \mathbb E_{-i}[\log p(x, z\mid\theta)]$; the M-step still returns a
# point $\hat\theta$. CAVI treats $\theta$ as one more latent variable with its own factor
# $q(\theta) \propto \exp \mathbb E_{q(z)}[\log p(x, z, \theta)]$: a "variational M-step" that
# returns a distribution. So variational EM is CAVI with $q(\theta)$ restricted to point masses,
# and EM is variational EM with an unrestricted E-step. In the mixture below (with
# $\theta = \boldsymbol\mu$), MAP-EM is CAVI with $s_k^2$ clamped to $0$: the E-step is
# $\varphi_{ik}\propto\exp\{x_i m_k - m_k^2/2\}$, the M-step
# $m_k = \sum_i\varphi_{ik}x_i / (1/\sigma^2 + \sum_i \varphi_{ik})$; CAVI's $\varphi$ also
# accounts for the uncertainty $s_k^2$ in each mean.
# <!-- END SOLUTION -->

# %%
# A data set from the mixture model of 2.4 to 2.8 (described before 2.4): 1-D, K = 3.
gen = torch.Generator().manual_seed(6)
sim1 = mixture.simulate(N_1D, K=3, D=1, sigma2=SIGMA2, generator=gen)
x1 = sim1.x                                            # [n, 1]

# %% [markdown]
# <!-- SOLUTION ONLY the check of 2.2 on the mixture (EM's E-step, MAP-EM against CAVI) -->
# **Check.** (a) CAVI's $\varphi$ update with $s_k^2 = 0$ is EM's E-step: the exact posterior
# $p(c_i\mid x_i, \boldsymbol\mu = \mathbf m)$, computed here independently with
# `torch.distributions`. (b) On a data set with many points per component MAP-EM and CAVI find
# nearly the same means; they differ by the $s_k^2$ terms, which shrink like $1/n_k$.

# %%
### SOLUTION ONLY
m_test = torch.tensor([[-4.0], [0.5], [3.0]])
log_prior_c = Categorical(logits=torch.zeros(3)).logits                # log(1/K)
exact = torch.softmax(Normal(m_test.T, 1.0).log_prob(x1) + log_prior_c, -1)
assert torch.allclose(mixture.update_phi(x1, m_test, torch.zeros(3)), exact, atol=1e-12)

m_em, _ = mixture.init_params(x1, 3, torch.Generator().manual_seed(0))
s2_zero = torch.zeros(3)
for _ in range(200):                                   # MAP-EM: CAVI with s^2 clamped to 0
    m_em, _ = mixture.update_m_s2(x1, mixture.update_phi(x1, m_em, s2_zero), SIGMA2)
res_em_check = mixture.cavi(x1, 3, SIGMA2,
                            *mixture.init_params(x1, 3, torch.Generator().manual_seed(0)))
perm = mixture.match_components(res_em_check.m, m_em)
gap = (m_em[perm] - res_em_check.m).abs().max().item()
print(f"MAP-EM means {[round(v, 4) for v in m_em[perm].flatten().tolist()]}"
      f"\nCAVI means   {[round(v, 4) for v in res_em_check.m.flatten().tolist()]}"
      f"\nlargest difference {gap:.2e}; CAVI's s_k^2 = "
      + ", ".join(f"{v:.2e}" for v in res_em_check.s2.tolist()))
assert gap < 10 * res_em_check.s2.max().item() + 1e-6

# %% [markdown]
# ## 2.3 ELBO as a KL divergence?
#
# *Blei et al. eq. (13) seems to allow writing $\mathrm{ELBO}(q) = -\mathrm{KL}(q(\mathbf z)\|p(\mathbf z, \mathbf x))$.
# What is the problem with this?*

# %% [markdown]
# <!-- BEGIN SOLUTION is p(z, x), as a function of z, a probability density? -->
# Algebraically $\mathbb E_q[\log q(z) - \log p(z, x)] = -\mathrm{ELBO}$, but $p(z, x)$ is
# not a probability density in $z$: it integrates to $\int p(z, x)\,dz = p(x)$, not to $1$. The
# "KL" to it is therefore not a KL divergence and lacks its defining properties. It equals
# $\mathrm{KL}(q\,\|\,p(z\mid x)) - \log p(x)$, which can be **negative** (whenever
# $p(x) > 1$, possible for densities), and it is not zero when $q$ is the exact posterior (it
# is $-\log p(x)$ there). Gibbs' inequality, the reason KL is a useful "distance", does not hold.
# The correct statement is $\mathrm{ELBO}(q) = \log p(x) - \mathrm{KL}(q(z)\,\|\,p(z\mid x))$,
# or, if one insists, a KL between *unnormalised* measures, which is a different object. (The
# same looseness is in Tzikas et al., eq. 15.) A nitpick, but it is why the ELBO is a *bound*:
# the gap is a genuine KL.
# <!-- END SOLUTION -->

# %% [markdown]
# <!-- SOLUTION ONLY the check of 2.3 on a conjugate model -->
# **Check.** A narrow conjugate model: $z\sim\mathcal N(0, 0.1^2)$, $x\mid z\sim\mathcal N(z, 0.1^2)$,
# observed $x = 0$, so $p(x) = \mathcal N(0; 0, 0.02) \approx 2.82 > 1$. With $q$ the exact posterior
# $\mathcal N(0, 0.005)$, the "KL" $\mathbb E_q[\log q - \log p(z, x)]$ is negative: a
# Monte Carlo estimate equals $-\log p(x)$. For another $q$, a Monte Carlo estimate of the
# same "KL" agrees with $\mathrm{KL}(q\,\|\,p(z\mid x)) - \log p(x)$ (the genuine KL from
# `torch.distributions`), and so does minus the closed-form ELBO of section 1
# (`bayes.elbo_conjugate`), whose gap to $\log p(x)$ (`bayes.log_evidence`) closes at the posterior.

# %%
### SOLUTION ONLY
tau2, noise2, x_obs = 0.01, 0.01, torch.tensor(0.0)
post = Normal(x_obs * tau2 / (tau2 + noise2), math.sqrt(tau2 * noise2 / (tau2 + noise2)))
z = post.sample((200_000,))
log_joint = Normal(0.0, math.sqrt(tau2)).log_prob(z) + Normal(z, math.sqrt(noise2)).log_prob(x_obs)
fake_kl = (post.log_prob(z) - log_joint).mean().item()
log_px = Normal(0.0, math.sqrt(tau2 + noise2)).log_prob(x_obs).item()
print(f"'KL(q || p(z, x))' = {fake_kl:.4f}, -log p(x) = {-log_px:.4f}")
assert fake_kl < 0 and abs(fake_kl + log_px) < 1e-9  # the integrand is constant for q = posterior

x_data = x_obs.reshape(1)                    # section 1's functions take the data as [n]
assert abs(bayes.log_evidence(x_data, tau2, noise2).item() - log_px) < 1e-12
assert abs(bayes.elbo_conjugate(post.mean, post.variance, x_data, tau2, noise2).item()
           - log_px) < 1e-12                 # the bound is tight at the posterior
q_other = Normal(0.03, 0.05)
z_other = q_other.sample((200_000,))
terms = q_other.log_prob(z_other) - (Normal(0.0, math.sqrt(tau2)).log_prob(z_other)
                                     + Normal(z_other, math.sqrt(noise2)).log_prob(x_obs))
genuine_kl = torch.distributions.kl_divergence(q_other, post).item()
neg_elbo = -bayes.elbo_conjugate(0.03, 0.05 ** 2, x_data, tau2, noise2).item()
print(f"another q: 'KL' by Monte Carlo {terms.mean():.4f}, KL(q || posterior) - log p(x) "
      f"{genuine_kl - log_px:.4f}, -ELBO {neg_elbo:.4f}")
se = terms.std().item() / math.sqrt(len(terms))
assert abs(terms.mean().item() - (genuine_kl - log_px)) < 4 * se   # "KL to p(z, x)" = KL - log p(x)
assert abs(neg_elbo - (genuine_kl - log_px)) < 1e-9

# %% [markdown]
# ## The model: a Bayesian mixture of unit-variance Gaussians (Blei et al. §2–3)
#
# $$\mu_k \sim \mathcal N(0, \sigma^2 I),\quad c_i \sim \mathrm{Cat}(\tfrac1K, \dots, \tfrac1K),\quad
# x_i\mid c_i, \boldsymbol\mu \sim \mathcal N(c_i^\top\boldsymbol\mu, I),$$
#
# for $k = 1..K$ and $i = 1..n$, with the mean-field family
# $q(\boldsymbol\mu, \mathbf c) = \prod_k \mathcal N(\mu_k; m_k, s_k^2 I)\prod_i \mathrm{Cat}(c_i; \varphi_i)$.
# In the code: `x` $[n, D]$, `phi` $[n, K]$, `m` $[K, D]$, `s2` $[K]$, `SIGMA2` $=\sigma^2 = 25$.
#
# ## 2.4 The expected log-likelihood term of eq. (21)
#
# *Show that $\mathbb E[\log p(x_i\mid c_i, \boldsymbol\mu; \varphi_i, \mathbf m, \mathbf s^2)]
# = -\tfrac12\big[\log 2\pi + \sum_k \varphi_{ik}(x_i^2 + m_k^2 + s_k^2 - 2x_i m_k)\big]$ (one dimension).*

# %% [markdown]
# <!-- BEGIN SOLUTION c_i is one-hot, and c_i and mu_k are independent under q -->
# Since $c_i$ is one-hot, $\log p(x_i\mid c_i, \boldsymbol\mu) = \sum_k c_{ik}\log\mathcal N(x_i; \mu_k, 1)
# = -\tfrac12\log 2\pi - \tfrac12\sum_k c_{ik}(x_i - \mu_k)^2$, using $\sum_k c_{ik} = 1$ for the
# constant. Under the mean-field $q$, $c_i$ and $\mu_k$ are independent, so
# $\mathbb E[c_{ik}(x_i-\mu_k)^2] = \mathbb E[c_{ik}]\,\mathbb E[(x_i-\mu_k)^2] = \varphi_{ik}\,(x_i^2 - 2x_i m_k + \mathbb E[\mu_k^2])$
# with $\mathbb E[\mu_k^2] = \mathrm{Var}[\mu_k] + \mathbb E[\mu_k]^2 = s_k^2 + m_k^2$. Hence
#
# $$\mathbb E[\log p(x_i\mid c_i,\boldsymbol\mu)] = -\tfrac12\Big[\log 2\pi + \sum_k\varphi_{ik}\big(x_i^2 + m_k^2 + s_k^2 - 2x_im_k\big)\Big].$$
# <!-- END SOLUTION -->

# %% [markdown]
# ### Exercise: implement the term
# Inputs in one dimension: `x` $[n]$, `phi` $[n, K]$, `m` $[K]$, `s2` $[K]$; return one value per point, $[n]$.

# %%
def expected_log_lik(x, phi, m, s2):
    """E_q[log p(x_i | c_i, mu)] for each point of a 1-D mixture, shape [n]."""
    ### BEGIN SOLUTION broadcast x[:, None] against m[None, :]; E[mu_k^2] = m_k^2 + s_k^2
    sq = x[:, None] ** 2 - 2 * x[:, None] * m[None, :] + m[None, :] ** 2 + s2[None, :]
    return -0.5 * (math.log(2 * math.pi) + (phi * sq).sum(-1))
    ### END SOLUTION


# %%
check.expected_log_lik(expected_log_lik)

# %% [markdown]
# **Numerical check of the derivation**: a Monte Carlo average of $\log p(x_i\mid c_i, \boldsymbol\mu)$
# over draws $(c_i, \boldsymbol\mu)\sim q$ agrees with the closed form (reference
# `mixture.expected_log_lik`) to within four standard errors, for every point.

# %%
g = torch.Generator().manual_seed(2)
x_small = 4 * torch.randn(6, 1, generator=g)
phi_small = torch.softmax(torch.randn(6, 3, generator=g), -1)
m_small, s2_small = 3 * torch.randn(3, 1, generator=g), 0.5 + torch.rand(3, generator=g)
S = 200_000
mu_draw = m_small.T + s2_small.sqrt() * torch.randn(S, 3, generator=g)            # [S, K]
c_draw = torch.multinomial(phi_small, S, replacement=True, generator=g).T          # [S, n]
samples = Normal(torch.gather(mu_draw, 1, c_draw), 1.0).log_prob(x_small.T)        # [S, n]
closed = mixture.expected_log_lik(x_small, phi_small, m_small, s2_small)
z_scores = (samples.mean(0) - closed) / (samples.std(0) / math.sqrt(S))
print("closed form:", [round(v, 3) for v in closed.tolist()],
      "\nz-scores of the MC estimates:", [round(v, 2) for v in z_scores.tolist()])
assert (z_scores.abs() < 4).all()

# %% [markdown]
# ## 2.5 The biggest challenge to CAVI's scalability
#
# *What do you think is the biggest challenge to scalability of CAVI?*
#
# <!-- BEGIN SOLUTION what does one iteration have to touch? -->
# Every CAVI iteration visits **every data point**: the local updates ($\varphi_i$ for each $i$)
# and, before the global factors can move at all, sums over the whole data set
# ($\sum_i\varphi_{ik}x_i$). One iteration costs $O(nK)$ time and the local parameters
# $O(nK)$ memory, and the global parameters improve only once per full pass, even though
# early on a small random subset would already point them in the right direction. With
# millions of points this is prohibitive. (A second limit, applicability, is that the updates
# must be derived by hand for each model.) Stochastic VI (section 3) addresses the first by
# updating the global parameters from minibatches with noisy natural gradients; black-box VI
# addresses the second.
# <!-- END SOLUTION -->

# %% [markdown]
# <!-- SOLUTION ONLY an illustration of the answer to 2.5, timed -->
# **Illustration**: the time of one CAVI sweep grows linearly with $n$ (measured; not asserted,
# since wall times on a shared machine are noisy).

# %%
### SOLUTION ONLY
for n in (1_000, 10_000, 100_000):
    xs = mixture.simulate(n, 5, D=2, generator=torch.Generator().manual_seed(0)).x
    m_, s2_ = mixture.init_params(xs, 5, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(5):
        _, m_, s2_ = mixture.cavi_step(xs, m_, s2_, SIGMA2)
    print(f"n = {n:7d}: {(time.perf_counter() - start) / 5 * 1e3:7.2f} ms per sweep")

# %% [markdown]
# ## 2.6 Complete conditionals in the exponential family
#
# *What is the benefit of your model having complete conditionals in the exponential family if
# you would like to apply CAVI?*
#
# <!-- BEGIN SOLUTION what is the optimal factor q_j proportional to, and what family is it in? -->
# The CAVI update for a factor is $q^*(z_j)\propto\exp\{\mathbb E_{-j}[\log p(z_j\mid \mathbf z_{-j}, \mathbf x)]\}$.
# If the complete conditional is in an exponential family,
# $p(z_j\mid\mathbf z_{-j},\mathbf x) = h(z_j)\exp\{\eta_j(\mathbf z_{-j},\mathbf x)^\top t(z_j) - a(\eta_j)\}$,
# then $\mathbb E_{-j}[\log p(z_j\mid\cdot)] = \log h(z_j) + \mathbb E_{-j}[\eta_j]^\top t(z_j) + \text{const}$,
# so $q^*(z_j)$ is **in the same family**, with natural parameter $\mathbb E_{-j}[\eta_j(\mathbf z_{-j},\mathbf x)]$.
# The benefits: (1) the update is in closed form: compute expected natural parameters (often
# expected sufficient statistics of the other factors), with no integrals or inner
# optimisation; (2) the family of each factor is determined for us, not guessed; (3) the ELBO
# is easy to evaluate; and (4) the same structure gives the natural gradient cheaply, the basis
# of stochastic VI (section 3). In the mixture, $p(\mu_k\mid\mathbf c,\mathbf x)$ is Gaussian
# with natural parameters $(\sum_i c_{ik}x_i,\ 1/\sigma^2 + \sum_i c_{ik})$ (precision-weighted
# mean and precision), and CAVI simply replaces $c_{ik}$ by $\varphi_{ik}$.
# <!-- END SOLUTION -->

# %% [markdown]
# <!-- SOLUTION ONLY the check of 2.6 with autograd -->
# **Check**: compute $\mathbb E_{q(\mathbf c)}[\log p(\mu_k, \mathbf c, \mathbf x)]$ as a
# function of $\mu_k$ with `torch.distributions` (it is linear in $c$, so the expectation puts
# $\varphi$ in place of $c$), read its natural parameters off with autograd (the gradient at
# $\mu_k = 0$ and minus the second derivative), and compare with CAVI's update.

# %%
### SOLUTION ONLY
m_test = torch.tensor([[-4.0], [0.5], [3.0]])
phi_1 = mixture.update_phi(x1, m_test, torch.ones(3))
m_cavi, s2_cavi = mixture.update_m_s2(x1, phi_1, SIGMA2)
for k in range(3):
    def expected_log_conditional(mu_k, k=k):
        return (Normal(0.0, math.sqrt(SIGMA2)).log_prob(mu_k)
                + (phi_1[:, k] * Normal(mu_k, 1.0).log_prob(x1[:, 0])).sum())
    zero = torch.tensor(0.0)
    lam1 = torch.autograd.functional.jacobian(expected_log_conditional, zero)
    lam2 = -torch.autograd.functional.hessian(expected_log_conditional, zero)
    assert torch.allclose(lam2, 1 / s2_cavi[k]) and torch.allclose(lam1 / lam2, m_cavi[k, 0])
print("q*(mu_k) from the expected complete conditional = CAVI's (m_k, s_k^2), for every k")

# %% [markdown]
# ## 2.7 The whole ELBO, and the CAVI updates from its gradient (Additional)
#
# *Calculate the rest of the terms of eq. (21) and verify the CAVI updates by setting the
# components of the ELBO gradient to zero.*

# %% [markdown]
# <!-- BEGIN SOLUTION expectations of Gaussian and categorical log-densities; a Lagrange multiplier for sum_k phi_ik = 1 -->
# In $D$ dimensions (the paper's case is $D = 1$), with $\mathbb E\|\mu_k\|^2 = \|m_k\|^2 + Ds_k^2$:
#
# $$\begin{aligned}
# \mathbb E[\log p(\mu_k)] &= -\tfrac D2\log(2\pi\sigma^2) - \frac{\|m_k\|^2 + Ds_k^2}{2\sigma^2}\\
# \mathbb E[\log p(c_i)] &= -\log K\\
# \mathbb E[\log p(x_i\mid c_i,\boldsymbol\mu)] &= -\tfrac D2\log 2\pi - \tfrac12\sum_k\varphi_{ik}\big(\|x_i\|^2 - 2x_i^\top m_k + \|m_k\|^2 + Ds_k^2\big)\\
# -\mathbb E[\log q(c_i)] &= -\sum_k\varphi_{ik}\log\varphi_{ik}\\
# -\mathbb E[\log q(\mu_k)] &= \tfrac D2\big(\log(2\pi s_k^2) + 1\big)
# \end{aligned}$$
#
# and the ELBO is the sum over $k$ of the first and last lines plus the sum over $i$ of the
# middle three. Only these terms depend on the parameters:
#
# - $\partial/\partial m_k$: $-m_k/\sigma^2 + \sum_i\varphi_{ik}(x_i - m_k) = 0 \Rightarrow
#   m_k = \sum_i\varphi_{ik}x_i\,/\,(1/\sigma^2 + \sum_i\varphi_{ik})$.
# - $\partial/\partial s_k^2$: $-\frac{D}{2\sigma^2} - \frac D2\sum_i\varphi_{ik} + \frac{D}{2s_k^2} = 0
#   \Rightarrow s_k^2 = 1/(1/\sigma^2 + \sum_i\varphi_{ik})$.
# - $\partial/\partial\varphi_{ik}$ with a multiplier $\lambda_i$ for $\sum_k\varphi_{ik} = 1$:
#   $x_i^\top m_k - \tfrac12(\|m_k\|^2 + Ds_k^2) + \text{const}_i - \log\varphi_{ik} - 1 + \lambda_i = 0
#   \Rightarrow \varphi_{ik}\propto\exp\{x_i^\top m_k - \tfrac12(\|m_k\|^2 + Ds_k^2)\}$.
#
# These are the CAVI updates (Blei et al. eqs. 26, 34, 35). Each is the unique maximiser in its
# coordinate (the ELBO is concave in $m_k$, in $s_k^2$ and in $\varphi_i$ separately), which is why
# the ELBO never decreases under CAVI.
# <!-- END SOLUTION -->

# %% [markdown]
# **Checks.** (a) The closed-form ELBO (`mixture.elbo`) equals a Monte Carlo average of
# $\log p(\mathbf x, \mathbf z) - \log q(\mathbf z)$ over $\mathbf z\sim q$. (b) With autograd,
# the gradient of the ELBO vanishes at each update: in $m$ and $s^2$ after `update_m_s2`, and
# in the softmax logits of $\varphi$ (the simplex-constrained direction) after `update_phi`.

# %%
x2d, phi2d, m2d, s22d = 3 * torch.randn(40, 2), torch.softmax(torch.randn(40, 4), -1), \
    2 * torch.randn(4, 2), 0.3 + torch.rand(4)
S = 100_000
mu_draw = m2d + s22d.sqrt()[:, None] * torch.randn(S, 4, 2)                         # [S, K, D]
c_draw = torch.multinomial(phi2d, S, replacement=True).T                            # [S, n]
log_p = (Normal(0.0, math.sqrt(SIGMA2)).log_prob(mu_draw).sum((-1, -2)) - 40 * math.log(4)
         + Normal(mu_draw[torch.arange(S)[:, None], c_draw], 1.0).log_prob(x2d).sum((-1, -2)))
log_q = (Normal(m2d, s22d.sqrt()[:, None]).log_prob(mu_draw).sum((-1, -2))
         + torch.log(torch.gather(phi2d.expand(S, -1, -1), 2, c_draw[..., None])).sum((-1, -2)))
mc, se = (log_p - log_q).mean().item(), (log_p - log_q).std().item() / math.sqrt(S)
closed = mixture.elbo(x2d, phi2d, m2d, s22d, SIGMA2).item()
print(f"ELBO closed form {closed:.3f}, Monte Carlo {mc:.3f} ± {se:.3f}")
assert abs(mc - closed) < 4 * se

m_new, s2_new = mixture.update_m_s2(x2d, phi2d, SIGMA2)
m_new, s2_new = m_new.requires_grad_(), s2_new.requires_grad_()
grad_m, grad_s2 = torch.autograd.grad(mixture.elbo(x2d, phi2d, m_new, s2_new, SIGMA2),
                                      (m_new, s2_new))
logits = torch.log(mixture.update_phi(x2d, m2d, s22d)).requires_grad_()
(grad_logits,) = torch.autograd.grad(
    mixture.elbo(x2d, torch.softmax(logits, -1), m2d, s22d, SIGMA2), logits)
print("largest gradient component at the updates: "
      f"{max(grad_m.abs().max(), grad_s2.abs().max(), grad_logits.abs().max()).item():.1e}")
for grad in (grad_m, grad_s2, grad_logits):
    assert grad.abs().max() < 1e-9

# %% [markdown]
# ## 2.8 CAVI for the Bayesian mixture (Additional)
#
# *Implement CAVI for the example of Blei et al. §2–3; visualise it; terminate on the relative
# change of the ELBO; compare with direct gradient ascent on the ELBO.*
#
# ### Exercise: the two CAVI updates
#
# In $D$ dimensions (`x` $[n, D]$, `m` $[K, D]$, `s2` $[K]$, `phi` $[n, K]$):
#
# $$\varphi_{ik}\propto\exp\{x_i^\top m_k - \tfrac12(\|m_k\|^2 + D s_k^2)\},\qquad
# m_k = \frac{\sum_i\varphi_{ik}x_i}{1/\sigma^2 + \sum_i\varphi_{ik}},\qquad
# s_k^2 = \frac{1}{1/\sigma^2 + \sum_i\varphi_{ik}}.$$

# %%
def update_phi(x, m, s2):
    """CAVI update of q(c_i) for every i: phi [n, K]."""
    ### BEGIN SOLUTION get log phi up to a constant for all i, k in one matrix product; normalise rows
    D = x.shape[-1]
    logits = x @ m.T - 0.5 * ((m ** 2).sum(-1) + D * s2)
    return torch.softmax(logits, dim=-1)
    ### END SOLUTION


def update_m_s2(x, phi, sigma2):
    """CAVI update of q(mu_k) for every k: m [K, D], s2 [K]."""
    ### BEGIN SOLUTION the precision is 1/sigma2 + sum_i phi_ik
    precision = 1.0 / sigma2 + phi.sum(0)
    return (phi.T @ x) / precision[:, None], 1.0 / precision
    ### END SOLUTION


# %%
check.cavi_phi(update_phi)

# %%
check.cavi_m_s2(update_m_s2)

# %% [markdown]
# `mixture.cavi` alternates the two updates until the relative change
# of the ELBO, $|\mathcal L_t - \mathcal L_{t-1}| / |\mathcal L_{t-1}|$, falls below `tol`. The
# ELBO has local optima (a component can end up covering two clusters while another
# sits between them), so `mixture.cavi_restarts` runs CAVI from several random
# initialisations and keeps the run with the highest ELBO. Each start puts the $m_k$ at data
# points chosen by k-means++ (`mixture.init_params`): the first uniformly at random, each
# next one with probability proportional to its squared distance from the points already
# chosen, which spreads the starts over the clusters; all $s_k^2$ start at $1$.
#
# The runs below use **your** two updates once their self-checks have passed (the reference
# versions, `mixture.update_phi` and `mixture.update_m_s2`, before that; the next cell says
# which). Every run is then checked against the reference: a fixed point of its updates.

# %%
updates = (yours_or_reference(update_phi, mixture.update_phi),
           yours_or_reference(update_m_s2, mixture.update_m_s2))


def best_of_restarts(x, K):
    """The best of RESTARTS CAVI runs (k-means++ starts), printing every run's final ELBO."""
    best = mixture.cavi_restarts(x, K, SIGMA2, RESTARTS, torch.Generator().manual_seed(0),
                                 updates=updates)
    print("final ELBO of each restart:", [round(e, 2) for e in best.restart_elbos])
    return best


def check_cavi_run(res, x):
    """The facts every CAVI run must satisfy (asserted)."""
    elbos = torch.tensor(res.elbo)
    assert res.converged, "CAVI did not reach the tolerance"
    assert (elbos.diff() >= -1e-9 * elbos.abs()[1:]).all(), "the ELBO decreased"
    # A fixed point of the updates, to the precision that the ELBO tolerance buys:
    phi, m, s2 = mixture.cavi_step(x, res.m, res.s2, SIGMA2)
    assert torch.allclose(phi, res.phi, atol=1e-3) and torch.allclose(m, res.m, atol=1e-3)
    assert torch.allclose(s2, res.s2, rtol=1e-4)


def oracle_means(sim):
    """The posterior means of the mu_k if we knew the true assignments c_i."""
    onehot = torch.nn.functional.one_hot(sim.c, len(sim.mu)).to(sim.x.dtype)
    return mixture.update_m_s2(sim.x, onehot, SIGMA2)[0]


res1 = best_of_restarts(x1, 3)
check_cavi_run(res1, x1)
perm1 = mixture.match_components(sim1.mu, res1.m)
def rounded(t):
    return [round(v, 3) for v in t.flatten().tolist()]


print(f"1-D: {res1.iterations} iterations\n  posterior means m_k {rounded(res1.m[perm1])}"
      f"\n  with the true c_i  {rounded(oracle_means(sim1))}"
      f"\n  true means mu_k    {rounded(sim1.mu)}")
assert torch.allclose(res1.m[perm1], oracle_means(sim1), atol=0.1)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
colours = plt.cm.tab10(res1.phi.argmax(-1))
axes[0].scatter(x1[:, 0], torch.rand(len(x1)) * 0.1, c=colours, s=8)
grid = torch.linspace(x1.min() - 2, x1.max() + 2, 400)
for k in range(3):
    axes[0].plot(grid, Normal(res1.m[k, 0], res1.s2[k].sqrt()).log_prob(grid).exp() * 0.3,
                 color=plt.cm.tab10(k))
axes[0].set(title="1-D data coloured by argmax φ; q(μ_k) (scaled)", xlabel="x", yticks=[])
hist = torch.stack(res1.m_history)[:, :, 0]
axes[1].plot(hist, marker=".")
axes[1].set(title="m_k over iterations", xlabel="iteration", ylabel="m_k")
axes[2].plot(range(1, len(res1.elbo) + 1), res1.elbo, marker=".")
axes[2].set(title="ELBO (never decreases)", xlabel="iteration", ylabel="ELBO")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Two dimensions, K = 5 (as in Blei et al.'s Figure 2)

# %%
sim2 = mixture.simulate(N_2D, K=5, D=2, sigma2=SIGMA2, generator=torch.Generator().manual_seed(6))
x2 = sim2.x
res2 = best_of_restarts(x2, 5)
check_cavi_run(res2, x2)
perm2 = mixture.match_components(sim2.mu, res2.m)
print(f"2-D: {res2.iterations} iterations; largest difference from the posterior means "
      f"given the true c_i: {(res2.m[perm2] - oracle_means(sim2)).abs().max():.3f}")
assert torch.allclose(res2.m[perm2], oracle_means(sim2), atol=0.1)


# %%
def show_iteration(t):
    """Data coloured by the assignments at iteration t, the means so far, and 2-s_k circles."""
    t = min(t, len(res2.phi_history) - 1)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    ax.scatter(x2[:, 0], x2[:, 1], c=plt.cm.tab10(res2.phi_history[t].argmax(-1)), s=6, alpha=0.6)
    path = torch.stack(res2.m_history[: t + 2])                    # [t + 2, K, 2]
    for k in range(5):
        ax.plot(path[:, k, 0], path[:, k, 1], "k.-", lw=1)
    ax.plot(sim2.mu[:, 0], sim2.mu[:, 1], "r+", ms=14, mew=2, label="true μ_k")
    ax.set(title=f"iteration {t + 1}: assignments and the paths of m_k", aspect="equal",
           xlabel="x₁", ylabel="x₂")
    ax.legend(loc="upper left")
    ax2.plot(range(1, len(res2.elbo) + 1), res2.elbo, marker=".")
    ax2.axvline(t + 1, color="r")
    ax2.set(title="ELBO", xlabel="iteration", ylabel="ELBO", xscale="log")
    plt.show()


last = len(res2.phi_history) - 1
interact(show_iteration, t=IntSlider(min=0, max=last, value=last, description="iteration"));

# %% [markdown]
# ### CAVI vs gradient ascent on the same ELBO
#
# `mixture.elbo_ascent` maximises the same closed-form ELBO with autograd and Adam, in
# unconstrained coordinates (softmax logits for $\varphi$, $\log s^2$), from the same starting
# point as the best CAVI run, with the same termination rule (held for 20 steps, since Adam's
# steps are not monotone). Both must reach the same optimum: the same ELBO (to a relative
# $10^{-5}$) and the same means (to $10^{-2}$) once the component labels are matched.

# %%
comparison = []
for name, x, res, K in [("1-D, K = 3", x1, res1, 3), ("2-D, K = 5", x2, res2, 5)]:
    m0, s20, cavi_run = res.m_history[0], torch.ones(K), res      # the best CAVI run's start
    ascent = mixture.elbo_ascent(x, K, SIGMA2, m0, s20, lr=0.1, tol=1e-10, max_iter=20_000,
                                 desc=f"gradient ascent, {name}")
    perm = mixture.match_components(cavi_run.m, ascent.m)
    rel_gap = abs(ascent.elbo[-1] - cavi_run.elbo[-1]) / abs(cavi_run.elbo[-1])
    m_gap = (ascent.m[perm] - cavi_run.m).abs().max().item()
    comparison.append((name, cavi_run, ascent))
    print(f"{name}: CAVI {cavi_run.iterations:4d} iterations, {cavi_run.seconds * 1e3:8.1f} ms, "
          f"ELBO {cavi_run.elbo[-1]:.4f}\n{'':12s}ascent {ascent.iterations:5d} iterations, "
          f"{ascent.seconds * 1e3:8.1f} ms, ELBO {ascent.elbo[-1]:.4f}; "
          f"relative ELBO gap {rel_gap:.1e}, largest |Δm| {m_gap:.1e}")
    assert ascent.converged and cavi_run.converged
    assert rel_gap < 1e-5 and m_gap < 1e-2, "CAVI and gradient ascent disagree"
    assert cavi_run.iterations < 100 <= ascent.iterations, "CAVI: tens of sweeps; ascent: hundreds"

fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, (name, cavi_run, ascent) in zip(axes, comparison):
    best = max(cavi_run.elbo[-1], ascent.elbo[-1])
    ax.plot(range(1, len(cavi_run.elbo) + 1), [best - e + 1e-9 for e in cavi_run.elbo],
            label="CAVI")
    ax.plot(range(1, len(ascent.elbo) + 1), [max(best - e, 0) + 1e-9 for e in ascent.elbo],
            label="gradient ascent (Adam)")
    ax.set(xscale="log", yscale="log", xlabel="iteration", ylabel="ELBO* − ELBO", title=name)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# CAVI needs tens of sweeps; gradient ascent, hundreds to thousands of steps (printed and
# asserted above), each of similar cost, and a step size to tune. CAVI's closed-form coordinate updates are exact maximisers
# and never decrease the ELBO. What CAVI needs in return is conditional conjugacy (§2.6) and
# a full pass over the data per iteration (§2.5), the two limits section 3 removes.
