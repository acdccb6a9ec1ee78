"""Whole-volume inference: Gaussian-weighted sliding windows, the two-pass centerline prior, post-processing.

* :func:`sliding_window_proba` runs a 2D model slice by slice (windows ``1 x crop x crop``) or a 3D
  model on ``depth x crop x crop`` windows with MONAI's ``sliding_window_inference`` (overlap
  0.25, Gaussian importance weighting with sigma = 0.125 x window, MONAI's default), so 2D and 3D
  share one code path. The output has the input's ``D x H x W`` shape.
* :class:`CTSegmenter` adds the centerline channel: with a centerline given (a file) it is used
  as is; otherwise a first pass with an empty channel gives a coarse probability map whose
  skeleton is the centerline of the second pass. Ground truth is never needed.
* The binary mask is post-processed (:func:`angioseg.cta.postprocess.postprocess`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from angioseg.cta.centerlines import Centerline, centerline_from_prediction, rasterise
from angioseg.cta.channel import centerline_channel, empty_channel, stack_input
from angioseg.cta.intensity import IntensityConfig, normalise_ct
from angioseg.cta.postprocess import postprocess
from angioseg.models.unet import UNet


@torch.no_grad()
def sliding_window_proba(
    model: UNet,
    x: np.ndarray,
    dims: int,
    crop: int,
    depth: int = 32,
    overlap: float = 0.25,
    batch_size: int = 4,
    fast: bool = False,
) -> np.ndarray:
    """Vessel probability ``D x H x W`` (float32) of a ``C x D x H x W`` normalised input."""
    from monai.inferers import sliding_window_inference

    dev = next(model.parameters()).device
    model.eval()
    roi = (1, crop, crop) if dims == 2 else (depth, crop, crop)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if fast else contextlib.nullcontext()

    def predictor(t: torch.Tensor) -> torch.Tensor:
        with autocast:
            if dims == 2:
                return model(t[:, :, 0]).float().softmax(1)[:, 1:2, None]
            return model(t).float().softmax(1)[:, 1:2]

    t = torch.from_numpy(np.ascontiguousarray(x[None], np.float32)).to(dev)
    out = sliding_window_inference(
        t, roi, batch_size * (8 if dims == 2 else 1), predictor, overlap=overlap, mode="gaussian"
    )
    prob = out if isinstance(out, torch.Tensor) else out[0]  # type: ignore[index]
    return np.asarray(prob[0, 0].cpu().numpy(), np.float32)


@dataclass
class SegmentOutput:
    """``prob`` and ``mask`` (post-processed) are D x H x W; ``centerline`` is the prior used, if any."""

    prob: np.ndarray
    mask: np.ndarray
    centerline: Centerline | None = None
    coarse: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


class CTSegmenter:
    """A trained CT model with what it needs at inference (from the checkpoint's ``cta`` metadata)."""

    def __init__(
        self,
        model: UNet,
        meta: dict[str, Any],
        threshold: float = 0.5,
        min_size: int | None = None,
        keep_largest: int | None = -1,
        fast: bool = False,
        overlap: float = 0.25,
    ) -> None:
        self.model = model.eval()
        self.meta = meta
        cta = meta.get("cta", {})
        self.dims = int(cta["dims"]) if "dims" in cta else int(model.config()["spatial_dims"])
        self.crop = int(cta.get("crop", 128))
        self.depth = int(cta.get("depth", 32))
        self.channel = str(cta.get("channel", "none"))
        self.gain = float(cta.get("gain", 2.0))
        self.intensity = IntensityConfig.from_dict(meta.get("preprocess"))
        self.threshold = threshold
        self.min_size = int(cta.get("min_size", 100)) if min_size is None else min_size
        # keep_largest: -1 = as stored in the model, None = keep every component >= min_size
        self.keep_largest = cta.get("keep_largest") if keep_largest == -1 else keep_largest
        self.fast, self.overlap = fast, overlap

    @classmethod
    def from_checkpoint(cls, path: Any, **kwargs: Any) -> CTSegmenter:
        from angioseg.errors import CheckpointError
        from angioseg.train.checkpoint import load_model

        model, meta = load_model(path)
        if "cta" not in meta:
            raise CheckpointError(
                f"{path}: not a CT model (no 'cta' section); train one with angioseg cta train"
            )
        return cls(model, meta, **kwargs)

    def _proba(self, image: np.ndarray, channel: np.ndarray | None) -> np.ndarray:
        return sliding_window_proba(
            self.model,
            stack_input(image, channel),
            self.dims,
            self.crop,
            self.depth,
            self.overlap,
            fast=self.fast,
        )

    def segment(self, hu: np.ndarray, centerline: Centerline | None = None) -> SegmentOutput:
        """Segment a raw HU volume ``D x H x W``; ``centerline`` (voxel coords) skips the first pass."""
        image = normalise_ct(hu, self.intensity)
        coarse = None
        if self.channel == "none":
            prob = self._proba(image, None)
        else:
            if centerline is None:
                coarse = self._proba(image, empty_channel(image, self.channel))
                centerline = centerline_from_prediction(coarse, self.threshold, self.min_size)
            cl_map = rasterise(centerline, image.shape)
            prob = self._proba(image, centerline_channel(image, cl_map, self.channel, self.gain))
        mask = postprocess(prob >= self.threshold, self.min_size, self.keep_largest)
        return SegmentOutput(prob, mask, centerline, coarse)
