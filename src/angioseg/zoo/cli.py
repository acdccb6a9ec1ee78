"""``angioseg models``: list the bundled models (registered on :data:`angioseg.cli.app`)."""

from __future__ import annotations

from rich.table import Table

from angioseg.cli import app, out_console


@app.command()
def models() -> None:
    """List the bundled models: use one as --model builtin:NAME (segment) or --pretrained builtin:NAME (finetune).

    Each has a model card (data, licences, the command that trained it, measured Dice) beside its
    weights; nothing is downloaded.
    """
    from angioseg.zoo import PREFIX, bundled_models

    found = bundled_models()
    if not found:
        out_console.print("no bundled models in this installation")
        return
    table = Table(title="bundled models", show_lines=False)
    for col in ("name", "use as", "test Dice", "MB"):
        table.add_column(col, no_wrap=col != "use as")
    for m in found:
        use = "segment --model" if m.role == "segmenter" else "finetune --pretrained"
        dice = "-" if m.test_dice is None else f"{m.test_dice:.3f}"
        table.add_row(f"{PREFIX}{m.name}", use, dice, f"{m.size_bytes / 1e6:.1f}")
    out_console.print(table)
    for m in found:
        out_console.print(f"{PREFIX}{m.name}: {m.summary}\n  card: {m.card}", highlight=False)
