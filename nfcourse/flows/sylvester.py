r"""Sylvester normalizing flows (van den Berg, Hasenclever, Tomczak & Welling, UAI 2018).

A planar flow with :math:`M` hidden units instead of one:

.. math::

    f(z) = z + Q R\, h(\tilde R Q^\top z + b), \qquad h = \tanh,

with :math:`Q \in \mathbb{R}^{D \times M}` having orthonormal columns and
:math:`R, \tilde R \in \mathbb{R}^{M \times M}` upper triangular. Sylvester's determinant
identity, :math:`\det(I_D + AB) = \det(I_M + BA)`, and :math:`Q^\top Q = I_M` give

.. math::

    \det \frac{\partial f}{\partial z}
    = \det\big(I_M + \operatorname{diag}(h'(\tilde R Q^\top z + b))\, \tilde R R\big)
    = \prod_{i=1}^M \big(1 + h'(\tilde r_i^\top Q^\top z + b_i)\, r_{ii} \tilde r_{ii}\big),

because :math:`\tilde R R` is upper triangular with diagonal :math:`r_{ii}\tilde r_{ii}`.

**Invertibility** (their Theorem 2): sufficient is :math:`r_{ii}\tilde r_{ii} > -1/\lVert h'\rVert_\infty
= -1`. As in the authors' code, the diagonals are :math:`r_{ii} = \tanh(\cdot)` and
:math:`\tilde r_{ii} = \tanh(\cdot)`, so :math:`|r_{ii}\tilde r_{ii}| < 1` whatever the raw values.

**The three ways of making** :math:`Q` (subclasses):

* :class:`OrthogonalSylvester`: :math:`M \le D` columns, :math:`Q = \operatorname{qf}(\tilde Q)`,
  the orthonormal factor of the thin QR decomposition :math:`\tilde Q = Q U` with
  :math:`u_{ii} \ge 0` (Gram–Schmidt on the columns of :math:`\tilde Q`, computed with
  Householder reflections), so :math:`Q^\top Q = I_M` to rounding however close
  :math:`\tilde Q` is to rank deficiency, and :math:`Q = \tilde Q` when :math:`\tilde Q` is
  already orthonormal. (The paper orthogonalises with the iteration
  :math:`Q \leftarrow Q\big(I + \tfrac12(I - Q^\top Q)\big)` instead; it needs ever more steps
  as :math:`\tilde Q` nears rank deficiency, and a fixed number of steps then leaves a
  :math:`Q` that is not orthonormal, which silently breaks the log-det above.)
* :class:`HouseholderSylvester`: :math:`M = D`, :math:`Q = H_1 \cdots H_K` with reflections
  :math:`H_k = I - 2 v_k v_k^\top / \lVert v_k\rVert^2`;
* :class:`TriangularSylvester`: :math:`M = D`, :math:`Q` the identity or the reversal
  permutation (alternate the two between layers).

No inverse is implemented: these layers are for the VI path, which needs none.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfcourse.flows.base import Bijection

__all__ = ["Sylvester", "OrthogonalSylvester", "HouseholderSylvester", "TriangularSylvester"]


def _matvec(a: Tensor, v: Tensor) -> Tensor:
    """``a @ v`` for a (possibly per-sample) matrix ``a`` and vectors ``v``."""
    return (a @ v.unsqueeze(-1)).squeeze(-1)


class Sylvester(Bijection):
    """Shared machinery of the three variants; subclasses define ``Q``.

    Parameters: own, or with ``amortized=True`` per sample from an encoder:
    ``params = [R strict upper (M(M-1)/2), R diag (M), R̃ strict upper, R̃ diag, b (M),
    Q's raw parameters]`` of shape ``[..., param_dim]``.
    """

    q_param_dim: int = 0

    def __init__(self, dim: int, m: int, amortized: bool = False):
        super().__init__()
        self.dim, self.m, self.amortized = dim, m, amortized
        n_strict = m * (m - 1) // 2
        self._sizes = [n_strict, m, n_strict, m, m, self.q_param_dim]
        rows, cols = torch.triu_indices(m, m, offset=1)
        self.register_buffer("_strict_index", rows * m + cols, persistent=False)
        if amortized:
            self.param_dim = sum(self._sizes)
        else:
            def small(n):
                return nn.Parameter(torch.empty(n).uniform_(-0.01, 0.01))
            self.r_strict, self.r_diag = small(n_strict), small(m)
            self.r_tilde_strict, self.r_tilde_diag = small(n_strict), small(m)
            self.b = small(m)
            self.q = nn.Parameter(self._init_q()) if self.q_param_dim else None

    def _init_q(self) -> Tensor:  # pragma: no cover - overridden where q_param_dim > 0
        raise NotImplementedError

    def _unpack(self, params: Tensor | None):
        return self._own_or_amortized(
            params, lambda: (self.r_strict, self.r_diag, self.r_tilde_strict,
                             self.r_tilde_diag, self.b, self.q), self._sizes)

    def _upper(self, strict: Tensor, diag_raw: Tensor) -> Tensor:
        """Upper-triangular ``M x M`` matrix with ``tanh`` diagonal."""
        m = self.m
        flat = strict.new_zeros(*strict.shape[:-1], m * m)
        flat = flat.index_copy(-1, self._strict_index, strict)
        return flat.unflatten(-1, (m, m)) + torch.diag_embed(torch.tanh(diag_raw))

    def parameters_by_name(self, params: Tensor | None = None,
                           context: Tensor | None = None) -> list[dict[str, Tensor]]:
        """``R`` and ``R_tilde`` (upper triangular ``[..., M, M]``), ``b`` (``[..., M]``) and,
        where Q has parameters, their raw values ``q_raw``."""
        r_strict, r_diag, rt_strict, rt_diag, b, q_raw = self._unpack(params)
        named = {"R": self._upper(r_strict, r_diag), "R_tilde": self._upper(rt_strict, rt_diag),
                 "b": b}
        if q_raw is not None and q_raw.shape[-1]:
            named["q_raw"] = q_raw
        return [named]

    def _q_maps(self, q_raw: Tensor | None):
        """Return the maps ``z -> Qᵀ z`` and ``v -> Q v``."""
        raise NotImplementedError

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_x(z)
        r_strict, r_diag, rt_strict, rt_diag, b, q_raw = self._unpack(params)
        r, r_tilde = self._upper(r_strict, r_diag), self._upper(rt_strict, rt_diag)
        q_t, q = self._q_maps(q_raw)
        pre = _matvec(r_tilde, q_t(z)) + b          # R̃ Qᵀ z + b
        t = torch.tanh(pre)
        y = z + q(_matvec(r, t))                    # z + Q R h(·)
        diag = torch.tanh(r_diag) * torch.tanh(rt_diag)
        log_det = torch.log1p((1 - t * t) * diag).sum(-1)
        return y, log_det


class OrthogonalSylvester(Sylvester):
    """Sylvester layer with ``M <= D`` orthonormal columns, ``Q = qf(Q̃)`` (thin QR).

    ``QᵀQ = I`` to rounding (``‖QᵀQ - I‖ ~ 1e-15`` in float64, ``~1e-6`` in float32) for any
    ``Q̃``, even one with (nearly) equal columns. Gradients are those of the QR factorisation:
    finite while ``Q̃`` has full column rank, and large near rank deficiency, where ``Q``
    itself turns fast.

    >>> layer = OrthogonalSylvester(4, m=2)
    >>> y, log_det = layer(torch.randn(3, 4))
    >>> y.shape, log_det.shape
    (torch.Size([3, 4]), torch.Size([3]))
    """

    def __init__(self, dim: int, m: int | None = None, amortized: bool = False):
        m = dim if m is None else m
        if not 1 <= m <= dim:
            raise ValueError(f"OrthogonalSylvester needs 1 <= m <= dim, got m={m}, dim={dim}")
        self.q_param_dim = dim * m
        super().__init__(dim, m, amortized)

    def _init_q(self) -> Tensor:
        q, _ = torch.linalg.qr(torch.randn(self.dim, self.m))
        return q.flatten()

    def orthogonalize(self, q_raw: Tensor) -> Tensor:
        """``Q`` of ``Q̃ = Q U``, ``U`` upper triangular with a non-negative diagonal."""
        q, u = torch.linalg.qr(q_raw.unflatten(-1, (self.dim, self.m)))
        u_diag = u.diagonal(dim1=-2, dim2=-1)
        # LAPACK leaves the signs of U's diagonal free; fixing them makes Q unique (and
        # Q = Q̃ for an orthonormal Q̃). A zero diagonal keeps its column's sign.
        return q * torch.ones_like(u_diag).copysign(u_diag).unsqueeze(-2)

    def _q_maps(self, q_raw):
        q = self.orthogonalize(q_raw)
        return (lambda z: _matvec(q.mT, z)), (lambda v: _matvec(q, v))


class HouseholderSylvester(Sylvester):
    """Sylvester layer with ``Q`` a product of ``n_reflections`` Householder reflections.

    >>> layer = HouseholderSylvester(4, n_reflections=2)
    >>> layer(torch.randn(3, 4))[0].shape
    torch.Size([3, 4])
    """

    def __init__(self, dim: int, n_reflections: int = 4, amortized: bool = False):
        self.n_reflections = n_reflections
        self.q_param_dim = n_reflections * dim
        super().__init__(dim, dim, amortized)

    def _init_q(self) -> Tensor:
        return torch.randn(self.n_reflections * self.dim)

    def _q_maps(self, q_raw):
        v = q_raw.unflatten(-1, (self.n_reflections, self.dim))
        v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        reflections = v.unbind(-2)

        def reflect(x, vk):
            return x - 2 * (x * vk).sum(-1, keepdim=True) * vk

        def q_t(z):  # Qᵀ z = H_K ... H_1 z
            for vk in reflections:
                z = reflect(z, vk)
            return z

        def q(x):    # Q x = H_1 ... H_K x
            for vk in reversed(reflections):
                x = reflect(x, vk)
            return x

        return q_t, q


class TriangularSylvester(Sylvester):
    """Sylvester layer with ``Q`` the identity, or the reversal permutation if ``flip``.

    >>> layer = TriangularSylvester(4, flip=True)
    >>> layer(torch.randn(3, 4))[0].shape
    torch.Size([3, 4])
    """

    def __init__(self, dim: int, flip: bool = False, amortized: bool = False):
        self.flip = flip
        super().__init__(dim, dim, amortized)

    def _q_maps(self, q_raw):
        if self.flip:
            def p(x):
                return x.flip(-1)
            return p, p
        return (lambda z: z), (lambda v: v)
