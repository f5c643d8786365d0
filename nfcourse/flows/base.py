r"""The layer convention every flow in :mod:`nfcourse.flows` follows.

A layer is a bijection :math:`f` between spaces of the same dimension. It maps in the
*sampling* direction, from the base towards the target (Rezende & Mohamed's
:math:`z_k = f_k(z_{k-1})`), and returns the log-determinant of its Jacobian per sample:

.. math::

    y = f(x), \qquad \log\left|\det \frac{\partial f}{\partial x}\right| \in \mathbb{R}^{\text{batch}}.

Where an inverse exists (in closed form, or numerically with a stated tolerance),

.. math::

    x = f^{-1}(y), \qquad \log\left|\det \frac{\partial f^{-1}}{\partial y}\right|
    = -\log\left|\det \frac{\partial f}{\partial x}\right|_{x = f^{-1}(y)} .

In code: ``y, log_det = layer(x)`` and ``x, log_det_inv = layer.inverse(y)``.

Where parameters come from:

* **own parameters** (``nn.Parameter``): the default;
* **context** (``context_dim > 0``): coupling and autoregressive layers condition their
  networks on a vector ``context`` of shape ``[..., context_dim]``;
* **amortized** (``param_dim > 0``): Planar, Radial and Sylvester layers built with
  ``amortized=True`` own no parameters; an encoder produces them per sample and passes
  them as ``params`` of shape ``[..., param_dim]`` (R&M §4).

The convention maps onto :class:`torch.distributions.Transform` as follows (see
:mod:`nfcourse.flows.transform` for an adapter): ``layer(x)`` is ``T(x)`` together with
``T.log_abs_det_jacobian(x, T(x))``, and ``layer.inverse(y)`` is ``T.inv(y)`` with the
negated log-det. :class:`torch.distributions.TransformedDistribution` uses the same
direction: it samples with ``T`` and scores with ``T.inv``. (zuko and nflows use the
opposite direction: their transforms map data to noise.)
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["Bijection", "Inverse"]


class Bijection(nn.Module):
    """Base class of every layer: holds the shape checks shared by all of them.

    Subclasses set ``dim`` (the feature size) and ``event_dims`` (1 for vectors
    ``[..., D]``, 3 for images ``[B, C, H, W]`` with ``dim = C``), and optionally
    ``context_dim`` and ``param_dim``.
    """

    dim: int
    event_dims: int = 1
    context_dim: int = 0
    param_dim: int = 0

    def forward(self, x: Tensor, **kwargs) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(
            f"{type(self).__name__} has no inverse; use it in the sampling direction "
            "(FlowDistribution.sample_and_log_prob needs none)."
        )

    def near_identity_params(self, n: int, scale: float = 0.01,
                             generator: torch.Generator | None = None,
                             dtype: torch.dtype | None = None,
                             device: torch.device | str | None = None) -> Tensor:
        """``params`` ``[n, param_dim]`` for an amortized layer that is close to the identity
        (a starting point for a per-sample search): here small random numbers of size
        ``scale``, which suit layers whose map vanishes with its parameters (Radial,
        Sylvester); a layer for which it does not overrides this (Planar)."""
        return scale * torch.randn(n, self.param_dim, generator=generator, dtype=dtype,
                                   device=device)

    def parameters_by_name(self, params: Tensor | None = None,
                           context: Tensor | None = None) -> list[dict[str, Tensor]]:
        """The parameters this layer uses for these inputs, by the names of its paper: one
        dict per layer (a stacked layer such as ``Planar(D, length=K)`` gives K). For an
        amortized layer they are per point, ``[..., ...]``, read from ``params``; otherwise
        the layer's own. A layer conditioned on a context also names it ``context``.

        Here the default: the layer's own parameters under their module paths (a network's
        weights, e.g. NICE's couplings) and the context. Amortized layers override it."""
        if self.param_dim:
            raise NotImplementedError(f"{type(self).__name__} is amortized and does not name "
                                      "its per-point parameters")
        named = dict(self.named_parameters())
        if self.context_dim and context is not None:
            named["context"] = context
        return [named]

    # -- checks ------------------------------------------------------------------------
    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__} expects a tensor, got {type(x).__name__}")
        if self.event_dims == 1:
            if x.dim() < 1 or x.shape[-1] != self.dim:
                raise ValueError(
                    f"{type(self).__name__} expects inputs of shape [..., {self.dim}], "
                    f"got {tuple(x.shape)}"
                )
        elif x.dim() != 4 or x.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects images of shape [batch, {self.dim}, H, W], "
                f"got {tuple(x.shape)}"
            )

    def _check_context(self, x: Tensor, context: Tensor | None) -> Tensor | None:
        """Return the context broadcast to ``x``'s batch shape, or raise a clear error."""
        if self.context_dim == 0:
            if context is not None:
                raise ValueError(f"{type(self).__name__} takes no context (context_dim=0)")
            return None
        if context is None:
            raise ValueError(
                f"{type(self).__name__} was built with context_dim={self.context_dim} and "
                f"needs context=<tensor of shape [..., {self.context_dim}]>"
            )
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"{type(self).__name__} expects a context of shape [..., {self.context_dim}], "
                f"got {tuple(context.shape)}"
            )
        batch = x.shape[:-1] if self.event_dims == 1 else x.shape[:1]
        if context.shape[:-1] != batch:
            try:
                context = context.expand(*batch, self.context_dim)
            except RuntimeError:
                raise ValueError(
                    f"{type(self).__name__}: context of shape {tuple(context.shape)} does not "
                    f"broadcast to the batch shape {tuple(batch)} of the input"
                ) from None
        return context

    def _own_or_amortized(self, params: Tensor | None, own: Callable[[], tuple[Tensor, ...]],
                          sizes: Sequence[int], shape: Sequence[int] | None = None
                          ) -> tuple[Tensor, ...]:
        """The layer's parameter tensors: its own, ``own()``, or, for an amortized layer,
        the encoder's ``params`` (``[..., param_dim]``), read as ``[..., *shape]`` and split
        along the last axis into ``sizes``. Either way the pieces come in the same order and
        with the same trailing shapes, so the code after this call is shared."""
        if not self.param_dim:
            if params is not None:
                self._check_params(params)  # raises: this layer owns its parameters
            return own()
        params = self._check_params(params)
        if shape is not None:
            params = params.unflatten(-1, tuple(shape))
        return params.split(list(sizes), dim=-1)

    def _check_params(self, params: Tensor | None) -> Tensor:
        if self.param_dim == 0:
            raise ValueError(
                f"{type(self).__name__} owns its parameters; build it with amortized=True "
                "to pass per-sample params"
            )
        if params is None:
            raise ValueError(
                f"{type(self).__name__} is amortized and needs params=<tensor of shape "
                f"[..., {self.param_dim}]> from an encoder"
            )
        if params.shape[-1] != self.param_dim:
            raise ValueError(
                f"{type(self).__name__} expects params of shape [..., {self.param_dim}], "
                f"got {tuple(params.shape)}"
            )
        return params


class Inverse(Bijection):
    """The inverse of a layer: swaps ``forward`` and ``inverse``.

    Papers on density estimation (NICE, RealNVP, Glow) write their flows in the
    normalizing direction, data to noise; ``Inverse(Flow([...]))`` lets you write them the
    same way. ``Inverse(MAF(...))`` is a one-pass sampler whose inverse is sequential,
    i.e. an IAF-shaped layer.

    >>> from nfcourse.flows import Squeeze
    >>> unsqueeze = Inverse(Squeeze(4))
    >>> unsqueeze(torch.randn(2, 16, 3, 3))[0].shape
    torch.Size([2, 4, 6, 6])
    """

    def __init__(self, layer: Bijection):
        super().__init__()
        self.layer = layer
        self.event_dims = layer.event_dims
        self.context_dim = layer.context_dim
        self.param_dim = layer.param_dim
        # After Squeeze the channel count differs between the two sides.
        self.dim = getattr(layer, "out_dim", layer.dim)
        self.out_dim = layer.dim

    def forward(self, x: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        return self.layer.inverse(x, **kwargs)

    def inverse(self, y: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        return self.layer(y, **kwargs)
