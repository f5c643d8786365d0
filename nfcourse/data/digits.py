"""The 8 x 8 handwritten digits of scikit-learn: the small image set for CPU-speed flows.

1797 images of 8 x 8 = 64 pixels, each pixel an integer *level* 0..16 (the count of set
pixels in a 4 x 4 block of a 32 x 32 bitmap), so 17 levels, with labels 0..9. The data
ship inside scikit-learn: nothing is downloaded.

A flow models densities, so the integer levels are *dequantized* before training: with
u ~ Uniform[0, 1)^64 and y = (x + u) / 17 in [0, 1)^64,

    log P(x) >= E_u[log p(y)] - 64 ln 17,

a lower bound on the log-probability of the discrete image x (the -64 ln 17 is the
Jacobian of the division by 17). Bits per dimension are -log P(x) / (64 ln 2).
"""

from __future__ import annotations

import torch
from sklearn import datasets

#: Number of distinct pixel values (0..16) in :func:`load_digits`.
DIGITS_LEVELS = 17


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 ``[1797, 64]`` with integer levels 0..16, labels int64 ``[1797]``.

    View an image with ``x[i].view(8, 8)``.

    >>> x, y = load_digits()
    >>> x.shape, x.dtype, int(x.max()), y.shape, y.dtype
    (torch.Size([1797, 64]), torch.float32, 16, torch.Size([1797]), torch.int64)
    """
    bunch = datasets.load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    integer_levels = (x == x.round()).all() and x.min() >= 0 and x.max() < DIGITS_LEVELS
    if x.shape != (1797, 64) or not integer_levels:
        raise RuntimeError(
            f"scikit-learn's load_digits returned data of shape {tuple(x.shape)} outside the "
            f"integer levels 0..{DIGITS_LEVELS - 1}; reinstall scikit-learn."
        )
    return x, y
