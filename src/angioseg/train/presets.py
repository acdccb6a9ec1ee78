"""Named fine-tuning presets: ``cpu`` (the default: all labels of a 40-image set in <= 15 min on a
2-core CPU) and ``paper`` (the CM-UNet paper's GPU settings). Options given explicitly override the
preset; the chosen preset and its values are printed and written into ``config.yaml``.

The figures behind each preset (Dice and wall time on this project's machine) are in
``docs/results/label_efficiency.md``.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Width 16 (1.9 M parameters) trains ~3x faster than width 64 on a CPU; 800 steps of batch 8.
    "cpu": {
        "width": 16,
        "epochs": 100,
        "batch_size": 8,
        "min_steps_per_epoch": 8,
        "lr": 1e-3,
        "patience": 40,
    },
    # The paper: width 64 (31 M parameters), up to 128 epochs, early stopping after 30.
    "paper": {
        "width": 64,
        "epochs": 128,
        "batch_size": 8,
        "min_steps_per_epoch": 8,
        "lr": 1e-3,
        "patience": 30,
    },
}
DEFAULT_PRESET = "cpu"


def preset_values(name: str) -> dict[str, Any]:
    """The options of preset ``name`` (a copy)."""
    from angioseg.errors import AngiosegError

    if name not in PRESETS:
        raise AngiosegError(f"--preset {name!r} is not one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def describe(name: str, values: dict[str, Any]) -> str:
    """One line for the console: ``preset cpu: width 16, epochs 100, ...``."""
    keys = ("width", "epochs", "batch_size", "min_steps_per_epoch", "lr", "patience")
    text = ", ".join(
        f"{k.replace('min_steps_per_epoch', 'steps')} {values[k]:g}" for k in keys if k in values
    )
    other = " (the paper's settings: --preset paper)" if name == "cpu" else ""
    return f"preset {name}: {text}{other}"
