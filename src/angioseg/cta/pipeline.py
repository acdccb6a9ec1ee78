"""``angioseg cta segment`` and ``angioseg cta evaluate`` as library functions.

Segment writes, for each input volume, into ``OUT``::

    masks/<case>.<input format>        post-processed binary mask, the input's geometry
    centerlines/<case>.csv             the centerline prior used (models with a centerline channel)
    probabilities/<case>.<format>      vessel probability x 1000 (with save_prob)
    segment.csv                        voxels, volume in mm^3, seconds per case (rewritten after each)

Evaluate pairs masks by stem and writes ``metrics.csv`` and ``summary.json`` (means, standard
deviations and n). Both keep going past bad inputs and list them at the end.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.cta.centerlines import find_centerline_file, read_centerline, write_centerline
from angioseg.cta.infer import CTSegmenter
from angioseg.cta.metrics3d import VOLUME_METRICS, volume_metrics
from angioseg.cta.volume_io import (
    is_volume_path,
    list_volumes,
    output_path,
    read_label,
    read_volume,
    volume_stem,
    write_volume,
)
from angioseg.errors import AngiosegError, DataError
from angioseg.utils import atomic_open, write_json


@dataclass
class BatchResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def expand_inputs(inputs: Sequence[str | Path], failed: list[tuple[str, str]]) -> dict[str, Path]:
    """``{stem: path}`` for volume files, DICOM series folders, folders of volumes or dataset folders (images/)."""
    out: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        try:
            if not p.exists():
                raise DataError(p, "does not exist")
            if is_volume_path(p):
                out[volume_stem(p)] = p
            else:
                found_all = list_volumes(p / "images" if (p / "images").is_dir() else p)
                if not found_all:
                    raise DataError(p, "no volume in this folder")
                out.update(found_all)
        except DataError as exc:
            failed.append((str(p), exc.problem))
    return out


def _write_table(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with atomic_open(path, newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([f"{r[c]:.6g}" if isinstance(r.get(c), float) else r.get(c, "") for c in columns])


def segment_volumes(
    segmenter: CTSegmenter,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    centerlines: str | Path | None = None,
    centerline_space: str = "auto",
    save_prob: bool = False,
    skip_existing: bool = False,
) -> BatchResult:
    """Segment every input volume (see module doc). ``centerlines``: a folder of ``<case>.csv|npy|txt``
    used instead of the first-pass prediction (only for models with a centerline channel)."""
    out = Path(out_dir)
    res = BatchResult()
    found = expand_inputs(inputs, res.failed)
    if not found and not res.failed:
        raise AngiosegError("no input volume to segment")
    for name, path in sorted(found.items()):
        try:
            t0 = time.perf_counter()
            vol = read_volume(path)
            target = output_path(vol, out / "masks", name)
            if skip_existing and target.exists():
                continue
            cl = None
            if centerlines is not None:
                f = find_centerline_file(Path(centerlines), name)
                if f is None:
                    raise DataError(Path(centerlines), f"no centerline file for {name}")
                cl = read_centerline(f, vol, centerline_space)
            seg = segmenter.segment(vol.array, cl)
            write_volume(target, seg.mask, vol)
            if seg.centerline is not None:
                write_centerline(out / "centerlines" / f"{name}.csv", seg.centerline, vol)
            if save_prob:
                write_volume(
                    output_path(vol, out / "probabilities", name),
                    np.rint(seg.prob * 1000).astype(np.int16),
                    vol,
                )
            voxels = int(seg.mask.sum())
            res.rows.append(
                {
                    "name": name,
                    "source": str(path),
                    "voxels": voxels,
                    "volume_mm3": float(voxels * np.prod(vol.spacing)),
                    "seconds": time.perf_counter() - t0,
                }
            )
            _write_table(out / "segment.csv", res.rows, ("name", "source", "voxels", "volume_mm3", "seconds"))
        except DataError as exc:
            res.failed.append((str(path), exc.problem))
        except (RuntimeError, ValueError, MemoryError) as exc:  # keep the batch going; report the file
            res.failed.append((str(path), f"{exc.__class__.__name__}: {exc}"))
    return res


def _mask_folder(folder: Path) -> Path:
    for sub in ("masks", "labels"):
        if (folder / sub).is_dir():
            return folder / sub
    return folder


def evaluate_volumes(pred_dir: str | Path, truth_dir: str | Path, out_dir: str | Path) -> BatchResult:
    """Score predicted masks against labels paired by stem (folders, or folders with masks/ or labels/)."""
    pdir, tdir = _mask_folder(Path(pred_dir)), _mask_folder(Path(truth_dir))
    preds, truths = list_volumes(pdir), list_volumes(tdir)
    common = sorted(set(preds) & set(truths))
    if not common:
        raise AngiosegError(f"no prediction in {pdir} has a label with the same name in {tdir}")
    res = BatchResult()
    for name in common:
        try:
            truth_vol = read_volume(truths[name])
            truth = truth_vol.array != 0
            pred = read_label(preds[name], truth.shape)
            res.rows.append({"name": name, **volume_metrics(pred, truth, truth_vol.spacing)})
        except DataError as exc:
            res.failed.append((name, str(exc)))
    if not res.rows:
        raise AngiosegError(f"none of the {len(common)} prediction/label pairs could be read")
    summary: dict[str, Any] = {"n": len(res.rows), "unmatched": sorted(set(preds) ^ set(truths))}
    for k in VOLUME_METRICS:
        vals = np.array([r[k] for r in res.rows], float)
        summary[k] = float(vals.mean())
        summary[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    res.summary = summary
    out = Path(out_dir)
    _write_table(out / "metrics.csv", res.rows, ("name", *VOLUME_METRICS))
    write_json(out / "summary.json", summary)
    return res
