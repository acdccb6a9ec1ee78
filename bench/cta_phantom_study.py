"""The phantom study of ``docs/results/cta_phantom.md``: centerline crops vs grid, +/- channel, 2D vs 3D.

Every step is an ``angioseg cta`` command (printed and timed), so any row can be rerun by hand:

1. ``cta synth`` 10 training/validation phantoms and 3 test phantoms (indices 200-202) that follow
   the real orCaScore centerline (``../shared/data/ct_centerline``), 0.8 mm voxels;
2. for dims 2 and 3, sampling dbscan and grid, channel none and binary: ``cta train`` with the same
   optimiser-step budget per dims, then ``cta segment`` the test phantoms (the channel models take
   their centerline from their own first pass) and ``cta evaluate``;
3. channel models are also run with the ground-truth test centerlines (``--centerlines``), labelled
   "oracle": the seed's test-time setting, shown only to measure how much it flatters.

Resumable: a step whose output exists is skipped. Run it alone on the machine::

    flock /tmp/angioseg-heavy.lock .venv/bin/python bench/cta_phantom_study.py --out cta_study

Writes ``OUT/results.json`` and ``OUT/results.md`` (a table with wall times). ``--report-only`` runs
nothing and tabulates what an interrupted study has finished (listing the steps not run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REAL_CENTERLINE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "ct_centerline"
    / "orcascore_case_centerlines.npy"
)
ANGIOSEG = str(Path(sys.executable).with_name("angioseg"))
METRICS = ("dice", "precision", "recall", "hd95", "msd", "cldice")
CENTERLINE_LABEL = {"predicted": "own 1st pass", "oracle": "ORACLE: ground truth"}


def run(cmd: list[str], log: Path, times: dict[str, float], key: str) -> None:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)
    times[key] = time.perf_counter() - t0
    print(f"  {times[key]:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("cta_study"))
    ap.add_argument("--centerline", type=Path, default=REAL_CENTERLINE)
    ap.add_argument("--n-train", type=int, default=10)
    ap.add_argument("--n-test", type=int, default=3)
    ap.add_argument("--spacing", type=float, default=0.8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--steps2d", type=int, default=600)
    ap.add_argument("--steps3d", type=int, default=300)
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing; tabulate the configurations already evaluated",
    )
    a = ap.parse_args()
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    times_path = out / "times.json"
    times: dict[str, float] = (
        json.loads(times_path.read_text(encoding="utf-8")) if times_path.exists() else {}
    )

    missing: list[str] = []

    def step(key: str, done: Path, cmd: list[str]) -> None:
        if done.exists():
            return
        if a.report_only:
            missing.append(key)
            return
        run(cmd, log, times, key)
        times_path.write_text(json.dumps(times, indent=2))

    data, test = out / "data", out / "test"
    synth = [ANGIOSEG, "cta", "synth", "--centerline", str(a.centerline), "--spacing", str(a.spacing)]
    step(
        "synth_train",
        data / "images" / f"phantom_{a.n_train - 1:03d}.nrrd",
        [*synth, "--out", str(data), "-n", str(a.n_train)],
    )
    step(
        "synth_test",
        test / "images" / f"phantom_{200 + a.n_test - 1:03d}.nrrd",
        [*synth, "--out", str(test), "-n", str(a.n_test), "--start", "200"],
    )
    # Seed sizes are in voxels of ~0.4 mm CT; at 0.8 mm every in-plane length is halved so that crops
    # cover the same anatomy (128 px -> 64 px = 51 mm; eps 5 -> 2.5; merge 50/64 -> 25/32).
    per_dims = {
        2: f"--crop 64 --eps 2.5 --closeness 25 --batch-size 8 --max-steps {a.steps2d} --samples-per-epoch 800",
        3: f"--crop 64 --crop-depth 32 --eps 2.5 --closeness 32 --batch-size 2 --max-steps {a.steps3d} "
        "--samples-per-epoch 60",
    }
    rows = []
    for dims in a.dims:
        for sampling in ("dbscan", "grid"):
            for channel in (False, True):
                name = f"{dims}d_{sampling}{'_channel' if channel else ''}"
                run_dir = out / "runs" / name
                cmd = [
                    ANGIOSEG,
                    "cta",
                    "train",
                    "--data",
                    str(data),
                    "--out",
                    str(run_dir),
                    "--dims",
                    str(dims),
                    "--sampling",
                    sampling,
                    "--width",
                    str(a.width),
                    "--epochs",
                    "1000",
                    *per_dims[dims].split(),
                ]
                if channel:
                    cmd.append("--centerline-channel")
                step(f"train_{name}", run_dir / "model.safetensors", cmd)
                variants = [("predicted", [])]
                if channel:
                    variants.append(("oracle", ["--centerlines", str(test / "centerlines")]))
                for variant, extra in variants:
                    seg_dir = out / "seg" / f"{name}_{variant}"
                    ev_dir = out / "eval" / f"{name}_{variant}"
                    step(
                        f"segment_{name}_{variant}",
                        seg_dir / "segment.csv",
                        [
                            ANGIOSEG,
                            "cta",
                            "segment",
                            str(test / "images"),
                            "--model",
                            str(run_dir),
                            "--out",
                            str(seg_dir),
                            *extra,
                        ],
                    )
                    step(
                        f"evaluate_{name}_{variant}",
                        ev_dir / "summary.json",
                        [
                            ANGIOSEG,
                            "cta",
                            "evaluate",
                            "--pred",
                            str(seg_dir),
                            "--truth",
                            str(test),
                            "--out",
                            str(ev_dir),
                        ],
                    )
                    if not (ev_dir / "summary.json").exists():  # --report-only on an unfinished study
                        continue
                    summary = json.loads((ev_dir / "summary.json").read_text(encoding="utf-8"))
                    train_summary = json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8"))
                    patches = json.loads((run_dir / "patches.json").read_text(encoding="utf-8"))
                    rows.append(
                        {
                            "config": name,
                            "dims": dims,
                            "sampling": sampling,
                            "channel": channel,
                            "centerline": variant,
                            "train_patches": sum(v for k, v in patches.items() if k.startswith("train/")),
                            "best_epoch": train_summary["best_epoch"],
                            "steps": train_summary["steps"],
                            "train_s": times.get(f"train_{name}"),
                            "fit_s": train_summary["train_seconds"],
                            "segment_s": times.get(f"segment_{name}_{variant}"),
                            **{k: summary[k] for k in METRICS},
                            **{f"{k}_std": summary[f"{k}_std"] for k in METRICS},
                            "n_test": summary["n"],
                        }
                    )
    machine = {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    (out / "results.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "args": {k: str(v) for k, v in vars(a).items()},
                "rows": rows,
                "times": times,
            },
            indent=2,
        )
    )
    lines = [
        "| config | centerline at test | train patches | steps | best epoch | train s (fit) | segment s (test set) | "
        + " | ".join(METRICS)
        + " |",
        "|" + "---|" * (6 + len(METRICS) + 1),
    ]
    for r in rows:
        cells = [f"{r[k]:.3f} ± {r[k + '_std']:.3f}" for k in METRICS]
        lines.append(
            f"| {r['config']} | {CENTERLINE_LABEL[r['centerline']] if r['channel'] else '-'} | "
            f"{r['train_patches']} | {r['steps']} | {r['best_epoch']} | {r['train_s'] or 0:.0f} ({r['fit_s']:.0f}) | "
            f"{r['segment_s'] or 0:.0f} | " + " | ".join(cells) + " |"
        )
    lines.append(
        f"\nAll commands: {sum(times.values()) / 60:.1f} min of wall time on {machine['cpus']} CPUs "
        f"({machine['processor']}, Python {machine['python']}). Metrics: mean ± std over {rows[0]['n_test'] if rows else 0} "
        "test phantoms; HD95 and msd in mm. Oracle rows use the ground-truth test centerlines (the seed's "
        "test-time shortcut) and are not a result."
    )
    if missing:
        lines.append(f"\nNot run yet ({len(missing)} steps): " + ", ".join(missing))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
