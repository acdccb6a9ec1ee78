"""Run the grid: pretraining runs when first needed, then every cell not finished yet.

* A cell is finished when its ``cell.json`` says ``"status": "ok"``; ``--resume`` skips it.
* An interrupted cell (a ``config.yaml`` but no ``cell.json``) continues from its last checkpoint;
  an interrupted pretraining run too (no ``summary.json`` yet).
* A failing cell (or the pretraining it needs) is recorded as ``"status": "failed"`` with the error
  (and ``error.txt`` with the traceback) and the grid goes on; ``--resume`` retries it from scratch.
* ``results.csv`` is rewritten after every cell, so a long study can be read while it runs.
* ``worker=True`` (``--worker``): several processes, on one host or several sharing the folder,
  run one study; each claims a cell (and a pretraining run) with an exclusive lock file
  (:mod:`angioseg.experiment.claims`) before running it, so no two run the same one. A worker
  whose cell needs a pretraining run that another worker is training waits for it.
* Before any cell runs, an external pretraining folder is refused when one of its images has the
  pixels of a test image (any name or format; :mod:`angioseg.data.leakage`). Its images are read
  through the pretraining cache, so the first pretraining run does not read them again; every
  cell checks its pretraining run's recorded hashes against its own test split once more.

Ctrl-C (``SystemExit`` from Lightning, ``KeyboardInterrupt``) stops the whole study; it is not a
failed cell.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from angioseg.config import from_dict, to_dict
from angioseg.data.datasets import Sample, load_dataset
from angioseg.data.leakage import check_no_test_images, read_image_hashes, sample_hashes
from angioseg.data.splits import image_groups
from angioseg.errors import AngiosegError, DataError
from angioseg.experiment.claims import CLAIM, claim, release, wait_for_claim
from angioseg.experiment.config import (
    SPLIT,
    ExperimentConfig,
    check_same_study,
    load_experiment,
    save_experiment,
)
from angioseg.experiment.plan import Cell, Plan, PretrainRun, link_images, make_plan
from angioseg.experiment.results import best_val_dice, cell_row, collect_rows, write_results_csv
from angioseg.pretrain.run import PretrainConfig, pretraining_images, run_pretrain
from angioseg.train.finetune import run_finetune
from angioseg.utils import write_json

Announce = Callable[[str], None]


@dataclass
class ExperimentResult:
    out: Path
    rows: list[dict[str, Any]]
    ran: int = 0
    skipped: int = 0
    elsewhere: int = 0  # cells claimed by another worker
    failed: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None


def open_study(cfg: ExperimentConfig, out: Path, resume: bool) -> ExperimentConfig:
    """Check ``out`` against ``resume`` and write the resolved ``experiment.yaml``.

    Raises:
        AngiosegError: a study already in ``out`` without ``resume``, nothing to resume, a config
            that changed more than the grid lists, or an external pretraining folder that is the
            labeled dataset itself (its test images would be pretrained on).
    """
    saved_path = out / "experiment.yaml"
    if resume and not saved_path.exists():
        raise AngiosegError(f"{out}: nothing to resume (no experiment.yaml); start without --resume")
    if not resume and saved_path.exists():
        raise AngiosegError(
            f"{out}: a study already exists here; use --resume to continue it or another --out"
        )
    if resume:
        check_same_study(load_experiment(saved_path), cfg, str(saved_path))
    if not Path(cfg.labeled_data).is_dir():
        raise DataError(cfg.labeled_data, "labeled dataset folder does not exist")
    if cfg.pretrain_data != SPLIT and Path(cfg.pretrain_data).resolve() == Path(cfg.labeled_data).resolve():
        raise AngiosegError(
            f"{cfg.pretrain_data}: pretraining on the labeled dataset itself would pretrain on its test "
            "images; use pretrain_data: split (each split's own pretraining pool)"
        )
    out.mkdir(parents=True, exist_ok=True)
    save_experiment(saved_path, cfg)
    return cfg


def _pretrain_config(cfg: ExperimentConfig, run: PretrainRun, out: Path) -> PretrainConfig:
    merged = {
        **to_dict(cfg.pretrain),
        "cache_dir": cfg.pretrain.cache_dir or str(out / "cache"),
        **cfg.method_options.get(run.method, {}),
        "method": run.method,
        "data": str(run.data),
        "out": str(run.run_dir),
        "width": cfg.width,
        "image_size": cfg.image_size,
        "preprocess": to_dict(cfg.finetune.preprocess),  # both stages see the same kind of input
    }
    return from_dict(PretrainConfig, merged, f"method_options.{run.method}")


def ensure_pretrain(
    cfg: ExperimentConfig,
    run: PretrainRun,
    samples: dict[str, Sample],
    out: Path,
    progress: bool,
    announce: Announce | None,
) -> dict[str, Any]:
    """The run's ``summary.json`` (+ wall/CPU seconds), pretraining (or resuming) it first if needed."""
    summary_path = run.run_dir / "summary.json"
    timing_path = run.run_dir / "experiment_timing.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if not summary.get("interrupted"):
            timing = json.loads(timing_path.read_text(encoding="utf-8")) if timing_path.exists() else {}
            return {**summary, **timing}
    if run.pool is not None:
        link_images(samples, run.pool, run.data)
    pcfg = _pretrain_config(cfg, run, out)
    if announce:
        announce(f"pretraining {run.key} on {run.data}")
    wall, cpu = time.perf_counter(), time.process_time()
    run_pretrain(pcfg, resume=(run.run_dir / "config.yaml").exists(), progress=progress, announce=announce)
    timing = {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
    write_json(timing_path, timing)
    return {**json.loads(summary_path.read_text(encoding="utf-8")), **timing}


def check_external_pretraining(
    cfg: ExperimentConfig,
    plan: Plan,
    samples: dict[str, Sample],
    out: Path,
    announce: Announce | None = None,
) -> None:
    """Refuse an external ``pretrain_data`` folder that holds a test image (same pixels, any name).

    A finished pretraining run is checked by its ``pretrain_images.json``; an unfinished one reads
    its images now, as its pretraining will (through the same cache, so they are read once). A
    split's own pool is disjoint from the test split by name; its cells check the content.

    Raises:
        LeakageError: listing every pretraining file that equals a test image.
    """
    external = [r for r in plan.pretrain_runs.values() if r.pool is None]
    if not external:
        return
    test = sample_hashes(samples, sorted({n for c in plan.cells for n in c.splits["test"]}))
    for run in external:
        recorded = read_image_hashes(run.run_dir)
        if recorded is None:
            if announce:
                announce(f"reading {run.data} for {run.key} (its images must not be test images)")
            try:
                data = pretraining_images(_pretrain_config(cfg, run, out))
            except AngiosegError:
                continue  # unreadable folder, bad options: its pretraining fails and says why
            recorded = list(zip(data.sources, data.hashes, strict=True))
        check_no_test_images(recorded, test, f"pretrain_data {run.data}")


def _write_splits(cell: Cell) -> None:
    write_json(
        cell.run_dir / "splits.json",
        {**cell.splits, "counts": {k: len(v) for k, v in cell.splits.items()}, "budget": cell.budget.label},
    )


def run_cell(
    cfg: ExperimentConfig,
    cell: Cell,
    pretrain: dict[str, Any] | None,
    progress: bool,
    announce: Announce | None,
) -> dict[str, Any]:
    """Fine-tune and test one cell (resuming an interrupted one); return its ``cell.json`` record."""
    # an interrupted cell continues; a failed one (it has a record) starts again
    resume = (cell.run_dir / "config.yaml").exists() and not (cell.run_dir / "cell.json").exists()
    if not resume:
        if cell.run_dir.exists():  # left-overs of a failed or barely started cell
            _clear_keeping_claim(cell.run_dir)
        _write_splits(cell)
    fcfg = replace(
        cfg.finetune,
        data=cfg.labeled_data,
        out=str(cell.run_dir),
        seed=cell.seed,
        test=cfg.test,
        val=cfg.val,
        test_seed=cfg.test_seed,
        groups=cfg.groups,
        width=cfg.width,
        pretrained=str(cell.pretrain.run_dir) if cell.pretrain else None,
        preprocess=replace(cfg.finetune.preprocess, image_size=cfg.image_size),
        **cell.budget.split_args(),
    )
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    res = run_finetune(fcfg, resume=resume, progress=progress, announce=announce)
    timing = {
        "cell_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }
    return cell_row(
        cell,
        "ok",
        summary=res.summary,
        val_dice=best_val_dice(cell.run_dir),
        best_epoch=res.best_epoch,
        params=res.parameters,
        pretrain=pretrain,
        timing={"train_seconds": res.train_seconds, **timing},
    )


def machine_info() -> str:
    """E.g. ``2 CPU cores (Intel Xeon ...), no GPU, torch 2.13.0 (2 threads)``."""
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({model}), {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)"


@contextlib.contextmanager
def invocation_log(out: Path, command: str | None) -> Iterator[ExperimentResult]:
    """Append this invocation to ``out/runs.json``; on exit (also Ctrl-C) record its wall time and counts."""
    path = out / "runs.json"
    runs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    entry: dict[str, Any] = {
        "command": command or "run_experiment()",
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "wall_seconds": None,
    }
    runs.append(entry)
    write_json(path, runs)
    result = ExperimentResult(out, [])
    t0 = time.perf_counter()
    completed = False
    try:
        yield result
        completed = True
    finally:
        entry.update(
            wall_seconds=time.perf_counter() - t0,
            ran=result.ran,
            skipped=result.skipped,
            failed=len(result.failed),
            interrupted=not completed,
        )
        write_json(path, runs)


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def _clear_keeping_claim(run_dir: Path) -> None:
    """Empty ``run_dir`` except for a worker's claim (removing it would let another worker in)."""
    for p in run_dir.iterdir():
        if p.name == CLAIM:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _finished(cell: Cell) -> bool:
    p = cell.run_dir / "cell.json"
    return p.exists() and json.loads(p.read_text(encoding="utf-8")).get("status") == "ok"


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = False,
    announce: Announce | None = print,
    report: bool = True,
    command: str | None = None,
    worker: bool = False,
) -> ExperimentResult:
    """Run (or continue) the study in ``out``; write ``results.csv`` and the report.

    ``cfg`` must have absolute data paths (:func:`~angioseg.experiment.config.resolve_paths`).
    ``command`` is recorded in ``runs.json`` (with start, wall time and machine) for the report.
    ``worker``: one of several processes sharing ``out`` (see the module docstring); it starts the
    study or joins it, whichever applies.
    """
    out = Path(out)
    if worker:
        resume = (out / "experiment.yaml").exists()
    cfg = open_study(cfg, out, resume)
    with invocation_log(out, command) as result:
        samples, plan = _run_grid(cfg, out, result, progress, announce, worker)
    if report:
        from angioseg.experiment.report import write_report

        result.report = write_report(cfg, plan, result.rows, out, samples)
    return result


def _labeled_samples(cfg: ExperimentConfig) -> tuple[dict[str, Sample], dict[str, str]]:
    """The labeled samples by name, and every image's group (frames of a file; ``cfg.groups``)."""
    every = load_dataset(cfg.labeled_data)
    samples = {s.name: s for s in every if s.mask is not None}
    if not samples:
        raise DataError(
            cfg.labeled_data, "no labeled image (expected images/ and masks/ with the same names)"
        )
    return samples, image_groups({s.name: s.source for s in every}, cfg.groups)


def _samples_and_plan(cfg: ExperimentConfig, out: Path) -> tuple[dict[str, Sample], Plan]:
    samples, groups = _labeled_samples(cfg)
    return samples, make_plan(cfg, out, sorted(samples), groups)


def plan_study(cfg: ExperimentConfig, out: str | Path) -> Plan:
    """The grid of ``cfg`` (nothing is written)."""
    if not Path(cfg.labeled_data).is_dir():
        raise DataError(cfg.labeled_data, "labeled dataset folder does not exist")
    return _samples_and_plan(cfg, Path(out))[1]


def rebuild_report(cfg: ExperimentConfig, out: str | Path) -> Path:
    """Rewrite ``results.csv`` and the report of the study in ``out`` from its finished cells."""
    from angioseg.experiment.report import write_report

    out = Path(out)
    if not (out / "experiment.yaml").exists():
        raise AngiosegError(
            f"{out}: no experiment.yaml here; is it a study folder (angioseg experiment --out)?"
        )
    samples, plan = _samples_and_plan(cfg, out)
    rows = collect_rows(plan)
    write_results_csv(out / "results.csv", rows)
    return write_report(cfg, plan, rows, out, samples)


def _run_grid(
    cfg: ExperimentConfig,
    out: Path,
    result: ExperimentResult,
    progress: bool,
    announce: Announce | None,
    worker: bool = False,
) -> tuple[dict[str, Sample], Plan]:
    samples, plan = _samples_and_plan(cfg, out)
    check_external_pretraining(cfg, plan, samples, out, announce)
    write_json(out / "plan.json", plan.summary())
    pre_done: dict[str, dict[str, Any]] = {}
    pre_failed: dict[str, str] = {}
    total = len(plan.cells)
    for i, cell in enumerate(plan.cells, 1):
        tag = (
            f"[{i}/{total}] {cell.method} · {cell.budget.label} labels ({cell.n_labeled}) · seed {cell.seed}"
        )
        if _finished(cell):
            result.skipped += 1
            continue
        if worker and not claim(cell.run_dir):
            result.elsewhere += 1
            continue
        if worker and _finished(cell):  # finished (and released) by another worker since the check above
            release(cell.run_dir)
            result.skipped += 1
            continue
        record = _run_one(cfg, cell, samples, out, pre_done, pre_failed, progress, announce, worker)
        write_json(cell.run_dir / "cell.json", record)
        if worker and record["status"] == "ok":
            release(cell.run_dir)  # a failed cell keeps its claim: other workers do not retry it
        result.ran += 1
        if record["status"] != "ok":
            result.failed.append((cell.key, str(record["error"])))
            if announce:
                announce(f"{tag}: FAILED: {record['error']}")
        elif announce:
            announce(
                f"{tag}: test Dice {record['dice']:.3f} (best val Dice {_num(record['val_dice'])}, "
                f"epoch {record['best_epoch']}) in {record['cell_seconds']:.0f} s"
            )
        result.rows = collect_rows(plan)
        write_results_csv(out / "results.csv", result.rows)
    result.rows = collect_rows(plan)
    write_results_csv(out / "results.csv", result.rows)
    return samples, plan


def _run_one(
    cfg: ExperimentConfig,
    cell: Cell,
    samples: dict[str, Sample],
    out: Path,
    pre_done: dict[str, dict[str, Any]],
    pre_failed: dict[str, str],
    progress: bool,
    announce: Announce | None,
    worker: bool = False,
) -> dict[str, Any]:
    """One cell, its pretraining first; any ``Exception`` becomes a failed record (with ``error.txt``)."""
    pre = cell.pretrain
    try:
        pretrain = None
        if pre is not None:
            if pre.key in pre_failed:
                raise AngiosegError(f"pretraining {pre.key} failed: {pre_failed[pre.key]}")
            if pre.key not in pre_done:
                try:
                    if worker:
                        _claim_pretrain(pre, announce)
                    pre_done[pre.key] = ensure_pretrain(cfg, pre, samples, out, progress, announce)
                    if worker:
                        release(pre.run_dir)
                except Exception as exc:
                    pre_failed[pre.key] = f"{type(exc).__name__}: {exc}"
                    _write_error(pre.run_dir / "error.txt")
                    raise AngiosegError(f"pretraining {pre.key} failed: {pre_failed[pre.key]}") from exc
            pretrain = pre_done[pre.key]
        return run_cell(cfg, cell, pretrain, progress, announce)
    except Exception as exc:
        _write_error(cell.run_dir / "error.txt")
        msg = str(exc) if isinstance(exc, AngiosegError) else f"{type(exc).__name__}: {exc}"
        return cell_row(cell, "failed", error=msg.splitlines()[0] if msg else type(exc).__name__)


def _pretrain_finished(run: PretrainRun) -> bool:
    p = run.run_dir / "summary.json"
    return p.exists() and not json.loads(p.read_text(encoding="utf-8")).get("interrupted")


def _claim_pretrain(run: PretrainRun, announce: Announce | None) -> None:
    wait_for_claim(run.run_dir, lambda: _pretrain_finished(run), f"pretraining {run.key}", announce)


def _write_error(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(traceback.format_exc(), encoding="utf-8")


__all__ = [
    "ExperimentResult",
    "check_external_pretraining",
    "ensure_pretrain",
    "open_study",
    "run_cell",
    "run_experiment",
]
