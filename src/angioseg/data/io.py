"""Reading and writing 2D images: PNG, PGM, TIFF, JPEG, BMP, NPY and DICOM (single- and multi-frame).

Every reader returns :class:`Frame` objects: a multi-frame file (an X-ray angiography cine run, a
multi-page TIFF, a 3D ``.npy`` stack) gives one frame per time point, named ``<file>_f<NNN>``.
Every failure raises :class:`~angioseg.errors.DataError` naming the file and the problem.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.errors import DataError
from angioseg.utils import atomic_path

RASTER_EXTS = {".png", ".pgm", ".ppm", ".pnm", ".jpg", ".jpeg", ".bmp", ".gif"}
TIFF_EXTS = {".tif", ".tiff"}
NPY_EXTS = {".npy"}
DICOM_EXTS = {".dcm", ".dicom", ".ima"}
IMAGE_EXTS = RASTER_EXTS | TIFF_EXTS | NPY_EXTS | DICOM_EXTS
CHANNELS = ("gray", "red", "green", "blue")
# Size limits checked from the header, before any pixel is decoded: a corrupt or hostile header that
# claims 100,000 x 100,000 pixels is refused instead of allocating gigabytes. 8192^2 is well above
# any X-ray detector (<= 3000^2); 2^28 values are e.g. 256 frames of 1024^2 (1 GiB as float32).
MAX_FRAME_PIXELS = 8192 * 8192
MAX_FILE_PIXELS = 2**28


@dataclass
class Frame:
    """One 2D image read from a file.

    Attributes:
        name: ``<stem>`` for a single image, ``<stem>_f<NNN>`` for frame NNN of a multi-frame file.
        image: H x W float32 array of raw intensities (no normalisation).
        source: the file it came from.
        frame: index within a multi-frame file, else ``None``.
        spacing: (row, column) pixel spacing in mm when the file states it (DICOM), else ``None``.
        spacing_source: where ``spacing`` comes from, one of :data:`SPACING_SOURCES`.
        magnification_source: with ``ImagerPixelSpacing/magnification``, the magnification's origin:
            ``EstimatedRadiographicMagnificationFactor`` or ``SID/SOD``; else ``None``.
        frame_rate: frames per second of a cine run when the file states it (DICOM ``CineRate``,
            ``RecommendedDisplayFrameRate`` or ``FrameTime``), else ``None``.
    """

    name: str
    image: np.ndarray
    source: Path
    frame: int | None = None
    spacing: tuple[float, float] | None = None
    spacing_source: str = "none"
    magnification_source: str | None = None
    frame_rate: float | None = None


def frame_name(stem: str, index: int | None) -> str:
    return stem if index is None else f"{stem}_f{index:03d}"


def is_dicom(path: Path) -> bool:
    """True for ``.dcm``-like extensions or files with the DICOM ``DICM`` preamble."""
    if path.suffix.lower() in DICOM_EXTS:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_image_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and (path.suffix.lower() in IMAGE_EXTS or is_dicom(path))
    )


def check_size(path: Path, shape: Sequence[int]) -> None:
    """Refuse an image whose header claims more than :data:`MAX_FRAME_PIXELS` per frame or
    :data:`MAX_FILE_PIXELS` in all. ``shape``: ``[frames x] rows x columns [x samples]`` (a last
    axis of 3 or 4 is taken as colour samples)."""
    dims = [int(v) for v in shape]
    if any(v < 0 for v in dims):
        raise DataError(path, f"header states a negative size {tuple(dims)}")
    plane = dims[:-1] if len(dims) >= 3 and dims[-1] in (3, 4) else dims
    frame = int(np.prod(plane[-2:], dtype=object))
    total = int(np.prod(dims, dtype=object))
    if frame > MAX_FRAME_PIXELS or total > MAX_FILE_PIXELS:
        raise DataError(
            path,
            f"header claims {' x '.join(map(str, dims))} pixels, above the limit of {MAX_FRAME_PIXELS} "
            f"per frame and {MAX_FILE_PIXELS} per file (angioseg.data.io.MAX_*_PIXELS); corrupt file?",
        )


def _to_channel(arr: np.ndarray, channel: str, path: Path) -> np.ndarray:
    """Reduce an H x W x C array to H x W according to ``channel``."""
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[2] not in (2, 3, 4):
        raise DataError(path, f"expected a 2D grayscale or RGB image, got an array of shape {arr.shape}")
    if arr.shape[2] == 2:  # gray + alpha
        return arr[..., 0]
    rgb = arr[..., :3].astype(np.float32)
    if channel == "gray":
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return rgb[..., CHANNELS.index(channel) - 1]


def _read_raster(path: Path, channel: str) -> list[np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            check_size(path, (getattr(im, "n_frames", 1), im.height, im.width))
            im.load()
            arr = np.asarray(im.convert("RGB") if im.mode == "P" else im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot read image ({exc.__class__.__name__}: {exc})") from None
    return [_to_channel(arr, channel, path)]


def _read_tiff(path: Path, channel: str) -> list[np.ndarray]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                check_size(path, page.shape)  # type: ignore[union-attr]
            arr = tif.asarray()
    except DataError:
        raise
    except Exception as exc:  # tifffile raises many exception types on corrupt input
        raise DataError(path, f"cannot read TIFF ({exc.__class__.__name__}: {exc})") from None
    arr = np.squeeze(arr)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.shape[0] > 4):
        return [_to_channel(arr, channel, path)]
    if arr.ndim == 3:  # pages x H x W
        return [a for a in arr]
    if arr.ndim == 4:  # pages x H x W x C
        return [_to_channel(a, channel, path) for a in arr]
    raise DataError(path, f"unsupported TIFF array shape {arr.shape}")


def _read_npy(path: Path, channel: str) -> list[np.ndarray]:
    try:
        with open(path, "rb") as fh:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape = read(fh)[0]
        check_size(path, shape)
        arr = np.load(path, allow_pickle=False)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"cannot read .npy ({exc.__class__.__name__}: {exc})") from None
    arr = np.squeeze(arr)
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return [_to_channel(arr, channel, path)]
    if arr.ndim == 3:
        return [a for a in arr]
    raise DataError(path, f"expected a 2D image or a frames x H x W stack, got shape {arr.shape}")


# Where a pixel spacing in mm comes from (the ``spacing_source`` column of vessels.csv).
PIXEL_SPACING = "PixelSpacing"
IMAGER_CORRECTED = "ImagerPixelSpacing/magnification"
IMAGER_UNCORRECTED = "ImagerPixelSpacing uncorrected"
NO_SPACING = "none"
SPACING_SOURCES = (PIXEL_SPACING, IMAGER_CORRECTED, IMAGER_UNCORRECTED, NO_SPACING)
MAGNIFICATION_FACTOR = "EstimatedRadiographicMagnificationFactor"
MAGNIFICATION_SID_SOD = "SID/SOD"


@dataclass(frozen=True)
class Spacing:
    """A pixel spacing in mm and where it comes from (see :func:`dicom_spacing`)."""

    mm: tuple[float, float] | None
    source: str = NO_SPACING
    magnification_source: str | None = None


def _pair(value: object) -> tuple[float, float] | None:
    try:
        pair = float(value[0]), float(value[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return pair if all(np.isfinite(v) and v > 0 for v in pair) else None


def _positive(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def dicom_spacing(ds: object) -> Spacing:
    """Pixel spacing in mm in the patient plane, as well as the file allows, and its source.

    1. ``PixelSpacing`` (already in the patient plane);
    2. else ``ImagerPixelSpacing`` (at the detector) divided by the magnification:
       ``EstimatedRadiographicMagnificationFactor``, else SID/SOD = ``DistanceSourceToDetector`` /
       ``DistanceSourceToPatient``;
    3. else ``ImagerPixelSpacing`` as it is ("uncorrected": lengths come out too large by the
       unknown magnification);
    4. else no spacing. Missing, zero, negative or malformed values count as absent.
    """
    sp = _pair(getattr(ds, "PixelSpacing", None))
    if sp is not None:
        return Spacing(sp, PIXEL_SPACING)
    sp = _pair(getattr(ds, "ImagerPixelSpacing", None))
    if sp is None:
        return Spacing(None, NO_SPACING)
    mag = _positive(getattr(ds, "EstimatedRadiographicMagnificationFactor", None))
    how = MAGNIFICATION_FACTOR
    if mag is None:
        sid = _positive(getattr(ds, "DistanceSourceToDetector", None))
        sod = _positive(getattr(ds, "DistanceSourceToPatient", None))
        if sid is not None and sod is not None:
            mag, how = sid / sod, MAGNIFICATION_SID_SOD
    if mag is None:
        return Spacing(sp, IMAGER_UNCORRECTED)
    return Spacing((sp[0] / mag, sp[1] / mag), IMAGER_CORRECTED, how)


def _read_dicom(path: Path, channel: str) -> tuple[list[np.ndarray], Spacing, bool]:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        return _decode_dicom(ds, path, channel)
    except DataError:
        raise
    except Exception as exc:
        # pydicom parses elements lazily, so a corrupt header (an unknown VR, a bad length, text in
        # a number) raises anything from KeyError to NotImplementedError when a tag is first read.
        raise DataError(path, f"not a readable DICOM file ({exc.__class__.__name__}: {exc})") from None


def _decode_dicom(ds: Any, path: Path, channel: str) -> tuple[list[np.ndarray], Spacing, bool]:
    if "PixelData" not in ds:
        raise DataError(path, "DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    check_size(path, (n_frames, rows, cols, samples))
    try:
        arr = ds.pixel_array
    except Exception as exc:  # missing decoder for a compressed transfer syntax, truncated data, ...
        raise DataError(
            path,
            f"cannot decode DICOM pixel data ({exc}); for compressed files install "
            "'pylibjpeg pylibjpeg-libjpeg' or 'python-gdcm'",
        ) from None
    arr = np.asarray(arr, dtype=np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    arr = arr * slope + intercept
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        arr = arr.max() - arr
    if n_frames > 1:
        frames = [_to_channel(a, channel, path) if samples > 1 else a for a in arr]
    else:
        frames = [_to_channel(arr, channel, path) if samples > 1 else arr]
    return frames, dicom_spacing(ds), n_frames > 1


def read_frames(path: str | Path, channel: str = "gray") -> list[Frame]:
    """Read every 2D frame of an image file.

    Args:
        path: PNG, PGM/PPM, JPEG, BMP, TIFF (multi-page allowed), NPY (2D or frames x H x W) or
            DICOM (with or without extension; multi-frame cine runs give one frame per time point).
        channel: how colour images become grayscale: ``"gray"`` (luma) or one of ``red``,
            ``green``, ``blue`` (use ``green`` for retinal fundus photographs).

    Raises:
        DataError: missing, unreadable, corrupt or unsupported file.
    """
    path = Path(path)
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    if not path.exists():
        raise DataError(path, "file does not exist")
    if path.is_dir():
        raise DataError(path, "is a folder, expected an image file")
    if not path.is_file():
        raise DataError(path, "not a regular file (a pipe, socket or device); expected an image file")
    ext = path.suffix.lower()
    spacing = Spacing(None)
    multi = False
    if is_dicom(path):
        arrays, spacing, multi = _read_dicom(path, channel)
    elif ext in RASTER_EXTS:
        arrays = _read_raster(path, channel)
    elif ext in TIFF_EXTS:
        arrays = _read_tiff(path, channel)
        multi = len(arrays) > 1
    elif ext in NPY_EXTS:
        arrays = _read_npy(path, channel)
        multi = len(arrays) > 1
    else:
        raise DataError(path, f"unsupported file type {ext!r}; expected one of {sorted(IMAGE_EXTS)}")
    frames = []
    for i, arr in enumerate(arrays):
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim != 2 or min(arr.shape) < 8:
            raise DataError(path, f"expected a 2D image of at least 8 x 8 pixels, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise DataError(path, "image contains NaN or infinite values")
        index = i if multi else None
        frames.append(
            Frame(
                frame_name(path.stem, index),
                arr,
                path,
                index,
                spacing.mm,
                spacing.source,
                spacing.magnification_source,
            )
        )
    return frames


def read_image(path: str | Path, channel: str = "gray") -> np.ndarray:
    """Read a single-frame image as H x W float32 (a multi-frame file is an error here)."""
    frames = read_frames(path, channel)
    if len(frames) != 1:
        raise DataError(path, f"expected a single image, found {len(frames)} frames")
    return frames[0].image


def binarize_mask(arr: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Binarise a mask as ``arr > 0``, warning when it holds more than two values."""
    values = np.unique(arr)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        warnings.warn(
            f"{path or 'mask'}: mask is not binary ({len(values)} distinct values); using > 0 as vessel",
            stacklevel=2,
        )
    return np.asarray(arr > 0)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a vessel mask as an H x W bool array (any value > 0 is vessel)."""
    return binarize_mask(read_image(path), path)


def list_image_files(inputs: Iterable[str | Path], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of image files (folders: their direct children).

    Raises:
        DataError: an input that does not exist, or a folder without any image file.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise DataError(p, "no such file or folder")
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(f for f in p.glob(pattern) if is_image_file(f))
            if not found:
                raise DataError(
                    p, f"folder holds no image file (supported: {', '.join(sorted(IMAGE_EXTS))}, DICOM)"
                )
            out.extend(found)
        else:
            out.append(p)
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Min-max scale to 0..255 uint8 (a constant image becomes all zeros)."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return np.zeros(image.shape, np.uint8)
    return np.round((image - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def write_png(path: str | Path, array: np.ndarray, compress_level: int = 6, bilevel: bool = False) -> None:
    """Write a uint8 (gray or RGB) or bool array as PNG, atomically (zlib ``compress_level`` 0-9;
    1 is about 1.5x faster to write than Pillow's default 6, for binary masks ~1.6x the bytes).

    A bool array is written as 8-bit 0/255, or with ``bilevel`` as a 1-bit black/white PNG: an
    eighth of the pixel bytes, about half the file and twice as fast to write. Viewers show it
    black/white; Pillow reads it back as bool (:func:`read_mask` as the same mask).
    """
    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype == bool and not bilevel:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype not in (np.uint8, np.bool_):
        raise TypeError(f"write_png expects uint8 or bool, got {arr.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG", compress_level=compress_level)


def unique_stems(paths: Sequence[Path]) -> dict[str, Path]:
    """Map file stems to paths, failing when two files share a stem."""
    out: dict[str, Path] = {}
    for p in paths:
        if p.stem in out:
            raise DataError(p, f"two files share the name {p.stem!r} ({out[p.stem].name} and {p.name})")
        out[p.stem] = p
    return out
