"""``kill -9`` during training, then ``--resume``: one real trial per training command (tiny sizes).

Each command of ``bench/kill_resume.py`` (finetune, pretrain, experiment, cta train, unsupervised
fit) runs as a subprocess in its own process group, is killed with SIGKILL as soon as its first
``last.ckpt`` has been written (mid-training: every run trains several epochs after that), and is
resumed. Checked: every output file is readable right after the kill (nothing half-written), the
kill lost at most the epoch in progress, and the resume finishes with all epochs trained. That the
resumed weights equal an uninterrupted run's is checked in-process by
``tests/test_resume_identical.py`` and with random kill moments by the bench.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bench.kill_resume import CLI, COMMANDS, Writes, checkpoint_epochs, logged_epochs, unreadable_outputs

EPOCHS = 6  # every command of the bench trains 6 epochs (experiment: 3 per run)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bench's tiny data, made once for all five commands."""
    return tmp_path_factory.mktemp("kill_data")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_run_killed_mid_training_resumes_and_loses_at_most_one_epoch(
    name: str, data: Path, tmp_path: Path
) -> None:
    cmd = COMMANDS[name]
    cmd.prepare(data)
    out = tmp_path / "run"
    argv = cmd.args(data, out)
    writes = Writes(out)
    proc = subprocess.Popen(
        [*CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and writes.poll(0.0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"{name} ended before its first checkpoint: {proc.stderr.read()[-2000:]!r}"  # type: ignore[union-attr]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert unreadable_outputs(out) == []  # no output half-written
    saved = checkpoint_epochs(out)
    assert 1 <= saved < (3 if name == "experiment" else EPOCHS)  # killed mid-training
    assert logged_epochs(out) - saved <= 1  # at most the epoch in progress is lost

    done = subprocess.run([*CLI, *argv, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert unreadable_outputs(out) == []
    assert checkpoint_epochs(out) == (3 if name == "experiment" else EPOCHS)
    assert list(out.rglob("model.safetensors"))
