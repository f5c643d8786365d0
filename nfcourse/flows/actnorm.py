r"""Activation normalisation (Kingma & Dhariwal, Glow 2018, §3.1).

A per-channel affine map,

.. math::

    y = x \odot \exp(s) + t, \qquad
    \log\left|\det \frac{\partial y}{\partial x}\right| = H W \sum_c s_c
    \quad (\text{vectors: } \textstyle\sum_c s_c),

with a **data-dependent initialisation**: on the first batch it sees, in whichever
direction, :math:`s, t` are set so that the layer's *output* has zero mean and unit
variance per channel. Data normally enters a flow through ``inverse`` (data to noise);
a VI posterior pushes noise through ``forward``; both are handled. The
``initialized`` flag is a buffer, so a reloaded ``state_dict`` is not re-initialised.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfcourse.flows.base import Bijection

__all__ = ["ActNorm"]


class ActNorm(Bijection):
    """Per-channel scale and shift, initialised from the first batch.

    ``event_dims=1`` for vectors ``[..., C]``, ``3`` for images ``[B, C, H, W]``.

    >>> layer = ActNorm(3)
    >>> x = 5 + 2 * torch.randn(1000, 3)
    >>> y, _ = layer(x)                     # first call: initialises on x
    >>> bool(y.mean(0).abs().max() < 1e-4), bool((y.std(0) - 1).abs().max() < 1e-3)
    (True, True)
    """

    def __init__(self, dim: int, event_dims: int = 1, eps: float = 1e-6):
        super().__init__()
        if event_dims not in (1, 3):
            raise ValueError("event_dims must be 1 (vectors) or 3 (images)")
        self.dim, self.event_dims, self.eps = dim, event_dims, eps
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))
        self._initialized = False  # mirror of the buffer, read without a device sync
        self.register_load_state_dict_post_hook(ActNorm._after_load)

    @staticmethod
    def _after_load(module, incompatible_keys) -> None:
        module._initialized = bool(module.initialized)

    def _view(self, p: Tensor) -> Tensor:
        return p if self.event_dims == 1 else p.view(-1, 1, 1)

    def _reduce_dims(self, x: Tensor) -> tuple[int, ...]:
        return tuple(range(x.dim() - 1)) if self.event_dims == 1 else (0, 2, 3)

    @torch.no_grad()
    def _initialize(self, x: Tensor, output_side: str) -> None:
        dims = self._reduce_dims(x)
        mean, std = x.mean(dims), x.std(dims, unbiased=False) + self.eps
        if output_side == "y":      # forward: y = x e^s + t standardised
            self.log_scale.copy_(-torch.log(std))
            self.shift.copy_(-mean / std)
        else:                       # inverse: x = (y - t) e^{-s} standardised
            self.log_scale.copy_(torch.log(std))
            self.shift.copy_(mean)
        self.initialized.fill_(True)
        self._initialized = True

    def _log_det(self, x: Tensor) -> Tensor:
        total = self.log_scale.sum()
        if self.event_dims == 3:
            total = total * (x.shape[2] * x.shape[3])
            return total.expand(x.shape[:1])
        return total.expand(x.shape[:-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        if not self._initialized:
            self._initialize(x, "y")
        y = torch.addcmul(self._view(self.shift), x, self._view(torch.exp(self.log_scale)))
        return y, self._log_det(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(y)
        if not self._initialized:
            self._initialize(y, "x")
        x = (y - self._view(self.shift)) * self._view(torch.exp(-self.log_scale))
        return x, -self._log_det(y)
