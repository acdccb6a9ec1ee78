"""A tiny vessel-segmentation model that really segments, trained in seconds on synthetic angiograms.

For tests that compare predictions (inference modes, input scales) and so need a model whose
masks mean something; the CLI fixture in test_cli.py trains for 2 steps only. The model is a
width-8, depth-3 UNet trained for 80 Adam steps (cosine schedule; a plain loop, no Lightning, no
validation) on 16 synthetic 128² angiograms resized to ``IMAGE_SIZE`` = 64, i.e. at half their
native scale, like a 256 model trained on 512 frames; its held-out Dice at 256² is about 0.7.
Vessels are drawn thicker than the synthetic default (``VESSELS``) so that they are still 2-4 px
wide at 64². Corner inpainting is off to keep preprocessing fast (it does not change the scale,
which is what these tests are about).

Held-out images (:func:`held_out`) come from other seeds, at any size: a ``4 * IMAGE_SIZE`` image
holds vessels 4x wider in pixels than the model saw, until it is brought to the training scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from angioseg.data.preprocess import PreprocessConfig, preprocess_image, training_mask
from angioseg.data.synthetic import SynthConfig, synthetic_angiogram
from angioseg.models.unet import UNet
from angioseg.train.checkpoint import save_checkpoint

IMAGE_SIZE = 64
TRAIN_SIZE = 128
VESSELS = (5.0, 8.0)  # root radius at 256², scaled with the image size by the generator
PREPROCESS = PreprocessConfig(image_size=IMAGE_SIZE, inpaint_corners=False)


def held_out(n: int, size: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` synthetic ``(uint8 image, bool mask)`` pairs of ``size``², never used for training."""
    cfg = SynthConfig(size=size, root_radius=VESSELS)
    return [synthetic_angiogram(np.random.default_rng([seed, 1000 + i]), cfg) for i in range(n)]


def train_tiny_model(out: Path, steps: int = 80) -> Path:
    """Train the model (a few seconds on 2 CPU threads), save it as a checkpoint folder; return it."""
    torch.manual_seed(0)
    cfg = SynthConfig(size=TRAIN_SIZE, root_radius=VESSELS)
    pairs = [synthetic_angiogram(np.random.default_rng([0, i]), cfg) for i in range(16)]
    x = torch.from_numpy(np.stack([preprocess_image(im, PREPROCESS)[0] for im, _ in pairs])[:, None])
    y = torch.from_numpy(np.stack([training_mask(m, PREPROCESS) for _, m in pairs])).long()
    model = UNet(width=8, depth=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    weight = torch.tensor([1.0, 3.0])  # vessels are ~10 % of the pixels
    g = torch.Generator().manual_seed(0)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # such small convolutions gain nothing from more, and lose a lot on a busy CPU
    try:
        for _ in range(steps):
            idx = torch.randperm(len(x), generator=g)[:8]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "task": "segmentation",
        "method": "none",
        "model": model.config(),
        "preprocess": PREPROCESS.to_dict(),
    }
    save_checkpoint(out, model.state_dict(), meta)
    return out
