"""Does a faster inference path give the same answer? Dice of two segmenters on a test split.

Used by the test of the fast path (tests/test_infer.py) and by bench/bench_cine.py: each
segmenter's masks are scored at native resolution against the masks as drawn, on the test split
that ``angioseg finetune`` draws for the dataset with its default split spec (test 20 %, seed 42).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from angioseg.data.datasets import Sample, load_dataset
from angioseg.data.splits import SplitSpec, image_groups, make_splits
from angioseg.metrics.overlap import dice


def held_out_test_split(data: str | Path, spec: SplitSpec | None = None) -> list[Sample]:
    """The labeled samples of the test split of ``data`` (finetune's default split spec)."""
    samples = load_dataset(data)
    groups = image_groups({s.name: s.source for s in samples})
    names = set(make_splits([s.name for s in samples], spec or SplitSpec(), groups)["test"])
    return [s for s in samples if s.name in names and s.mask is not None]


@dataclass
class Agreement:
    names: list[str]
    dice_a: list[float]
    dice_b: list[float]

    @property
    def mean_a(self) -> float:
        return float(np.mean(self.dice_a))

    @property
    def mean_b(self) -> float:
        return float(np.mean(self.dice_b))

    @property
    def difference(self) -> float:
        """Mean Dice of ``b`` minus mean Dice of ``a``."""
        return self.mean_b - self.mean_a


Segment = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def compare_dice(samples: Sequence[Sample], a: Segment, b: Segment) -> Agreement:
    """Per-image Dice of two batch segmenters (raw images in, boolean masks out) against the truth."""
    images = [s.image for s in samples]
    truth = [np.asarray(s.mask, bool) for s in samples]
    masks_a, masks_b = a(images), b(images)
    return Agreement(
        [s.name for s in samples],
        [dice(m, t) for m, t in zip(masks_a, truth, strict=True)],
        [dice(m, t) for m, t in zip(masks_b, truth, strict=True)],
    )
