"""Unpacking downloaded archives: zip and tar (plain, .gz, .bz2, .xz), safely and restartably.

RAR and 7z are refused with a clear message: no permissively licensed pure-Python extractor exists
for them (``rarfile`` needs the external, non-free ``unrar`` tool to decompress; ``py7zr`` is LGPL),
so the user extracts them with their own tool and runs ``angioseg data convert`` on the folder.

Every member is checked to land inside the destination folder (no ``../`` or absolute paths, no
links pointing out), and the folder is marked complete only after the last member is written, so an
interrupted extraction is simply redone.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from angioseg.errors import DataError

DONE_MARKER = ".angioseg-extracted"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
UNSUPPORTED = {".rar": "RAR", ".7z": "7z"}


def archive_kind(path: str | Path) -> str | None:
    """``"zip"``, ``"tar"`` or ``None`` (not an archive we can open), judged by name and content."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".zip") or (path.is_file() and zipfile.is_zipfile(path)):
        return "zip"
    if name.endswith(TAR_SUFFIXES) or (path.is_file() and tarfile.is_tarfile(path)):
        return "tar"
    return None


def is_archive(path: str | Path) -> bool:
    """True for a file that :func:`extract` can unpack or would refuse by name (rar, 7z)."""
    path = Path(path)
    return path.is_file() and (archive_kind(path) is not None or path.suffix.lower() in UNSUPPORTED)


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise DataError(archive, f"refusing to extract {name!r}: it would land outside the target folder")
    return rel


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _safe_member(info.filename, archive)
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise DataError(archive, f"not a valid zip archive ({exc}); delete it and download again") from None


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _safe_member(m.name, archive)
                if m.issym() or m.islnk():
                    target = (
                        PurePosixPath(m.name).parent / m.linkname if m.issym() else PurePosixPath(m.linkname)
                    )
                    _safe_member(str(target), archive)
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise DataError(archive, f"refusing to extract {m.name!r}: not a file or folder")
            # The 'data' filter (Python >= 3.11.4 / 3.12) also strips setuid bits and absolute links.
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - old Python; members were checked above
                tf.extractall(dest, members=members)
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(archive, f"not a valid tar archive ({exc}); delete it and download again") from None


def extract(archive: str | Path, dest: str | Path) -> Path:
    """Unpack ``archive`` into the folder ``dest`` (skipped when a previous run finished it).

    Returns ``dest``. An unfinished earlier extraction (no completion marker) is wiped and redone.

    Raises:
        DataError: missing file, RAR/7z (with instructions), a corrupt archive, or a member that
            would be written outside ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(archive, "archive does not exist")
    suffix = archive.suffix.lower()
    if suffix in UNSUPPORTED:
        raise DataError(
            archive,
            f"{UNSUPPORTED[suffix]} archives can't be unpacked here (no permissively licensed pure-Python "
            f"reader exists); extract it with your own tool (e.g. 7-Zip or unar) and run "
            f"'angioseg data convert FORMAT EXTRACTED_FOLDER --out DIR'",
        )
    kind = archive_kind(archive)
    if kind is None:
        raise DataError(
            archive, "not a zip or tar archive (expected .zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz)"
        )
    if (dest / DONE_MARKER).exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (_extract_zip if kind == "zip" else _extract_tar)(archive, dest)
    (dest / DONE_MARKER).write_text(f"{archive.name}\n", encoding="utf-8")
    return dest
