"""Kill -9 a training command at a random moment, resume it, and compare with an uninterrupted run.

For each command (finetune, pretrain, experiment, cta train, unsupervised fit) on tiny synthetic
data: one reference run; then ``--trials`` runs killed with SIGKILL (the whole process group) at a
uniformly drawn moment of the reference's duration, each followed by ``--resume``. Per trial it
prints: when it was killed, the epochs completed before the kill (CSV logs) and the epoch the
resume restarted from (``last.ckpt``), hence the epochs lost; every output file that could not be
read right after the kill (a half-written file); whether the resume finished; and the largest
difference of the final weights (``model.safetensors`` and the ``last.ckpt`` state dicts) from the reference.

    nice -n 15 env OMP_NUM_THREADS=1 PYTHONPATH=src python bench/kill_resume.py --trials 10
    ... --commands finetune --trials 2   # one command

``--kills K`` chains the trials: one run is killed, resumed, killed again ... up to K times (until
no epoch is left to train), then resumed to the end and compared with the reference. Each kill is
a trial (the same checks after each), at the cost of one start-up instead of a whole run. The
kills land in the training phase (at these tiny sizes start-up and export take most of a run, and
their length varies with the load): the run's ``last.ckpt`` writes are watched, and after a random
number of them (fewer than the reference made) the run is killed a random fraction of an epoch
later (the epoch time measured in the reference).
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
    unlabeled = (
        root / "unlabeled"
    )  # other images than the labeled ones (the test images must not be pretrained on)
    if not (unlabeled / "images").exists():
        synth = [*CLI, "synth", "--out", str(unlabeled), "-n", "8", "--size", "64", "--seed", "1"]
        subprocess.run(synth, check=True)
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
        "pretrain_data": str(unlabeled / "images"),
        "finetune": {
            "epochs": 3,
            "batch_size": 2,
            "min_steps_per_epoch": 8,
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
            "finetune --data {d} --out {r} --labeled 6 --image-size 96 --steps 16 --epochs 6 "
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
            "--samples-per-epoch 32 --min-size 5 --no-progress " + TINY.replace("{b}", "2")
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
        # (temporary files: Lightning's .tmp*, and angioseg's atomic writes' .NAME.XXXX.tmp.EXT, left
        # behind by a kill between their creation and the rename; nothing reads them)
        if not p.is_file() or p.name.startswith(".tmp") or (p.name.startswith(".") and ".tmp" in p.name):
            continue
        try:
            if p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".yaml":  # parsed, not constructed (hparams.yaml has python tags)
                yaml.compose(p.read_text(encoding="utf-8"))
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


def run_epochs(run: Path) -> dict[str, int]:
    """Epochs completed per training run under ``run`` (each ``last.ckpt``, by its folder)."""
    import torch

    out = {}
    for p in run.rglob("last.ckpt"):
        try:
            out[str(p.relative_to(run).parent)] = (
                int(torch.load(p, map_location="cpu", weights_only=False)["epoch"]) + 1
            )
        except Exception:
            out[str(p.relative_to(run).parent)] = 0
    return out


def mid_training(run: Path, ref: Path) -> bool:
    """Whether some run of ``run`` has a checkpoint with epochs still to train (the reference ran
    more): a resume then continues mid-training, where the random streams matter."""
    done, total = run_epochs(run), run_epochs(ref)
    return any(0 < e < total.get(k, 0) for k, e in done.items())


def checkpoint_epochs(run: Path) -> int:
    """Epochs completed by the newest ``last.ckpt`` under ``run`` (0 if none is readable)."""
    return max(run_epochs(run).values(), default=0)


def final_tensors(run: Path) -> dict[str, np.ndarray]:
    """Every tensor of the run's ``model.safetensors`` files and of its ``last.ckpt`` state dicts
    (``model.safetensors`` may hold the best epoch; ``last.ckpt`` holds the weights after the last one)."""
    import torch
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for p in sorted(run.rglob("model.safetensors")):
        out.update({f"{p.relative_to(run)}:{k}": v for k, v in load_file(str(p)).items()})
    for p in sorted(run.rglob("last.ckpt")):
        state = torch.load(p, map_location="cpu", weights_only=True)["state_dict"]
        out.update({f"{p.relative_to(run)}:{k}": v.detach().double().numpy() for k, v in state.items()})
    return out


def weights_difference(a: Path, b: Path) -> float | None:
    """Largest absolute difference between the final tensors of two runs (None: a file missing)."""
    ta, tb = final_tensors(a), final_tensors(b)
    if not ta or ta.keys() != tb.keys():
        return None
    diffs = [float(np.max(np.abs(ta[k].astype(np.float64) - tb[k]))) if ta[k].size else 0.0 for k in ta]
    return max(diffs)


class Writes:
    """Counts the writes of the ``last.ckpt`` files under a run folder (polled)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen = self._keys()
        self.times: list[float] = []

    def _keys(self) -> set[tuple[str, int]]:
        keys = set()
        for ck in list(self.out.rglob("last.ckpt")) if self.out.exists() else []:
            try:
                keys.add((str(ck), ck.stat().st_mtime_ns))
            except OSError:  # replaced while looking
                continue
        return keys

    def poll(self, t: float) -> int:
        new = self._keys() - self.seen
        self.seen |= new
        self.times += [t] * len(new)
        return len(self.times)


def timed_reference(argv: list[str], out: Path) -> tuple[int, float, int, float]:
    """Run the reference; (exit code, wall s, checkpoint writes, seconds per epoch)."""
    t = time.perf_counter()
    writes = Writes(out)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.DEVNULL, stderr=err, text=True)
        while proc.poll() is None:
            writes.poll(time.perf_counter() - t)
            time.sleep(0.05)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            err.seek(0)
            print(err.read()[-2000:], file=sys.stderr)
    ts = writes.times
    epoch = (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else 0.1 * wall
    return proc.returncode, wall, len(ts), epoch


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


def _started(run: Path) -> bool:
    """Whether a resume can continue ``run`` (its config was written before the kill)."""
    return (run / "config.yaml").exists() or (run / "experiment.yaml").exists()


def _logs(run: Path) -> set[Path]:
    """Lightning's ``hparams.yaml`` files: one per (re)start, written as its training begins."""
    return set(run.rglob("hparams.yaml")) if run.exists() else set()


def chain(
    name: str,
    data: Path,
    work: Path,
    ref: Path,
    ref_writes: tuple[int, float],
    rng: random.Random,
    kills: int,
) -> list[dict[str, object]]:
    """One run killed up to ``kills`` times (each kill followed by ``--resume``), then finished.

    ``ref_writes``: the reference's number of ``last.ckpt`` writes and seconds per epoch.
    """
    argv = COMMANDS[name].args(data, work / f"chain_{rng.random():.6f}")
    out = Path(argv[argv.index("--out") + 1])
    rows: list[dict[str, object]] = []
    total_writes, epoch_s = ref_writes
    done_writes = 0
    for _ in range(kills):
        if done_writes >= total_writes:
            break  # nothing left to train: a further kill would only hit a start-up or the export
        wait_for = rng.randint(0, total_writes - done_writes - 1)  # writes before the kill's epoch
        extra = rng.uniform(0.05, 0.95) * epoch_s
        resumed = _started(out)
        writes, logs = Writes(out), _logs(out)
        t = time.perf_counter()
        proc = subprocess.Popen(
            [*CLI, *argv, *(["--resume"] if resumed else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        due = None
        while proc.poll() is None:
            now = time.perf_counter() - t
            if due is None and (writes.poll(now) >= wait_for if wait_for else _logs(out) - logs):
                due = now + extra
            if due is not None and now >= due:
                break
            time.sleep(0.05)
        delay = time.perf_counter() - t
        if proc.poll() is not None:
            break  # the run finished before this kill
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_writes += writes.poll(delay)
        done, saved = logged_epochs(out), checkpoint_epochs(out)
        rows.append(
            {
                "command": name,
                "kill_at_s": round(delay, 1),
                "killed": True,
                "start": "resume" if resumed else "new",
                "epochs_done": done,
                "resumed_from": saved,
                "epochs_lost": max(done - saved, 0),
                "mid_training": mid_training(out, ref),
                "chain": out.name,
                "unreadable_after_kill": unreadable_outputs(out) if out.exists() else [],
            }
        )
    code, _ = run([*argv, "--resume"]) if _started(out) else run(argv)
    diff = weights_difference(ref, out) if code == 0 else None
    for row in rows:
        row.update(resume_exit=code, max_weight_diff=diff)
    shutil.rmtree(out, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS), metavar="CMD")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write every trial here")
    ap.add_argument("--kills", type=int, default=0, help="chain K kills per run (see above); 0: one per run")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        for name in args.commands:
            COMMANDS[name].prepare(data)
            ref = work / f"ref_{name.replace(' ', '_')}"
            code, ref_s, n_writes, epoch_s = timed_reference(COMMANDS[name].args(data, ref), ref)
            if code != 0:
                print(f"{name}: reference run failed (exit {code})")
                continue
            print(
                f"{name}: reference run {ref_s:.1f} s, {n_writes} checkpoint writes, {epoch_s:.1f} s per epoch",
                flush=True,
            )
            t0 = time.perf_counter()
            while sum(r["command"] == name for r in rows) < args.trials:
                new = chain(name, data, work, ref, (n_writes, epoch_s), rng, args.kills) if args.kills else []
                new = new or [trial(name, data, work, ref, ref_s, rng)]
                rows.extend(new)
                for row in new:
                    print(json.dumps(row), flush=True)
            print(f"{name}: trials took {time.perf_counter() - t0:.0f} s", flush=True)
    for name in args.commands:
        rs = [r for r in rows if r["command"] == name]
        if rs:
            lost = [int(r["epochs_lost"]) for r in rs]  # type: ignore[call-overload]
            diffs = [r["max_weight_diff"] for r in rs if r["max_weight_diff"] is not None]
            print(
                f"{name}: {len(rs)} trials, {sum(bool(r['killed']) for r in rs)} killed, resumed ok "
                f"{sum(r['resume_exit'] == 0 for r in rs)}, epochs lost max {max(lost)}, "
                f"half-written files {sum(len(r['unreadable_after_kill']) for r in rs)}, "  # type: ignore[arg-type]
                f"kills mid-training {sum(bool(r.get('mid_training')) for r in rs)}, "
                f"final weights compared {len({r.get('chain', id(r)) for r in rs})} times, "
                f"max weight diff vs reference {max(diffs) if diffs else 'n/a'} "
                f"(runs differing: {len({r['max_weight_diff'] for r in rs if r['max_weight_diff']})})"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
