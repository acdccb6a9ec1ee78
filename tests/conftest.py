"""Shared fixtures: tiny synthetic datasets, the real-data location, a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path of a folder of ``../shared/data``; skips the test when it is absent (a user's clone)."""
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic 96 x 96 angiograms with masks (session-wide, read-only)."""
    from angioseg.data.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, 24, size=96, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Checkpoint folder of a tiny UNet that really segments synthetic angiograms (tests/tiny_model.py)."""
    from tests.tiny_model import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))


def run_cli(args: list[str]) -> int:
    """Run the ``angioseg`` CLI in-process and return its exit code."""
    from angioseg.cli import main

    return main([str(a) for a in args])
