from __future__ import annotations

import json

import pytest

from angioseg.data.splits import SplitSpec, load_or_make_splits, make_splits
from angioseg.errors import AngiosegError

NAMES = [f"img{i:02d}" for i in range(40)]


def test_disjoint_and_complete() -> None:
    s = make_splits(NAMES, SplitSpec(labeled=5, seed=1))
    sets = [set(s[k]) for k in ("test", "val", "finetune", "pretrain")]
    assert sum(map(len, sets)) == 40 and set().union(*sets) == set(NAMES)
    assert len(s["test"]) == 8 and len(s["val"]) == 4 and len(s["finetune"]) == 5


def test_test_set_fixed_across_seeds_and_budgets_nested() -> None:
    a = make_splits(NAMES, SplitSpec(labeled=2, seed=3))
    b = make_splits(NAMES, SplitSpec(labeled=10, seed=3))
    c = make_splits(NAMES, SplitSpec(labeled=2, seed=4))
    assert a["test"] == b["test"] == c["test"]
    assert set(a["finetune"]) <= set(b["finetune"]) and a["val"] == b["val"]
    assert a["finetune"] != c["finetune"] or a["val"] != c["val"]


def test_fraction_and_reproducible() -> None:
    assert make_splits(NAMES, SplitSpec(fraction=0.3)) == make_splits(NAMES, SplitSpec(fraction=0.3))
    assert len(make_splits(NAMES, SplitSpec(fraction=0.3))["finetune"]) == 12


def test_too_many_labels_is_a_clear_error() -> None:
    with pytest.raises(AngiosegError, match="only 28 of the 40 remain"):
        make_splits(NAMES, SplitSpec(labeled=50))


def test_written_once_and_reused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "splits.json"
    s1 = load_or_make_splits(p, NAMES, SplitSpec(labeled=5, seed=1))
    s2 = load_or_make_splits(p, NAMES, SplitSpec(labeled=9, seed=7))  # spec ignored on reuse
    assert s1 == s2 and json.loads(p.read_text(encoding="utf-8"))["counts"]["finetune"] == 5
