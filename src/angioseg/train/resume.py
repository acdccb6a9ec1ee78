"""What ``--resume`` may change in a stored run: a larger ``epochs``, ``patience``, ``tta`` and the
hardware; nothing else."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from angioseg.config import to_dict
from angioseg.errors import AngiosegError

C = TypeVar("C", bound=Any)  # a run config dataclass with ``epochs``, ``patience`` and ``out``

# What a --resume may change: a larger ``epochs`` extends the run, ``patience`` only decides when it
# stops, ``tta`` (fine-tuning runs) only how the test report is predicted, and the processes it runs
# on (``--batch-size`` is per optimiser step whatever their number, angioseg.train.distributed).
# Everything else would make the continued run a different experiment from its first part.
RESUME_MAY_CHANGE = ("epochs", "patience", "tta")
HARDWARE = ("devices", "strategy", "num_nodes")
# The ``angioseg finetune`` options of config keys (other keys are named as config.yaml keys).
_FLAGS = {
    "min_steps_per_epoch": "--steps",
    "preprocess.image_size": "--image-size",
    "augment": "--no-augment",
    **{k: "--" + k.replace("_", "-") for k in ("data", "labeled", "fraction", "pretrained", "transfer")},
    **{k: "--" + k.replace("_", "-") for k in ("width", "batch_size", "lr", "test", "val", "seed")},
    **{
        k: "--" + k
        for k in ("kfold", "precision", "groups", "loss", "semi", "unlabeled", "mix", "vesselness")
    },
    **{k: "--" + k.replace("_", "-") for k in ("augment_policy", "test_fold", "mix_fraction", "lr_schedule")},
}
_PATHS = ("data", "pretrained", "groups", "unlabeled", "mix")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _same_path(a: Any, b: Any) -> bool:
    if a is None or b is None or a == b:
        return bool(a == b)
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def resume_config(stored: C, cfg: C, where: str) -> C:
    """The config a resumed run goes on with: ``stored`` with ``cfg``'s (larger) ``epochs``, ``patience``
    and (where the config has one) ``tta``; a config.yaml written before ``tta`` existed reads as the default.

    ``cfg.out`` is where the run is now. Any other difference, and fewer epochs than stored, is an
    :class:`AngiosegError` naming the option, the stored and the given value.
    """
    old, new = _flat(to_dict(stored)), _flat(to_dict(cfg))
    changed = []
    for key, was in old.items():
        given = new.get(key)
        if key == "out" or key in RESUME_MAY_CHANGE or key in HARDWARE:
            continue
        if key == "semi" and given == "auto":  # the preset's default: the stored run already chose
            continue
        same = _same_path(was, given) if key in _PATHS else was == given
        if not same:
            flag = _FLAGS.get(key)
            if flag is None:
                changed.append(f"config.yaml key {key} (stored {was!r}, given {given!r})")
            else:
                named = "" if flag == "--" + key.replace("_", "-") else f"{key} in config.yaml: "
                changed.append(f"{flag} ({named}stored {was!r}, given {given!r})")
    if cfg.epochs < stored.epochs:
        changed.append(
            f"--epochs (stored {stored.epochs}, given {cfg.epochs}): a resumed run can only be extended"
        )
    if changed:
        raise AngiosegError(
            f"{where}: --resume cannot change {'; '.join(changed)}. Only a larger --epochs, --patience "
            "and (fine-tuning) --tta may differ from the stored run; start a new --out to change anything else"
        )
    report = {"tta": cfg.tta} if hasattr(stored, "tta") else {}
    hardware = {k: getattr(cfg, k) for k in HARDWARE if hasattr(cfg, k)}
    return replace(stored, out=cfg.out, epochs=cfg.epochs, patience=cfg.patience, **report, **hardware)
