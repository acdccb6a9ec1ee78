"""Pixel-overlap metrics on binary masks (2D or 3D)."""

from __future__ import annotations

import numpy as np


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred, bool), np.asarray(truth, bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {g.shape}")
    return p, g


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P∩G| / (|P| + |G|); 1 when both are empty."""
    p, g = _pair(pred, truth)
    denom = int(p.sum()) + int(g.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P∩G| / |P∪G|; 1 when both are empty."""
    p, g = _pair(pred, truth)
    union = int((p | g).sum())
    return 1.0 if union == 0 else int((p & g).sum()) / union


def confusion(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pixel-wise precision, recall (sensitivity) and accuracy. Empty denominators give 1 when the
    matching numerator is also trivially right (no vessel predicted and none present), else 0."""
    p, g = _pair(pred, truth)
    tp = int((p & g).sum())
    fp = int((p & ~g).sum())
    fn = int((~p & g).sum())
    tn = p.size - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    return {"precision": precision, "recall": recall, "accuracy": (tp + tn) / p.size}
