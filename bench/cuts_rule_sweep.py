"""Label-free vessel rules swept on saved CUTS segmentations (issue 5): is there a rule that beats
intensity k-means on synthetic angiograms *and* keeps the default's Dice on XCA and DRIVE?

Reads the ``labels/<name>.npz`` files that ``angioseg unsupervised segment`` wrote, recomputes the
Frangi vesselness of each image, and scores, for each label map (``landmarks``: the landmark
clusters; ``kmeans``: the K = 10 spectral map; ``kmeans_intensity_labels``: the intensity k-means
baseline's clusters), every combination of

* a per-cluster feature (size-weighted cluster mean): ``v`` winsorised vesselness (what the library
  rule uses), ``lv`` log-vesselness, ``r`` ROI percentile rank of the vesselness, ``vd`` z(v) + z(d)
  and ``rd`` r + rank of d, where ``d`` is the local darkness (Gaussian σ = 5 px background minus the
  pixel, in ROI standard deviations);
* a threshold on the map of painted cluster means: Otsu, Li, triangle or Yen (scikit-image);
* with (``g``) or without (``n``) the darkness gate (only clusters darker than the ROI mean);

plus the library rule itself (``rule``: :func:`angioseg.unsupervised.selection.label_free_mask`).
With ``--k-sweep`` it also re-embeds the images with each run's encoder and applies the library
rule to spectral k-means maps of K = 10, eigengap, 20, 30, 50 (printing the ORACLE best-set bound
of each K too); with ``--spread-grid`` it scores label spreading on the landmark graph
(:func:`angioseg.unsupervised.selection.spread_vessel_mask`) for negative percentiles
``SPREAD_PERCENTILES`` and ``α`` in ``SPREAD_ALPHAS``.

**Development and held-out sets.** Choices may be made only on the development sets: synthetic data
seeds 1 and 2, and the first 10 XCA (``training_01``–``training_10``) and 5 DRIVE (``train_21``–
``train_25``) images. ``--final`` also scores synthetic seed 0 (the test suite's images) and the
remaining real images, for reporting. Inputs come from (heavy: hold the lock)::

    for s in 1 2 0; do
      flock /tmp/angioseg-heavy.lock python bench/cuts_vs_kmeans_synthetic.py --out runs/cuts_synth_v3/s$s \\
          --n 24 --size 96 --epochs 50 --crop 64 --batch-size 8 --landmarks 200 --score 16 --data-seed $s
    done
    flock /tmp/angioseg-heavy.lock python bench/unsupervised_results.py --data ../shared/data \\
        --out runs/unsupervised_results_v4
    python bench/cuts_rule_sweep.py --synthetic runs/cuts_synth_v3 --real runs/unsupervised_results_v4 \\
        --data ../shared/data [--final] [--k-sweep] [--spread-grid]

Prints mean Dice and, in brackets, the mean fraction of the ROI selected (the truth's fraction is in
the header), and a verdict per rule: ``PASS`` if it beats the intensity k-means mask on every
synthetic development seed and is at least the default mask's Dice on both real development sets.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import filters

from angioseg.data.io import read_mask
from angioseg.metrics.overlap import dice
from angioseg.unsupervised.baselines import fill_outside, vesselness, winsorise
from angioseg.unsupervised.evaluation import truth_files
from angioseg.unsupervised.selection import (
    cluster_table,
    label_free_mask,
    mask_of,
    oracle_best_set,
    spread_vessel_mask,
)

MAPS = ("landmarks", "kmeans", "kmeans_intensity_labels")
THRESHOLDS: dict[str, Callable[[np.ndarray], float]] = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "tri": filters.threshold_triangle,
    "yen": filters.threshold_yen,
}
DEV_REAL = {
    "xca": {f"training_{i:02d}" for i in range(1, 11)},
    "drive": {f"train_{i}" for i in range(21, 26)},
}
REAL_FOLDERS = {"xca": "xca_cimat40", "drive": "drive_train"}
DEV_SYNTH = ("s1", "s2")
K_VALUES = (10, 0, 20, 30, 50)  # 0 = eigengap
SPREAD_PERCENTILES = (50, 60, 67, 75, 85)
SPREAD_ALPHAS = (0.3, 0.5, 0.7, 0.8, 0.9)


def percentile_rank(x: np.ndarray, roi: np.ndarray) -> np.ndarray:
    out = np.zeros(x.shape, np.float64)
    vals = x[roi]
    out[roi] = np.argsort(np.argsort(vals, kind="stable"), kind="stable") / max(len(vals) - 1, 1)
    return out


def cluster_means(labels: np.ndarray, f: np.ndarray, roi: np.ndarray) -> np.ndarray:
    inside = roi & (labels >= 0)
    _, inv = np.unique(labels[inside], return_inverse=True)
    return np.bincount(inv, weights=f[inside].astype(np.float64)) / np.bincount(inv)


def rule_masks(
    labels: np.ndarray, image: np.ndarray, vraw: np.ndarray, roi: np.ndarray
) -> dict[str, np.ndarray]:
    """Every swept rule's mask for one label map (``image`` already filled outside ``roi``)."""
    v = winsorise(vraw, roi)
    out = {"rule": label_free_mask(labels, image, v, roi)}
    ids, sizes, mi, mv = cluster_table(labels, image, v, roi)
    inside = roi & (labels >= 0)
    _, inv = np.unique(labels[inside], return_inverse=True)
    total = sizes.sum()

    def z(x: np.ndarray) -> np.ndarray:
        m = (x * sizes).sum() / total
        return (x - m) / max(float(np.sqrt((sizes * (x - m) ** 2).sum() / total)), 1e-12)

    gate = mi < (mi * sizes).sum() / total
    dark = (ndimage.gaussian_filter(image, 5) - image) / (image[roi].std() + 1e-9)
    md = cluster_means(labels, dark, roi)
    feats = {
        "v": mv,
        "lv": cluster_means(labels, np.log(np.maximum(vraw, 1e-8)), roi),
        "r": cluster_means(labels, percentile_rank(vraw, roi), roi),
        "vd": z(mv) + z(md),
        "rd": cluster_means(labels, percentile_rank(vraw, roi) + percentile_rank(dark, roi), roi),
    }
    for fname, x in feats.items():
        painted = x[inv]
        for tname, thr in THRESHOLDS.items():
            if np.ptp(painted) == 0:
                continue
            t = thr(painted)
            for gname, g in (("g", gate), ("n", np.ones_like(gate))):
                out[f"{fname}_{tname}_{gname}"] = mask_of(labels, ids[(x > t) & g], roi)
    return out


def image_sets(args: argparse.Namespace) -> list[tuple[str, Path, Path, Path]]:
    """``(set name, npz, truth mask, run dir)`` of every scored image."""
    items: list[tuple[str, Path, Path, Path]] = []
    for run in sorted(p for p in args.synthetic.iterdir() if re.fullmatch(r"s\d+", p.name)):
        if run.name not in DEV_SYNTH and not args.final:
            continue
        truth = truth_files(run / "data")
        for npz in sorted((run / "seg" / "labels").glob("*.npz")):
            items.append((f"synth_{run.name}", npz, truth[npz.stem], run))
    for ds, folder in REAL_FOLDERS.items():
        truth = truth_files(args.data / folder)
        for npz in sorted((args.real / ds / "seg" / "labels").glob("*.npz")):
            split = "dev" if npz.stem in DEV_REAL[ds] else "rest"
            if split == "dev" or args.final:
                items.append((f"{ds}_{split}", npz, truth[npz.stem], args.real / ds))
    return items


def reembed(run: Path, z: np.lib.npyio.NpzFile, filled: np.ndarray) -> tuple[np.ndarray, Any, dict[str, Any]]:
    """``(landmark map, landmarks, segment config)`` recomputed with the run's encoder and settings."""
    import yaml

    from angioseg.unsupervised.fit import load_encoder, scale_image
    from angioseg.unsupervised.landmarks import make_landmarks
    from angioseg.unsupervised.pipeline import embed

    cfg = yaml.safe_load((run / "seg" / "config.yaml").read_text())
    if run not in _MODELS:
        _MODELS[run] = load_encoder(run / "fit")[0]
    roi = z["roi"]
    emb = embed(_MODELS[run], scale_image(filled, cfg["normalise"], cfg["sigma_frac"]))
    lm = make_landmarks(emb[roi], cfg["landmarks"], cfg["pca_dims"], cfg["seed"])
    labels = np.full(roi.shape, -1, np.int64)
    labels[roi] = lm.assign
    return labels, lm, cfg


_MODELS: dict[Path, Any] = {}


def graph_rule_masks(
    run: Path,
    z: np.lib.npyio.NpzFile,
    filled: np.ndarray,
    vraw: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[tuple[str, str], np.ndarray]:
    """Masks that need the landmarks themselves: the spectral K sweep and the label-spreading grid."""
    from angioseg.unsupervised.diffusion import alpha_decay_kernel, diffusion_operator, distances
    from angioseg.unsupervised.spectral import SpectralConfig, spectral_kmeans

    roi = z["roi"]
    labels, lm, cfg = reembed(run, z, filled)
    v = winsorise(vraw, roi)
    out: dict[tuple[str, str], np.ndarray] = {}
    if args.k_sweep:
        for k in K_VALUES:
            spec = SpectralConfig(n_clusters=k, max_clusters=50)
            km = np.full(roi.shape, -1, np.int64)
            km[roi] = spectral_kmeans(lm.points, lm.mass, spec, cfg["seed"])[lm.assign]
            out[(f"spectral_K{k or 'eigengap'}", "rule")] = label_free_mask(km, filled, v, roi)
            out[(f"spectral_K{k or 'eigengap'}", "ORACLE_best_set")] = oracle_best_set(km, truth, roi)
    if args.spread_grid:
        spec = cfg["spectral"]
        graph = diffusion_operator(
            alpha_decay_kernel(distances(lm.points), spec["knn"], spec["decay"]), lm.mass
        )
        for q in SPREAD_PERCENTILES:
            for alpha in SPREAD_ALPHAS:
                out[("landmark_graph", f"spread_q{q}_a{alpha}")] = spread_vessel_mask(
                    labels, graph, filled, v, roi, q, alpha
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--synthetic", type=Path, required=True, help="folder of cuts_vs_kmeans_synthetic runs s0, s1, ..."
    )
    ap.add_argument("--real", type=Path, required=True, help="an unsupervised_results.py --out folder")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument(
        "--final", action="store_true", help="also score synthetic seed 0 and the held-out real images"
    )
    ap.add_argument(
        "--k-sweep", action="store_true", help="re-embed and sweep the spectral K (slow: minutes)"
    )
    ap.add_argument("--spread-grid", action="store_true",
                    help="re-embed and sweep label spreading's negative percentile and alpha (slow: minutes)")  # fmt: skip
    args = ap.parse_args()

    scores: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    truth_frac: dict[str, list[float]] = defaultdict(list)
    for set_name, npz, truth_path, run in image_sets(args):
        z = np.load(npz)
        roi = z["roi"]
        truth = read_mask(truth_path) & roi
        filled = fill_outside(z["image"].astype(np.float32), roi)
        vraw = vesselness(filled)
        truth_frac[set_name].append(truth.sum() / roi.sum())

        masks: dict[tuple[str, str], np.ndarray] = {}
        for map_name in MAPS:
            for rule, mask in rule_masks(z[map_name], filled, vraw, roi).items():
                masks[(map_name, rule)] = mask
        if args.k_sweep or args.spread_grid:
            masks.update(graph_rule_masks(run, z, filled, vraw, truth, args))
        for row, mask in masks.items():
            m = mask & roi
            scores[row][set_name].append((dice(m, truth), m.sum() / roi.sum()))

    sets = sorted(truth_frac, key=lambda s: (not s.startswith("synth"), s.endswith("rest"), s))
    mean = {r: {s: np.mean(v, axis=0) for s, v in d.items()} for r, d in scores.items()}
    ref_ik = {s: mean[("kmeans_intensity_labels", "rule")][s][0] for s in sets}
    ref_default = {s: mean[("kmeans", "rule")][s][0] for s in sets}
    dev = [s for s in sets if s in {f"synth_{d}" for d in DEV_SYNTH} or s.endswith("_dev")]

    print(
        "| map | rule | "
        + " | ".join(f"{s} (truth {np.mean(truth_frac[s]):.3f})" for s in sets)
        + " | dev verdict |"
    )
    print("|---|---|" + "---|" * (len(sets) + 1))
    for row in sorted(mean):
        m = mean[row]
        ok = all(
            m[s][0] > ref_ik[s] if s.startswith("synth") else m[s][0] >= ref_default[s] - 1e-9
            for s in dev
            if s in m
        )
        cells = " | ".join(f"{m[s][0]:.3f} ({m[s][1]:.3f})" if s in m else "" for s in sets)
        print(f"| {row[0]} | {row[1]} | {cells} | {'PASS' if ok and 'ORACLE' not in row[1] else ''} |")
    print(
        "\nDice (mean fraction of the ROI selected). References: intensity k-means = kmeans_intensity_labels/rule,"
    )
    print(
        "default mask = kmeans/rule. PASS: beats intensity k-means on synthetic dev seeds and >= default on real dev."
    )


if __name__ == "__main__":
    main()
