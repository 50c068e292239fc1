"""``npsiamese data download``: fetch the official Omniglot files, verify them, write atomically.

Files come from ``https://github.com/brendenlake/omniglot/raw/master/python/``
(override with ``base_url=`` or ``$NPSIAMESE_BASE_URL``, e.g. for a mirror or
the tests' local server). Each download streams into a temporary file next to
the destination, is verified, and only then renamed into place, so a failed or
interrupted download never leaves a half-written zip behind.

Verification: SHA-256 where the official checksum is known (the two small
background sets and ``all_runs.zip``); for the full sets, whose zip containers
differ between copies, the structure (alphabet / character / image counts).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .omniglot import DataError, data_dir, scan_omniglot

BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python"
BASE_URL_ENV = "NPSIAMESE_BASE_URL"


class DownloadError(DataError):
    """A download failed or its content did not verify."""


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its path under the base URL and how to verify it."""

    url_path: str
    sha256: str | None = None
    counts: tuple | None = None      # (alphabets, characters, images) for the full sets

    @property
    def filename(self):
        return self.url_path.rsplit("/", 1)[-1]


FILES = {
    "small1": RemoteFile("images_background_small1.zip",
                         sha256="f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"),
    "small2": RemoteFile("images_background_small2.zip",
                         sha256="3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"),
    "background": RemoteFile("images_background.zip", counts=(30, 964, 19280)),
    "evaluation": RemoteFile("images_evaluation.zip", counts=(20, 659, 13180)),
    "runs": RemoteFile("one-shot-classification/all_runs.zip",
                       sha256="437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"),
}


def sha256sum(path, chunk=1 << 20):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(name, path):
    """Raise :class:`DownloadError` unless ``path`` is the expected content for ``name``."""
    remote = FILES[name]
    if remote.sha256 is not None:
        got = sha256sum(path)
        if got != remote.sha256:
            raise DownloadError(f"download: {remote.filename} has SHA-256 {got}, expected {remote.sha256}: "
                                f"the file is corrupt or not the official one.")
    if remote.counts is not None:
        try:
            counts = scan_omniglot(path).counts
            with zipfile.ZipFile(path) as zf:
                damaged = zf.testzip()          # CRC of every member: catches flipped bytes
        except (DataError, zipfile.BadZipFile, OSError) as err:
            raise DownloadError(f"download: {remote.filename} is not a valid Omniglot zip ({err}).") from None
        if damaged is not None:
            raise DownloadError(f"download: {remote.filename} is corrupt: {damaged} fails its CRC check.")
        if counts != remote.counts:
            raise DownloadError(f"download: {remote.filename} holds {counts[0]} alphabets, {counts[1]} "
                                f"characters, {counts[2]} images; expected {remote.counts[0]}, "
                                f"{remote.counts[1]}, {remote.counts[2]}. It is incomplete or not the "
                                f"official set.")


def fetch(url, dest, progress=True, timeout=60.0, check=None):
    """Stream ``url`` into ``dest`` atomically (temporary file in the same folder, then rename).

    ``check(path)``, if given, runs on the complete temporary file before the
    rename and raises to reject it. Raises :class:`DownloadError` on network
    errors, HTTP errors and truncated transfers (fewer bytes than
    ``Content-Length``); the temporary file is always removed on failure.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    expected = int(expected) if expected is not None else None
                    received = 0
                    with tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name,
                              disable=not progress, leave=False) as bar:
                        while block := response.read(1 << 16):
                            out.write(block)
                            received += len(block)
                            bar.update(len(block))
            except urllib.error.HTTPError as err:
                raise DownloadError(f"download: {url} answered HTTP {err.code} ({err.reason}).") from None
            except http.client.HTTPException as err:   # e.g. IncompleteRead: connection closed early
                raise DownloadError(f"download: {url} broke off ({type(err).__name__}); run the command "
                                    f"again.") from None
            except (urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                raise DownloadError(
                    f"download: could not fetch {url} ({reason}). No network? Download the file on a machine "
                    f"with internet access and copy it to {dest}, or set {BASE_URL_ENV} to a mirror."
                ) from None
            if expected is not None and received != expected:
                raise DownloadError(f"download: {url} was cut off after {received} of {expected} bytes; "
                                    f"run the command again.")
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def download(name, dest_dir=None, base_url=None, force=False, progress=True, timeout=60.0):
    """Download and verify one official file; return its path.

    Parameters
    ----------
    name : str
        ``"small1"``, ``"small2"``, ``"background"``, ``"evaluation"`` or ``"runs"``.
    dest_dir : str or path, optional
        Default: ``$NPSIAMESE_DATA``, else the cache directory (where
        :func:`npsiamese.omniglot.load_omniglot` looks).
    base_url : str, optional
        Default: ``$NPSIAMESE_BASE_URL``, else the official GitHub location.
    force : bool
        Download even if a verified copy is already there.
    """
    if name not in FILES:
        raise ValueError(f"download: unknown file {name!r}; choose one of {sorted(FILES)} or 'all'.")
    remote = FILES[name]
    dest = data_dir(dest_dir) / remote.filename
    if dest.exists() and not force:
        try:
            verify(name, dest)
            return dest                       # already here and intact
        except DownloadError:
            pass                              # damaged copy: fetch a fresh one
    base = (base_url or os.environ.get(BASE_URL_ENV) or BASE_URL).rstrip("/")
    return fetch(f"{base}/{remote.url_path}", dest, progress=progress, timeout=timeout,
                 check=lambda path: verify(name, path))


def download_many(names, **kwargs):
    """Download several files (``"all"`` means every one); returns their paths."""
    names = list(FILES) if "all" in names else list(dict.fromkeys(names))
    return [download(n, **kwargs) for n in names]
