"""``angioseg evaluate``: score a folder of predicted masks against a folder of true masks."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from angioseg.data.datasets import MASK_SUFFIXES
from angioseg.data.io import is_image_file, read_mask, unique_stems
from angioseg.errors import AngiosegError, DataError
from angioseg.metrics import METRIC_COLUMNS, image_metrics, summarize
from angioseg.metrics.agreement import plot_bland_altman
from angioseg.utils import atomic_open, write_json

PRED_SUFFIXES = ("_mask", "_pred", "_seg")
TRUTH_SUFFIXES = MASK_SUFFIXES  # as the dataset loader accepts them: _gt, _mask, _label


@dataclass
class EvaluationResult:
    rows: list[dict[str, float | str]]
    summary: dict[str, float]
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def write_metrics_csv(path: str | Path, rows: Sequence[dict[str, float | str]]) -> None:
    with atomic_open(path, newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", *METRIC_COLUMNS])
        for r in rows:
            w.writerow([r["name"], *(f"{float(r[k]):.6g}" for k in METRIC_COLUMNS)])


def _stem_map(folder: Path, strip: tuple[str, ...] = (), role: str = "mask") -> dict[str, Path]:
    """Pairing key -> file: the file stem without one of the ``strip`` suffixes.

    Raises:
        DataError: the folder is missing, or two files give the same key (``a.png`` and ``a_gt.png``).
    """
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist")
    files = [p for p in sorted(folder.iterdir()) if is_image_file(p) and "_overlay" not in p.stem]
    out: dict[str, Path] = {}
    for stem, p in unique_stems(files).items():
        key = stem
        for suf in strip:
            if key.endswith(suf) and len(key) > len(suf):
                key = key[: -len(suf)]
                break
        if key in out:
            raise DataError(
                folder,
                f"two {role} files pair with the name {key!r} ({out[key].name} and {p.name}); "
                f"keep one (the suffixes {', '.join(strip)} are ignored when pairing)",
            )
        out[key] = p
    return out


def score_pairs(
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    progress: bool = False,
) -> tuple[list[dict[str, float | str]], dict[str, float]]:
    """Per-image metrics and summary for in-memory (name, prediction, truth) triples."""
    from rich.progress import track

    rows: list[dict[str, float | str]] = []
    for name, p, g in track(pairs, description="scoring", disable=not progress, transient=True):
        rows.append({"name": name, **image_metrics(p, g)})
    return rows, summarize(rows)  # type: ignore[arg-type]


def write_report(
    out_dir: str | Path, rows: Sequence[dict[str, float | str]], summary: dict[str, float]
) -> None:
    """``metrics.csv``, ``bland_altman.png`` and ``summary.json`` in ``out_dir`` (each written atomically).

    ``summary.json`` comes last, so a report cut part-way has none: its presence means a whole report
    (the label-efficiency bench and resumed studies take it as a finished run's mark)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(out / "metrics.csv", rows)
    if len(rows) >= 2:
        plot_bland_altman(
            [float(r["diam_pred"]) for r in rows],
            [float(r["diam_true"]) for r in rows],
            str(out / "bland_altman.png"),
            title=f"Bland–Altman, mean vessel diameter (n = {len(rows)})",
        )
    write_json(out / "summary.json", summary)


def evaluate_folders(
    pred_dir: str | Path, truth_dir: str | Path, out_dir: str | Path, progress: bool = False
) -> EvaluationResult:
    """Pair masks by file stem, score them and write the report.

    A ``_mask``/``_pred``/``_seg`` suffix on a prediction and a ``_gt``/``_mask``/``_label`` suffix on a
    truth mask are ignored when pairing, so ``im1_pred.png`` pairs with ``im1_gt.png``; rows are named
    by the stem without the suffix. Unreadable or mis-sized pairs are listed in ``failed`` and skipped.

    Raises:
        DataError: a missing folder, or two files of one folder that pair with the same name.
        AngiosegError: no prediction has a truth mask.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    if (truth_dir / "masks").is_dir():
        truth_dir = truth_dir / "masks"
    preds = _stem_map(pred_dir, PRED_SUFFIXES, "prediction")
    truths = _stem_map(truth_dir, TRUTH_SUFFIXES, "truth")
    common = sorted(set(preds) & set(truths))
    if not common:
        raise AngiosegError(
            f"no prediction in {pred_dir} has a matching truth mask in {truth_dir} (files are paired by name)"
        )
    unmatched = sorted(set(preds) ^ set(truths))
    pairs = []
    failed: list[tuple[str, str]] = []
    for name in common:
        try:
            p, g = read_mask(preds[name]), read_mask(truths[name])
            if p.shape != g.shape:
                raise DataError(
                    preds[name], f"size {p.shape} differs from the truth mask {truths[name].name} {g.shape}"
                )
            pairs.append((name, p, g))
        except DataError as exc:
            failed.append((name, str(exc)))
    if not pairs:
        raise AngiosegError(f"none of the {len(common)} prediction/truth pairs could be read")
    rows, summary = score_pairs(pairs, progress)
    write_report(out_dir, rows, summary)
    return EvaluationResult(rows, summary, failed, unmatched)
