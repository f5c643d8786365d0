r"""Squeeze and multi-scale factor-out (RealNVP §3.6).

**Squeeze** trades space for channels: each :math:`2\times2\times C` block becomes a
:math:`1\times1\times4C` pixel, :math:`[C, H, W] \to [4C, H/2, W/2]`. It only moves
entries, so :math:`\log|\det J| = 0`. Checkerboard couplings act before it and channel
couplings after it.

**Factor-out.** In RealNVP's normalizing direction, after each scale half of the
dimensions are sent straight to the base density and only the other half is processed
further:

.. math::

    (z^{(i+1)}, h^{(i+1)}) = f^{(i+1)}(h^{(i)}), \qquad z = (z^{(1)}, \dots, z^{(L)}) .

As a bijection on the whole vector this is "apply an inner flow to a part of the
channels, the identity to the rest": :class:`FactorOut`. Its log-det is the inner flow's;
nesting ``FactorOut`` inside an inner flow gives the multi-scale architecture.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfcourse.flows.base import Bijection

__all__ = ["Squeeze", "FactorOut"]


class Squeeze(Bijection):
    """``[B, C, H, W] -> [B, 4C, H/2, W/2]``; the four sub-pixel positions of a 2x2 block
    become four channel groups (``y[:, k*C:(k+1)*C]`` holds position ``k = 2i + j``).

    >>> x = torch.arange(16.).view(1, 1, 4, 4)
    >>> Squeeze(1)(x)[0][0, :, 0, 0]       # the top-left 2x2 block
    tensor([0., 1., 4., 5.])
    """

    event_dims = 3

    def __init__(self, channels: int):
        super().__init__()
        self.dim, self.out_dim = channels, 4 * channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs even height and width, got {h}x{w}")
        y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
        return y.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if y.dim() != 4 or y.shape[1] != self.out_dim:
            raise ValueError(f"Squeeze.inverse expects [batch, {self.out_dim}, H, W], "
                             f"got {tuple(y.shape)}")
        b, _, h, w = y.shape
        x = y.view(b, 2, 2, self.dim, h, w).permute(0, 3, 4, 1, 5, 2)
        return x.reshape(b, self.dim, 2 * h, 2 * w), y.new_zeros(b)


class FactorOut(Bijection):
    """Apply ``inner`` to the first ``keep`` channels (features, for vectors) and the
    identity to the rest, which are factored out to the base density at this scale.

    ``inner`` must preserve its input's shape (it may squeeze and unsqueeze inside).
    ``context``/``params`` are passed to ``inner``.

    >>> from nfcourse.flows import Flow, AffineCoupling, channel_mask
    >>> inner = Flow([AffineCoupling(channel_mask(2), hidden=8)])
    >>> layer = FactorOut(inner, channels=4)     # inner sees 2 of the 4 channels
    >>> layer(torch.randn(3, 4, 6, 6))[0].shape
    torch.Size([3, 4, 6, 6])
    """

    def __init__(self, inner: Bijection, channels: int, keep: int | None = None):
        super().__init__()
        self.inner, self.dim = inner, channels
        self.keep = inner.dim if keep is None else keep
        self.event_dims = inner.event_dims
        self.context_dim, self.param_dim = inner.context_dim, inner.param_dim
        self._axis = -1 if self.event_dims == 1 else 1

    def _run(self, x: Tensor, inverse: bool, kwargs) -> tuple[Tensor, Tensor]:
        self._check_x(x)
        x_a, x_b = x.split([self.keep, self.dim - self.keep], dim=self._axis)
        y_a, log_det = (self.inner.inverse if inverse else self.inner)(x_a, **kwargs)
        return torch.cat([y_a, x_b], dim=self._axis), log_det

    def forward(self, x: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        return self._run(x, False, kwargs)

    def inverse(self, y: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        return self._run(y, True, kwargs)
