"""``results.csv`` (one row per cell), means ± sd over seeds, paired differences, and the best method.

Honesty rules built in here:

* every test metric is of a model whose epoch was chosen on the validation split;
* the "best" pretraining method (Figures 4 and 5) is chosen by the **validation** Dice (mean over
  seeds at the smallest budget), never by a test metric;
* a metric that is missing (a failed cell) is left out of a mean and the count says how many remain.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from angioseg.experiment.config import NONE
from angioseg.utils import atomic_open

TEST_METRICS = (
    "dice",
    "cldice",
    "iou",
    "mhd",
    "hd",
    "hd95",
    "add",
    "pcc",
    "pcc_p",
    "ba_bias",
    "ba_loa_low",
    "ba_loa_high",
)
COLUMNS = (
    "method",
    "budget",
    "n_labeled",
    "seed",
    "status",
    *TEST_METRICS,
    "val_dice",
    "best_epoch",
    "params",
    "pretrain_params",
    "n_pretrain",
    "n_val",
    "n_test",
    "train_seconds",
    "cell_seconds",
    "cpu_seconds",
    "load_before",
    "load_after",
    "pretrain_seconds",
    "pretrain_epochs",
    "error",
    "run_dir",
)


def cell_row(
    cell: Any,
    status: str,
    summary: dict[str, Any] | None = None,
    val_dice: float | None = None,
    best_epoch: int | None = None,
    params: int | None = None,
    pretrain: dict[str, Any] | None = None,
    timing: dict[str, float] | None = None,
    error: str = "",
) -> dict[str, Any]:
    """The ``cell.json`` record and ``results.csv`` row of a :class:`~angioseg.experiment.plan.Cell`."""
    summary, timing = summary or {}, timing or {}
    row: dict[str, Any] = {k: None for k in COLUMNS}
    row.update(
        method=cell.method,
        budget=cell.budget.label,
        n_labeled=cell.n_labeled,
        seed=cell.seed,
        status=status,
        val_dice=val_dice,
        best_epoch=best_epoch,
        params=params,
        n_val=len(cell.splits["val"]),
        n_test=len(cell.splits["test"]),
        error=error,
        run_dir=str(cell.run_dir),
    )
    row.update({k: summary.get(k) for k in TEST_METRICS})
    row.update({k: v for k, v in timing.items() if k in row})
    if pretrain is not None:
        row.update(
            pretrain_params=(pretrain.get("parameters") or {}).get("trainable"),
            n_pretrain=pretrain.get("images"),
            pretrain_seconds=pretrain.get("wall_seconds", pretrain.get("train_seconds")),
            pretrain_epochs=pretrain.get("epochs"),
        )
    return row


def best_val_dice(run_dir: Path) -> float | None:
    """The best ``val_dice`` logged by a fine-tuning run (the score its best epoch was chosen by)."""
    best = None
    for path in sorted(Path(run_dir).glob("logs/version_*/metrics.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                v = rec.get("val_dice")
                if v not in (None, ""):
                    best = float(v) if best is None else max(best, float(v))
    return best


def collect_rows(plan: Any) -> list[dict[str, Any]]:
    """Rows of every cell of the plan, in plan order: its ``cell.json``, or ``status=pending``."""
    rows = []
    for cell in plan.cells:
        p = cell.run_dir / "cell.json"
        rows.append(json.loads(p.read_text(encoding="utf-8")) if p.exists() else cell_row(cell, "pending"))
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


def write_results_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """One row per cell with :data:`COLUMNS` (empty = not measured), written atomically."""
    with atomic_open(path, newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_fmt(r.get(k)) for k in COLUMNS])


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` with numbers parsed back (empty cells -> ``None``)."""
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in rec.items():
                if v == "":
                    row[k] = None
                elif k in ("method", "budget", "status", "error", "run_dir"):
                    row[k] = v
                else:
                    row[k] = float(v) if any(c in v for c in ".eEn") else int(v)
            out.append(row)
    return out


def finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_sd(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean, sample SD (0 for one value) and count of the finite values; (nan, nan, 0) for none."""
    vals = finite(values)
    if not vals:
        return float("nan"), float("nan"), 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def ok_rows(
    rows: Sequence[dict[str, Any]], method: str | None = None, budget: str | None = None
) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if r.get("status") == "ok"
        and (method is None or r["method"] == method)
        and (budget is None or r["budget"] == budget)
    ]


def budgets_in_order(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Budget labels by increasing number of labeled images (plan order breaks ties)."""
    first: dict[str, int] = {}
    for r in rows:
        first.setdefault(r["budget"], int(r["n_labeled"]))
    return sorted(first, key=lambda b: first[b])


def methods_in_order(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows))


def paired_differences(
    rows: Sequence[dict[str, Any]], method: str, budget: str, metric: str = "dice"
) -> list[float]:
    """``metric(method) − metric(none)`` per seed (same seed = same labeled, validation and test images)."""
    base = {r["seed"]: r[metric] for r in ok_rows(rows, NONE, budget) if r.get(metric) is not None}
    return [
        float(r[metric]) - float(base[r["seed"]])
        for r in ok_rows(rows, method, budget)
        if r["seed"] in base and r.get(metric) is not None
    ]


def choose_best(rows: Sequence[dict[str, Any]], budget: str) -> tuple[str | None, float]:
    """The pretraining method (not ``none``) with the highest mean best-epoch validation Dice at ``budget``."""
    scores = {}
    for m in methods_in_order(rows):
        if m == NONE:
            continue
        mean, _, n = mean_sd(r.get("val_dice") for r in ok_rows(rows, m, budget))
        if n:
            scores[m] = mean
    if not scores:
        return None, float("nan")
    best = max(scores, key=lambda m: scores[m])
    return best, scores[best]


def relative_drop(rows: Sequence[dict[str, Any]], method: str, high: str, low: str) -> float:
    """(mean Dice at ``high`` − mean Dice at ``low``) / mean Dice at ``high`` (the paper's "drop")."""
    hi = mean_sd(r.get("dice") for r in ok_rows(rows, method, high))[0]
    lo = mean_sd(r.get("dice") for r in ok_rows(rows, method, low))[0]
    return (hi - lo) / hi if hi and math.isfinite(hi) and math.isfinite(lo) else float("nan")
