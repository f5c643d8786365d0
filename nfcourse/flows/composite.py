r"""A composite flow: layers applied in sequence, log-determinants summed.

.. math::

    z_K = f_K \circ \dots \circ f_1 (z_0), \qquad
    \log\left|\det \frac{\partial z_K}{\partial z_0}\right|
    = \sum_{k=1}^K \log\left|\det \frac{\partial f_k}{\partial z_{k-1}}\right| ,

and the inverse runs the layers backwards, :math:`z_{k-1} = f_k^{-1}(z_k)` for
:math:`k = K, \dots, 1`.

``context`` goes to every layer that takes one. ``params`` (for amortized layers) is one
tensor ``[..., param_dim]`` from an encoder; it is split among the amortized layers in
order, ``param_dim = sum(layer.param_dim)``.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from nfcourse.flows.base import Bijection

__all__ = ["Flow"]


class Flow(Bijection):
    """A sequence of layers, itself a layer.

    >>> import torch
    >>> from nfcourse.flows import Planar
    >>> flow = Flow([Planar(2) for _ in range(4)])
    >>> y, log_det = flow(torch.randn(5, 2))
    >>> y.shape, log_det.shape
    (torch.Size([5, 2]), torch.Size([5]))
    """

    def __init__(self, layers: Iterable[Bijection]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if len(self.layers) == 0:
            raise ValueError("Flow needs at least one layer")
        first = self.layers[0]
        self.dim = first.dim
        self.event_dims = first.event_dims
        self.context_dim = max(layer.context_dim for layer in self.layers)
        self._param_sizes = [layer.param_dim for layer in self.layers if layer.param_dim]
        self.param_dim = sum(self._param_sizes)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def near_identity_params(self, n: int, scale: float = 0.01,
                             generator: torch.Generator | None = None,
                             dtype: torch.dtype | None = None,
                             device: torch.device | str | None = None) -> Tensor:
        """Each amortized layer's near-identity ``params``, in the order ``forward`` reads them."""
        return torch.cat([torch.zeros(n, 0, dtype=dtype, device=device)]
                         + [layer.near_identity_params(n, scale, generator, dtype, device)
                            for layer in self.layers if layer.param_dim], -1)

    def _plan(self, context: Tensor | None, params: Tensor | None) -> list[dict]:
        """The keyword arguments each layer receives."""
        if self.context_dim and context is None:
            raise ValueError(
                f"this Flow has layers with context_dim={self.context_dim}; pass context=..."
            )
        if self.param_dim:
            chunks = iter(self._check_params(params).split(self._param_sizes, dim=-1))
        elif params is not None:
            raise ValueError("this Flow has no amortized layers; params must be None")
        plan = []
        for layer in self.layers:
            kwargs = {}
            if layer.context_dim:
                kwargs["context"] = context
            if layer.param_dim:
                kwargs["params"] = next(chunks)
            plan.append(kwargs)
        return plan

    def parameters_by_name(self, params: Tensor | None = None,
                           context: Tensor | None = None) -> list[dict[str, Tensor]]:
        """Each layer's named parameters, in order (see :meth:`Bijection.parameters_by_name`)."""
        return [named for layer, kwargs in zip(self.layers, self._plan(context, params))
                for named in layer.parameters_by_name(**kwargs)]

    def forward(self, x: Tensor, context: Tensor | None = None,
                params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        plan = self._plan(context, params)
        log_det = None
        for layer, kwargs in zip(self.layers, plan):
            x, ld = layer(x, **kwargs)
            log_det = ld if log_det is None else log_det + ld
        return x, log_det

    def inverse(self, y: Tensor, context: Tensor | None = None,
                params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        plan = self._plan(context, params)
        log_det = None
        for layer, kwargs in zip(reversed(self.layers), reversed(plan)):
            y, ld = layer.inverse(y, **kwargs)
            log_det = ld if log_det is None else log_det + ld
        return y, log_det
