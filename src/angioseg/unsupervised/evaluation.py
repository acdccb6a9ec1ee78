"""Scoring ``unsupervised segment`` outputs against true masks: label-free results and ORACLE upper bounds.

Every method is scored inside the region of interest stored with the segmentation (the whole image,
or the ``--roi`` field of view): both prediction and truth are restricted to it.

Label-free (what a user gets, no ground truth involved):

* ``cuts``: the CUTS vessel mask (``--vessel-map``, default ``spread``, the same as ``cuts_spread``);
  ``cuts_kmeans`` / ``cuts_landmarks`` / ``cuts_persistent``: the label-free rule on the spectral
  k-means map / on the landmark clusters (the finest partition) / on the persistent-structure map;
  ``cuts_spread``: label spreading of the landmark rule's decision over the landmark graph
  (:func:`~angioseg.unsupervised.selection.spread_vessel_mask`);
* ``frangi_otsu`` and ``kmeans_intensity``: the baselines.

ORACLE (reads the true mask to choose clusters; never available in practice):

* ``oracle_cuts_kmeans``, ``oracle_cuts_persistent``, ``oracle_kmeans_intensity``: the cluster most
  frequent under the true mask (the CUTS authors' ``label_hint``); an upper bound for choosing one
  cluster only, so a label-free rule that takes several clusters can score higher;
* ``oracle_cuts_best_level``: that choice on every condensation level, keeping the level with the
  best Dice (the authors' "diffusion-best");
* ``*_best_set``: the union of clusters of that map with the highest Dice
  (:func:`~angioseg.unsupervised.selection.oracle_best_set`; ``cuts_spread`` is bounded by the
  landmark map's), an exact upper bound on the Dice of
  any cluster choice from the map, the label-free rule's included.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from angioseg.data.datasets import MASK_SUFFIXES, dataset_dirs
from angioseg.data.io import is_image_file, read_mask, unique_stems
from angioseg.errors import AngiosegError, DataError
from angioseg.metrics import image_metrics, summarize
from angioseg.metrics.evaluate import write_report
from angioseg.unsupervised.selection import oracle_best_set, oracle_hint
from angioseg.utils import atomic_open, write_json

LABEL_FREE = (
    "cuts",
    "cuts_kmeans",
    "cuts_landmarks",
    "cuts_persistent",
    "cuts_spread",
    "frangi_otsu",
    "kmeans_intensity",
)
ORACLE = (
    "oracle_cuts_kmeans",
    "oracle_cuts_persistent",
    "oracle_cuts_best_level",
    "oracle_kmeans_intensity",
    "oracle_cuts_kmeans_best_set",
    "oracle_cuts_landmarks_best_set",
    "oracle_cuts_persistent_best_set",
    "oracle_kmeans_intensity_best_set",
)
TABLE_COLUMNS = ("dice", "cldice", "mhd", "iou", "hd95")


@dataclass
class UnsupervisedReport:
    summary: dict[str, dict[str, float]]
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def truth_files(truth: str | Path) -> dict[str, Path]:
    """Mask files of a dataset folder (``masks/``) or of a folder of masks, keyed by image name."""
    root = Path(truth)
    mask_dir = root
    if root.is_dir() and not any(is_image_file(p) for p in root.iterdir()):
        _, found = dataset_dirs(root)
        if found is None:
            raise DataError(root, "no masks/ folder and no mask files")
        mask_dir = found
    if not mask_dir.is_dir():
        raise DataError(mask_dir, "truth folder does not exist")
    out: dict[str, Path] = {}
    for stem, p in unique_stems([p for p in sorted(mask_dir.iterdir()) if is_image_file(p)]).items():
        key = next((stem[: -len(s)] for s in MASK_SUFFIXES if stem.endswith(s)), stem)
        out[key] = p
    return out


def predictions(npz: np.lib.npyio.NpzFile, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Every label-free and oracle mask of one image (``truth`` is only used by the ORACLE entries)."""
    roi = npz["roi"]
    preds = {
        "cuts": npz["vessel"],
        "cuts_kmeans": npz["vessel_kmeans"],
        "cuts_persistent": npz["vessel_persistent"],
    }
    if "frangi_otsu" in npz:
        preds["frangi_otsu"] = npz["frangi_otsu"]
        preds["kmeans_intensity"] = npz["kmeans_intensity"]
        preds["oracle_kmeans_intensity"] = oracle_hint(npz["kmeans_intensity_labels"], truth, roi)
        preds["oracle_kmeans_intensity_best_set"] = oracle_best_set(
            npz["kmeans_intensity_labels"], truth, roi
        )
    for key in ("kmeans", "persistent"):
        preds[f"oracle_cuts_{key}"] = oracle_hint(npz[key], truth, roi)
        preds[f"oracle_cuts_{key}_best_set"] = oracle_best_set(npz[key], truth, roi)
    if "landmarks" in npz:  # segmentations written before the landmark map was saved lack it
        preds["cuts_landmarks"] = npz["vessel_landmarks"]
        preds["oracle_cuts_landmarks_best_set"] = oracle_best_set(npz["landmarks"], truth, roi)
    if "vessel_spread" in npz:  # likewise for the label-spreading mask
        preds["cuts_spread"] = npz["vessel_spread"]
    levels = [oracle_hint(lab, truth, roi) for lab in npz["levels"]]
    if levels:
        t = truth & roi
        scores = [2 * (m & t).sum() / max(int(m.sum() + t.sum()), 1) for m in levels]
        preds["oracle_cuts_best_level"] = levels[int(np.argmax(scores))]
    return preds


def evaluate_segmentations(seg_dir: str | Path, truth: str | Path, out_dir: str | Path) -> UnsupervisedReport:
    """Score every ``labels/<name>.npz`` of ``seg_dir`` against the matching true mask; write the report.

    Writes ``out_dir/<method>/{metrics.csv, summary.json}``, ``out_dir/summary.csv`` and
    ``out_dir/summary.json`` (one row per method, with its ``selection``: label-free or ORACLE).
    """
    seg_dir, out = Path(seg_dir), Path(out_dir)
    files = sorted((seg_dir / "labels").glob("*.npz"))
    if not files:
        raise AngiosegError(f"{seg_dir}: no labels/*.npz; is it an 'angioseg unsupervised segment' output?")
    truths = truth_files(truth)
    rows: dict[str, list[dict[str, float | str]]] = {}
    failed: list[tuple[str, str]] = []
    unmatched = [f.stem for f in files if f.stem not in truths]
    for f in files:
        if f.stem not in truths:
            continue
        try:
            g = read_mask(truths[f.stem])
            with np.load(f) as npz:
                roi = npz["roi"]
                if g.shape != roi.shape:
                    raise DataError(
                        truths[f.stem], f"mask size {g.shape} differs from the image's {roi.shape}"
                    )
                preds = predictions(npz, g)
        except (DataError, OSError, KeyError, ValueError) as exc:
            failed.append((f.stem, str(exc)))
            continue
        for method, p in preds.items():
            rows.setdefault(method, []).append({"name": f.stem, **image_metrics(p & roi, g & roi)})
    if not rows:
        raise AngiosegError(f"no segmentation in {seg_dir} could be scored against {truth}")
    summary: dict[str, dict[str, float]] = {}
    for method in (*LABEL_FREE, *ORACLE):
        if method in rows:
            s = summarize(rows[method])  # type: ignore[arg-type]
            write_report(out / method, rows[method], s)
            summary[method] = s
    write_summary(out, summary)
    return UnsupervisedReport(summary, failed, unmatched)


def selection_of(method: str) -> str:
    return "ORACLE (upper bound)" if method.startswith("oracle_") else "label-free"


def write_summary(out: Path, summary: dict[str, dict[str, float]]) -> None:
    write_json(out / "summary.json", {m: {"selection": selection_of(m), **s} for m, s in summary.items()})
    with atomic_open(out / "summary.csv", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "selection", *TABLE_COLUMNS, "n"])
        for m, s in summary.items():
            w.writerow([m, selection_of(m), *(f"{s[k]:.4f}" for k in TABLE_COLUMNS), int(s["n"])])
