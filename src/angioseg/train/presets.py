"""Named fine-tuning presets: ``cpu`` (the default: all labels of a 40-image set in <= 15 min on a
2-core CPU) and ``paper`` (the CM-UNet paper's GPU settings). Options given explicitly override the
preset; the chosen preset and its values are printed and written into ``config.yaml``.

The figures behind each preset (Dice and wall time on this project's machine) are in
``docs/results/label_efficiency.md``.
"""

from __future__ import annotations

from typing import Any

STARTING_POINT = "builtin:xca_synth_pretrained"

PRESETS: dict[str, dict[str, Any]] = {
    # Width 16 (1.9 M parameters) trains ~3x faster than width 64 on a CPU; up to 800 steps of batch
    # 8, starting from the bundled network pretrained on synthetic angiograms (no human label), which
    # beat random initialisation on validation Dice (docs/results/label_efficiency.md).
    "cpu": {
        "width": 16,
        "epochs": 100,
        "batch_size": 8,
        "min_steps_per_epoch": 8,
        "lr": 1e-3,
        "patience": 40,
        "pretrained": STARTING_POINT,
        "transfer": "encoder+decoder",
        # self-training on the --data images that have no mask, where there are any (~1.7x the time):
        # it won on validation at 5 labels in 14 of 15 folds x seeds (angioseg.train.finetune.resolve_semi)
        "semi": "auto",
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


def resolve(name: str, given: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The preset's values updated by the options ``given`` (None = not given), and a note, if any.

    ``pretrained="none"`` trains from scratch. A preset's starting point fits only its own width:
    with another ``width`` and no ``pretrained`` given, the run starts from scratch (and says so).
    """
    values = preset_values(name)
    note = None
    chosen = {k: v for k, v in given.items() if v is not None}
    if (
        "pretrained" in values
        and "pretrained" not in chosen
        and chosen.get("width", values["width"]) != values["width"]
    ):
        note = (
            f"note: the {name} preset starts from {values['pretrained']} (width {values['width']}); "
            f"with --width {chosen['width']} this run starts from scratch"
        )
        values.pop("pretrained")
        values.pop("transfer", None)
    values.update(chosen)
    if str(values.get("pretrained", "")).lower() == "none":
        values["pretrained"] = None
        values.pop("transfer", None)
    return values, note


def describe(name: str, values: dict[str, Any], self_training: bool = True) -> str:
    """One line for the console: ``preset cpu: width 16, epochs 100, ...``.

    ``self_training``: whether ``--semi auto`` may self-train with the run's other options
    (:func:`angioseg.train.finetune.auto_may_self_train`); the line announces it only then.
    """
    keys = ("width", "epochs", "batch_size", "min_steps_per_epoch", "lr", "patience")
    text = ", ".join(
        f"{k.replace('min_steps_per_epoch', 'steps')} {values[k]:g}" for k in keys if k in values
    )
    text += f", starting from {values.get('pretrained') or 'random weights'}"
    semi = str(values.get("semi") or "none").lower()
    if semi == "auto":
        if self_training:
            text += ", self-training on images without a mask if any (--semi none: off)"
    elif semi != "none":
        text += f", semi-supervised: {values['semi']}"
    other = " (the paper's settings: --preset paper)" if name == "cpu" else ""
    return f"preset {name}: {text}{other}"
