"""Frames of a file one at a time, and in batches: a 2,000-frame cine is never decoded whole.

Multi-frame DICOM files are decoded frame by frame through pydicom's ``iter_pixels`` (the pixel
data is read from the file as each frame is needed); every other format goes through
:func:`angioseg.data.io.read_frames`, which holds one file (a single image, or a multi-page TIFF
or NPY stack) at a time. The frames are the same as :func:`~angioseg.data.io.read_frames` gives,
with one documented exception: a MONOCHROME1 cine is inverted against its largest value found in a
first pass (as ``read_frames`` does), so such files are decoded twice.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from angioseg.data.io import Frame, _to_channel, dicom_spacing, frame_name, is_dicom, read_frames
from angioseg.errors import DataError

MIN_SIDE = 8
T = TypeVar("T")
R = TypeVar("R")


def _dicom_header(path: Path) -> object | None:
    """The dataset without pixel data when ``path`` is a multi-frame DICOM cine, else ``None``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError):
        return None  # read_frames gives the proper error
    return ds if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 else None


def _raw_frames(path: Path, ds: object) -> Iterator[np.ndarray]:
    from pydicom.pixels import iter_pixels

    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    index = 0
    try:
        for arr in iter_pixels(path):  # no pixel data at all: an AttributeError, reported below
            a = np.asarray(arr, dtype=np.float32) * slope + intercept
            yield _to_channel(a, "gray", path) if samples > 1 else a
            index += 1
    except DataError:
        raise
    except Exception as exc:  # missing decoder, truncated pixel data, ...
        raise DataError(
            path,
            f"cannot decode DICOM frame {index} ({exc.__class__.__name__}: {exc}); for compressed files "
            "install 'pylibjpeg pylibjpeg-libjpeg' or 'python-gdcm'",
        ) from None


def dicom_frame_rate(ds: object) -> float | None:
    """Frames per second stated by a cine: ``CineRate``, ``RecommendedDisplayFrameRate`` or 1000 / ``FrameTime``."""
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        try:
            v = float(getattr(ds, key, None))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if np.isfinite(v) and v > 0:
            return v
    try:
        ms = float(getattr(ds, "FrameTime", None))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return 1000.0 / ms if np.isfinite(ms) and ms > 0 else None


def iter_file_frames(path: str | Path) -> Iterator[Frame]:
    """The frames of one file, streamed for a multi-frame DICOM (see the module docstring).

    Raises:
        DataError: missing, unreadable or corrupt file, or a bad frame (named by its index).
    """
    path = Path(path)
    ds = _dicom_header(path) if path.is_file() and is_dicom(path) else None
    if ds is None:
        yield from read_frames(path)
        return
    spacing = dicom_spacing(ds)
    rate = dicom_frame_rate(ds)
    invert = str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1"
    top = max(float(a.max()) for a in _raw_frames(path, ds)) if invert else 0.0
    for i, arr in enumerate(_raw_frames(path, ds)):
        if invert:
            arr = top - arr
        if arr.ndim != 2 or min(arr.shape) < MIN_SIDE:
            raise DataError(path, f"frame {i}: expected a 2D image of at least 8 x 8 pixels, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise DataError(path, f"frame {i}: image contains NaN or infinite values")
        yield Frame(
            frame_name(path.stem, i),
            arr,
            path,
            i,
            spacing.mm,
            spacing.source,
            spacing.magnification_source,
            rate,
        )


def batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    """Consecutive frames in lists of at most ``size``, each of one source file and one shape."""
    batch: list[Frame] = []
    for fr in frames:
        if batch and (
            len(batch) >= size or fr.source != batch[0].source or fr.image.shape != batch[0].image.shape
        ):
            yield batch
            batch = []
        batch.append(fr)
    if batch:
        yield batch


_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(
    items: Iterable[T], work: Callable[[T], R], depth: int = 2
) -> Generator[tuple[T, R | BaseException], None, None]:
    """``(item, work(item))`` for each item, computed on one background thread up to ``depth``
    items ahead of the consumer (decoding and preprocessing the next batch while the network runs
    on this one; numpy, pydicom's decoders and torch release the GIL for most of it).

    An error of ``work`` is yielded in place of its result (the consumer decides: a batch that fails
    to preprocess is retried frame by frame); an error of ``items`` itself is raised in the consumer
    at the point where it happened. Leaving the loop early (``break``, an exception) stops the
    thread at its next item.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(obj: object) -> bool:
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                try:
                    res: object = work(item)
                except Exception as exc:  # handed to the consumer with its item
                    res = exc
                if not put((item, res)):
                    return
        except BaseException as exc:  # the iterable's own error: raised in the consumer
            put(_Raised(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=run, name="angioseg-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is _DONE:
                break
            if isinstance(got, _Raised):
                raise got.exc
            yield got  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
