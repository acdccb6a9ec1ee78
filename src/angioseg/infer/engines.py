"""Inference engines behind one interface: a batch of preprocessed images in, vessel probabilities out.

* :class:`TorchEngine`: the UNet in PyTorch, fp32, or with ``fast=True`` channels_last + bf16
  autocast (several times faster on CPUs with native bf16);
* :class:`OnnxEngine`: an exported graph (:func:`export_onnx`) in ONNX Runtime, fp32;
* :class:`OpenVinoEngine`: the same graph compiled by OpenVINO (bf16 with ``fast`` on CPUs with
  native bf16; the fastest on Intel CPUs; optional dependency);
* :class:`TTAEngine`: test-time flips (and quarter turns) around either.

Both take ``N x 1 x H x W`` float32 and return ``N x H x W`` float32 probabilities of the vessel
class (softmax over the two logits); :data:`ENGINES` maps the ``--engine`` names to them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from angioseg.errors import AngiosegError
from angioseg.models.unet import UNet, set_memory_format


class Engine(Protocol):
    """``engine(x)``: ``N x 1 x H x W`` float32 tensor -> ``N x H x W`` float32 vessel probability."""

    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class ProbabilityNet(torch.nn.Module):
    """A segmentation UNet whose output is the vessel probability ``N x 1 x H x W`` (what is exported)."""

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float().softmax(1)[:, 1:2]


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (eval mode) with each BatchNorm that follows a convolution folded into
    its weights (``torch.nn.utils.fusion.fuse_conv_bn_eval``): the same function up to float
    rounding, one pass over the feature maps fewer per layer."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for seq in folded.modules():
        if not isinstance(seq, torch.nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, torch.nn.Conv2d | torch.nn.Conv3d) and isinstance(
                bn, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d
            ):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), torch.nn.Identity()
    return folded


class TorchEngine:
    """The network in PyTorch; with ``fast``, BatchNorm folded into the convolutions (a copy of the
    model), channels_last and bf16 autocast."""

    name = "torch"

    def __init__(self, model: UNet, fast: bool = False, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = (fold_batchnorm(model) if fast else model).to(self.device).eval()
        self.fast = fast
        set_memory_format(self.model, fast)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx: contextlib.AbstractContextManager[Any] = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if self.fast
            else contextlib.nullcontext()
        )
        with ctx:
            prob = self.model(x).float().softmax(1)[:, 1]
        return prob.cpu()


def default_threads() -> int:
    """Threads for one inference process: torch's choice (physical cores), at least 1."""
    return max(1, torch.get_num_threads() or os.cpu_count() or 1)


def pipeline_threads() -> int:
    """Network threads for ``segment --fast`` with the onnx or openvino engine: one less than
    :func:`default_threads` (at least 1), since a prefetch thread decodes and preprocesses the next
    batch and a writer thread writes the last one meanwhile (on the 2-core development machine, the
    OpenVINO student, three interleaved rounds under load: 81.2 / 65.0 / 80.6 frames/s with 1
    network thread against 68.7 / 71.8 / 74.8 with 2, ahead in two rounds of three). The torch engine
    keeps every core: its width-16 network takes most of the time (30.4 frames/s with 2 threads,
    24.5 with 1, two runs not interleaved; docs/results/speed.md)."""
    return max(1, default_threads() - 1)


class OnnxEngine:
    name = "onnx"

    def __init__(self, graph: str | Path | bytes, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - a core dependency; a broken install
            raise AngiosegError("--engine onnx needs onnxruntime (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = graph if isinstance(graph, bytes) else str(graph)
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            where = "exported graph" if isinstance(graph, bytes) else str(graph)
            raise AngiosegError(f"{where}: not a loadable ONNX graph ({exc})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (prob,) = self.session.run(None, {self.input: arr})
        return torch.from_numpy(prob[:, 0])


class OpenVinoEngine:
    """An exported graph (:func:`onnx_bytes`) compiled by OpenVINO for this machine's CPU (the
    optional ``openvino`` extra, Apache-2.0), in bf16 with ``fast`` where the CPU has native bf16
    (else, and without ``fast``, fp32). On the development machine's Xeon (AMX) the compiled bf16
    graph runs the networks about 2.2-2.3x faster than PyTorch's channels_last + bf16 autocast
    (model only, batches of 8 at 256²: student 243 against 108 frames/s, teacher 98 against 43;
    docs/results/speed.md), with the same fast-path Dice on the CIMAT test split.

    The graph is read from memory and compiled by OpenVINO's runtime; its model-conversion tools
    (the only part that has telemetry) are not used.
    """

    name = "openvino"

    def __init__(self, graph: bytes, fast: bool = False, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise AngiosegError(
                "--engine openvino needs OpenVINO: pip install 'angioseg[openvino]' (or pip install openvino)"
            ) from None
        core = ov.Core()
        bf16 = fast and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
            "INFERENCE_NUM_THREADS": threads or default_threads(),
        }
        try:
            compiled = core.compile_model(core.read_model(graph), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError for graphs it cannot read or compile
            raise AngiosegError(f"exported graph: OpenVINO cannot compile it ({exc})") from None
        self.precision = "bf16" if bf16 else "fp32"
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self.request = compiled.create_infer_request()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self.request.infer({0: arr})
        prob = np.array(next(iter(out.values())), dtype=np.float32)  # a copy: the request reuses its buffer
        return torch.from_numpy(prob[:, 0])


def onnx_bytes(model: UNet, image_size: int, opset: int = 17) -> bytes:
    """The vessel-probability graph of ``model`` (batch and spatial size dynamic) as ONNX bytes."""
    import io
    import warnings

    net = ProbabilityNet(model).eval().float()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            net,
            (torch.zeros(1, 1, image_size, image_size),),
            buf,  # type: ignore[arg-type]  # a file object works (the TorchScript exporter)
            input_names=["image"],
            output_names=["probability"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "probability": {0: "batch"}},
            opset_version=opset,
            dynamo=False,  # the dynamo exporter needs onnxscript; the TorchScript one suffices for a UNet
        )
    return buf.getvalue()


ENGINES = ("torch", "onnx", "openvino")

TTA_MODES = ("none", "flip", "d4")
DEFAULT_TTA = "flip"  # chosen on validation Dice (docs/results/label_efficiency.md)


def _d4_forward(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    y = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(y, dims=(-1,)) if flip else y


def _d4_inverse(p: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    y = torch.flip(p, dims=(-1,)) if flip else p
    return torch.rot90(y, -k, dims=(-2, -1)) if k else y


# (quarter turns, horizontal flip): "flip" = identity, H flip, V flip (= 180° turn + H flip), 180° turn
TTA_TRANSFORMS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "flip": ((0, False), (0, True), (2, True), (2, False)),
    "d4": tuple((k, f) for k in range(4) for f in (False, True)),
}


class TTAEngine:
    """Test-time augmentation around any engine: the mean vessel probability over flipped (``flip``:
    4 views) or flipped and quarter-turned (``d4``: 8 views) copies of the batch, each mapped back.

    The training augmentations include these flips and quarter turns, so every view is one the
    network was trained on; ``docs/results/label_efficiency.md`` has the validation Dice that chose
    the default.
    """

    def __init__(self, engine: Engine, mode: str) -> None:
        self.engine, self.mode = engine, check_tta(mode)
        self.name = engine.name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        views = TTA_TRANSFORMS[self.mode]
        total: torch.Tensor | None = None
        for k, flip in views:
            p = _d4_inverse(self.engine(_d4_forward(x, k, flip).contiguous()), k, flip)
            total = p if total is None else total + p
        assert total is not None
        return total / len(views)


def check_tta(mode: str) -> str:
    if mode not in TTA_MODES:
        raise AngiosegError(f"--tta must be one of {TTA_MODES}, got {mode!r}")
    return mode


def with_tta(engine: Engine, mode: str) -> Engine:
    """``engine`` itself for ``mode="none"``, else a :class:`TTAEngine` around it."""
    return engine if check_tta(mode) == "none" else TTAEngine(engine, mode)


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise AngiosegError(f"--engine must be one of {ENGINES}, got {name!r}")
    return name


def stack_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """``N x 1 x H x W`` float32 tensor of equal-shaped 2D arrays."""
    return torch.from_numpy(np.stack([np.asarray(i, np.float32) for i in images])[:, None])


@torch.no_grad()
def predict_proba(
    model: UNet,
    images: Sequence[np.ndarray],
    fast: bool = False,
    batch_size: int = 4,
    roi_size: int | None = None,
    device: str | torch.device | None = None,
    engine: Engine | None = None,
    tta: str = "none",
) -> list[np.ndarray]:
    """Vessel probability (H x W float32) for each preprocessed image.

    With ``roi_size`` the images are processed by sliding windows of that size (overlap 0.25,
    Gaussian weighting, MONAI's inferer); otherwise whole, in batches of equal-shaped images.
    ``engine`` replaces the torch engine built from ``model``, ``fast`` and ``device``; ``tta``
    averages over flipped views (:class:`TTAEngine`; in sliding-window mode, per window).
    """
    from monai.inferers import sliding_window_inference

    run = with_tta(engine if engine is not None else TorchEngine(model, fast, device), tta)

    def net(x: torch.Tensor) -> torch.Tensor:
        return run(x)[:, None]

    out: list[np.ndarray] = []
    i = 0
    while i < len(images):
        shape = images[i].shape
        j = i
        while j < len(images) and j - i < batch_size and images[j].shape == shape:
            j += 1
        x = stack_batch(images[i:j])
        if roi_size is not None and max(shape) > roi_size:
            prob = sliding_window_inference(
                x, (roi_size, roi_size), batch_size, net, overlap=0.25, mode="gaussian"
            )
            prob = prob if isinstance(prob, torch.Tensor) else prob[0]  # type: ignore[index]
        else:
            prob = net(x)
        out.extend(p[0].cpu().numpy().astype(np.float32) for p in prob)
        i = j
    if engine is None and fast:
        set_memory_format(model, False)
    return out
