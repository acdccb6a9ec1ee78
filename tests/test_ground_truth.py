"""Ground truth as drawn: masks that are scored are never altered; training clean-up fills specks only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from angioseg.data.preprocess import (
    DEFAULT_MAX_HOLE_AREA,
    PreprocessConfig,
    fill_small_holes,
    resize_mask,
    training_mask,
    truth_mask,
)
from tests.conftest import shared_data


def ring(size: int = 64, outer: int = 20, inner: int = 14) -> np.ndarray:
    """A vessel loop: an annulus around the image centre (it encloses ~600 px of background)."""
    yy, xx = np.mgrid[:size, :size] - size // 2
    r = np.hypot(yy, xx)
    return (r <= outer) & (r > inner)


def test_a_vessel_loop_stays_a_loop() -> None:
    m = ring()
    cfg = PreprocessConfig(image_size=None)
    assert np.array_equal(training_mask(m, cfg), m)
    assert np.array_equal(truth_mask(m, cfg), m)
    # The authors' behaviour (every hole filled) is still available, and it does paint the loop.
    filled = training_mask(m, PreprocessConfig(image_size=None, max_hole_area=None))
    assert filled[32, 32] and filled.sum() > m.sum() + 500


def test_a_one_pixel_speck_is_filled_only_where_asked() -> None:
    m = ring()
    m[32 - 17, 32] = False  # a 1-px speck of background inside the vessel wall
    cfg = PreprocessConfig(image_size=None)
    assert training_mask(m, cfg)[15, 32]  # default training clean-up fills it ...
    assert training_mask(m, cfg).sum() == m.sum() + 1  # ... and nothing else
    assert not truth_mask(m, cfg)[15, 32]  # the scored truth keeps it
    assert not training_mask(m, PreprocessConfig(image_size=None, max_hole_area=0))[15, 32]


def test_hole_area_threshold_is_inclusive_and_border_regions_are_not_holes() -> None:
    m = np.ones((20, 20), bool)
    m[5:7, 5:7] = False  # 4-px hole
    m[12:15, 12:15] = False  # 9-px hole
    m[0:2, 0:2] = False  # 4 px of background touching the border: not enclosed
    out = fill_small_holes(m, 4)
    assert out[5:7, 5:7].all() and not out[12:15, 12:15].any() and not out[0:2, 0:2].any()
    assert fill_small_holes(m, 9)[12:15, 12:15].all()
    assert not fill_small_holes(m, None)[0:2, 0:2].any()


def test_configs_written_before_max_hole_area_keep_their_meaning() -> None:
    assert PreprocessConfig.from_dict({"fill_holes": True}).max_hole_area is None
    assert PreprocessConfig.from_dict({"fill_holes": False}).max_hole_area == 0
    assert PreprocessConfig.from_dict({}).max_hole_area == DEFAULT_MAX_HOLE_AREA


def test_truth_is_only_binarised_and_resized() -> None:
    m = ring(300, 100, 90)
    cfg = PreprocessConfig(image_size=256, mask_dilate=2, max_hole_area=None)
    assert np.array_equal(truth_mask(m, cfg), resize_mask(m, (256, 256)))
    thin = np.zeros((300, 300), bool)
    thin[:, 150:152] = True  # a 2-px vessel survives the resize to 256
    assert resize_mask(thin, (256, 256)).any(axis=1).all()


def test_finetune_scores_validation_and_test_against_the_masks_as_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with every hole filled for training, every mask that is scored -- test, validation, and
    the held-out fold of the k-fold search -- is the ring as drawn; the training masks are filled."""
    import angioseg.train.finetune as ft
    from angioseg.data.io import write_png

    rng = np.random.default_rng(0)
    for i in range(8):
        m = ring(64, 20 + i % 3, 14)
        image = np.where(m, 60, 180) + rng.normal(0, 5, m.shape)
        write_png(tmp_path / "data" / "images" / f"r{i}.png", np.clip(image, 0, 255).astype(np.uint8))
        write_png(tmp_path / "data" / "masks" / f"r{i}.png", m)
    scored: list[np.ndarray] = []
    trained: list[np.ndarray] = []
    real_score_pairs, real_loaders = ft.score_pairs, ft._loaders

    def capture_scores(pairs, *args, **kwargs):  # type: ignore[no-untyped-def]
        scored.extend(g for _, _, g in pairs)
        return real_score_pairs(pairs, *args, **kwargs)

    def capture_loaders(cfg, train, val, batch_size, *rest):  # type: ignore[no-untyped-def]
        trained.extend(train[1])
        scored.extend(val[1])
        return real_loaders(cfg, train, val, batch_size, *rest)

    monkeypatch.setattr(ft, "score_pairs", capture_scores)
    monkeypatch.setattr(ft, "_loaders", capture_loaders)
    prep = PreprocessConfig(image_size=64, max_hole_area=None, inpaint_corners=False, unsharp=False)
    cfg = ft.FinetuneConfig(
        data=str(tmp_path / "data"), out=str(tmp_path / "run"), test=2, val=1, width=4, depth=2,
        epochs=1, batch_size=2, min_steps_per_epoch=1, augment=False, preprocess=prep,
        kfold=2, kfold_lrs=[1e-3], kfold_batch_sizes=[2], kfold_epochs=1,
    )  # fmt: skip
    ft.run_finetune(cfg, progress=False, announce=None)
    # 2 test + 1 validation (final fit) + 5 held out over the 2 folds
    assert len(scored) == 2 + 1 + 5
    for g in scored:
        assert not g[32, 32] and g.sum() < np.pi * 22**2 - 400  # the loop's inside is background
    assert trained and all(t[32, 32] for t in trained)  # training masks: every hole filled, as asked


def test_configs_with_the_old_key_load_everywhere() -> None:
    """Run and study configs written before max_hole_area (``fill_holes``) still load, with their meaning."""
    from angioseg.config import from_dict
    from angioseg.pretrain.run import PretrainConfig
    from angioseg.train.finetune import FinetuneConfig

    assert from_dict(FinetuneConfig, {"preprocess": {"fill_holes": True}}).preprocess.max_hole_area is None
    assert from_dict(PretrainConfig, {"preprocess": {"fill_holes": False}}).preprocess.max_hole_area == 0
    # --config FILE is merged over the defaults (max_hole_area 4): the old key still decides
    merged = {"preprocess": {"max_hole_area": DEFAULT_MAX_HOLE_AREA, "fill_holes": True}}
    assert from_dict(FinetuneConfig, merged).preprocess.max_hole_area is None


@pytest.mark.realdata
def test_default_training_cleanup_keeps_the_drawn_vessel_area_on_real_masks() -> None:
    """On the 40 CIMAT masks, filling every hole grew vessel area by ~24 %; the default must not."""
    from angioseg.data.io import read_mask

    files = sorted((shared_data("xca_cimat40") / "masks").glob("*.png"))
    assert len(files) == 40
    cfg = PreprocessConfig(image_size=None)
    drawn = cleaned = legacy = 0
    for f in files:
        m = read_mask(f)
        drawn += int(m.sum())
        cleaned += int(training_mask(m, cfg).sum())
        legacy += int(fill_small_holes(m, None).sum())
        assert np.array_equal(truth_mask(m, cfg), m > 0)
    assert abs(cleaned - drawn) / drawn < 0.01
    assert legacy / drawn > 1.1  # the check can tell: filling every hole moves the area by > 10 %
