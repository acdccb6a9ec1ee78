"""``angioseg demo``: what angioseg is for, on the bundled real sample, in a few minutes on a CPU.

1. segment the 8 bundled labeled CIMAT angiograms and the 6 unlabeled ARCADE angiograms with the
   bundled segmenter (``builtin:xca_vessels``, no training), writing masks, overlays and
   ``vessels.csv``, and score the labeled ones at native resolution, each marked *held out* or
   *seen in training* (by pixel hash against the model's recorded training images);
2. fine-tune from the bundled starting point (``builtin:xca_synth_pretrained``, pretrained on
   synthetic angiograms only) on 5 of the labeled images (1 validation, 2 test), as a user with
   a handful of annotations of their own would, and score its held-out test images.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from angioseg.data.preprocess import PreprocessConfig
from angioseg.infer.engines import DEFAULT_TTA
from angioseg.metrics.evaluate import evaluate_folders
from angioseg.predict import Segmenter, segment_inputs
from angioseg.train.finetune import FinetuneConfig, run_finetune

SEGMENTER = "builtin:xca_vessels"
STARTING_POINT = "builtin:xca_synth_pretrained"


def sample_dir() -> Path:
    """Folder of the bundled sample (``labeled/{images,masks}``, ``unlabeled/``, ``NOTICE.md``)."""
    return Path(str(resources.files("angioseg.data") / "sample"))


def seen_in_training(model: str, image_dir: Path) -> set[str]:
    """Stems of the images in ``image_dir`` whose pixels equal an image ``model`` was trained on."""
    from angioseg.data.datasets import load_dataset
    from angioseg.data.leakage import pixel_hash, read_image_hashes

    recorded = {h for _, h in read_image_hashes(model) or []}
    return {s.name for s in load_dataset(image_dir) if pixel_hash(s.image) in recorded}


def run_demo(
    out: str | Path, epochs: int = 30, width: int = 16, console: Any = None, progress: bool = True
) -> dict[str, Any]:
    """Run the demo into ``out`` (its previous demo output is replaced); return the fine-tuned model's evaluation summary."""
    say = console.print if console is not None else print
    out = Path(out)
    sample = sample_dir()
    for sub in ("bundled", "run", "test_segmentation", "evaluation"):
        shutil.rmtree(out / sub, ignore_errors=True)
    labeled_images = sample / "labeled" / "images"
    say(f"[1/3] segmenting the bundled sample with the bundled segmenter {SEGMENTER} (no training) ...")
    seg = Segmenter.from_checkpoint(SEGMENTER, tta=DEFAULT_TTA)
    segment_inputs(seg, [labeled_images], out / "bundled" / "labeled", progress=progress)
    unl = segment_inputs(seg, [sample / "unlabeled"], out / "bundled" / "unlabeled", progress=progress)
    ev = evaluate_folders(
        out / "bundled" / "labeled" / "masks", sample / "labeled" / "masks", out / "bundled" / "evaluation"
    )
    seen = seen_in_training(SEGMENTER, labeled_images)
    held = [r for r in ev.rows if r["name"] not in seen]
    for r in ev.rows:
        tag = "seen in training" if r["name"] in seen else "held out"
        say(f"      {r['name']}: Dice {r['dice']:.3f} ({tag})")
    if held:
        mean = sum(float(r["dice"]) for r in held) / len(held)
        say(f"      held-out mean Dice {mean:.3f} over {len(held)} images the model never saw")
    say(
        f"      overlays: {out / 'bundled' / 'labeled' / 'overlays'}, {out / 'bundled' / 'unlabeled' / 'overlays'}"
    )
    say(
        f"      vessel geometry of the unlabeled images ({len(unl.rows)}): {out / 'bundled' / 'unlabeled' / 'vessels.csv'}"
    )

    cfg = FinetuneConfig(
        data=str(sample / "labeled"),
        out=str(out / "run"),
        labeled=5,
        test=2,
        val=1,
        width=width,
        epochs=epochs,
        batch_size=8,
        patience=epochs,
        pretrained=STARTING_POINT,
        transfer="encoder+decoder",
        preset="demo",
        preprocess=PreprocessConfig(image_size=256),
    )
    say(f"[2/3] fine-tuning from {STARTING_POINT} on 5 labeled angiograms ({epochs} epochs of 8 steps) ...")
    res = run_finetune(cfg, progress=progress, announce=say)
    say(
        f"      done in {res.train_seconds:.0f} s, best epoch {res.best_epoch}; model: {res.run_dir / 'model.safetensors'}"
    )
    tuned = Segmenter.from_checkpoint(res.run_dir, tta=DEFAULT_TTA)
    test_files = [labeled_images / f"{n}.png" for n in res.splits["test"]]
    say("[3/3] segmenting its held-out test images at native resolution and evaluating ...")
    segment_inputs(tuned, test_files, out / "test_segmentation", progress=progress)
    ev2 = evaluate_folders(
        out / "test_segmentation" / "masks", sample / "labeled" / "masks", out / "evaluation"
    )
    say(f"      metrics: {out / 'evaluation' / 'metrics.csv'}, {out / 'evaluation' / 'summary.json'}")
    (out / "evaluation" / "README.txt").write_text(
        f"Demo evaluation: a width-{width} UNet fine-tuned from {STARTING_POINT} on 5 bundled labeled "
        f"angiograms, scored on {len(ev2.rows)} held-out test images at their native resolution. Numbers "
        "from 2 images are an illustration, not a benchmark: docs/results/label_efficiency.md has those.\n",
        encoding="utf-8",
    )
    return json.loads((out / "evaluation" / "summary.json").read_text(encoding="utf-8"))
