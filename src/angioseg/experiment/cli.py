"""``angioseg experiment`` (registered on :data:`angioseg.cli.app`).

Heavy imports (torch, Lightning) happen inside the command so that ``angioseg --help`` stays fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from angioseg.cli import app, console, exit_on_failures, out_console
from angioseg.errors import AngiosegError


@app.command()
def experiment(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Experiment YAML (see experiments/*.yaml and docs/experiment.md). Optional with "
            "--resume or --report-only: the study's own OUT/experiment.yaml is used.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Study folder: results.csv, report.md, report.html, figures/, cells/, pretrain/.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the study in --out: finished cells are skipped, interrupted ones continue from "
            "their last checkpoint, failed ones are retried. CONFIG may add methods, budgets or seeds.",
        ),
    ] = False,
    report_only: Annotated[
        bool,
        typer.Option("--report-only", help="Only rebuild results.csv and the report from finished cells."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the grid (cells, split sizes, shared pretraining runs) and stop."
        ),
    ] = False,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Run as one of several workers sharing --out (one host or several with a shared "
            "filesystem): each cell is claimed with an exclusive lock file, so no two workers run one "
            "cell. Start every worker with the same CONFIG; the first creates the study.",
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Lightning progress bars (default: only when the output is a terminal).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Label-efficiency study of the CM-UNet paper: pretraining methods × label budgets × seeds.

    Every cell fine-tunes a UNet (from scratch for [bold]none[/], else from a pretraining run shared as the paper shares it), selects its epoch on validation images and scores the fixed test set.

    Writes OUT/results.csv (one row per cell) and OUT/report.md + report.html: Table I at the smallest budget, Dice vs labeled images (Fig. 3), diameters and Bland–Altman (Fig. 4), example segmentations (Fig. 5), reconstructions (Fig. 6). A failed cell is recorded and the rest go on; relative data paths in CONFIG are relative to the current directory.
    """
    from angioseg.experiment.config import load_experiment, resolve_paths
    from angioseg.experiment.runner import plan_study, rebuild_report, run_experiment

    if out is None:
        raise AngiosegError("--out DIR is required (the study folder)")
    if config is None:
        if not (resume or report_only):
            raise AngiosegError(
                "give the experiment CONFIG.yaml (it may be omitted only with --resume or --report-only)"
            )
        config = out / "experiment.yaml"
        if not config.exists():
            raise AngiosegError(
                f"{out}: no experiment.yaml here; is it a study folder (angioseg experiment --out)?"
            )
    cfg = resolve_paths(load_experiment(config))
    if dry_run:
        plan = plan_study(cfg, out)
        for c in plan.cells:
            counts = " ".join(f"{k} {len(v)}" for k, v in c.splits.items())
            pre = c.pretrain.key if c.pretrain else "-"
            out_console.print(f"{c.key:34s} {counts:44s} pretrain: {pre}", highlight=False, soft_wrap=True)
        out_console.print(
            f"{len(plan.cells)} cells, {len(plan.pretrain_runs)} pretraining runs", highlight=False
        )
        return
    if report_only:
        md = rebuild_report(cfg, out)
        out_console.print(f"report: {md} and {md.with_suffix('.html')}", highlight=False, soft_wrap=True)
        return
    show = sys.stderr.isatty() if progress is None else progress
    parts = ["angioseg", "experiment", *([str(config)] if config else []), "--out", str(out)]
    command = " ".join(shlex.quote(p) for p in parts + (["--resume"] if resume else []))
    res = run_experiment(
        cfg,
        out,
        resume=resume,
        progress=show,
        announce=lambda s: console.print(s, highlight=False, markup=False, soft_wrap=True),
        command=command,
        worker=worker,
    )
    out_console.print(
        f"{res.ran} cell(s) run, {res.skipped} already finished, {res.elsewhere} run by other workers, "
        f"{len(res.failed)} failed; "
        f"results: {res.out / 'results.csv'}; report: {res.report} and report.html",
        highlight=False,
        soft_wrap=True,
    )
    exit_on_failures(res.failed)
