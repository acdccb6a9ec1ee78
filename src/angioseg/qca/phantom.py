"""QCA phantoms: synthetic angiograms of one curved, tapering artery with a programmed stenosis.

Each frame holds the artery of interest (an S-curve whose reference diameter tapers linearly from
proximal to distal), a stenosis of known percent diameter stenosis (%DS) whose narrowing follows a
raised cosine of known length, a side branch, a second vessel crossing (overlapping) the artery,
and a contrast-filled guiding catheter of known outer diameter. The background, blur and
signal-dependent noise follow :mod:`angioseg.data.synthetic`.

The lumen is a union of discs along each centerline (as in :mod:`angioseg.data.synthetic`): the
mask holds the pixels whose centre is inside. ``edge_noise`` (pixels) adds a smooth random field to
the signed distance to the wall before thresholding, so the mask edges wander by a fraction of a
pixel as a segmenter's would. The truth is exact: at arc length s the reference diameter is
``ref(s)`` and the lumen diameter ``ref(s) * (1 - DS * g(s))``, g a raised cosine of length L,
so MLD = ref(s0)(1 - DS) and, for the lesion rule "diameter more than f below the reference",
the lesion length is ``L / pi * arccos(2 f / DS - 1)`` (for DS > f).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from angioseg.data.synthetic import _smooth_noise, disc_fields


@dataclass
class QCAPhantomConfig:
    size: int = 256
    spacing_mm: float = 0.2
    stenosis: float = 0.5  # fraction of the reference diameter (0.5 = 50 %DS)
    lesion_mm: float = 8.0  # full length of the raised-cosine narrowing
    lesion_at: float = 0.6  # position of the MLD as a fraction of the artery's length
    ref_mm: tuple[float, float] = (3.4, 2.8)  # reference diameter, proximal -> distal
    catheter_mm: float = 2.0  # 6F
    edge_noise: float = 0.15  # px, amplitude of the wall perturbation of the mask
    noise: float = 0.04
    contrast: float = 0.09
    scale: float = 1.0  # geometry scale about the image centre (cardiac motion in a cine)
    opacification: float = 1.0  # contrast filling, 0..1


@dataclass
class QCAPhantom:
    image: np.ndarray  # uint8 H x W
    mask: np.ndarray  # bool H x W: artery, branch and crossing vessel (not the catheter)
    truth: dict[str, float] = field(default_factory=dict)
    proximal: tuple[float, float] = (0.0, 0.0)  # (x, y) pixel position of the proximal click
    distal: tuple[float, float] = (0.0, 0.0)
    catheter: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))  # two (x, y)


def _resample(pts: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points at arc-length ``step`` along a polyline, and their arc length."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1], step)
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], axis=1), t


def _discs(
    shape: tuple[int, int], tubes: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """(chord thickness, signed margin to the wall) of unions of discs (data.synthetic's rasteriser)."""
    return disc_fields(shape, tubes, pad=3)


def lesion_length_truth(cfg: QCAPhantomConfig, fraction: float) -> float:
    """Length (mm) where the phantom's diameter is more than ``fraction`` below its reference."""
    if cfg.stenosis <= fraction:
        return 0.0
    return float(cfg.lesion_mm / np.pi * np.arccos(2 * fraction / cfg.stenosis - 1))


def qca_phantom(
    rng: np.random.Generator | int | None = None,
    cfg: QCAPhantomConfig | None = None,
    noise_rng: np.random.Generator | None = None,
) -> QCAPhantom:
    """One phantom frame with its mask, truth (mm) and the click positions of the artery and catheter.

    ``noise_rng`` draws the pixel noise (default: ``rng``), so a cine keeps its geometry and
    background while the noise changes from frame to frame.
    """
    cfg = cfg or QCAPhantomConfig()
    rng = np.random.default_rng(rng)
    n = cfg.size
    px = cfg.spacing_mm / cfg.scale  # mm per pixel of the (scaled) geometry
    c = np.array([n / 2, n / 2])

    def place(pts: np.ndarray) -> np.ndarray:  # geometry in units of the image side, scaled about the centre
        return c + (pts * n - c) * cfg.scale

    # Artery: an S-curve from left to right (y, x), resampled every 0.25 px.
    u = np.linspace(0, 1, 400)
    phase = rng.uniform(0, 2 * np.pi)
    raw = np.stack([0.5 + 0.16 * np.sin(2 * np.pi * 0.8 * u + phase), 0.1 + 0.8 * u], axis=1)
    art, s = _resample(place(raw), 0.25)
    length = s[-1]
    ref_px = np.linspace(cfg.ref_mm[0], cfg.ref_mm[1], len(s)) / px
    s0 = cfg.lesion_at * length
    half = cfg.lesion_mm / px / 2
    g = np.where(np.abs(s - s0) < half, 0.5 * (1 + np.cos(np.pi * (s - s0) / half)), 0.0)
    diam = ref_px * (1 - cfg.stenosis * g)
    # Side branch leaving at 30 % of the length, and a vessel crossing the artery at 25 %.
    k = int(0.3 * len(s))
    tang = art[min(k + 4, len(art) - 1)] - art[max(k - 4, 0)]
    ang = np.arctan2(tang[0], tang[1]) + rng.choice([-1.0, 1.0]) * 0.7
    bl = 0.3 * n * cfg.scale
    branch = art[k] + np.outer(np.linspace(0, bl, int(bl * 4)), [np.sin(ang), np.cos(ang)])
    bdiam = np.linspace(0.7 * ref_px[k], 0.45 * ref_px[k], len(branch))
    kc = int(0.15 * len(s))
    cross_dir = np.array([np.cos(rng.uniform(-0.4, 0.4)), rng.uniform(-0.3, 0.3)])
    cross_dir /= np.linalg.norm(cross_dir)
    cross = art[kc] + np.outer(np.linspace(-0.35 * n, 0.35 * n, int(0.7 * n * 4)), cross_dir) * cfg.scale
    cdiam = np.full(len(cross), 2.2 / px)
    tubes = [(art, diam / 2), (branch, bdiam / 2), (cross, cdiam / 2)]
    thick, margin = _discs((n, n), tubes)
    if cfg.edge_noise > 0:
        margin = margin + cfg.edge_noise * _smooth_noise(rng, (n, n), 1.5)
    mask = margin > 0
    # Catheter: a straight tube along the top of the frame (constant outer diameter).
    cy = 0.12 * n
    cath = np.stack([np.full(4 * n, cy) + np.linspace(0, 0.08 * n, 4 * n), np.linspace(0, n - 1, 4 * n)], 1)
    cthick, _ = _discs((n, n), [(cath, np.full(len(cath), cfg.catheter_mm / cfg.spacing_mm / 2))])
    # Rendering as in data.synthetic: bright textured background, absorption, blur, noise.
    bg = 0.62 + 0.07 * _smooth_noise(rng, (n, n), 24) + 0.025 * _smooth_noise(rng, (n, n), 5)
    mu = cfg.contrast * cfg.opacification * (256 / n)
    img = bg * np.exp(-mu * thick - 1.6 * cfg.contrast * (256 / n) * cthick)
    img = ndimage.gaussian_filter(img, 0.7)
    noise = (noise_rng or rng).standard_normal((n, n))
    img = img + cfg.noise * np.sqrt(np.clip(img, 0, None)) * noise
    image = np.clip(img * 255, 0, 255).astype(np.uint8)
    i0, i1 = int(0.08 * len(s)), int(0.92 * len(s))
    imin = int(np.argmin(np.abs(s - s0)))
    truth = {
        "ds_percent": 100 * cfg.stenosis,
        "as_percent": 100 * (1 - (1 - cfg.stenosis) ** 2),
        "mld_mm": float(ref_px[imin] * (1 - cfg.stenosis) * px),
        "rvd_mm": float(ref_px[imin] * px),
        "mld_arc_mm": float((s[imin] - s[i0]) * px),
        "spacing_mm": cfg.spacing_mm,
        "catheter_mm": cfg.catheter_mm,
    }
    return QCAPhantom(
        image=image,
        mask=mask,
        truth=truth,
        proximal=(float(art[i0, 1]), float(art[i0, 0])),
        distal=(float(art[i1, 1]), float(art[i1, 0])),
        catheter=(
            (float(cath[n, 1]), float(cath[n, 0])),
            (float(cath[3 * n, 1]), float(cath[3 * n, 0])),
        ),
    )


def phantom_cine(
    n_frames: int = 16, seed: int = 0, cfg: QCAPhantomConfig | None = None, end_diastole: int = 9
) -> tuple[list[QCAPhantom], int]:
    """A cine run of phantoms: contrast washes in (full from frame 5 on) while the heart beats.

    The geometry is scaled by ``1 + 0.04 cos(2 pi (t - end_diastole) / 12)`` (largest, i.e. most
    vessel area, at end diastole). Returns the frames and the index of the frame with full
    opacification and the largest vessel area (the one ``--frame auto`` should choose).
    """
    cfg = cfg or QCAPhantomConfig()
    frames = []
    for t in range(n_frames):
        opac = float(np.clip((t + 1) / 6, 0.05, 1.0))
        scale = 1 + 0.04 * np.cos(2 * np.pi * (t - end_diastole) / 12)
        f_cfg = QCAPhantomConfig(**{**cfg.__dict__, "scale": scale, "opacification": opac})
        frames.append(qca_phantom(np.random.default_rng(seed), f_cfg, np.random.default_rng([seed, t])))
    best = max(range(n_frames), key=lambda t: frames[t].mask.sum() if t >= 5 else -1)
    return frames, best
