from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from angioseg.data.splits import (
    SplitSpec,
    image_groups,
    load_or_make_splits,
    make_splits,
    straddling_groups,
)
from angioseg.errors import AngiosegError, DataError

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


# --- groups: frames of one file, groups.csv -------------------------------------------------------


def _old_make_splits(names: list[str], spec: SplitSpec) -> dict[str, list[str]]:
    """The image-wise draw before groups existed (commit df27e83), kept verbatim to pin the splits."""
    names = sorted(set(names))
    n = len(names)
    n_test = round(spec.test * n) if spec.test < 1 else int(spec.test)
    rng = np.random.default_rng(spec.test_seed)
    order = rng.permutation(n)
    test = [names[i] for i in order[:n_test]]
    rest = sorted(names[i] for i in order[n_test:])
    rng = np.random.default_rng(spec.seed)
    rest = [rest[i] for i in rng.permutation(len(rest))]
    n_val = max(1, round(spec.val * n) if spec.val < 1 else int(spec.val)) if len(rest) > 1 else 0
    if spec.labeled is not None:
        n_ft = spec.labeled
    elif spec.fraction is not None:
        n_ft = max(1, round(spec.fraction * n))
    else:
        n_ft = len(rest) - n_val
    return {
        "test": sorted(test),
        "val": sorted(rest[:n_val]),
        "finetune": sorted(rest[n_val : n_val + n_ft]),
        "pretrain": sorted(rest[n_val + n_ft :]),
    }


CIMAT = [f"training_{i:02d}" for i in range(1, 41)]


@pytest.mark.parametrize("names", [CIMAT, NAMES, [f"case{i}" for i in range(13)]])
@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_single_image_groups_give_the_old_splits(tmp_path: Path, names: list[str], seed: int) -> None:
    # one file per image (the ordinary dataset) -> identical to the image-wise draw, for every budget
    groups = image_groups({n: tmp_path / f"{n}.png" for n in names})
    budgets: list[dict[str, object]] = [{"labeled": k} for k in (1, 2, 3, 5)] + [{"fraction": 0.3}, {}]
    previous: set[str] = set()
    for budget in budgets[:4]:
        spec = SplitSpec(seed=seed, **budget)
        new = make_splits(names, spec, groups)
        assert new == _old_make_splits(names, spec) == make_splits(names, spec)
        assert previous <= set(new["finetune"])  # smaller budgets stay subsets of larger ones
        previous = set(new["finetune"])
    for budget in budgets[4:]:
        spec = SplitSpec(seed=seed, **budget)
        assert make_splits(names, spec, groups) == _old_make_splits(names, spec)


def test_cimat_test_split_is_pinned() -> None:
    # the published test images of XCA (CIMAT, 40 images): test_seed 42, 20 %
    s = make_splits(CIMAT, SplitSpec(labeled=5, seed=0))
    assert s["test"] == [f"training_{i:02d}" for i in (5, 6, 8, 17, 19, 33, 38, 40)]
    assert s["val"] == [f"training_{i:02d}" for i in (3, 15, 27, 31)]
    assert s["finetune"] == [f"training_{i:02d}" for i in (7, 14, 22, 29, 36)]


def _cines(tmp_path, n_files: int = 3, n_frames: int = 6) -> dict[str, Path]:
    return {f"run{c}_f{f:03d}": tmp_path / f"run{c}.dcm" for c in range(n_files) for f in range(n_frames)}


def _split_of(splits: dict[str, list[str]]) -> dict[str, str]:
    return {name: key for key, names in splits.items() for name in names}


@pytest.mark.parametrize("seed", range(6))
def test_frames_of_a_cine_never_straddle_splits(tmp_path: Path, seed: int) -> None:
    sources = _cines(tmp_path)
    groups = image_groups(sources)
    s = make_splits(list(sources), SplitSpec(test=0.3, val=0.3, seed=seed), groups)
    where = _split_of(s)
    for c in range(3):
        assert len({where[f"run{c}_f{f:03d}"] for f in range(6)}) == 1, s
    assert len(s["test"]) == 6 and len(s["val"]) == 6 and len(s["finetune"]) == 6
    # the image-wise draw would have cut the runs apart
    old = _split_of(_old_make_splits(list(sources), SplitSpec(test=0.3, val=0.3, seed=seed)))
    assert any(len({old[f"run{c}_f{f:03d}"] for f in range(6)}) > 1 for c in range(3))


def test_frames_exported_one_file_each_stay_together(tmp_path: Path) -> None:
    """PNG exports of cine frames (run0_f000.png, ...) are grouped by their run, like a cine file."""
    sources = {f"run{c}_f{f:03d}": tmp_path / f"run{c}_f{f:03d}.png" for c in range(3) for f in range(6)}
    sources["training_01"] = tmp_path / "training_01.png"  # an ordinary name stays alone
    groups = image_groups(sources)
    assert len({groups[f"run1_f{f:03d}"] for f in range(6)}) == 1
    assert groups["run0_f000"] != groups["run1_f000"] and groups["training_01"] == "training_01"
    for seed in range(4):
        where = _split_of(make_splits(list(sources), SplitSpec(test=0.3, val=0.3, seed=seed), groups))
        for c in range(3):
            assert len({where[f"run{c}_f{f:03d}"] for f in range(6)}) == 1


def test_label_budget_counts_images_and_stays_nested(tmp_path: Path) -> None:
    sources = {f"run{c}_f{f:03d}": tmp_path / f"run{c}.dcm" for c in range(10) for f in range(2)}
    sources.update({f"single{i}": tmp_path / f"single{i}.png" for i in range(5)})
    groups = image_groups(sources)
    prev: set[str] = set()
    for labeled in range(2, 12):
        s = make_splits(list(sources), SplitSpec(labeled=labeled, seed=3), groups)
        assert labeled - 1 <= len(s["finetune"]) <= labeled  # at most the budget, whole groups (of <= 2)
        assert prev <= set(s["finetune"])
        prev = set(s["finetune"])
        assert not straddling_groups(s, groups)


def test_budget_smaller_than_a_group_is_a_clear_error(tmp_path: Path) -> None:
    sources = _cines(tmp_path, 4, 5)
    with pytest.raises(AngiosegError, match="groups are kept whole.*has 5"):
        make_splits(list(sources), SplitSpec(test=0.25, val=0.25, labeled=2), image_groups(sources))
    with pytest.raises(AngiosegError, match="leaves no group"):
        make_splits(list(sources)[:5], SplitSpec(test=0.2), image_groups(sources))


def test_groups_csv_keeps_a_patient_together(tmp_path: Path) -> None:
    names = [f"p{p}_img{i}" for p in range(8) for i in range(3)]
    sources = {n: tmp_path / f"{n}.png" for n in names}
    csv_path = tmp_path / "groups.csv"
    csv_path.write_text("name,group\n" + "".join(f"{n},patient{n[1]}\n" for n in names), encoding="utf-8")
    groups = image_groups(sources, csv_path)
    for seed in range(4):
        s = make_splits(names, SplitSpec(test=0.25, seed=seed, groups=str(csv_path)), groups)
        where = _split_of(s)
        for p in range(8):
            assert len({where[f"p{p}_img{i}"] for i in range(3)}) == 1
        assert len(s["test"]) == 6


def test_groups_csv_by_file_name_joins_whole_cines(tmp_path: Path) -> None:
    sources = _cines(tmp_path, 4, 2)
    csv_path = tmp_path / "groups.csv"
    csv_path.write_text("name,group\nrun0.dcm,A\nrun1,A\nrun2_f000,B\n", encoding="utf-8")
    g = image_groups(sources, csv_path)
    assert len({g[f"run{c}_f{f:03d}"] for c in (0, 1) for f in (0, 1)}) == 1
    assert g["run2_f000"] == g["run2_f001"] != g["run0_f000"] and g["run3_f000"] != g["run2_f000"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,group\nrun0,A\nnobody.dcm,B\n", r"not images or files of the dataset.*nobody\.dcm"),
        ("image;patient\nrun0;A\n", "columns name,group"),
        ("name,group\nrun0,\n", "line 2: empty name or group"),
        ("name,group\nrun0,A\nrun0,B\n", "line 3: 'run0' is in group 'A' and 'B'"),
        ("name,group\n", "lists no image"),
    ],
)
def test_bad_groups_csv_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    csv_path = tmp_path / "groups.csv"
    csv_path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        image_groups(_cines(tmp_path, 2, 2), csv_path)
    assert str(csv_path) in str(err.value)
    with pytest.raises(DataError, match="does not exist"):
        image_groups(_cines(tmp_path, 2, 2), tmp_path / "missing.csv")


def test_splits_json_records_groups_and_spec(tmp_path: Path) -> None:
    sources = _cines(tmp_path, 5, 2)
    groups = image_groups(sources)
    p = tmp_path / "splits.json"
    load_or_make_splits(p, sorted(sources), SplitSpec(labeled=2, groups="g.csv"), groups)
    data = json.loads(p.read_text(encoding="utf-8"))
    assert data["spec"]["groups"] == "g.csv"
    assert sorted(data["groups"].values()) == [[f"run{c}_f000", f"run{c}_f001"] for c in range(5)]


@pytest.mark.realdata
def test_cimat_dataset_on_disk_keeps_its_splits() -> None:
    # the real folder (one PNG per image): file groups change nothing, for any seed or budget
    from angioseg.data.datasets import load_dataset
    from tests.conftest import shared_data

    samples = load_dataset(shared_data("xca_cimat40"))
    names = [s.name for s in samples]
    groups = image_groups({s.name: s.source for s in samples})
    assert sorted(names) == CIMAT
    for seed in (0, 1, 2):
        for labeled in (1, 5, 10, 28):
            spec = SplitSpec(labeled=labeled, seed=seed)
            assert make_splits(names, spec, groups) == _old_make_splits(names, spec)
    assert make_splits(names, SplitSpec(labeled=5), groups)["test"] == make_splits(CIMAT, SplitSpec())["test"]
