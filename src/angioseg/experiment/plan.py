"""The grid: splits per (budget, seed), the pretraining runs the cells share, and the cells.

Folder layout under ``OUT``::

    pretrain/<method>/                     one run per method (pretrain_data = a folder) ...
    pretrain/<method>/<budget>_seed<s>/    ... or one per split (pretrain_data = split)
    pools/<budget>_seed<s>/                a split's pretraining pool (links to its images)
    pools/test/                            the test images (reconstructions of Figure 6)
    cells/<method>/<budget>/seed<s>/       a fine-tuning run folder (run_finetune) + cell.json

The splits come from :func:`angioseg.data.splits.make_splits`, the same function fine-tuning uses;
the plan writes each cell's ``splits.json`` before fine-tuning so the run reuses exactly these
splits. With a ratio budget the pretraining pool is trimmed (by a draw seeded with the cell's
seed) to at most the ratio's pretraining share.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.data.datasets import Sample
from angioseg.data.splits import SplitSpec, make_splits
from angioseg.errors import AngiosegError
from angioseg.experiment.config import NONE, SPLIT, Budget, ExperimentConfig


@dataclass
class PretrainRun:
    """A pretraining run shared by the cells whose ``pretrain`` it is."""

    method: str
    key: str
    run_dir: Path
    data: Path
    pool: list[str] | None = None  # sample names of a split pool (None: the external folder)


@dataclass
class Cell:
    """One fine-tuning run of the grid."""

    method: str
    budget: Budget
    seed: int
    run_dir: Path
    splits: dict[str, list[str]]
    pretrain: PretrainRun | None = None

    @property
    def key(self) -> str:
        return f"{self.method}/{self.budget.key}/seed{self.seed}"

    @property
    def n_labeled(self) -> int:
        return len(self.splits["finetune"])


@dataclass
class Plan:
    cells: list[Cell]
    pretrain_runs: dict[str, PretrainRun] = field(default_factory=dict)
    test_names: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-able description (``OUT/plan.json``)."""
        return {
            "test": self.test_names,
            "pretrain_runs": {
                k: {"method": r.method, "run_dir": str(r.run_dir), "data": str(r.data), "images": len(r.pool)}
                if r.pool is not None
                else {"method": r.method, "run_dir": str(r.run_dir), "data": str(r.data)}
                for k, r in self.pretrain_runs.items()
            },
            "cells": [
                {
                    "cell": c.key,
                    "method": c.method,
                    "budget": c.budget.label,
                    "seed": c.seed,
                    "counts": {k: len(v) for k, v in c.splits.items()},
                    "pretrain": c.pretrain.key if c.pretrain else None,
                }
                for c in self.cells
            ],
        }


def split_for(
    cfg: ExperimentConfig,
    names: list[str],
    budget: Budget,
    seed: int,
    groups: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """The test / val / finetune / pretrain split of one (budget, seed); ``groups`` stay whole."""
    spec = SplitSpec(
        cfg.test, cfg.val, seed=seed, test_seed=cfg.test_seed, groups=cfg.groups, **budget.split_args()
    )
    try:
        splits = make_splits(names, spec, groups)
    except AngiosegError as exc:
        raise AngiosegError(f"budget {budget.label}, seed {seed}: {exc}") from None
    if budget.pretrain is not None:
        keep = round(budget.pretrain * len(names))
        pool = splits["pretrain"]
        if len(pool) > keep:
            rng = np.random.default_rng([seed, 1])
            splits["pretrain"] = sorted(pool[i] for i in rng.permutation(len(pool))[:keep])
    return splits


def make_plan(
    cfg: ExperimentConfig, out: Path, names: list[str], groups: dict[str, str] | None = None
) -> Plan:
    """All cells, smallest label budget first (Table I is at the smallest budget), then seeds, then methods.

    ``groups`` (image name -> group, :func:`~angioseg.data.splits.image_groups`) are kept whole by
    every split.
    """
    budgets = cfg.budget_list()
    splits = {(b.key, s): split_for(cfg, names, b, s, groups) for b in budgets for s in cfg.seeds}
    budgets.sort(key=lambda b: np.mean([len(splits[(b.key, s)]["finetune"]) for s in cfg.seeds]))
    runs: dict[str, PretrainRun] = {}
    cells: list[Cell] = []
    for b in budgets:
        for s in cfg.seeds:
            sp = splits[(b.key, s)]
            for m in cfg.methods:
                pre = None
                if m != NONE:
                    if cfg.pretrain_data == SPLIT:
                        if not sp["pretrain"]:
                            raise AngiosegError(
                                f"budget {b.label}, seed {s}: the split leaves no image to pretrain on"
                            )
                        key = f"{m}/{b.key}_seed{s}"
                        data = out / "pools" / f"{b.key}_seed{s}"
                        pre = runs.setdefault(
                            key, PretrainRun(m, key, out / "pretrain" / key, data, sp["pretrain"])
                        )
                    else:
                        pre = runs.setdefault(
                            m, PretrainRun(m, m, out / "pretrain" / m, Path(cfg.pretrain_data))
                        )
                run_dir = out / "cells" / m / b.key / f"seed{s}"
                cells.append(Cell(m, b, s, run_dir, sp, pre))
    test = splits[(budgets[0].key, cfg.seeds[0])]["test"]
    return Plan(cells, runs, test)


def link_images(samples: dict[str, Sample], names: list[str], folder: Path) -> Path:
    """Make ``folder`` hold exactly the images ``names`` (symbolic links; copies where links fail).

    A frame of a multi-frame file is written as its own ``.npy`` (linking the file would bring in
    its other frames, which may belong to another split).
    """
    tmp = folder.with_name(folder.name + ".partial")
    if folder.exists():
        have = sorted(p.stem for p in folder.iterdir())
        if have == sorted(names):
            return folder
        shutil.rmtree(folder)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for n in names:
        s = samples[n]
        if s.source.stem != n:
            np.save(tmp / f"{n}.npy", s.image)
            continue
        dest = tmp / f"{n}{s.source.suffix}"
        try:
            os.symlink(s.source.resolve(), dest)
        except OSError:
            shutil.copy2(s.source, dest)
    os.replace(tmp, folder)
    return folder
