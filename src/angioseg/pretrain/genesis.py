"""Models Genesis 2D: restore the original image from a corrupted one with a full UNet and MSE.

Zhou et al., "Models Genesis", Medical Image Analysis 67 (2021) 101840, with the 2D settings of
the CM-UNet authors' baseline (flip 0.4, local shuffling 0.5, non-linear intensity 0.9, painting
0.9 of which in-painting 20 %; see :mod:`angioseg.pretrain.corruptions`). Optimiser as in their
script: SGD lr 1e-2, momentum 0.9, StepLR halving every 40 epochs (the original Models Genesis
used lr 1). Their script stopped early on the *test* split; here nothing is selected on any split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from angioseg.models.unet import build_model
from angioseg.pretrain.base import PretrainMethod, Reconstruction, ViewTransform
from angioseg.pretrain.corruptions import GenesisConfig, genesis_pair
from angioseg.pretrain.optim import GENESIS_SGD


@dataclass(frozen=True)
class GenesisViews:
    """``1 x S x S`` image -> ``{"input": corrupted, "target": image}`` (flips applied to both)."""

    cfg: GenesisConfig

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        x, y = genesis_pair(image[0].numpy(), rng, self.cfg)
        return {"input": torch.from_numpy(x)[None], "target": torch.from_numpy(y)[None]}


class Genesis(PretrainMethod):
    """Models Genesis image restoration (UNet, reconstruction head, MSE over the whole image)."""

    name = "genesis"
    reconstructs = True
    paper_epochs = 256
    optim = GENESIS_SGD

    def __init__(
        self,
        model: dict[str, Any],
        image_size: int = 256,
        flip_rate: float = 0.4,
        local_rate: float = 0.5,
        nonlinear_rate: float = 0.9,
        paint_rate: float = 0.9,
        inpaint_rate: float = 0.2,
    ) -> None:
        super().__init__(model, image_size)
        self.cfg = GenesisConfig(flip_rate, local_rate, nonlinear_rate, paint_rate, inpaint_rate)
        self.backbone = build_model(self.model_config)

    @property
    def view_transform(self) -> ViewTransform:
        return GenesisViews(self.cfg)

    def options(self) -> dict[str, Any]:
        d = asdict(self.cfg)
        return {k: d[k] for k in ("flip_rate", "local_rate", "nonlinear_rate", "paint_rate", "inpaint_rate")}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``input``/``target`` ``B x 1 x S x S`` -> ``{"loss": MSE(UNet(input), target)}``."""
        pred = self.backbone(batch["input"])
        return {"loss": F.mse_loss(pred.float(), batch["target"].float())}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        views = [self.view_transform(im) for im in images]
        x = torch.stack([v["input"] for v in views])
        y = torch.stack([v["target"] for v in views])
        return Reconstruction(y, x, self.backbone(x).float())
