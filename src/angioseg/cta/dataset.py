"""CT datasets: ``images/`` + ``labels/`` (same stems) + optional ``centerlines/``, and patch sampling.

A dataset folder looks like::

    DATA/images/<case>.nrrd        (or .nii.gz, .mha, a DICOM series folder)
    DATA/labels/<case>.nrrd        (binary lumen label, same grid)
    DATA/centerlines/<case>.csv    (optional; .npy/.csv/.txt, see angioseg.cta.centerlines)

:func:`load_case` reads one case and prepares what training needs: the normalised image, the
label, the centerline (from the file, else the skeleton of the label) and its rasterised map.
:class:`PatchDataset` cuts the planned boxes out of the prepared cases on the fly and stacks the
optional centerline channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from angioseg.cta.centerlines import (
    Centerline,
    find_centerline_file,
    rasterise,
    read_centerline,
    skeleton_centerline,
)
from angioseg.cta.channel import centerline_channel, stack_input
from angioseg.cta.intensity import IntensityConfig, normalise_ct
from angioseg.cta.sampling import Box, extract
from angioseg.cta.volume_io import Volume, list_volumes, read_label, read_volume
from angioseg.errors import DataError

CENTERLINE_SOURCES = ("auto", "file", "label")


@dataclass
class CaseFiles:
    name: str
    image: Path
    label: Path | None
    centerline: Path | None


@dataclass
class Case:
    """A prepared volume: ``image`` normalised float32, ``label`` bool, ``centerline_map`` bool (all D x H x W)."""

    name: str
    volume: Volume
    image: np.ndarray
    label: np.ndarray | None
    centerline: Centerline | None
    centerline_map: np.ndarray | None


def find_cases(root: str | Path, require_labels: bool = True) -> list[CaseFiles]:
    """The cases of a dataset folder, paired by stem; raises DataError on a missing partner."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise DataError(
            root, "expected a CT dataset folder with images/ (and labels/, optional centerlines/)"
        )
    images = list_volumes(root / "images")
    if not images:
        raise DataError(root / "images", "no volume found (.nrrd, .nii.gz, .mha or DICOM series folders)")
    labels = list_volumes(root / "labels") if (root / "labels").is_dir() else {}
    if require_labels:
        missing = sorted(set(images) - set(labels))
        if missing:
            raise DataError(root / "labels", f"no label for {len(missing)} image(s), e.g. {missing[:3]}")
    cl_dir = root / "centerlines"
    return [
        CaseFiles(n, p, labels.get(n), find_centerline_file(cl_dir, n) if cl_dir.is_dir() else None)
        for n, p in images.items()
    ]


def load_case(
    files: CaseFiles,
    intensity: IntensityConfig,
    centerline_source: str = "auto",
    centerline_space: str = "auto",
    dense_centerline: bool = True,
) -> Case:
    """Read and prepare one case (the centerline from its file, or the 3D skeleton of its label)."""
    if centerline_source not in CENTERLINE_SOURCES:
        raise DataError(files.image, f"centerline source must be one of {CENTERLINE_SOURCES}")
    vol = read_volume(files.image)
    label = read_label(files.label, vol.shape) if files.label is not None else None
    cl = None
    if centerline_source in ("auto", "file") and files.centerline is not None:
        cl = read_centerline(files.centerline, vol, centerline_space)
    elif centerline_source == "file":
        raise DataError(
            files.image, "no centerline file in centerlines/ for this case (--centerline-source file)"
        )
    elif label is not None:
        cl = skeleton_centerline(label)
    cl_map = rasterise(cl, vol.shape, dense_centerline) if cl is not None else None
    return Case(files.name, vol, normalise_ct(vol.array, intensity), label, cl, cl_map)


class PatchDataset(Dataset[dict[str, torch.Tensor]]):
    """Patches ``(case index, Box)`` cut from prepared cases.

    Items: ``image`` C x spatial float32 (C = 1, or 2 with the centerline channel) and ``mask``
    1 x spatial long; spatial is ``H x W`` for ``dims=2`` (boxes of depth 1) and ``D x H x W`` for 3.
    With ``prior_dropout`` p, the centerline channel is emptied in a fraction p of the patches (so
    the model also works on the first inference pass, before any centerline is known).
    """

    def __init__(
        self,
        cases: Sequence[Case],
        boxes: Sequence[tuple[int, Box]],
        dims: int,
        channel: str = "none",
        gain: float = 2.0,
        prior_dropout: float = 0.0,
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        self.cases, self.boxes, self.dims = list(cases), list(boxes), dims
        self.channel, self.gain, self.prior_dropout = channel, gain, prior_dropout
        self.rng = np.random.default_rng(seed)
        self.length = max(length or 0, len(self.boxes))
        if not self.boxes:
            raise DataError(
                None, "no training patch: no centerline point or label voxel in the training volumes"
            )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ci, box = self.boxes[i % len(self.boxes)]
        case = self.cases[ci]
        img = extract(case.image, box)
        lab = extract(case.label, box) if case.label is not None else np.zeros(box.size, bool)
        ch = None
        if self.channel != "none":
            cl = (
                extract(case.centerline_map, box)
                if case.centerline_map is not None
                else np.zeros(box.size, bool)
            )
            if self.prior_dropout and self.rng.random() < self.prior_dropout:
                cl = np.zeros_like(cl)
            ch = centerline_channel(img, cl, self.channel, self.gain)
        x = stack_input(img, ch)
        y = lab[None].astype(np.int64)
        if self.dims == 2:
            x, y = x[:, 0], y[:, 0]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(x)),
            "mask": torch.from_numpy(np.ascontiguousarray(y)),
        }
