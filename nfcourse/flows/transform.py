r"""Adapter from our layers to :class:`torch.distributions.Transform`.

Both conventions map in the sampling direction, so the correspondence is one to one:

=============================  ==============================================
``torch.distributions``        ``nfcourse.flows``
=============================  ==============================================
``T(x)``                       ``layer(x)[0]``
``T.log_abs_det_jacobian(x,y)``  ``layer(x)[1]`` (summed over the event)
``T.inv(y)``                   ``layer.inverse(y)[0]``
``TransformedDistribution``    :class:`~nfcourse.flows.FlowDistribution`
=============================  ==============================================

The adapter caches the log-det of the last forward call, so
``TransformedDistribution.rsample`` followed by ``log_prob`` of the same sample costs
one pass, as in Pyro; ``log_prob`` of any other point calls ``layer.inverse``.
"""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Transform, constraints

from nfcourse.flows.base import Bijection

__all__ = ["BijectionTransform"]


class BijectionTransform(Transform):
    """Wrap a layer (with fixed ``context``/``params``, if any) as a ``Transform``.

    >>> import torch
    >>> from torch.distributions import Independent, Normal, TransformedDistribution
    >>> from nfcourse.flows import Planar
    >>> layer = Planar(3)
    >>> base = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    >>> q = TransformedDistribution(base, [BijectionTransform(layer)])
    >>> z0 = base.sample((4,))
    >>> y, log_det = layer(z0)
    >>> torch.allclose(q.log_prob(y), base.log_prob(z0) - log_det, atol=1e-5)
    True
    """

    bijective = True

    def __init__(self, layer: Bijection, **kwargs):
        super().__init__(cache_size=1)
        self.layer = layer
        self.kwargs = kwargs
        self._last = None  # (x, y, log_det) of the last forward call

    @property
    def domain(self):
        return constraints.independent(constraints.real, layer_event_dims(self.layer))

    codomain = domain

    def _call(self, x: Tensor) -> Tensor:
        y, log_det = self.layer(x, **self.kwargs)
        self._last = (x, y, log_det)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        x, log_det_inv = self.layer.inverse(y, **self.kwargs)
        self._last = (x, y, -log_det_inv)
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        if self._last is not None and self._last[0] is x and self._last[1] is y:
            return self._last[2]
        return self.layer(x, **self.kwargs)[1]


def layer_event_dims(layer: Bijection) -> int:
    return layer.event_dims
