"""In-memory training arrays as a torch ``Dataset`` (tiny labeled sets cycled to fill an epoch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class ArrayDataset(Dataset[dict[str, torch.Tensor]]):
    """Preprocessed images and masks in memory; ``repeat`` > 1 cycles through them (tiny datasets)."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        length: int | None = None,
    ) -> None:
        self.images, self.masks, self.transform = list(images), list(masks), transform
        self.length = max(length or 0, len(self.images))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i %= len(self.images)
        d: dict[str, Any] = {
            "image": torch.from_numpy(self.images[i][None].copy()).float(),
            "mask": torch.from_numpy(self.masks[i][None].astype(np.float32)),
        }
        if self.transform is not None:
            d = self.transform(d)
        # MONAI transforms return MetaTensors; a plain Tensor keeps every later op off MetaTensor's
        # __torch_function__ path (measured: it made training ~10x slower and defeated bf16 kernels).
        image, mask = (as_plain_tensor(d[k]) for k in ("image", "mask"))
        return {"image": image.float(), "mask": (mask > 0.5).long()}


def as_plain_tensor(x: Any) -> torch.Tensor:
    """A plain ``torch.Tensor`` (MONAI ``MetaTensor`` stripped of its metadata)."""
    from monai.data import MetaTensor

    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
