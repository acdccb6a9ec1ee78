"""The study runner: budgets, config, grid planning, results, report documents, and the CLI end to end."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from angioseg.data.splits import image_groups
from angioseg.errors import AngiosegError
from angioseg.experiment.config import (
    Budget,
    check_same_study,
    experiment_from_dict,
    load_experiment,
    parse_budget,
    resolve_paths,
)
from angioseg.experiment.document import Document, to_html, to_markdown
from angioseg.experiment.plan import link_images, make_plan
from angioseg.experiment.results import (
    choose_best,
    mean_sd,
    paired_differences,
    read_results_csv,
    relative_drop,
    write_results_csv,
)
from tests.conftest import run_cli

# --- budgets and config -----------------------------------------------------------------------------


def test_parse_budget_kinds() -> None:
    assert parse_budget(5) == Budget("count", 5)
    assert parse_budget("5") == Budget("count", 5)
    assert parse_budget(0.3) == Budget("fraction", 0.3)
    b = parse_budget("79-1")
    assert (b.kind, b.finetune, b.pretrain) == ("ratio", 0.01, 0.79)
    assert (b.key, b.label) == ("pt79-ft1", "79-1")
    assert (parse_budget(18).key, parse_budget(0.3).key, parse_budget(0.3).label) == ("n18", "f0.3", "30%")
    assert parse_budget(18).split_args() == {"labeled": 18, "fraction": None}
    assert b.split_args() == {"labeled": None, "fraction": 0.01}


@pytest.mark.parametrize("bad", [0, -2, 1.5, "many", "70-20", True])
def test_parse_budget_rejects(bad: object) -> None:
    # "70-20" + 20 % test = 110 % of the images
    with pytest.raises(AngiosegError, match="budget"):
        parse_budget(bad)


def _cfg(**kw: object) -> dict[str, object]:
    return {"labeled_data": "labeled", "methods": ["none", "mae"], "budgets": [2], "seeds": [0], **kw}


def test_config_errors_are_one_clear_line() -> None:
    with pytest.raises(AngiosegError, match="unknown method"):
        experiment_from_dict(_cfg(methods=["none", "simclr"]))
    with pytest.raises(AngiosegError, match=r"finetune\.seed is set by the experiment"):
        experiment_from_dict(_cfg(finetune={"seed": 3}))
    with pytest.raises(AngiosegError, match=r"unknown option\(s\) \['epoch'\]"):
        experiment_from_dict(_cfg(finetune={"epoch": 3}))
    with pytest.raises(AngiosegError, match="listed twice"):
        experiment_from_dict(_cfg(budgets=[2, "2"]))
    with pytest.raises(AngiosegError, match="labeled_data is required"):
        experiment_from_dict({"methods": ["none"]})


def test_load_resolve_and_same_study(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(_cfg(pretrain_data="unl", finetune={"epochs": 3})))
    cfg = resolve_paths(load_experiment(path), base=tmp_path)
    assert cfg.labeled_data == str(tmp_path / "labeled") and cfg.pretrain_data == str(tmp_path / "unl")
    assert cfg.finetune.epochs == 3 and cfg.methods == ["none", "mae"]
    grown = experiment_from_dict(_cfg(pretrain_data="unl", finetune={"epochs": 3}, seeds=[0, 1]))
    check_same_study(load_experiment(path), grown, "x")  # more seeds: allowed
    changed = experiment_from_dict(_cfg(pretrain_data="unl", finetune={"epochs": 4}))
    with pytest.raises(AngiosegError, match=r"differs .* in \['finetune'\]"):
        check_same_study(load_experiment(path), changed, "x")
    with pytest.raises(AngiosegError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")


# --- planning ---------------------------------------------------------------------------------------

NAMES = [f"img{i:03d}" for i in range(100)]


def test_plan_ratio_splits_follow_the_paper(tmp_path: Path) -> None:
    cfg = experiment_from_dict(_cfg(pretrain_data="split", budgets=["50-30", "79-1", "40-10"], seeds=[0, 1]))
    plan = make_plan(cfg, tmp_path, NAMES)
    by = {(c.budget.label, c.seed, c.method): c for c in plan.cells}
    for seed in (0, 1):
        # 100 images: 20 test, 10 validation; the pool is the rest, trimmed to the PT share
        assert {k: len(v) for k, v in by[("79-1", seed, "mae")].splits.items()} == {
            "test": 20, "val": 10, "finetune": 1, "pretrain": 69,
        }  # fmt: skip
        assert len(by[("50-30", seed, "mae")].splits["pretrain"]) == 40
        assert len(by[("40-10", seed, "mae")].splits["pretrain"]) == 40  # 60 left, trimmed to 40 %
        for c in plan.cells:
            sets = [set(v) for v in c.splits.values()]
            assert sum(map(len, sets)) == len(set().union(*sets))  # disjoint
    tests = {tuple(c.splits["test"]) for c in plan.cells}
    assert len(tests) == 1 and plan.test_names == list(next(iter(tests)))  # one fixed test set
    # smallest budget first; one pretraining run per (budget, seed) split, shared by nothing else
    assert [c.budget.label for c in plan.cells][:4] == ["79-1"] * 4
    assert sorted(plan.pretrain_runs) == sorted(
        f"mae/{b}_seed{s}" for b in ("pt50-ft30", "pt79-ft1", "pt40-ft10") for s in (0, 1)
    )
    assert by[("79-1", 0, "none")].pretrain is None
    assert by[("79-1", 0, "mae")].pretrain.pool == by[("79-1", 0, "mae")].splits["pretrain"]


def test_plan_external_pretraining_is_shared(tmp_path: Path) -> None:
    cfg = experiment_from_dict(_cfg(pretrain_data=str(tmp_path / "unl"), budgets=[2, 5], seeds=[0, 1, 2]))
    plan = make_plan(cfg, tmp_path, NAMES)
    assert len(plan.cells) == 2 * 2 * 3 and list(plan.pretrain_runs) == ["mae"]
    assert {id(c.pretrain) for c in plan.cells if c.method == "mae"} == {id(plan.pretrain_runs["mae"])}
    for seed in (0, 1, 2):  # for one seed the smaller budget's images are part of the larger one's
        small, large = (
            next(c for c in plan.cells if c.seed == seed and c.budget.label == b) for b in ("2", "5")
        )
        assert set(small.splits["finetune"]) < set(large.splits["finetune"])
        assert small.splits["val"] == large.splits["val"]


def test_plan_keeps_groups_whole_in_every_cell(tmp_path: Path) -> None:
    # 25 patients of 4 images each (groups.csv, resolved against the config's folder)
    names = [f"p{p:02d}_{i}" for p in range(25) for i in range(4)]
    (tmp_path / "groups.csv").write_text(
        "name,group\n" + "".join(f"{n},{n[:3]}\n" for n in names), encoding="utf-8"
    )
    cfg = resolve_paths(
        experiment_from_dict(_cfg(pretrain_data="split", budgets=[8, "70-10"], groups="groups.csv")), tmp_path
    )
    assert cfg.groups == str(tmp_path / "groups.csv")
    groups = image_groups({n: tmp_path / f"{n}.png" for n in names}, cfg.groups)
    plan = make_plan(cfg, tmp_path, names, groups)
    for c in plan.cells:
        where = {n: k for k, v in c.splits.items() for n in v}
        assert all(
            len({where[f"p{p:02d}_{i}"] for i in range(4) if f"p{p:02d}_{i}" in where}) == 1
            for p in range(25)
        )
        assert len(c.splits["test"]) == 20
    assert {len(c.splits["finetune"]) for c in plan.cells if c.budget.label == "8"} == {8}
    assert {len(c.splits["finetune"]) for c in plan.cells if c.budget.label == "70-10"} == {8}  # <= 10
    with pytest.raises(AngiosegError, match="budget 79-1, seed 0: .*groups are kept whole"):
        make_plan(replace(cfg, budgets=["79-1"]), tmp_path, names, groups)  # 1 image < a group of 4
    with pytest.raises(AngiosegError, match=r"finetune\.groups is set by the experiment"):
        experiment_from_dict(_cfg(finetune={"groups": "g.csv"}))


def test_plan_too_large_budget_names_it(tmp_path: Path) -> None:
    cfg = experiment_from_dict(_cfg(budgets=[80]))
    with pytest.raises(AngiosegError, match="budget 80, seed 0: .*asks for 80 fine-tuning images"):
        make_plan(cfg, tmp_path, NAMES)


def test_link_images_makes_exactly_the_pool(synth_dir: Path, tmp_path: Path) -> None:
    from angioseg.data.datasets import load_dataset

    samples = {s.name: s for s in load_dataset(synth_dir)}
    names = sorted(samples)[:3]
    folder = link_images(samples, names, tmp_path / "pool")
    assert sorted(p.stem for p in folder.iterdir()) == names
    assert (folder / f"{names[0]}.png").read_bytes() == samples[names[0]].source.read_bytes()
    link_images(samples, names[:2], folder)  # a different pool replaces it
    assert sorted(p.stem for p in folder.iterdir()) == names[:2]


# --- results ----------------------------------------------------------------------------------------


def _row(method: str, budget: str, seed: int, dice: float, val: float, n: int = 2) -> dict[str, object]:
    return {
        "method": method,
        "budget": budget,
        "n_labeled": n,
        "seed": seed,
        "status": "ok",
        "dice": dice,
        "val_dice": val,
    }


def test_statistics_and_honest_best() -> None:
    rows = [
        _row("none", "2", 0, 0.40, 0.50),
        _row("none", "2", 1, 0.50, 0.52),
        _row("mae", "2", 0, 0.70, 0.55),  # best on test ...
        _row("mae", "2", 1, 0.60, 0.56),
        _row("moco", "2", 0, 0.45, 0.70),  # ... but moco is best on validation
        _row("moco", "2", 1, 0.55, 0.72),
        {**_row("moco", "2", 2, 0.0, 0.0), "status": "failed"},
        _row("none", "20", 0, 0.80, 0.8, 20),
        _row("none", "20", 1, 0.80, 0.8, 20),
    ]
    assert choose_best(rows, "2") == ("moco", pytest.approx(0.71))
    mean, sd, n = mean_sd([0.4, 0.5, None, float("nan")])
    assert (mean, n) == (pytest.approx(0.45), 2) and sd == pytest.approx(0.0707107, rel=1e-5)
    assert paired_differences(rows, "mae", "2") == pytest.approx([0.30, 0.10])
    assert relative_drop(rows, "none", "20", "2") == pytest.approx((0.80 - 0.45) / 0.80)
    assert mean_sd([])[2] == 0


def test_results_csv_round_trip(tmp_path: Path) -> None:
    rows = [{**_row("mae", "79-1", 0, 0.5, 0.6, 18), "error": "", "pcc": float("nan"), "run_dir": "x"}]
    write_results_csv(tmp_path / "r.csv", rows)
    back = read_results_csv(tmp_path / "r.csv")[0]
    assert (back["method"], back["budget"], back["n_labeled"], back["dice"], back["pcc"]) == (
        "mae",
        "79-1",
        18,
        0.5,
        None,
    )


def test_document_renders_markdown_and_self_contained_html(tmp_path: Path) -> None:
    from angioseg.data.io import write_png

    write_png(tmp_path / "figures" / "f.png", __import__("numpy").eye(4, dtype=bool))
    doc = Document("T <1>")
    doc.para("a `code|x` and **bold** <b> *it*")
    doc.table(["m", "v|w"], [["a", "1"]])
    doc.image(tmp_path / "figures" / "f.png", "cap")
    md = to_markdown(doc, tmp_path)
    assert "![cap](figures/f.png)" in md and "| m | v\\|w |" in md
    page = to_html(doc)
    assert (
        "<code>code|x</code>" in page
        and "<strong>bold</strong>" in page
        and "&lt;b&gt;" in page
        and "<em>it</em>" in page
    )
    assert 'src="data:image/png;base64,' in page and "figures/f.png" not in page


# --- end to end on synthetic data -------------------------------------------------------------------

TINY = {
    "name": "tiny",
    "methods": ["none", "mae", "genesis"],
    "budgets": [3, 2],
    "seeds": [0, 1],
    "test": 0.25,
    "val": 2,
    "width": 4,
    "image_size": 32,
    "finetune": {"epochs": 1, "batch_size": 2, "min_steps_per_epoch": 2, "patience": 0, "precision": "fp32"},
    "pretrain": {"epochs": 1, "batch_size": 4, "precision": "fp32"},
    # a typo in genesis' options makes its pretraining, hence its 4 cells, fail
    "method_options": {"genesis": {"options": {"flip_rat": 0.5}}},
    "report": {"examples": 2, "reconstructions": 2},
}


@pytest.fixture(scope="module")
def study(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    from angioseg.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("study")
    write_synthetic_dataset(root / "unlabeled", 6, size=96, seed=7)
    cfg = root / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {**TINY, "labeled_data": str(synth_dir), "pretrain_data": str(root / "unlabeled" / "images")}
        )
    )
    out = root / "out"
    return cfg, out, run_cli(["experiment", cfg, "--out", out, "--no-progress"])


def test_experiment_end_to_end_writes_every_file(study: tuple[Path, Path, int]) -> None:
    _, out, code = study
    assert code == 1  # some cells failed (genesis), the others finished
    for name in ("results.csv", "report.md", "report.html", "experiment.yaml", "plan.json", "runs.json"):
        assert (out / name).is_file(), name
    rows = read_results_csv(out / "results.csv")
    assert [(r["method"], r["budget"], r["seed"]) for r in rows] == [
        (m, b, s) for b in ("2", "3") for s in (0, 1) for m in ("none", "mae", "genesis")
    ]
    good = [r for r in rows if r["method"] != "genesis"]
    assert all(
        r["status"] == "ok" and 0 <= r["dice"] <= 1 and r["n_test"] == 6 and r["error"] is None for r in good
    )
    assert {r["n_pretrain"] for r in good if r["method"] == "mae"} == {6}  # one shared run on the 6 images
    assert sorted(p.name for p in (out / "pretrain").iterdir()) == ["genesis", "mae"]
    from PIL import Image

    for fig in ("fig3_dice_vs_labels", "fig4_diameters", "fig5_examples", "fig6_reconstructions"):
        with Image.open(out / "figures" / f"{fig}.png") as im:
            assert im.format == "PNG" and min(im.size) > 100
    md = (out / "report.md").read_text(encoding="utf-8")
    for text in (
        "Table I analogue: 2 labeled images",
        "figures/fig3_dice_vs_labels.png",
        "**mae**",
        "## Failed cells",
    ):
        assert text in md
    page = (out / "report.html").read_text(encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "report.html").stat().st_mode & 0o777 == 0o666 & ~umask  # not private like mkstemp's
    assert page.count('src="data:image/png;base64,') == 4 and "<table>" in page
    assert json.loads((out / "runs.json").read_text(encoding="utf-8"))[0]["ran"] == 12


def test_failed_cells_are_recorded_and_the_rest_go_on(study: tuple[Path, Path, int]) -> None:
    _, out, _ = study
    with open(out / "results.csv", newline="") as fh:
        failed = [r for r in csv.DictReader(fh) if r["status"] == "failed"]
    assert [r["method"] for r in failed] == ["genesis"] * 4
    assert all(
        r["error"].startswith("pretraining genesis failed") and "flip_rat" in r["error"] for r in failed
    )
    assert (out / "cells" / "genesis" / "n2" / "seed0" / "error.txt").exists()
    assert (out / "pretrain" / "genesis" / "error.txt").exists()


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume_skips_finished_and_continues_interrupted_cells(study: tuple[Path, Path, int]) -> None:
    cfg, out, _ = study
    assert run_cli(["experiment", cfg, "--out", out]) == 2  # a study is there: refuse without --resume
    before = (out / "cells" / "none" / "n2" / "seed0" / "model.safetensors").stat().st_mtime_ns
    interrupted = out / "cells" / "mae" / "n3" / "seed1"
    (interrupted / "cell.json").unlink()  # as if stopped after its last checkpoint
    assert run_cli(["experiment", cfg, "--out", out, "--resume", "--no-progress"]) == 1
    runs = json.loads((out / "runs.json").read_text(encoding="utf-8"))
    # the interrupted cell and the 4 failed ones ran again (genesis fails again), 7 were skipped
    assert (runs[-1]["ran"], runs[-1]["skipped"], runs[-1]["failed"]) == (5, 7, 4)
    assert (out / "cells" / "none" / "n2" / "seed0" / "model.safetensors").stat().st_mtime_ns == before
    assert json.loads((interrupted / "cell.json").read_text(encoding="utf-8"))["status"] == "ok"
    assert len(list((interrupted / "logs").iterdir())) == 2  # continued (a second log version), not restarted


def test_cli_usage_errors(tmp_path: Path) -> None:
    assert run_cli(["experiment", tmp_path / "nope.yaml", "--out", tmp_path / "o"]) == 2
    assert run_cli(["experiment", "--out", tmp_path / "o"]) == 2
    assert run_cli(["experiment", "--out", tmp_path / "o", "--resume"]) == 2


EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = load_experiment(path)
    assert cfg.name == path.stem and cfg.budget_list() and set(cfg.methods) >= {"none", "cmunet"}


def test_xca_cpu_grid_on_the_real_data(tmp_path: Path) -> None:
    from tests.conftest import SHARED_DATA, shared_data

    shared_data("xca_cimat40")
    cfg = resolve_paths(
        load_experiment(EXPERIMENTS[0].with_name("xca_cpu.yaml")), base=SHARED_DATA.parents[1] / "x"
    )
    from angioseg.experiment.runner import plan_study

    plan = plan_study(cfg, tmp_path)
    assert len(plan.cells) == 36 and list(plan.pretrain_runs) == ["cmunet", "mae", "genesis", "spark", "moco"]
    assert {len(c.splits["test"]) for c in plan.cells} == {8} and {
        len(c.splits["val"]) for c in plan.cells
    } == {4}
    assert sorted({c.n_labeled for c in plan.cells}) == [2, 5, 28]
