"""Test-time augmentation (infer.engines.TTAEngine) and the test report on the original pixel grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from angioseg.data.datasets import Sample
from angioseg.data.io import read_mask, write_png
from angioseg.data.preprocess import preprocess_image
from angioseg.errors import AngiosegError
from angioseg.infer.engines import TTA_MODES, TorchEngine, TTAEngine, with_tta
from angioseg.metrics.overlap import dice
from angioseg.predict import Segmenter
from angioseg.train.checkpoint import load_model
from angioseg.train.finetune import FinetuneConfig, evaluate_split
from tests.conftest import run_cli
from tests.tiny_model import IMAGE_SIZE, PREPROCESS, held_out


class PixelEngine:
    """A per-pixel 'network' (sigmoid of the input): every view maps back onto the same answer."""

    name = "pixel"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x[:, 0])


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_each_view_is_mapped_back_onto_the_input_grid(mode: str) -> None:
    x = torch.randn(2, 1, 24, 24 if mode == "d4" else 40)  # flips work on non-square frames
    np.testing.assert_allclose(TTAEngine(PixelEngine(), mode)(x), torch.sigmoid(x[:, 0]), atol=1e-6)


def _views(mode: str) -> list:  # the input transforms each mode averages over
    flips = [lambda t: t, lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.flip(-1).flip(-2)]
    turns = [lambda t: t.rot90(1, (-2, -1)), lambda t: t.transpose(-2, -1)]
    return flips + (turns if mode == "d4" else [])


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_tta_of_a_real_network_commutes_with_the_views_it_averages(tiny_model: Path, mode: str) -> None:
    """TTA(g x) = g TTA(x) for every view g: the average really runs over the whole group, each view
    undone correctly (a wrong inverse or a missing view breaks this; the bare network does not obey it)."""
    model, _ = load_model(tiny_model)
    image, _ = held_out(1, IMAGE_SIZE, seed=3)[0]
    x = torch.from_numpy(preprocess_image(image, PREPROCESS)[0])[None, None]
    net, tta = TorchEngine(model), TTAEngine(TorchEngine(model), mode)
    base = tta(x)
    for g in _views(mode):
        np.testing.assert_allclose(tta(g(x)), g(base), atol=1e-5)
    assert float((net(x.flip(-1)) - net(x).flip(-1)).abs().max()) > 1e-3  # the test has teeth


def test_no_tta_is_the_engine_itself_and_unknown_modes_are_refused() -> None:
    engine = PixelEngine()
    assert with_tta(engine, "none") is engine
    assert TTA_MODES == ("none", "flip", "d4")
    with pytest.raises(AngiosegError, match="--tta"):
        with_tta(engine, "rot45")


def test_test_report_scores_what_segment_gives_on_the_original_grid(tiny_model: Path, tmp_path: Path) -> None:
    """evaluate_split predicts as ``segment`` does (same TTA, mapped back to the image's own size) and
    scores against the mask as drawn, not one resized to the model's grid."""
    model, meta = load_model(tiny_model)
    size = 2 * IMAGE_SIZE
    pairs = held_out(3, size, seed=5)
    samples = {f"im{i}": Sample(f"im{i}", im, m, Path(f"im{i}.png")) for i, (im, m) in enumerate(pairs)}
    cfg = FinetuneConfig(preprocess=PREPROCESS, tta="flip")
    summary = evaluate_split(model, cfg, samples, list(samples), tmp_path / "test")
    seg = Segmenter(model, meta, tta="flip")
    scores = []
    for name, (image, mask) in zip(samples, pairs, strict=True):
        written = read_mask(tmp_path / "test" / "predictions" / f"{name}.png")
        assert written.shape == (size, size)
        np.testing.assert_array_equal(written, seg.segment(image))
        scores.append(dice(written, mask))
    assert summary["n"] == 3
    assert summary["dice"] == pytest.approx(np.mean(scores))


def test_segment_tta_option(tiny_model: Path, tmp_path: Path) -> None:
    image, _ = held_out(1, 2 * IMAGE_SIZE, seed=7)[0]
    write_png(tmp_path / "in" / "a.png", image)
    args = ["segment", tmp_path / "in", "--model", tiny_model, "--no-overlay", "--no-stats"]
    assert run_cli([*args, "--out", tmp_path / "d4", "--tta", "d4"]) == 0
    model, meta = load_model(tiny_model)
    want = Segmenter(model, meta, tta="d4").segment(image)
    np.testing.assert_array_equal(read_mask(tmp_path / "d4" / "masks" / "a.png"), want)
    assert run_cli([*args, "--out", tmp_path / "bad", "--tta", "maybe"]) == 2


def test_qca_segments_every_cine_frame_with_the_default_tta(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """--frame auto on a cine segments each frame to choose one: with the same TTA as the measured mask."""
    from angioseg.infer.engines import DEFAULT_TTA
    from angioseg.qca.pipeline import run_qca
    from tests.qca_fixtures import write_phantom_cine

    ph = write_phantom_cine(tmp_path)
    masks = np.load(tmp_path / "cine_mask.npy").astype(bool)
    made: list[str] = []

    class Fake:
        def __init__(self, tta: str) -> None:
            self.tta = tta

        def segment(self, image: np.ndarray) -> np.ndarray:
            made.append(self.tta)
            return masks[0]

    monkeypatch.setattr(
        Segmenter, "from_checkpoint", classmethod(lambda cls, path, tta="none", **kw: Fake(tta))
    )
    results, _, mask = run_qca(tmp_path / "cine.dcm", model="m", proximal=ph.proximal, distal=ph.distal)
    assert results and mask.shape == masks[0].shape
    assert len(made) == len(masks) and set(made) == {DEFAULT_TTA}


def test_resume_of_a_run_stored_before_tta_existed_may_choose_its_tta(tmp_path: Path) -> None:
    """An older config.yaml has no ``tta``: it reads as the default, and --resume --tta none is accepted
    (it only changes how the test report is predicted), not refused as a change of a stored value."""
    import yaml

    from angioseg.config import load_config, to_dict
    from angioseg.train.resume import resume_config

    old = to_dict(FinetuneConfig(data="d", out=str(tmp_path)))
    del old["tta"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old), encoding="utf-8")
    stored = load_config(FinetuneConfig, tmp_path / "config.yaml")
    assert stored.tta == "flip"
    from dataclasses import replace

    assert resume_config(stored, replace(stored, tta="none"), "config.yaml").tta == "none"
    with pytest.raises(AngiosegError, match="--lr"):
        resume_config(stored, replace(stored, lr=0.5), "config.yaml")
    for change, flag in [
        ({"augment_policy": "strong"}, "--augment-policy"),
        ({"mix": "synth", "mix_fraction": 0.3}, "--mix .*--mix-fraction"),
        ({"loss": "dicecldice"}, "--loss"),
    ]:
        with pytest.raises(AngiosegError, match=flag) as err:
            resume_config(stored, replace(stored, **change), "config.yaml")
        assert "config.yaml key" not in str(err.value)  # named as the option a user gives


def test_experiment_report_names_cells_scored_by_the_older_protocol(tmp_path: Path) -> None:
    from angioseg.experiment.report import older_scoring

    rows = []
    for i, status in enumerate(["ok", "ok", "failed"]):
        (tmp_path / f"c{i}" / "test").mkdir(parents=True)
        rows.append({"status": status, "method": "none", "budget": "5", "run_dir": str(tmp_path / f"c{i}")})
    (tmp_path / "c0" / "test" / "scoring.json").write_text("{}", encoding="utf-8")
    assert older_scoring(rows) == [str(tmp_path / "c1")]


def test_label_efficiency_rescore_redoes_a_cell_cut_after_its_scoring_json(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A --rescore killed after evaluate_split wrote scoring.json but before summary.json was updated
    must not leave the old (256-grid) summary behind as if it were re-scored."""
    import json

    from bench.label_efficiency import rescore

    import angioseg.data.datasets
    import angioseg.train.checkpoint
    import angioseg.train.finetune

    cell = tmp_path / "synth" / "n5" / "fold0_seed0"
    (cell / "test").mkdir(parents=True)
    (cell / "config.yaml").write_text("data: d\n", encoding="utf-8")
    (cell / "splits.json").write_text(json.dumps({"test": ["a"]}), encoding="utf-8")
    (cell / "test" / "summary.json").write_text(json.dumps({"dice": 0.5, "best_epoch": 3}), encoding="utf-8")
    monkeypatch.setattr(angioseg.data.datasets, "load_dataset", lambda *a, **k: [])
    monkeypatch.setattr(angioseg.train.checkpoint, "load_model", lambda *a, **k: (None, {}))
    cut = [True]

    def evaluate(model, cfg, samples, names, out_dir):  # type: ignore[no-untyped-def]
        (out_dir / "scoring.json").write_text("{}", encoding="utf-8")
        if cut.pop():
            raise KeyboardInterrupt
        return {"dice": 0.7}

    cut.insert(0, False)
    monkeypatch.setattr(angioseg.train.finetune, "evaluate_split", evaluate)
    with pytest.raises(KeyboardInterrupt):
        rescore(tmp_path)
    rescore(tmp_path)
    assert json.loads((cell / "test" / "summary.json").read_text())["dice"] == 0.7
    record = json.loads((cell / "test" / "rescored.json").read_text())
    assert record["old"]["dice"] == 0.5 and record["done"]
    rescore(tmp_path)  # done: not scored again
    assert not cut


def test_tta_choice_rule_prefers_the_cheaper_mode_within_the_margin() -> None:
    from bench.tta_choice import THRESHOLDS, choose

    def cell(scores: dict[str, float]) -> dict[str, float]:
        return {f"{m}@{t}": scores.get(f"{m}@{t}", 0.5) for m in TTA_MODES for t in THRESHOLDS}

    assert choose({"a": cell({"d4@0.5": 0.76, "flip@0.5": 0.759, "none@0.5": 0.75})}) == "flip@0.5"
    assert choose({"a": cell({"d4@0.4": 0.77, "flip@0.5": 0.76})}) == "d4@0.4"
    assert choose({"a": cell({"none@0.4": 0.7601, "none@0.5": 0.76})}) == "none@0.5"


def test_label_efficiency_seed_table_averages_each_seed_over_the_folds_all_seeds_share() -> None:
    from bench.label_efficiency import per_seed

    rows = {
        ("synth", "5", 0, 0): {"dice": 0.70},
        ("synth", "5", 1, 0): {"dice": 0.80},
        ("synth", "5", 2, 0): {"dice": 0.10},  # fold 2 only for seed 0: left out of the seed means
        ("synth", "5", 0, 1): {"dice": 0.60},
        ("synth", "5", 1, 1): {"dice": 0.70},
        **{("scratch", "5", f, s): {"dice": 0.50} for f in (0, 1) for s in (0, 1)},
    }
    lines = per_seed(rows, ["scratch", "synth"], ["5"])
    synth = next(line for line in lines if line.startswith("| synth |"))
    cells = [c.strip() for c in synth.strip("|").split("|")]
    assert cells[2:4] == ["2", "0,1"]
    assert cells[4] == "0: 0.750, 1: 0.650"
    assert cells[5].startswith("0.700 ± 0.071")
    assert cells[6] == "+0.250, +0.150"  # per seed, paired with scratch on the same folds


def test_label_efficiency_seed_table_also_compares_the_finished_seeds_on_every_fold() -> None:
    from bench.label_efficiency import per_seed

    dice = {(0, 0): 0.7, (1, 0): 0.8, (2, 0): 0.9, (0, 1): 0.6, (1, 1): 0.7, (2, 1): 0.8, (0, 2): 0.5}
    rows = {("synth", "10", f, s): {"dice": d} for (f, s), d in dice.items()}  # seed 2: fold 0 only
    synth = [line for line in per_seed(rows, ["synth"], ["10"]) if line.startswith("| synth |")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in synth]
    assert [c[2:4] for c in cells] == [["3", "0"], ["2", "0,1,2"]]
    assert cells[0][4] == "0: 0.700, 1: 0.600, 2: 0.500"
    assert cells[1][4] == "0: 0.800, 1: 0.700"  # seeds 0 and 1 over all three folds
    rows[("synth", "10", 1, 2)] = rows[("synth", "10", 2, 2)] = {"dice": 0.5}  # seed 2 finished
    assert len([line for line in per_seed(rows, ["synth"], ["10"]) if line.startswith("| synth |")]) == 1


def test_label_efficiency_self_training_labels_only_the_unused_images_with_the_teacher(
    tmp_path: Path, tiny_model: Path
) -> None:
    """synth_self's --mix folder: the teacher cell's unused images (never its test or validation
    images), the pixels unchanged, with the masks the teacher predicts."""
    import argparse
    import json
    import shutil

    from bench.label_efficiency import cell_config, write_pseudo_labels

    from angioseg.data.datasets import load_dataset
    from tests.tiny_model import held_out

    data = tmp_path / "data"
    for i, (img, mask) in enumerate(held_out(6, 128)):
        write_png(data / "images" / f"im{i}.png", img)
        write_png(data / "masks" / f"im{i}.png", mask)
    args = argparse.Namespace(out=tmp_path / "study", data=data, start=None, mix=None, epochs=None)
    teacher = tmp_path / "study" / "synth" / "n2" / "fold0_seed0"
    (teacher / "test").mkdir(parents=True)
    splits = {"test": ["im0"], "val": ["im1"], "finetune": ["im2"], "pretrain": ["im3", "im4", "im5"]}
    (teacher / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    for ext in ("safetensors", "json"):
        shutil.copy(tiny_model / f"model.{ext}", teacher / f"model.{ext}")
    with pytest.raises(SystemExit, match="run synth n=2 fold 0 seed 0 first"):
        write_pseudo_labels(args, "synth_self", "2", 0, 0)
    (teacher / "test" / "summary.json").write_text("{}", encoding="utf-8")
    folder = write_pseudo_labels(args, "synth_self", "2", 0, 0)
    assert cell_config(args, "synth_self", "2", 0, 0).mix == str(folder)
    pseudo = {s.name: s for s in load_dataset(folder, require_masks=True)}
    truth = {s.name: s for s in load_dataset(data)}
    assert sorted(pseudo) == ["im3", "im4", "im5"]
    for n, s in pseudo.items():
        assert np.array_equal(s.image, truth[n].image)
        assert s.mask is not None and 0 < s.mask.mean() < 0.5
        assert dice(s.mask, truth[n].mask) > 0.6  # the tiny model really segments them
    (folder / "masks" / "im3.png").unlink()
    assert write_pseudo_labels(args, "synth_self", "2", 0, 0) == folder  # written once, then reused
    # the second round (synth_self2) is taught by the finished synth_self cell, into its own folder
    with pytest.raises(SystemExit, match="run synth_self n=2 fold 0 seed 0 first"):
        write_pseudo_labels(args, "synth_self2", "2", 0, 0)
    shutil.copytree(teacher, tmp_path / "study" / "synth_self" / "n2" / "fold0_seed0")
    second = write_pseudo_labels(args, "synth_self2", "2", 0, 0)
    assert second != folder and cell_config(args, "synth_self2", "2", 0, 0).mix == str(second)
    assert sorted(p.stem for p in (second / "masks").iterdir()) == ["im3", "im4", "im5"]
    from bench.label_efficiency import copy_round1, teacher_depth

    # synth_selfarc: finetune's own self-training on other frames, with the synth cell as its round 1
    with pytest.raises(SystemExit, match="run synth n=3 fold 0 seed 0 first"):
        copy_round1(args, "synth_selfarc", "3", 0, 0)
    copy_round1(args, "synth_selfarc", "2", 0, 0)
    round1 = tmp_path / "study" / "synth_selfarc" / "n2" / "fold0_seed0" / "round1"
    assert (round1 / "test" / "summary.json").is_file() and (round1 / "model.safetensors").is_file()
    arc = cell_config(args, "synth_selfarc", "2", 0, 0)
    assert (arc.semi, arc.mix, arc.unlabeled_limit) == ("selftrain", None, 300)
    assert arc.unlabeled is not None and arc.out == str(round1.parent)

    assert [teacher_depth(m) for m in ("scratch", "synth", "synth_self", "synth_self2", "synth_selfarc")] == [
        0,
        0,
        1,
        2,
        1,
    ]


def test_test_report_writes_its_summary_last_with_the_extra_fields(
    tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """summary.json marks a finished run (the bench skips such cells): a scoring cut part-way (here in
    the Bland-Altman plot) leaves none, and a whole one holds the training time given as ``extra``."""
    import json

    import angioseg.metrics.evaluate

    model, _ = load_model(tiny_model)
    pairs = held_out(2, IMAGE_SIZE, seed=5)
    samples = {f"im{i}": Sample(f"im{i}", im, m, Path(f"im{i}.png")) for i, (im, m) in enumerate(pairs)}
    cfg = FinetuneConfig(preprocess=PREPROCESS, tta="none")

    def cut(*a, **k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "summary.json").write_text('{"dice": 0.1}', encoding="utf-8")  # an older report's
    with monkeypatch.context() as m:
        m.setattr(angioseg.metrics.evaluate, "plot_bland_altman", cut)
        with pytest.raises(KeyboardInterrupt):
            evaluate_split(model, cfg, samples, list(samples), tmp_path / "cut", extra={"train_seconds": 9.0})
    assert (tmp_path / "cut" / "metrics.csv").is_file() and (tmp_path / "cut" / "scoring.json").is_file()
    assert not (tmp_path / "cut" / "summary.json").exists()
    summary = evaluate_split(model, cfg, samples, list(samples), tmp_path / "t", extra={"train_seconds": 9.0})
    written = json.loads((tmp_path / "t" / "summary.json").read_text(encoding="utf-8"))
    assert written.keys() == summary.keys() and written["dice"] == summary["dice"]
    assert written["train_seconds"] == 9.0 and written["n"] == 2
    assert (tmp_path / "t" / "bland_altman.png").is_file()
    assert evaluate_split(model, cfg, samples, [], tmp_path / "none", extra={"best_epoch": 3}) == {
        "n": 0,
        "best_epoch": 3,
    }
    assert json.loads((tmp_path / "none" / "summary.json").read_text(encoding="utf-8"))["best_epoch"] == 3


def test_label_efficiency_jobs_run_each_group_in_its_own_process_and_name_the_failures(
    tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """--jobs N: one process per (budget, fold, seed) with every method, teachers first (synth_self
    needs its group's synth cell), one thread each, the options passed on, a log per group; a failed
    group is named, the others still run, and the exit status says so."""
    import subprocess
    import sys

    from bench import label_efficiency

    calls: list[tuple[list[str], dict[str, str]]] = []

    class Popen:
        def __init__(self, argv, stdout, stderr, env, start_new_session):  # type: ignore[no-untyped-def]
            calls.append((argv, env))
            stdout.write("ran\n")
            self.pid, self.argv = 0, argv
            assert start_new_session  # so that a stop can end the group's whole process tree

        def wait(self) -> int:
            a = self.argv
            return 1 if a[a.index("--folds") + 1] == "1" and a[a.index("--seeds") + 1] == "2" else 0

    monkeypatch.setattr(subprocess, "Popen", Popen)
    out = tmp_path / "study"
    methods = ["synth_self2", "synth_self", "synth"]  # given in the wrong order
    argv = ["--out", str(out), "--data", str(tmp_path / "d"), "--methods", *methods]
    grid = ["--budgets", "5", "all", "--folds", "0", "1", "--seeds", "2", "3", "--epochs", "7"]
    rc = label_efficiency.main([*argv, *grid, "--mix", str(tmp_path / "m"), "--jobs", "3", "--no-report"])
    assert rc == 1
    groups = sorted(
        (a[a.index("--budgets") + 1], a[a.index("--folds") + 1], a[a.index("--seeds") + 1]) for a, _ in calls
    )
    assert groups == sorted((b, f, s) for b in ("5", "all") for f in ("0", "1") for s in ("2", "3"))
    for a, env in calls:
        assert a[0] == sys.executable and a[a.index("--methods") + 1 : a.index("--budgets")] == [
            "synth",
            "synth_self",
            "synth_self2",
        ]
        assert env["OMP_NUM_THREADS"] == "1" and "--no-report" in a and "--jobs" not in a
        assert a[a.index("--epochs") + 1] == "7" and a[a.index("--mix") + 1] == str(tmp_path / "m")
    printed = capsys.readouterr().out
    assert printed.count("FAILED") == 2 and "n=5 fold 1 seed 2: FAILED" in printed
    log = (out / "logs" / "nall_fold1_seed2_synth+synth_self+synth_self2.log").read_text(encoding="utf-8")
    assert log.startswith("=== ") and log.endswith("ran\n")
    with pytest.raises(SystemExit, match="--jobs"):
        label_efficiency.main([*argv, "--jobs", "0"])


def test_label_efficiency_paper_cell_is_the_paper_preset_from_scratch(tmp_path: Path) -> None:
    import argparse

    from bench.label_efficiency import cell_config

    from angioseg.train.presets import PRESETS

    args = argparse.Namespace(out=tmp_path, data=tmp_path / "d", start=None, mix=None, epochs=None)
    cfg = cell_config(args, "paper", "all", 3, 1)
    assert (
        (cfg.width, cfg.epochs, cfg.patience)
        == (64, 128, 30)
        == tuple(PRESETS["paper"][k] for k in ("width", "epochs", "patience"))
    )
    assert cfg.pretrained is None and cfg.semi is None and cfg.preset == "paper"
    for method in ("scratch", "synth", "synth_self"):  # no baseline self-trains on its own (--semi auto)
        assert cell_config(args, method, "5", 0, 0).semi is None
    assert cell_config(args, "synth_semi", "5", 0, 0).semi == "meanteacher"
    assert (cfg.labeled, cfg.test_fold, cfg.seed, cfg.val) == (None, 3, 1, 4)


def test_tta_choice_jobs_score_as_one_process_does(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """bench/tta_choice.py --jobs 2 fills the cache with the same scores as a single process (each
    cell's own validation images), and a rerun finds them all cached."""
    import json
    import shutil

    from bench import tta_choice

    data = tmp_path / "data"
    for i, (img, mask) in enumerate(held_out(4, 128, seed=11)):
        write_png(data / "images" / f"im{i}.png", img)
        write_png(data / "masks" / f"im{i}.png", mask)
    for study in ("a", "b"):
        for cell, val in (("synth/n2/fold0_seed0", ["im0", "im1"]), ("scratch/n2/fold0_seed0", ["im2"])):
            d = tmp_path / study / cell
            d.mkdir(parents=True)
            (d / "splits.json").write_text(json.dumps({"val": val, "test": ["im3"]}), encoding="utf-8")
            for ext in ("safetensors", "json"):
                shutil.copy(tiny_model / f"model.{ext}", d / f"model.{ext}")
    for study in ("a", "b"):  # a cell cut while scoring its test split (no summary) is not scored
        (tmp_path / study / "synth/n2/fold0_seed0/test").mkdir()
        (tmp_path / study / "synth/n2/fold0_seed0/test/summary.json").write_text("{}", encoding="utf-8")
        (tmp_path / study / "scratch/n2/fold0_seed0/test").mkdir()
        (tmp_path / study / "scratch/n2/fold0_seed0/test/summary.json").write_text("{}", encoding="utf-8")
    shutil.copytree(
        tmp_path / "a" / "synth" / "n2" / "fold0_seed0", tmp_path / "a" / "synth" / "n5" / "fold0_seed0"
    )
    (tmp_path / "a" / "synth" / "n5" / "fold0_seed0" / "test" / "summary.json").unlink()

    def serial(*a):  # type: ignore[no-untyped-def]
        raise AssertionError("the parallel pass left a cell to the serial one")

    with monkeypatch.context() as m:
        m.setattr(tta_choice, "cell_scores", serial)
        assert tta_choice.main(["--study", str(tmp_path / "a"), "--data", str(data), "--jobs", "2"]) == 0
    assert tta_choice.main(["--study", str(tmp_path / "b"), "--data", str(data)]) == 0
    a = json.loads((tmp_path / "a" / "tta_choice.json").read_text(encoding="utf-8"))
    b = json.loads((tmp_path / "b" / "tta_choice.json").read_text(encoding="utf-8"))
    assert sorted(a) == ["scratch/n2/fold0_seed0:val", "synth/n2/fold0_seed0:val"]
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6)
    assert a["scratch/n2/fold0_seed0:val"] != a["synth/n2/fold0_seed0:val"]  # each cell its own images


def test_label_efficiency_jobs_stop_on_a_signal_ending_the_running_groups_and_starting_none(
    tmp_path: Path,
) -> None:
    """Ctrl-C (or SIGTERM) on ``--jobs``: the running groups' processes end at once, no queued group
    starts, and the run exits with a message, not after the whole queue."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from bench import label_efficiency as le\n"
        "le.group_argv = lambda args, g: [sys.executable, '-c', "
        "'import os, time; print(os.getpid(), flush=True); time.sleep(60)']\n"
        f"sys.exit(le.main(['--out', {str(tmp_path / 'study')!r}, '--methods', 'synth', '--budgets', '5', "
        "'--folds', '0', '1', '2', '--seeds', '0', '1', '--jobs', '2', '--no-report']))\n",
        encoding="utf-8",
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=root,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
    )
    logs = tmp_path / "study" / "logs"
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and len([p for p in logs.glob("*.log") if p.read_text().count("\n") >= 2]) < 2
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10 and proc.returncode != 0 and "stopped" in err
    started = sorted(logs.glob("*.log"))
    assert len(started) == 2  # 6 groups queued, 2 ran, none started after the signal
    for log in started:
        pid = int(log.read_text().splitlines()[1])
        with pytest.raises(ProcessLookupError):
            __import__("os").kill(pid, 0)
