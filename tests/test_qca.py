"""QCA on phantoms with programmed stenoses (angioseg.qca.phantom): accuracy, reference methods,
lesion length, calibration (DICOM chain and catheter), frame choice, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from angioseg.data.io import IMAGER_CORRECTED, IMAGER_UNCORRECTED, PIXEL_SPACING, Frame
from angioseg.errors import AngiosegError
from angioseg.qca import Calibration, QCAOptions, calibrate, catheter_mm, choose_frame, qca_between
from angioseg.qca.calibration import catheter_width_px
from angioseg.qca.phantom import QCAPhantomConfig, lesion_length_truth, phantom_cine, qca_phantom

CASES = [(ds, seed) for ds in (0.3, 0.5, 0.7, 0.8) for seed in (0, 1)]


def _run(ds: float, seed: int, **opts: object):
    ph = qca_phantom(seed, QCAPhantomConfig(stenosis=ds))
    res = qca_between(
        ph.mask, ph.proximal, ph.distal, Calibration(ph.truth["spacing_mm"], "manual"), QCAOptions(**opts)
    )  # type: ignore[arg-type]
    return ph, res.summary()


@pytest.mark.parametrize(("ds", "seed"), CASES)
def test_phantom_accuracy(ds: float, seed: int) -> None:
    """Noisy frame, crossing vessel, side branch, tapering artery: |%DS error| <= 5, MLD within 0.15 mm."""
    ph, s = _run(ds, seed)
    assert abs(s["ds_percent"] - ph.truth["ds_percent"]) <= 5.0
    assert abs(s["mld_mm"] - ph.truth["mld_mm"]) <= 0.15
    assert abs(s["rvd_mm"] - ph.truth["rvd_mm"]) <= 0.15
    assert abs(s["mld_position_mm"] - ph.truth["mld_arc_mm"]) <= 1.5  # the MLD is found where it is
    assert abs(s["as_percent"] - 100 * (1 - (s["mld_mm"] / s["rvd_mm"]) ** 2)) < 1e-6


def test_perpendicular_rays_beat_twice_the_distance_transform() -> None:
    """The comparison behind the default: mean |MLD error| over the phantoms, rays vs 2 x EDT - 1."""
    err = {m: [] for m in ("rays", "edt")}
    for ds, seed in CASES[::2]:
        for m in err:
            ph, s = _run(ds, seed, method=m)
            err[m].append(abs(s["mld_mm"] - ph.truth["mld_mm"]))
    assert np.mean(err["rays"]) < 0.5 * np.mean(err["edt"])


def test_lesion_length_follows_the_stated_rule() -> None:
    cfg = QCAPhantomConfig(stenosis=0.7)
    _, s = _run(0.7, 0)
    assert s["lesion_length_mm"] == pytest.approx(lesion_length_truth(cfg, 0.2), abs=0.6)
    assert s["lesion_length_mm"] < 0.8 * cfg.lesion_mm < s["segment_length_mm"]  # not the analysed length
    _, wider = _run(0.7, 0, lesion_fraction=0.1)
    assert wider["lesion_length_mm"] > s["lesion_length_mm"] + 0.5


def test_reference_methods() -> None:
    ph = qca_phantom(0, QCAPhantomConfig(stenosis=0.5))
    cal = Calibration(0.2, "manual")
    interp = qca_between(ph.mask, ph.proximal, ph.distal, cal, QCAOptions(reference="interpolated"))
    ends = qca_between(ph.mask, ph.proximal, ph.distal, cal, QCAOptions(reference="mean-ends"))
    ref_i, ref_e = interp.stenosis.reference, ends.stenosis.reference
    assert np.ptp(ref_e) == 0  # a constant line
    assert ref_i[0] > ref_i[-1] + 2  # follows the 3.4 -> 2.8 mm taper (17 -> 14 px)
    assert interp.summary()["reference_method"] == "interpolated"
    assert ends.summary()["reference_method"] == "mean-ends"
    # the healthy samples exclude the lesion and the crossing vessel's spike
    st = interp.stenosis
    assert not st.healthy[st.mld_index]
    assert st.healthy.mean() > 0.5


def test_catheter_calibration_on_the_phantom() -> None:
    ph = qca_phantom(2, QCAPhantomConfig(stenosis=0.5))
    width, n_profiles = catheter_width_px(ph.image, *ph.catheter)
    assert n_profiles == 25  # 25 profiles along the 128 px between the points
    assert width == pytest.approx(2.0 / 0.2, rel=0.04)  # 6F = 2.0 mm at 0.2 mm/px
    cal = calibrate(None, catheter="6F", catheter_points=ph.catheter, image=ph.image)
    assert cal.method == "catheter" and cal.mm_per_px == pytest.approx(0.2, rel=0.04)


def test_catheter_sizes() -> None:
    assert catheter_mm("6F") == pytest.approx(2.0)
    assert catheter_mm("5f") == pytest.approx(1.667, abs=1e-3)
    assert catheter_mm("7") == pytest.approx(2.333, abs=1e-3)
    with pytest.raises(AngiosegError, match="French size"):
        catheter_mm("six")


def _frame(spacing: tuple[float, float] | None, source: str, mag: str | None = None) -> Frame:
    return Frame("f", np.zeros((8, 8), np.float32), Path("x.dcm"), None, spacing, source, mag)


def test_calibration_chain() -> None:
    assert calibrate(_frame((0.3, 0.3), PIXEL_SPACING)).mm_per_px == pytest.approx(0.3)
    cal = calibrate(_frame((0.25, 0.25), IMAGER_CORRECTED, "SID/SOD"))
    assert cal.method == IMAGER_CORRECTED and cal.detail["magnification_source"] == "SID/SOD"
    raw = calibrate(_frame((0.3, 0.3), IMAGER_UNCORRECTED))
    assert raw.mm_per_px is None and raw.unit == "px" and "ignored" in raw.detail
    assert calibrate(None).to_dict()["unit"] == "px"
    manual = calibrate(_frame((0.3, 0.3), PIXEL_SPACING), spacing=0.15)
    assert manual.mm_per_px == 0.15 and manual.detail["file_spacing_mm"] == [0.3, 0.3]
    with pytest.raises(AngiosegError, match="catheter"):
        calibrate(None, catheter="6F")


def test_frame_auto_picks_end_diastole_at_full_opacification() -> None:
    frames, best = phantom_cine(12, seed=0, end_diastole=8)
    assert best == 8
    i, rule, scores = choose_frame([f.image for f in frames])
    assert abs(i - best) <= 1 and "top-hat" in rule
    assert scores[0] < 0.8 * max(scores)  # the frame before contrast arrives scores low
    j, rule_m, _ = choose_frame(masks=[f.mask for f in frames])
    assert j == best and "area" in rule_m


def test_clear_errors() -> None:
    ph = qca_phantom(0)
    with pytest.raises(AngiosegError, match="not on a segmented vessel"):
        qca_between(ph.mask, (250.0, 250.0), ph.distal)
    with pytest.raises(AngiosegError, match="outside"):
        qca_between(ph.mask, (-3.0, 10.0), ph.distal)
    two = np.zeros((64, 64), bool)
    two[10:16, 5:60] = True
    two[40:46, 5:60] = True
    with pytest.raises(AngiosegError, match="not connected"):
        qca_between(two, (10.0, 12.0), (50.0, 43.0))
    with pytest.raises(AngiosegError, match="empty"):
        qca_between(np.zeros((32, 32), bool), (1.0, 1.0), (5.0, 5.0))


def test_lesion_length_stays_inside_the_segment_when_it_runs_into_invalid_samples() -> None:
    """A lesion whose edge meets an invalid sample (free end, point off the mask) has no wall
    crossing there: the edge must not be extrapolated beyond the analysed segment."""
    from angioseg.qca.measure import stenosis
    from angioseg.qca.profile import Profile

    n = 200
    arc = np.arange(n) * 0.5
    d = np.full(n, 4.0)
    d[90:] = 2.0  # the narrowing runs on into samples that are not valid
    d[100] = 1.99  # excess barely differs from its valid neighbour's: a huge extrapolation
    valid = np.ones(n, bool)
    valid[100:] = False
    pts = np.zeros((n, 2))
    prof = Profile(arc, pts, pts, d, d, valid, "rays")
    st = stenosis(prof, "mean-ends")
    assert arc[0] <= st.lesion_start <= st.lesion_end <= arc[-1]
    assert st.lesion_length <= 10 * 0.5 + 1e-9  # samples 90..99, at most up to sample 100


@pytest.mark.parametrize(
    ("option", "message"),
    [({"reference": "meanends"}, "reference must be"), ({"method": "ray"}, "diameter method must be")],
)
def test_a_wrong_option_is_named_not_hidden_as_no_measurable_branch(
    option: dict[str, str], message: str
) -> None:
    from angioseg.qca import qca_branches

    ph = qca_phantom(0)
    with pytest.raises(AngiosegError, match=message):
        qca_branches(ph.mask, options=QCAOptions(**option))  # type: ignore[arg-type]
