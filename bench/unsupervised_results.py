"""The runs behind docs/results/unsupervised.md: CUTS and both baselines on XCA (CIMAT) and DRIVE.

For each dataset, three CLI calls (printed as they run, so they can be copied):

1. ``angioseg unsupervised fit`` on the dataset's images: no mask is read (CUTS is transductive:
   it trains on the unlabeled images it then segments);
2. ``angioseg unsupervised segment`` on the first ``N`` images by name (all by default);
   DRIVE uses the green channel (recorded at fit time) and its field-of-view masks as ``--roi``;
3. ``angioseg unsupervised evaluate`` against the true masks: label-free rows and ORACLE rows
   (cluster choice that reads the true mask: an upper bound, not a result).

Then ``OUT/results.md`` (printed too) holds, per dataset, mean ± standard deviation over images of
Dice, clDice and MHD (px) for every method, the seconds per image of each ``segment`` stage, and
the fit time. Wall and CPU seconds of every call and the 1-min load average (other jobs on the
shared cores inflate times) go to ``OUT/calls.json``.

Resumable: a dataset whose ``fit/model.safetensors`` exists is not refitted, ``segment`` skips
images already done, ``evaluate`` is rerun. Heavy: run it alone, from the repository root::

    flock /tmp/angioseg-heavy.lock python bench/unsupervised_results.py --data ../shared/data \\
        --out runs/unsupervised_results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from angioseg.data.io import is_image_file
from angioseg.unsupervised.evaluation import LABEL_FREE, ORACLE, selection_of
from angioseg.utils import atomic_open, write_json

DATASETS: dict[str, dict[str, Any]] = {
    "xca": {"folder": "xca_cimat40", "channel": "gray", "roi": None},
    "drive": {"folder": "drive_train", "channel": "green", "roi": "fov"},
}
METRICS = (("dice", "Dice"), ("cldice", "clDice"), ("mhd", "MHD (px)"))
STAGES = ("embed", "landmarks", "spectral", "condensation", "persistence", "selection", "baselines", "total")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def call(args: list[str], log: list[dict[str, Any]]) -> None:
    """Run ``angioseg ARGS`` in a subprocess; record wall/CPU seconds and the load average."""
    print("$ angioseg " + " ".join(args), flush=True)
    load0, wall, cpu = os.getloadavg()[0], time.perf_counter(), children_cpu()
    code = subprocess.call([sys.executable, "-m", "angioseg", *args])
    entry = {
        "command": "angioseg " + " ".join(args),
        "exit_code": code,
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(children_cpu() - cpu, 1),
        "load_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    log.append(entry)
    print(f"  -> exit {code}, {entry['wall_seconds']} s wall, {entry['cpu_seconds']} s CPU", flush=True)
    if code not in (0, 1):  # 1: some inputs failed but the others are kept
        raise SystemExit(f"command failed with exit code {code}")


def run_dataset(
    name: str, data: Path, out: Path, args: argparse.Namespace, log: list[dict[str, Any]]
) -> None:
    spec = DATASETS[name]
    root = data / spec["folder"]
    fit_dir, seg_dir, eval_dir = out / name / "fit", out / name / "seg", out / name / "eval"
    if not (fit_dir / "model.safetensors").exists():
        fit = ["unsupervised", "fit", "--data", str(root), "--out", str(fit_dir), "--channel", spec["channel"],
               "--epochs", str(args.epochs), "--crop", str(args.crop), "--seed", str(args.seed),
               "--no-progress", *(["--normalise", args.normalise] if args.normalise else [])]  # fmt: skip
        call(fit + (["--resume"] if fit_dir.exists() else []), log)
    files = sorted(p for p in (root / "images").iterdir() if is_image_file(p))
    n = getattr(args, name)
    chosen = files[:n] if n else files
    seg = ["unsupervised", "segment", *map(str, chosen), "--model", str(fit_dir), "--out", str(seg_dir),
           "--seed", str(args.seed), "--no-figure"]  # fmt: skip
    if spec["roi"]:
        seg += ["--roi", str(root / spec["roi"])]
    call(seg, log)
    call(
        ["unsupervised", "evaluate", "--seg", str(seg_dir), "--truth", str(root), "--out", str(eval_dir)], log
    )


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def dataset_table(name: str, out: Path) -> list[str]:
    """Markdown lines: metrics per method, then seconds per stage and the fit time."""
    eval_dir = out / name / "eval"
    lines = [f"### {name}", "", "| method | selection | " + " | ".join(t for _, t in METRICS) + " | n |"]
    lines.append("|---|---|" + "---|" * (len(METRICS) + 1))
    for method in (*LABEL_FREE, *ORACLE):
        path = eval_dir / method / "metrics.csv"
        if not path.exists():
            continue
        rows = read_rows(path)
        cells = [mean_sd([float(r[k]) for r in rows]) for k, _ in METRICS]
        lines.append(f"| {method} | {selection_of(method)} | " + " | ".join(cells) + f" | {len(rows)} |")
    seg_rows = read_rows(out / name / "seg" / "segment.csv")
    sizes = sorted({f"{r['height']}x{r['width']}" for r in seg_rows})
    lines += ["", f"Seconds per image ({len(seg_rows)} images, {', '.join(sizes)}), mean [min, max]:", ""]
    lines += ["| stage | seconds |", "|---|---|"]
    for st in STAGES:
        vals = [float(r[f"seconds_{st}"]) for r in seg_rows if r.get(f"seconds_{st}")]
        if vals:
            lines.append(f"| {st} | {statistics.fmean(vals):.2f} [{min(vals):.2f}, {max(vals):.2f}] |")
    fit = json.loads((out / name / "fit" / "fit.json").read_text(encoding="utf-8"))
    lines += ["", f"Fit: {fit['images']} images, {fit['epochs_run']} epochs, best epoch {fit['best_epoch']}, "
              f"{fit['train_seconds']:.0f} s.", ""]  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding the datasets")
    ap.add_argument("--out", type=Path, default=Path("runs/unsupervised_results"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--xca", type=int, default=0, help="segment the first N XCA images by name (0: all 40)")
    ap.add_argument(
        "--drive", type=int, default=0, help="segment the first N DRIVE images by name (0: all 20)"
    )
    ap.add_argument("--epochs", type=int, default=15, help="fit epochs (CUTS: up to 200)")
    ap.add_argument("--crop", type=int, default=64, help="fit crop side (CUTS: 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--normalise", default=None, help="fit --normalise (default: the CLI's, local)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "calls.json"
    log: list[dict[str, Any]] = json.loads(log_path.read_text(encoding="utf-8")) if log_path.exists() else []
    try:
        for name in args.datasets:
            run_dataset(name, args.data, args.out, args, log)
    finally:
        write_json(log_path, log)
    lines = ["# CUTS and baselines (generated by bench/unsupervised_results.py)", ""]
    for name in args.datasets:
        lines += dataset_table(name, args.out)
    text = "\n".join(lines)
    with atomic_open(args.out / "results.md", encoding="utf-8") as fh:
        fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
