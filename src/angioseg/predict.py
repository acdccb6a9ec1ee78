"""Inference: probabilities for preprocessed images, and ``angioseg segment`` on files and folders.

Two ways to handle any input size:

* ``resize`` (default): preprocess as in training (which resizes to the model's ``image_size``),
  predict, and resize the probability map back onto the original pixel grid;
* ``sliding``: preprocess without resizing, resize the image to the training scale without
  changing its aspect ratio (the short side becomes ``image_size``, the factor the resize mode
  uses on a square frame), run MONAI's Gaussian-weighted sliding-window inferer with windows of
  ``image_size`` along the long side, and resize the probability map back. On a square frame this
  is the resize mode; on a wide or tall frame (a 512 x 768 run of a 256 model) the vessels keep
  their training width instead of being squeezed along the long side.

fp32 by default; ``fast=True`` runs channels_last + bf16 autocast (several times faster on CPUs
with native bf16, same Dice in our measurement) and, in resize mode, the batched preprocessing at
model resolution of :mod:`angioseg.infer.fastprep` (Dice within 0.005 of the standard path on the
CIMAT test split). ``engine="onnx"`` runs the network in ONNX Runtime instead of PyTorch, and
``engine="openvino"`` in OpenVINO (bf16 with ``fast``: the fastest on Intel CPUs).

The engines, the fast preprocessing, the streaming of cine frames and the cine outputs live in
:mod:`angioseg.infer`; this module is the user-facing layer over them.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from angioseg.data.io import IMAGER_UNCORRECTED, Frame, list_image_files, to_uint8, write_png
from angioseg.data.preprocess import (
    Geometry,
    PreprocessConfig,
    preprocess_image,
    resize_image,
    restore_geometry,
)
from angioseg.errors import AngiosegError, DataError
from angioseg.infer.engines import (
    Engine,
    OnnxEngine,
    OpenVinoEngine,
    TorchEngine,
    check_engine,
    check_tta,
    onnx_bytes,
    predict_proba,
    with_tta,
)
from angioseg.infer.fastprep import fast_preprocess, restore_batch
from angioseg.infer.outputs import CineOutputs, OrderedWriter, progress_columns
from angioseg.infer.stream import batches, iter_file_frames, prefetch
from angioseg.metrics.vessel import vessel_stats
from angioseg.models.unet import UNet
from angioseg.utils import atomic_open

MODES = ("resize", "sliding")
__all__ = ["MODES", "SegmentResult", "Segmenter", "overlay", "predict_proba", "segment_inputs"]


def training_scale_shape(shape: tuple[int, ...], image_size: int) -> tuple[int, int]:
    """Size of an ``H x W`` image resized by ``image_size / min(H, W)``: the scale a model trained on
    square frames resized to ``image_size`` saw (the short side becomes ``image_size`` exactly)."""
    h, w = shape[:2]
    factor = image_size / min(h, w)
    return max(image_size, round(h * factor)), max(image_size, round(w * factor))


@dataclass
class Prepared:
    """A batch preprocessed by the fast path: the network's input and each frame's geometry."""

    x: torch.Tensor
    geoms: list[Geometry]


class Segmenter:
    """A loaded segmentation model with its preprocessing: raw image in, vessel probability out.

    ``threads`` sets the onnx and openvino engines' threads; torch's are process-wide
    (``torch.set_num_threads``, as ``angioseg segment --threads`` does).
    """

    def __init__(
        self,
        model: UNet,
        meta: dict[str, Any],
        fast: bool = False,
        mode: str = "resize",
        threshold: float = 0.5,
        device: str | None = None,
        engine: str | Engine = "torch",
        tta: str = "none",
        threads: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise AngiosegError(f"--mode must be one of {MODES}, got {mode!r}")
        self.model = model.to(device or "cpu").eval()
        self.meta = meta
        self.fast = fast
        self.mode = mode
        self.threshold = threshold
        self.preprocess = PreprocessConfig.from_dict(meta.get("preprocess"))
        self.image_size = self.preprocess.image_size
        if mode == "sliding":
            if self.image_size is None:
                raise AngiosegError(
                    "--mode sliding needs a model trained at a fixed image size (its windows); this model "
                    "was trained at native resolution (preprocess.image_size is null): use --mode resize"
                )
            # Resizing happens in probability(), isotropically, after the native-scale steps.
            self.preprocess = replace(self.preprocess, image_size=None)
        # the batched preprocessing at model resolution (resize mode only)
        self.fast_preprocess = fast and mode == "resize" and self.image_size is not None
        if not isinstance(engine, str):
            self.engine: Engine = engine
        elif check_engine(engine) == "onnx":
            self.engine = OnnxEngine(onnx_bytes(self.model, self.image_size or 256), threads)
        elif engine == "openvino":
            self.engine = OpenVinoEngine(onnx_bytes(self.model, self.image_size or 256), fast, threads)
        else:
            self.engine = TorchEngine(self.model, fast=fast)
        self.tta = check_tta(tta)
        self.engine = with_tta(self.engine, tta)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> Segmenter:
        from angioseg.train.checkpoint import load_model

        model, meta = load_model(path)
        if kwargs.get("engine") == "onnx":  # the exported graph beside the weights, if it is current
            from angioseg.infer.export import onnx_engine_for
            from angioseg.train.checkpoint import resolve_checkpoint

            size = PreprocessConfig.from_dict(meta.get("preprocess")).image_size or 256
            kwargs["engine"], _ = onnx_engine_for(
                resolve_checkpoint(path)[0], model, size, kwargs.get("threads")
            )
        try:
            return cls(model, meta, **kwargs)
        except AngiosegError as exc:
            raise AngiosegError(f"{path}: {exc}") from None

    def probability(self, image: np.ndarray) -> np.ndarray:
        """Vessel probability on the original pixel grid of ``image`` (raw intensities)."""
        return self.probabilities([image])[0]

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`probability` of several images, through the network in one batch where possible."""
        if not images:
            return []
        batch = self.prepare(images)
        if batch is not None:
            return self.run_prepared(batch)
        if self.fast_preprocess:
            return [p for im in images for p in self.probabilities([im])]
        prepared = [preprocess_image(im, self.preprocess) for im in images]
        xs = [x for x, _ in prepared]
        roi = None
        if self.mode == "sliding" and self.image_size is not None:
            roi = self.image_size
            xs = [resize_image(x, training_scale_shape(x.shape, roi)) for x in xs]
        probs = predict_proba(self.model, xs, batch_size=len(xs), roi_size=roi, engine=self.engine)
        return [
            restore_geometry(p, g) for p, (_, g) in zip(probs, prepared, strict=True)
        ]  # native pixel grid

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared | None:
        """The fast path's preprocessing of a batch of frames of one size, or ``None`` where the
        batch takes another path. It touches no state of the segmenter, so it may run on another
        thread while :meth:`run_prepared` runs the network on the batch before."""
        if not (self.fast_preprocess and images and len({im.shape for im in images}) == 1):
            return None
        x, geoms = fast_preprocess(images, self.preprocess)
        return Prepared(x, geoms)

    def run_prepared(self, prepared: Prepared) -> list[np.ndarray]:
        """Vessel probabilities of a :meth:`prepare`d batch."""
        return restore_batch(self.engine(prepared.x), prepared.geoms) if len(prepared.geoms) else []

    def segment_prepared(self, prepared: Prepared) -> list[np.ndarray]:
        """Vessel masks of a :meth:`prepare`d batch."""
        return [p >= self.threshold for p in self.run_prepared(prepared)]

    def segment(self, image: np.ndarray) -> np.ndarray:
        return self.probability(image) >= self.threshold

    def segment_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [p >= self.threshold for p in self.probabilities(images)]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: the image in gray with the vessel mask tinted red."""
    g = to_uint8(image)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    # the tint of each gray level, looked up (the same arithmetic as on the pixels, 256 times only)
    levels = np.arange(256, dtype=np.float32)[:, None]
    tint = np.clip(((1 - alpha) * levels + alpha * np.array([255.0, 40.0, 40.0])).astype(np.float32), 0, 255)
    rgb[mask] = tint.astype(np.uint8)[g[mask]]
    return rgb


VESSEL_COLUMNS = (
    "name",
    "source",
    "area_px",
    "centerline_px",
    "mean_diam_px",
    "max_diam_px",
    "spacing_mm",
    "spacing_source",
    "magnification_source",
    "area_mm2",
    "centerline_mm",
    "mean_diam_mm",
    "max_diam_mm",
)


def write_vessels_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_open(path, newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(VESSEL_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]))
                    for k in VESSEL_COLUMNS
                }
            )


@dataclass
class SegmentResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)  # multi-frame mask stacks and overlay videos


def _vessel_row(name: str, frame: Frame, mask: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "source": str(frame.source),
        **vessel_stats(mask, frame.spacing),
        "spacing_source": frame.spacing_source,
        "magnification_source": frame.magnification_source,
    }


def uncorrected_spacing_warning(frame: Frame) -> str | None:
    """One line for a file whose mm come from detector-plane spacing (no magnification known)."""
    if frame.spacing_source != IMAGER_UNCORRECTED:
        return None
    return (
        f"{frame.source}: ImagerPixelSpacing is not corrected for magnification (no "
        "EstimatedRadiographicMagnificationFactor, DistanceSourceToDetector/DistanceSourceToPatient); "
        "its mm in vessels.csv are at the detector and overstate patient sizes"
    )


def iter_frames(inputs: Sequence[str | Path], failed: list[tuple[str, str]]) -> Iterator[Frame]:
    """Frames of every input file, cine runs streamed frame by frame; unreadable files (or frames)
    are appended to ``failed`` and skipped (frames of a file before a bad frame are still yielded)."""
    files: list[Path] = []
    for item in inputs:
        try:
            files.extend(list_image_files([item]))
        except DataError as exc:
            failed.append((str(item), exc.problem))
    for f in files:
        try:
            yield from iter_file_frames(f)
        except DataError as exc:
            failed.append((str(f), exc.problem))


@dataclass
class _Batch:
    """A batch of frames, their output names and which of them still need a mask (``todo``)."""

    frames: list[Frame]
    names: list[str]
    todo: list[int]


def _prepare_batch(segmenter: Segmenter, batch: _Batch) -> Prepared | None:
    """The fast path's preprocessing of the batch's ``todo`` frames only (done frames cost nothing)."""
    return segmenter.prepare([batch.frames[i].image for i in batch.todo]) if batch.todo else None


def _call(work: Callable[[_Batch], Prepared | None], batch: _Batch) -> Prepared | Exception | None:
    """``work(batch)``, or its error (as :func:`~angioseg.infer.stream.prefetch` hands it over)."""
    try:
        return work(batch)
    except Exception as exc:
        return exc


MASK_PNG_LEVEL = 1  # mask PNGs: 1-bit, fast zlib (a 512² mask written in ~0.8 ms instead of ~1.9 ms as 8-bit)
CSV_EVERY_S = 2.0  # vessels.csv is rewritten at most this often within a cine (and after every file)


def segment_inputs(
    segmenter: Segmenter,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    overlays: bool = True,
    progress: bool = True,
    skip_existing: bool = False,
    warn: Callable[[str], None] | None = None,
    batch_size: int = 8,
    stats: bool = True,
    prefetch_batches: bool = True,
) -> SegmentResult:
    """Segment files, folders and DICOM cine runs; write ``masks/``, ``overlays/`` and ``vessels.csv``.

    Frames are streamed (a cine is never decoded whole) and go through the network ``batch_size``
    at a time. A multi-frame file (cine) also gets ``cine/<file>.masks.tif`` (all its masks, one
    page per frame) and, unless ``overlays`` is off, ``cine/<file>.overlay.mp4`` (``.gif`` without
    PyAV) in place of one overlay PNG per frame.

    Each output file is written atomically as soon as its image is done; ``vessels.csv`` is
    rewritten after every file and every few seconds within a cine, so an interrupted batch keeps
    what it finished. Bad inputs are collected in ``result.failed`` and do not stop the batch (a
    cine with a bad frame keeps its good frames' masks but gets no stack or video). With
    ``skip_existing`` an interrupted batch is resumed: frames whose mask is already written are not
    recomputed. ``stats=False`` leaves the vessel geometry columns of ``vessels.csv`` empty.
    ``prefetch_batches`` (default) decodes and preprocesses the next batch on a background thread
    while the network runs (``False``: one after the other, as bench/bench_cine.py compares).

    ``vessels.csv`` says where each image's mm come from (``spacing_source``, see
    :func:`~angioseg.data.io.dicom_spacing`); a file whose spacing is not corrected for the
    magnification gets one line in ``result.warnings``, passed to ``warn`` as it is found.
    """
    from rich.progress import Progress

    from angioseg.data.io import read_mask

    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    result = SegmentResult()
    cine = CineOutputs(out / "cine", video=overlays)
    seen: set[str] = set()
    warned: set[Path] = set()
    last_csv = 0.0

    def finish_cine() -> None:
        bad = cine.source is not None and any(n == str(cine.source) for n, _ in result.failed)
        if bad:
            cine.abort(DataError(str(cine.source), "failed part-way"))
        else:
            cine.close()

    def row(name: str, fr: Frame, mask: np.ndarray) -> dict[str, Any]:
        if stats:
            return _vessel_row(name, fr, mask)
        return {"name": name, "source": str(fr.source), "spacing_source": fr.spacing_source}

    def write_batch(
        batch: list[Frame], names: list[str], todo: list[int], masks: dict[int, np.ndarray]
    ) -> None:
        """A batch's outputs, on the writer thread (in order; the main thread segments the next)."""
        nonlocal last_csv
        if batch[0].source != cine.source:
            finish_cine()
        for i, fr in enumerate(batch):
            if i not in masks:
                continue
            mask = masks[i]
            if i in todo:
                write_png(
                    out / "masks" / f"{names[i]}.png", mask, compress_level=MASK_PNG_LEVEL, bilevel=True
                )
            multi = fr.frame is not None
            if overlays and (i in todo or multi):
                rgb = overlay(fr.image, mask)
                if not multi:
                    write_png(out / "overlays" / f"{names[i]}.png", rgb)
            if multi:
                cine.add(fr.source, fr.source.stem, fr.frame_rate, mask, rgb if overlays else None)
            result.rows.append(row(names[i], fr, mask))
            bar.advance(task)
        if batch[0].frame is None or time.monotonic() - last_csv > CSV_EVERY_S:
            write_vessels_csv(out / "vessels.csv", result.rows)
            last_csv = time.monotonic()

    def named(stream: Iterator[list[Frame]]) -> Iterator[_Batch]:
        """Each batch with its frames' output names and, under ``skip_existing``, the frames whose mask
        is not written yet (the only ones preprocessed and segmented)."""
        for frames in stream:
            names = []
            for fr in frames:
                name = fr.name if fr.name not in seen else f"{fr.source.parent.name}_{fr.name}"
                k = 1
                while name in seen:  # a third img.png in another folder a/: a_img_2
                    k += 1
                    name = f"{fr.source.parent.name}_{fr.name}_{k}"
                seen.add(name)
                names.append(name)
            todo = [
                i
                for i, n in enumerate(names)
                if not (skip_existing and (out / "masks" / f"{n}.png").exists())
            ]
            yield _Batch(frames, names, todo)

    # the next batch is decoded and preprocessed on a background thread while this one is in the
    # network (and the one before is written on the writer's thread)
    work = functools.partial(_prepare_batch, segmenter)
    todo_batches = named(batches(iter_frames(inputs, result.failed), batch_size))
    pipeline = (
        prefetch(todo_batches, work) if prefetch_batches else ((b, _call(work, b)) for b in todo_batches)
    )
    # left in reverse order: on an error (Ctrl-C included) the prefetch thread stops, the writer
    # drops its queued jobs, then the open cine's temporary files are removed
    with (
        Progress(*progress_columns(), disable=not progress, transient=True) as bar,
        cine,
        OrderedWriter() as writer,
        contextlib.closing(pipeline),
    ):
        task = bar.add_task("segmenting", total=None)
        for named_batch, prepared in pipeline:
            batch, names, todo = named_batch.frames, named_batch.names, named_batch.todo
            for fr in batch:
                note = None if fr.source in warned else uncorrected_spacing_warning(fr)
                if note is not None:
                    warned.add(fr.source)
                    result.warnings.append(note)
                    if warn is not None:
                        warn(note)
            masks: dict[int, np.ndarray] = {
                i: read_mask(out / "masks" / f"{names[i]}.png") for i in range(len(batch)) if i not in todo
            }
            try:
                if isinstance(prepared, Prepared):  # of the todo frames only
                    found = segmenter.segment_prepared(prepared)
                elif isinstance(prepared, BaseException):
                    raise prepared
                else:
                    found = segmenter.segment_batch([batch[i].image for i in todo]) if todo else []
                masks.update(zip(todo, found, strict=True))
            except Exception:  # one bad frame must not cost the batch: retry one by one
                for i in todo:
                    try:
                        masks[i] = segmenter.segment(batch[i].image)
                    except Exception as exc:  # keep the batch going; report the file
                        result.failed.append((str(batch[i].source), f"{exc.__class__.__name__}: {exc}"))
            writer.submit(functools.partial(write_batch, batch, names, todo, masks))
        writer.submit(finish_cine)
    result.outputs = cine.written
    if result.rows:
        write_vessels_csv(out / "vessels.csv", result.rows)
    if not result.rows and not result.failed:
        raise AngiosegError("no input image to segment")
    return result
