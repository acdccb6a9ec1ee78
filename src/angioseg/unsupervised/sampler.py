"""Anchor / positive patch sampling for the CUTS contrastive loss.

For each image, ``S`` anchors are drawn uniformly with their ``P x P`` patch inside the image; each
anchor's positive is a pixel within ``neighbourhood`` pixels whose patch resembles the anchor's
(SSIM > ``ssim_threshold``): the best of ``tries`` random candidates (CUTS 2022: S = 16,
neighbourhood 5, 10 tries, SSIM 0.5; CUTS 2024: S = 8, neighbourhood = P, first hit of 20 tries).

Two bugs of the authors' sampler are fixed here:

* they reseed Python's RNG at the start of every call, so the same anchor locations come back for
  every batch and epoch; this sampler owns one :class:`numpy.random.Generator` that advances, so
  every call draws fresh anchors (a fixed ``seed`` still makes a whole run reproducible);
* their fallback (no candidate passes the SSIM test) wrote through a NumPy *view* of the anchor, so
  the "positive" was the anchor itself; here the fallback is a separate pixel one step towards the
  image centre, never the anchor.

The SSIM is the single-window SSIM of the two patches (sample covariance, Wang et al. 2004 constants
``K1 = 0.01, K2 = 0.03``), which equals ``skimage.metrics.structural_similarity(a, b, win_size=P,
data_range=L)`` on two P x P patches. It is computed on the image shifted to a minimum of 0 (SSIM's
luminance term assumes non-negative intensities; the encoder's inputs are in [-1, 1]) with ``L`` =
the image's intensity range, which, unlike the authors' per-patch range, is defined on flat patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SamplerConfig:
    patches_per_image: int = 16
    patch_size: int = 5
    neighbourhood: int = 5
    tries: int = 10
    ssim_threshold: float = 0.5


def patch_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """Single-window SSIM between patch stacks ``a``, ``b`` of shape ``... x n`` (flattened patches).

    Returns an array of shape ``...``.
    """
    n = a.shape[-1]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ma, mb = a.mean(-1), b.mean(-1)
    da, db = a - ma[..., None], b - mb[..., None]
    scale = 1.0 / max(n - 1, 1)
    va, vb = (da * da).sum(-1) * scale, (db * db).sum(-1) * scale
    cov = (da * db).sum(-1) * scale
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))


def _patches(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: int) -> np.ndarray:
    """``image`` C x H x W, centres of any shape ``...`` -> ``... x (C*P*P)``."""
    r = p // 2
    off = np.arange(-r, r + 1)
    rr = rows[..., None, None] + off[:, None]
    cc = cols[..., None, None] + off[None, :]
    out = image[:, rr, cc]  # C x ... x P x P
    return np.moveaxis(out, 0, -3).reshape(*rows.shape, -1)


class PatchSampler:
    """Draws anchor and positive pixel coordinates for a batch of images; fresh anchors on every call."""

    def __init__(self, cfg: SamplerConfig | None = None, seed: int | None = None) -> None:
        self.cfg = cfg or SamplerConfig()
        if self.cfg.patch_size % 2 != 1 or self.cfg.neighbourhood < 1:
            raise ValueError("patch_size must be odd and neighbourhood >= 1")
        self.rng = np.random.default_rng(seed)

    def sample(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anchors and positives for ``images`` (B x C x H x W): two int64 arrays ``B x S x 2`` (row, col).

        Every coordinate keeps its ``P x P`` patch inside the image; a positive never equals its anchor.
        """
        c = self.cfg
        b, _, h, w = images.shape
        r = c.patch_size // 2
        if min(h, w) < c.patch_size + 2:
            raise ValueError(f"image {h} x {w} is too small for {c.patch_size} x {c.patch_size} patches")
        s, t, nb = c.patches_per_image, c.tries, c.neighbourhood
        lo, hi = np.array([r, r]), np.array([h - r - 1, w - r - 1])
        anchors = np.empty((b, s, 2), np.int64)
        positives = np.empty((b, s, 2), np.int64)
        for i in range(b):
            img = images[i].astype(np.float64)
            img = img - img.min()  # SSIM's luminance term assumes non-negative intensities
            data_range = float(img.max()) or 1.0
            a = self.rng.integers(lo, hi + 1, size=(s, 2))
            # Candidate offsets in [-nb, nb]^2 without (0, 0), clipped into the valid range.
            off = self.rng.integers(-nb, nb, size=(s, t, 2), endpoint=True)
            zero = (off == 0).all(-1)
            off[zero] = self.rng.choice(np.array([[0, 1], [1, 0], [0, -1], [-1, 0]]), size=int(zero.sum()))
            cand = np.clip(a[:, None, :] + off, lo, hi)
            same = (cand == a[:, None, :]).all(-1)  # clipping may land back on the anchor
            pa = _patches(img, a[:, 0], a[:, 1], c.patch_size)  # S x n
            pc = _patches(img, cand[..., 0], cand[..., 1], c.patch_size)  # S x T x n
            score = patch_ssim(np.broadcast_to(pa[:, None], pc.shape), pc, data_range)
            score[same] = -np.inf
            best = score.argmax(1)
            ok = score[np.arange(s), best] > c.ssim_threshold
            pos = cand[np.arange(s), best].copy()
            pos[~ok] = self._towards_centre(a[~ok], h, w)
            anchors[i], positives[i] = a, pos
        return anchors, positives

    @staticmethod
    def _towards_centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
        """A new array: each anchor moved one pixel towards the image centre (down if it is the centre)."""
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        step = np.sign(centre - a).astype(np.int64)
        # Move along the axis farther from the centre only, so the step stays one pixel.
        far = np.abs(centre - a).argmax(1)
        move = np.zeros_like(a)
        move[np.arange(len(a)), far] = step[np.arange(len(a)), far]
        move[(move == 0).all(1), 0] = 1
        return a + move
