"""CUTS segmentation of one image, as a library function (:func:`segment_image`).

Stages (each timed in ``Segmentation.timings``):

1. ``embed``: the trained encoder gives a 128-d embedding per pixel (bf16 autocast + channels_last
   by default, ``fast=False`` for fp32);
2. ``landmarks``: the pixels inside the region of interest are vector-quantised into at most 1000
   landmarks (:mod:`angioseg.unsupervised.landmarks`, the approximation that keeps a 512 x 512 image
   under a minute);
3. ``spectral``: spectral k-means (K = 10, or eigengap) of the landmarks;
4. ``condensation``: diffusion condensation of the landmarks -> one label map per stable plateau;
5. ``persistence``: the persistent-structure map of those levels;
6. ``selection``: Frangi vesselness and the label-free vessel-cluster rule give a binary mask from
   the landmark clusters, refined by label spreading over the landmark graph (the default), and
   masks from the spectral k-means map, the bare landmark clusters and the persistent map
   (``vessel_map`` picks which one is *the* mask, see :data:`VESSEL_MAPS`);
7. ``baselines``: Frangi + Otsu and intensity k-means (with the same label-free rule).

No ground truth enters this module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from angioseg.unsupervised.baselines import (
    DEFAULT_SIGMAS,
    fill_outside,
    frangi_otsu,
    intensity_kmeans,
    vesselness,
    winsorise,
)
from angioseg.unsupervised.condensation import CondensationConfig, condense
from angioseg.unsupervised.cuts import CUTSModel
from angioseg.unsupervised.diffusion import alpha_decay_kernel, diffusion_operator, distances
from angioseg.unsupervised.fit import scale_image
from angioseg.unsupervised.landmarks import make_landmarks
from angioseg.unsupervised.persistence import persistent_structures
from angioseg.unsupervised.selection import label_free_mask, spread_vessel_mask
from angioseg.unsupervised.spectral import SpectralConfig, spectral_kmeans

VESSEL_MAPS = ("spread", "kmeans", "landmarks", "persistent")
"""Where the vessel mask comes from (the first, ``spread``, is the default).

* ``spread``: the label-free rule on the landmark clusters (the finest partition of the
  embeddings), then label spreading of that decision over the landmarks' diffusion graph
  (:func:`~angioseg.unsupervised.selection.spread_vessel_mask`);
* ``kmeans``: the rule on the spectral k-means map (K = 10, CUTS' map; the default until the
  spreading step existed);
* ``landmarks``: the rule on the landmark clusters alone;
* ``persistent``: the rule on the persistent-structure map.

Label-free Dice (``bench/cuts_rule_sweep.py``; the spreading settings were chosen on synthetic
seeds 1, 2 and 10 XCA + 5 DRIVE images, the numbers here are on the held-out images: synthetic
seed 0, the other 30 XCA and 15 DRIVE images): spread 0.448 / 0.407 / 0.515, K = 10 map
0.267 / 0.413 / 0.498, landmarks 0.499 / 0.381 / 0.359, intensity k-means 0.414 / 0.343 / 0.058.
The spectral k-means map cannot separate the thin synthetic vessels at all (even its ground-truth
best cluster set is below intensity k-means), and the rule on the bare landmark clusters picks too
few of them on DRIVE; spreading fixes most of both. See docs/results/unsupervised.md."""


@dataclass
class SegmentConfig:
    """Clustering and selection options of ``angioseg unsupervised segment`` (written to ``config.yaml``)."""

    landmarks: int = 1000
    pca_dims: int = 50
    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    condensation: CondensationConfig = field(default_factory=CondensationConfig)
    vessel_map: str = "spread"
    sigmas: list[float] = field(default_factory=lambda: list(DEFAULT_SIGMAS))
    max_fraction: float = 0.5
    spread_negative_percentile: float = 60.0
    spread_alpha: float = 0.8
    baselines: bool = True
    fast: bool = True
    seed: int = 0
    normalise: str = "global"
    sigma_frac: float = 0.04


@dataclass
class Segmentation:
    """Everything :func:`segment_image` computes for one ``H x W`` image (labels are ``-1`` outside the ROI)."""

    kmeans: np.ndarray
    landmarks: np.ndarray
    levels: np.ndarray
    granularities: list[int]
    persistent: np.ndarray
    vessel: np.ndarray
    vessel_landmarks: np.ndarray
    vessel_kmeans: np.ndarray
    vessel_persistent: np.ndarray
    vessel_spread: np.ndarray
    vesselness: np.ndarray
    roi: np.ndarray
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def embed(model: CUTSModel, image: np.ndarray, fast: bool = True) -> np.ndarray:
    """``H x W`` image scaled to [-1, 1] -> ``H x W x D`` float32 embeddings."""
    model = model.eval()
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]
    if fast:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = model(x)
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    else:
        z = model(x)
    return z[0].float().permute(1, 2, 0).contiguous().numpy()


def _paint(roi: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(roi.shape, -1, np.int64)
    out[roi] = values
    return out


def segment_image(
    model: CUTSModel, image: np.ndarray, cfg: SegmentConfig | None = None, roi: np.ndarray | None = None
) -> Segmentation:
    """Multi-scale CUTS label maps, persistent map, label-free vessel mask and baselines of one image.

    Args:
        image: ``H x W`` raw intensities (one channel).
        roi: optional ``H x W`` bool region of interest (e.g. a fundus camera's field of view);
            pixels outside get label -1 and are never vessel.
    """
    cfg = cfg or SegmentConfig()
    if cfg.vessel_map not in VESSEL_MAPS:
        raise ValueError(f"vessel_map must be one of {VESSEL_MAPS}, got {cfg.vessel_map!r}")
    roi = np.ones(image.shape, bool) if roi is None else np.asarray(roi, bool)
    if roi.shape != image.shape or not roi.any():
        raise ValueError(f"roi must be a non-empty mask of the image's shape {image.shape}")
    times: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = now - t
        t = now

    filled = fill_outside(np.asarray(image, np.float32), roi)
    z = embed(model, scale_image(filled, cfg.normalise, cfg.sigma_frac), cfg.fast)
    lap("embed")
    lm = make_landmarks(z[roi], cfg.landmarks, cfg.pca_dims, cfg.seed)
    fine = _paint(roi, lm.assign)
    lap("landmarks")
    km = spectral_kmeans(lm.points, lm.mass, cfg.spectral, cfg.seed)
    kmeans = _paint(roi, km[lm.assign])
    lap("spectral")
    cond = condense(lm.points, lm.mass, cfg.condensation)
    level_labels = cond.level_labels()  # L x M
    levels = np.stack([_paint(roi, lab[lm.assign]) for lab in level_labels])
    granularities = [len(np.unique(lab)) for lab in level_labels]
    lap("condensation")
    persistent = _paint(roi, persistent_structures(level_labels, lm.mass)[lm.assign])
    lap("persistence")
    vess = vesselness(filled, cfg.sigmas)
    vess_rule = winsorise(vess, roi)  # the rule's cluster means must not hinge on a few extreme responses
    v_lm = label_free_mask(fine, filled, vess_rule, roi, cfg.max_fraction)
    v_km = label_free_mask(kmeans, filled, vess_rule, roi, cfg.max_fraction)
    v_ps = label_free_mask(persistent, filled, vess_rule, roi, cfg.max_fraction)
    graph = diffusion_operator(
        alpha_decay_kernel(distances(lm.points), cfg.spectral.knn, cfg.spectral.decay), lm.mass
    )
    v_sp = spread_vessel_mask(
        fine,
        graph,
        filled,
        vess_rule,
        roi,
        cfg.spread_negative_percentile,
        cfg.spread_alpha,
        cfg.max_fraction,
    )
    lap("selection")
    baselines: dict[str, np.ndarray] = {}
    if cfg.baselines:
        baselines["frangi_otsu"] = frangi_otsu(filled, roi, cfg.sigmas, vess=vess)
        ik = intensity_kmeans(filled, roi, cfg.spectral.n_clusters or 10, cfg.seed)
        baselines["kmeans_intensity_labels"] = ik
        baselines["kmeans_intensity"] = label_free_mask(ik, filled, vess_rule, roi, cfg.max_fraction)
        lap("baselines")
    times["total"] = float(sum(times.values()))
    return Segmentation(
        kmeans=kmeans,
        landmarks=fine,
        levels=levels,
        granularities=granularities,
        persistent=persistent,
        vessel={"landmarks": v_lm, "kmeans": v_km, "persistent": v_ps, "spread": v_sp}[cfg.vessel_map],
        vessel_landmarks=v_lm,
        vessel_kmeans=v_km,
        vessel_persistent=v_ps,
        vessel_spread=v_sp,
        vesselness=vess,
        roi=roi,
        baselines=baselines,
        timings=times,
    )
