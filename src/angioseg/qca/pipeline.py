"""QCA of a vessel mask: a segment between two points, or every branch; and the file-level run.

``qca_between`` measures the centerline path between a proximal and a distal click;
``qca_branches`` measures every skan branch long enough to hold a lesion and its references and
ranks them by %DS (the tightest narrowings first). ``run_qca`` is ``angioseg qca``: read a frame
(``--frame auto`` per :mod:`angioseg.qca.frames`), take its mask from a file or a model,
calibrate, measure and write the outputs of :mod:`angioseg.qca.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.errors import AngiosegError, DataError
from angioseg.qca.calibration import Calibration, calibrate
from angioseg.qca.centerline import CenterlineGraph
from angioseg.qca.measure import LESION_FRACTION, REFERENCES, Stenosis, stenosis
from angioseg.qca.profile import METHODS, Profile, diameter_profile

Point = tuple[float, float]  # (x, y) in pixels


@dataclass
class QCAOptions:
    method: str = "rays"  # diameter estimator, see qca.profile
    reference: str = "interpolated"  # or "mean-ends", see qca.measure
    lesion_fraction: float = LESION_FRACTION
    step: float = 0.5  # px of arc length between samples
    window: float = 4.0  # px, moving average of the diameters

    def __post_init__(self) -> None:
        # Checked here, once: qca_branches skips branches that fail to measure, which would hide a
        # wrong option behind "no vessel branch could be measured".
        if self.method not in METHODS:
            raise AngiosegError(f"diameter method must be one of {METHODS}, got {self.method!r}")
        if self.reference not in REFERENCES:
            raise AngiosegError(f"reference must be one of {REFERENCES}, got {self.reference!r}")
        if not 0 < self.lesion_fraction < 1:
            raise AngiosegError(f"lesion fraction must be in (0, 1), got {self.lesion_fraction}")
        if not (self.step > 0 and self.window >= 0):
            raise AngiosegError(f"step must be > 0 and window >= 0 px, got {self.step} and {self.window}")


@dataclass
class QCAResult:
    profile: Profile
    stenosis: Stenosis
    calibration: Calibration
    options: QCAOptions
    proximal: Point
    distal: Point
    branch: int | None = None
    context: dict[str, Any] = field(default_factory=dict)  # file, frame, frame rule, ...

    def summary(self) -> dict[str, Any]:
        """The numbers, in px and (when calibrated) mm, with the calibration and the settings."""
        st, pr, cal = self.stenosis, self.profile, self.calibration
        y, x = pr.points[st.mld_index]
        lengths = {
            "mld": st.mld,
            "rvd": st.rvd,
            "mld_position": st.mld_arc - pr.arc[0],
            "lesion_length": st.lesion_length,
            "lesion_start": st.lesion_start,
            "lesion_end": st.lesion_end,
            "segment_length": float(pr.arc[-1] - pr.arc[0]),
        }
        out: dict[str, Any] = dict(self.context)
        out.update(
            unit=cal.unit,
            ds_percent=st.ds_percent,
            as_percent=st.as_percent,
            **{f"{k}_px": v for k, v in lengths.items()},
            **{f"{k}_mm": (None if cal.mm_per_px is None else v * cal.mm_per_px) for k, v in lengths.items()},
            mld_xy=[float(x), float(y)],
            proximal_xy=list(self.proximal),
            distal_xy=list(self.distal),
            branch=self.branch,
            reference_method=st.reference_method,
            lesion_rule=f"contiguous extent around the MLD more than {100 * st.lesion_fraction:g} % below "
            "the reference diameter",
            diameter_method=pr.method,
            step_px=self.options.step,
            window_px=self.options.window,
            calibration=cal.to_dict(),
        )
        return out

    def profile_rows(self) -> list[dict[str, Any]]:
        """One row per sample: arc length and diameters in px and mm, position, flags."""
        pr, st, mm = self.profile, self.stenosis, self.calibration.mm_per_px
        rows = []
        for i in range(len(pr.arc)):
            a, d, r = float(pr.arc[i] - pr.arc[0]), float(pr.diameter[i]), float(st.reference[i])
            rows.append(
                {
                    "index": i,
                    "arc_px": a,
                    "arc_mm": None if mm is None else a * mm,
                    "diameter_px": d,
                    "diameter_mm": None if mm is None else d * mm,
                    "reference_px": r,
                    "reference_mm": None if mm is None else r * mm,
                    "x": float(pr.points[i, 1]),
                    "y": float(pr.points[i, 0]),
                    "valid": bool(pr.valid[i]),
                    "healthy": bool(st.healthy[i]),
                }
            )
        return rows


def _measure(
    graph: CenterlineGraph, path: np.ndarray, calibration: Calibration, options: QCAOptions
) -> tuple[Profile, Stenosis]:
    tips = (graph.is_tip(path[0]), graph.is_tip(path[-1]))
    prof = diameter_profile(graph.mask, graph.edt, path, options.method, options.step, options.window, tips)
    return prof, stenosis(prof, options.reference, options.lesion_fraction)


def qca_between(
    mask: np.ndarray,
    proximal: Point,
    distal: Point,
    calibration: Calibration | None = None,
    options: QCAOptions | None = None,
) -> QCAResult:
    """QCA of the vessel segment between two ``(x, y)`` points of a binary mask."""
    options = options or QCAOptions()
    calibration = calibration or Calibration(None, "pixels")
    graph = CenterlineGraph(mask)
    path = graph.path(proximal, distal)
    prof, st = _measure(graph, path, calibration, options)
    return QCAResult(prof, st, calibration, options, proximal, distal)


def qca_branches(
    mask: np.ndarray,
    calibration: Calibration | None = None,
    options: QCAOptions | None = None,
    top: int = 5,
    min_length: float = 40.0,
) -> list[QCAResult]:
    """QCA of every branch at least ``min_length`` px long, tightest (largest %DS) first."""
    options = options or QCAOptions()
    calibration = calibration or Calibration(None, "pixels")
    graph = CenterlineGraph(mask)
    results = []
    for br in graph.branches(min_length):
        try:
            prof, st = _measure(graph, br.path, calibration, options)
        except AngiosegError:  # too short once its ends are trimmed, no healthy part, ...
            continue
        p, q = br.path[0], br.path[-1]
        results.append(QCAResult(prof, st, calibration, options, (p[1], p[0]), (q[1], q[0]), branch=br.index))
    if not results:
        raise AngiosegError(f"no vessel branch of at least {min_length:g} px could be measured")
    results.sort(key=lambda r: -r.stenosis.ds_percent)
    return results[:top]


def _frame_index(spec: str | int, n: int, path: Path) -> int | None:
    """None for 'auto', else a checked frame index."""
    if str(spec) == "auto":
        return None
    try:
        i = int(spec)
    except ValueError:
        raise AngiosegError(f"--frame must be 'auto' or a frame number, got {spec!r}") from None
    if not 0 <= i < n:
        raise DataError(path, f"has {n} frame(s); --frame {i} is out of range (0..{n - 1})")
    return i


def run_qca(
    image_path: str | Path,
    mask_path: str | Path | None = None,
    model: str | Path | None = None,
    frame: str | int = "auto",
    proximal: Point | None = None,
    distal: Point | None = None,
    spacing: float | None = None,
    catheter: str | None = None,
    catheter_points: tuple[Point, Point] | None = None,
    options: QCAOptions | None = None,
    top: int = 5,
) -> tuple[list[QCAResult], np.ndarray, np.ndarray]:
    """Read, segment (or read the mask), choose the frame, calibrate and measure.

    Returns (results, image, mask) of the analysed frame: one result with two points, else the
    ``top`` tightest branches.
    """
    from angioseg.data.io import binarize_mask, read_frames
    from angioseg.qca.frames import choose_frame

    if (proximal is None) != (distal is None):
        raise AngiosegError("give both --proximal and --distal, or neither (then every branch is analysed)")
    if (mask_path is None) == (model is None):
        raise AngiosegError("give exactly one of --mask (a vessel mask file) and --model (to segment)")
    image_path = Path(image_path)
    frames = read_frames(image_path)
    index = _frame_index(frame, len(frames), image_path)
    masks: Sequence[np.ndarray] | None = None
    if mask_path is not None:
        mframes = read_frames(mask_path)
        if len(mframes) not in (1, len(frames)):
            raise DataError(mask_path, f"has {len(mframes)} frames, the image has {len(frames)}")
        if mframes[0].image.shape != frames[0].image.shape:
            raise DataError(
                mask_path,
                f"mask size {mframes[0].image.shape} differs from the image's {frames[0].image.shape}",
            )
        masks = [binarize_mask(f.image, mask_path) for f in mframes]
        if len(masks) == 1 and len(frames) > 1 and index is None:
            raise DataError(
                mask_path,
                f"is one mask for a {len(frames)}-frame cine: give the frame it was drawn on with "
                "--frame N (--frame auto needs a mask per frame, or --model)",
            )
        if len(masks) == 1:
            masks = [masks[0]] * len(frames)
    seg: Any = None  # a predict.Segmenter (imported only when a model is given)
    if masks is None:
        from angioseg.infer.engines import DEFAULT_TTA
        from angioseg.predict import Segmenter

        # one segmenter, with segment's default test-time flips, for the frame choice and the measurement
        seg = Segmenter.from_checkpoint(model, tta=DEFAULT_TTA)  # type: ignore[arg-type]
    rule = "given" if index is not None else ""
    if index is None:
        if len(frames) == 1:
            index, rule = 0, "single frame"
        else:
            if masks is None and seg is not None:
                masks = [seg.segment(f.image) for f in frames]
            index, rule, _ = choose_frame([f.image for f in frames], masks)
    fr = frames[index]
    if masks is not None:
        mask = np.asarray(masks[index], bool)
    else:
        assert seg is not None
        mask = seg.segment(fr.image)
    cal = calibrate(fr, spacing, catheter, catheter_points, fr.image)
    context = {
        "file": str(image_path),
        "frame": fr.frame,
        "frame_rule": rule,
        "mask_source": str(mask_path or model),
    }
    if proximal is not None and distal is not None:
        results = [qca_between(mask, proximal, distal, cal, options)]
    else:
        results = qca_branches(mask, cal, options, top=top)
    for r in results:
        r.context.update(context)
    return results, fr.image, mask
