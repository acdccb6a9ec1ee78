"""Self-training (``finetune --semi selftrain [--unlabeled DIR]``): a model fine-tuned on the labels
labels the unlabeled frames (``--unlabeled DIR``, or else the ``--data`` images without a mask), and
a second fine-tuning learns from both.

1. **Round 1**: an ordinary fine-tuning run with the same options (``RUN/round1``, resumable, its
   own test report).
2. **Pseudo-labels**: round 1's model segments every unlabeled frame as ``angioseg segment`` would
   (default test-time flips, threshold 0.5, on the frame's own grid). The masks are written to
   ``RUN/pseudo_masks/`` (1-bit PNG, one per frame; ``labels.json`` marks them complete) so that they
   can be looked at, and are reused by a resumed run.
3. **Round 2** (the run itself): the same fine-tuning again from the same starting point, with the
   pseudo-labeled frames in ``mix_fraction`` of every epoch's draws (:mod:`angioseg.train.mix`). The
   best epoch is still chosen on the labeled validation images, and no unlabeled frame may be a test
   image (checked by pixel hash).

It costs two trainings. Measured on CIMAT (``docs/results/label_efficiency.md``, candidate
``synth_self``), where the unlabeled frames are the images of the same set left out of the budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from angioseg.data.datasets import Sample, load_dataset
from angioseg.data.io import read_mask, write_png
from angioseg.data.leakage import check_samples
from angioseg.data.preprocess import PreprocessConfig, preprocess_image, restore_geometry, training_mask
from angioseg.errors import AngiosegError
from angioseg.utils import write_json

if TYPE_CHECKING:
    from angioseg.models.unet import UNet
    from angioseg.train.finetune import FinetuneConfig

ROUND1 = "round1"
PSEUDO = "pseudo_masks"


def pseudo_labels(model: UNet, preprocess: PreprocessConfig, images: list[np.ndarray]) -> list[np.ndarray]:
    """``model``'s masks of ``images`` on their own grids, as ``segment`` predicts them."""
    from angioseg.infer.engines import DEFAULT_TTA, TorchEngine, predict_proba

    prepared = [preprocess_image(x, preprocess) for x in images]
    probs = predict_proba(model, [x for x, _ in prepared], engine=TorchEngine(model), tta=DEFAULT_TTA)
    return [restore_geometry(p, geom) >= 0.5 for p, (_, geom) in zip(probs, prepared, strict=True)]


def load_frames(
    cfg: FinetuneConfig, data: Sequence[Sample], test: Mapping[str, str], held_out: Iterable[str] = ()
) -> tuple[list[Sample], int]:
    """The frames to pseudo-label, and how many unannotated ``--data`` frames were left out.

    They are the files of ``cfg.unlabeled`` (at most ``cfg.unlabeled_limit``; their masks, if any,
    are ignored), or else every image of ``data`` (the ``--data`` set) that has no mask, except those
    that share a group (the frames of one file or cine run, ``--groups``) with a ``held_out`` image
    (the test and validation images): a neighbouring frame of a test image is never trained on.

    Raises:
        AngiosegError: no frame to label.
        LeakageError: a frame has the same pixels as a test image.
    """
    left_out = 0
    if cfg.unlabeled:
        frames = load_dataset(cfg.unlabeled, channel=cfg.channel, limit=cfg.unlabeled_limit)
        where: str | Path = cfg.unlabeled
    else:
        from angioseg.data.splits import image_groups

        groups_csv = cfg.groups if cfg.groups and Path(cfg.groups).is_file() else None
        group = image_groups({s.name: s.source for s in data}, groups_csv)
        banned = {group[n] for n in held_out}
        unannotated = [s for s in data if s.mask is None]
        frames = [s for s in unannotated if group[s.name] not in banned]
        left_out = len(unannotated) - len(frames)
        where = cfg.data
        if not frames:
            why = (
                "every image has a mask"
                if not unannotated
                else "every unannotated image shares a file or group with a test or validation image"
            )
            raise AngiosegError(
                f"{cfg.data}: --semi selftrain found no unlabeled frame to learn from: {why}. Give "
                "--unlabeled DIR, or put unannotated frames in images/ without a mask"
            )
    check_samples(frames, test, where, "unlabeled")
    return frames, left_out


def _stored_masks(folder: Path, names: list[str]) -> list[np.ndarray] | None:
    """The pseudo-masks written by an earlier (cut) run for exactly these frames, or None."""
    done = folder / "labels.json"
    try:
        if json.loads(done.read_text(encoding="utf-8")).get("frames") != names:
            return None
        return [read_mask(folder / f"{n}.png") for n in names]
    except Exception:  # missing or unreadable: they are made again
        return None


def first_round(
    cfg: FinetuneConfig,
    frames: Sequence[Sample],
    progress: bool,
    announce: Callable[[str], None] | None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Round 1 and the pseudo-labels (each done once; a cut run resumes where it stopped): the
    unlabeled frames preprocessed and their pseudo-masks as training masks, for ``--mix``."""
    from angioseg.train.checkpoint import load_model
    from angioseg.train.finetune import run_finetune

    run_dir = Path(cfg.out)
    r1 = run_dir / ROUND1
    if not (r1 / "test" / "summary.json").is_file():
        if announce:
            announce(f"self-training, round 1: fine-tuning on the labels alone into {r1}")
        first = replace(
            cfg, semi=None, unlabeled=None, mix=None, mix_fraction=type(cfg)().mix_fraction, out=str(r1)
        )
        run_finetune(first, resume=(r1 / "config.yaml").is_file(), progress=progress, announce=announce)
    folder = run_dir / PSEUDO
    done = folder / "labels.json"
    names = [s.name for s in frames]
    masks = _stored_masks(folder, names)
    if masks is None:  # not labelled yet, other frames, or a mask lost or damaged since: label again
        model, meta = load_model(r1 / "model.safetensors")
        prep = PreprocessConfig.from_dict(meta.get("preprocess"))
        masks = pseudo_labels(model, prep, [s.image for s in frames])
        for n, m in zip(names, masks, strict=True):
            write_png(folder / f"{n}.png", m, bilevel=True)
        write_json(done, {"model": str(r1 / "model.safetensors"), "frames": names})
    if announce:
        share = sum(float(m.mean()) for m in masks) / len(masks)
        if share == 0:
            announce(
                "warning: round 1 found no vessel in any unlabeled frame; round 2 learns them as background "
                "(more labels, or more epochs for round 1, may help)"
            )
        announce(
            f"self-training, round 2: {len(frames)} frames of {cfg.unlabeled or cfg.data} labeled by round 1 "
            f"(masks in {folder}, {share:.1%} vessel on average) in {cfg.mix_fraction:.0%} of each epoch's draws"
        )
    images = [preprocess_image(s.image, cfg.preprocess)[0] for s in frames]
    return images, [training_mask(m, cfg.preprocess) for m in masks]


__all__ = ["PSEUDO", "ROUND1", "first_round", "load_frames", "pseudo_labels"]
