"""Real-data check: fine-tuning on 5 labeled CIMAT angiograms reaches a useful Dice on held-out images.

Reads ../shared/data/xca_cimat40 and skips when it is absent. Scored against the masks as drawn
(no hole filling). The floors come from our own measurement of exactly this run with the fixed
pipeline (2026-11-30, width 16, 256 x 256, 20 epochs of 8 steps, seed 0: test Dice 0.568, clDice
0.597 on the 8 test images; docs/results/ground_truth.md), less a margin of about 0.07 for
run-to-run variation of bf16 arithmetic and thread counts. The test images are never used for model
selection (best epoch on the validation split).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, shared_data

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_five_labels_beat_threshold_on_held_out_images(tmp_path: Path) -> None:
    data = shared_data("xca_cimat40")
    run = tmp_path / "run"
    args = ["finetune", "--data", data, "--out", run, "--labeled", "5", "--width", "16", "--epochs", "20"]
    assert run_cli([*args, "--batch-size", "4", "--steps", "8", "--seed", "0"]) == 0
    splits = json.loads((run / "splits.json").read_text(encoding="utf-8"))
    assert len(splits["test"]) == 8 and len(splits["finetune"]) == 5
    summary = json.loads((run / "test" / "summary.json").read_text(encoding="utf-8"))
    assert summary["n"] == 8
    assert summary["dice"] > 0.50, summary
    assert summary["cldice"] > 0.52, summary
