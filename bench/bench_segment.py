"""Speed of inference and fine-tuning on this machine: fp32 vs fast (channels_last + bf16 autocast).

Prints, in one run:
* seconds per 512 x 512 frame for ``segment`` (preprocessing + network at 512 x 512 + mapping back),
  and for the network alone, at widths 16, 32 and 64, fp32 and --fast, with the fast/fp32 ratio;
* seconds per fine-tuning epoch (8 steps of batch 4 at 256 x 256) at the same widths, fp32 and bf16.

Run alone on an otherwise idle machine: ``python bench/bench_segment.py`` (``--quick`` for one width).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from benchutil import median_seconds

from angioseg.data.preprocess import PreprocessConfig
from angioseg.data.synthetic import SynthConfig, synthetic_angiogram
from angioseg.models.unet import UNet, count_parameters
from angioseg.predict import Segmenter, predict_proba
from angioseg.train.checkpoint import segmentation_meta
from angioseg.train.module import SegmentationModule


def bench_segment(width: int, repeat: int) -> tuple[float, float, float, float]:
    model = UNet(width=width).eval()
    meta = segmentation_meta(model, PreprocessConfig(image_size=512).to_dict())
    image, _ = synthetic_angiogram(0, SynthConfig(size=512))
    raw = image.astype(np.float32)
    x = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    out = []
    for fast in (False, True):
        seg = Segmenter(model, meta, fast=fast)
        out.append(median_seconds(lambda seg=seg: seg.segment(raw), repeat))
        out.append(median_seconds(lambda fast=fast: predict_proba(model, [x], fast=fast), repeat))
    return out[0], out[1], out[2], out[3]


def bench_epoch(width: int, precision: str, steps: int = 8, batch: int = 4, size: int = 256) -> float:
    module = SegmentationModule(UNet(width=width).config(), channels_last=precision == "bf16")
    opt = module.configure_optimizers()
    x = torch.randn(batch, 1, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.9).long()

    def epoch() -> None:
        for _ in range(steps):
            opt.zero_grad()
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if precision == "bf16"
                else torch.autocast("cpu", enabled=False)
            )
            with ctx:
                logits = module(x)
            loss = module.loss(logits.float(), y)
            loss.backward()
            opt.step()

    return (
        median_seconds(epoch, repeat=1, warmup=0)
        if width >= 64
        else median_seconds(epoch, repeat=2, warmup=0)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="width 16 only")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    widths = [16] if args.quick else [16, 32, 64]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"\nsegment, seconds per 512x512 frame (median of {args.repeat})")
    print(
        f"{'width':>5} {'params':>8} | {'segment fp32':>12} {'segment fast':>12} {'ratio':>6} | {'net fp32':>9} {'net fast':>9} {'ratio':>6}"
    )
    for w in widths:
        s32, n32, sf, nf = bench_segment(w, args.repeat)
        p = count_parameters(UNet(width=w)) / 1e6
        print(
            f"{w:>5} {p:>7.2f}M | {s32:>12.3f} {sf:>12.3f} {s32 / sf:>5.1f}x | {n32:>9.3f} {nf:>9.3f} {n32 / nf:>5.1f}x"
        )
    print("\nfine-tuning, seconds per epoch of 8 steps x batch 4 at 256x256")
    print(f"{'width':>5} | {'fp32':>8} {'bf16':>8} {'ratio':>6}")
    for w in widths:
        e32, e16 = bench_epoch(w, "fp32"), bench_epoch(w, "bf16")
        print(f"{w:>5} | {e32:>8.2f} {e16:>8.2f} {e32 / e16:>5.1f}x")


if __name__ == "__main__":
    main()
