"""Tests of nfcourse.data: loaders on the reference data, corrupt and missing files,
the download path (file:// URLs and a closed port, never the internet), digits, toy sets."""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch

from nfcourse.data import (
    DIGITS_LEVELS,
    MIRRORS,
    TOY_DATASETS,
    DataError,
    binarize,
    load_binarized_mnist,
    load_digits,
    load_mnist,
    resolve_data_dir,
    sample_toy,
)

REPO = Path(__file__).resolve().parents[1]
BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
CLOSED_PORT = "http://127.0.0.1:9/"  # the discard port: nothing listens, so refused at once

# From ../shared/data/README.md: facts about the canonical arrays.
BINARIZED = {"train": (50_000, 5_118_041), "valid": (10_000, 1_028_036),
             "test": (10_000, 1_038_896)}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The reference data: $NFCOURSE_DATA, else <repo>/../shared/data."""
    path = Path(os.environ.get("NFCOURSE_DATA") or REPO.parent / "shared" / "data")
    if not (path / "binarized_mnist").is_dir():
        reason = (f"no reference data at {path}: set NFCOURSE_DATA to the folder described "
                  "in ../shared/data/README.md")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the network, nor write to the user's cache."""
    monkeypatch.setenv("NFCOURSE_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NFCOURSE_DATA", raising=False)


@pytest.fixture
def reference_env(monkeypatch, data_dir):
    """Loaders find the reference data through NFCOURSE_DATA, as a user's would."""
    monkeypatch.setenv("NFCOURSE_DATA", str(data_dir))
    return data_dir


# ---------------------------------------------------------------------------- data directory

def test_data_dir_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == Path.home() / ".cache" / "nfcourse"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "nfcourse"
    monkeypatch.setenv("NFCOURSE_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


# ------------------------------------------------------------------- loaders on reference data

@pytest.mark.parametrize("split", list(BINARIZED))
def test_binarized_mnist(reference_env, split):
    rows, pixel_sum = BINARIZED[split]
    start = time.perf_counter()
    x = load_binarized_mnist(split)
    assert time.perf_counter() - start < 5  # train: about 0.7 s here; np.loadtxt ~30 s
    assert x.shape == (rows, 784) and x.dtype == torch.float32
    assert ((x == 0) | (x == 1)).all()
    assert x.sum().item() == pixel_sum
    assert 0.10 < x.mean().item() < 0.17  # about 13% of pixels are ink


def test_mnist_test_split(reference_env):
    images, labels = load_mnist("test")
    assert images.shape == (10_000, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    assert images.mean().item() == pytest.approx(0.1325, abs=5e-4)
    counts = torch.bincount(labels, minlength=10)
    assert len(counts) == 10 and counts.sum() == 10_000
    assert counts.min() > 850 and counts.max() < 1150
    assert counts[1] == 1135  # the well-known count of ones in the test split


def test_mnist_train_offline_names_the_missing_images(reference_env):
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_mnist("train")
    assert time.perf_counter() - start < 1
    message = str(info.value)
    assert str(reference_env / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message


def test_unknown_split():
    with pytest.raises(ValueError, match="'valid'"):
        load_mnist("valid")
    with pytest.raises(ValueError, match="'validation'"):
        load_binarized_mnist("validation")


# ------------------------------------------------------------------- corrupt binarized files

def _write_amat(tmp_path: Path, lines: list[str], split: str = "test") -> Path:
    path = tmp_path / "binarized_mnist" / f"binarized_mnist_{split}.amat"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


_ROW = " ".join(["0"] * 783 + ["1"])


@pytest.mark.parametrize("lines, problem", [
    ([_ROW, _ROW, " ".join(["0"] * 700)], "line 3 has 700 values"),
    ([_ROW, _ROW.replace("1", "2"), _ROW], "line 2 holds b'2'"),
    ([_ROW, _ROW[:-3] + "01 0"], "line 2 has two digits without whitespace"),
    ([_ROW] * 5, "5 images, expected 10000"),
    ([], "line 1 has 0 values"),
])
def test_corrupt_binarized_file(tmp_path, lines, problem):
    path = _write_amat(tmp_path, lines)
    with pytest.raises(DataError) as info:
        load_binarized_mnist("test", data_dir=tmp_path)
    message = str(info.value)
    assert str(path) in message and problem in message
    assert "re-download" in message


def test_binarized_wrong_pixel_sum(tmp_path):
    # Right shape and format, wrong array: caught by the canonical pixel sum.
    path = _write_amat(tmp_path, [_ROW] * 10_000)
    with pytest.raises(DataError, match="sum to 10000, but the canonical array's sum to 1038896"):
        load_binarized_mnist("test", data_dir=tmp_path)
    assert path.exists()  # a local file is reported, never deleted behind the user's back


def test_binarized_accepts_other_whitespace(tmp_path, data_dir):
    # The canonical files may differ from the reference copies in whitespace only.
    text = (data_dir / "binarized_mnist" / "binarized_mnist_valid.amat").read_text()
    path = _write_amat(tmp_path, [], split="valid")
    path.write_text(text.replace(" ", "  ").replace("\n", " \r\n"))
    expected = load_binarized_mnist("valid", data_dir=data_dir)
    assert torch.equal(load_binarized_mnist("valid", data_dir=tmp_path), expected)


# ---------------------------------------------------------------------- corrupt idx files

def _mnist_copy(tmp_path: Path, data_dir: Path) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_dir / "mnist" / name, folder / name)
    return folder


def _labels_payload(data_dir: Path) -> bytes:
    return gzip.decompress((data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())


@pytest.mark.parametrize("corruption, problem", [
    ("truncated", "not a complete gzip file"),
    ("not_gzip", "not a complete gzip file"),
    ("wrong_magic", "magic number is 2051, expected 2049"),
    ("wrong_shape", "header says shape (9999,), expected (10000,)"),
    ("wrong_md5", "md5 is"),
    ("short_body", "holds 9990 data bytes, expected 10000"),
    ("bad_label", "label 10"),
])
def test_corrupt_idx_file(tmp_path, data_dir, corruption, problem):
    folder = _mnist_copy(tmp_path, data_dir)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    payload = _labels_payload(data_dir)
    header, body = payload[:8], payload[8:]
    corrupted = {
        "truncated": lambda: path.read_bytes()[:2000],
        "not_gzip": lambda: b"<html>404 Not Found</html>",
        "wrong_magic": lambda: gzip.compress(struct.pack(">i", 2051) + payload[4:]),
        "wrong_shape": lambda: gzip.compress(struct.pack(">ii", 2049, 9999) + body[:9999]),
        # Same content, re-compressed: parses, but is not the canonical file.
        "wrong_md5": lambda: gzip.compress(payload, mtime=0),
        "short_body": lambda: gzip.compress(header + body[:-10]),
        "bad_label": lambda: gzip.compress(header + bytes([10]) + body[1:]),
    }[corruption]()
    path.write_bytes(corrupted)
    with pytest.raises(DataError) as info:
        load_mnist("test", data_dir=tmp_path)
    message = str(info.value)
    assert str(path) in message and problem in message
    assert "re-download" in message


# ------------------------------------------------------------------ missing files, downloads

def test_missing_file_offline_fails_at_once(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_binarized_mnist("valid", data_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 1
    message = str(info.value)
    assert str(tmp_path / "empty" / "binarized_mnist" / "binarized_mnist_valid.amat") in message
    assert BINARIZED_URL + "binarized_mnist_valid.amat" in message
    assert "NFCOURSE_DATA" in message
    assert not (tmp_path / "empty").exists()  # nothing created when nothing is fetched


def test_download_false_is_offline_too(monkeypatch, tmp_path):
    monkeypatch.delenv("NFCOURSE_OFFLINE")
    monkeypatch.setitem(MIRRORS, "mnist", [CLOSED_PORT])  # would fail loudly if tried
    with pytest.raises(DataError, match="Downloads are off"):
        load_mnist("test", data_dir=tmp_path, download=False)


@pytest.fixture
def mirror(tmp_path, data_dir) -> Path:
    """A local mirror of the MNIST test files (serve it as ``mirror.as_uri() + "/"``)."""
    return _mnist_copy(tmp_path / "mirror", data_dir)


def test_download_from_a_file_url(monkeypatch, tmp_path, data_dir, mirror):
    monkeypatch.delenv("NFCOURSE_OFFLINE")
    monkeypatch.setitem(MIRRORS, "mnist", [CLOSED_PORT, mirror.as_uri() + "/"])  # 1st fails
    target = tmp_path / "fresh"
    images, labels = load_mnist("test", data_dir=target)
    expected_images, expected_labels = load_mnist("test", data_dir=data_dir)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    assert sorted(p.name for p in (target / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no .part left


def test_download_failure_is_clean(monkeypatch, tmp_path):
    monkeypatch.delenv("NFCOURSE_OFFLINE")
    monkeypatch.setitem(MIRRORS, "mnist", [CLOSED_PORT])
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_mnist("test", data_dir=tmp_path)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    assert str(path) in message and "downloading it failed" in message
    assert CLOSED_PORT + "t10k-images-idx3-ubyte.gz" in message
    assert "refused" in message.lower()  # the underlying reason
    assert "NFCOURSE_DATA" in message
    assert list((tmp_path / "mnist").iterdir()) == []  # no partial file left behind


def test_download_with_wrong_checksum_leaves_nothing(monkeypatch, tmp_path, mirror):
    source = mirror / "t10k-images-idx3-ubyte.gz"
    source.write_bytes(source.read_bytes()[:-100])  # the mirror serves a damaged file
    monkeypatch.delenv("NFCOURSE_OFFLINE")
    monkeypatch.setitem(MIRRORS, "mnist", [mirror.as_uri() + "/"])
    with pytest.raises(DataError, match="the downloaded bytes have md5"):
        load_mnist("test", data_dir=tmp_path / "fresh")
    assert list((tmp_path / "fresh" / "mnist").iterdir()) == []


# ------------------------------------------------------------------------------- binarize

def test_binarize_dynamic_and_threshold(reference_env):
    images, _ = load_mnist("test")
    g = torch.Generator().manual_seed(0)
    sample = binarize(images, generator=g)
    assert sample.shape == images.shape and sample.dtype == images.dtype
    assert set(sample.unique().tolist()) == {0.0, 1.0}
    assert sample.mean().item() == pytest.approx(images.mean().item(), abs=2e-3)
    assert torch.equal(sample, binarize(images, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(sample, binarize(images, generator=g))  # fresh every call
    assert torch.equal(binarize(images, threshold=0.5), (images > 0.5).float())
    with pytest.raises(ValueError, match="divide bytes by 255"):
        binarize(images * 255)


# --------------------------------------------------------------------------------- digits

def test_digits():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert torch.equal(x.unique(), torch.arange(DIGITS_LEVELS, dtype=torch.float32))
    assert torch.equal(y.unique(), torch.arange(10))
    assert torch.bincount(y).min() > 170


# ------------------------------------------------------------------------------- toy sets

N = 4000


def _toy(name: str, seed: int = 0, n: int = N, **kwargs) -> torch.Tensor:
    return sample_toy(name, n, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_shape_dtype_reproducibility(name):
    x = _toy(name)
    assert x.shape == (N, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert x.abs().max() < 4.5  # inside the common plotting box
    assert torch.equal(x, _toy(name))
    assert not torch.equal(x, _toy(name, seed=1))
    assert _toy(name, dtype=torch.float64).dtype == torch.float64
    torch.manual_seed(3)
    a = sample_toy(name, 10)
    torch.manual_seed(3)
    assert torch.equal(a, sample_toy(name, 10))  # the global seed works without a generator


def test_toy_same_points_on_gpu(device):
    if device.type == "cpu":
        pytest.skip("compares a GPU with the CPU: run with --device cuda (or mps)")
    for name in TOY_DATASETS:
        x = _toy(name, device=device)
        assert x.device.type == device.type and torch.equal(x.cpu(), _toy(name)), name


def test_toy_names_give_distinct_data():
    samples = {name: _toy(name) for name in TOY_DATASETS}
    for a in TOY_DATASETS:
        for b in TOY_DATASETS:
            if a < b:
                assert not torch.allclose(samples[a], samples[b], atol=0.1), (a, b)


def test_toy_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy data set 'moons'.*two_moons"):
        sample_toy("moons", 10)
    for n in (0, -5, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            sample_toy("rings", n)


def _distance_to_curve(x: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x.double(), curve.double()).min(dim=1).values


def _curve(t: torch.Tensor, fx, fy) -> torch.Tensor:
    return torch.stack([fx(t), fy(t)], dim=-1)


def test_two_moons_geometry():
    x = _toy("two_moons")
    t = torch.linspace(0, math.pi, 2000, dtype=torch.float64)
    upper = _curve(t, lambda t: 2 * (torch.cos(t) - 0.5), lambda t: 2 * (torch.sin(t) - 0.25))
    lower = _curve(t, lambda t: 2 * (0.5 - torch.cos(t)), lambda t: 2 * (0.25 - torch.sin(t)))
    d_upper, d_lower = _distance_to_curve(x, upper), _distance_to_curve(x, lower)
    distance = torch.minimum(d_upper, d_lower)
    assert distance.median() < 0.2 and distance.quantile(0.99) < 0.6  # noise sd 0.2
    assert (d_upper < d_lower).double().mean().item() == pytest.approx(0.5, abs=0.03)
    assert -3.8 < x[:, 0].min() < -2.5 and 2.5 < x[:, 0].max() < 3.8
    assert -2.2 < x[:, 1].min() < -1.2 and 1.2 < x[:, 1].max() < 2.2


def test_rings_geometry():
    x = _toy("rings")
    radii = torch.tensor([0.75, 1.5, 2.25, 3.0])
    gap = (x.norm(dim=1, keepdim=True) - radii).abs()
    assert gap.min(dim=1).values.quantile(0.999) < 0.35  # noise sd 0.08
    counts = torch.bincount(gap.argmin(dim=1), minlength=4)
    assert (counts - N / 4).abs().max() < 0.05 * N
    assert x.mean(dim=0).abs().max() < 0.1  # uniform angles


def test_gaussian_mixture_has_eight_clusters():
    x = _toy("gaussian_mixture", n=8000)
    angles = 2 * math.pi * torch.arange(8) / 8
    centres = 2.5 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    nearest = torch.cdist(x, centres).argmin(dim=1)
    assert (torch.bincount(nearest, minlength=8) - 1000).abs().max() < 120
    within = x - centres[nearest]
    assert within.std(dim=0).tolist() == pytest.approx([0.25, 0.25], abs=0.02)


def test_checkerboard_geometry():
    x = _toy("checkerboard")
    assert x.min() >= -4 and x.max() <= 4
    cells = torch.floor(x / 2).long()  # -2..1 on each axis
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()  # only the "black" squares
    counts = torch.bincount((cells[:, 0] + 2) * 4 + cells[:, 1] + 2, minlength=16)
    assert (counts > 0).sum() == 8 and (counts[counts > 0] - N / 8).abs().max() < 0.04 * N


def test_spirals_geometry():
    x = _toy("spirals")
    t = torch.linspace(0, 3 * math.pi, 4000, dtype=torch.float64)
    arm = _curve(t, lambda t: -torch.cos(t) * t / 3, lambda t: torch.sin(t) * t / 3)
    distance = _distance_to_curve(x, torch.cat([arm, -arm]))
    assert distance.median() < 0.12 and distance.quantile(0.99) < 0.35  # noise sd 0.1
    assert x.mean(dim=0).abs().max() < 0.1  # the arms are point-symmetric
    radius = x.norm(dim=1)  # (radius / π)² ≈ u is uniform: E[radius] = 2π/3, max ≈ π
    assert radius.mean().item() == pytest.approx(2 * math.pi / 3, abs=0.1)
    assert math.pi - 0.3 < radius.max() < math.pi + 0.5


def test_pinwheel_arms_curl_as_stated():
    x = _toy("pinwheel").double()
    # Undo the curl exp(f1)/4, with f1 ≈ |x|/2; what remains is one of 5 arm angles.
    angle = torch.atan2(x[:, 1], x[:, 0]) - torch.exp(x.norm(dim=1) / 2) / 4
    period = 2 * math.pi / 5
    residual = torch.remainder(angle + period / 2, period) - period / 2
    assert residual.abs().median() < 0.1 and residual.abs().quantile(0.9) < 0.3
    arm = torch.remainder(torch.round(angle / period), 5).long()
    assert (torch.bincount(arm, minlength=5) - N / 5).abs().max() < 0.05 * N


def test_swiss_roll_geometry():
    x = _toy("swiss_roll")
    t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, 4000, dtype=torch.float64)
    roll = _curve(t, lambda t: t * torch.cos(t) / 5, lambda t: t * torch.sin(t) / 5)
    distance = _distance_to_curve(x, roll)
    assert distance.median() < 0.12 and distance.quantile(0.99) < 0.35
