r"""Normalizing flows, one concept per module, each opening with its equations.

**Convention** (see :mod:`nfcourse.flows.base`): a layer maps in the sampling direction,
base to target, ``y, log_det = layer(x)`` with ``log_det`` of shape ``[batch]``, and
``x, log_det_inv = layer.inverse(y)`` where an inverse exists. This is the direction of
:class:`torch.distributions.Transform` (``layer(x)`` is ``T(x)`` with
``T.log_abs_det_jacobian``), see :class:`BijectionTransform`.

==========================  ==================================  =======================
layer                        paper                               inverse
==========================  ==================================  =======================
Planar, Radial               Rezende & Mohamed 2015              numerical / closed form
Orthogonal-, Householder-,   van den Berg et al. 2018            none (VI path only)
TriangularSylvester
AdditiveCoupling,            Dinh et al. 2015 (NICE)             closed form
DiagonalScaling
AffineCoupling, masks,       Dinh et al. 2017 (RealNVP)          closed form
Squeeze, FactorOut
ActNorm, InvConv1x1,         Kingma & Dhariwal 2018 (Glow)       closed form
LULinear
MADE, MAF                    Germain 2015, Papamakarios 2017     one pass
IAF                          Kingma et al. 2016                  sequential (D passes)
Reverse-, RandomPermutation  RealNVP, MAF                        closed form
Logit (preprocessing)        Dinh et al. 2017 (RealNVP)          closed form
==========================  ==================================  =======================

>>> import torch
>>> from nfcourse.flows import Flow, FlowDistribution, Planar
>>> q = FlowDistribution(Flow([Planar(2) for _ in range(8)]))
>>> z, log_q = q.sample_and_log_prob((256,))      # the VI path of R&M
>>> z.shape, log_q.shape
(torch.Size([256, 2]), torch.Size([256]))
"""

from nfcourse.flows.actnorm import ActNorm
from nfcourse.flows.architectures import (coupling_flow, maf_flow, multiscale_image,
                                          realnvp_image)
from nfcourse.flows.autoregressive import IAF, MAF, AffineAutoregressive
from nfcourse.flows.base import Bijection, Inverse
from nfcourse.flows.composite import Flow
from nfcourse.flows.coupling import (AdditiveCoupling, AffineCoupling, MaskedCoupling,
                                     masked_affine_coupling)
from nfcourse.flows.distribution import FlowDistribution, rsample_base
from nfcourse.flows.linear import InvConv1x1, LULinear
from nfcourse.flows.logit import Logit
from nfcourse.flows.made import MADE, MaskedLinear
from nfcourse.flows.masks import alternating_mask, channel_mask, checkerboard_mask, half_mask
from nfcourse.flows.multiscale import FactorOut, Squeeze
from nfcourse.flows.nets import ACTIVATIONS, MLP, ConvNet, Maxout
from nfcourse.flows.permutation import RandomPermutation, ReversePermutation
from nfcourse.flows.planar import Planar
from nfcourse.flows.radial import Radial
from nfcourse.flows.scaling import DiagonalScaling
from nfcourse.flows.sylvester import (
    HouseholderSylvester,
    OrthogonalSylvester,
    Sylvester,
    TriangularSylvester,
)
from nfcourse.flows.transform import BijectionTransform

__all__ = [
    "ActNorm", "AdditiveCoupling", "AffineAutoregressive", "AffineCoupling", "Bijection",
    "BijectionTransform", "ConvNet", "DiagonalScaling", "FactorOut", "Flow",
    "FlowDistribution", "HouseholderSylvester", "IAF", "InvConv1x1", "Inverse", "LULinear",
    "Logit",
    "ACTIVATIONS", "MADE", "MAF", "MLP", "Maxout", "MaskedCoupling", "MaskedLinear", "masked_affine_coupling", "OrthogonalSylvester", "Planar", "Radial",
    "RandomPermutation", "ReversePermutation", "Squeeze", "Sylvester", "TriangularSylvester",
    "alternating_mask", "channel_mask", "checkerboard_mask", "half_mask", "rsample_base",
    "coupling_flow", "maf_flow", "multiscale_image", "realnvp_image",
]
