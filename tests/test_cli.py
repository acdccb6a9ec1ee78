"""End-to-end CLI: synth -> finetune (+resume) -> segment (files, folders, DICOM cine, bad files) -> evaluate."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from angioseg.data.io import read_mask, write_png
from angioseg.metrics.overlap import dice
from tests.conftest import run_cli
from tests.dicom_utils import write_dicom
from tests.tiny_model import IMAGE_SIZE, held_out

TINY = ["--width", "4", "--image-size", "64", "--batch-size", "2", "--steps", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("runs") / "ft"
    code = run_cli(["finetune", "--data", synth_dir, "--out", run, "--labeled", "4", "--epochs", "2", *TINY])
    assert code == 0
    return run


def test_finetune_writes_a_complete_run(trained: Path) -> None:
    for f in (
        "config.yaml",
        "splits.json",
        "model.safetensors",
        "model.json",
        "checkpoints/last.ckpt",
        "logs/version_0/metrics.csv",
        "test/metrics.csv",
        "test/summary.json",
    ):
        assert (trained / f).exists(), f
    splits = json.loads((trained / "splits.json").read_text(encoding="utf-8"))
    assert len(splits["finetune"]) == 4 and not set(splits["test"]) & set(splits["val"] + splits["finetune"])
    summary = json.loads((trained / "test" / "summary.json").read_text(encoding="utf-8"))
    assert summary["n"] == len(splits["test"]) and 0 <= summary["dice"] <= 1
    header = (trained / "test" / "metrics.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "name,dice,iou,cldice,mhd,hd,hd95,add,diam_pred,diam_true,precision,recall,accuracy"
    assert {"pcc", "pcc_p", "ba_bias", "ba_loa_low", "ba_loa_high", "n"} <= set(summary)


def _last_epoch(run: Path) -> int:
    return int(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"])


def test_existing_run_needs_resume_and_resume_extends(
    trained: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["finetune", "--data", synth_dir, "--out", trained, "--labeled", "4", *TINY]) == 2
    assert "use --resume" in capsys.readouterr().err
    before = json.loads((trained / "splits.json").read_text(encoding="utf-8"))
    assert _last_epoch(trained) == 1
    # A larger --epochs extends the finished run: training continues from last.ckpt with epochs 2, 3.
    assert run_cli(["finetune", "--data", synth_dir, "--out", trained, "--resume", "--epochs", "4"]) == 0
    first = list(csv.DictReader(open(trained / "logs" / "version_0" / "metrics.csv")))
    resumed = list(csv.DictReader(open(trained / "logs" / "version_1" / "metrics.csv")))
    assert {int(r["epoch"]) for r in first} == {0, 1}
    assert {int(r["epoch"]) for r in resumed} == {2, 3} and min(int(r["step"]) for r in resumed) >= 3
    assert _last_epoch(trained) == 3
    assert "epochs: 4" in (trained / "config.yaml").read_text(encoding="utf-8")
    assert json.loads((trained / "splits.json").read_text(encoding="utf-8")) == before
    # No options at all (not even --data): the stored config; the run is finished, nothing more trains.
    config = (trained / "config.yaml").read_bytes()
    trained_s = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"][
        "TrainClock"
    ]
    assert trained_s["seconds"] > 0
    assert run_cli(["finetune", "--out", trained, "--resume"]) == 0
    assert _last_epoch(trained) == 3 and (trained / "config.yaml").read_bytes() == config
    assert (trained / "model.safetensors").exists()
    # train_seconds counts every piece of the run (kept in the checkpoints), not only this call's
    summary = json.loads((trained / "test" / "summary.json").read_text(encoding="utf-8"))
    assert summary["train_seconds"] >= trained_s["seconds"]


def test_resume_refuses_other_changed_options(
    trained: Path, synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(trained)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in trained.rglob("*")
            if p.is_file()
        }

    before = snapshot()
    resume = ["finetune", "--data", synth_dir, "--out", trained, "--resume"]
    assert run_cli([*resume, "--lr", "0.01", "--width", "8", "--epochs", "9"]) == 2
    err = capsys.readouterr().err
    assert "--lr (stored 0.001, given 0.01)" in err and "--width (stored 4, given 8)" in err
    assert "--epochs (" not in err  # a larger --epochs is allowed
    assert run_cli([*resume, "--image-size", "32", "--no-augment"]) == 2
    err = capsys.readouterr().err
    assert "--image-size (preprocess.image_size in config.yaml: stored 64, given 32)" in err
    assert "--no-augment (augment in config.yaml: stored True, given False)" in err
    (tmp_path / "lr.yaml").write_text("lr: 0.01\n", encoding="utf-8")  # --config counts as given
    assert run_cli([*resume, "--config", tmp_path / "lr.yaml"]) == 2
    assert "--lr (stored 0.001, given 0.01)" in capsys.readouterr().err
    assert run_cli([*resume, "--epochs", "1"]) == 2  # fewer epochs than stored: cannot shorten
    assert "a resumed run can only be extended" in capsys.readouterr().err
    assert run_cli(["finetune", "--data", tmp_path, "--out", trained, "--resume"]) == 2
    assert "--data (stored" in capsys.readouterr().err
    assert snapshot() == before  # nothing written: no config, log, checkpoint or model changed


def test_finetune_bad_inputs(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["finetune", "--data", tmp_path / "nope", "--out", tmp_path / "r1", *TINY]) == 2
    assert "dataset folder does not exist" in capsys.readouterr().err
    assert run_cli(["finetune", "--data", synth_dir, "--out", tmp_path / "r2", "--labeled", "99", *TINY]) == 2
    assert "asks for 99 fine-tuning images" in capsys.readouterr().err
    assert (
        run_cli(
            [
                "finetune",
                "--data",
                synth_dir,
                "--out",
                tmp_path / "r3",
                "--pretrained",
                tmp_path / "nothing",
                *TINY,
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_segment_files_folders_cine_and_bad_files(
    trained: Path, synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    img = np.asarray(read_mask(synth_dir / "masks" / "synth_0000.png"), np.uint8) * 200
    write_dicom(inputs / "cine.dcm", np.stack([img, img[::-1]]), spacing=(0.3, 0.3))
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "seg"
    code = run_cli(
        ["segment", inputs, synth_dir / "images" / "synth_0001.png", "--model", trained, "--out", out]
    )
    assert code == 1  # one bad file
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert masks == ["cine_f000.png", "cine_f001.png", "synth_0001.png"]
    assert (out / "overlays" / "synth_0001.png").exists()
    rows = {r["name"]: r for r in csv.DictReader(open(out / "vessels.csv"))}
    assert set(rows) == {"cine_f000", "cine_f001", "synth_0001"}
    assert rows["cine_f000"]["spacing_mm"] != "" and rows["synth_0001"]["spacing_mm"] == ""
    assert read_mask(out / "masks" / "cine_f000.png").shape == img.shape
    from PIL import Image

    with Image.open(out / "masks" / "synth_0001.png") as im:
        assert im.mode == "1"  # masks are 1-bit PNGs
    # Resume after an interruption: existing masks are kept, not recomputed (their mtime is unchanged).
    mtime = (out / "masks" / "synth_0001.png").stat().st_mtime_ns
    (out / "masks" / "cine_f001.png").unlink()
    from angioseg.predict import Segmenter

    prepared: list[int] = []  # frames preprocessed ahead of the network, on the prefetch thread
    real_prepare = Segmenter.prepare

    def counted(self: Segmenter, images: list[np.ndarray]) -> Any:
        if threading.current_thread() is not threading.main_thread():
            prepared.append(len(images))
        return real_prepare(self, images)

    monkeypatch.setattr(Segmenter, "prepare", counted)
    code = run_cli(
        [
            "segment",
            inputs,
            synth_dir / "images" / "synth_0001.png",
            "--model",
            trained,
            "--out",
            out,
            "--skip-existing",
        ]
    )
    assert code == 1 and (out / "masks" / "cine_f001.png").exists()
    assert (out / "masks" / "synth_0001.png").stat().st_mtime_ns == mtime
    assert prepared == [1]  # only the missing frame was preprocessed (before: every frame)
    assert len(list(csv.DictReader(open(out / "vessels.csv")))) == 3


def test_segment_says_where_the_mm_come_from(
    trained: Path, synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    img = np.asarray(read_mask(synth_dir / "masks" / "synth_0000.png"), np.uint8) * 200
    sid_sod = {"DistanceSourceToDetector": "1000", "DistanceSourceToPatient": "800"}
    write_dicom(inputs / "a_pixel.dcm", img, spacing=(0.3, 0.3))
    write_dicom(
        inputs / "b_factor.dcm", img, (0.4, 0.4), True, EstimatedRadiographicMagnificationFactor="1.6"
    )
    write_dicom(inputs / "c_sidsod.dcm", img, (0.4, 0.4), True, **sid_sod)
    write_dicom(inputs / "d_detector.dcm", np.stack([img, img]), (0.4, 0.4), True)  # a cine of 2 frames
    write_png(inputs / "e_png.png", img)
    out = tmp_path / "seg"
    assert run_cli(["segment", inputs, "--model", trained, "--out", out, "--no-overlay"]) == 0
    rows = {r["name"]: r for r in csv.DictReader(open(out / "vessels.csv"))}
    got = {n: (r["spacing_source"], r["magnification_source"], r["spacing_mm"]) for n, r in rows.items()}
    assert got == {
        "a_pixel": ("PixelSpacing", "", "0.3"),
        "b_factor": ("ImagerPixelSpacing/magnification", "EstimatedRadiographicMagnificationFactor", "0.25"),
        "c_sidsod": ("ImagerPixelSpacing/magnification", "SID/SOD", "0.32"),
        "d_detector_f000": ("ImagerPixelSpacing uncorrected", "", "0.4"),
        "d_detector_f001": ("ImagerPixelSpacing uncorrected", "", "0.4"),
        "e_png": ("none", "", ""),
    }
    if float(rows["c_sidsod"]["mean_diam_px"]) > 0:  # mm = px x the corrected spacing
        px, mm = float(rows["c_sidsod"]["mean_diam_px"]), float(rows["c_sidsod"]["mean_diam_mm"])
        assert mm == pytest.approx(0.32 * px, rel=1e-5)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(inputs / "d_detector.dcm") in warnings[0]  # one line per file


def test_segment_gives_every_frame_its_own_mask_name(tiny_model: Path, tmp_path: Path) -> None:
    """Three files img.png in folders x/a, y/a, z/a: masks img, a_img, a_img_2 and one vessels.csv row
    each (before, the third was named a_img too and overwrote the second's mask)."""
    for k, top in enumerate("xyz"):
        im = np.full((32, 32), 200, np.uint8)
        im[:, 4 + 8 * k : 8 + 8 * k] = 40  # a dark vertical band, in another place in each
        write_png(tmp_path / top / "a" / "img.png", im)
    out = tmp_path / "seg"
    files = [tmp_path / t / "a" / "img.png" for t in "xyz"]
    assert run_cli(["segment", *files, "--model", tiny_model, "--out", out, "--no-overlay"]) == 0
    assert sorted(p.stem for p in (out / "masks").iterdir()) == ["a_img", "a_img_2", "img"]
    rows = list(csv.DictReader(open(out / "vessels.csv")))
    assert [r["name"] for r in rows] == ["img", "a_img", "a_img_2"]
    assert [Path(r["source"]).parts[-3] for r in rows] == ["x", "y", "z"]


def test_segment_sliding_and_fast_modes_match_resize(tiny_model: Path, tmp_path: Path) -> None:
    """Dice against the truth of --mode sliding and --fast vs the resize path, on held-out frames 4x
    the training size (square: sliding is resize's scale) and on a wide frame (two side by side)."""
    pairs = held_out(3, 4 * IMAGE_SIZE, seed=4)
    truth = {f"sq{i}": m for i, (_, m) in enumerate(pairs[:2])}
    truth["wide"] = np.concatenate([pairs[1][1], pairs[2][1]], axis=1)
    inputs = tmp_path / "in"
    for i, (im, _) in enumerate(pairs[:2]):
        write_png(inputs / f"sq{i}.png", im)
    write_png(inputs / "wide.png", np.concatenate([pairs[1][0], pairs[2][0]], axis=1))
    scores: dict[str, dict[str, float]] = {}
    for mode, extra in (("resize", []), ("sliding", ["--mode", "sliding"]), ("fast", ["--fast"])):
        out = tmp_path / mode
        assert run_cli(["segment", inputs, "--model", tiny_model, "--out", out, "--no-overlay", *extra]) == 0
        scores[mode] = {n: dice(read_mask(out / "masks" / f"{n}.png"), t) for n, t in truth.items()}
    square = {m: float(np.mean([s["sq0"], s["sq1"]])) for m, s in scores.items()}
    assert square["resize"] > 0.5
    assert abs(square["sliding"] - square["resize"]) <= 0.02
    assert abs(square["fast"] - square["resize"]) <= 0.02
    assert abs(scores["fast"]["wide"] - scores["resize"]["wide"]) <= 0.02
    assert scores["sliding"]["wide"] > scores["resize"]["wide"] + 0.05  # resize squeezes the wide frame


def test_segment_rejects_foreign_checkpoint(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"x")
    (tmp_path / "m.json").write_text("{}")
    assert (
        run_cli(
            ["segment", synth_dir / "images", "--model", tmp_path / "m.safetensors", "--out", tmp_path / "o"]
        )
        == 2
    )
    assert "not an angioseg checkpoint" in capsys.readouterr().err


def test_evaluate_pairs_by_name(tmp_path: Path) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    m = np.zeros((40, 40), bool)
    m[10:15, 5:35] = True
    for i in range(3):
        write_png(truth / f"im{i}.png", m)
        write_png(pred / f"im{i}.png", np.roll(m, i, axis=0))
    write_png(pred / "extra.png", m)
    out = tmp_path / "ev"
    assert run_cli(["evaluate", "--pred", pred, "--truth", truth, "--out", out]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["name"] for r in rows] == ["im0", "im1", "im2"] and float(rows[0]["dice"]) == 1
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert s["n"] == 3 and (out / "bland_altman.png").stat().st_size > 1000


def test_evaluate_pairs_truth_suffixes_and_rejects_ambiguous_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # truths as a dataset stores them (im0_gt, im1_mask, im2), predictions as tools name them
    truth, pred = tmp_path / "data" / "masks", tmp_path / "pred"
    for i, (t_name, p_name) in enumerate([("im0_gt", "im0"), ("im1_mask", "im1_pred"), ("im2", "im2_seg")]):
        m = np.zeros((40, 40), bool)
        m[10 + 3 * i : 15 + 3 * i, 5:35] = True  # a 5 x 30 bar, a different one per image
        write_png(truth / f"{t_name}.png", m)
        write_png(pred / f"{p_name}.png", np.roll(m, i, axis=0))  # shifted by i rows
    out = tmp_path / "ev"
    assert run_cli(["evaluate", "--pred", pred, "--truth", tmp_path / "data", "--out", out]) == 0
    rows = {r["name"]: float(r["dice"]) for r in csv.DictReader(open(out / "metrics.csv"))}
    # overlap of two 5-row bars i rows apart: (5 - i) / 5
    assert rows == pytest.approx({"im0": 1.0, "im1": 0.8, "im2": 0.6})
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["n"] == 3 and summary["dice"] == pytest.approx(0.8)
    # a truth im0.png beside im0_gt.png: which one is meant? a clear error naming both
    write_png(truth / "im0.png", np.zeros((40, 40), bool))
    assert run_cli(["evaluate", "--pred", pred, "--truth", truth, "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"{truth}: two truth files pair with the name 'im0' (im0.png and im0_gt.png)" in err
    (truth / "im0.png").unlink()
    write_png(pred / "im1.png", np.zeros((40, 40), bool))  # beside im1_pred.png
    assert run_cli(["evaluate", "--pred", pred, "--truth", truth, "--out", out]) == 2
    assert (
        "two prediction files pair with the name 'im1' (im1.png and im1_pred.png)" in capsys.readouterr().err
    )


def test_synth_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["synth", "--out", tmp_path, "-n", "2", "--size", "64"]) == 0
    assert len(list((tmp_path / "images").iterdir())) == 2
    assert run_cli(["--help"]) == 0
    assert "finetune" in capsys.readouterr().out


def test_kfold_search_trains_a_fresh_model_per_fold(
    tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fold and setting starts from the pretrained weights, never from a previous fold's training."""
    from safetensors.torch import load_file

    from angioseg.data.preprocess import PreprocessConfig
    from angioseg.models.unet import UNet
    from angioseg.train import finetune, kfold
    from angioseg.train.checkpoint import save_run_model
    from angioseg.train.finetune import FinetuneConfig, run_finetune

    torch.manual_seed(123)
    save_run_model(
        tmp_path / "pre",
        UNet(in_channels=1, out_channels=2, width=4),
        PreprocessConfig().to_dict(),
        method="test",
    )
    pretrained = load_file(str(tmp_path / "pre" / "model.safetensors"))
    started: list[tuple[Any, dict[str, torch.Tensor]]] = []  # each fit's module and its weights at the start

    class Record(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            state = module.model.state_dict()
            started.append((module, {k: v.detach().cpu().clone() for k, v in state.items()}))

    real_make_trainer = finetune.make_trainer
    for where in (finetune, kfold):
        monkeypatch.setattr(
            where, "make_trainer", lambda *a, **k: real_make_trainer(*a, **{**k, "callbacks": [Record()]})
        )
    cfg = FinetuneConfig(
        data=str(synth_dir),
        out=str(tmp_path / "kf"),
        labeled=4,
        width=4,
        epochs=1,
        batch_size=2,
        min_steps_per_epoch=1,
        kfold=2,
        kfold_lrs=[1e-3, 1e-2],
        kfold_batch_sizes=[2],
        pretrained=str(tmp_path / "pre"),
        preprocess=PreprocessConfig(image_size=64),
    )
    res = run_finetune(cfg, progress=False, announce=None)
    kf = json.loads((tmp_path / "kf" / "kfold.json").read_text(encoding="utf-8"))
    assert kf["folds"] == 2 and len(kf["results"]) == 2 and all(len(r["folds"]) == 2 for r in kf["results"])
    assert kf["chosen"]["lr"] in (1e-3, 1e-2) and res.summary["n"] == len(res.splits["test"])
    # 2 settings x 2 folds, then the final model; in order (lr 1e-3: fold 0, 1), (lr 1e-2: fold 0, 1).
    assert len(started) == 5
    transferred = [k for k in pretrained if k.startswith(("encoder.", "decoder."))]
    assert transferred
    for _, initial in started:
        assert all(torch.equal(initial[k], pretrained[k]) for k in transferred)
    # The head is new, seeded by the fold: the same fold of the other setting starts identically.
    for (_, a), (_, b) in ((started[0], started[2]), (started[1], started[3])):
        assert all(torch.equal(a[k], b[k]) for k in a)
    for module, initial in started[:4]:  # each was trained (a reused model would not start as above)
        trained_now = module.model.state_dict()
        assert any(not torch.equal(initial[k], trained_now[k].cpu()) for k in transferred)


def test_same_seed_same_weights(tmp_path: Path, synth_dir: Path) -> None:
    """Runs are reproducible on CPU: the same seed gives bit-identical weights."""
    from safetensors.torch import load_file

    for name in ("a", "b"):
        args = [
            "finetune",
            "--data",
            synth_dir,
            "--out",
            tmp_path / name,
            "--labeled",
            "3",
            "--epochs",
            "2",
            *TINY,
        ]
        assert run_cli([*args, "--seed", "5"]) == 0
    wa, wb = (
        load_file(str(tmp_path / "a" / "model.safetensors")),
        load_file(str(tmp_path / "b" / "model.safetensors")),
    )
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_finetune_keeps_cine_frames_and_groups_in_one_split(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from angioseg.data.datasets import load_dataset
    from angioseg.train.finetune import FinetuneConfig, finetune_splits

    # 4 cine runs of 3 frames (masks named <file>_fNNN); groups.csv joins run0 and run1 (one patient)
    data = tmp_path / "cines"
    (data / "images").mkdir(parents=True)
    masks = [read_mask(synth_dir / "masks" / f"synth_{i:04d}.png") for i in range(12)]
    for c in range(4):
        frames = np.stack([np.asarray(m, np.uint8) * 200 for m in masks[3 * c : 3 * c + 3]])
        write_dicom(data / "images" / f"run{c}.dcm", frames)
        for f in range(3):
            write_png(data / "masks" / f"run{c}_f{f:03d}.png", masks[3 * c + f])
    groups = tmp_path / "groups.csv"
    groups.write_text("name,group\nrun0.dcm,patient1\nrun1,patient1\n", encoding="utf-8")
    cfg = FinetuneConfig(data=str(data), test=3, val=3, groups=str(groups))
    finetune_splits(cfg, load_dataset(data), tmp_path / "run")
    splits = json.loads((tmp_path / "run" / "splits.json").read_text(encoding="utf-8"))
    where = {n: k for k in ("test", "val", "finetune", "pretrain") for n in splits[k]}
    assert len(where) == 12
    for c in range(4):
        assert len({where[f"run{c}_f{f:03d}"] for f in range(3)}) == 1
    assert where["run0_f000"] == where["run1_f000"]
    assert splits["spec"]["groups"] == str(groups) and len(splits["groups"]) == 3
    # the CLI passes --groups on; a groups.csv naming an unknown file stops before training
    bad = tmp_path / "bad.csv"
    bad.write_text("name,group\nrun9.dcm,x\n", encoding="utf-8")
    args = ["finetune", "--data", data, "--out", tmp_path / "run2", "--groups", bad, *TINY]
    assert run_cli(args) == 2
    assert f"{bad}: 1 name(s) are not images or files of the dataset" in capsys.readouterr().err
