"""``angioseg data convert``: one entry point over the format converters, for folders and archives.

Each format has its own module (:mod:`~angioseg.public.arcade`, :mod:`~angioseg.public.dca1`,
:mod:`~angioseg.public.xcad`, :mod:`~angioseg.public.drive`); this module picks one, unpacks an
archive first when given one (into ``OUT/.raw``, removed after a clean conversion), and writes
``OUT/dataset.json``: what was converted from where, with which options, how many items per
folder, which inputs failed and why, plus the provenance that ``fetch`` adds (licence, citation,
download URL, checksums).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from angioseg import __version__
from angioseg.errors import AngiosegError, DataError
from angioseg.public.arcade import convert_arcade
from angioseg.public.archive import extract, is_archive
from angioseg.public.common import ConvertOptions, ConvertResult, unwrap
from angioseg.public.dca1 import convert_dca1
from angioseg.public.drive import convert_drive
from angioseg.public.xcad import convert_xcad
from angioseg.utils import write_json

Converter = Callable[[Path, Path, ConvertOptions], ConvertResult]
CONVERTERS: dict[str, Converter] = {
    "arcade": convert_arcade,
    "dca1": convert_dca1,
    "xcad": convert_xcad,
    "drive": convert_drive,
}
RECORD = "dataset.json"
RAW_DIR = ".raw"


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def convert(
    fmt: str,
    src: str | Path,
    out: str | Path,
    options: ConvertOptions | None = None,
    provenance: dict[str, Any] | None = None,
    keep_raw: bool = False,
) -> ConvertResult:
    """Convert a local copy of a dataset (folder or archive) into angioseg's layout under ``out``.

    Args:
        fmt: one of :data:`CONVERTERS` (``arcade``, ``dca1``, ``xcad``, ``drive``).
        src: the extracted folder, or a .zip / .tar(.gz/.bz2/.xz) archive.
        out: output root; outputs that already exist are kept (rerunning resumes) unless
            ``options.overwrite``.
        options: format-specific choices.
        provenance: extra keys for ``dataset.json`` (``fetch`` passes licence, citation, checksums).
        keep_raw: keep the unpacked archive in ``OUT/.raw`` (it is kept anyway when inputs failed).

    Returns:
        The :class:`ConvertResult`; inputs that failed are in ``result.failed``, the rest is written.

    Raises:
        AngiosegError: unknown format. DataError: missing source, unreadable archive, no dataset of
            this format found in it, or ``out`` inside the source folder.
    """
    key = fmt.strip().lower()
    if key not in CONVERTERS:
        raise AngiosegError(f"unknown format {fmt!r}; known formats: {', '.join(sorted(CONVERTERS))}")
    src, out = Path(src), Path(out)
    options = options or ConvertOptions()
    if not src.exists():
        raise DataError(src, "no such file or folder")
    raw: Path | None = None
    if src.is_file():
        if not is_archive(src):
            raise DataError(
                src, "expected a folder or an archive (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz)"
            )
        raw = extract(src, out / RAW_DIR / _archive_stem(src))
        root = raw
    else:
        if _inside(out, src):
            raise DataError(out, f"the output folder must not lie inside the source folder {src}")
        root = src
    result = CONVERTERS[key](unwrap(root), out, options)
    record: dict[str, Any] = {
        "format": key,
        "source": str(src),
        "options": asdict(options),
        "angioseg_version": __version__,
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "complete": not result.failed,
        "counts": dict(sorted(result.counts.items())),
        "written_by_last_run": result.written,
        "failed": [{"input": name, "problem": why} for name, why in result.failed],
        "notes": result.notes,
        **result.meta,
        **(provenance or {}),
    }
    write_json(out / RECORD, record)
    if raw is not None and not keep_raw and not result.failed:
        shutil.rmtree(raw)
        if not any((out / RAW_DIR).iterdir()):
            (out / RAW_DIR).rmdir()
    return result
