"""Losses shared by the pretraining methods.

* :func:`normalize_target` - the per-patch normalised reconstruction target of MAE, CMAE and SparK
  (``(x - mean_patch) / sqrt(var_patch + 1e-6)``, unbiased variance as in their ``Tensor.var``);
  the CM-UNet authors normalised per image *row* instead (``mode="row"``, kept for comparison).
* :func:`masked_mse` - mean squared error over masked pixels only: ``sum(m * (p - t)^2) / sum(m)``.
  With equal-sized patches this equals SparK's mean over masked patches of per-patch MSEs.
* :func:`info_nce` - CMAE's contrastive loss: ``2 tau * CE(normalize(q) normalize(k)^T / tau, diag)``.
* :func:`moco_logits` - MoCo's ``[l_pos, l_neg] / tau`` with the positive in column 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from angioseg.pretrain.masking import patchify, unpatchify

NORM_MODES = ("patch", "row", "none")


def patch_stats(x: torch.Tensor, patch: int, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch mean and ``sqrt(var + eps)`` of ``B x C x H x W``, broadcast back to ``B x C x H x W``."""
    p = patchify(x, patch)
    mean = p.mean(dim=-1, keepdim=True)
    std = (p.var(dim=-1, keepdim=True) + eps).sqrt()
    size = (x.shape[-2], x.shape[-1])
    return unpatchify(mean.expand_as(p), patch, size), unpatchify(std.expand_as(p), patch, size)


def normalize_target(
    x: torch.Tensor, mode: str = "patch", patch: int = 16, eps: float = 1e-6
) -> torch.Tensor:
    """Reconstruction target from ``B x C x H x W`` images (same shape).

    ``"patch"``: normalise each ``patch x patch`` block (MAE ``norm_pix_loss``, CMAE, SparK);
    ``"row"``: normalise each image row (the CM-UNet authors' code); ``"none"``: raw pixels.
    """
    if mode == "none":
        return x
    if mode == "row":
        return (x - x.mean(dim=-1, keepdim=True)) / (x.var(dim=-1, keepdim=True) + eps).sqrt()
    if mode == "patch":
        mean, std = patch_stats(x, patch, eps)
        return (x - mean) / std
    raise ValueError(f"unknown target normalisation {mode!r}; expected one of {NORM_MODES}")


def denormalize_target(
    pred: torch.Tensor, x: torch.Tensor, mode: str = "patch", patch: int = 16
) -> torch.Tensor:
    """Map a prediction of :func:`normalize_target` ``(x, mode)`` back to ``x``'s intensities (for figures)."""
    x = x.float()
    if mode == "patch":
        mean, std = patch_stats(x, patch)
        return pred * std + mean
    if mode == "row":
        return pred * (x.var(dim=-1, keepdim=True) + 1e-6).sqrt() + x.mean(dim=-1, keepdim=True)
    return pred


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(mask * (pred - target)^2) / sum(mask)`` (0 when nothing is masked); shapes broadcast."""
    err = (pred.float() - target.float()).pow(2)
    m = mask.to(err.dtype).expand_as(err)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def info_nce(
    q: torch.Tensor, k: torch.Tensor, tau: float = 0.07, scale: float | None = None, offset: int = 0
) -> torch.Tensor:
    """Contrastive loss of ``B x D`` queries against ``N x D`` keys (``N >= B``; keys of all devices).

    The positive of query ``i`` is key ``offset + i`` (``offset`` = rank * B under DDP). The loss is
    ``scale * CE(cos(q, k) / tau)`` with ``scale = 2 tau`` by default (CMAE's head, kept by CM-UNet).
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    logits = q @ k.t() / tau
    labels = torch.arange(q.shape[0], device=q.device) + offset
    return (2 * tau if scale is None else scale) * F.cross_entropy(logits, labels)


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """MoCo logits ``B x (1 + K)``: column 0 = ``q.k`` (positive), then ``q.queue^T``; all divided by tau.

    ``q`` and ``k`` are ``B x D`` and L2-normalised, ``queue`` is ``K x D`` (normalised keys).
    """
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.t()
    return torch.cat([pos, neg], dim=1) / tau
