"""Where data files live, how they are downloaded, and the errors that say what to do.

A data file is found under one *data directory*, chosen in this order:

1. the ``data_dir`` argument of a loader,
2. the environment variable ``NFCOURSE_DATA``,
3. a user cache directory: ``$XDG_CACHE_HOME/nfcourse``, else ``~/.cache/nfcourse``.

Inside it every data set has its own folder (``binarized_mnist/``, ``mnist/``), with the file
names of the canonical download location. A missing file is downloaded from the mirrors in
:data:`MIRRORS` (tried in order) into ``<name>.part``, checked, then renamed into place, so a
failed or interrupted download never leaves a half-written file under the real name.
Downloads are off with ``download=False`` or ``NFCOURSE_OFFLINE=1``: a missing file then
raises :class:`DataError` at once, naming the file, the URL and how to provide it.

Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from nfcourse.utils import progress

#: Base URLs of each data set's folder, tried in order. Tests and users behind a proxy may
#: replace an entry, e.g. ``MIRRORS["mnist"] = ["file:///srv/mnist/"]``.
MIRRORS: dict[str, list[str]] = {
    "binarized_mnist": [
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
    ],
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
}

#: Seconds to wait for a server to answer (connecting, or between two reads).
TIMEOUT = 10.0

_CHUNK = 1 << 16
_TRUE = {"1", "true", "yes", "on"}


class DataError(RuntimeError):
    """A data file is missing, cannot be downloaded, or is not what it should be.

    The message always names the file and says how to fix the problem.
    """


def corrupt(path: Path, problem: str) -> DataError:
    """The error for a data file that is there but wrong: names it, the problem and the fix."""
    return DataError(
        f"{path} is corrupt: {problem}.\n"
        "Delete it and load again to re-download it (or copy a good copy there)."
    )


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$NFCOURSE_DATA``, else the user cache.

    >>> resolve_data_dir("/tmp/my-data")
    PosixPath('/tmp/my-data')
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get("NFCOURSE_DATA", "").strip()
    if from_env:
        return Path(from_env).expanduser()
    cache_root = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(cache_root).expanduser() / "nfcourse"


def downloads_allowed(download: bool = True) -> bool:
    """False when the caller says ``download=False`` or the environment ``NFCOURSE_OFFLINE=1``."""
    offline = os.environ.get("NFCOURSE_OFFLINE", "").strip().lower() in _TRUE
    return download and not offline


def md5sum(path: Path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _urls(folder: str, name: str, mirrors: Sequence[str] | None) -> list[str]:
    bases = list(mirrors) if mirrors is not None else MIRRORS.get(folder, [])
    return [base.rstrip("/") + "/" + name for base in bases]


def _how_to_provide(path: Path, folder: str, name: str, urls: Sequence[str]) -> str:
    where = "\n".join(f"  {url}" for url in urls) or "  (no URL is known for this file)"
    return (
        f"Fetch it from\n{where}\n"
        f"and put it at {path}, or set NFCOURSE_DATA to a directory that holds "
        f"{folder}/{name}."
    )


def fetch(folder: str, name: str, data_dir: str | os.PathLike | None = None,
          download: bool = True, md5: str | None = None,
          mirrors: Sequence[str] | None = None) -> Path:
    """The path of ``<data dir>/<folder>/<name>``, downloading it first if it is missing.

    ``md5``, when given, is checked on a freshly downloaded file before it is renamed into
    place (files already there are checked by the loaders, which know what is in them).
    ``mirrors`` replaces ``MIRRORS[folder]`` for this call. Raises :class:`DataError` when
    the file is missing and downloads are off, or when every mirror fails.
    """
    path = resolve_data_dir(data_dir) / folder / name
    if path.is_file():
        return path
    urls = _urls(folder, name, mirrors)
    if not downloads_allowed(download):
        raise DataError(
            f"Missing data file {path}\n"
            "Downloads are off (download=False or NFCOURSE_OFFLINE=1).\n"
            + _how_to_provide(path, folder, name, urls)
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"Cannot create the folder {path.parent} to download {name} into ({err}). "
            "Set NFCOURSE_DATA (or pass data_dir=) to a writable directory."
        ) from err

    failures = []
    for url in urls:
        try:
            download_file(url, path, md5=md5)
            return path
        except DataError as err:
            failures.append(f"  {url}: {err}")
    reasons = "\n".join(failures) or "  no mirror is configured"
    raise DataError(
        f"Missing data file {path}, and downloading it failed:\n{reasons}\n"
        + _how_to_provide(path, folder, name, urls)
    )


def download_file(url: str, path: Path, md5: str | None = None,
                  timeout: float | None = None) -> None:
    """Download ``url`` to ``path`` through ``<path>.part``, with a progress bar.

    The partial file is removed on any failure; a wrong length or ``md5`` counts as one.
    Network problems are raised as :class:`DataError` carrying the reason.
    """
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT if timeout is None else timeout) as r:
            total = r.headers.get("Content-Length")
            total = int(total) if total else None
            received = _copy_with_progress(r.read, part, total, desc=path.name)
        if total is not None and received != total:
            raise DataError(f"the download stopped after {received} of {total} bytes")
        if md5 is not None and (got := md5sum(part)) != md5:
            raise DataError(f"the downloaded bytes have md5 {got}, expected {md5}")
        os.replace(part, path)  # atomic: the real name only ever holds a complete file
    except (OSError, ValueError, http.client.HTTPException) as err:
        # OSError covers URLError, HTTPError, refused connections and timeouts;
        # ValueError a malformed URL.
        raise DataError(f"{type(err).__name__}: {err}") from err
    finally:
        part.unlink(missing_ok=True)  # gone already after a success; never left behind


def _copy_with_progress(read: Callable[[int], bytes], part: Path, total: int | None,
                        desc: str) -> int:
    received = 0
    with open(part, "wb") as out, progress(None, desc=desc, total=total, unit="B",
                                           unit_scale=True, leave=False) as bar:
        for chunk in iter(lambda: read(_CHUNK), b""):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received
