"""clDice (Shit et al., CVPR 2021) with exact morphological skeletons, and the soft-skeleton loss."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from angioseg.metrics.overlap import _pair


def skeleton(mask: np.ndarray) -> np.ndarray:
    """``skimage.morphology.skeletonize`` (2D or 3D)."""
    from skimage.morphology import skeletonize

    m = np.asarray(mask, bool)
    if not m.any():
        return m.copy()
    return np.asarray(skeletonize(m), bool)


def cldice(
    pred: np.ndarray, truth: np.ndarray, skeleton_fn: Callable[[np.ndarray], np.ndarray] | None = None
) -> float:
    """clDice = 2·Tprec·Tsens / (Tprec + Tsens), Tprec = |S(P)∩G|/|S(P)|, Tsens = |S(G)∩P|/|S(G)|.

    Both empty gives 1, exactly one empty gives 0. ``skeleton_fn`` replaces :func:`skeleton` (for
    3D masks, where scikit-image misses even-width tubes: ``angioseg.cta.centerlines.skeletonize_3d``).
    """
    p, g = _pair(pred, truth)
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    skel = skeleton_fn or skeleton
    sp, sg = np.asarray(skel(p), bool), np.asarray(skel(g), bool)
    tprec = (sp & g).sum() / max(int(sp.sum()), 1)
    tsens = (sg & p).sum() / max(int(sg.sum()), 1)
    return 0.0 if tprec + tsens == 0 else float(2 * tprec * tsens / (tprec + tsens))


# --- soft skeleton (differentiable; for use as a training loss) -----------------------------------


def _soft_erode(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        return torch.minimum(-F.max_pool2d(-x, (3, 1), 1, (1, 0)), -F.max_pool2d(-x, (1, 3), 1, (0, 1)))
    return torch.minimum(
        torch.minimum(-F.max_pool3d(-x, (3, 1, 1), 1, (1, 0, 0)), -F.max_pool3d(-x, (1, 3, 1), 1, (0, 1, 0))),
        -F.max_pool3d(-x, (1, 1, 3), 1, (0, 0, 1)),
    )


def _soft_dilate(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, 1, 1) if x.dim() == 4 else F.max_pool3d(x, 3, 1, 1)


def soft_skeleton(x: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """Soft skeleton of probabilities ``x`` (B x C x spatial), as in the clDice paper."""
    skel = F.relu(x - _soft_dilate(_soft_erode(x)))
    for _ in range(iterations):
        x = _soft_erode(x)
        delta = F.relu(x - _soft_dilate(_soft_erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_cldice_loss(
    prob: torch.Tensor, target: torch.Tensor, iterations: int = 10, smooth: float = 1.0
) -> torch.Tensor:
    """1 − soft clDice between foreground probabilities and a binary target (same shape, B x 1 x ...).

    Pass probabilities (after softmax/sigmoid), not logits.
    """
    sp, sg = soft_skeleton(prob, iterations), soft_skeleton(target, iterations)
    tprec = ((sp * target).sum() + smooth) / (sp.sum() + smooth)
    tsens = ((sg * prob).sum() + smooth) / (sg.sum() + smooth)
    return 1.0 - 2.0 * tprec * tsens / (tprec + tsens)
