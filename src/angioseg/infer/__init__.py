"""Inference: engines behind one interface (torch, ONNX Runtime), batched fast preprocessing,
streamed cine frames and their outputs. ``angioseg.predict`` is a thin user of this package.

Arrows point down: predict -> infer -> models / data; nothing here imports predict or train
(except :func:`~angioseg.infer.export.export_model`, which loads a checkpoint through
``angioseg.train.checkpoint.load_model``).
"""

from angioseg.infer.engines import ENGINES, Engine, OnnxEngine, TorchEngine, predict_proba
from angioseg.infer.fastprep import fast_preprocess, restore_batch
from angioseg.infer.stream import batches, iter_file_frames

__all__ = [
    "ENGINES",
    "Engine",
    "OnnxEngine",
    "TorchEngine",
    "batches",
    "fast_preprocess",
    "iter_file_frames",
    "predict_proba",
    "restore_batch",
]
