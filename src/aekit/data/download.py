"""Downloading files with a progress bar and verifying them before use."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import DownloadError

_CHUNK = 1 << 16


def md5sum(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of a file: md5 (the checksum the MNIST mirrors publish) or ``algorithm`` (e.g. sha256)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(urls: list[str], dest: Path, md5: str, timeout: float = 30.0, algorithm: str = "md5") -> Path:
    """Fetch ``dest`` from the first mirror in ``urls`` that serves it with checksum ``md5`` (of ``algorithm``,
    e.g. ``"sha256"`` where that is what the publisher gives).

    The file is written to a temporary name, verified, then renamed, so a
    failed or interrupted download never leaves a file that looks complete.

    Raises
    ------
    DownloadError
        When no mirror can be reached or none serves the expected bytes.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        actual = md5sum(tmp, algorithm)
        if actual == md5:
            os.replace(tmp, dest)
            return dest
        failures.append(f"{url}: checksum mismatch ({algorithm} {actual}, expected {md5})")
    tmp.unlink(missing_ok=True)
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))
