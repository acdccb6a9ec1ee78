"""The persistent-structure map: one label map assembled from the regions that last longest across levels.

As in CUTS (``get_persistent_structures``): for every label, find the longest run of consecutive
levels in which its region is non-empty and changes by at most ``tolerance`` (1 %) of its size from
one level to the next (``|R_f Δ R_{f+1}| ≤ 0.01 · |R_f|``). Labels are then painted from least to
most persistent (ties: larger regions first), each with its region at the first level of its
longest run, so the most persistent — and for ties the smallest — structures end up on top.
Pixels that no painted region covers keep their finest-level label.

Works on points with masses (landmarks), so sizes are pixel counts: ``labels`` is ``L x N`` (levels
finest first, label ids shared across levels as condensation produces them) and ``mass`` is ``N``.
"""

from __future__ import annotations

import numpy as np


def persistent_structures(
    labels: np.ndarray, mass: np.ndarray | None = None, tolerance: float = 0.01
) -> np.ndarray:
    """Persistent-structure labels (``N`` ints, renumbered ``0..k-1``) from ``L x N`` level labels."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be levels x points, got shape {labels.shape}")
    n_levels, n = labels.shape
    w = np.ones(n) if mass is None else np.asarray(mass, float)
    ids = np.unique(labels)
    index = np.searchsorted(ids, labels)  # L x N, dense label indices
    nl = len(ids)
    size = np.stack([np.bincount(index[f], weights=w, minlength=nl) for f in range(n_levels)])
    # stable[f, l]: level f -> f+1 keeps label l non-empty and changes it by <= tolerance of its size.
    stable = np.zeros((max(n_levels - 1, 0), nl), bool)
    for f in range(n_levels - 1):
        same = index[f] == index[f + 1]
        inter = np.bincount(index[f][same], weights=w[same], minlength=nl)
        xor = size[f] + size[f + 1] - 2 * inter
        stable[f] = (size[f] > 0) & (size[f + 1] > 0) & (xor <= tolerance * size[f])
    records = []
    for lab in range(nl):
        present = np.flatnonzero(size[:, lab] > 0)
        if present.size == 0:
            continue
        best_len, best_start = 1, int(present[0])
        run, start = 1, -1
        for f in range(n_levels - 1):
            if stable[f, lab]:
                if run == 1:
                    start = f
                run += 1
                if run > best_len:
                    best_len, best_start = run, start
            else:
                run = 1
        records.append((best_len, -size[best_start, lab], lab, best_start))
    records.sort()
    out = np.full(n, -1, np.int64)
    for _, _, lab, frame in records:
        out[index[frame] == lab] = lab
    out[out < 0] = index[0][out < 0]
    return np.unique(out, return_inverse=True)[1].astype(np.int64)
