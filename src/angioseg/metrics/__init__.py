"""Metrics of the CM-UNet study, as plain functions on binary masks.

Per image (:func:`image_metrics`): dice, iou, cldice, mhd, hd, hd95, add, diam_pred, diam_true,
precision, recall, accuracy. Across images (:func:`summarize`): their means plus the Pearson
correlation of diam_pred vs diam_true and the Bland–Altman bias and limits of agreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from angioseg.metrics.agreement import bland_altman, pearson
from angioseg.metrics.distance import contour_distances, modified_hausdorff
from angioseg.metrics.overlap import confusion, dice, iou
from angioseg.metrics.topology import cldice, soft_cldice_loss
from angioseg.metrics.vessel import mean_diameter, vessel_stats

METRIC_COLUMNS = (
    "dice",
    "iou",
    "cldice",
    "mhd",
    "hd",
    "hd95",
    "add",
    "diam_pred",
    "diam_true",
    "precision",
    "recall",
    "accuracy",
)
SUMMARY_EXTRA = ("pcc", "pcc_p", "ba_bias", "ba_loa_low", "ba_loa_high", "n")


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Every per-image metric of :data:`METRIC_COLUMNS` for two 2D binary masks (pixels)."""
    p, g = np.asarray(pred, bool), np.asarray(truth, bool)
    dp, dt = mean_diameter(p), mean_diameter(g)
    out: dict[str, float] = {"dice": dice(p, g), "iou": iou(p, g), "cldice": cldice(p, g)}
    out.update(contour_distances(p, g))
    out.update(add=abs(dp - dt), diam_pred=dp, diam_true=dt)
    out.update(confusion(p, g))
    return {k: float(out[k]) for k in METRIC_COLUMNS}


def summarize(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Means of the per-image metrics plus PCC and Bland–Altman of the diameters.

    Non-finite per-image values cannot occur with :func:`image_metrics`; should one come from
    elsewhere, it is excluded from that mean rather than poisoning it.
    """
    out: dict[str, float] = {}
    for k in METRIC_COLUMNS:
        vals = np.array([r[k] for r in rows if k in r], float)
        vals = vals[np.isfinite(vals)]
        out[k] = float(vals.mean()) if vals.size else float("nan")
    dp = [r["diam_pred"] for r in rows]
    dt = [r["diam_true"] for r in rows]
    out["pcc"], out["pcc_p"] = pearson(dp, dt)
    out.update(bland_altman(dp, dt))
    out["n"] = len(rows)
    return out


__all__ = [
    "METRIC_COLUMNS",
    "SUMMARY_EXTRA",
    "bland_altman",
    "cldice",
    "confusion",
    "contour_distances",
    "dice",
    "image_metrics",
    "iou",
    "mean_diameter",
    "modified_hausdorff",
    "pearson",
    "soft_cldice_loss",
    "summarize",
    "vessel_stats",
]
