"""Reading and writing 3D volumes (NRRD, NIfTI, MetaImage, DICOM series) with their geometry.

All formats go through SimpleITK, which keeps spacing, origin and direction and reads NRRD files
without a ``space directions`` header (MONAI's ``LoadImage`` does not; see
``shared/reference/stack_notes.md``). A prediction is written in its input's format with the same
geometry (:func:`output_path`, :func:`write_volume`); a DICOM input gives a DICOM series folder.

Every failure raises :class:`~angioseg.errors.DataError` naming the file and the problem; every
output is written atomically (a temporary name renamed into place).
"""

from __future__ import annotations

import locale
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.errors import DataError

# Extension (lower case) -> format name. Longest match wins (".nii.gz" before ".gz").
FORMATS = {
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".mha": "mha",
    ".mhd": "mha",
    ".dcm": "dicom",
}
# Refused from the header, before allocation: 2^29 voxels is 512 x 512 x 2048 (a long CT at full
# resolution, 1 GiB as int16); a corrupt header claiming 10^15 voxels must not reach the allocator.
MAX_VOXELS = 2**29
FORMAT_EXT = {"nrrd": ".nrrd", "nifti": ".nii.gz", "mha": ".mha", "dicom": ""}
# DICOM tags copied from the input series into a written series (patient and study identity).
_COPY_TAGS = ("0010|0010", "0010|0020", "0010|0030", "0020|000d", "0008|0020", "0008|0030", "0008|0050")


@dataclass
class Volume:
    """A 3D image and its physical geometry.

    Attributes:
        array: ``D x H x W`` array indexed ``[z, y, x]`` (raw HU for CT, 0/1 for labels).
        spacing: voxel size ``(sz, sy, sx)`` in mm, in array-axis order.
        origin: physical position ``(x, y, z)`` in mm of voxel ``[0, 0, 0]`` (ITK/LPS convention).
        direction: 3 x 3 direction cosines, ITK convention (column ``c`` = physical direction of
            the ``c``-th ITK index axis, i.e. of x, y, z = array axes 2, 1, 0).
        source: the file or DICOM folder it was read from.
        format: ``"nrrd"``, ``"nifti"``, ``"mha"`` or ``"dicom"``.
        tags: DICOM identity tags of the source series (empty for other formats).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    source: Path | None = None
    format: str = "nrrd"
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    def like(self, array: np.ndarray) -> Volume:
        """A volume with the same geometry holding ``array`` (same ``D x H x W`` shape)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the volume's {self.array.shape}")
        return replace(self, array=array)

    def index_to_world(self, zyx: np.ndarray) -> np.ndarray:
        """``N x 3`` voxel coordinates ``(z, y, x)`` -> ``N x 3`` physical ``(x, y, z)`` in mm."""
        ijk = np.asarray(zyx, float)[:, ::-1] * np.asarray(self.spacing[::-1])
        return ijk @ np.asarray(self.direction).T + np.asarray(self.origin)

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """``N x 3`` physical ``(x, y, z)`` in mm -> ``N x 3`` continuous voxel coordinates ``(z, y, x)``."""
        rel = np.asarray(xyz, float) - np.asarray(self.origin)
        ijk = np.linalg.solve(np.asarray(self.direction), rel.T).T / np.asarray(self.spacing[::-1])
        return np.asarray(ijk[:, ::-1])


@contextmanager
def _keep_locale() -> Iterator[None]:
    """Restore the C locale after GDCM: its DICOM writer leaves ``LC_CTYPE`` at "C", which turned
    Python's default text encoding into ASCII for the rest of the process."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def volume_format(path: str | Path) -> str | None:
    """Format name of a volume path (``None`` if not a volume); a folder is a DICOM series."""
    p = Path(path)
    if p.is_dir():
        return "dicom"
    name = p.name.lower()
    for ext in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return FORMATS[ext]
    return None


def volume_stem(path: str | Path) -> str:
    """File name without its volume extension (``case_1.nii.gz`` -> ``case_1``)."""
    p = Path(path)
    name = p.name
    for ext in sorted(FORMATS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _from_sitk(img: Any, path: Path, fmt: str, tags: dict[str, str]) -> Volume:
    import SimpleITK as sitk

    if img.GetDimension() != 3:
        raise DataError(
            path, f"expected a 3D volume, got a {img.GetDimension()}D image of size {img.GetSize()}"
        )
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            path, f"expected a scalar volume, got {img.GetNumberOfComponentsPerPixel()} components per voxel"
        )
    arr = sitk.GetArrayFromImage(img)
    sx, sy, sz = img.GetSpacing()
    return Volume(
        array=arr,
        spacing=(float(sz), float(sy), float(sx)),
        origin=tuple(float(v) for v in img.GetOrigin()),  # type: ignore[arg-type]
        direction=np.asarray(img.GetDirection(), float).reshape(3, 3),
        source=path,
        format=fmt,
        tags=tags,
    )


def _read_dicom_series(folder: Path) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    warn = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM prints "No Series were found" itself
    try:
        series = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise DataError(folder, f"cannot scan for DICOM series ({_last_line(exc)})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn)
    if not series:
        raise DataError(folder, "folder holds no DICOM series (expected the slices of one CT series)")
    # Several series in one folder: take the one with the most slices (the CT), as viewers do.
    files_per = {s: reader.GetGDCMSeriesFileNames(str(folder), s) for s in series}
    uid = max(files_per, key=lambda s: len(files_per[s]))
    files = files_per[uid]
    if len(files) < 2:
        raise DataError(folder, f"DICOM series {uid} has {len(files)} slice; a volume needs at least 2")
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise DataError(folder, f"cannot read DICOM series {uid} ({_last_line(exc)})") from None
    tags = {k: reader.GetMetaData(0, k) for k in _COPY_TAGS if reader.HasMetaDataKey(0, k)}
    return _from_sitk(img, folder, "dicom", tags)


def read_volume(path: str | Path) -> Volume:
    """Read a NRRD / NIfTI / MHA file, a (multi-frame) DICOM file, or a folder holding one DICOM series."""
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise DataError(p, "volume does not exist")
    fmt = volume_format(p)
    if fmt is None:
        raise DataError(
            p, f"not a volume format; expected one of {sorted(FORMATS)} or a folder with a DICOM series"
        )
    if p.is_dir():
        return _read_dicom_series(p)
    if not p.is_file():
        raise DataError(p, "not a regular file (a pipe, socket or device); expected a volume file")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
        _check_voxels(p, reader.GetSize(), reader.GetNumberOfComponents())
        img = reader.Execute()
    except RuntimeError as exc:
        raise DataError(p, f"cannot read {fmt} volume ({_last_line(exc)})") from None
    return _from_sitk(img, p, fmt, {})


def _last_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else exc.__class__.__name__


def _check_voxels(path: Path, size: tuple[int, ...], components: int = 1) -> None:
    """Refuse a header that claims more than :data:`MAX_VOXELS` values (before any allocation)."""
    n = int(np.prod([int(v) for v in size], dtype=object)) * max(int(components), 1)
    if n > MAX_VOXELS:
        raise DataError(
            path,
            f"header claims {' x '.join(map(str, size))} voxels, above the limit of {MAX_VOXELS} "
            "(angioseg.cta.volume_io.MAX_VOXELS); corrupt file?",
        )


def read_label(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A binary label volume (any non-zero voxel is vessel), optionally checked against ``shape``."""
    vol = read_volume(path)
    if shape is not None and vol.shape != tuple(shape):
        raise DataError(path, f"label shape {vol.shape} differs from its image's {tuple(shape)}")
    return np.asarray(vol.array != 0)


def output_path(vol: Volume, out_dir: str | Path, stem: str | None = None) -> Path:
    """Where to write a result for ``vol`` in ``out_dir``: same stem, same format as the input."""
    stem = stem or (volume_stem(vol.source) if vol.source is not None else "volume")
    return Path(out_dir) / f"{stem}{FORMAT_EXT[vol.format]}"


def _to_sitk(array: np.ndarray, like: Volume) -> Any:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in like.spacing[::-1]))
    img.SetOrigin(tuple(float(o) for o in like.origin))
    img.SetDirection(tuple(float(d) for d in np.asarray(like.direction).ravel()))
    return img


def _tmp_sibling(path: Path) -> Path:
    # Keeps the full extension (".nii.gz") so SimpleITK picks the right writer.
    return path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")


def write_volume(path: str | Path, array: np.ndarray, like: Volume) -> Path:
    """Write ``array`` (``D x H x W``) with ``like``'s geometry to ``path``, atomically.

    The format follows the extension of ``path``; a path without a volume extension is written as a
    DICOM series folder (one file per slice, a new SeriesInstanceUID, the input's patient/study tags).
    Boolean arrays are stored as uint8 0/1.
    """
    import SimpleITK as sitk

    path = Path(path)
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.shape != like.shape:
        raise ValueError(f"array shape {arr.shape} differs from the reference volume's {like.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = volume_format(path) if not path.is_dir() else "dicom"
    tmp = _tmp_sibling(path)
    try:
        if fmt is None or (fmt == "dicom" and path.suffix.lower() != ".dcm"):
            with _keep_locale():
                _write_dicom_series(tmp, arr, like)
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        else:
            sitk.WriteImage(_to_sitk(arr, like), str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return path


def _write_dicom_series(folder: Path, arr: np.ndarray, like: Volume) -> None:
    """One DICOM file per axial slice; geometry in ImagePositionPatient / ImageOrientationPatient."""
    import SimpleITK as sitk

    if arr.dtype.kind == "f":
        arr = np.clip(np.rint(arr), -32768, 32767).astype(np.int16)
    elif arr.dtype not in (np.uint8, np.int16, np.uint16):
        arr = arr.astype(np.int16)
    folder.mkdir(parents=True)
    img = _to_sitk(arr, like)
    direction = np.asarray(like.direction)
    now_date, now_time = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    series_uid = f"1.2.826.0.1.3680043.2.1125.{uuid.uuid4().int % 10**30}"
    common = {
        **like.tags,
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|0021": now_date,
        "0008|0031": now_time,
        "0008|0060": "CT",
        "0008|103e": "angioseg segmentation",
        "0020|000e": series_uid,
        "0020|0037": "\\".join(f"{v:.9g}" for v in (*direction[:, 0], *direction[:, 1])),
        "0018|0050": f"{like.spacing[0]:.9g}",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(arr.shape[0]):
        sl = img[:, :, k]
        for key, value in common.items():
            sl.SetMetaData(key, value)
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0020|0032", "\\".join(f"{v:.9g}" for v in pos))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        writer.SetFileName(str(folder / f"slice_{k:04d}.dcm"))
        writer.Execute(sl)


def is_volume_path(path: Path) -> bool:
    """True for a volume file or a folder that directly holds DICOM files."""
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return any(p.suffix.lower() == ".dcm" for p in path.iterdir())
    return volume_format(path) is not None


def list_volumes(folder: str | Path) -> dict[str, Path]:
    """``{stem: path}`` of the volumes directly inside ``folder`` (files or DICOM series folders)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(root, "expected a folder of volumes")
    out: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if is_volume_path(p):
            stem = volume_stem(p)
            if stem in out:
                raise DataError(p, f"two volumes share the name {stem!r} ({out[stem].name} and {p.name})")
            out[stem] = p
    return out
