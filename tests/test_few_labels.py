"""Few-label machinery: presets, rotating test folds, soft-clDice, the mean teacher, realistic synthetic frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from angioseg.data.io import write_png
from angioseg.data.preprocess import PreprocessConfig
from angioseg.data.splits import SplitSpec, make_splits
from angioseg.data.synthetic_real import RealSynthConfig, realistic_angiogram
from angioseg.errors import AngiosegError, LeakageError
from angioseg.models.unet import UNet
from angioseg.train.module import make_loss
from angioseg.train.presets import PRESETS
from tests.conftest import run_cli

NAMES = [f"img{i:02d}" for i in range(40)]
TINY = ["--width", "4", "--image-size", "64", "--batch-size", "2", "--steps", "2", "--epochs", "1"]


def test_test_folds_are_disjoint_cover_every_image_and_fold0_is_the_default_split() -> None:
    tests = [make_splits(NAMES, SplitSpec(labeled=5, val=4, test_fold=k))["test"] for k in range(5)]
    assert sorted(x for t in tests for x in t) == NAMES
    assert all(len(t) == 8 for t in tests)
    assert tests[0] == make_splits(NAMES, SplitSpec(labeled=5))["test"]
    s = make_splits(NAMES, SplitSpec(labeled=5, val=4, test_fold=3, seed=2))
    assert not set(s["test"]) & set(s["val"] + s["finetune"]) and len(s["finetune"]) == 5
    with pytest.raises(AngiosegError, match="test fold"):
        make_splits(NAMES, SplitSpec(test_fold=5))


def _run_config(run: Path) -> dict[str, object]:
    return dict(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")))


def test_finetune_preset_cpu_by_default_paper_on_request_explicit_options_win(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from angioseg.train.presets import STARTING_POINT

    base = ["finetune", "--data", synth_dir, "--labeled", "3", "--image-size", "64", "--steps", "1"]
    base += ["--epochs", "1", "--batch-size", "2"]
    assert run_cli([*base, "--out", tmp_path / "a"]) == 0  # the cpu preset: width 16, bundled start
    cfg = _run_config(tmp_path / "a")
    assert cfg["preset"] == "cpu" and cfg["width"] == 16 and cfg["pretrained"] == STARTING_POINT
    assert cfg["semi"] is None  # --semi auto: every image has a mask, so no self-training (recorded)
    assert cfg["patience"] == PRESETS["cpu"]["patience"] and cfg["lr"] == PRESETS["cpu"]["lr"]
    err = capsys.readouterr().err.replace("\n", " ")
    assert "preset cpu" in err and "xca_synth_pretrained" in err
    # another width cannot use the width-16 starting point: scratch, and the run says so
    assert run_cli([*base, "--out", tmp_path / "b", "--width", "4"]) == 0
    assert _run_config(tmp_path / "b")["pretrained"] is None
    assert "starts from scratch" in capsys.readouterr().err.replace("\n", " ")
    assert run_cli([*base, "--out", tmp_path / "c", "--width", "4", "--pretrained", "none"]) == 0
    assert _run_config(tmp_path / "c")["pretrained"] is None
    assert run_cli([*base, "--out", tmp_path / "d", "--preset", "paper", "--width", "4"]) == 0
    cfg = _run_config(tmp_path / "d")
    assert cfg["preset"] == "paper" and cfg["patience"] == PRESETS["paper"]["patience"] == 30
    assert cfg["pretrained"] is None
    assert run_cli([*base, "--out", tmp_path / "e", "--preset", "gpu"]) == 2
    assert "cpu, paper" in capsys.readouterr().err


def test_soft_cldice_loss_prefers_connected_predictions_and_has_gradient() -> None:
    target = torch.zeros(1, 1, 32, 32, dtype=torch.long)
    target[0, 0, 15:18, 2:30] = 1  # a bar
    loss = make_loss("dicecldice")
    good = torch.where(target.bool(), 4.0, -4.0).float().repeat(1, 2, 1, 1)
    good[:, 0] *= -1
    broken = good.clone()
    broken[0, 1, :, 14:18], broken[0, 0, :, 14:18] = -4.0, 4.0  # a gap cuts the bar
    lg, lb = loss(good, target), loss(broken, target)
    assert lg < lb
    x = broken.clone().requires_grad_(True)
    loss(x, target).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="dicece"):
        make_loss("focal")


def test_mean_teacher_ema_follows_the_student_and_teacher_is_what_is_validated() -> None:
    from angioseg.semi import SEMI_METHODS

    m = SEMI_METHODS["meanteacher"](UNet(width=4, depth=2).config(), ema=0.9, total_steps=10)
    assert m.inference_model() is m.teacher
    t0 = [p.clone() for p in m.teacher.parameters()]
    with torch.no_grad():
        for p in m.model.parameters():
            p.add_(1.0)
    m.on_train_batch_end(None, None, 0)  # global_step 0: decay min(0.9, 1/10) = 0.1
    for a, b, s in zip(t0, m.teacher.parameters(), m.model.parameters(), strict=True):
        assert torch.allclose(b, 0.1 * a + 0.9 * s, atol=1e-6)
    # confident pixels only: with threshold 1.0 nothing is confident, the unlabeled loss is 0
    m.hparams["threshold"] = 1.01
    x = torch.randn(2, 1, 32, 32)
    loss, kept = m.unlabeled_loss(x, x)
    assert float(kept) == 0.0 and float(loss.detach()) == 0.0
    m.hparams["threshold"] = 0.0
    loss, kept = m.unlabeled_loss(x, x)
    assert float(kept) == 1.0 and float(loss.detach()) > 0


def test_semi_dataset_views_are_aligned_flips_of_an_unlabeled_frame() -> None:
    from angioseg.semi.data import SemiDataset

    class Labeled(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"image": torch.zeros(1, 16, 16), "mask": torch.zeros(1, 16, 16, dtype=torch.long)}

    frame = np.arange(256, dtype=np.float32).reshape(16, 16) / 256
    ds = SemiDataset(Labeled(), [frame], seed=0)
    dihedral = [np.rot90(f, k) for f in (frame, frame[:, ::-1]) for k in range(4)]
    for i in range(4):
        item = ds[i]
        weak = item["u_weak"][0].numpy()
        assert any(np.array_equal(weak, d) for d in dihedral)
        # the strong view changes intensities, not geometry: its ranks follow the weak view's closely
        strong = item["u_strong"][0].numpy()
        assert np.corrcoef(weak.ravel(), strong.ravel())[0, 1] > 0.8


def test_unlabeled_folder_holding_a_test_image_is_refused(tmp_path: Path, synth_dir: Path) -> None:
    from angioseg.data.datasets import load_dataset
    from angioseg.data.leakage import sample_hashes
    from angioseg.semi.data import load_unlabeled

    samples = {s.name: s for s in load_dataset(synth_dir)}
    test = sample_hashes(samples, ["synth_0003"])
    unl = tmp_path / "unl"
    write_png(unl / "copy_of_test.png", samples["synth_0003"].image.astype(np.uint8))
    write_png(unl / "other.png", samples["synth_0004"].image.astype(np.uint8))
    with pytest.raises(LeakageError, match="copy_of_test"):
        load_unlabeled(unl, PreprocessConfig(image_size=32), test)
    (unl / "copy_of_test.png").unlink()
    frames = load_unlabeled(unl, PreprocessConfig(image_size=32, inpaint_corners=False), test)
    assert len(frames) == 1 and frames[0].shape == (32, 32)


def test_finetune_semi_cli_runs_and_checks_its_options(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unl = tmp_path / "unl"
    from angioseg.data.synthetic import SynthConfig, synthetic_angiogram

    for i in range(3):
        write_png(unl / f"u{i}.png", synthetic_angiogram(100 + i, SynthConfig(size=96))[0])
    base = ["finetune", "--data", synth_dir, "--labeled", "3", *TINY]
    assert run_cli([*base, "--out", tmp_path / "r", "--semi", "meanteacher", "--unlabeled", unl]) == 0
    cfg = _run_config(tmp_path / "r")
    assert cfg["semi"] == "meanteacher" and (tmp_path / "r" / "model.safetensors").exists()
    assert "3 unlabeled frames" in capsys.readouterr().err.replace("\n", " ")
    assert run_cli([*base, "--out", tmp_path / "s", "--semi", "meanteacher"]) == 2
    assert "needs --unlabeled" in capsys.readouterr().err
    assert run_cli([*base, "--out", tmp_path / "u", "--unlabeled", unl]) == 2
    assert "needs a --semi" in capsys.readouterr().err
    assert run_cli([*base, "--out", tmp_path / "t", "--semi", "fixmatch", "--unlabeled", unl]) == 2
    assert "meanteacher" in capsys.readouterr().err


def test_realistic_synthetic_frame_keeps_the_real_background_and_draws_visible_vessels() -> None:
    rng = np.random.default_rng(0)
    xx = np.mgrid[0:300, 0:300][1]
    frame = (150 + 40 * np.sin(xx / 40.0) + 5 * rng.standard_normal((300, 300))).clip(0, 255)
    frame[:, 140:143] -= 80  # a real vessel of the background frame: must be removed
    frame[:40] = 5  # collimator band: no vessel may be drawn (or labeled) there
    cfg = RealSynthConfig(size=128, catheter_prob=0.0, contrast=(0.25, 0.25))
    image, mask = realistic_angiogram(frame.astype(np.uint8), 1, cfg)
    again, mask2 = realistic_angiogram(frame.astype(np.uint8), 1, cfg)
    assert np.array_equal(image, again) and np.array_equal(mask, mask2)
    assert 0.005 < mask.mean() < 0.2
    from scipy import ndimage

    ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask, iterations=1)
    assert image[mask].mean() < 0.9 * image[ring].mean()  # vessels are darker than their surroundings
    dark = ndimage.uniform_filter(image.astype(float), 5) < 30
    assert not (mask & dark).any()


def test_inpainted_background_replaces_only_the_frames_vessels_and_keeps_its_texture() -> None:
    from angioseg.data.synthetic_real import _as_unit_image, inpainted_background, vessel_free_background

    rng = np.random.default_rng(0)
    xx = np.mgrid[0:256, 0:256][1]
    frame = 150 + 40 * np.sin(xx / 40.0) + 6 * rng.standard_normal((256, 256))
    frame[:, 120:124] -= 70  # the frame's own vessel (4 px wide, like a mid-size coronary)
    frame[:30] = 5  # a collimator band: dark, wide, and not a vessel
    frame = frame.clip(0, 255).astype(np.uint8)
    out, replaced = inpainted_background(frame, 256, rng=1)
    img = _as_unit_image(frame, 256)
    assert out.shape == (256, 256) and out.dtype == np.float32
    assert replaced[100:, 121:123].all()  # the vessel is found ...
    assert 0.01 < replaced[40:].mean() < 0.15  # ... and little else inside the field
    # ... and filled in: level with the background on both sides (the sine's slope cancels) ...
    beside = (out[60:, 110:114].mean() + out[60:, 130:134].mean()) / 2
    assert abs(out[60:, 121:123].mean() - beside) < 0.015
    assert out[60:, 121:123].mean() > img[60:, 121:123].mean() + 0.15
    # ... with texture like the background's, not a flat smear (the background is constant along y)
    assert 0.4 < out[60:, 122].std() / img[60:, 104].std() < 2.5
    # every pixel not replaced is the frame's own (texture kept); the collimator stays dark
    assert np.allclose(out[~replaced], img[~replaced], atol=1e-6)
    assert not replaced[:25].any() and out[:25].max() < 0.1
    assert np.array_equal(vessel_free_background(frame, 256, 7, "inpaint", 1), out)
    with pytest.raises(AngiosegError, match="closing, inpaint"):
        vessel_free_background(frame, 256, 7, "blur")


def test_synth_cli_background_removal_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bg = tmp_path / "bg"
    rng = np.random.default_rng(0)
    write_png(bg / "f.png", (150 + 8 * rng.standard_normal((96, 96))).clip(0, 255).astype(np.uint8))
    for how in ("closing", "inpaint"):
        args = ["synth", "--backgrounds", bg, "-n", "2", "--size", "64", "--out", tmp_path / how]
        assert run_cli([*args, "--background-removal", how]) == 0
        assert len(list((tmp_path / how / "images").glob("*.png"))) == 2
    assert run_cli(["synth", "--backgrounds", bg, "--out", tmp_path / "x", "--background-removal", "x"]) == 2
    assert "closing, inpaint" in capsys.readouterr().err


def test_strong_augmentations_move_image_and_mask_together_beyond_the_d4_group() -> None:
    from angioseg.data.augment import augmentations
    from angioseg.train.arrays import ArrayDataset

    mask = np.zeros((64, 64), bool)
    mask[20:26, 5:60] = True  # an off-centre bar and a blob: any misaligned warp shows
    mask[35:50, 40:52] = True
    image = 4.0 * mask.astype(np.float32) - 2.0
    transform = augmentations("strong", noise_std=0.1)
    transform.set_random_state(3)
    ds = ArrayDataset([image], [mask], transform=transform, length=40)
    d4 = [np.rot90(m, k) for m in (mask, mask[:, ::-1]) for k in range(4)]
    off_grid = 0
    for i in range(len(ds)):
        d = ds[i]
        x, m = d["image"][0].numpy(), d["mask"][0].numpy().astype(bool)
        assert d["mask"].dtype == torch.int64 and set(np.unique(m)) <= {False, True}
        assert m.any() and (~m).any()
        # The image's bright pixels are the mask's: the same warp moved both.
        r = np.corrcoef(x.ravel(), m.ravel().astype(np.float32))[0, 1]
        assert r > 0.8, (i, r)
        off_grid += all((m != t).mean() > 0.02 for t in d4)
    assert off_grid >= 10  # rotations by any angle and rescaling, not only flips and quarter turns


def test_augment_policy_option_is_checked_and_recorded(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["finetune", "--data", synth_dir, "--labeled", "3", *TINY]
    assert run_cli([*base, "--out", tmp_path / "r", "--augment-policy", "strong"]) == 0
    assert _run_config(tmp_path / "r")["augment_policy"] == "strong"
    assert run_cli([*base, "--out", tmp_path / "s", "--augment-policy", "wild"]) == 2
    assert "paper, strong" in capsys.readouterr().err


def test_inpainted_background_without_growth_replaces_only_the_found_vessel() -> None:
    """``grow=0`` must not grow at all (scipy's ``iterations=0`` dilates until nothing changes: the whole frame)."""
    from angioseg.data.synthetic_real import inpainted_background

    frame = np.full((64, 64), 150.0)
    frame[:, 30:33] = 80
    _, grown = inpainted_background(frame.astype(np.uint8), 64, rng=0)
    _, bare = inpainted_background(frame.astype(np.uint8), 64, rng=0, grow=0)
    assert bare[:, 31].all() and bare.mean() < grown.mean() < 0.2
    # and the closing default never draws from the image's generator (builtin frames unchanged)
    from angioseg.data.synthetic_real import vessel_free_background

    g = np.random.default_rng(5)
    state = g.bit_generator.state
    vessel_free_background(frame, 64, 7, "closing", g)
    assert g.bit_generator.state == state


def test_background_removal_is_checked_also_without_backgrounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt --background-removal, or inpaint with nothing to inpaint, must not pass silently."""
    base = ["synth", "-n", "1", "--size", "32"]
    assert run_cli([*base, "--out", tmp_path / "a", "--background-removal", "inpiant"]) == 2
    assert "closing, inpaint" in capsys.readouterr().err
    assert run_cli([*base, "--out", tmp_path / "b", "--background-removal", "inpaint"]) == 2
    assert "--backgrounds" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_augment_policy_reaches_training_and_is_refused_without_augmentation(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monai.transforms import RandAffined

    from angioseg.train.finetune import FinetuneConfig, train_transform

    strong = train_transform(FinetuneConfig(augment_policy="strong"))
    assert isinstance(strong.transforms[0], RandAffined)
    assert not any(isinstance(t, RandAffined) for t in train_transform(FinetuneConfig()).transforms)
    base = ["finetune", "--data", synth_dir, "--labeled", "3", *TINY, "--out", tmp_path / "r"]
    assert run_cli([*base, "--augment-policy", "strong", "--no-augment"]) == 2
    assert "--no-augment" in capsys.readouterr().err


def test_mix_sampler_draws_its_share_of_extra_frames_afresh_each_epoch() -> None:
    from angioseg.train.mix import MixSampler

    def epochs(seed: int) -> list[list[int]]:
        s = MixSampler(16, 100, 0.25, torch.Generator().manual_seed(seed))
        return [list(s) for _ in range(3)]

    draws = epochs(0)
    for d in draws:
        real, extra = [i for i in d if i < 16], [i - 16 for i in d if i >= 16]
        assert len(d) == 16 and len(extra) == 4 and len(set(extra)) == 4 and len(set(real)) == 12
        assert all(0 <= i < 100 for i in extra)
        assert d != sorted(d)  # shuffled, not reals then extras
    assert draws[0] != draws[1]  # fresh frames each epoch
    assert draws == epochs(0) and draws != epochs(1)  # seeded
    few = MixSampler(8, 2, 0.5, torch.Generator().manual_seed(0))  # fewer extras than draws: repeats
    assert sum(i >= 8 for i in few) == 4
    with pytest.raises(ValueError, match="fraction"):
        MixSampler(8, 2, 1.0, torch.Generator())


def test_mix_frames_reach_the_training_batches_in_their_share() -> None:
    from angioseg.train.finetune import FinetuneConfig, _loaders

    cfg = FinetuneConfig(augment=False, mix_fraction=0.25, min_steps_per_epoch=4, seed=3)
    real = ([np.zeros((16, 16), np.float32)] * 3, [np.zeros((16, 16), bool)] * 3)
    extra = ([np.full((16, 16), 1.0, np.float32)] * 5, [np.ones((16, 16), bool)] * 5)
    tl, _ = _loaders(cfg, real, real, 4, mix=extra)
    for _ in range(2):
        batches = list(tl)
        assert len(batches) == 4
        images = torch.cat([b["image"] for b in batches])
        masks = torch.cat([b["mask"] for b in batches])
        from_extra = images.flatten(1).mean(1) > 0.5
        assert int(from_extra.sum()) == 4  # a quarter of the 16 draws
        assert bool((masks[from_extra] == 1).all()) and bool((masks[~from_extra] == 0).all())


def test_finetune_mix_cli_runs_and_refuses_test_images_and_bad_options(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from angioseg.data.synthetic import write_synthetic_dataset

    extra = tmp_path / "extra"
    write_synthetic_dataset(extra, 4, size=96, seed=7)
    base = ["finetune", "--data", synth_dir, "--labeled", "3", *TINY]
    assert run_cli([*base, "--out", tmp_path / "r", "--mix", extra, "--mix-fraction", "0.25"]) == 0
    cfg = _run_config(tmp_path / "r")
    assert cfg["mix"] == str(extra) and cfg["mix_fraction"] == 0.25
    assert "mixing 4 labeled frames" in capsys.readouterr().err.replace("\n", " ")
    assert run_cli([*base, "--out", tmp_path / "f", "--mix", extra, "--mix-fraction", "1"]) == 2
    assert "--mix-fraction" in capsys.readouterr().err
    unl = ["--semi", "meanteacher", "--unlabeled", extra]
    assert run_cli([*base, "--out", tmp_path / "s", "--mix", extra, *unl]) == 2
    assert "does not combine" in capsys.readouterr().err
    # a folder holding a copy of a test image (and its mask) is refused, naming the file
    test_name = yaml.safe_load((tmp_path / "r" / "splits.json").read_text(encoding="utf-8"))["test"][0]
    leak = tmp_path / "leak"
    for sub in ("images", "masks"):
        (leak / sub).mkdir(parents=True)
        (leak / sub / "copy.png").write_bytes((synth_dir / sub / f"{test_name}.png").read_bytes())
    assert run_cli([*base, "--out", tmp_path / "l", "--mix", leak]) != 0
    assert "copy.png" in capsys.readouterr().err.replace("\n", "")
    nomask = tmp_path / "nomask"
    (nomask / "images").mkdir(parents=True)
    (nomask / "images" / "a.png").write_bytes((extra / "images" / "synth_0000.png").read_bytes())
    assert run_cli([*base, "--out", tmp_path / "n", "--mix", nomask]) == 2
    assert "no labeled frame" in capsys.readouterr().err.replace("\n", " ")


def test_kfold_search_trains_each_fold_with_the_runs_extra_frames(
    tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--kfold chooses lr and batch size on training as the run does it: with --mix's frames, and with
    a semi-supervised method's unlabeled frames (before, every fold trained on the labels alone)."""
    from angioseg.data.synthetic import write_synthetic_dataset
    from angioseg.train import finetune

    extra = tmp_path / "extra"
    write_synthetic_dataset(extra, 4, size=96, seed=7)
    calls: list[tuple[int, int]] = []  # per _loaders call: (unlabeled frames, mixed-in frames)
    real_loaders = finetune._loaders

    def recorded(cfg: Any, train: Any, val: Any, bs: int, unlabeled: Any = None, *rest: Any) -> Any:
        mix = rest[1] if len(rest) > 1 else None
        calls.append((len(unlabeled or []), len(mix[0]) if mix else 0))
        return real_loaders(cfg, train, val, bs, unlabeled, *rest)

    monkeypatch.setattr(finetune, "_loaders", recorded)
    base = ["finetune", "--data", synth_dir, "--labeled", "4", *TINY, "--kfold", "2"]
    assert run_cli([*base, "--out", tmp_path / "m", "--mix", extra]) == 0
    assert calls == [(0, 4)] * 9  # 2 folds of 4 (lr, batch size) settings, then the run
    calls.clear()
    assert run_cli([*base, "--out", tmp_path / "s", "--semi", "meanteacher", "--unlabeled", extra]) == 0
    assert calls == [(4, 0)] * 9
    # a fold trains kfold_epochs: the mean teacher's ramp-up (total_steps) is sized to that
    steps: list[int] = []
    real_new_module = finetune._new_module

    def recorded_module(cfg: Any, *a: Any) -> Any:
        module, transfer = real_new_module(cfg, *a)
        steps.append(int(module.hparams["total_steps"]))
        return module, transfer

    monkeypatch.setattr(finetune, "_new_module", recorded_module)
    from angioseg.data.preprocess import PreprocessConfig
    from angioseg.train.finetune import FinetuneConfig, run_finetune

    cfg = FinetuneConfig(
        data=str(synth_dir), out=str(tmp_path / "k"), labeled=4, width=4, epochs=3, batch_size=2,
        min_steps_per_epoch=2, kfold=2, kfold_lrs=[1e-3], kfold_batch_sizes=[2], kfold_epochs=1,
        semi="meanteacher", unlabeled=str(extra), preprocess=PreprocessConfig(image_size=64),
    )  # fmt: skip
    run_finetune(cfg, progress=False, announce=None)
    assert steps == [2, 2, 6]  # 2 folds of 1 epoch x 2 steps, then the run's 3 x 2


def test_selftrain_labels_the_unlabeled_frames_with_round_one_then_trains_round_two_on_them(
    tmp_path: Path,
    synth_dir: Path,
    tiny_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import angioseg.train.finetune as ft
    from angioseg.data.io import read_mask
    from angioseg.data.preprocess import training_mask
    from angioseg.predict import Segmenter
    from tests.tiny_model import PREPROCESS, held_out

    frames = [img for img, _ in held_out(3, 128, seed=9)]
    unl = tmp_path / "unl"
    for i, img in enumerate(frames):
        write_png(unl / f"u{i}.png", img)
    run = tmp_path / "r"
    base = ["finetune", "--data", synth_dir, "--labeled", "3", *TINY, "--pretrained", "none"]
    args = [*base, "--out", run, "--semi", "selftrain", "--unlabeled", unl, "--mix-fraction", "0.25"]
    # round 1 trains first (a tiny one, whose masks are empty) ...
    assert run_cli(args) == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "round 1" in err and "round 2: 3 frames" in err and "no vessel" in err
    r1 = run / "round1"
    first = _run_config(r1)
    assert first["semi"] is None and first["unlabeled"] is None and first["mix"] is None
    assert (r1 / "test" / "summary.json").is_file() and _run_config(run)["semi"] == "selftrain"
    # ... and a round 1 that segments (the tiny model) labels them as `segment` does, and round 2
    # trains on exactly those masks
    shutil.rmtree(run)
    (r1 / "test").mkdir(parents=True)
    for f in tiny_model.iterdir():
        shutil.copy(f, r1 / f.name)
    (r1 / "test" / "summary.json").write_text("{}", encoding="utf-8")
    seen: dict[str, object] = {}
    loaders = ft._loaders

    def spy(*a: object, **k: object) -> object:
        seen["mix"] = a[6] if len(a) > 6 else k.get("mix")
        return loaders(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ft, "_loaders", spy)
    assert run_cli(args) == 0
    seg = Segmenter.from_checkpoint(r1, tta="flip")
    masks = [read_mask(run / "pseudo_masks" / f"u{i}.png") for i in range(3)]
    for img, m in zip(frames, masks, strict=True):
        assert np.array_equal(m, seg.segment(img)) and 0.01 < m.mean() < 0.5
    images, trained = seen["mix"]  # type: ignore[misc]
    assert len(images) == 3
    prep = PreprocessConfig(image_size=64)  # the run's own preprocessing (TINY)
    for t, m in zip(trained, masks, strict=True):
        assert np.array_equal(t, training_mask(m, prep))
    assert PREPROCESS.image_size == 64
    # a cut round 2 resumes without training round 1 or labelling again; a lost mask is made again
    stamp = (run / "pseudo_masks" / "labels.json").stat().st_mtime_ns
    assert run_cli(["finetune", "--out", run, "--resume", "--epochs", "2"]) == 0
    assert (run / "pseudo_masks" / "labels.json").stat().st_mtime_ns == stamp
    (run / "pseudo_masks" / "u1.png").unlink()
    assert run_cli(["finetune", "--out", run, "--resume", "--epochs", "3"]) == 0
    assert np.array_equal(read_mask(run / "pseudo_masks" / "u1.png"), masks[1])
    # refused: no unannotated image in --data, --mix beside it, several processes
    assert run_cli([*base, "--out", tmp_path / "s", "--semi", "selftrain"]) == 2
    assert "every image has a mask" in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "s" / "config.yaml").exists()  # refused before the run was recorded
    assert (
        run_cli([*base, "--out", tmp_path / "m", "--semi", "selftrain", "--unlabeled", unl, "--mix", unl])
        == 2
    )
    assert "does not combine" in capsys.readouterr().err
    bad = [*base, "--out", tmp_path / "d", "--semi", "selftrain", "--unlabeled", unl, "--devices", "2"]
    assert run_cli(bad) == 2
    assert "one process" in capsys.readouterr().err


def test_selftrain_and_mix_refuse_several_processes_and_a_stray_fraction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from angioseg.train.finetune import FinetuneConfig, _several_processes, check_options

    one = FinetuneConfig(semi="selftrain")
    assert not _several_processes(one)
    for change in ({"devices": "2"}, {"devices": "0,1"}, {"strategy": "ddp"}, {"num_nodes": 2}):
        assert _several_processes(FinetuneConfig(**change))  # type: ignore[arg-type]
    assert not _several_processes(FinetuneConfig(devices="1")) and not _several_processes(
        FinetuneConfig(devices="0,")
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _several_processes(one)  # auto devices on a machine with 2 GPUs
    monkeypatch.undo()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _several_processes(one)
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(AngiosegError, match="--mix-fraction needs"):
        check_options(FinetuneConfig(mix_fraction=0.3))


def test_selftrain_without_unlabeled_uses_the_data_images_that_have_no_mask(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's natural layout: a few masks among all the frames of images/."""
    import shutil

    import angioseg.semi.selftrain as selftrain

    loads: list[int] = []  # load_frames calls (it loads and hashes every unannotated image)
    real_load_frames = selftrain.load_frames

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append(1)
        return real_load_frames(*args, **kwargs)

    monkeypatch.setattr(selftrain, "load_frames", counted)

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    for i in range(20, 24):  # 4 frames left unannotated
        (data / "masks" / f"synth_{i:04d}.png").unlink()
    run = tmp_path / "r"
    args = ["finetune", "--data", data, "--labeled", "3", *TINY, "--pretrained", "none", "--out", run]
    assert run_cli([*args[:-1], tmp_path / "plain", "--semi", "none"]) == 0  # off: named, not used
    assert "4 image(s) of" in capsys.readouterr().err.replace("\n", " ")
    assert _run_config(tmp_path / "plain")["semi"] is None and not (tmp_path / "plain" / "round1").exists()
    assert run_cli([*args[:-1], tmp_path / "plain", "--semi", "none", "--resume"]) == 0  # the same: fine
    assert run_cli([*args, "--semi", "selftrain"]) == 0
    assert "round 2: 4 frames" in capsys.readouterr().err.replace("\n", " ")
    assert len(loads) == 1
    labelled = json.loads((run / "pseudo_masks" / "labels.json").read_text(encoding="utf-8"))["frames"]
    assert labelled == [f"synth_{i:04d}" for i in range(20, 24)]
    # the cpu preset's default (--semi auto) self-trains on them too, says so, and records the choice
    assert run_cli([*args[:-1], tmp_path / "auto"]) == 0
    assert len(loads) == 2  # auto's choice loaded the frames once, and the run used them
    err = capsys.readouterr().err.replace("\n", " ")
    assert "self-training (--semi auto): 4 image(s)" in err and "round 2: 4 frames" in err
    assert _run_config(tmp_path / "auto")["semi"] == "selftrain"
    auto = json.loads((tmp_path / "auto" / "pseudo_masks" / "labels.json").read_text(encoding="utf-8"))
    assert auto["frames"] == labelled
    # resumed with the preset's default again: the stored choice stands (no conflict)
    assert run_cli([*args[:-1], tmp_path / "auto", "--resume"]) == 0
    assert run_cli([*args[:-1], tmp_path / "auto", "--resume", "--semi", "none"]) == 2  # a change: refused
    assert "--semi" in capsys.readouterr().err
    # an unannotated copy of a test image is refused, naming it
    test_name = json.loads((run / "splits.json").read_text(encoding="utf-8"))["test"][0]
    shutil.copy(data / "images" / f"{test_name}.png", data / "images" / "zz_copy.png")
    assert run_cli([*args[:-1], tmp_path / "r2", "--semi", "selftrain"]) != 0
    assert "zz_copy" in capsys.readouterr().err.replace("\n", "")
    # by default (auto) the run goes on without self-training, and says why
    assert run_cli([*args[:-1], tmp_path / "r3"]) == 0
    err = capsys.readouterr().err.replace("\n", "")
    assert "self-training (--semi auto) is off" in err and "zz_copy" in err
    assert _run_config(tmp_path / "r3")["semi"] is None and not (tmp_path / "r3" / "round1").exists()


def test_selftrain_never_learns_a_frame_of_a_test_or_validation_images_run(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Frames exported one file each (run_f000.png, run_f001.png) form a group: the unannotated frames
    of a run whose annotated frame is a test or validation image are left out."""
    import shutil

    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for k in range(12):
        shutil.copy(synth_dir / "images" / f"synth_{k:04d}.png", data / "images" / f"run{k:02d}_f000.png")
        shutil.copy(synth_dir / "masks" / f"synth_{k:04d}.png", data / "masks" / f"run{k:02d}_f000.png")
        shutil.copy(
            synth_dir / "images" / f"synth_{k + 12:04d}.png", data / "images" / f"run{k:02d}_f001.png"
        )
    run = tmp_path / "r"
    args = ["finetune", "--data", data, "--labeled", "3", *TINY, "--pretrained", "none", "--out", run]
    assert run_cli([*args, "--semi", "selftrain", "--test", "2", "--val", "2"]) == 0
    splits = json.loads((run / "splits.json").read_text(encoding="utf-8"))
    held = {n.split("_")[0] for n in [*splits["test"], *splits["val"]]}
    labelled = json.loads((run / "pseudo_masks" / "labels.json").read_text(encoding="utf-8"))["frames"]
    assert len(held) == 4 and len(labelled) == 8
    assert not held & {n.split("_")[0] for n in labelled}
    assert "leaves out 4 unannotated image(s)" in capsys.readouterr().err.replace("\n", " ")


def test_semi_auto_self_trains_only_where_unannotated_images_fit_the_other_options() -> None:
    """resolve_semi: auto -> selftrain only with usable unannotated --data images and nothing that rules
    it out; an explicit method is left alone; check_options takes auto for no method."""
    from angioseg.data.datasets import Sample
    from angioseg.train.finetune import FinetuneConfig, auto_may_self_train, check_options, resolve_semi

    rng = np.random.default_rng(0)

    def sample(name: str, masked: bool) -> Sample:
        image = rng.integers(0, 255, (16, 16)).astype(np.float32)
        return Sample(name, image, np.zeros((16, 16), bool) if masked else None, Path(f"{name}.png"))

    data = [sample("a", True), sample("b", True), sample("c", True), sample("u", False)]
    auto = FinetuneConfig(semi="auto", data="d")
    cfg, said, found = resolve_semi(auto, data, {}, ["a", "b"])
    assert cfg.semi == "selftrain" and said is not None and "1 image(s) of d have no mask" in said
    assert found is not None and [s.name for s in found[0]] == ["u"] and found[1] == 0
    assert resolve_semi(auto, data[:3], {}, ["a"]) == (FinetuneConfig(semi=None, data="d"), None, None)
    from angioseg.config import to_dict
    from angioseg.train.presets import describe

    def line(cfg: FinetuneConfig) -> str:  # the preset line, as the CLI prints it
        return describe("cpu", to_dict(cfg), self_training=auto_may_self_train(cfg))

    assert "self-training on images without a mask" in line(auto)
    for change in ({"mix": "m"}, {"unlabeled": "u"}, {"teacher": "t"}):
        cfg, said, _ = resolve_semi(FinetuneConfig(semi="auto", **change), data, {}, ["a"])  # type: ignore[arg-type]
        assert cfg.semi is None and said is None
        # the preset line does not announce self-training that these options rule out
        assert "self-training" not in line(FinetuneConfig(semi="auto", **change))  # type: ignore[arg-type]
    for change in ({"devices": "2"}, {"strategy": "ddp"}):
        cfg, said, _ = resolve_semi(FinetuneConfig(semi="auto", **change), data, {}, ["a"])  # type: ignore[arg-type]
        assert cfg.semi is None and said is not None and "one process" in said
        assert "self-training" not in line(FinetuneConfig(semi="auto", **change))  # type: ignore[arg-type]
    assert "semi-supervised" not in line(FinetuneConfig(semi="AUTO", mix="m"))  # any case of auto
    explicit = FinetuneConfig(semi="meanteacher", unlabeled="u")
    assert resolve_semi(explicit, data, {}, ["a"]) == (explicit, None, None)
    check_options(FinetuneConfig(semi="auto", mix="m"))  # auto is no method: --mix is fine
    check_options(FinetuneConfig(semi="NONE"))
    with pytest.raises(AngiosegError, match="explicit --semi selftrain"):
        check_options(FinetuneConfig(semi="auto", mix_fraction=0.3))
    with pytest.raises(AngiosegError, match="--unlabeled DIR needs a --semi"):
        check_options(FinetuneConfig(semi="auto", unlabeled="u"))
    with pytest.raises(AngiosegError, match="auto, meanteacher, selftrain, none"):
        check_options(FinetuneConfig(semi="sometimes"))


def test_lr_schedule_option_is_recorded_checked_and_kept_on_resume(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--lr-schedule cosine reaches the module, config.yaml keeps it, a resume may not change it, and
    an unknown schedule is refused before anything is written."""
    import torch as _torch

    run = tmp_path / "r"
    base = ["finetune", "--data", synth_dir, "--labeled", "3", *TINY, "--pretrained", "none"]
    assert run_cli([*base, "--out", run, "--lr-schedule", "cosine"]) == 0
    assert _run_config(run)["lr_schedule"] == "cosine"
    ckpt = _torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["lr_schedule"] == "cosine" and ckpt["lr_schedulers"]
    assert run_cli([*base, "--out", run, "--resume", "--lr-schedule", "constant"]) == 2
    assert "--lr-schedule (stored 'cosine', given 'constant')" in capsys.readouterr().err.replace("\n", " ")
    assert run_cli([*base, "--out", tmp_path / "bad", "--lr-schedule", "step"]) == 2
    assert "--lr-schedule 'step' is not one of: constant, cosine" in capsys.readouterr().err.replace(
        "\n", " "
    )
    assert not (tmp_path / "bad" / "config.yaml").exists()


def test_resume_keeps_the_stored_semi_when_the_preset_default_auto_is_given() -> None:
    """The bench resumes its cells with the cpu preset's --semi auto: the run's stored choice stands;
    any other given value must match it."""
    from angioseg.train.finetune import FinetuneConfig
    from angioseg.train.resume import resume_config

    for stored in (None, "selftrain"):
        kept = resume_config(FinetuneConfig(semi=stored), FinetuneConfig(semi="auto"), "c.yaml")
        assert kept.semi == stored
    with pytest.raises(AngiosegError, match="--semi"):
        resume_config(FinetuneConfig(semi="selftrain"), FinetuneConfig(semi=None), "c.yaml")
