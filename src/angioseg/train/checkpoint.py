"""Checkpoints: ``<name>.safetensors`` (weights) beside ``<name>.json`` (everything needed to rebuild).

No pickled module is ever written or read. The JSON holds::

    {"format": "angioseg-checkpoint", "version": 1, "angioseg_version": "...",
     "task": "segmentation" | "pretrain", "method": "none" | "cmunet" | ...,
     "model": {UNet kwargs}, "preprocess": {...}, ...}

Pretrained weights flow into fine-tuning through :func:`load_pretrained`, which copies the
``encoder.*`` (and ``decoder.*``) tensors of a checkpoint into a :class:`~angioseg.models.UNet`,
never the 1x1 ``head``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from angioseg import __version__
from angioseg.errors import CheckpointError
from angioseg.models.unet import UNet, build_model
from angioseg.utils import atomic_path, write_json

FORMAT = "angioseg-checkpoint"
VERSION = 1
DEFAULT_NAME = "model"
TRANSFERS = ("auto", "encoder", "encoder+decoder", "all")


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``path`` (an existing folder -> ``folder/model``, or a file stem) as ``.safetensors`` + ``.json``; return the weights path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_dir():
        stem = path / DEFAULT_NAME
    elif path.suffix in (".safetensors", ".json"):
        stem = path.with_suffix("")
    else:
        stem = path
    weights = stem.with_suffix(".safetensors")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(weights, durable=True) as tmp:  # minutes of training: worth two fsyncs
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_json(
        stem.with_suffix(".json"),
        {"format": FORMAT, "version": VERSION, "angioseg_version": __version__, **meta},
    )
    return weights


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """Find ``(weights.safetensors, meta.json)`` from a run folder, a ``.safetensors`` or a ``.json`` path,
    or a bundled model ``builtin:NAME`` (:mod:`angioseg.zoo`)."""
    from angioseg.zoo import builtin_path, is_builtin

    p = builtin_path(path) if is_builtin(path) else Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint or run folder does not exist")
    if p.is_dir():
        cand = p / f"{DEFAULT_NAME}.safetensors"
        if not cand.exists():
            found = sorted(p.glob("*.safetensors"))
            if len(found) != 1:
                raise CheckpointError(
                    f"{p}: no {DEFAULT_NAME}.safetensors in this folder; is it an angioseg run folder "
                    "(finetune/pretrain --out)?"
                )
            cand = found[0]
        p = cand
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if p.suffix != ".safetensors":
        raise CheckpointError(f"{p}: expected an angioseg checkpoint (.safetensors + .json) or a run folder")
    meta_path = p.with_suffix(".json")
    if not p.exists() or not meta_path.exists():
        raise CheckpointError(f"{p}: checkpoint needs both {p.name} and {meta_path.name}")
    return p, meta_path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(state_dict, meta)``, checking that the files are an angioseg checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, meta_path = resolve_checkpoint(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f'{meta_path}: not an angioseg checkpoint (no "format": "{FORMAT}")')
    if int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{meta_path}: checkpoint version {meta['version']} is newer than this angioseg ({VERSION})"
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: cannot read weights ({exc})") from None
    return state, meta


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[UNet, dict[str, Any]]:
    """Rebuild a segmentation UNet and its metadata from a checkpoint or run folder."""
    state, meta = read_checkpoint(path)
    if meta.get("task") != "segmentation":
        raise CheckpointError(
            f"{path}: this is a {meta.get('task', 'unknown')!r} checkpoint ({meta.get('method', '?')}); "
            "segmentation needs a fine-tuned model (angioseg finetune --out RUN_DIR)"
        )
    try:
        model = build_model(meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: model config cannot rebuild a UNet ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not match the model config: {str(exc).splitlines()[0]}"
        ) from None
    return model.to(map_location).eval(), meta


@dataclass
class TransferReport:
    """What :func:`load_pretrained` copied: ``tensors`` state-dict entries holding ``parameters``
    learnable values (of ``model_parameters`` in the receiving network) and ``buffers`` BatchNorm
    statistics, from a ``method`` checkpoint at ``source``."""

    method: str
    transfer: str
    tensors: int
    parameters: int
    skipped: list[str]
    buffers: int = 0
    model_parameters: int = 0
    source: str = ""

    def __str__(self) -> str:
        share = f" of {self.model_parameters:,}" if self.model_parameters else ""
        where = f" {self.source}" if self.source else ""
        return (
            f"loaded {self.tensors} tensors of the {self.transfer} from the {self.method!r} pretraining "
            f"checkpoint{where}: {self.parameters:,}{share} parameters + {self.buffers:,} BatchNorm "
            + (
                "statistics (the whole network, head included)"
                if self.transfer == "all"
                else "statistics (the 1x1 head starts from scratch)"
            )
        )


def load_pretrained(model: nn.Module, path: str | Path, transfer: str = "auto") -> TransferReport:
    """Copy pretrained ``encoder.*`` (and ``decoder.*``) tensors into ``model``; the head only with ``"all"``.

    Args:
        transfer: ``"encoder"``, ``"encoder+decoder"`` (the checkpoint must have a decoder),
            ``"auto"`` (the decoder too when the checkpoint has one), or ``"all"`` (every tensor,
            head included: continue training a segmentation model, e.g. a bundled one, on new labels).

    Raises:
        CheckpointError: not an angioseg checkpoint, nothing to load, or a tensor of the wrong shape.
    """
    if transfer not in TRANSFERS:
        raise CheckpointError(f"--transfer must be one of {TRANSFERS}, got {transfer!r}")
    state, meta = read_checkpoint(path)
    method = str(meta.get("method", "unknown"))
    has_decoder = any(k.startswith("decoder.") for k in state)
    if transfer == "auto":
        transfer = "encoder+decoder" if has_decoder else "encoder"
    if transfer == "encoder+decoder" and not has_decoder:
        raise CheckpointError(
            f"{path}: the {method!r} checkpoint has no decoder weights; use --transfer encoder"
        )
    prefixes = ("encoder.",) if transfer == "encoder" else ("encoder.", "decoder.")
    if transfer == "all":
        if meta.get("task") != "segmentation":
            raise CheckpointError(
                f"{path}: --transfer all needs a segmentation model (this is a {meta.get('task')!r} checkpoint); "
                "use --transfer encoder+decoder"
            )
        prefixes = ("",)
    selected = {k: v for k, v in state.items() if k.startswith(prefixes)}
    if not selected:
        raise CheckpointError(
            f"{path}: no {transfer} tensors (keys starting with {prefixes}) in this checkpoint"
        )
    own = model.state_dict()
    selected = _widen_first_conv(model, selected, own)
    missing = [k for k in selected if k not in own]
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in selected.items()
        if k in own and own[k].shape != v.shape
    ]
    if missing or wrong:
        hint = ""
        if meta.get("model"):
            hint = f" (checkpoint model: {meta['model']})"
        detail = "; ".join((wrong + [f"{k}: not in the model" for k in missing])[:3])
        raise CheckpointError(f"{path}: pretrained weights do not fit this UNet{hint}: {detail}")
    model.load_state_dict(selected, strict=False)
    skipped = sorted(k for k in state if k not in selected)
    learnable = dict(model.named_parameters())
    n_params = int(sum(v.numel() for k, v in selected.items() if k in learnable))
    n_buffers = int(sum(v.numel() for k, v in selected.items() if k not in learnable))
    total = int(sum(p.numel() for p in learnable.values()))
    return TransferReport(method, transfer, len(selected), n_params, skipped, n_buffers, total, str(path))


FIRST_CONV = "encoder.stages.0.0.weight"


def _widen_first_conv(
    model: nn.Module, selected: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A checkpoint without the vesselness channel loaded into a UNet with one: the first convolution
    gets zero weights for the extra input channel, so the loaded network computes what the
    checkpoint's did until fine-tuning learns to use the channel."""
    w = selected.get(FIRST_CONV)
    if getattr(model, "vesselness", None) is None or w is None or FIRST_CONV not in own:
        return selected
    target = own[FIRST_CONV]
    if w.shape[1] + 1 != target.shape[1] or w.shape[:1] + w.shape[2:] != target.shape[:1] + target.shape[2:]:
        return selected
    extra = torch.zeros_like(w[:, :1])
    return {**selected, FIRST_CONV: torch.cat([w, extra], dim=1)}


def segmentation_meta(model: UNet, preprocess: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"task": "segmentation", "model": model.config(), "preprocess": preprocess, **extra}


def save_run_model(run_dir: str | Path, model: UNet, preprocess: dict[str, Any], **extra: Any) -> Path:
    return save_checkpoint(
        Path(run_dir) / DEFAULT_NAME, model.state_dict(), segmentation_meta(model, preprocess, **extra)
    )


__all__ = [
    "FORMAT",
    "TransferReport",
    "load_model",
    "load_pretrained",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_run_model",
    "write_json",
]
