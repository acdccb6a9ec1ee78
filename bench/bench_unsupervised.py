"""Speed and faithfulness of the CUTS landmark approximation on this machine.

Prints, in one run:

1. seconds per stage of ``segment_image`` on 512 x 512 angiograms (target: under 60 s per image),
   with the Frangi + Otsu baseline's time on the same images as the reference;
2. on a small crop where the exact, pixel-level computation is still feasible, the time of the
   exact spectral k-means and diffusion condensation against the landmark version, and their
   agreement (adjusted Rand index of the spectral k-means maps and of the condensation level whose
   cluster count is closest to 10).

Usage (run alone: ``flock /tmp/angioseg-heavy.lock``):
``python bench/bench_unsupervised.py [--model RUN_DIR] [--images A.png B.png] [--crop 40]``.
Without ``--model`` an untrained encoder is used (the timing does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from angioseg.data.io import read_image
from angioseg.data.synthetic import SynthConfig, synthetic_angiogram
from angioseg.unsupervised.baselines import frangi_otsu
from angioseg.unsupervised.condensation import condense
from angioseg.unsupervised.cuts import CUTSModel
from angioseg.unsupervised.fit import load_encoder, scale_image
from angioseg.unsupervised.landmarks import make_landmarks
from angioseg.unsupervised.pipeline import SegmentConfig, embed, segment_image
from angioseg.unsupervised.spectral import spectral_kmeans


def level_near(labels: np.ndarray, levels: list[int], target: int) -> np.ndarray:
    counts = [len(np.unique(labels[lv])) for lv in levels] or [1]
    return labels[levels[int(np.argmin(np.abs(np.array(counts) - target)))]] if levels else labels[-1]


def stage_times(model: CUTSModel, images: list[np.ndarray], cfg: SegmentConfig) -> None:
    print(f"== 1. segment_image on {len(images)} image(s), landmarks={cfg.landmarks}")
    totals, frangi = [], []
    for img in images:
        seg = segment_image(model, img, cfg)
        totals.append(seg.timings["total"])
        print(f"  {img.shape}: " + ", ".join(f"{k} {v:.2f}s" for k, v in seg.timings.items()))
        t = time.perf_counter()
        frangi_otsu(img)
        frangi.append(time.perf_counter() - t)
    print(f"  median total {np.median(totals):.1f} s per image (budget 60 s); Frangi+Otsu alone "
          f"{np.median(frangi):.2f} s; ratio CUTS / Frangi = {np.median(totals) / np.median(frangi):.0f}x")  # fmt: skip


def exact_vs_landmarks(
    model: CUTSModel, image: np.ndarray, crop: int, landmarks: int, normalise: str
) -> None:
    from sklearn.metrics import adjusted_rand_score

    h, w = image.shape
    sub = image[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2]
    z = embed(model, scale_image(sub, normalise)).reshape(crop * crop, -1)
    print(f"== 2. exact (every pixel a point, N = {crop * crop}) vs {landmarks} landmarks on a {crop}^2 crop")
    res = {}
    for name, m in (("exact", crop * crop), ("landmarks", landmarks)):
        t = time.perf_counter()
        lm = make_landmarks(z, m, 50, 0)
        km = spectral_kmeans(lm.points, lm.mass)[lm.assign]
        t_km = time.perf_counter() - t
        t = time.perf_counter()
        cond = condense(lm.points, lm.mass)
        t_cd = time.perf_counter() - t
        lev = level_near(cond.labels, cond.levels, 10)[lm.assign]
        res[name] = (km, lev)
        print(f"  {name:9s}: spectral k-means {t_km:6.2f} s, condensation {t_cd:6.2f} s, "
              f"{len(cond.levels)} levels")  # fmt: skip
    ari_km = adjusted_rand_score(res["exact"][0], res["landmarks"][0])
    ari_lv = adjusted_rand_score(res["exact"][1], res["landmarks"][1])
    print(
        f"  agreement (adjusted Rand): spectral k-means {ari_km:.3f}, condensation level ~10 clusters {ari_lv:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="CUTS fit run folder (default: untrained encoder)")
    ap.add_argument("--images", type=Path, nargs="*", help="512 x 512 images (default: 2 synthetic)")
    ap.add_argument("--crop", type=int, default=40, help="crop side for the exact comparison")
    ap.add_argument("--landmarks", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model, normalise = CUTSModel().eval(), "local"
    if args.model:
        model, meta = load_encoder(args.model)
        normalise = str(meta.get("normalise", "global"))
    if args.images:
        images = [read_image(p) for p in args.images]
    else:
        images = [synthetic_angiogram(i, SynthConfig(size=512))[0].astype(np.float32) for i in range(2)]
    cfg = SegmentConfig(landmarks=args.landmarks, normalise=normalise)
    stage_times(model, images, cfg)
    exact_vs_landmarks(model, images[0], args.crop, max(10, args.crop * args.crop // 8), normalise)


if __name__ == "__main__":
    main()
