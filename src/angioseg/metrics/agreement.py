"""Agreement between predicted and true per-image diameters: Pearson correlation and Bland–Altman."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Pearson r and its two-sided p-value; (nan, nan) with fewer than 3 points or a constant input."""
    from scipy import stats

    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    res = stats.pearsonr(a, b)
    return float(res.statistic), float(res.pvalue)


def bland_altman(pred: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray) -> dict[str, float]:
    """bias = mean(pred − truth); limits of agreement = bias ± 1.96·SD (SD with ddof = 1)."""
    d = np.asarray(pred, float) - np.asarray(truth, float)
    if len(d) == 0:
        return {"ba_bias": float("nan"), "ba_loa_low": float("nan"), "ba_loa_high": float("nan")}
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    return {"ba_bias": bias, "ba_loa_low": bias - 1.96 * sd, "ba_loa_high": bias + 1.96 * sd}


def draw_bland_altman(
    ax: Any, pred: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray, title: str = ""
) -> dict[str, float]:
    """Draw a Bland–Altman plot (mean of the two vs difference, bias and limits) into matplotlib ``ax``."""
    p, t = np.asarray(pred, float), np.asarray(truth, float)
    ba = bland_altman(p, t)
    ax.scatter((p + t) / 2, p - t, s=16, alpha=0.8)
    for key, style in (("ba_bias", "-"), ("ba_loa_low", "--"), ("ba_loa_high", "--")):
        if np.isfinite(ba[key]):
            ax.axhline(ba[key], color="k", ls=style, lw=1)
            ax.annotate(f"{ba[key]:.2f}", (1.0, ba[key]), xycoords=("axes fraction", "data"), fontsize=8)
    ax.set_xlabel("mean diameter of prediction and truth (px)")
    ax.set_ylabel("prediction − truth (px)")
    ax.set_title(title or "Bland–Altman: vessel diameter")
    return ba


def plot_bland_altman(pred: Sequence[float], truth: Sequence[float], path: str, title: str = "") -> None:
    """Bland–Altman plot (:func:`draw_bland_altman`) as a PNG file, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from angioseg.utils import atomic_path

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    draw_bland_altman(ax, pred, truth, title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
