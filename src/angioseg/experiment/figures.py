"""The paper's Figures 3-6 for a study folder (matplotlib, Agg backend, PNGs written atomically).

* Figure 3 -- test Dice versus the number of labeled images, one line per method (mean ± sd over seeds);
* Figure 4 -- predicted vs true mean vessel diameter per test image (Pearson r) and Bland–Altman,
  for one method at the smallest and the largest budget;
* Figure 5 -- test images: input | truth | predictions of chosen cells (errors coloured);
* Figure 6 -- the pretraining methods' reconstruction grids side by side.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.experiment.config import NONE
from angioseg.experiment.results import budgets_in_order, mean_sd, methods_in_order, ok_rows
from angioseg.metrics.agreement import draw_bland_altman, pearson
from angioseg.utils import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int = 110) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    _pyplot().close(fig)
    return path


def dice_vs_labels(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Figure 3: mean test Dice (± sd over seeds) against the number of labeled images, per method."""
    budgets = budgets_in_order(rows)
    if not ok_rows(rows):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    counts = []
    for m in methods_in_order(rows):
        xs, ys, es = [], [], []
        for b in budgets:
            sel = ok_rows(rows, m, b)
            mean, sd, n = mean_sd(r.get("dice") for r in sel)
            if n:
                xs.append(float(np.mean([r["n_labeled"] for r in sel])))
                ys.append(mean)
                es.append(sd)
        if not xs:
            continue
        counts += xs
        style = {"color": "black", "ls": "--"} if m == NONE else {}
        label = "none (from scratch)" if m == NONE else m
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=3, label=label, **style)
    if counts and max(counts) / max(min(counts), 1) >= 5:
        ax.set_xscale("log")
        ticks = sorted(set(counts))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel("labeled fine-tuning images")
    ax.set_ylabel("test Dice (mean ± sd over seeds)")
    ax.set_title("Test Dice vs number of labeled images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def read_test_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Per-image rows of a fine-tuning run's ``test/metrics.csv`` (numbers as floats)."""
    p = Path(run_dir) / "test" / "metrics.csv"
    if not p.exists():
        return []
    with open(p, newline="", encoding="utf-8") as fh:
        return [{k: (v if k == "name" else float(v)) for k, v in r.items()} for r in csv.DictReader(fh)]


def diameters(
    rows: Sequence[dict[str, Any]], method: str, budgets: Sequence[str], path: Path
) -> tuple[Path | None, list[dict[str, Any]]]:
    """Figure 4: for each budget, predicted vs true diameter (all seeds' test images) and Bland–Altman.

    Returns the figure and one statistics record per budget: Pearson r and p on the pooled points
    and per seed (the pooled p-value counts an image once per seed, so it is optimistic), bias and
    limits of agreement.
    """
    plt = _pyplot()
    stats = []
    panels = []
    for b in budgets:
        pts = [
            (r["seed"], m) for r in ok_rows(rows, method, b) for m in read_test_metrics(Path(r["run_dir"]))
        ]
        if len(pts) >= 2:
            panels.append((b, pts))
    if not panels:
        return None, []
    fig, axes = plt.subplots(len(panels), 2, figsize=(9.5, 4.0 * len(panels)), squeeze=False)
    for (b, pts), (ax_s, ax_b) in zip(panels, axes, strict=True):
        pred = np.array([m["diam_pred"] for _, m in pts])
        true = np.array([m["diam_true"] for _, m in pts])
        seeds = sorted({s for s, _ in pts})
        r, p = pearson(pred, true)
        per_seed = {
            s: pearson([m["diam_pred"] for t, m in pts if t == s], [m["diam_true"] for t, m in pts if t == s])
            for s in seeds
        }
        for s in seeds:
            sel = [i for i, (t, _) in enumerate(pts) if t == s]
            ax_s.scatter(true[sel], pred[sel], s=18, alpha=0.8, label=f"seed {s}")
        lo, hi = float(min(pred.min(), true.min())), float(max(pred.max(), true.max()))
        ax_s.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax_s.set_xlabel("true mean vessel diameter (px)")
        ax_s.set_ylabel("predicted mean vessel diameter (px)")
        ax_s.set_title(f"{method}, {b} labels: r = {r:.2f} (p = {p:.2g}, n = {len(pts)})", fontsize=9)
        ax_s.legend(fontsize=7)
        ba = draw_bland_altman(ax_b, pred, true, f"Bland–Altman, {method}, {b} labels")
        ax_b.title.set_fontsize(9)
        stats.append({"budget": b, "n": len(pts), "r": r, "p": p, "per_seed": per_seed, **ba})
    fig.tight_layout()
    return _save(fig, path), stats


def _error_rgb(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """White = vessel found, red = false vessel, blue = missed vessel, black = background."""
    rgb = np.zeros((*truth.shape, 3), np.float32)
    rgb[pred & truth] = (1, 1, 1)
    rgb[pred & ~truth] = (0.95, 0.2, 0.2)
    rgb[~pred & truth] = (0.2, 0.45, 1.0)
    return rgb


def examples(
    images: Sequence[tuple[str, np.ndarray, np.ndarray]],
    columns: Sequence[tuple[str, Path]],
    path: Path,
) -> Path | None:
    """Figure 5: rows = test images (``name``, image, mask as drawn); then truth and, per column
    (``title``, fine-tuning run folder), its ``test/predictions/<name>.png`` with that image's Dice."""
    from angioseg.data.io import read_mask

    if not images or not columns:
        return None
    plt = _pyplot()
    dice = {title: {m["name"]: m["dice"] for m in read_test_metrics(run)} for title, run in columns}
    ncol = 2 + len(columns)
    fig, axes = plt.subplots(len(images), ncol, figsize=(2.1 * ncol, 2.25 * len(images)), squeeze=False)
    for i, (name, image, truth) in enumerate(images):
        lo, hi = np.percentile(image, [1, 99])
        axes[i][0].imshow(image, cmap="gray", vmin=lo, vmax=hi)
        axes[i][0].set_ylabel(name, fontsize=7)
        axes[i][1].imshow(truth, cmap="gray")
        for j, (title, run) in enumerate(columns, start=2):
            pred_path = Path(run) / "test" / "predictions" / f"{name}.png"
            if pred_path.exists():
                axes[i][j].imshow(_error_rgb(read_mask(pred_path), truth.astype(bool)))
                d = dice[title].get(name)
                if d is not None:
                    axes[i][j].set_xlabel(f"Dice {d:.3f}", fontsize=8)
        for j, title in enumerate(["input", "truth", *[t for t, _ in columns]]):
            if i == 0:
                axes[i][j].set_title(title, fontsize=8)
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
    fig.suptitle("white: vessel found · red: false vessel · blue: missed vessel", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def tile_reconstructions(grids: Sequence[tuple[str, Path]], path: Path) -> Path | None:
    """Figure 6: each method's reconstruction grid (input | masked/corrupted | output) side by side."""
    grids = [(m, p) for m, p in grids if Path(p).exists()]
    if not grids:
        return None
    plt = _pyplot()
    imgs = [plt.imread(str(p)) for _, p in grids]
    h = max(im.shape[0] / im.shape[1] for im in imgs)
    ncol = min(2, len(grids))
    nrow = -(-len(grids) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, (5.5 * h + 0.4) * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (m, _), im in zip(axes.flat, grids, imgs, strict=False):
        ax.imshow(im)
        ax.set_title(m, fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi=100)
