"""Extra labeled frames mixed into every fine-tuning epoch (``finetune --mix DIR``).

With a handful of real labels, the network overfits them within a few epochs. Mixing labeled frames
from elsewhere (typically synthetic angiograms from ``angioseg synth``, whose masks are exact) into
the batches keeps a second, larger supervised signal during fine-tuning: a fixed fraction of every
epoch's draws comes from the extra frames, the rest from the real labeled images. The best epoch is
still chosen on the real validation images only, and the test images are never among the extra
frames (checked by pixel hash, as for unlabeled frames).

:class:`MixSampler` draws each epoch from one ``torch.Generator`` (the DataLoader's), so the draws
are seeded, restored on ``--resume`` (:mod:`angioseg.train.rng`) and shared out under DDP like the
plain sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

from angioseg.data.datasets import load_dataset
from angioseg.data.leakage import check_samples
from angioseg.data.preprocess import PreprocessConfig, preprocess_pair
from angioseg.errors import AngiosegError


class MixSampler(Sampler[int]):
    """Indices into ``ConcatDataset([real, extra])``: ``real_len`` draws per epoch, of which
    ``round(fraction * real_len)`` are extra frames (without replacement while there are enough),
    the rest real items (a random subset of ``range(real_len)``), in a random order."""

    def __init__(self, real_len: int, extra_len: int, fraction: float, generator: torch.Generator) -> None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        if real_len < 1 or extra_len < 1:
            raise ValueError("MixSampler needs at least one real and one extra item")
        self.real_len, self.extra_len, self.fraction = real_len, extra_len, fraction
        self.generator = generator
        self.n_extra = min(real_len - 1, max(1, round(fraction * real_len)))

    def __len__(self) -> int:
        return self.real_len

    def __iter__(self) -> Iterator[int]:
        g = self.generator
        n_real = self.real_len - self.n_extra
        real = torch.randperm(self.real_len, generator=g)[:n_real]
        if self.extra_len >= self.n_extra:
            extra = torch.randperm(self.extra_len, generator=g)[: self.n_extra]
        else:
            extra = torch.randint(self.extra_len, (self.n_extra,), generator=g)
        both = torch.cat([real, extra + self.real_len])
        yield from both[torch.randperm(len(both), generator=g)].tolist()


def load_mix(
    folder: str | Path,
    preprocess: PreprocessConfig,
    test: Mapping[str, str],
    limit: int | None = None,
    channel: str = "gray",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Preprocessed images and training masks of the labeled frames of ``folder``.

    Args:
        test: ``{label: pixel hash}`` of the test images (:func:`angioseg.data.leakage.sample_hashes`).
        limit: read at most this many files (sorted by name).

    Raises:
        AngiosegError: ``folder`` has no labeled frame.
        LeakageError: a frame has the same pixels as a test image.
    """
    samples = [s for s in load_dataset(folder, channel=channel, limit=limit) if s.mask is not None]
    if not samples:
        raise AngiosegError(
            f"--mix {folder}: no labeled frame (it needs images/ and masks/ with the same names)"
        )
    check_samples(samples, test, folder, "--mix")
    images, masks = [], []
    for s in samples:
        x, m = preprocess_pair(s.image, s.mask, preprocess, train=True)
        images.append(x)
        masks.append(m)
    return images, masks  # type: ignore[return-value]


__all__ = ["MixSampler", "load_mix"]
