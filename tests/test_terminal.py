"""Result tables and --help texts at 80 columns: no value cut, no sentence broken mid-line."""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from rich.console import Console

from angioseg.data.io import write_png
from angioseg.terminal import _unwrap, fit_table
from tests.conftest import run_cli

METRICS = ("dice", "precision", "recall", "accuracy", "hd95", "msd", "hd", "cldice")


def render(renderable: object, width: int = 80) -> str:
    con = Console(file=io.StringIO(), width=width, color_system=None)
    con.print(renderable)
    return con.file.getvalue()  # type: ignore[attr-defined]


def test_one_row_table_with_sd_fits_80_columns() -> None:
    cells = [f"{0.1 * i + 0.0123:.3f}±{0.0456 + i:.3f}" for i in range(len(METRICS))]
    text = render(fit_table("3 volume(s)", METRICS, [cells], 80))
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 80
    for name, value in zip(METRICS, cells, strict=True):  # each metric on its own line with its value
        assert re.search(rf"\b{name}\b.*{re.escape(value)}", text), (name, value)
    # A table that fits stays horizontal: all headers on one line.
    wide = render(fit_table("t", METRICS, [cells], 200), 200)
    assert any(all(m in ln for m in METRICS) for ln in wide.splitlines())


def test_many_rows_fall_back_to_blocks_named_by_the_key_column() -> None:
    columns = ("method", "selection", "dice", "cldice", "iou", "precision", "recall", "n")
    rows = [
        [f"method_{i}", "label-free", "0.412", "0.501", "0.300", "0.700", "0.650", "12"] for i in range(6)
    ]
    text = render(fit_table("six methods", columns, rows, 80, key=0))
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 80
    for i in range(6):
        assert f"method_{i}" in text
    assert text.count("0.412") == 6 and text.count("label-free") == 6
    pm = [[r[0], r[1], *(f"{v}±0.010" for v in r[2:7]), r[7]] for r in rows[:2]]
    two = render(fit_table("two", columns, pm, 80, key=0))  # transposed: methods as columns
    assert "…" not in two and max(len(ln) for ln in two.splitlines()) <= 80
    assert re.search(r"method_0\s*┃\s*method_1", two)
    assert re.search(r"dice\s*│\s*0\.412±0\.010\s*│\s*0\.412±0\.010", two)
    with pytest.raises(ValueError, match="8 cells"):
        fit_table("bad", columns, [["x"]], 80)


def test_evaluate_table_readable_at_80_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from angioseg import cli

    monkeypatch.setattr(cli.out_console, "width", 80)
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    m = np.zeros((40, 40), bool)
    m[10:15, 5:35] = True
    for i in range(3):
        write_png(truth / f"im{i}.png", m)
        write_png(pred / f"im{i}.png", np.roll(m, i, axis=0))
    assert run_cli(["evaluate", "--pred", pred, "--truth", truth, "--out", tmp_path / "ev"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and max(len(ln) for ln in out.splitlines()) <= 80
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text(encoding="utf-8"))
    for k in ("dice", "cldice", "iou", "mhd"):  # every value printed whole
        assert f"{summary[k]:.3f}" in out, k


def test_unwrap_joins_lines_but_keeps_lists() -> None:
    text = "First line.\n\n    A sentence wrapped\n    in the source.\n\n    - item one\n    - item two"
    assert _unwrap(text) == "First line.\n\nA sentence wrapped in the source.\n\n- item one\n- item two"


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    if hasattr(cmd, "commands"):  # a group (Typer vendors its own click)
        for name, sub in cmd.commands.items():
            out += _commands(sub, (*path, name))
    return out


def test_every_help_text_is_filled_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line of the description is only broken where the next word would not fit (no mid-sentence break)."""
    from angioseg.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    paths = _commands(typer.main.get_command(app))
    assert ("finetune",) in paths and ("cta", "train") in paths
    for path in paths:
        assert run_cli([*path, "--help"]) == 0
        out = capsys.readouterr().out
        lines = out.split("Usage:", 1)[1].split("╭", 1)[0].splitlines()[1:]
        assert max(len(ln) for ln in out.splitlines()) <= 80, path
        for line, nxt in itertools.pairwise(lines):
            if line.strip() and nxt.strip() and not nxt.strip().startswith(("-", "*", "•")):
                room = 80 - 2 - len(line.rstrip())
                assert len(nxt.split()[0]) >= room, (path, line, nxt)
