"""MNIST, in the two forms the papers use.

*Statically binarized MNIST* (Larochelle & Murray, 2011): one fixed binarization,
50000 / 10000 / 10000 images of 784 pixels in {0, 1} (train / valid / test), no labels. It
is the benchmark of Rezende & Mohamed (2015) and of most VAE papers, so log-likelihoods
are comparable across papers. Stored as text (``.amat``), one image per line.

*Grayscale MNIST* (LeCun et al.): 60000 / 10000 images of 28 x 28 bytes with labels, in
gzipped idx files. Returned as intensities in [0, 1]; :func:`binarize` turns them into
binary images, either afresh at every epoch (*dynamic binarization*,
x ~ Bernoulli(intensity)) or by a threshold.

Both loaders check what they read against facts about the canonical files (row counts,
pixel sums, md5 checksums, idx headers) and raise :class:`~nfcourse.data.files.DataError`
naming the file, what is wrong and how to fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from nfcourse.data.files import corrupt, fetch

# split -> (rows, sum of all pixels) of the canonical arrays.
BINARIZED_SPLITS = {
    "train": (50_000, 5_118_041),
    "valid": (10_000, 1_028_036),
    "test": (10_000, 1_038_896),
}

# split -> (file prefix, number of images)
MNIST_SPLITS = {"train": ("train", 60_000), "test": ("t10k", 10_000)}

#: md5 of the canonical gzipped idx files.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

_PIXELS = 28 * 28
_IDX_IMAGES, _IDX_LABELS = 2051, 2049  # magic numbers: unsigned bytes, 3 dims / 1 dim
_ONES_AS_ZEROS = bytes.maketrans(b"1", b"0")


def _check_split(split: str, splits: dict) -> None:
    if split not in splits:
        raise ValueError(f"split={split!r} is not one of {sorted(splits)}")


def load_binarized_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                         download: bool = True) -> torch.Tensor:
    """Statically binarized MNIST: a float32 tensor ``[N, 784]`` of zeros and ones.

    ``split`` is ``"train"`` (50000), ``"valid"`` (10000) or ``"test"`` (10000). Reshape
    with ``x.view(-1, 1, 28, 28)`` for convolutions.
    """
    _check_split(split, BINARIZED_SPLITS)
    rows, pixel_sum = BINARIZED_SPLITS[split]
    path = fetch("binarized_mnist", f"binarized_mnist_{split}.amat", data_dir, download)
    pixels = _read_amat(path)
    if len(pixels) != rows:
        raise corrupt(path, f"it has {len(pixels)} images, expected {rows}")
    if (got := np.count_nonzero(pixels)) != pixel_sum:
        raise corrupt(path, f"its pixels sum to {got}, but the canonical array's sum to "
                            f"{pixel_sum}")
    return torch.from_numpy(pixels).to(torch.float32)


def _read_amat(path: Path) -> np.ndarray:
    """Parse a binarized-MNIST ``.amat`` file into a uint8 array ``[N, 784]`` of 0/1.

    ``np.loadtxt`` takes tens of seconds on the 78 MB train file; byte-level operations
    (``bytes.translate`` and a reshape) take well under a second.
    """
    text = path.read_bytes()
    stray = text.translate(None, b"01 \t\r\n")
    if stray:
        at = text.index(stray[:1])
        raise corrupt(path, f"line {_line_number(text, at)} holds {stray[:1]!r}; "
                            "only 0, 1 and whitespace may occur")
    # With every 1 written as 0, two digits in a row show up as "00".
    glued = text.translate(_ONES_AS_ZEROS).find(b"00")
    if glued >= 0:
        raise corrupt(path, f"line {_line_number(text, glued)} has two digits "
                            "without whitespace between them; values must be single 0/1")
    # Drop the separators, keep the newlines: then each line is 784 digits long.
    lines = text.translate(None, b" \t\r").rstrip(b"\n").split(b"\n")
    for number, line in enumerate(lines, start=1):
        if len(line) != _PIXELS:
            raise corrupt(path, f"line {number} has {len(line)} values, expected {_PIXELS} "
                                "(is the file truncated?)")
    return np.frombuffer(b"".join(lines), dtype=np.uint8).reshape(-1, _PIXELS) - ord("0")


def _line_number(text: bytes, offset: int) -> int:
    return text.count(b"\n", 0, offset) + 1


def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Grayscale MNIST: images float32 ``[N, 28, 28]`` in [0, 1] and labels int64 ``[N]``.

    ``split`` is ``"train"`` (60000) or ``"test"`` (10000).
    """
    _check_split(split, MNIST_SPLITS)
    prefix, n = MNIST_SPLITS[split]
    images = _read_idx(prefix + "-images-idx3-ubyte.gz", _IDX_IMAGES, (n, 28, 28),
                       data_dir, download)
    labels = _read_idx(prefix + "-labels-idx1-ubyte.gz", _IDX_LABELS, (n,),
                       data_dir, download)
    return (torch.from_numpy(images).to(torch.float32) / 255,
            torch.from_numpy(labels).to(torch.int64))


def _read_idx(name: str, magic: int, shape: tuple[int, ...],
              data_dir: str | os.PathLike | None, download: bool) -> np.ndarray:
    """Fetch, decompress and check one gzipped idx file; a uint8 array of ``shape``."""
    md5 = MNIST_MD5[name]
    path = fetch("mnist", name, data_dir, download, md5=md5)
    packed = path.read_bytes()
    try:
        data = gzip.decompress(packed)
    except (EOFError, OSError, zlib.error) as err:  # truncated, or not gzip at all
        raise corrupt(path, f"it is not a complete gzip file ({err})") from err

    header = 4 + 4 * len(shape)  # magic, then one big-endian int32 per dimension
    if len(data) < header:
        raise corrupt(path, f"it holds {len(data)} bytes, too few for an idx header")
    got_magic, *dims = struct.unpack(f">{len(shape) + 1}i", data[:header])
    if got_magic != magic:
        raise corrupt(path, f"its idx magic number is {got_magic}, expected {magic}")
    if tuple(dims) != shape:
        raise corrupt(path, f"its idx header says shape {tuple(dims)}, expected {shape}")
    if len(data) - header != np.prod(shape):
        raise corrupt(path, f"it holds {len(data) - header} data bytes, expected "
                            f"{np.prod(shape)}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    if magic == _IDX_LABELS and array.max() > 9:
        raise corrupt(path, f"it holds label {array.max()}; labels are 0..9")
    if (got := hashlib.md5(packed).hexdigest()) != md5:
        raise corrupt(path, f"its md5 is {got}, but the canonical file's is {md5}")
    return array.copy()  # writable, so torch.from_numpy does not warn


def binarize(images: torch.Tensor, generator: torch.Generator | None = None,
             threshold: float | None = None) -> torch.Tensor:
    """Binary images from intensities in [0, 1], same shape, dtype and device.

    By default each pixel is drawn as Bernoulli(intensity) (*dynamic binarization*: call
    it once per epoch for fresh samples); with ``threshold`` a pixel is 1 where the
    intensity exceeds it.

    >>> x = torch.tensor([[0.0, 0.3, 0.8, 1.0]])
    >>> binarize(x, threshold=0.5)
    tensor([[0., 0., 1., 1.]])
    >>> b = binarize(x, generator=torch.Generator().manual_seed(0))
    >>> b[0, 0].item(), b[0, 3].item()  # probabilities 0 and 1 are certain
    (0.0, 1.0)
    """
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"binarize needs intensities in [0, 1], got values in "
                         f"[{low}, {high}]; divide bytes by 255 first.")
    if threshold is not None:
        return (images > threshold).to(images.dtype)
    return torch.bernoulli(images, generator=generator)
