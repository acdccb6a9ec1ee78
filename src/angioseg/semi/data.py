"""Unlabeled frames for semi-supervised fine-tuning: loading (never a test image) and weak/strong views."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from angioseg.data.datasets import Sample, load_dataset
from angioseg.data.leakage import check_samples
from angioseg.data.preprocess import PreprocessConfig, preprocess_image


def load_unlabeled(
    folder: str | Path,
    preprocess: PreprocessConfig,
    test: Mapping[str, str],
    limit: int | None = None,
    channel: str = "gray",
) -> list[np.ndarray]:
    """Preprocessed unlabeled frames of ``folder`` (its masks, if any, are ignored).

    Args:
        test: ``{label: pixel hash}`` of the test images (:func:`angioseg.data.leakage.sample_hashes`).
        limit: read at most this many files (sorted by name).

    Raises:
        LeakageError: a frame has the same pixels as a test image (it would be trained on).
    """
    samples: list[Sample] = load_dataset(folder, channel=channel, limit=limit)
    check_samples(samples, test, folder, "unlabeled")
    return [preprocess_image(s.image, preprocess)[0] for s in samples]


def strong_view() -> Any:
    """Intensity changes, blur and noise (no geometry: the weak and strong views must stay aligned)."""
    from monai.transforms import (
        Compose,
        RandAdjustContrast,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandScaleIntensity,
        RandShiftIntensity,
    )

    return Compose(
        [
            RandScaleIntensity(factors=0.3, prob=0.8),
            RandShiftIntensity(offsets=0.3, prob=0.8),
            RandAdjustContrast(gamma=(0.7, 1.5), prob=0.5),
            RandGaussianSmooth(sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5), prob=0.3),
            RandGaussianNoise(std=0.2, prob=0.5),
        ]
    )


class SemiDataset(Dataset[dict[str, torch.Tensor]]):
    """Each labeled item of ``labeled`` with a random unlabeled frame as ``u_weak`` and ``u_strong``.

    ``u_weak`` is the frame randomly flipped / rotated by 90 degrees; ``u_strong`` is that same
    view after :func:`strong_view`. The frame and the views are drawn from a generator
    seeded by ``seed`` (reproducible with ``num_workers=0``).
    """

    def __init__(
        self, labeled: Dataset[dict[str, torch.Tensor]], unlabeled: list[np.ndarray], seed: int
    ) -> None:
        self.labeled, self.unlabeled = labeled, unlabeled
        self.rng = np.random.default_rng(seed)
        self.strong = strong_view()
        self.strong.set_random_state(seed)

    def __len__(self) -> int:
        return len(self.labeled)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = dict(self.labeled[i])
        x = self.unlabeled[int(self.rng.integers(len(self.unlabeled)))]
        x = np.rot90(x, int(self.rng.integers(4)))
        if self.rng.random() < 0.5:
            x = x[:, ::-1]
        weak = torch.from_numpy(np.ascontiguousarray(x)[None]).float()
        strong = self.strong(weak.clone())
        item["u_weak"] = weak
        item["u_strong"] = strong.as_tensor() if hasattr(strong, "as_tensor") else torch.as_tensor(strong)
        return item
