"""Experiment cells as independent jobs: exclusive claims in a shared study folder."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
from pathlib import Path

import pytest
import yaml

from angioseg.experiment.claims import CLAIM, claim, owner, release


def _grab(root: str, n: int, queue: mp.Queue, barrier: object) -> None:  # type: ignore[type-arg]
    # Start together and stay alive until every worker is done: a finished worker's claims would
    # otherwise be a dead process's, which a late worker rightly takes over (a crashed cell).
    barrier.wait()  # type: ignore[attr-defined]
    won = [i for i in range(n) if claim(Path(root) / f"cell_{i:02d}")]
    queue.put((os.getpid(), won))
    barrier.wait()  # type: ignore[attr-defined]


def test_racing_workers_claim_each_cell_exactly_once(tmp_path: Path) -> None:
    n, workers = 40, 4
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_grab, args=(str(tmp_path), n, queue, barrier)) for _ in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    won = sorted(i for _, cells in results for i in cells)
    assert won == list(range(n))  # every cell once: none twice, none lost
    for pid, cells in results:
        for i in cells:
            assert owner(tmp_path / f"cell_{i:02d}") == {"host": socket.gethostname(), "pid": pid}


def test_dead_workers_claim_is_taken_over_a_live_or_remote_one_is_not(tmp_path: Path) -> None:
    dead = mp.get_context("fork").Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    host = socket.gethostname()
    for name, info in {
        "dead": {"host": host, "pid": dead.pid},
        "live": {"host": host, "pid": os.getppid()},
        "remote": {"host": host + "-other", "pid": 1},
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / CLAIM).write_text(json.dumps(info), encoding="utf-8")
    assert claim(tmp_path / "dead") and owner(tmp_path / "dead") == {"host": host, "pid": os.getpid()}
    assert not claim(tmp_path / "live") and not claim(tmp_path / "remote")
    release(tmp_path / "live")  # not ours: left alone
    assert (tmp_path / "live" / CLAIM).exists()
    assert claim(tmp_path / "dead")  # ours already
    release(tmp_path / "dead")
    assert not (tmp_path / "dead" / CLAIM).exists()


def test_worker_skips_cells_claimed_by_another_worker(synth_dir: Path, tmp_path: Path) -> None:
    from angioseg.experiment.config import load_experiment, resolve_paths
    from angioseg.experiment.runner import plan_study, run_experiment

    cfg_path = tmp_path / "w.yaml"
    spec = {
        "name": "w",
        "methods": ["none"],
        "budgets": [2],
        "seeds": [0, 1],
        "test": 0.25,
        "val": 2,
        "width": 4,
        "image_size": 32,
        "labeled_data": str(synth_dir),
        "pretrain_data": str(synth_dir / "images"),
        "finetune": {"epochs": 1, "batch_size": 2, "min_steps_per_epoch": 1, "precision": "fp32"},
    }
    cfg_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    cfg = resolve_paths(load_experiment(cfg_path))
    out = tmp_path / "study"
    cells = plan_study(cfg, out).cells
    assert len(cells) == 2
    for c in cells:  # another live worker on this host holds every cell
        c.run_dir.mkdir(parents=True)
        info = {"host": socket.gethostname(), "pid": os.getppid()}
        (c.run_dir / CLAIM).write_text(json.dumps(info), encoding="utf-8")
    res = run_experiment(cfg, out, announce=None, report=False, worker=True)
    assert (res.ran, res.elsewhere) == (0, 2)
    assert not any((c.run_dir / "cell.json").exists() for c in cells)
    # A second worker joins the existing study (no "already exists" error) and skips the same cells.
    res = run_experiment(cfg, out, announce=None, report=False, worker=True)
    assert (res.ran, res.elsewhere) == (0, 2)


def test_worker_does_not_rerun_a_cell_another_worker_finished_just_before_the_claim(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers walk the cells in the same order: the one behind finds a cell unfinished, the
    other finishes and releases it, then the claim succeeds; the cell must not be trained again."""
    from angioseg.experiment import runner
    from angioseg.experiment.config import load_experiment, resolve_paths

    cfg_path = tmp_path / "w.yaml"
    spec = {
        "name": "w", "methods": ["none"], "budgets": [2], "seeds": [0], "test": 0.25, "val": 2,
        "width": 4, "image_size": 32, "labeled_data": str(synth_dir),
        "pretrain_data": str(synth_dir / "images"),
        "finetune": {"epochs": 1, "batch_size": 2, "min_steps_per_epoch": 1, "precision": "fp32"},
    }  # fmt: skip
    cfg_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    cfg = resolve_paths(load_experiment(cfg_path))
    out = tmp_path / "study"
    (cell,) = runner.plan_study(cfg, out).cells
    real_claim = runner.claim

    def claim_after_the_other_worker_finished(run_dir: Path) -> bool:
        if run_dir == cell.run_dir:  # the other worker wrote cell.json and released its claim
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "cell.json").write_text(json.dumps({"status": "ok"}), encoding="utf-8")
        return real_claim(run_dir)

    trained: list[object] = []
    monkeypatch.setattr(runner, "claim", claim_after_the_other_worker_finished)
    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: trained.append(a) or {"status": "ok"})
    res = runner.run_experiment(cfg, out, announce=None, report=False, worker=True)
    assert trained == [] and (res.ran, res.skipped) == (0, 1)
    assert not (cell.run_dir / CLAIM).exists()  # released again


def test_clearing_a_failed_cells_leftovers_keeps_the_workers_claim(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing the whole cell folder (with its claim) let a second worker train the same cell."""
    from angioseg.experiment import runner
    from angioseg.experiment.config import load_experiment, resolve_paths

    cfg_path = tmp_path / "w.yaml"
    spec = {
        "name": "w", "methods": ["none"], "budgets": [2], "seeds": [0], "test": 0.25, "val": 2,
        "width": 4, "image_size": 32, "labeled_data": str(synth_dir),
        "pretrain_data": str(synth_dir / "images"), "finetune": {"epochs": 1, "precision": "fp32"},
    }  # fmt: skip
    cfg_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    cfg = resolve_paths(load_experiment(cfg_path))
    (cell,) = runner.plan_study(cfg, tmp_path / "study").cells
    assert claim(cell.run_dir)
    (cell.run_dir / "config.yaml").write_text("old: run\n", encoding="utf-8")  # a failed cell's
    (cell.run_dir / "cell.json").write_text(json.dumps({"status": "failed"}), encoding="utf-8")
    (cell.run_dir / "logs" / "version_0").mkdir(parents=True)
    seen: dict[str, object] = {}

    def fake_finetune(fcfg: object, **kwargs: object) -> object:
        seen["files"] = sorted(p.name for p in cell.run_dir.iterdir())
        seen["owner"] = owner(cell.run_dir)
        raise RuntimeError("stop here")

    monkeypatch.setattr(runner, "run_finetune", fake_finetune)
    with pytest.raises(RuntimeError, match="stop here"):
        runner.run_cell(cfg, cell, None, False, None)
    assert CLAIM in seen["files"] and "config.yaml" not in seen["files"] and "logs" not in seen["files"]  # type: ignore[operator]
    assert seen["owner"] == {"host": socket.gethostname(), "pid": os.getpid()}
