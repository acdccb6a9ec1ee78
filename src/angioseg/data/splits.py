"""Seeded, disjoint test / validation / fine-tune / pretrain splits, written once to ``splits.json``.

The test set depends only on ``test_seed`` (fixed across label budgets and training seeds, as in
the paper's protocol); validation, fine-tuning and pretraining images are then drawn from one
permutation of the remaining images by ``seed``, so that for one seed a smaller label budget is a
subset of a larger one. The validation images are labeled images outside the label budget; they
choose the best epoch and are never test images.

**Groups.** Images that must not be separated (the frames of one cine run, the images of one
patient) form a group, and a split holds whole groups. The frames of one multi-frame file
(``<file>_f<NNN>``) always form a group, and so do frames exported one file each under those
names; a ``groups.csv`` (columns ``name,group``) joins more images, e.g. by patient. The draw is the one above with groups in place of images, groups ordered
by their first name: when every group has one image (an ordinary dataset of single images) the
splits are exactly those of the image-wise draw. Sizes are still counted in images:

* test and validation take the prefix of their group order whose image count is nearest to the
  asked size (at least one group);
* the label budget (``--labeled`` / ``--fraction``) is a maximum: the fine-tuning split is the
  longest prefix of the seed's group order with at most that many images, so a smaller budget is
  still a subset of a larger one for the same seed. ``splits.json`` records the counts reached.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from angioseg.errors import AngiosegError, DataError
from angioseg.utils import write_json

SPLIT_KEYS = ("test", "val", "finetune", "pretrain")
GROUP_COLUMNS = ("name", "group")
# The name angioseg gives a cine frame (<file>_f<NNN>, io.read_frames); frames exported as separate
# files under such names are kept together like the frames of one file.
EXPORTED_FRAME = re.compile(r"^(.+)_f\d{3,}$")


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
        groups: the ``groups.csv`` that joined images into groups (recorded only; the grouping
            itself is passed to :func:`make_splits`).
        test_fold: rotate the test set instead of drawing ``test``: the ``test_seed`` permutation
            of the groups is cut into ``test_folds`` consecutive folds of about equal image counts,
            and fold ``test_fold`` (0-based) is the test set; the folds are disjoint and cover every
            image once (a cross-validated label-efficiency study).
    """

    test: float = 0.2
    val: float = 0.1
    labeled: int | None = None
    fraction: float | None = None
    seed: int = 0
    test_seed: int = 42
    groups: str | None = None
    test_fold: int | None = None
    test_folds: int = 5


def _count(value: float, n: int, name: str) -> int:
    if value < 0:
        raise AngiosegError(f"--{name} must be >= 0, got {value}")
    if value < 1 or (isinstance(value, float) and not float(value).is_integer()):
        if value >= 1:
            raise AngiosegError(f"--{name} must be a fraction below 1 or a whole count, got {value}")
        return round(value * n)
    return int(value)


def _nearest(sizes: Sequence[int], target: int) -> int:
    """Number of leading groups whose image count is nearest to ``target`` (ties: fewer; >= 1 if target > 0)."""
    cum = np.concatenate([[0], np.cumsum(sizes)])
    k = int(np.argmin(np.abs(cum - target)))  # argmin keeps the first (smaller) of equal distances
    return max(k, 1) if target > 0 and len(sizes) else k


def _at_most(sizes: Sequence[int], target: int) -> int:
    """Number of leading groups holding at most ``target`` images."""
    cum = np.cumsum(sizes)
    return int(np.searchsorted(cum, target, side="right"))


def _group_units(names: list[str], groups: Mapping[str, str] | None) -> list[list[str]]:
    """The groups of ``names`` (each sorted), ordered by their first name; ungrouped names stand alone."""
    members: dict[str, list[str]] = {}
    for n in names:
        key = groups.get(n, n) if groups else n
        members.setdefault(key, []).append(n)
    return sorted((sorted(m) for m in members.values()), key=lambda m: m[0])


def _fold_bounds(sizes: Sequence[int], fold: int, folds: int) -> tuple[int, int]:
    """Group indices ``[lo, hi)`` of fold ``fold`` of ``folds`` consecutive folds of about equal image counts."""
    if folds < 2 or not 0 <= fold < folds:
        raise AngiosegError(
            f"test fold must be in 0..{folds - 1} with at least 2 folds, got {fold} of {folds}"
        )
    if len(sizes) < folds:
        raise AngiosegError(f"{folds} test folds need at least {folds} groups, got {len(sizes)}")
    total = sum(sizes)
    cuts = [0] + [_nearest(sizes, round(k * total / folds)) for k in range(1, folds)] + [len(sizes)]
    lo, hi = cuts[fold], cuts[fold + 1]
    if hi <= lo:
        raise AngiosegError(f"test fold {fold} of {folds} is empty (groups too large for {folds} folds)")
    return lo, hi


def make_splits(
    names: Sequence[str], spec: SplitSpec, groups: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Split ``names`` into disjoint test / val / finetune / pretrain lists (each sorted).

    Args:
        names: image names.
        spec: sizes and seeds.
        groups: image name -> group id (see :func:`image_groups`); the images of a group always
            share a split. Names it does not list are groups of their own.
    """
    names = sorted(set(names))
    n = len(names)
    if n == 0:
        raise AngiosegError("cannot split an empty dataset")
    units = _group_units(names, groups)
    n_test = _count(spec.test, n, "test")
    if n_test >= n:
        raise AngiosegError(f"the test split ({n_test}) leaves no image of the {n} for training")
    rng = np.random.default_rng(spec.test_seed)
    order = [units[i] for i in rng.permutation(len(units))]
    if spec.test_fold is not None:
        lo, hi = _fold_bounds([len(u) for u in order], spec.test_fold, spec.test_folds)
        test = [x for u in order[lo:hi] for x in u]
        rest = sorted(order[:lo] + order[hi:], key=lambda u: u[0])
    else:
        k_test = _nearest([len(u) for u in order], n_test)
        if k_test >= len(order):
            raise AngiosegError(
                f"the test split ({n_test} images, in whole groups) leaves no group of the {len(units)} "
                "for training; use finer groups or a smaller --test"
            )
        test = [x for u in order[:k_test] for x in u]
        rest = sorted(order[k_test:], key=lambda u: u[0])
    rng = np.random.default_rng(spec.seed)
    rest = [rest[i] for i in rng.permutation(len(rest))]
    sizes = [len(u) for u in rest]
    n_rest = sum(sizes)
    n_val = max(1, _count(spec.val, n, "val")) if len(rest) > 1 else 0
    k_val = _nearest(sizes, n_val)
    n_val = sum(sizes[:k_val])
    available = n_rest - n_val
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
            f"remain after {len(test)} test and {n_val} validation images"
        )
    k_ft = _at_most(sizes[k_val:], n_ft)
    if k_ft == 0 and n_ft > 0:
        first = rest[k_val]
        raise AngiosegError(
            f"--labeled/--fraction allows {n_ft} fine-tuning image(s), but groups are kept whole and the "
            f"next group in the seed's order ({first[0]!r} ...) has {len(first)}; raise the budget or "
            "use finer groups"
        )
    splits = {
        "test": sorted(test),
        "val": sorted(x for u in rest[:k_val] for x in u),
        "finetune": sorted(x for u in rest[k_val : k_val + k_ft] for x in u),
        "pretrain": sorted(x for u in rest[k_val + k_ft :] for x in u),
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


def straddling_groups(splits: dict[str, list[str]], groups: Mapping[str, str]) -> list[str]:
    """Group ids whose images lie in more than one split."""
    where: dict[str, set[str]] = {}
    for key in SPLIT_KEYS:
        for name in splits.get(key, []):
            if name in groups:
                where.setdefault(groups[name], set()).add(key)
    return sorted(g for g, keys in where.items() if len(keys) > 1)


def read_groups_csv(path: str | Path) -> dict[str, str]:
    """``name -> group`` from a CSV with the header ``name,group`` (other columns are ignored).

    Raises:
        DataError: a missing or unreadable file, a missing column, an empty cell, or a name listed
            twice with different groups (naming the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "groups file does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in GROUP_COLUMNS if c not in header]
            if missing:
                raise DataError(
                    path, f"expected a CSV with the columns name,group; the header {header} lacks {missing}"
                )
            out: dict[str, str] = {}
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
                name, group = row.get("name", ""), row.get("group", "")
                if not name and not group:
                    continue  # blank line
                if not name or not group:
                    raise DataError(path, f"line {reader.line_num}: empty name or group")
                if out.get(name, group) != group:
                    raise DataError(
                        path, f"line {reader.line_num}: {name!r} is in group {out[name]!r} and {group!r}"
                    )
                out[name] = group
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"not a readable CSV ({exc.__class__.__name__}: {exc})") from None
    if not out:
        raise DataError(path, "groups file lists no image")
    return out


def image_groups(sources: Mapping[str, str | Path], groups_csv: str | Path | None = None) -> dict[str, str]:
    """``image name -> group id``: the frames of one file form a group, joined further by ``groups_csv``.

    Frames exported one file each under angioseg's frame names (``run_f000.png``, ``run_f001.png``)
    also form a group (``run``).

    Args:
        sources: every image name of the dataset -> the file it was read from.
        groups_csv: optional ``name,group`` CSV (:func:`read_groups_csv`); a name there is an image
            name (``cine_f003``), a file stem (``cine``) or a file name (``cine.dcm``), the latter
            two standing for all the file's frames. Groups that share a file are merged.

    Raises:
        DataError: the CSV names something that is not in the dataset (or is malformed).
    """
    parent = {n: n for n in sources}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_file: dict[str, list[str]] = {}
    for name, src in sources.items():
        by_file.setdefault(str(src), []).append(name)
    exported: dict[str, list[str]] = {}  # cine frames exported one file each: <run>_f<NNN>.png
    for name in sources:
        m = EXPORTED_FRAME.match(name)
        if m:
            exported.setdefault(m.group(1), []).append(name)
    for frames in exported.values():
        for f in frames[1:]:
            union(frames[0], f)
    alias: dict[str, list[str]] = {}
    for src, frames in by_file.items():
        for f in frames[1:]:
            union(frames[0], f)
        for key in (Path(src).stem, Path(src).name):
            alias.setdefault(key, []).extend(frames)
    for name in sources:
        alias[name] = [name]
    if groups_csv is not None:
        table = read_groups_csv(groups_csv)
        unknown = sorted(k for k in table if k not in alias)
        if unknown:
            raise DataError(
                Path(groups_csv),
                f"{len(unknown)} name(s) are not images or files of the dataset, e.g. {unknown[:3]}",
            )
        first: dict[str, str] = {}
        for key, group in table.items():
            for name in alias[key]:
                union(first.setdefault(group, name), name)
    return {n: find(n) for n in sources}


def load_or_make_splits(
    path: str | Path,
    names: Sequence[str],
    spec: SplitSpec,
    groups: Mapping[str, str] | None = None,
    write: bool = True,
) -> dict[str, list[str]]:
    """Reuse ``path`` (``splits.json``) when it exists, else make the splits and write them there.

    ``write=False`` (a DDP process other than rank 0) makes the same splits without writing them.

    ``splits.json`` holds the four splits, the spec, the image counts and the groups of more than one
    image among ``names``. A reused file whose splits separate a group gives a warning.
    """
    path = Path(path)
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        splits = {k: list(data[k]) for k in SPLIT_KEYS}
        check_disjoint(splits)
        missing = sorted(set().union(*map(set, splits.values())) - set(names))
        if missing:
            raise AngiosegError(f"{path}: names no longer in the dataset, e.g. {missing[:3]}")
        if groups:
            split_up = straddling_groups(splits, groups)
            if split_up:
                warnings.warn(
                    f"{path}: these splits (made earlier) put images of one group into several splits, "
                    f"e.g. the group of {split_up[0]!r}; start a new run to split by group",
                    stacklevel=2,
                )
        return splits
    splits = make_splits(names, spec, groups)
    record: dict[str, object] = {
        **splits,
        "spec": asdict(spec),
        "counts": {k: len(v) for k, v in splits.items()},
    }
    if groups:
        record["groups"] = group_record(names, groups)
    if write:
        write_json(path, record)
    return splits


def group_record(names: Sequence[str], groups: Mapping[str, str]) -> dict[str, list[str]]:
    """The groups of more than one image among ``names``, for ``splits.json`` (group id -> names)."""
    members: dict[str, list[str]] = {}
    for n in sorted(set(names)):
        members.setdefault(groups.get(n, n), []).append(n)
    return {g: m for g, m in sorted(members.items()) if len(m) > 1}
