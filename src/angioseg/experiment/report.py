"""``report.md`` and ``report.html`` of a study: Table I analogue, Dice by budget, Figures 3-6, costs.

Everything here is computed from the cells' records and run folders; nothing is typed in except
the paper's own Table I, shown as a reference next to ours. A figure that cannot be drawn is
reported in its place instead of stopping the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.data.datasets import Sample
from angioseg.experiment import figures
from angioseg.experiment.config import NONE, SPLIT, ExperimentConfig
from angioseg.experiment.document import Document, to_html, to_markdown
from angioseg.experiment.plan import Plan, link_images
from angioseg.experiment.results import (
    budgets_in_order,
    choose_best,
    mean_sd,
    methods_in_order,
    ok_rows,
    paired_differences,
    relative_drop,
)
from angioseg.utils import atomic_open

# CM-UNet paper, Table I: FAME2, PT-FT 79-1 (18 labeled images), width 64, 256 px. HD is the modified HD.
PAPER_TABLE_I = [
    ("none (UNet)", "31.04 M", 0.375, 0.417, 0.248, 44.54, 3.929),
    ("genesis", "31.04 M", 0.563, 0.584, 0.414, 22.72, 0.893),
    ("mae", "31.04 M", 0.557, 0.589, 0.410, 25.85, 1.066),
    ("spark", "34.18 M", 0.521, 0.537, 0.370, 27.25, 1.564),
    ("moco", "37.70 M", 0.556, 0.566, 0.385, 24.56, 1.117),
    ("cmunet", "121.49 M", 0.626, 0.628, 0.457, 22.26, 0.965),
]
TABLE_METRICS = (("dice", 3), ("cldice", 3), ("iou", 3), ("mhd", 2), ("hd95", 2), ("add", 3), ("pcc", 2))


def fmt(values: Sequence[Any], digits: int = 3) -> str:
    mean, sd, n = mean_sd(values)
    if not n:
        return "–"
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def budget_title(rows: Sequence[dict[str, Any]], budget: str) -> str:
    """``5`` for a count, ``79-1 (18)`` when the label is not the number of labeled images."""
    n = next((r["n_labeled"] for r in rows if r["budget"] == budget), None)
    return budget if n is None or str(n) == budget else f"{budget} ({n})"


def _params(v: Any) -> str:
    return "–" if v is None else f"{float(v) / 1e6:.2f} M"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def _overview(
    doc: Document, cfg: ExperimentConfig, plan: Plan, rows: list[dict[str, Any]], out: Path
) -> None:
    status = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "pending")}
    pre = cfg.pretrain_data if cfg.pretrain_data != SPLIT else "each split's own pretraining pool (`split`)"
    c0 = plan.cells[0]
    if cfg.description:
        doc.para(cfg.description)
    doc.bullets(
        [
            f"labeled data: `{cfg.labeled_data}` ({sum(len(v) for k, v in c0.splits.items())} labeled images; "
            f"test {len(c0.splits['test'])} fixed by test_seed {cfg.test_seed}, validation {len(c0.splits['val'])} per seed)",
            f"pretraining data: {pre}",
            f"grid: {len(cfg.methods)} methods × {len(cfg.budgets)} budgets × {len(cfg.seeds)} seeds = "
            f"{len(plan.cells)} cells; {status['ok']} finished, {status['failed']} failed, {status['pending']} not run",
            f"UNet width {cfg.width}, images {cfg.image_size}×{cfg.image_size}; fine-tuning: up to "
            f"{cfg.finetune.epochs} epochs (≥ {cfg.finetune.min_steps_per_epoch} steps of {cfg.finetune.batch_size}), "
            f"lr {cfg.finetune.lr:g}, early stopping after {cfg.finetune.patience} epochs without a better "
            "validation Dice; the best validation epoch is tested",
            f"pretraining: epochs {cfg.pretrain.epochs if cfg.pretrain.epochs is not None else 'as in the paper'}, "
            f"batch {cfg.pretrain.batch_size}"
            + (f"; per-method overrides {json.dumps(cfg.method_options)}" if cfg.method_options else ""),
            "test images predicted with test-time augmentation "
            f"`{cfg.finetune.tta}` and scored on their own pixel grid against the masks as drawn",
        ]
    )
    older = older_scoring(rows)
    if older:
        doc.para(
            f"**Warning:** {len(older)} finished cell(s) were scored by an older version (on the "
            f"{cfg.image_size}×{cfg.image_size} model grid against resized masks, without test-time "
            f"augmentation) and are not comparable with the others: {', '.join(older[:5])}"
            + (", ..." if len(older) > 5 else "")
        )
    runs_path = out / "runs.json"
    if runs_path.exists():
        runs = json.loads(runs_path.read_text(encoding="utf-8"))
        table = [
            [
                f"`{r.get('command', '')}`",
                str(r.get("started", "")),
                _minutes(float(r["wall_seconds"]))
                if r.get("wall_seconds") is not None
                else "running/interrupted",
                str(r.get("ran", "–")),
                str(r.get("skipped", "–")),
                str(r.get("failed", "–")),
            ]
            for r in runs
        ]
        doc.para("Invocations of this study:")
        doc.table(["command", "started", "wall time", "cells run", "skipped", "failed"], table)
        total = sum(float(r["wall_seconds"]) for r in runs if r.get("wall_seconds") is not None)
        machine = runs[-1].get("machine", "")
        doc.para(f"Total wall time: **{_minutes(total)}** on {machine}.")


def older_scoring(rows: list[dict[str, Any]]) -> list[str]:
    """Run folders of finished cells whose test report predates ``test/scoring.json`` (the 256-grid,
    no-TTA scoring): a study resumed across that change mixes two protocols in its tables."""
    return [
        str(r["run_dir"])
        for r in ok_rows(rows)
        if r.get("run_dir") and not (Path(r["run_dir"]) / "test" / "scoring.json").is_file()
    ]


def _table_one(doc: Document, rows: list[dict[str, Any]], budget: str) -> None:
    doc.heading(f"Table I analogue: {budget_title(rows, budget)} labeled images")
    doc.para(
        "Mean ± sd over seeds of the test metrics at the smallest budget. Parameters: the pretraining "
        "model's trainable parameters (the fine-tuned UNet for none). MHD/HD95 and ADD in pixels of each "
        "test image's own grid; PCC = Pearson r of predicted vs true mean vessel diameter over the test images."
    )
    table = []
    for m in methods_in_order(rows):
        sel = ok_rows(rows, m, budget)
        if not sel:
            continue
        params = sel[0]["params"] if m == NONE else sel[0].get("pretrain_params")
        table.append(
            [m, _params(params)]
            + [fmt([r.get(k) for r in sel], d) for k, d in TABLE_METRICS]
            + [str(len(sel))]
        )
    doc.table(["method", "# params", "Dice", "clDice", "IoU", "MHD", "HD95", "ADD", "PCC", "seeds"], table)
    doc.para(
        "For reference, the paper's Table I (FAME2, 18 labeled images = 1 %, width 64, GPU; HD = modified HD):"
    )
    doc.table(
        ["method", "# params", "Dice", "clDice", "IoU", "MHD", "ADD"],
        [[m, p, *(f"{v:g}" for v in vals)] for m, p, *vals in PAPER_TABLE_I],
    )


def _by_budget(doc: Document, rows: list[dict[str, Any]], budgets: list[str]) -> None:
    doc.heading("Test Dice by label budget (the numbers of Figure 3)")
    header = ["method"] + [budget_title(rows, b) for b in budgets]
    drop = len(budgets) > 1
    table = []
    for m in methods_in_order(rows):
        cells = [fmt([r.get("dice") for r in ok_rows(rows, m, b)]) for b in budgets]
        if drop:
            d = relative_drop(rows, m, budgets[-1], budgets[0])
            cells.append("–" if math.isnan(d) else f"{100 * d:.1f} %")
        table.append([m, *cells])
    doc.table(header + ([f"drop {budgets[-1]} → {budgets[0]}"] if drop else []), table)
    if drop:
        doc.para(
            "Drop = (Dice at the largest budget − Dice at the smallest) / Dice at the largest. The paper: "
            "15.2 % for CM-UNet and 46.5 % for the UNet from scratch, from 500 to 18 labels."
        )
    if any(m != NONE for m in methods_in_order(rows)) and ok_rows(rows, NONE):
        doc.para(
            "Paired difference to fine-tuning from scratch (same seed = same labeled, validation and test "
            "images): mean ± sd of Δ test Dice, and in how many seeds the method was better."
        )
        diff_rows = []
        for m in methods_in_order(rows):
            if m == NONE:
                continue
            cells = []
            for b in budgets:
                diffs = paired_differences(rows, m, b)
                cells.append(
                    "–" if not diffs else f"{fmt(diffs, 3)} ({sum(d > 0 for d in diffs)}/{len(diffs)})"
                )
            diff_rows.append([m, *cells])
        doc.table(["Δ Dice vs none", *budgets], diff_rows)


def _figure(doc: Document, draw: Callable[[], Path | None], caption: str) -> Path | None:
    try:
        path = draw()
    except Exception as exc:  # a figure must not cost the study its report
        doc.para(f"(figure not drawn: {type(exc).__name__}: {exc})")
        return None
    if path is not None:
        doc.image(path, caption)
    return path


def _reconstructions(
    doc: Document, cfg: ExperimentConfig, plan: Plan, out: Path, samples: dict[str, Sample], fig_dir: Path
) -> None:
    from angioseg.pretrain import method_class
    from angioseg.pretrain.recon import reconstructions_from_run

    doc.heading("Figure 6: reconstructions per method")
    test_dir = link_images(samples, plan.test_names, out / "pools" / "test")
    grids = []
    notes = []
    for m in cfg.methods:
        if m == NONE:
            continue
        if not method_class(m).reconstructs:
            notes.append(f"{m} is contrastive and reconstructs nothing")
            continue
        run = next((c.pretrain for c in plan.cells if c.pretrain is not None and c.method == m), None)
        if run is None or not (run.run_dir / "model.safetensors").exists():
            notes.append(f"{m}: no finished pretraining run")
            continue
        try:
            grids.append(
                (
                    m,
                    reconstructions_from_run(
                        run.run_dir,
                        test_dir,
                        fig_dir / f"reconstructions_{m}.png",
                        cfg.report.reconstructions,
                    ),
                )
            )
        except Exception as exc:
            notes.append(f"{m}: {type(exc).__name__}: {exc}")
    _figure(
        doc,
        lambda: figures.tile_reconstructions(grids, fig_dir / "fig6_reconstructions.png"),
        f"Figure 6. Input | masked or corrupted input | reconstruction, on the first "
        f"{cfg.report.reconstructions} test images (never pretrained on)"
        + (
            " by the pretraining run of the smallest budget and first seed."
            if cfg.pretrain_data == SPLIT
            else "."
        ),
    )
    if notes:
        doc.para("; ".join(notes) + ".")


def _costs(doc: Document, plan: Plan, rows: list[dict[str, Any]]) -> None:
    doc.heading("Cost")
    table = []
    for key, run in plan.pretrain_runs.items():
        s_path, t_path = run.run_dir / "summary.json", run.run_dir / "experiment_timing.json"
        if not s_path.exists():
            table.append([key, "–", "–", "–", "not finished", "–"])
            continue
        s = json.loads(s_path.read_text(encoding="utf-8"))
        t = json.loads(t_path.read_text(encoding="utf-8")) if t_path.exists() else {}
        loss = s.get("final_loss")
        table.append(
            [
                key,
                str(s.get("images")),
                str(s.get("epochs")),
                str(s.get("steps")),
                _minutes(float(t.get("wall_seconds", s.get("train_seconds", 0.0)))),
                "–" if loss is None else f"{loss:.4f}",
            ]
        )
    if table:
        doc.para("Pretraining runs (wall time includes preprocessing, or reading the preprocessing cache):")
        doc.table(["run", "images", "epochs", "steps", "wall time", "final loss"], table)
    ft = [
        [
            m,
            fmt([r.get("cell_seconds") for r in ok_rows(rows, m)], 0) + " s",
            fmt([r.get("best_epoch") for r in ok_rows(rows, m)], 1),
        ]
        for m in methods_in_order(rows)
    ]
    doc.para("Fine-tuning cells (training, export and testing), mean ± sd over all budgets and seeds:")
    doc.table(["method", "wall time per cell", "best epoch"], ft)


def write_report(
    cfg: ExperimentConfig, plan: Plan, rows: list[dict[str, Any]], out: Path, samples: dict[str, Sample]
) -> Path:
    """Draw the figures into ``out/figures`` and write ``out/report.md`` and ``out/report.html``."""

    fig_dir = out / "figures"
    doc = Document(f"{cfg.name}: label-efficiency study")
    _overview(doc, cfg, plan, rows, out)
    budgets = budgets_in_order(rows)
    small, large = budgets[0], budgets[-1]
    _table_one(doc, rows, small)
    _by_budget(doc, rows, budgets)
    doc.heading("Figure 3: Dice vs number of labeled images")
    _figure(
        doc,
        lambda: figures.dice_vs_labels(rows, fig_dir / "fig3_dice_vs_labels.png"),
        "Figure 3. Test Dice (mean ± sd over seeds) against the number of labeled fine-tuning images.",
    )
    best, score = choose_best(rows, small)
    doc.heading("Best pretraining method")
    if best is None:
        doc.para(
            "No pretraining method has a finished cell at the smallest budget; Figures 4 and 5 use none."
        )
    else:
        doc.para(
            f"**{best}**: the pretraining method with the highest mean *validation* Dice at {small} labels "
            f"({score:.3f}; the score each cell's best epoch was chosen by). It is chosen on validation "
            "images only; the test metrics above are reported, not used for any choice. With few "
            "validation images this choice is noisy."
        )
    shown = best or NONE
    doc.heading(f"Figure 4: vessel diameters, {shown}")
    stats: list[dict[str, Any]] = []

    def draw4() -> Path | None:
        path, st = figures.diameters(
            rows, shown, list(dict.fromkeys([large, small])), fig_dir / "fig4_diameters.png"
        )
        stats.extend(st)
        return path

    _figure(
        doc,
        draw4,
        f"Figure 4. {shown}: predicted vs true mean vessel diameter per test image (all seeds) and Bland–Altman "
        "(bias, ±1.96 sd limits), at the largest and the smallest budget.",
    )
    if stats:
        doc.table(
            ["budget", "points", "Pearson r (pooled)", "r per seed", "bias (px)", "limits of agreement (px)"],
            [
                [
                    s["budget"],
                    str(s["n"]),
                    f"{s['r']:.2f} (p = {s['p']:.2g})",
                    ", ".join(f"{r:.2f}" for r, _ in s["per_seed"].values()),
                    f"{s['ba_bias']:.2f}",
                    f"{s['ba_loa_low']:.2f} to {s['ba_loa_high']:.2f}",
                ]
                for s in stats
            ],
        )
        doc.para(
            "The pooled p-value counts each test image once per seed, so it is optimistic; the per-seed r are independent fits."
        )
    doc.heading("Figure 5: example segmentations")
    names = plan.test_names[: cfg.report.examples]
    seed = cfg.seeds[0]
    columns = []
    for b in dict.fromkeys([small, large]):
        for m in dict.fromkeys([NONE, shown]):
            sel = [r for r in ok_rows(rows, m, b) if r["seed"] == seed]
            if sel:
                columns.append((f"{m} · {b} labels", Path(sel[0]["run_dir"])))
    # the test predictions are on each image's own grid, scored against the mask as drawn
    images = [
        (n, samples[n].image, np.asarray(samples[n].mask, bool)) for n in names if samples[n].mask is not None
    ]
    _figure(
        doc,
        lambda: figures.examples(images, columns, fig_dir / "fig5_examples.png"),
        f"Figure 5. The first {len(names)} test images by name (seed {seed}): input, truth, and the predictions "
        f"from scratch (none) and of {shown}, at the smallest and the largest budget, with each image's Dice.",
    )
    _reconstructions(doc, cfg, plan, out, samples, fig_dir)
    _costs(doc, plan, rows)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        doc.heading("Failed cells")
        doc.table(
            ["method", "budget", "seed", "error"],
            [[r["method"], r["budget"], str(r["seed"]), r["error"]] for r in failed],
        )
    doc.para(
        "Per-cell numbers: `results.csv`; per-image test metrics: `cells/<method>/<budget>/seed<s>/test/metrics.csv`."
    )
    md = out / "report.md"
    with atomic_open(md) as fh:
        fh.write(to_markdown(doc, out))
    with atomic_open(out / "report.html") as fh:
        fh.write(to_html(doc))
    return md
