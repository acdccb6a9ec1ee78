"""Does self-supervised pretraining help few-label fine-tuning here? The study behind docs/results/pretraining.md.

For every method: pretrain on unlabeled angiograms (``run_pretrain``), then fine-tune with
``--labeled`` images of a labeled set (``run_finetune``) for every seed; do the same fine-tuning
from scratch ("none"); the test split is fixed (``test_seed`` 42) and never used for any choice
(the best epoch is picked on the validation split), and no pretraining image may have the pixels
of a test image (checked before pretraining, and again by every fine-tuning run). Prints and
writes ``results.md`` and ``results.json`` (mean and standard deviation over seeds of the test
metrics, wall and CPU times).

Resumable: finished runs are skipped, interrupted ones resumed, so the study can be stopped and
restarted. Heavy: run it under the shared lock, e.g.::

    flock /tmp/angioseg-heavy.lock python bench/pretrain_study.py --out studies/pretrain_w16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from angioseg.data.datasets import load_dataset
from angioseg.data.leakage import sample_hashes
from angioseg.data.preprocess import PreprocessConfig
from angioseg.data.splits import SplitSpec, image_groups, make_splits
from angioseg.pretrain import METHOD_NAMES
from angioseg.pretrain.run import PretrainConfig, run_pretrain
from angioseg.train.finetune import FinetuneConfig, run_finetune
from angioseg.utils import write_json

METRICS = ("dice", "cldice", "iou", "hd95", "mhd", "add")


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float, list[float]]:
    """Result, wall seconds, CPU seconds of this process, and the 1-min load average before and after
    (other jobs on the shared 2 cores slow a run down and inflate its CPU time)."""
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu, [load, os.getloadavg()[0]]


def held_out_hashes(labeled_data: Path) -> dict[str, str]:
    """Pixel hashes of the test split that every fine-tuning run of the study draws (it depends only
    on the labeled names, the test share and ``test_seed``, all fine-tuning defaults here)."""
    ft = FinetuneConfig()
    every = load_dataset(labeled_data)
    labeled = {s.name: s for s in every if s.mask is not None}
    groups = image_groups({s.name: s.source for s in every})  # as run_finetune draws it
    test = make_splits(sorted(labeled), SplitSpec(ft.test, ft.val, test_seed=ft.test_seed), groups)["test"]
    return sample_hashes(labeled, test)


def pretrain(args: argparse.Namespace, method: str, exclude: dict[str, str]) -> dict[str, Any]:
    run = args.out / "pretrain" / method
    record = run / "study.json"
    if record.exists():
        return dict(json.loads(record.read_text(encoding="utf-8")))
    lr = args.adam_lr if method in ("cmunet", "spark") else None
    cfg = PretrainConfig(
        method=method,
        data=str(args.unlabeled),
        out=str(run),
        epochs=args.pt_epochs,
        width=args.width,
        image_size=args.size,
        batch_size=args.pt_batch,
        lr=lr,
        seed=0,
        limit=args.pt_limit,
        cache_dir=str(args.out / "cache"),
        show_reconstructions=4 if method != "moco" else 0,
        preprocess=PreprocessConfig(image_size=args.size),
    )
    res, wall, cpu, load = timed(
        run_pretrain, cfg, resume=(run / "config.yaml").exists(), progress=args.progress, exclude=exclude
    )
    out = {
        "method": method,
        "epochs": res.epochs,
        "steps": res.steps,
        "images": res.images,
        "final_loss": res.final_loss,
        "lr": lr,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average": load,
        "parameters": res.parameters,
    }
    write_json(record, out)
    return out


def finetune(args: argparse.Namespace, condition: str, seed: int) -> dict[str, Any]:
    run = args.out / "finetune" / condition / f"seed{seed}"
    done = run / "test" / "summary.json"
    if done.exists() and (run / "study.json").exists():
        return dict(json.loads((run / "study.json").read_text(encoding="utf-8")))
    if run.exists():  # an interrupted fine-tune: start it again (short, and keeps splits identical)
        shutil.rmtree(run)
    cfg = FinetuneConfig(
        data=str(args.labeled_data),
        out=str(run),
        labeled=args.labeled,
        seed=seed,
        width=args.width,
        epochs=args.ft_epochs,
        batch_size=args.ft_batch,
        patience=args.patience,
        pretrained=None if condition == "none" else str(args.out / "pretrain" / condition),
        preprocess=PreprocessConfig(image_size=args.size),
    )
    res, wall, cpu, load = timed(run_finetune, cfg, progress=args.progress, announce=print)
    out = {
        "condition": condition,
        "seed": seed,
        "best_epoch": res.best_epoch,
        "test": {k: res.summary.get(k) for k in (*METRICS, "n")},
        "transfer": res.transfer,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average": load,
    }
    write_json(run / "study.json", out)
    return out


def table(rows: dict[str, list[dict[str, Any]]], pre: dict[str, dict[str, Any]]) -> str:
    """Markdown: mean ± sd over seeds of the test metrics, then per-seed Dice and the paired
    difference to fine-tuning from scratch (same seed = same labeled images, validation split and
    augmentation draws)."""
    head = "| pretraining | pretrain wall / CPU (min) | " + " | ".join(f"test {m}" for m in METRICS)
    lines = [head + " |", "|" + "---|" * (len(METRICS) + 2)]
    for cond, runs in rows.items():
        cells = []
        for m in METRICS:
            vals = [float(r["test"][m]) for r in runs if r["test"].get(m) is not None]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if vals else "-")
        p = pre.get(cond)
        cost = f"{p['wall_seconds'] / 60:.1f} / {p['cpu_seconds'] / 60:.1f}" if p else "-"
        lines.append(f"| {cond} | {cost} | " + " | ".join(cells) + " |")
    base = {r["seed"]: float(r["test"]["dice"]) for r in rows.get("none", [])}
    seeds = sorted({r["seed"] for runs in rows.values() for r in runs})
    lines += [
        "",
        "| pretraining | "
        + " | ".join(f"dice seed {s}" for s in seeds)
        + " | Δ dice vs none (paired) | better / seeds |",
    ]
    lines.append("|" + "---|" * (len(seeds) + 3))
    for cond, runs in rows.items():
        dice = {r["seed"]: float(r["test"]["dice"]) for r in runs}
        cells = [
            f"{dice[s]:.3f} (ep {next(r['best_epoch'] for r in runs if r['seed'] == s)})"
            if s in dice
            else "-"
            for s in seeds
        ]
        diffs = [dice[s] - base[s] for s in seeds if s in dice and s in base]
        if cond == "none" or not diffs:
            lines.append(f"| {cond} | " + " | ".join(cells) + " | - | - |")
            continue
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        wins = sum(d > 0 for d in diffs)
        lines.append(
            f"| {cond} | "
            + " | ".join(cells)
            + f" | {statistics.mean(diffs):+.3f} ± {sd:.3f} | {wins} / {len(diffs)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--unlabeled", type=Path, default=Path("../shared/data/arcade_unlabeled"))
    ap.add_argument("--labeled-data", type=Path, default=Path("../shared/data/xca_cimat40"))
    ap.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--labeled", type=int, default=5)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--pt-epochs", type=int, default=8)
    ap.add_argument("--pt-limit", type=int, default=None)
    ap.add_argument("--pt-batch", type=int, default=16)
    ap.add_argument(
        "--adam-lr", type=float, default=1e-3, help="peak lr of the AdamW/LAMB methods (cmunet, spark)"
    )
    ap.add_argument("--ft-epochs", type=int, default=200)
    ap.add_argument("--ft-batch", type=int, default=8)
    ap.add_argument("--patience", type=int, default=60)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(
        args.out / "study_args.json", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    )
    exclude = held_out_hashes(args.labeled_data)
    pre = {m: pretrain(args, m, exclude) for m in args.methods}
    rows = {c: [finetune(args, c, s) for s in args.seeds] for c in ["none", *args.methods]}
    md = table(rows, pre)
    (args.out / "results.md").write_text(md + "\n")
    write_json(args.out / "results.json", {"pretrain": pre, "finetune": rows})
    print(md)


if __name__ == "__main__":
    main()
