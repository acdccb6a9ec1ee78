"""Bundled model weights: ``builtin:NAME`` resolves to ``zoo/NAME.safetensors`` (+ ``NAME.json``).

Each bundled model has, beside its weights and checkpoint metadata, a model card ``NAME.md`` (data
and licence attribution, the command and commit that trained it, the weights' SHA-256, measured
test Dice) and ``NAME.pretrain_images.json``: the pixel hashes of every real image it was trained
on, so that fine-tuning from it refuses a test split holding one of them
(:mod:`angioseg.data.leakage`). Nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from angioseg.errors import CheckpointError

PREFIX = "builtin:"
ZOO_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BundledModel:
    name: str
    weights: Path
    card: Path
    role: str  # "segmenter" (segment --model) or "starting-point" (finetune --pretrained)
    summary: str
    test_dice: float | None
    size_bytes: int


def is_builtin(spec: str | Path) -> bool:
    return str(spec).startswith(PREFIX)


def names() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def builtin_path(spec: str | Path) -> Path:
    """``builtin:NAME`` (or ``NAME``) -> the bundled ``NAME.safetensors``.

    Raises:
        CheckpointError: no such bundled model (the message lists those there are).
    """
    name = str(spec)[len(PREFIX) :] if is_builtin(spec) else str(spec)
    path = ZOO_DIR / f"{name}.safetensors"
    if not path.is_file():
        have = ", ".join(f"{PREFIX}{n}" for n in names()) or "none"
        raise CheckpointError(
            f"{spec}: no bundled model of that name (bundled: {have}; see `angioseg models`)"
        )
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundled_models() -> list[BundledModel]:
    """Every bundled model with the facts from its metadata and card."""
    out = []
    for name in names():
        weights = ZOO_DIR / f"{name}.safetensors"
        meta = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
        card = ZOO_DIR / f"{name}.md"
        zoo = meta.get("zoo", {})
        out.append(
            BundledModel(
                name=name,
                weights=weights,
                card=card,
                role=str(zoo.get("role", "segmenter")),
                summary=str(zoo.get("summary", "")),
                test_dice=zoo.get("test_dice"),
                size_bytes=weights.stat().st_size,
            )
        )
    return out
