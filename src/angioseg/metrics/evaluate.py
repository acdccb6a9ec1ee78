"""``angioseg evaluate``: score a folder of predicted masks against a folder of true masks."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from angioseg.data.io import is_image_file, read_mask, unique_stems
from angioseg.errors import AngiosegError, DataError
from angioseg.metrics import METRIC_COLUMNS, image_metrics, summarize
from angioseg.metrics.agreement import plot_bland_altman
from angioseg.utils import atomic_open, write_json

PRED_SUFFIXES = ("_mask", "_pred", "_seg")


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


def _stem_map(folder: Path, strip: tuple[str, ...] = ()) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist")
    files = [p for p in sorted(folder.iterdir()) if is_image_file(p) and "_overlay" not in p.stem]
    out: dict[str, Path] = {}
    for stem, p in unique_stems(files).items():
        key = stem
        for suf in strip:
            if key.endswith(suf):
                key = key[: -len(suf)]
                break
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
    """``metrics.csv``, ``summary.json`` and ``bland_altman.png`` in ``out_dir`` (each written atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(out / "metrics.csv", rows)
    write_json(out / "summary.json", summary)
    if len(rows) >= 2:
        plot_bland_altman(
            [float(r["diam_pred"]) for r in rows],
            [float(r["diam_true"]) for r in rows],
            str(out / "bland_altman.png"),
            title=f"Bland–Altman, mean vessel diameter (n = {len(rows)})",
        )


def evaluate_folders(
    pred_dir: str | Path, truth_dir: str | Path, out_dir: str | Path, progress: bool = False
) -> EvaluationResult:
    """Pair masks by file stem (a ``_mask``/``_pred``/``_seg`` suffix on predictions is ignored), score them
    and write the report. Unreadable or mis-sized pairs are listed in ``failed`` and skipped.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    if (truth_dir / "masks").is_dir():
        truth_dir = truth_dir / "masks"
    preds = _stem_map(pred_dir, PRED_SUFFIXES)
    truths = _stem_map(truth_dir)
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
