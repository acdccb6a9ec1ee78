"""A small phantom cine (DICOM, 3 frames, PixelSpacing 0.2 mm) with its mask cine, for the app tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from angioseg.qca.phantom import QCAPhantom, QCAPhantomConfig, qca_phantom
from tests.dicom_utils import write_dicom


def write_phantom_cine(root: Path, stenosis: float = 0.6) -> QCAPhantom:
    """``root/cine.dcm`` and ``root/cine_mask.npy``; returns frame 0's phantom (points and truth)."""
    frames = [
        qca_phantom(
            np.random.default_rng(3), QCAPhantomConfig(stenosis=stenosis, scale=s), np.random.default_rng(t)
        )
        for t, s in enumerate((1.0, 1.02, 1.04))
    ]
    root.mkdir(parents=True, exist_ok=True)
    write_dicom(root / "cine.dcm", np.stack([f.image for f in frames]), spacing=(0.2, 0.2))
    np.save(root / "cine_mask.npy", np.stack([f.mask for f in frames]).astype(np.uint8))
    return frames[0]
