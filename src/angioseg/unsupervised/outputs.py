"""``angioseg unsupervised segment`` on files and folders: per-image outputs, written atomically.

Layout of ``--out DIR``::

    masks/<name>.png                      label-free CUTS vessel mask
    labels/<name>.npz                     every label map (see :data:`NPZ_KEYS`) and the timings
    labels/<name>/kmeans.png              spectral k-means map (colour-coded)
    labels/<name>/level_<i>_<n>.png       condensation level i with n clusters, finest first
    labels/<name>/persistent.png          persistent-structure map
    figures/<name>.png                    coarse-to-fine figure
    baselines/frangi_otsu/<name>.png      Frangi vesselness + Otsu
    baselines/kmeans_intensity/<name>.png intensity k-means + the label-free rule
    segment.csv                           per image: size, clusters, vessel fraction, seconds
    config.yaml                           the resolved options

An image whose ``labels/<name>.npz`` already exists is skipped unless ``overwrite`` (so a killed
run resumes); unreadable inputs are listed at the end and the others are kept.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from angioseg.data.io import list_image_files, read_frames, read_mask, to_uint8, unique_stems, write_png
from angioseg.errors import AngiosegError, DataError
from angioseg.unsupervised.cuts import CUTSModel
from angioseg.unsupervised.pipeline import Segmentation, SegmentConfig, segment_image
from angioseg.utils import atomic_open, atomic_path

NPZ_KEYS = (
    "image",
    "roi",
    "kmeans",
    "landmarks",
    "levels",
    "granularities",
    "persistent",
    "vessel",
    "vessel_landmarks",
    "vessel_kmeans",
    "vessel_persistent",
    "vessel_spread",
    "frangi_otsu",
    "kmeans_intensity",
    "kmeans_intensity_labels",
)


@dataclass
class SegmentRun:
    rows: list[dict[str, object]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def colourise(labels: np.ndarray) -> np.ndarray:
    """``H x W`` labels -> ``H x W x 3`` uint8 with a fixed 20-colour palette (label -1 is black)."""
    import matplotlib

    palette = (matplotlib.colormaps["tab20"](np.arange(20))[:, :3] * 255).astype(np.uint8)
    out = palette[np.mod(labels, len(palette))]
    out[labels < 0] = 0
    return out


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def coarse_to_fine_figure(path: Path, image: np.ndarray, seg: Segmentation, max_levels: int = 6) -> None:
    """Image, up to ``max_levels`` condensation levels (coarse to fine), k-means, persistent map, mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(seg.levels)
    pick = sorted(set(np.linspace(0, n - 1, min(max_levels, n)).round().astype(int).tolist()), reverse=True)
    panels: list[tuple[str, np.ndarray]] = [("image", to_uint8(image))]
    panels += [(f"level {i}: {seg.granularities[i]} clusters", colourise(seg.levels[i])) for i in pick]
    panels += [
        ("spectral k-means", colourise(seg.kmeans)),
        ("persistent structures", colourise(seg.persistent)),
        ("vessel mask (label-free)", seg.vessel.astype(np.uint8) * 255),
    ]
    cols = min(5, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, arr) in zip(axes.flat, panels, strict=False):
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def write_segmentation(out: Path, name: str, image: np.ndarray, seg: Segmentation, figure: bool) -> None:
    write_png(out / "masks" / f"{name}.png", seg.vessel)
    label_dir = out / "labels" / name
    write_png(label_dir / "kmeans.png", colourise(seg.kmeans))
    for i, (lab, g) in enumerate(zip(seg.levels, seg.granularities, strict=True)):
        write_png(label_dir / f"level_{i:02d}_{g}.png", colourise(lab))
    write_png(label_dir / "persistent.png", colourise(seg.persistent))
    for key in ("frangi_otsu", "kmeans_intensity"):
        if key in seg.baselines:
            write_png(out / "baselines" / key / f"{name}.png", seg.baselines[key])
    if figure:
        coarse_to_fine_figure(out / "figures" / f"{name}.png", image, seg)
    arrays = {
        "image": image.astype(np.float32),
        "roi": seg.roi,
        "kmeans": seg.kmeans.astype(np.int32),
        "landmarks": seg.landmarks.astype(np.int32),
        "levels": seg.levels.astype(np.int32),
        "granularities": np.asarray(seg.granularities, np.int32),
        "persistent": seg.persistent.astype(np.int32),
        "vessel": seg.vessel,
        "vessel_landmarks": seg.vessel_landmarks,
        "vessel_kmeans": seg.vessel_kmeans,
        "vessel_persistent": seg.vessel_persistent,
        "vessel_spread": seg.vessel_spread,
        "timing_names": np.asarray(list(seg.timings)),
        "timing_seconds": np.asarray(list(seg.timings.values())),
    }
    for key, arr in seg.baselines.items():
        arrays[key] = arr.astype(np.int32) if arr.dtype.kind == "i" else arr
    write_npz(out / "labels" / f"{name}.npz", arrays)


def roi_lookup(roi_dir: str | Path | None) -> Callable[[str, tuple[int, ...]], np.ndarray | None]:
    """Find ``<roi_dir>/<name>.*`` for an image name (a ``_mask``/``_fov`` suffix on the ROI file is allowed)."""
    if roi_dir is None:
        return lambda name, shape: None
    root = Path(roi_dir)
    if not root.is_dir():
        raise DataError(root, "ROI folder does not exist")
    files = unique_stems(list_image_files([root]))
    for stem in list(files):
        for suf in ("_mask", "_fov", "_roi"):
            if stem.endswith(suf):
                files.setdefault(stem[: -len(suf)], files[stem])

    def find(name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if name not in files:
            raise DataError(root, f"no ROI mask for image {name!r}")
        roi = read_mask(files[name])
        if roi.shape != shape:
            raise DataError(files[name], f"ROI size {roi.shape} differs from the image's {shape}")
        return roi

    return find


def segment_inputs(
    model: CUTSModel,
    inputs: Sequence[str | Path],
    out: str | Path,
    cfg: SegmentConfig,
    channel: str = "gray",
    roi_dir: str | Path | None = None,
    figure: bool = True,
    overwrite: bool = False,
    announce: Callable[[str], None] | None = None,
) -> SegmentRun:
    """Segment every frame of every input file into ``out`` (see the module docstring)."""
    out = Path(out)
    files = list_image_files(inputs)
    roi_of = roi_lookup(roi_dir)
    run = SegmentRun()
    for path in files:
        try:
            frames = read_frames(path, channel)
        except DataError as exc:
            run.failed.append((path.name, str(exc)))
            continue
        for fr in frames:
            if (out / "labels" / f"{fr.name}.npz").exists() and not overwrite:
                run.skipped.append(fr.name)
                continue
            try:
                roi = roi_of(fr.name, fr.image.shape)
                seg = segment_image(model, fr.image, cfg, roi)
            except (DataError, ValueError) as exc:
                run.failed.append((fr.name, str(exc)))
                continue
            write_segmentation(out, fr.name, fr.image, seg, figure)
            row: dict[str, object] = {
                "name": fr.name,
                "height": fr.image.shape[0],
                "width": fr.image.shape[1],
                "levels": "/".join(str(g) for g in seg.granularities),
                "vessel_fraction": round(float(seg.vessel[seg.roi].mean()), 5),
                **{f"seconds_{k}": round(v, 3) for k, v in seg.timings.items()},
            }
            run.rows.append(row)
            if announce:
                announce(f"{fr.name}: {seg.timings['total']:.1f} s, {len(seg.granularities)} levels")
    if not run.rows and not run.skipped:
        raise AngiosegError(f"no image could be segmented ({len(run.failed)} failed)")
    append_csv(out / "segment.csv", run.rows)
    return run


def append_csv(path: Path, rows: list[dict[str, object]]) -> None:
    """Merge ``rows`` into ``path`` by name (rows of earlier, resumed runs are kept)."""
    old: dict[str, dict[str, object]] = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as fh:
            old = {r["name"]: dict(r) for r in csv.DictReader(fh)}
    for r in rows:
        old[str(r["name"])] = r
    if not old:
        return
    keys: list[str] = []
    for r in old.values():
        keys += [k for k in r if k not in keys]
    with atomic_open(path, newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for name in sorted(old):
            w.writerow(old[name])
