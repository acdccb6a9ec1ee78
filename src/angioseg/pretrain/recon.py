"""Reconstruction figure (the CM-UNet paper's Figure 6): input | masked or corrupted input | output.

:func:`write_reconstruction_grid` draws it for a method held in memory (called at the end of a run
with ``show_reconstructions``); :func:`reconstructions_from_run` rebuilds the method from a saved
run (``model.safetensors`` + ``model.json``) and draws it for any images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from angioseg.data.preprocess import PreprocessConfig
from angioseg.errors import AngiosegError
from angioseg.pretrain import method_class
from angioseg.pretrain.base import PretrainMethod
from angioseg.pretrain.data import load_unlabeled
from angioseg.utils import atomic_path

COLUMNS = ("input", "masked / corrupted", "reconstruction")


def write_reconstruction_grid(
    method: PretrainMethod, images: np.ndarray, path: str | Path, seed: int = 0
) -> Path:
    """Run ``method.reconstruct`` on ``N x S x S`` preprocessed images and save an ``N x 3`` PNG grid.

    Each row is shown with the input's 1st-99th percentile window so the three panels compare.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not method.reconstructs:
        raise AngiosegError(f"{method.name} does not reconstruct images (it is contrastive); no figure")
    was_training = method.training
    method.eval()
    torch.manual_seed(seed)
    rec = method.reconstruct(torch.from_numpy(np.asarray(images, np.float32))[:, None])
    method.train(was_training)
    panels = [t[:, 0].float().numpy() for t in (rec.original, rec.corrupted, rec.reconstruction)]
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n), squeeze=False)
    for i in range(n):
        lo, hi = np.percentile(panels[0][i], [1, 99])
        for j in range(3):
            ax = axes[i][j]
            ax.imshow(panels[j][i], cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(COLUMNS[j], fontsize=9)
    fig.suptitle(f"{method.name}: reconstructions", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def reconstructions_from_run(
    run: str | Path, data: str | Path, out: str | Path, n: int = 4, seed: int = 0
) -> Path:
    """Rebuild the method saved in ``run`` and draw reconstructions of the first ``n`` images of ``data``."""
    from angioseg.train.checkpoint import read_checkpoint

    state, meta = read_checkpoint(run)
    if meta.get("task") != "pretrain":
        raise AngiosegError(f"{run}: not a pretraining checkpoint (task {meta.get('task')!r})")
    try:
        cls = method_class(str(meta.get("method")))
        method = cls(meta["model"], image_size=int(meta["image_size"]), **meta.get("options", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise AngiosegError(f"{run}: cannot rebuild the pretraining method ({exc})") from None
    method.load_export(state)
    images = load_unlabeled(data, PreprocessConfig.from_dict(meta.get("preprocess")), limit=n).images
    return write_reconstruction_grid(method, images, out, seed)
