r"""Whole density flows assembled from the layers: the architectures Section 5 compares.

Each function returns a flow in the sampling direction (noise to data), ready for
:class:`~nfcourse.flows.FlowDistribution`, whose ``log_prob`` runs it backwards. The image
flows are written in the papers' order, data to noise, and wrapped in
:class:`~nfcourse.flows.Inverse`.

- :func:`coupling_flow`: K couplings on vectors, alternating halves; NICE's additive
  couplings (Dinh et al. 2015, with its final diagonal scaling) or RealNVP's affine ones.
- :func:`realnvp_image`: single-scale RealNVP on ``[1, H, W]`` images: the logit
  preprocessing, then K affine couplings with checkerboard masks of alternating parity.
- :func:`multiscale_image`: RealNVP's multi-scale architecture with Glow's steps
  (Kingma & Dhariwal 2018). At H x W: two checkerboard couplings; squeeze to
  ``[4, H/2, W/2]``; ``steps`` x (ActNorm, invertible 1x1 convolution, channel coupling);
  factor out half the channels; squeeze the rest to ``[8, H/4, W/4]``, ``steps`` more Glow
  steps there. The latent has the data's size, ``[4, H/2, W/2]``.
- :func:`maf_flow`: MAF layers on vectors (order reversed every other layer), after the
  logit preprocessing; the density direction is one MADE pass per layer.

With ``alpha`` the data (in [0, 1), e.g. dequantized pixels) pass through
:class:`~nfcourse.flows.Logit` first, so that the likelihood is in data space.
"""

from __future__ import annotations

from typing import Sequence

from nfcourse.flows.actnorm import ActNorm
from nfcourse.flows.autoregressive import MAF
from nfcourse.flows.base import Bijection, Inverse
from nfcourse.flows.composite import Flow
from nfcourse.flows.coupling import AdditiveCoupling, AffineCoupling
from nfcourse.flows.linear import InvConv1x1
from nfcourse.flows.logit import Logit
from nfcourse.flows.masks import channel_mask, checkerboard_mask, half_mask
from nfcourse.flows.multiscale import FactorOut, Squeeze
from nfcourse.flows.scaling import DiagonalScaling

__all__ = ["coupling_flow", "realnvp_image", "multiscale_image", "maf_flow"]


def coupling_flow(dim: int, couplings: int, hidden: Sequence[int] = (64, 64),
                  affine: bool = True, scaling: bool = False) -> Flow:
    """K couplings on ``[..., dim]`` vectors, the kept half alternating: RealNVP's affine
    couplings (``affine=True``) or NICE's additive ones, with NICE's final
    ``DiagonalScaling`` if ``scaling``.

    >>> flow = coupling_flow(2, couplings=4, hidden=(16,))
    >>> len(flow), flow.dim
    (4, 2)
    """
    layer = AffineCoupling if affine else AdditiveCoupling
    layers: list[Bijection] = [layer(half_mask(dim, first=k % 2 == 0), hidden=tuple(hidden))
                               for k in range(couplings)]
    if scaling:
        layers.append(DiagonalScaling(dim))
    return Flow(layers)


def realnvp_image(size: int = 8, couplings: int = 8, hidden: int = 32,
                  alpha: float = 0.05) -> Bijection:
    """Single-scale RealNVP on ``[1, size, size]`` images in [0, 1): the logit, then
    ``couplings`` checkerboard affine couplings (conv conditioners, ``hidden`` channels).

    >>> import torch
    >>> flow = realnvp_image(8, couplings=2, hidden=4)
    >>> flow(torch.randn(3, 1, 8, 8))[0].shape
    torch.Size([3, 1, 8, 8])
    """
    normalizing: list[Bijection] = [Logit(1, alpha=alpha, event_dims=3)]
    normalizing += [AffineCoupling(checkerboard_mask(size, size, even=k % 2 == 0), channels=1,
                                   hidden=hidden) for k in range(couplings)]
    return Inverse(Flow(normalizing))


def _glow_steps(channels: int, steps: int, hidden: int) -> list[Bijection]:
    """Glow's step: ActNorm, invertible 1x1 convolution, affine coupling on half the
    channels (alternating halves, though the 1x1 convolution also mixes them)."""
    layers: list[Bijection] = []
    for k in range(steps):
        layers += [ActNorm(channels, event_dims=3), InvConv1x1(channels),
                   AffineCoupling(channel_mask(channels, first=k % 2 == 0), hidden=hidden)]
    return layers


def multiscale_image(size: int = 8, steps: int = 3, hidden: int = 32,
                     alpha: float = 0.05) -> Bijection:
    """RealNVP's multi-scale flow with Glow's steps on ``[1, size, size]`` images in [0, 1)
    (``size`` divisible by 4); the latent is ``[4, size/2, size/2]``.

    >>> import torch
    >>> flow = multiscale_image(8, steps=1, hidden=4)
    >>> x, _ = flow(torch.randn(3, 4, 4, 4))
    >>> x.shape
    torch.Size([3, 1, 8, 8])
    """
    if size % 4:
        raise ValueError(f"multiscale_image squeezes twice: size must be divisible by 4, "
                         f"got {size}")
    second_scale = Flow([Squeeze(2), *_glow_steps(8, steps, hidden), Inverse(Squeeze(2))])
    normalizing = Flow([
        Logit(1, alpha=alpha, event_dims=3),
        AffineCoupling(checkerboard_mask(size, size), channels=1, hidden=hidden),
        AffineCoupling(checkerboard_mask(size, size, even=False), channels=1, hidden=hidden),
        Squeeze(1),                                          # [4, size/2, size/2]
        *_glow_steps(4, steps, hidden),
        FactorOut(second_scale, channels=4),                 # 2 channels go on, 2 stay
    ])
    return Inverse(normalizing)


def maf_flow(dim: int, layers: int = 5, hidden: Sequence[int] = (128,),
             alpha: float | None = 0.05) -> Flow:
    """MAF on ``[..., dim]`` vectors: ``layers`` MAF layers (MADE with ``hidden`` units,
    order reversed every other layer), after the logit preprocessing unless ``alpha`` is
    None.

    >>> import torch
    >>> flow = maf_flow(4, layers=2, hidden=(8,))
    >>> flow.inverse(torch.rand(3, 4))[0].shape        # data to noise: one pass a layer
    torch.Size([3, 4])
    """
    body: list[Bijection] = [MAF(dim, hidden=tuple(hidden), reverse=k % 2 == 1)
                             for k in range(layers)]
    if alpha is not None:
        body.append(Inverse(Logit(dim, alpha=alpha)))
    return Flow(body)
