"""``angioseg pretrain`` -> ``angioseg finetune --pretrained`` round trip, reconstructions, resume, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from angioseg.cli import main
from angioseg.models.unet import UNet


def run_cli(args: list[object]) -> int:
    """The CLI in-process (as ``tests/conftest.py::run_cli``), returning the exit code."""
    return main([str(a) for a in args])


TINY = ["--width", "4", "--image-size", "64", "--batch-size", "4", "--precision", "fp32"]


def test_pretrain_finetune_round_trip(synth_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "pre"
    args = ["pretrain", "--method", "cmunet", "--data", synth_dir, "--out", run, "--epochs", "1"]
    assert run_cli([*args, *TINY, "--limit", "4", "--show-reconstructions", "2"]) == 0
    meta = json.loads((run / "model.json").read_text(encoding="utf-8"))
    assert meta["task"] == "pretrain" and meta["method"] == "cmunet" and meta["steps"] == 1
    assert (run / "reconstructions.png").stat().st_size > 1000
    assert json.loads((run / "summary.json").read_text(encoding="utf-8"))["images"] == 4

    ft = tmp_path / "ft"
    ft_args = ["finetune", "--data", synth_dir, "--out", ft, "--pretrained", run, "--labeled", "5"]
    assert (
        run_cli([*ft_args, "--width", "4", "--image-size", "64", "--epochs", "1", "--precision", "fp32"]) == 0
    )
    unet = UNet(width=4).state_dict()
    n = sum(k.startswith(("encoder.", "decoder.")) for k in unet)
    named = dict(UNet(width=4).named_parameters())
    params = sum(p.numel() for name, p in named.items() if not name.startswith("head."))
    total = sum(p.numel() for p in named.values())  # the head (4 x 2 weights + 2 biases) is not loaded
    transfer = json.loads((ft / "model.json").read_text(encoding="utf-8"))["transfer"]
    assert transfer.startswith(f"loaded {n} tensors of the encoder+decoder from the 'cmunet'")
    assert f"{params:,} of {total:,} parameters" in transfer and total - params == 10

    png = tmp_path / "fig.png"
    assert run_cli(["reconstructions", run, "--data", synth_dir, "--out", png, "-n", "2"]) == 0
    assert png.stat().st_size > 1000


def test_resume_continues_from_the_last_checkpoint(synth_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "pre"
    args = ["pretrain", "--method", "spark", "--data", synth_dir, "--out", run, *TINY, "--limit", "4"]
    assert run_cli([*args, "--epochs", "1"]) == 0
    assert run_cli([*args, "--epochs", "1"]) == 2  # the run exists: refuse to overwrite
    assert run_cli(["pretrain", "--out", run, "--resume", "--epochs", "2"]) == 0
    assert json.loads((run / "model.json").read_text(encoding="utf-8"))["steps"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["epochs"] == 2
    assert run_cli(["pretrain", "--out", tmp_path / "none", "--resume"]) == 2  # nothing to resume


def test_contrastive_run_skips_bad_files_and_has_no_decoder(synth_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "flat"
    data.mkdir()
    for p in sorted((synth_dir / "images").iterdir())[:5]:
        shutil.copy(p, data / p.name)
    (data / "broken.png").write_bytes(b"not a png")
    run = tmp_path / "moco"
    assert (
        run_cli(["pretrain", "--method", "moco", "--data", data, "--out", run, "--epochs", "1", *TINY]) == 0
    )
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["images"] == 5 and len(summary["failed"]) == 1 and "broken.png" in summary["failed"][0][0]
    assert (
        json.loads((run / "method.json").read_text(encoding="utf-8"))["options"]["queue_size"] == 65536
    )  # MoCo v2's queue, not clamped to the data
    ft = ["finetune", "--data", synth_dir, "--out", tmp_path / "ft", "--pretrained", run, "--width", "4"]
    assert run_cli([*ft, "--transfer", "encoder+decoder"]) == 2
    assert run_cli(["reconstructions", run, "--data", data, "--out", tmp_path / "x.png"]) == 2


@pytest.mark.parametrize(
    "extra",
    [
        ["--method", "simclr"],
        ["--method", "mae", "-o", "mask_ratio"],
        ["--method", "mae", "-o", "bogus=1"],
        ["--method", "mae", "-o", "loss_on=everything"],
        ["--method", "mae", "--image-size", "72"],
    ],
)
def test_bad_options_exit_2(synth_dir: Path, tmp_path: Path, extra: list[str]) -> None:
    args = ["pretrain", "--data", synth_dir, "--out", tmp_path / "r", "--epochs", "1", "--width", "4"]
    assert run_cli([*args, *extra]) == 2


def test_missing_data_folder_exit_2(tmp_path: Path) -> None:
    assert run_cli(["pretrain", "--method", "mae", "--data", tmp_path / "nope", "--out", tmp_path / "r"]) == 2
