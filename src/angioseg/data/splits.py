"""Seeded, disjoint test / validation / fine-tune / pretrain splits, written once to ``splits.json``.

The test set depends only on ``test_seed`` (fixed across label budgets and training seeds, as in
the paper's protocol); validation, fine-tuning and pretraining images are then drawn from one
permutation of the remaining images by ``seed``, so that for one seed a smaller label budget is a
subset of a larger one. The validation images are labeled images outside the label budget; they
choose the best epoch and are never test images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from angioseg.errors import AngiosegError
from angioseg.utils import write_json

SPLIT_KEYS = ("test", "val", "finetune", "pretrain")


@dataclass
class SplitSpec:
    """How to split. Fractions are of all images; integers >= 1 are counts.

    Attributes:
        test: test images (paper: 0.2).
        val: validation images (at least 1 when there is anything to fine-tune).
        labeled: fine-tuning images as a count (``--labeled 5``) ...
        fraction: ... or as a fraction of all images (``--fraction 0.3``); neither = all remaining.
        seed: draws validation / fine-tune / pretrain.
        test_seed: draws the test set.
    """

    test: float = 0.2
    val: float = 0.1
    labeled: int | None = None
    fraction: float | None = None
    seed: int = 0
    test_seed: int = 42


def _count(value: float, n: int, name: str) -> int:
    if value < 0:
        raise AngiosegError(f"--{name} must be >= 0, got {value}")
    if value < 1 or (isinstance(value, float) and not float(value).is_integer()):
        if value >= 1:
            raise AngiosegError(f"--{name} must be a fraction below 1 or a whole count, got {value}")
        return round(value * n)
    return int(value)


def make_splits(names: Sequence[str], spec: SplitSpec) -> dict[str, list[str]]:
    """Split ``names`` into disjoint test / val / finetune / pretrain lists (each sorted)."""
    names = sorted(set(names))
    n = len(names)
    if n == 0:
        raise AngiosegError("cannot split an empty dataset")
    n_test = _count(spec.test, n, "test")
    if n_test >= n:
        raise AngiosegError(f"the test split ({n_test}) leaves no image of the {n} for training")
    rng = np.random.default_rng(spec.test_seed)
    order = rng.permutation(n)
    test = [names[i] for i in order[:n_test]]
    rest = sorted(names[i] for i in order[n_test:])
    rng = np.random.default_rng(spec.seed)
    rest = [rest[i] for i in rng.permutation(len(rest))]
    n_val = max(1, _count(spec.val, n, "val")) if len(rest) > 1 else 0
    available = len(rest) - n_val
    if spec.labeled is not None and spec.fraction is not None:
        raise AngiosegError("give --labeled or --fraction, not both")
    if spec.labeled is not None:
        n_ft = int(spec.labeled)
        if n_ft < 1:
            raise AngiosegError(f"--labeled must be at least 1, got {n_ft}")
    elif spec.fraction is not None:
        n_ft = max(1, _count(spec.fraction, n, "fraction"))
    else:
        n_ft = available
    if n_ft > available:
        raise AngiosegError(
            f"--labeled/--fraction asks for {n_ft} fine-tuning images, but only {available} of the {n} "
            f"remain after {n_test} test and {n_val} validation images"
        )
    splits = {
        "test": sorted(test),
        "val": sorted(rest[:n_val]),
        "finetune": sorted(rest[n_val : n_val + n_ft]),
        "pretrain": sorted(rest[n_val + n_ft :]),
    }
    check_disjoint(splits)
    return splits


def check_disjoint(splits: dict[str, list[str]]) -> None:
    seen: dict[str, str] = {}
    for key in SPLIT_KEYS:
        for name in splits.get(key, []):
            if name in seen:
                raise AngiosegError(f"image {name!r} is in both the {seen[name]} and the {key} split")
            seen[name] = key


def load_or_make_splits(path: str | Path, names: Sequence[str], spec: SplitSpec) -> dict[str, list[str]]:
    """Reuse ``path`` (``splits.json``) when it exists, else make the splits and write them there."""
    path = Path(path)
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        splits = {k: list(data[k]) for k in SPLIT_KEYS}
        check_disjoint(splits)
        missing = sorted(set().union(*map(set, splits.values())) - set(names))
        if missing:
            raise AngiosegError(f"{path}: names no longer in the dataset, e.g. {missing[:3]}")
        return splits
    splits = make_splits(names, spec)
    write_json(path, {**splits, "spec": asdict(spec), "counts": {k: len(v) for k, v in splits.items()}})
    return splits
