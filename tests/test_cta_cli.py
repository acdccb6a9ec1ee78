"""End-to-end ``angioseg cta synth | train | segment | evaluate`` on tiny phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from angioseg.cta.volume_io import read_volume
from conftest import run_cli

TINY = ["--crop", "32", "--crop-depth", "16", "--width", "4", "--batch-size", "2", "--val", "1"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cta_data")
    assert (
        run_cli(["cta", "synth", "--out", out, "-n", "3", "--spacing", "1.0", "--shape", "16", "32", "32"])
        == 0
    )
    return out


def test_train_3d_with_channel_then_segment_and_evaluate(phantoms: Path, tmp_path: Path) -> None:
    run = tmp_path / "run3d"
    args = ["cta", "train", "--data", phantoms, "--out", run, "--dims", "3", "--centerline-channel", *TINY]
    assert run_cli([*args, "--max-steps", "3", "--min-size", "5", "--precision", "fp32"]) == 0
    meta = json.loads((run / "model.json").read_text(encoding="utf-8"))
    assert meta["model"]["in_channels"] == 2 and meta["cta"]["channel"] == "binary"
    assert json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["steps"] == 3
    assert run_cli(args) == 2  # the run folder exists: a clear error, not an overwrite

    seg = tmp_path / "seg"
    assert (
        run_cli(["cta", "segment", phantoms / "images", "--model", run, "--out", seg, "--keep-largest", "0"])
        == 0
    )
    masks = sorted(p.name for p in (seg / "masks").iterdir())
    assert masks == ["phantom_000.nrrd", "phantom_001.nrrd", "phantom_002.nrrd"]
    assert len(list((seg / "centerlines").iterdir())) == 3  # the first-pass prior, one per volume
    assert read_volume(seg / "masks" / masks[0]).shape == read_volume(phantoms / "images" / masks[0]).shape

    ev = tmp_path / "eval"
    assert run_cli(["cta", "evaluate", "--pred", seg, "--truth", phantoms, "--out", ev]) == 0
    summary = json.loads((ev / "summary.json").read_text(encoding="utf-8"))
    assert summary["n"] == 3
    assert 0.0 <= summary["dice"] <= 1.0 and summary["hd95"] >= 0.0
    assert (
        (ev / "metrics.csv")
        .read_text(encoding="utf-8")
        .startswith("name,dice,precision,recall,accuracy,hd95,msd,hd,cldice")
    )


def test_train_2d_grid_and_resume(phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run2d"
    args = ["cta", "train", "--data", phantoms, "--out", run, "--dims", "2", "--sampling", "grid", *TINY]
    capsys.readouterr()
    assert run_cli([*args, "--max-steps", "2", "--epochs", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "it/s" not in captured.out + captured.err  # no Lightning progress bar with --no-progress
    assert json.loads((run / "model.json").read_text(encoding="utf-8"))["model"]["spatial_dims"] == 2
    assert (run / "checkpoints" / "last.ckpt").exists()
    # --resume continues from last.ckpt with the run's own config.yaml (here: already finished at 2 steps)
    assert run_cli([*args, "--resume"]) == 0
    assert json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["steps"] == 2


def test_bad_dataset_is_a_one_line_error(tmp_path: Path) -> None:
    assert run_cli(["cta", "train", "--data", tmp_path, "--out", tmp_path / "r"]) == 2
    assert run_cli(["cta", "evaluate", "--pred", tmp_path, "--truth", tmp_path, "--out", tmp_path / "e"]) == 2
