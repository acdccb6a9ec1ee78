"""``angioseg data fetch``: download (or take a local archive), verify, unpack and convert.

Steps, each restartable: (1) download every file of the registry entry into the cache
(``OUT/.downloads`` by default) with :func:`~angioseg.public.download.download`, resuming a
``.part`` file and checking the SHA-256 where one is known; or, with ``--archive``, hash the local
file and compare it with the registry's checksum; (2) unpack into ``OUT/.raw``; (3) convert into
our layout; (4) write ``OUT/dataset.json`` with licence, citation, URLs and checksums. A dataset
whose ``dataset.json`` says it is complete is not fetched again (``--force`` redoes the conversion).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from angioseg.errors import AngiosegError, DataError
from angioseg.public.common import ConvertOptions, ConvertResult
from angioseg.public.convert import RECORD, convert
from angioseg.public.download import download, sha256_file
from angioseg.public.registry import DatasetInfo, get_dataset


@dataclass
class FetchResult:
    """What :func:`fetch_dataset` did.

    Attributes:
        info: the registry entry.
        out: the output root.
        sources: one dict per input file (file, url or local path, sha256, expected sha256, verified).
        conversion: the conversion result (``None`` when the dataset was already complete).
    """

    info: DatasetInfo
    out: Path
    sources: list[dict[str, Any]] = field(default_factory=list)
    conversion: ConvertResult | None = None

    @property
    def already_complete(self) -> bool:
        return self.conversion is None


def _complete(out: Path, name: str) -> bool:
    try:
        record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("dataset") == name and record.get("complete") is True


def _check_local(
    info: DatasetInfo, archive: Path, verify: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    """Hash a user-supplied archive and compare it with the registry (single-file datasets)."""
    if archive.is_dir():
        say(f"{archive} is a folder: no checksum to verify")
        return {"file": str(archive), "sha256": None, "expected_sha256": None, "verified": False}
    if not archive.is_file():
        raise DataError(archive, "archive does not exist")
    digest = sha256_file(archive)
    expected = info.files[0].sha256 if len(info.files) == 1 else None
    if expected is None:
        say(f"no published checksum for {info.name}: recording SHA-256 {digest}, verifying nothing")
    elif digest != expected:
        problem = f"SHA-256 is {digest}, but the {info.name} archive of the registry has {expected}"
        if verify:
            raise DataError(archive, f"{problem}; another version? use --no-verify to convert it anyway")
        say(f"warning: {archive}: {problem}; converting it anyway (--no-verify)")
    return {
        "file": str(archive),
        "sha256": digest,
        "expected_sha256": expected,
        "verified": digest == expected,
    }


def fetch_dataset(
    name: str,
    out: str | Path,
    *,
    archive: str | Path | None = None,
    cache: str | Path | None = None,
    options: ConvertOptions | None = None,
    keep_raw: bool = False,
    verify: bool = True,
    force: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
) -> FetchResult:
    """Download (or take ``archive``), verify, unpack and convert a registry dataset into ``out``.

    Args:
        name: registry key (see ``angioseg data list``).
        out: output root.
        archive: a local archive or extracted folder to use instead of downloading (required for
            datasets without a public URL, e.g. DRIVE).
        cache: where downloads are kept (default ``out/.downloads``); a rerun reuses them.
        options: converter options.
        keep_raw: keep the unpacked archive in ``out/.raw``.
        verify: a local archive whose checksum differs from the registry's is an error (``False``:
            a warning). Downloads are always verified where a checksum is known.
        force: convert again even if ``out/dataset.json`` says it is complete (outputs are rewritten).
        progress: show download progress bars.
        announce: where to send status lines (default: nowhere).

    Raises:
        AngiosegError: unknown dataset, or a dataset that can't be downloaded and no ``archive``.
        DataError: download failure, checksum mismatch, unreadable archive, no data found in it.
    """
    info = get_dataset(name)
    out = Path(out)
    say = announce or (lambda s: None)
    options = options or ConvertOptions()
    if force:
        options = replace(options, overwrite=True)
    elif _complete(out, info.name):
        say(f"{info.name} is already complete in {out} (see {out / RECORD}); use --force to convert again")
        return FetchResult(info, out)
    sources: list[dict[str, Any]] = []
    if archive is not None:
        local = Path(archive)
        sources.append(_check_local(info, local, verify, say))
    elif not info.downloadable:
        raise AngiosegError(
            f"{info.name} can't be downloaded automatically: {info.manual}. Get it from {info.homepage} "
            f"and run: angioseg data fetch {info.name} --archive FILE --out {out}"
        )
    else:
        if len(info.files) != 1:
            raise AngiosegError(f"{info.name}: datasets of several files are not supported yet")
        f = info.files[0]
        cache_dir = Path(cache) if cache is not None else out / ".downloads"
        if f.sha256 is None:
            say(f"note: no published checksum for {f.filename}; its SHA-256 is recorded, nothing is verified")
        say(f"downloading {f.filename} from {f.urls[0]}")
        try:
            res = download(f.urls, cache_dir / f.filename, f.sha256, f.size, progress=progress)
        except DataError as exc:
            raise DataError(
                exc.path,
                f"{exc.problem}. Without network access, download {f.filename} by hand from "
                f"{info.homepage} and run: angioseg data fetch {info.name} --archive FILE --out {out}",
            ) from None
        say(f"{res.path}: SHA-256 {res.sha256} ({'verified' if res.verified else 'not verifiable'})")
        local = res.path
        sources.append(
            {
                "file": f.filename,
                "url": res.url or f.urls[0],
                "sha256": res.sha256,
                "expected_sha256": f.sha256,
                "verified": res.verified,
                "checksum_source": f.checksum_source,
            }
        )
    provenance = {
        "dataset": info.name,
        "title": info.title,
        "licence": info.licence,
        "citation": info.citation,
        "homepage": info.homepage,
        "sources": sources,
    }
    say(f"converting {local} ({info.converter} format) into {out}")
    result = convert(info.converter, local, out, options, provenance, keep_raw=keep_raw)
    return FetchResult(info, out, sources, result)
