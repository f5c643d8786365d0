"""Data: MNIST (binarized and grayscale), scikit-learn's digits, and 2-D toy sets.

Loaders find their files in a data directory (argument, else ``$NFCOURSE_DATA``, else
``~/.cache/nfcourse``), download missing files unless told not to (``download=False`` or
``NFCOURSE_OFFLINE=1``), and check what they read; see :mod:`nfcourse.data.files`.
"""

from nfcourse.data.digits import DIGITS_LEVELS, load_digits
from nfcourse.data.files import MIRRORS, DataError, fetch, resolve_data_dir
from nfcourse.data.mnist import binarize, load_binarized_mnist, load_mnist
from nfcourse.data.toy import TOY_DATASETS, gaussian_mixture_log_prob, sample_toy

__all__ = [
    "DIGITS_LEVELS",
    "DataError",
    "MIRRORS",
    "TOY_DATASETS",
    "binarize",
    "fetch",
    "gaussian_mixture_log_prob",
    "load_binarized_mnist",
    "load_digits",
    "load_mnist",
    "resolve_data_dir",
    "sample_toy",
]
