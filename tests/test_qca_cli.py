"""``angioseg qca`` end to end on a phantom: outputs, numbers, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from angioseg.data.io import write_png
from angioseg.qca.phantom import QCAPhantomConfig, qca_phantom
from tests.conftest import run_cli
from tests.qca_fixtures import write_phantom_cine


def test_qca_cli_two_points_and_branches(tmp_path: Path) -> None:
    ph = qca_phantom(1, QCAPhantomConfig(stenosis=0.7))
    write_png(tmp_path / "img.png", ph.image)
    write_png(tmp_path / "img_mask.png", ph.mask)
    p, d = ph.proximal, ph.distal
    args = ["qca", tmp_path / "img.png", "--mask", tmp_path / "img_mask.png", "--spacing", "0.2"]
    assert (
        run_cli(
            [*args, "--out", tmp_path / "o", "--proximal", f"{p[0]},{p[1]}", "--distal", f"{d[0]},{d[1]}"]
        )
        == 0
    )
    res = json.loads((tmp_path / "o" / "img.json").read_text())["results"][0]
    assert abs(res["ds_percent"] - 70) <= 5 and res["calibration"]["method"] == "manual"
    rows = list(csv.DictReader(open(tmp_path / "o" / "img_profile.csv")))
    arc = np.array([float(r["arc_mm"]) for r in rows])
    assert np.allclose(np.diff(arc), 0.1, atol=1e-3)  # 0.5 px steps at 0.2 mm/px
    assert (tmp_path / "o" / "img.png").stat().st_size > 10_000
    assert "data:image/png;base64" in (tmp_path / "o" / "img.html").read_text()
    # without points: every branch, the programmed stenosis is the tightest
    assert run_cli([*args, "--out", tmp_path / "b"]) == 0
    branches = json.loads((tmp_path / "b" / "img.json").read_text())["results"]
    assert abs(branches[0]["ds_percent"] - 70) <= 8 and len(branches) > 1


def test_qca_cli_cine_frame_and_errors(tmp_path: Path) -> None:
    ph = write_phantom_cine(tmp_path)
    p = f"{ph.proximal[0]},{ph.proximal[1]}"
    d = f"{ph.distal[0]},{ph.distal[1]}"
    base = [
        "qca",
        tmp_path / "cine.dcm",
        "--mask",
        tmp_path / "cine_mask.npy",
        "--proximal",
        p,
        "--distal",
        d,
    ]
    assert run_cli([*base, "--frame", "0", "--out", tmp_path / "o"]) == 0
    res = json.loads((tmp_path / "o" / "cine.json").read_text())["results"][0]
    assert res["frame"] == 0 and res["calibration"]["method"] == "PixelSpacing"
    assert abs(res["ds_percent"] - 60) <= 5
    assert run_cli([*base, "--frame", "7", "--out", tmp_path / "x"]) == 2
    assert run_cli([*base, "--proximal", "oops", "--out", tmp_path / "x"]) == 2
    assert run_cli(["qca", tmp_path / "cine.dcm", "--out", tmp_path / "x"]) == 2  # neither --mask nor --model
    assert not (tmp_path / "x").exists()


def test_qca_cli_one_mask_for_a_cine_needs_its_frame(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """One mask for a multi-frame cine says nothing about which frame to read: every frame would
    tie on mask area and 'auto' would silently take frame 0 under a rule that was not applied."""
    write_phantom_cine(tmp_path)
    one = np.load(tmp_path / "cine_mask.npy")[2]
    write_png(tmp_path / "one_mask.png", one.astype(np.uint8) * 255)
    base = ["qca", tmp_path / "cine.dcm", "--mask", tmp_path / "one_mask.png", "--out"]
    assert run_cli([*base, tmp_path / "auto"]) == 2
    assert "--frame" in capsys.readouterr().err
    assert run_cli([*base, tmp_path / "f2", "--frame", "2"]) == 0
