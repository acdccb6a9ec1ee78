"""Resumable HTTP(S) download with SHA-256 verification and an atomic rename.

The bytes go to ``DEST.part``; an interrupted download (Ctrl-C, dropped connection, a crash) keeps
that file, and the next call asks the server for the rest with an HTTP ``Range: bytes=N-`` request.
A server that ignores ``Range`` (answers ``200`` instead of ``206``) is handled by starting over.
Only a complete file whose checksum matches (when one is known) is renamed to ``DEST``, so ``DEST``
either does not exist or is whole.

Written on the standard library's :mod:`urllib` (no new dependency); progress is a rich bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from angioseg import __version__
from angioseg.errors import DataError

CHUNK = 1 << 20
USER_AGENT = f"angioseg/{__version__} (+https://github.com/angioseg)"
_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass
class DownloadResult:
    """What :func:`download` did.

    Attributes:
        path: the complete file.
        sha256: its SHA-256 (always computed, also when nothing was expected).
        verified: ``True`` when an expected SHA-256 was given and matched.
        fetched: bytes transferred by this call (0 when the file was already there).
        resumed_from: size of the ``.part`` file this call continued from (0 for a fresh start).
        url: the URL the bytes came from (``None`` when nothing was downloaded).
    """

    path: Path
    sha256: str
    verified: bool
    fetched: int = 0
    resumed_from: int = 0
    url: str | None = None


class _Retry(Exception):
    """A transient failure (dropped connection, short read, 5xx): try again from the ``.part``."""

    def __init__(self, message: str, written: int = 0) -> None:
        super().__init__(message)
        self.written = written


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    """SHA-256 of a file, read in chunks (lower-case hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``'bytes 100-199/1000'`` -> ``(100, 1000)``; ``'bytes */1000'`` -> ``(None, 1000)``."""
    m = _RANGE.match(value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


@contextlib.contextmanager
def _progress_bar(enabled: bool, name: str, total: int | None, done: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n_bytes)``; draws a rich download bar on stderr when ``enabled``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(name, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def _fetch_once(url: str, part: Path, total: int | None, timeout: float, progress: bool) -> int:
    """One HTTP request that appends to (or restarts) ``part``; returns the bytes it wrote.

    Raises:
        _Retry: the transfer stopped early or the server had a transient error.
        DataError: a permanent error (4xx, a server that resumes at the wrong byte, size mismatch).
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # asked for bytes past the end: .part is complete or too long
            _, full = parse_content_range(exc.headers.get("Content-Range"))
            if full is not None and full == offset:
                return 0
            part.unlink()
            raise _Retry(f"server refused to resume at byte {offset}; starting over") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(url, f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, socket.gaierror):  # unknown host or no DNS: retrying won't help
            raise DataError(url, f"cannot reach the server ({reason})") from None
        raise _Retry(f"cannot reach the server ({reason})") from None
    with resp:
        if resp.status == 206:
            start, full = parse_content_range(resp.headers.get("Content-Range"))
            if start != offset:
                raise DataError(url, f"server resumed at byte {start}, but {offset} bytes are on disk")
            mode = "ab"
        elif resp.status == 200:  # a fresh download, or a server that ignores Range: start over
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            full = int(length) if length is not None else None
        else:
            raise DataError(url, f"unexpected HTTP status {resp.status} {resp.reason}")
        if total is not None and full is not None and full != total:
            raise DataError(url, f"server offers {full} bytes, but the registry expects {total}")
        full = full if full is not None else total
        written = 0
        with open(part, mode) as fh, _progress_bar(progress, part.name[:-5], full, offset) as advance:
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retry(f"connection lost ({exc.__class__.__name__}: {exc})", written) from None
                if not block:
                    break
                try:
                    fh.write(block)
                except OSError as exc:
                    raise DataError(part, f"cannot write the download ({exc})") from None
                written += len(block)
                advance(len(block))
            fh.flush()
            os.fsync(fh.fileno())
    got = part.stat().st_size
    if full is not None and got < full:
        raise _Retry(f"connection closed after {got} of {full} bytes", written)
    if full is not None and got > full:
        part.unlink()
        raise _Retry(f"received {got} bytes, more than the {full} announced; starting over", written)
    return written


def _fetch(
    url: str, part: Path, size: int | None, retries: int, timeout: float, backoff: float, progress: bool
) -> int:
    """Fill ``part`` from ``url``, resuming after transient failures up to ``retries`` times.

    Returns the number of bytes transferred.
    """
    attempt = 0
    written = 0
    while True:
        try:
            return written + _fetch_once(url, part, size, timeout, progress)
        except _Retry as exc:
            written += exc.written
            if attempt >= retries:
                kept = part.stat().st_size if part.exists() else 0
                then = (
                    f"{kept} bytes are kept in {part}, run the command again to resume"
                    if kept
                    else "nothing was downloaded"
                )
                raise DataError(
                    url, f"download failed after {retries + 1} attempt(s): {exc}; {then}"
                ) from None
            attempt += 1
            time.sleep(backoff * 2 ** (attempt - 1))


def download(
    urls: str | Sequence[str],
    dest: str | Path,
    sha256: str | None = None,
    size: int | None = None,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> DownloadResult:
    """Download a file to ``dest``, resuming a previous ``dest.part`` and verifying its SHA-256.

    Args:
        urls: one URL or several (mirrors, tried in order until one succeeds).
        dest: final path; created only when the download is complete and verified.
        sha256: expected SHA-256 (hex); ``None`` means "unknown": the digest is computed and returned
            with ``verified=False`` so that the caller can record it, but nothing is checked.
        size: expected size in bytes, when known (a server announcing another size is an error).
        retries: how often a dropped connection, short read or 5xx answer is retried (each retry
            resumes from the bytes already on disk), per URL.
        timeout: seconds to wait for the server to connect or send data.
        backoff: seconds before the first retry; doubled for each further one.
        progress: draw a progress bar on stderr.

    Raises:
        DataError: every URL failed (the message names the last URL and the reason), or the
            checksum does not match (the download is deleted so that the next run starts afresh),
            or an existing ``dest`` has the wrong checksum.
    """
    dest = Path(dest)
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("download() needs at least one URL")
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        digest = sha256_file(dest)
        if expected and digest != expected:
            raise DataError(
                dest, f"exists but its SHA-256 is {digest}, expected {expected}; delete it and run again"
            )
        return DownloadResult(dest, digest, verified=expected is not None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    failures: list[str] = []
    used: str | None = None
    fetched = 0
    for url in url_list:
        try:
            fetched = _fetch(url, part, size, retries, timeout, backoff, progress)
            used = url
            break
        except DataError as exc:
            failures.append(str(exc))
    if used is None:
        raise DataError(None, "; ".join(failures))
    digest = sha256_file(part)
    if expected and digest != expected:
        part.unlink()
        raise DataError(
            used,
            f"checksum mismatch: the download's SHA-256 is {digest}, expected {expected}; the file was "
            "deleted: run the command again to download it afresh (if it fails again, the file on the "
            "server has changed: download it by hand and use --archive)",
        )
    os.replace(part, dest)
    return DownloadResult(dest, digest, expected is not None, fetched, resumed_from, used)
