"""``angioseg export``: a checkpoint as an ONNX graph, with its preprocessing contract beside it.

``<stem>.onnx`` (input ``image``: ``batch x 1 x H x W`` float32, preprocessed; output
``probability``: ``batch x 1 x H x W`` float32, the vessel class's softmax) and ``<stem>.onnx.json``
(the contract): the preprocessing that produces the input (the checkpoint's ``preprocess`` block
and the steps in words), the threshold, the model config, the SHA-256 of the weights it came from,
and the largest difference from PyTorch measured at export. ``segment --engine onnx`` uses the
graph beside a checkpoint when its recorded SHA-256 matches the weights, and otherwise exports one
in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from angioseg import __version__
from angioseg.data.preprocess import PreprocessConfig
from angioseg.errors import AngiosegError
from angioseg.infer.engines import OnnxEngine, TorchEngine, onnx_bytes
from angioseg.models.unet import UNet
from angioseg.utils import atomic_path, write_json
from angioseg.zoo import is_builtin, sha256

FORMATS = ("onnx",)
CONTRACT_FORMAT = "angioseg-onnx-contract"
PREPROCESS_STEPS = (
    "raw intensities to the 8-bit scale (angioseg.data.preprocess.to_8bit_range)",
    "centre crop to preprocess.center_crop (if set)",
    "dark-corner inpainting (if preprocess.inpaint_corners)",
    "unsharp mask, Gaussian sigma preprocess.unsharp_radius, amount preprocess.unsharp_amount",
    "per-image z-score",
    "resize to preprocess.image_size (bicubic)",
    "probability >= threshold is vessel; map back onto the native grid by bilinear resize",
)


def graph_paths(weights: Path) -> tuple[Path, Path]:
    """``(<stem>.onnx, <stem>.onnx.json)`` beside a checkpoint's weights."""
    onnx_path = weights.with_suffix(".onnx")
    return onnx_path, onnx_path.with_name(onnx_path.name + ".json")


def _max_difference(model: UNet, graph: bytes, size: int) -> float:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, size, size)).astype(np.float32))
    return float((TorchEngine(model)(x) - OnnxEngine(graph)(x)).abs().max())


def export_model(model_path: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> Path:
    """Export a segmentation checkpoint (run folder or ``.safetensors``); return the graph's path.

    ``out`` defaults to ``<stem>.onnx`` beside the weights (for a bundled ``builtin:NAME`` model, in
    the current folder); the contract is ``<out>.json``.
    """
    from angioseg.train.checkpoint import load_model, resolve_checkpoint

    if fmt not in FORMATS:
        raise AngiosegError(f"--format must be one of {FORMATS}, got {fmt!r}")
    weights, _ = resolve_checkpoint(model_path)
    model, meta = load_model(model_path)
    cfg = PreprocessConfig.from_dict(meta.get("preprocess"))
    size = cfg.image_size or 256
    graph = onnx_bytes(model, size)
    diff = _max_difference(model, graph, size)
    if out is None and is_builtin(model_path):  # never write into the installed package
        target = Path.cwd() / graph_paths(weights)[0].name
    else:
        target = Path(out) if out is not None else graph_paths(weights)[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(graph)
    contract: dict[str, Any] = {
        "format": CONTRACT_FORMAT,
        "version": 1,
        "angioseg_version": __version__,
        "torch_version": torch.__version__,
        "source_weights": str(weights),
        "source_weights_sha256": sha256(weights),
        "input": {"name": "image", "shape": ["batch", 1, size, size], "dtype": "float32"},
        "output": {"name": "probability", "shape": ["batch", 1, size, size], "dtype": "float32"},
        "threshold": 0.5,
        "preprocess": cfg.to_dict(),
        "preprocess_steps": list(PREPROCESS_STEPS),
        "model": meta.get("model"),
        "max_abs_difference_vs_torch": diff,
    }
    write_json(target.with_name(target.name + ".json"), contract)
    return target


def onnx_engine_for(
    weights: Path, model: UNet, image_size: int, threads: int | None = None
) -> tuple[OnnxEngine, str]:
    """An ONNX Runtime engine for a checkpoint, and where its graph came from.

    The exported graph beside the weights is used when its contract names these exact weights
    (SHA-256); otherwise the model is exported in memory (about a second), so a stale graph is never run.
    """
    import json

    graph, contract = graph_paths(weights)
    if graph.is_file() and contract.is_file():
        try:
            recorded = json.loads(contract.read_text(encoding="utf-8")).get("source_weights_sha256")
        except (OSError, ValueError):
            recorded = None
        if recorded == sha256(weights):
            return OnnxEngine(graph, threads), str(graph)
    return OnnxEngine(onnx_bytes(model, image_size), threads), "exported in memory"
