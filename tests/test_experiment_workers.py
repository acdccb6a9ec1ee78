"""Experiment cells as independent jobs: exclusive claims in a shared study folder."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
from pathlib import Path

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
