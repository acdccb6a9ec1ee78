"""CT speed figures on this machine: UNet training steps (2D/3D, fp32 vs bf16) and whole-volume inference.

Run alone (``flock /tmp/angioseg-heavy.lock .venv/bin/python bench/bench_cta.py``); prints medians
and the bf16 / fp32 ratio measured in the same run. Options: ``--width 16 --crop 64 --depth 32``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from benchutil import median_seconds

from angioseg.cta.infer import sliding_window_proba
from angioseg.cta.losses import FocalDiceLoss
from angioseg.models.unet import UNet


def train_step_seconds(
    dims: int, width: int, batch: int, size: tuple[int, ...], bf16: bool, repeat: int
) -> float:
    torch.manual_seed(0)
    model = UNet(dims, 2, 2, width, act="leakyrelu", dropout=0.05)
    if dims == 2 and bf16:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(model.parameters(), 4e-4)
    loss_fn = FocalDiceLoss()
    x = torch.randn(batch, 2, *size)
    if dims == 2 and bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, *size) > 0.97).long()

    def step() -> None:
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss_fn(out, y).backward()
        opt.step()

    return median_seconds(step, repeat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--volume", type=int, nargs=3, default=(160, 140, 160), help="D H W for inference")
    a = ap.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, width {a.width}")
    rows = [
        ("2D train step, batch 8", 2, 8, (a.crop, a.crop)),
        ("3D train step, batch 2", 3, 2, (a.depth, a.crop, a.crop)),
    ]
    for name, dims, batch, size in rows:
        fp32 = train_step_seconds(dims, a.width, batch, size, False, a.repeat)
        bf16 = train_step_seconds(dims, a.width, batch, size, True, a.repeat)
        print(f"{name} {size}: fp32 {fp32:.3f} s, bf16 {bf16:.3f} s, fp32/bf16 = {fp32 / bf16:.2f}x")
    vol = np.random.default_rng(0).normal(size=(2, *a.volume)).astype(np.float32)
    for dims in (2, 3):
        model = UNet(dims, 2, 2, a.width, act="leakyrelu", dropout=0.05).eval()
        for fast in (False, True):
            t0 = time.perf_counter()
            sliding_window_proba(model, vol, dims, a.crop, a.depth, fast=fast)
            print(
                f"{dims}D sliding window over {tuple(a.volume)}, fast={fast}: {time.perf_counter() - t0:.1f} s"
            )


if __name__ == "__main__":
    main()
