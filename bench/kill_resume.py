"""Kill -9 a training command at a random moment, resume it, and compare with an uninterrupted run.

For each command (finetune, pretrain, experiment, cta train, unsupervised fit) on tiny synthetic
data: one reference run; then ``--trials`` runs killed with SIGKILL (the whole process group) at a
uniformly drawn moment of the reference's duration, each followed by ``--resume``. Per trial it
prints: when it was killed, the epochs completed before the kill (CSV logs) and the epoch the
resume restarted from (``last.ckpt``), hence the epochs lost; every output file that could not be
read right after the kill (a half-written file); whether the resume finished; and the largest
difference of the final weights (``model.safetensors``) from the reference.

    nice -n 15 env OMP_NUM_THREADS=1 PYTHONPATH=src python bench/kill_resume.py --trials 10
    ... --commands finetune --trials 2   # one command
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

CLI = [sys.executable, "-m", "angioseg"]


@dataclass
class Command:
    prepare: Callable[[Path], None]
    args: Callable[[Path, Path], list[str]]  # (data root, run folder) -> argv after "angioseg"


def _synth(root: Path) -> None:
    if not (root / "images").exists():
        subprocess.run([*CLI, "synth", "--out", str(root), "-n", "16", "--size", "64"], check=True)


def _cta_synth(root: Path) -> None:
    if not (root / "cta").exists():
        shape = ["--shape", "16", "32", "32"]
        subprocess.run(
            [*CLI, "cta", "synth", "--out", str(root / "cta"), "-n", "3", "--spacing", "1.0", *shape],
            check=True,
        )


def _experiment_yaml(root: Path) -> None:
    _synth(root)
    cfg = {
        "name": "kill",
        "methods": ["none", "mae"],
        "budgets": [4],
        "seeds": [0],
        "test": 0.25,
        "val": 2,
        "width": 4,
        "image_size": 32,
        "labeled_data": str(root),
        "pretrain_data": str(root / "images"),
        "finetune": {
            "epochs": 3,
            "batch_size": 2,
            "min_steps_per_epoch": 2,
            "patience": 10,
            "precision": "fp32",
        },
        "pretrain": {"epochs": 3, "batch_size": 4, "precision": "fp32"},
    }
    (root / "kill.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")


TINY = "--width 4 --batch-size {b} --precision fp32"


def _argv(template: str) -> Callable[[Path, Path], list[str]]:
    """``template`` with ``{d}`` (data root) and ``{r}`` (run folder), split before formatting so a
    path with spaces stays one argument."""
    return lambda d, r: [part.format(d=d, r=r) for part in template.split()]


COMMANDS = {
    "finetune": Command(
        _synth,
        _argv(
            "finetune --data {d} --out {r} --labeled 6 --image-size 64 --steps 4 --epochs 6 "
            + TINY.replace("{b}", "2")
        ),
    ),
    "pretrain": Command(
        _synth,
        _argv(
            "pretrain --method mae --data {d}/images --out {r} --epochs 6 --image-size 64 --devices 1 "
            + TINY.replace("{b}", "4")
        ),
    ),
    "experiment": Command(_experiment_yaml, _argv("experiment {d}/kill.yaml --out {r} --no-progress")),
    "cta train": Command(
        _cta_synth,
        _argv(
            "cta train --data {d}/cta --out {r} --dims 3 --crop 16 --crop-depth 8 --epochs 6 "
            "--samples-per-epoch 8 --min-size 5 --no-progress " + TINY.replace("{b}", "2")
        ),
    ),
    "unsupervised fit": Command(
        _synth,
        _argv(
            "unsupervised fit --data {d}/images --out {r} --epochs 6 --patience 10 --batch-size 4 "
            "--crop 32 --limit 8 --no-progress --precision fp32"
        ),
    ),
}


def unreadable_outputs(run: Path) -> list[str]:
    """Output files that a reader cannot open (a half-written file shows up here)."""
    import torch
    from safetensors.numpy import load_file

    bad = []
    for p in sorted(run.rglob("*")):
        if not p.is_file() or p.name.startswith(".tmp"):
            continue
        try:
            if p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".yaml":
                yaml.safe_load(p.read_text(encoding="utf-8"))
            elif p.suffix == ".csv":
                list(csv.reader(p.open(encoding="utf-8")))
            elif p.suffix == ".safetensors":
                load_file(str(p))
            elif p.suffix == ".ckpt":
                torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:
            bad.append(f"{p.relative_to(run)} ({exc.__class__.__name__})")
    return bad


def logged_epochs(run: Path) -> int:
    """Epochs completed according to the CSV logs of every (re)start (max epoch + 1)."""
    best = -1
    for p in run.rglob("metrics.csv"):
        if "logs" not in p.parts:
            continue
        try:
            for row in csv.DictReader(p.open(encoding="utf-8")):
                if row.get("epoch", "").strip():
                    best = max(best, int(float(row["epoch"])))
        except Exception:  # a log cut by the kill mid-line
            continue
    return best + 1


def checkpoint_epochs(run: Path) -> int:
    """Epochs completed by the newest ``last.ckpt`` under ``run`` (0 if none is readable)."""
    import torch

    best = 0
    for p in run.rglob("last.ckpt"):
        try:
            best = max(best, int(torch.load(p, map_location="cpu", weights_only=False)["epoch"]) + 1)
        except Exception:
            pass
    return best


def weights_difference(a: Path, b: Path) -> float | None:
    """Largest absolute difference over all tensors of every ``*.safetensors`` (None: missing)."""
    from safetensors.numpy import load_file

    diffs = []
    for pa in sorted(a.rglob("model.safetensors")):
        pb = b / pa.relative_to(a)
        if not pb.exists():
            return None
        ta, tb = load_file(str(pa)), load_file(str(pb))
        diffs += [float(np.max(np.abs(ta[k].astype(np.float64) - tb[k]))) if ta[k].size else 0.0 for k in ta]
    return max(diffs) if diffs else None


def run(argv: list[str], timeout: float = 3600) -> tuple[int, float]:
    t = time.perf_counter()
    proc = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return proc.returncode, time.perf_counter() - t


def trial(
    name: str, data: Path, work: Path, ref: Path, ref_s: float, rng: random.Random
) -> dict[str, object]:
    cmd = COMMANDS[name]
    out = work / f"trial_{rng.random():.6f}"
    argv = cmd.args(data, out)
    delay = rng.uniform(0.1, 0.95) * ref_s
    proc = subprocess.Popen(
        [*CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = True
    bad = unreadable_outputs(out) if out.exists() else []
    done, saved = logged_epochs(out), checkpoint_epochs(out)
    code, _ = run([*argv, "--resume"]) if out.exists() else run(argv)
    diff = weights_difference(ref, out) if code == 0 else None
    row = {
        "command": name,
        "kill_at_s": round(delay, 1),
        "killed": killed,
        "epochs_done": done,
        "resumed_from": saved,
        "epochs_lost": max(done - saved, 0),
        "unreadable_after_kill": bad,
        "resume_exit": code,
        "max_weight_diff": diff,
    }
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS), metavar="CMD")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write every trial here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        for name in args.commands:
            COMMANDS[name].prepare(data)
            ref = work / f"ref_{name.replace(' ', '_')}"
            code, ref_s = run(COMMANDS[name].args(data, ref))
            if code != 0:
                print(f"{name}: reference run failed (exit {code})")
                continue
            print(f"{name}: reference run {ref_s:.1f} s", flush=True)
            for _ in range(args.trials):
                row = trial(name, data, work, ref, ref_s, rng)
                rows.append(row)
                print(json.dumps(row), flush=True)
    for name in args.commands:
        rs = [r for r in rows if r["command"] == name]
        if rs:
            lost = [int(r["epochs_lost"]) for r in rs]  # type: ignore[call-overload]
            diffs = [r["max_weight_diff"] for r in rs if r["max_weight_diff"] is not None]
            print(
                f"{name}: {len(rs)} trials, {sum(bool(r['killed']) for r in rs)} killed, resumed ok "
                f"{sum(r['resume_exit'] == 0 for r in rs)}, epochs lost max {max(lost)}, "
                f"half-written files {sum(len(r['unreadable_after_kill']) for r in rs)}, "  # type: ignore[arg-type]
                f"max weight diff vs reference {max(diffs) if diffs else 'n/a'}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
