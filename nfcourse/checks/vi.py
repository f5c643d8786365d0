"""Self-checks for sections 2 (variational inference, CAVI) and 3 (SVI, BBVI, variance
reduction).

Each check calls the student's function on fresh inputs, compares with the reference in
:mod:`nfcourse.vi`, and on a mismatch tries the usual mistakes to say which one was made.
Where their values cannot tell, it probes the function on inputs designed to show which part
is off (a minibatch that leaves one component without points, samples where f and f′ differ,
x = μ, a known mean moved by 1) and says so.
Inputs come from private seeded generators, so a check neither depends on nor disturbs the
notebook's random state::

    from nfcourse.checks import vi as check
    check.cavi_phi(update_phi)
"""

from __future__ import annotations

import math

import torch

from nfcourse.checks.core import Exercise, SelfCheckError, matches, self_check
from nfcourse.vi import bbvi as _bbvi
from nfcourse.vi import kl_fit as _kl
from nfcourse.vi import mixture as _mix
from nfcourse.vi import svi as _svi

__all__ = ["reverse_kl_mc", "expected_log_lik", "cavi_phi", "cavi_m_s2", "svi_step",
           "normal_score", "score_function_terms", "control_variate", "tail_given",
           "rb_weight_mu"]

_F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(ex: Exercise, out, what: str, names: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        ex.fail(f"{what} should return a pair", expected=f"({names})",
                got=type(out).__name__, hint=f"return a tuple: return {names}")
    return ex.tensor(out[0], what), ex.tensor(out[1], what)


def _quietly(probe, *args) -> str | None:
    """A probe's hint, or None where the student's function fails on the probe's own inputs
    (the message about the values is then the clearer one)."""
    try:
        return probe(*args)
    except SelfCheckError:
        return None


def _mixture_inputs(n: int = 12, K: int = 3, D: int = 2, seed: int = 0):
    g = _gen(seed)
    x = 3 * torch.randn(n, D, generator=g, dtype=_F64)
    m = 2 * torch.randn(K, D, generator=g, dtype=_F64)
    s2 = 0.2 + torch.rand(K, generator=g, dtype=_F64)
    phi = torch.softmax(torch.randn(n, K, generator=g, dtype=_F64), -1)
    return x, phi, m, s2


# Section 2 -------------------------------------------------------------------------------

EX_2_1 = Exercise("2.1", "reverse KL by Monte Carlo")


def _reverse_kl_mistakes(p, mean, log_std) -> list[tuple[float, str]]:
    """What the usual mistakes in a reverse-KL estimate converge to (by quadrature)."""
    with torch.no_grad():
        ref = _kl.reverse_kl(p, mean, log_std).item()
        entropy = 0.5 * math.log(2 * math.pi * math.e) + log_std.item()
        return [
            (-ref, "the sign is flipped: KL(Q‖P) = E_Q[log q(x) − log p(x)]."),
            (_kl.forward_kl(p, mean, log_std).item(),
             "that is KL(P‖Q), the forward KL: for the reverse KL, draw x from Q and average "
             "log q(x) − log p(x)."),
            (_kl.reverse_kl(p, mean, torch.log(log_std)).item(),
             "log_std is the log of the standard deviation: use exp(log_std) as the scale."),
            (_kl.reverse_kl(p, mean, 0.5 * log_std).item(),
             "log_std is the log of the standard deviation, not the log-variance: the scale is "
             "exp(log_std), not exp(log_std / 2)."),
            (ref + entropy, "the log q(x) term is missing: E_Q[−log p(x)] alone is the "
                            "cross-entropy; KL(Q‖P) = E_Q[log q(x) − log p(x)]."),
        ]


@self_check
def reverse_kl_mc(fn) -> None:
    """Exercise 2.1: ``reverse_kl_mc(p, mean, log_std, n)``, a reparameterised Monte Carlo
    estimate of KL(Q‖P) for Q = N(mean, exp(log_std)²), differentiable in mean and log_std."""
    ex = EX_2_1
    p = _kl.bimodal(loc=3.0, scale=0.8)
    mean = torch.tensor(1.0, dtype=_F64, requires_grad=True)
    log_std = torch.tensor(math.log(2.0), dtype=_F64, requires_grad=True)
    n = 100_000
    # The student's function draws from the global RNG: seed it for a reproducible verdict,
    # inside fork_rng so that the notebook's own random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        got = ex.tensor(ex.call(fn, p, mean, log_std, n), "the estimate")
    if got.dim() != 0:
        ex.fail("the estimate should be a single number (a 0-dim tensor)", expected=[],
                got=list(got.shape), hint="average the per-sample terms log q(x) − log p(x).")
    ref = _kl.reverse_kl(p, mean, log_std)
    # the Monte Carlo standard error of an n-sample estimate, from a private reference run
    eps = torch.randn(n, generator=_gen(1), dtype=_F64)
    with torch.no_grad():
        x = mean + log_std.exp() * eps
        terms = torch.distributions.Normal(mean, log_std.exp()).log_prob(x) - p.log_prob(x)
    tol = 5 * terms.std().item() / math.sqrt(n) + 1e-9
    value = got.item()
    if not math.isfinite(value) or abs(value - ref.item()) > tol:
        hint = next((h for cand, h in _reverse_kl_mistakes(p, mean, log_std)
                     if abs(value - cand) <= 2 * tol), None)
        if abs(value / n - ref.item()) <= tol:
            hint = "you summed the n terms log q(x) − log p(x): average them."
        ex.fail(f"the estimate is not within {tol:.2g} (5 standard errors) of KL(Q‖P)",
                expected=ref.item(), got=value, hint=hint)
    if not got.requires_grad:
        ex.fail("the estimate does not depend differentiably on mean and log_std",
                hint="draw ε ~ N(0, 1) and set x = mean + exp(log_std)·ε (or use rsample); "
                     ".sample() cuts the gradient.")
    grads = torch.autograd.grad(got, (mean, log_std), allow_unused=True)
    if any(g is None for g in grads):
        ex.fail("no gradient reaches mean or log_std",
                hint="the samples must be x = mean + exp(log_std)·ε, so that the gradient flows "
                     "through x as well as through log q.")
    ref_grads = torch.autograd.grad(ref, (mean, log_std))
    got_g, ref_g = torch.stack(list(grads)).detach(), torch.stack(list(ref_grads)).detach()
    if not torch.allclose(got_g, ref_g, rtol=0.1, atol=0.03):
        ex.fail("the gradient of your estimate is off (reparameterisation gradient expected)",
                expected=ref_g, got=got_g,
                hint="the samples must carry the gradient: x = mean + exp(log_std)·ε (or "
                     "rsample()); .sample() cuts it, and so does detaching x. Both log q(x) "
                     "and log p(x) depend on mean and log_std through x.")
    ex.passed(f"estimate {value:.4f} vs quadrature {ref.item():.4f}; gradients flow")


EX_2_4 = Exercise("2.4", "the expected log-likelihood term of eq. (21)")

@self_check
def expected_log_lik(fn) -> None:
    """Exercise 2.4: ``expected_log_lik(x, phi, m, s2)`` = E[log p(x_i | c_i, μ)] per point
    for the 1-D mixture (x [n], phi [n, K], m [K], s2 [K] → [n])."""
    ex = EX_2_4
    x, phi, m, s2 = _mixture_inputs(n=7, K=3, D=1)
    x, m = x.squeeze(-1), m.squeeze(-1)
    got = ex.tensor(ex.call(fn, x, phi, m, s2), "E[log p(x_i | c_i, μ)]")
    expected = _mix.expected_log_lik(x, phi, m, s2)
    if got.dim() == 0:
        ex.fail("return one value per data point, not the sum", expected=[7],
                got=list(got.shape))
    ex.shape(got, expected.shape, "E[log p(x_i | c_i, μ)]",
             hint="one value per data point: sum the φ_ik-weighted terms over k.")
    if matches(got, expected):
        ex.passed("matches −½[log 2π + Σ_k φ_ik (x_i² + m_k² + s_k² − 2 x_i m_k)]")
        return
    hints = [
        (_mix.expected_log_lik(x, torch.ones_like(phi), m, s2),
         "weight each component's term by φ_ik = q(c_i = k): the expectation over c_i is "
         "Σ_k φ_ik (...), not the plain sum over k."),
        (_mix.expected_log_lik(x, phi, m, torch.zeros_like(s2)),
         "E[μ_k²] = m_k² + s_k², not m_k²: the variance s_k² of q(μ_k) is missing."),
        (expected + 0.5 * math.log(2 * math.pi), "the −½ log 2π normalising term is missing."),
        (-expected, "the sign is flipped: the log-density is −½(...)."),
        (2 * expected, "the factor ½ is missing."),
        (expected + (phi * s2).sum(-1), "s_k² enters with the wrong sign."),
    ]
    hint = next((h for cand, h in hints if matches(got, cand)), None)
    ex.close(got, expected, "E[log p(x_i | c_i, μ)]", hint=hint)
    ex.passed("matches the closed form")


EX_2_8A = Exercise("2.8a", "CAVI update of φ")

@self_check
def cavi_phi(fn) -> None:
    """Exercise 2.8a: ``update_phi(x, m, s2)``, the CAVI update of q(c_i)
    (x [n, D], m [K, D], s2 [K] → phi [n, K])."""
    ex = EX_2_8A
    for D in (1, 2):
        x, _, m, s2 = _mixture_inputs(n=9, K=4, D=D, seed=D)
        got = ex.tensor(ex.call(fn, x, m, s2), "phi")
        ex.shape(got, (9, 4), "phi", hint="one row per data point, one column per component.")
        expected = _mix.update_phi(x, m, s2)
        if matches(got, expected):
            continue
        logits = x @ m.T - 0.5 * ((m ** 2).sum(-1) + D * s2)
        hints = [
            (torch.softmax(x @ m.T, -1),
             "the −E[‖μ_k‖²]/2 term is missing: "
             "φ_ik ∝ exp{x_iᵀm_k − (‖m_k‖² + D s_k²)/2}."),
            (torch.softmax(x @ m.T - 0.5 * (m ** 2).sum(-1), -1),
             "E[‖μ_k‖²] = ‖m_k‖² + D s_k²: the variance term D s_k² is missing."),
            (torch.softmax(x @ m.T - 0.5 * ((m ** 2).sum(-1) + s2), -1),
             "in D dimensions E[‖μ_k‖²] = ‖m_k‖² + D s_k² (s_k² per coordinate)."),
            (torch.softmax(logits, 0), "normalised over the wrong axis: each row φ_i (over k) "
                                       "must sum to one, not each column."),
            (torch.exp(logits), "φ_i must be normalised: divide by Σ_k (or use softmax over k)."),
            (torch.log_softmax(logits, -1), "these are log φ: return the probabilities "
                                            "themselves (softmax, not log_softmax)."),
            (torch.softmax(x @ m.T + 0.5 * ((m ** 2).sum(-1) + D * s2), -1),
             "the sign of the E[‖μ_k‖²]/2 term is flipped."),
        ]
        hint = next((h for cand, h in hints if matches(got, cand)), None)
        ex.close(got, expected, f"phi (D = {D})", hint=hint)
    ex.passed("φ matches the CAVI update in 1 and 2 dimensions; rows sum to one")


EX_2_8B = Exercise("2.8b", "CAVI update of m and s²")

@self_check
def cavi_m_s2(fn) -> None:
    """Exercise 2.8b: ``update_m_s2(x, phi, sigma2)``, the CAVI update of q(μ_k)
    (x [n, D], phi [n, K] → m [K, D], s2 [K])."""
    ex = EX_2_8B
    x, phi, _, _ = _mixture_inputs(n=10, K=3, D=2, seed=5)
    sigma2 = 4.0
    m, s2 = _pair(ex, ex.call(fn, x, phi, sigma2), "update_m_s2", "m, s2")
    m_ref, s2_ref = _mix.update_m_s2(x, phi, sigma2)
    ex.shape(m, m_ref.shape, "m", hint="one row m_k per component: m has shape [K, D].")
    ex.shape(s2, s2_ref.shape, "s2", hint="one variance s_k² per component: shape [K].")
    nk = phi.sum(0)
    if not matches(s2, s2_ref):
        hints = [(1 / nk,
                  "the prior precision 1/σ² is missing: s_k² = 1/(1/σ² + Σ_i φ_ik)."),
                 (1 / (sigma2 + nk), "the prior enters as its precision 1/σ², not σ².")]
        hint = next((h for cand, h in hints if matches(s2, cand)), None)
        ex.close(s2, s2_ref, "s2", hint=hint)
    if not matches(m, m_ref):
        sums = phi.T @ x
        hints = [(sums / nk.unsqueeze(-1),
                  "the prior precision 1/σ² is missing in the denominator of m_k."),
                 (sums, "divide Σ_i φ_ik x_i by (1/σ² + Σ_i φ_ik)."),
                 (sums / (sigma2 + nk).unsqueeze(-1), "the prior enters as 1/σ², not σ².")]
        hint = next((h for cand, h in hints if matches(m, cand)), None)
        ex.close(m, m_ref, "m", hint=hint)
    ex.passed("m_k and s_k² match the CAVI update")


# Section 3 -------------------------------------------------------------------------------

def _svi_mistakes(xb, n, m, s2, sigma2, rho):
    """What the usual mistakes in an SVI step would return, with their hints."""
    phi = _mix.update_phi(xb, m, s2)
    lam1, lam2 = _svi.to_natural(m, s2)
    scale = n / xb.shape[0]

    def blend(hat1, hat2, r=rho):
        return _svi.from_natural((1 - r) * lam1 + r * hat1, (1 - r) * lam2 + r * hat2)

    hat1, hat2 = scale * phi.T @ xb, 1 / sigma2 + scale * phi.sum(0)
    m_hat, s2_hat = _svi.from_natural(hat1, hat2)
    return [
        (blend(phi.T @ xb, 1 / sigma2 + phi.sum(0)), _NOT_SCALED),
        (((1 - rho) * m + rho * m_hat, (1 - rho) * s2 + rho * s2_hat),
         "blend the natural parameters λ = (m/s², 1/s²), not m and s² themselves."),
        (blend(hat1, scale * phi.sum(0)),
         "λ̂² = 1/σ² + (n/b) Σ_i φ_ik: the prior precision 1/σ² is missing."),
        (blend(hat1, hat2, 1 - rho),
         "ρ weighs the new estimate λ̂: λ ← (1 − ρ)λ + ρλ̂."),
    ]


_NOT_SCALED = ("the minibatch sums must be scaled by n/b, as if the minibatch were the whole "
               "data set.")


def _svi_probe(ex, fn) -> str | None:
    """Name the part of an SVI step that is off, from one step with ρ = 1 on b = 4 of n = 20
    points that all belong to component 0, while component 1 lies far from them: then
    λ̂₁ is the prior alone (s₁² = σ²), and λ̂₀ has precision 1/s₀² = 1/σ² + n."""
    n, b, sigma2 = 20, 4, 9.0
    xb = 0.1 * torch.randn(b, 2, generator=_gen(8), dtype=_F64)
    m = torch.tensor([[0.0, 0.0], [40.0, 40.0]], dtype=_F64)
    _, got = _pair(ex, ex.call(fn, xb, n, m, torch.ones(2, dtype=_F64), sigma2, 1.0),
                   "svi_step", "m, s2")
    if got.shape != (2,):
        return None
    empty = [(torch.tensor(sigma2 * b / n),
              "your update scales the prior by n/b as well; only the data terms are scaled: "
              "the prior λ⁰ = (0, 1/σ²) enters λ̂ once."),
             (torch.tensor(1 / sigma2),
              "you returned the natural parameters λ = (m/s², 1/s²): convert back to m and s².")]
    full = [(torch.tensor(1 / sigma2 + b), _NOT_SCALED),
            (torch.tensor(1 / sigma2 + b * b / n),
             "the minibatch stands for n/b copies of itself: scale its sums by n/b, not b/n.")]
    return (next((h for cand, h in empty if matches(got[1], cand)), None)
            or next((h for cand, h in full if matches(1 / got[0], cand)), None))


EX_3_1 = Exercise("3.1", "natural-gradient SVI step")

@self_check
def svi_step(fn) -> None:
    """Exercise 3.1: ``svi_step(x_batch, n, m, s2, sigma2, rho)``, one natural-gradient step."""
    ex = EX_3_1
    x, _, m, s2 = _mixture_inputs(n=20, K=3, D=2, seed=7)
    sigma2 = 9.0
    cases = [(x, 1.0, "after a full-batch step with ρ = 1 (must equal one CAVI sweep)"),
             (x[:5], 0.3, "after a minibatch step (b = 5 of n = 20, ρ = 0.3)")]
    for xb, rho, when in cases:
        got_m, got_s2 = _pair(ex, ex.call(fn, xb, 20, m, s2, sigma2, rho), "svi_step", "m, s2")
        ref_m, ref_s2 = _svi.svi_step(xb, 20, m, s2, sigma2, rho)
        if matches(got_m, ref_m) and matches(got_s2, ref_s2):
            continue
        hint = next((h for (cm, cs), h in _svi_mistakes(xb, 20, m, s2, sigma2, rho)
                     if matches(got_m, cm) and matches(got_s2, cs)), None)
        hint = hint or _quietly(_svi_probe, ex, fn)
        ex.close(got_s2, ref_s2, f"s2 {when}", hint=hint)
        ex.close(got_m, ref_m, f"m {when}", hint=hint)
    ex.passed("full batch with ρ = 1 is a CAVI sweep; the minibatch step matches")


EX_3_2 = Exercise("3.2", "score of a univariate Gaussian")


def _score_probe(ex, fn, mu: float, sigma: float, which: int) -> str:
    """Which term of the score is off, read at x = μ and x = μ ± 1: there ∂/∂μ log N is 0 and
    ±1/σ², and ∂/∂σ log N is −1/σ (only the normaliser −log σ depends on σ at x = μ)."""
    x = mu + torch.tensor([0.0, 1.0, -1.0], dtype=_F64)
    got = _pair(ex, ex.call(fn, x, torch.tensor(mu, dtype=_F64),
                            torch.tensor(sigma, dtype=_F64)), "normal_score",
                "d_mu, d_sigma")[which]
    if which == 0:
        if not matches(got[0], torch.tensor(0.0, dtype=_F64)):
            return "at x = μ your ∂/∂μ is not 0: it must be proportional to x − μ."
        return "your ∂/∂μ is 0 at x = μ, as it should be: the factor in front of x − μ is off."
    if not matches(got[0], torch.tensor(-1 / sigma, dtype=_F64)):
        return (f"at x = μ only the normaliser −log σ depends on σ, so ∂/∂σ log N = −1/σ = "
                f"{-1 / sigma:.4g} there; yours is {got[0].item():.4g}: the normaliser term "
                "is off.")
    return ("at x = μ yours is right (−1/σ, from the normaliser), so the (x − μ)² term is off: "
            "differentiate −(x − μ)²/(2σ²) with respect to σ once more.")


@self_check
def normal_score(fn) -> None:
    """Exercise 3.2: ``normal_score(x, mu, sigma)`` = (∂/∂μ, ∂/∂σ) log N(x; μ, σ²)."""
    ex = EX_3_2
    x = torch.tensor([-1.5, 0.3, 2.0, 4.0], dtype=_F64)
    mu = torch.tensor(0.7, dtype=_F64, requires_grad=True)
    sigma = torch.tensor(1.6, dtype=_F64, requires_grad=True)
    d_mu, d_sigma = _pair(ex, ex.call(fn, x, mu.detach(), sigma.detach()), "normal_score",
                          "d_mu, d_sigma")
    logp = torch.distributions.Normal(mu, sigma).log_prob(x)
    rows = [torch.autograd.grad(v, (mu, sigma), retain_graph=True) for v in logp]
    e_mu = torch.stack([r[0] for r in rows]).detach()
    e_sigma = torch.stack([r[1] for r in rows]).detach()
    m, s = mu.item(), sigma.item()
    if not matches(d_mu, e_mu):
        hints = [(-e_mu, "sign error: ∂/∂μ log N = (x − μ)/σ², positive when x > μ."),
                 (x - m, "the 1/σ² factor is missing: ∂/∂μ log N = (x − μ)/σ²."),
                 ((x - m) / s, "divide by σ², not σ.")]
        hint = next((h for cand, h in hints if matches(d_mu, cand)), None)
        ex.close(d_mu, e_mu, "∂/∂μ log N(x; μ, σ²)",
                 hint=hint or _quietly(_score_probe, ex, fn, m, s, 0))
    if not matches(d_sigma, e_sigma):
        hints = [((x - m) ** 2 / s ** 3, "the −1/σ from the normaliser −log σ is missing."),
                 (-e_sigma, "sign error: ∂/∂σ log N = −1/σ + (x − μ)²/σ³."),
                 (-1 / s + (x - m) ** 2 / s ** 2, "the quadratic term gives (x − μ)²/σ³ "
                                                  "(derivative of −(x−μ)²/(2σ²))."),
                 (-0.5 / s ** 2 + (x - m) ** 2 / (2 * s ** 4),
                  "that is the derivative with respect to σ², not σ.")]
        hint = next((h for cand, h in hints if matches(d_sigma, cand)), None)
        ex.close(d_sigma, e_sigma, "∂/∂σ log N(x; μ, σ²)",
                 hint=hint or _quietly(_score_probe, ex, fn, m, s, 1))
    ex.passed("both components match autograd")


EX_3_5 = Exercise("3.5", "score-function estimator of ∇_μ E[X²]")


def _score_terms_probe(ex, fn) -> str | None:
    """Name the factor that is off, from samples chosen so that f(x) = x² and f′(x) = 2x differ
    (x = μ ± 1, μ ± 2 with μ = 0.5): the terms must be f(x)·(x − μ), and change with μ."""
    mu = 0.5
    x = mu + torch.tensor([-2.0, -1.0, 1.0, 2.0], dtype=_F64)
    got = ex.tensor(ex.call(fn, x, mu), "the per-sample terms")
    moved = ex.tensor(ex.call(fn, x, mu + 1.0), "the per-sample terms")
    if got.shape != x.shape or moved.shape != x.shape:
        return None
    if matches(moved, got):
        return ("your terms do not depend on μ: the score ∂/∂μ log N(x; μ, 1) = x − μ does.")
    baseline = got / (x - mu) - x ** 2
    if torch.allclose(baseline, baseline[0].expand_as(baseline)):
        return (f"your terms are (f(x) − c)·(x − μ) with a constant c = {-baseline[0].item():.4g}: "
                "a baseline keeps the estimator unbiased, but the exercise asks for the plain "
                "f(x)·(x − μ).")
    factors = [(2 * x, "you multiplied the score by f′(x) = 2x; the score-function estimator "
                       "uses f(x) = x² itself and never needs f′ (that is what makes it black "
                       "box)."),
               (x, "the factor in front of the score must be f(x) = x², not x.")]
    return next((h for cand, h in factors if matches(got / (x - mu), cand)), None)


@self_check
def score_function_terms(fn) -> None:
    """Exercise 3.5: ``score_function_terms(x, mu)``, the per-sample score-function estimate
    of ∂/∂μ E_{N(μ,1)}[X²] at samples x ~ N(μ, 1)."""
    ex = EX_3_5
    mu = 0.8
    x = mu + torch.randn(10, generator=_gen(3), dtype=_F64)
    got = ex.tensor(ex.call(fn, x, mu), "the per-sample terms")
    expected = x ** 2 * (x - mu)
    if got.dim() == 0:
        ex.fail("return one term per sample (the notebook averages them)", expected=[10],
                got=[], hint="f(x_s) · ∂/∂μ log N(x_s; μ, 1) for each s.")
    if matches(got, expected):
        ex.passed("f(x)·score(x) = x²(x − μ); its mean is 2μ")
        return
    hints = [(-expected, "sign error in the score: ∂/∂μ log N(x; μ, 1) = x − μ."),
             (x - mu, "multiply the score by f(x) = x²."),
             (2 * x, "that is the reparameterisation (pathwise) estimator f'(x); the exercise "
                     "asks for f(x)·∂/∂μ log q."),
             (x ** 2, "f(x) alone has mean E[X²], not its gradient: multiply by the score.")]
    hint = next((h for cand, h in hints if matches(got, cand)), None)
    ex.close(got, expected, "f(x)·score", hint=hint or _quietly(_score_terms_probe, ex, fn))


EX_3_9A = Exercise("3.9a", "control variate")


def _centre_probe(ex, fn, f, h, h_mean, est) -> str | None:
    """The right estimate moves by a when the known mean E[h] moves by 1: one that stays put,
    at mean(f), centred the control on its own sample mean."""
    moved, _ = _pair(ex, ex.call(fn, f, h, h_mean + 1.0), "control_variate", "estimate, a")
    if matches(moved, est, rtol=1e-9) and matches(est, f.mean(), rtol=1e-9):
        return ("your estimate does not depend on h_mean: you centred the control on its own "
                "sample mean, so the correction averages to exactly 0 and the estimate is "
                "mean(f), with no variance reduction. Centre it on the known mean E[h].")
    return None


@self_check
def control_variate(fn) -> None:
    """Exercise 3.9a: ``control_variate(f, h, h_mean)`` → (estimate, a) with
    a = Cov(f, h)/Var(h) and estimate = mean(f − a(h − E[h]))."""
    ex = EX_3_9A
    u = torch.rand(5000, generator=_gen(4), dtype=_F64)
    f, h = torch.exp(u), u
    est, a = _pair(ex, ex.call(fn, f, h, 0.5), "control_variate", "estimate, a")
    if est.dim() != 0 or a.dim() != 0:
        ex.fail("the estimate and the coefficient should each be a single number",
                expected="[] and []", got=f"{list(est.shape)} and {list(a.shape)}",
                hint="return the average of the adjusted samples f − a(h − E[h]), "
                     "not the samples.")
    cov = torch.cov(torch.stack([f, h]))[0, 1]
    a_ref = cov / h.var()
    est_ref = (f - a_ref * (h - 0.5)).mean()
    if not matches(a, a_ref, rtol=1e-3):
        hints = [(-a_ref, "wrong sign of the coefficient: with f − a(h − E h), "
                          "a = +Cov(f, h)/Var(h); your sign makes the variance larger, "
                          "not smaller."),
                 (cov / f.var(), "divide Cov(f, h) by Var(h), the variance of the control."),
                 (torch.corrcoef(torch.stack([f, h]))[0, 1], "that is the correlation; "
                                                             "a = Cov(f, h)/Var(h)."),
                 (1 / a_ref, "that is the reciprocal: a = Cov(f, h)/Var(h)."),
                 (est_ref, "this is the estimate: return the pair (estimate, a), yours is the "
                           "other way round.")]
        hint = next((h_ for cand, h_ in hints if matches(a, cand, rtol=1e-3)), None)
        ex.close(a, a_ref, "the coefficient a", hint=hint, rtol=1e-3)
    if not matches(est, est_ref, rtol=1e-6):
        hints = [((f - a_ref * h).mean(), "subtract the control's known mean: f − a(h − E[h]); "
                                          "without it the estimate is biased by −a·E[h]."),
                 ((f + a_ref * (h - 0.5)).mean(), "use f − a(h − E[h]) (minus).")]
        hint = next((h_ for cand, h_ in hints if matches(est, cand)), None)
        ex.close(est, est_ref, "the estimate", rtol=1e-6,
                 hint=hint or _quietly(_centre_probe, ex, fn, f, h, 0.5, est))
    moved, _ = _pair(ex, ex.call(fn, f, h, 1.5), "control_variate", "estimate, a")
    ex.close(moved, est + a, "the estimate when the control's known mean is 1.5",
             rtol=1e-6, hint="use the h_mean you are given: the estimate moves by a when E[h] "
                             "does (E[h] = 1/2 here, but not for every control).")
    ex.passed(f"a = {a_ref.item():.3f}; estimate {est_ref.item():.4f} (e − 1 = {math.e - 1:.4f})")


EX_3_9B = Exercise("3.9b", "conditional Monte Carlo")

@self_check
def tail_given(fn) -> None:
    """Exercise 3.9b: ``tail_given(y, t, rate)`` = P(W > t − y) for W ~ Exp(rate), i.e.
    E[1{W + Y > t} | Y = y]: the conditional Monte Carlo estimator of a tail probability."""
    ex = EX_3_9B
    y = torch.tensor([0.0, 1.0, 3.9, 4.0, 6.5], dtype=_F64)
    t = 4.0
    for rate in (1.0, 0.5):
        got = ex.tensor(ex.call(fn, y, t, rate), "P(W > t − y)")
        expected = torch.exp(-rate * (t - y).clamp_min(0))
        if matches(got, expected):
            continue
        hints = [(torch.exp(-rate * (t - y)), "when y > t the event is certain (P = 1): use "
                                              "max(t − y, 0); your values exceed 1."),
                 (1 - expected, "that is P(W ≤ t − y); the event is W > t − y."),
                 (torch.exp(-(t - y).clamp_min(0) / rate),
                  "Exp(rate) has P(W > w) = exp(−rate·w): multiply by the rate, do not divide."),
                 (torch.where(y > t, 0.0, expected), "when y > t the event is certain "
                                                     "(W ≥ 0 > t − y): P = 1 there, not 0."),
                 (torch.exp(-rate * (y - t).clamp_min(0)),
                  "W + y > t means W > t − y: use t − y, not y − t."),
                 ((y > t).to(_F64), "that is the indicator itself with W left out; average it "
                                    "over W: P(W > t − y).")]
        hint = next((h for cand, h in hints if matches(got, cand)), None)
        ex.close(got, expected, f"P(W > t − y) for W ~ Exp(rate = {rate})", hint=hint)
    ex.passed("E[1{W + Y > t} | Y] = exp(−rate · max(t − Y, 0))")


EX_3_11 = Exercise("3.11", "Rao-Blackwellized BBVI weights for μ_k")

@self_check
def rb_weight_mu(fn) -> None:
    """Exercise 3.11: ``rb_weight_mu(terms, c, K)``, the Rao-Blackwellized weight of the
    global factors q(μ_k), [S, K]: log p(μ_k) + Σ_i 1[c_i = k] log N(x_i; μ_k, I) − log q(μ_k)."""
    ex = EX_3_11
    g = _gen(6)
    x = 3 * torch.randn(15, 1, generator=g, dtype=_F64)
    m, log_s2 = torch.randn(3, 1, generator=g, dtype=_F64), torch.zeros(3, dtype=_F64)
    logits = torch.randn(15, 3, generator=g, dtype=_F64)
    mu, c = _bbvi.sample_q(m, log_s2, logits, 4, g)
    terms = _bbvi.log_terms(x, mu, c, m, log_s2, logits, 25.0)
    got = ex.tensor(ex.call(fn, {k: v.clone() for k, v in terms.items()}, c, 3), "w_mu")
    expected, _ = _bbvi.local_weights(terms, c, 3)
    ex.shape(got, expected.shape, "w_mu", hint="one weight per sample and component: [S, K].")
    if matches(got, expected):
        ex.passed("only the terms that contain μ_k enter its weight")
        return
    base = terms["log_p_mu"] - terms["log_q_mu"]
    onehot = torch.nn.functional.one_hot(c, 3).to(_F64)
    total = base.sum(-1) + (terms["log_p_c"] + terms["log_lik"] - terms["log_q_c"]).sum(-1)
    hints = [
        (base + terms["log_lik"].sum(-1, keepdim=True),
         "unbiased but not Rao-Blackwellized: a point with c_i ≠ k does not involve μ_k, so its "
         "log-likelihood only adds noise. Keep 1[c_i = k] log N(x_i; μ_k, I)."),
        (total.unsqueeze(-1).expand_as(expected),
         "that is the full log p(x, z) − log q(z) (the naive BBVI weight); keep only μ_k's "
         "Markov blanket."),
        (terms["log_p_mu"] + (onehot * terms["log_lik"].unsqueeze(-1)).sum(1),
         "the − log q(μ_k) term is missing."),
        (base, "the likelihood terms of the points assigned to k are missing."),
        (expected + (terms["log_p_c"] - terms["log_q_c"]).sum(-1, keepdim=True),
         "log p(c_i) − log q(c_i) does not involve μ_k: leave it out of μ_k's weight (it only "
         "adds noise)."),
        (expected + 2 * terms["log_q_mu"], "log q(μ_k) enters with a minus sign: the weight "
                                           "is log p − log q."),
        (terms["log_p_mu"] + (onehot * terms["log_lik"].unsqueeze(-1)).mean(1)
         - terms["log_q_mu"], "sum the log-likelihoods of the points assigned to k; do not "
                              "average them (log p(x | μ) of independent points is a sum)."),
    ]
    hint = next((h for cand, h in hints if matches(got, cand)), None)
    ex.close(got, expected, "w_mu", hint=hint)
