"""The label-efficiency study of issue 12: test Dice at 2/5/10/all labels for each candidate method,
over rotating test folds and seeds, with paired differences against training from scratch.

Every cell (method, budget, fold, seed) is an ordinary ``angioseg finetune`` run folder under
``OUT/<method>/n<budget>/fold<k>_seed<s>``; a finished cell is skipped, an interrupted one is
continued with ``--resume``, so the study can be run in pieces (e.g. one working session each):

    python bench/label_efficiency.py --out studies/label_eff --methods scratch synth \\
        --budgets 2 5 10 all --folds 0 1 2 3 4 --seeds 0 1 2
    python bench/label_efficiency.py --out studies/label_eff --report   # the tables only
    python bench/label_efficiency.py --out studies/label_eff --rescore  # re-score older cells

Test images are scored as ``finetune`` scores them today (``evaluate_split``: on the image's own
pixel grid, against the mask as drawn, with the default test-time flips); ``--rescore`` brings
cells scored by an older version (on the 256² grid, no flips; they have no ``test/scoring.json``)
up to date from their saved model, keeping their old figures in ``test/rescored.json``.

The test fold k is fold k of 5 disjoint folds of the 40 CIMAT images (``--test-fold``, each image is
tested once over the 5 folds); the 4 validation images that choose the best epoch are drawn from
the other 32 by the seed, and the label budget from what is left (so ``all`` = 28 images).
Every method uses the ``cpu`` preset (``angioseg.train.presets``) unless it says otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from angioseg.config import from_dict, to_dict
from angioseg.infer.engines import DEFAULT_TTA
from angioseg.train.finetune import FinetuneConfig, run_finetune
from angioseg.train.presets import PRESETS, preset_values

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ARCADE = DATA / "arcade_unlabeled"

# What each candidate changes on top of the cpu preset's width, steps and optimiser (the preset's
# starting point is the "synth" candidate's: the others set their own).
SCRATCH = {"pretrained": None, "transfer": "auto"}
SYNTH = {"pretrained": "builtin:xca_synth_pretrained", "transfer": "encoder+decoder"}
METHODS: dict[str, dict[str, Any]] = {
    "scratch": SCRATCH,
    "synth": SYNTH,
    "cldice": {**SCRATCH, "loss": "dicecldice"},
    "synth_cldice": {**SYNTH, "loss": "dicecldice"},
    "semi": {**SCRATCH, "semi": "meanteacher", "unlabeled": str(ARCADE), "unlabeled_limit": 300},
    "synth_semi": {
        **SYNTH,
        "semi": "meanteacher",
        "unlabeled": str(ARCADE),
        "unlabeled_limit": 300,
    },
    "synth_strongaug": {**SYNTH, "augment_policy": "strong"},
    "synth_lr3e-4": {**SYNTH, "lr": 3e-4},
    # the learning rate decays along half a cosine over the preset's epochs (--lr-schedule cosine)
    "synth_cos": {**SYNTH, "lr_schedule": "cosine"},
    # the same over half the epochs (most synth cells pick an epoch before 50)
    "synth_cos50": {**SYNTH, "lr_schedule": "cosine", "epochs": 50},
    # nearly the CIMAT frames' own 300 px (a multiple of 16 for the 4-level UNet): ~1.4x the compute
    "synth_res304": {**SYNTH, "preprocess": {"image_size": 304}},
    # synth from another synthetic start (--start): e.g. the bundled one trained on for longer
    "synth_start": {**SYNTH, "pretrained": None},
    # the same from a start pretrained on synthetic frames whose backgrounds were inpainted
    # (angioseg synth --background-removal inpaint; --start)
    "synth_inpaint": {**SYNTH, "pretrained": None},
    # synth with labeled synthetic frames (--mix DIR, from angioseg synth) in half of every epoch's draws
    "synth_mix": {**SYNTH, "mix_fraction": 0.5},
    # self-training: the finished synth cell of the same budget, fold and seed labels the fold's unused
    # real images (neither labeled, validation nor test); synth again with them in half of the draws
    "synth_self": {**SYNTH, "mix_fraction": 0.5},
    # a second round of it (iterated self-training): the finished synth_self cell labels the same
    # images, and synth is trained again with those labels (a better teacher, the same student)
    "synth_self2": {**SYNTH, "mix_fraction": 0.5},
    # self-training on frames of another source: the finished synth cell of the same budget, fold and
    # seed (round 1, copied in) labels 300 unlabeled ARCADE frames, as `finetune --semi selftrain
    # --unlabeled DIR` does; synth again with them in half of the draws (a user without unannotated
    # frames of their own)
    "synth_selfarc": {
        **SYNTH,
        "semi": "selftrain",
        "unlabeled": str(ARCADE),
        "unlabeled_limit": 300,
        "mix_fraction": 0.5,
    },
    # the paper preset (width 64, up to 128 epochs, patience 30, from scratch): the GPU user's option
    "paper": {**SCRATCH, **PRESETS["paper"], "semi": None, "preset": "paper"},
    # a vesselness input channel (multi-scale Hessian ridge filter inside the network; its first-layer
    # weights start at zero, so the synthetic start is unchanged until fine-tuning uses it)
    "synth_vesselness": {**SYNTH, "vesselness": True},
}


START_METHODS = ("synth_start", "synth_inpaint")  # their starting checkpoint is --start
MIX_METHODS = ("synth_mix",)  # their extra labeled frames are --mix


def cell_dir(out: Path, method: str, budget: str, fold: int, seed: int) -> Path:
    return out / method / f"n{budget}" / f"fold{fold}_seed{seed}"


def cell_config(args: argparse.Namespace, method: str, budget: str, fold: int, seed: int) -> FinetuneConfig:
    # no self-training unless the method asks for it: the preset's --semi auto would make the baselines
    # self-train on a --data folder with unannotated images
    base = {**to_dict(FinetuneConfig()), **preset_values("cpu"), "preset": "cpu", "semi": None}
    cfg = from_dict(FinetuneConfig, {**base, **METHODS[method]})
    if method in START_METHODS:
        if args.start is None:
            raise SystemExit(f"--methods {method} needs --start CHECKPOINT")
        cfg = replace(cfg, pretrained=str(args.start))
    if method in MIX_METHODS:
        if args.mix is None:
            raise SystemExit(f"--methods {method} needs --mix DIR")
        cfg = replace(cfg, mix=str(args.mix))
    if method in SELF_METHODS:
        cfg = replace(cfg, mix=str(pseudo_dir(args.out, method, budget, fold, seed)))
    cfg = replace(
        cfg,
        data=str(args.data),
        out=str(cell_dir(args.out, method, budget, fold, seed)),
        labeled=None if budget == "all" else int(budget),
        test_fold=fold,
        val=4,
        seed=seed,
    )
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)
    return cfg


# method -> the method whose finished cell labels the unused images
SELF_METHODS = {"synth_self": "synth", "synth_self2": "synth_self"}
# method (finetune's own --semi selftrain) -> the method whose finished cell is copied in as its round 1
ROUND1_METHODS = {"synth_selfarc": "synth"}
TEACHERS = {**SELF_METHODS, **ROUND1_METHODS}


def teacher_depth(method: str) -> int:
    """How many teachers stand before ``method`` (0 for a method that labels nothing)."""
    return 1 + teacher_depth(TEACHERS[method]) if method in TEACHERS else 0


def finished_teacher(args: argparse.Namespace, method: str, budget: str, fold: int, seed: int) -> Path:
    """The finished cell of ``method``'s teacher (same budget, fold and seed), or stop with what to run."""
    teacher = cell_dir(args.out, TEACHERS[method], budget, fold, seed)
    if not (teacher / "test" / "summary.json").is_file():
        raise SystemExit(f"{method}: run {TEACHERS[method]} n={budget} fold {fold} seed {seed} first")
    return teacher


def copy_round1(args: argparse.Namespace, method: str, budget: str, fold: int, seed: int) -> None:
    """The teacher cell as the run's ``round1/`` (so finetune's self-training does not train it again)."""
    import shutil

    from angioseg.semi.selftrain import ROUND1

    target = cell_dir(args.out, method, budget, fold, seed) / ROUND1
    if target.is_dir():
        return
    teacher = finished_teacher(args, method, budget, fold, seed)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(teacher, tmp)
    tmp.rename(target)


def pseudo_dir(out: Path, method: str, budget: str, fold: int, seed: int) -> Path:
    return out / method / f"n{budget}" / f"fold{fold}_seed{seed}_pseudo"


def write_pseudo_labels(args: argparse.Namespace, method: str, budget: str, fold: int, seed: int) -> Path:
    """The unused real images of a cell (``splits.json``'s ``pretrain``: neither labeled, validation
    nor test) with the masks its teacher cell predicts (``angioseg.semi.selftrain.pseudo_labels``:
    default flips, threshold 0.5, own grid), as ``images/`` and ``masks/`` for ``--mix``. Written once,
    into a temporary folder renamed at the end. ``finetune --semi selftrain`` does the same in one
    run (its round 1 is this teacher cell); on fold 0 it reproduced the synth_self cell epoch by epoch."""
    import shutil

    import numpy as np

    from angioseg.data.datasets import load_dataset
    from angioseg.data.io import write_png
    from angioseg.data.preprocess import PreprocessConfig
    from angioseg.semi.selftrain import pseudo_labels
    from angioseg.train.checkpoint import load_model

    target = pseudo_dir(args.out, method, budget, fold, seed)
    if target.is_dir():
        return target
    teacher = finished_teacher(args, method, budget, fold, seed)
    names = json.loads((teacher / "splits.json").read_text(encoding="utf-8"))["pretrain"]
    if not names:
        raise SystemExit(f"{method} n={budget}: no unused image to label")
    samples = {s.name: s for s in load_dataset(args.data)}
    model, meta = load_model(teacher / "model.safetensors")
    masks = pseudo_labels(
        model, PreprocessConfig.from_dict(meta.get("preprocess")), [samples[n].image for n in names]
    )
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for n, m in zip(names, masks, strict=True):
        image = np.asarray(samples[n].image)
        if image.min() < 0 or image.max() > 255 or not np.array_equal(image, np.round(image)):
            raise SystemExit(f"{samples[n].source}: not 8-bit pixels; {method} copies 8-bit images only")
        write_png(tmp / "images" / f"{n}.png", image.astype(np.uint8))
        write_png(tmp / "masks" / f"{n}.png", m)
    tmp.rename(target)
    return target


def run_cells(args: argparse.Namespace) -> None:
    cells = [(m, b, f, s) for b in args.budgets for f in args.folds for s in args.seeds for m in args.methods]
    for i, (m, b, f, s) in enumerate(cells, 1):
        d = cell_dir(args.out, m, b, f, s)
        if (d / "test" / "summary.json").is_file():
            continue
        resume = (d / "config.yaml").is_file()
        if m in SELF_METHODS:
            write_pseudo_labels(args, m, b, f, s)
        if m in ROUND1_METHODS:
            copy_round1(args, m, b, f, s)
        t0 = time.perf_counter()
        print(f"[{i}/{len(cells)}] {m} n={b} fold {f} seed {s}{' (resumed)' if resume else ''}", flush=True)
        res = run_finetune(cell_config(args, m, b, f, s), resume=resume, progress=False, announce=None)
        print(f"    test Dice {res.summary['dice']:.3f} in {time.perf_counter() - t0:.0f} s", flush=True)


def groups(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """The (budget, fold, seed) groups of the study, in its order. The methods of one group run in
    one process, teachers first (``synth_self`` needs the group's finished ``synth`` cell, ``synth_self2``
    the ``synth_self`` one)."""
    return [(b, f, s) for b in args.budgets for f in args.folds for s in args.seeds]


def group_argv(args: argparse.Namespace, group: tuple[str, int, int]) -> list[str]:
    """This script's command line for one group alone (what ``--jobs`` runs in each process)."""
    b, f, s = group
    argv = [sys.executable, str(Path(__file__).resolve()), "--out", str(args.out), "--data", str(args.data)]
    argv += ["--methods", *args.methods, "--budgets", b, "--folds", str(f), "--seeds", str(s), "--no-report"]
    for opt in ("epochs", "start", "mix"):
        if getattr(args, opt) is not None:
            argv += [f"--{opt}", str(getattr(args, opt))]
    return argv


def run_parallel(args: argparse.Namespace) -> int:
    """Run the groups in ``args.jobs`` processes at once (one thread each), e.g. on a many-core machine
    or one GPU shared by several processes. Each group's output goes to
    ``OUT/logs/n<B>_fold<F>_seed<S>_<methods>.log`` (a header line per start); a failed group is named
    and the others go on. Ctrl-C or SIGTERM stops every running group (its cells resume next time) and
    starts no other. Returns the number of failed groups."""
    import os
    import signal
    import subprocess
    from concurrent.futures import ThreadPoolExecutor, as_completed

    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    todo = groups(args)
    t0 = time.perf_counter()
    running: dict[tuple[str, int, int], subprocess.Popen[bytes]] = {}
    stopping = False

    def log_path(group: tuple[str, int, int]) -> Path:
        b, f, s = group
        return logs / f"n{b}_fold{f}_seed{s}_{'+'.join(args.methods)}.log"

    def one(group: tuple[str, int, int]) -> tuple[tuple[str, int, int], int]:
        if stopping:
            return group, -1
        argv = group_argv(args, group)
        with log_path(group).open("a", encoding="utf-8") as fh:
            fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
            fh.flush()
            proc = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            running[group] = proc
            if stopping:  # the signal came while it was starting
                stop(0, None)
            rc = proc.wait()
            running.pop(group, None)
        return group, rc

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc in list(running.values()):
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # Lightning traps SIGTERM and would go on for a while
            except ProcessLookupError:
                pass

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed = 0
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(one, g) for g in todo]
            for i, fut in enumerate(as_completed(futures), 1):
                group, rc = fut.result()
                if stopping:
                    continue
                b, f, s = group
                state = "done" if rc == 0 else f"FAILED (exit {rc}; see {log_path(group)})"
                print(
                    f"[{i}/{len(todo)}] n={b} fold {f} seed {s}: {state} at {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
                failed += rc != 0
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if stopping:
        raise SystemExit("stopped: the running groups were ended; their cells resume on the next run")
    return failed


def rescore(out: Path) -> None:
    """Score again, with today's ``evaluate_split``, the finished cells an older version scored.

    ``test/rescored.json`` (the old figures) is written first and marked done last, so a cell cut
    part-way (its ``scoring.json`` already new, its ``summary.json`` still old) is redone next time.
    """
    from angioseg.config import read_config_dict
    from angioseg.data.datasets import load_dataset
    from angioseg.train.checkpoint import load_model
    from angioseg.train.finetune import evaluate_split
    from angioseg.utils import write_json

    samples: dict[str, Any] = {}
    marks = [
        *out.glob("*/n*/fold*_seed*/test/summary.json"),
        *out.glob("*/n*/fold*_seed*/test/rescored.json"),
    ]
    for p in sorted({m.parent / "summary.json" for m in marks}):  # evaluate_split drops summary.json first
        cell = p.parents[1]
        record = cell / "test" / "rescored.json"
        done = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
        if (cell / "test" / "scoring.json").is_file() and (done is None or done.get("done", True)):
            continue
        stored = read_config_dict(cell / "config.yaml")  # options an older version had are left out
        cfg = from_dict(
            FinetuneConfig, {k: v for k, v in stored.items() if k in FinetuneConfig.__dataclass_fields__}
        )
        if cfg.data not in samples:
            samples[cfg.data] = {
                s.name: s for s in load_dataset(cfg.data, channel=cfg.channel) if s.mask is not None
            }
        old = done["old"] if done is not None else json.loads(p.read_text(encoding="utf-8"))
        record_data = {"old_scoring": "256x256 grid, no tta", "old": old}
        write_json(record, {**record_data, "done": False})
        model, _ = load_model(cell / "model.safetensors")
        test = json.loads((cell / "splits.json").read_text(encoding="utf-8"))["test"]
        new = evaluate_split(model, cfg, samples[cfg.data], test, cell / "test")
        new.update({k: old[k] for k in ("train_seconds", "best_epoch") if k in old})
        write_json(p, new)
        write_json(record, {**record_data, "done": True})
        print(
            f"rescored {cell.relative_to(out)}: test Dice {old['dice']:.3f} -> {new['dice']:.3f}", flush=True
        )


def load_results(out: Path) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    """Each finished cell's test summary, plus ``val_dice`` (training's best, on the model grid) and
    ``val_own`` (its saved model on the validation images' own grid with the default flips, from
    ``bench/tta_choice.py``'s cache ``tta_choice.json``, where that has scored the cell)."""
    rows = {}
    cache_path = out / "tta_choice.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    for p in sorted(out.glob("*/n*/fold*_seed*/test/summary.json")):
        cell = p.parents[1]
        fold, seed = cell.name.removeprefix("fold").split("_seed")
        key = (cell.parents[1].name, cell.parent.name[1:], int(fold), int(seed))
        own = cache.get(f"{cell.relative_to(out).as_posix()}:val", {}).get(f"{DEFAULT_TTA}@0.5")
        rows[key] = {
            **json.loads(p.read_text(encoding="utf-8")),
            "val_dice": best_val_dice(cell),
            "val_own": own,
        }
    return rows


def best_val_dice(cell: Path) -> float | None:
    """The best validation Dice of a run (what chose its epoch), from its Lightning CSV logs."""
    import csv

    best = None
    for log in cell.glob("logs/version_*/metrics.csv"):
        with open(log, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("val_dice"):
                    best = max(best or 0.0, float(row["val_dice"]))
    return best


def pooled_pcc(out: Path, keys: list[tuple[str, str, int, int]]) -> tuple[float, int]:
    """Pearson r of predicted vs true mean vessel diameter over the test images of all ``keys``' cells
    pooled (each image once per seed over the 5 folds), and the number of images."""
    import csv

    from scipy.stats import pearsonr

    pred, true = [], []
    for m, b, f, s in keys:
        with open(cell_dir(out, m, b, f, s) / "test" / "metrics.csv", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                pred.append(float(row["diam_pred"]))
                true.append(float(row["diam_true"]))
    if len(pred) < 3:
        return float("nan"), len(pred)
    return float(pearsonr(pred, true)[0]), len(pred)


def _ms(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} ± {sd:.3f}"


def paired(
    rows: dict[tuple[str, str, int, int], dict[str, Any]], base: str, methods: list[str], budgets: list[str]
) -> list[str]:
    """Markdown lines: each method's test (and validation) Dice minus ``base``'s, same fold, seed, budget."""
    lines = ["", f"Paired differences against {base} (same fold, seed and budget):", ""]
    lines += [
        "| method | labels | pairs | test diff | sd | wins | val diff | val wins | val diff, own grid + flips (wins) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for b in budgets:
            pairs = [
                (v, rows[(base, b, f, s)])
                for (mm, bb, f, s), v in rows.items()
                if mm == m and bb == b and (base, b, f, s) in rows
            ]
            if not pairs:
                continue
            diffs = [float(v["dice"]) - float(w["dice"]) for v, w in pairs]
            vdiffs = [
                float(v["val_dice"]) - float(w["val_dice"])
                for v, w in pairs
                if v["val_dice"] and w["val_dice"]
            ]
            odiffs = [
                float(v["val_own"]) - float(w["val_own"])
                for v, w in pairs
                if v.get("val_own") is not None and w.get("val_own") is not None
            ]
            own = (
                f"{statistics.mean(odiffs):+.3f} ({sum(d > 0 for d in odiffs)}/{len(odiffs)})"
                if odiffs
                else "-"
            )
            sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            lines.append(
                f"| {m} | {b} | {len(diffs)} | {statistics.mean(diffs):+.3f} | {sd:.3f} | "
                f"{sum(d > 0 for d in diffs)}/{len(diffs)} | {statistics.mean(vdiffs):+.3f} | "
                f"{sum(d > 0 for d in vdiffs)}/{len(vdiffs)} | {own} |"
            )
    return lines


def _seed_sets(
    rows: dict[tuple[str, str, int, int], dict[str, Any]], m: str, b: str
) -> list[tuple[list[int], list[int]]]:
    """(seeds, the folds all of them have) for every seed of (method, budget), and also for the seeds
    that have every fold when that is a different set: a seed still running then does not shrink the
    comparison of the finished ones to its few folds."""
    seeds = sorted({k[3] for k in rows if k[0] == m and k[1] == b})
    all_folds = sorted({k[2] for k in rows if k[0] == m and k[1] == b})

    def common(ss: list[int]) -> list[int]:
        return [f for f in all_folds if all((m, b, f, s) in rows for s in ss)]

    complete = [s for s in seeds if all((m, b, f, s) in rows for f in all_folds)]
    sets = [(seeds, common(seeds))]
    if complete != seeds:
        sets.append((complete, all_folds))
    return [(ss, ff) for ss, ff in sets if len(ss) >= 2 and ff]


def per_seed(
    rows: dict[tuple[str, str, int, int], dict[str, Any]], methods: list[str], budgets: list[str]
) -> list[str]:
    """Seed to seed: per (method, budget), the test Dice of each seed averaged over the folds that
    every listed seed has finished (the same folds for each seed), then mean +- sd over the seeds."""
    lines = [
        "",
        "Seed to seed (test Dice averaged over the folds every seed has; sd over the seed means):",
        "",
        "| method | labels | seeds | folds | per seed | mean ± sd over seeds | paired diff vs scratch per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for b in budgets:
            for seeds, folds in _seed_sets(rows, m, b):
                means = [statistics.mean(float(rows[(m, b, f, s)]["dice"]) for f in folds) for s in seeds]
                diffs = ""
                if m != "scratch" and all(("scratch", b, f, s) in rows for f in folds for s in seeds):
                    d = [
                        statistics.mean(
                            float(rows[(m, b, f, s)]["dice"]) - float(rows[("scratch", b, f, s)]["dice"])
                            for f in folds
                        )
                        for s in seeds
                    ]
                    diffs = ", ".join(f"{x:+.3f}" for x in d)
                per = ", ".join(f"{s}: {x:.3f}" for s, x in zip(seeds, means, strict=True))
                lines.append(
                    f"| {m} | {b} | {len(seeds)} | {','.join(map(str, folds))} | {per} | {_ms(means)} | {diffs} |"
                )
    return lines


def report(out: Path) -> str:
    """Markdown tables: Dice / clDice / diameter PCC / time per (method, budget), and paired Dice differences vs scratch."""
    rows = load_results(out)
    methods = sorted({k[0] for k in rows}, key=lambda m: (m != "scratch", m))
    budgets = sorted({k[1] for k in rows}, key=lambda b: (b == "all", int(b) if b != "all" else 0))
    lines = [
        "| method | labels | cells | val Dice | test Dice | clDice | diameter PCC | pooled PCC (images) | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for b in budgets:
            cell = [v for k, v in rows.items() if k[0] == m and k[1] == b]
            if not cell:
                continue

            def col(key: str, c: list[dict[str, Any]] = cell) -> list[float]:
                return [float(v[key]) for v in c if v.get(key) is not None]

            t = col("train_seconds")
            r, n = pooled_pcc(out, [k for k in rows if k[0] == m and k[1] == b])
            lines.append(
                f"| {m} | {b} | {len(cell)} | {_ms(col('val_dice'))} | {_ms(col('dice'))} | {_ms(col('cldice'))} | "
                f"{_ms(col('pcc'))} | {r:.3f} ({n}) | {statistics.mean(t):.0f} |"
            )
    lines += per_seed(rows, methods, budgets)
    for base, who in (
        ("scratch", lambda m: m != "scratch"),
        ("synth", lambda m: m.startswith("synth_")),
        ("synth_self", lambda m: m in ("synth_self2", "synth_selfarc")),  # against the default
    ):
        lines += paired(rows, base, [m for m in methods if who(m)], budgets)
    older = [k for k in rows if not (cell_dir(out, *k) / "test" / "scoring.json").is_file()]
    if older:
        lines += [
            "",
            f"WARNING: {len(older)} cell(s) were scored by an older version (256² grid, no TTA) and are "
            "not comparable with the others; run --rescore.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DATA / "xca_cimat40")
    ap.add_argument("--methods", nargs="+", default=["scratch"], choices=sorted(METHODS))
    ap.add_argument("--budgets", nargs="+", default=["2", "5", "10", "all"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (pilots)")
    ap.add_argument(
        "--start", type=Path, default=None, help="the starting checkpoint of the START_METHODS (a run folder)"
    )
    ap.add_argument(
        "--mix",
        type=Path,
        default=None,
        help="the extra labeled frames of the MIX_METHODS (angioseg synth output)",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run this many (budget, fold, seed) groups at once, each in its own one-thread process",
    )
    ap.add_argument("--no-report", action="store_true", help="do not print the tables at the end")
    ap.add_argument("--report", action="store_true", help="only print the tables of the finished cells")
    ap.add_argument(
        "--rescore", action="store_true", help="re-score cells scored by an older version, then report"
    )
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    # a self-training method after the method whose finished cell labels its images (synth before synth_self)
    args.methods = sorted(dict.fromkeys(args.methods), key=teacher_depth)
    failed = 0
    if args.rescore:
        rescore(args.out)
    elif not args.report:
        if args.jobs > 1:
            failed = run_parallel(args)
        else:
            run_cells(args)
    if not args.no_report:
        print(report(args.out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
