"""Pretraining speed on this machine: images per second per method at widths 16 and 64.

For every method and width, in one run:

* ``train img/s``: optimisation steps (views already made: forward, backward, optimiser step,
  momentum update) at ``--size`` (paper: 256) with batch ``--batch``, bf16 autocast + channels_last
  (how ``angioseg pretrain`` trains on this CPU with ``--precision auto``), median of ``--steps``;
* ``views img/s``: the method's view generation (crops, noise, Genesis corruptions) in one process;
* ``vs UNet``: train img/s divided by that of a supervised UNet step (Dice + CE, the fine-tuning
  module) measured in the same run, at the same width, size and batch: the cost of each method
  relative to plain segmentation training.

Run alone (heavy): ``flock /tmp/angioseg-heavy.lock python bench/bench_pretrain.py``;
``--quick`` for width 16 only.
"""

from __future__ import annotations

import argparse

import torch
from benchutil import median_seconds

from angioseg.models.unet import UNet, set_memory_format
from angioseg.pretrain import METHOD_NAMES, method_class
from angioseg.pretrain.optim import build_optimizer
from angioseg.train.module import SegmentationModule


def stack(views: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {
        k: torch.stack([v[k] for v in views]).contiguous(memory_format=torch.channels_last) for k in views[0]
    }


def bench_method(name: str, width: int, size: int, batch: int, steps: int) -> tuple[float, float]:
    """(train images/s, view images/s) of ``name``."""
    torch.manual_seed(0)
    options = {"queue_size": 4096} if name == "moco" else {}
    method = method_class(name)({"width": width}, image_size=size, **options)
    set_memory_format(method, True)
    images = torch.randn(batch, 1, size, size)
    views_s = median_seconds(lambda: [method.view_transform(im) for im in images], 3)
    data = stack([method.view_transform(im) for im in images])
    opt = build_optimizer(method, method.optim, 1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = method(data)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(0.5)

    return batch / median_seconds(step, steps), batch / views_s


def bench_supervised(width: int, size: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    module = SegmentationModule(UNet(width=width).config(), channels_last=True)
    opt = module.configure_optimizers()
    x = torch.randn(batch, 1, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.9).long()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = module.training_step({"image": x, "mask": y}, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer attached
    return batch / median_seconds(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    ap.add_argument("--quick", action="store_true", help="width 16 only")
    args = ap.parse_args()
    widths = [16] if args.quick else args.widths
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, size {args.size}, batch {args.batch}, bf16 + channels_last"
    )
    print(f"{'width':>5} {'method':>10} {'train img/s':>12} {'s/img':>7} {'views img/s':>12} {'vs UNet':>8}")
    for width in widths:
        base = bench_supervised(width, args.size, args.batch, args.steps)
        print(
            f"{width:>5} {'UNet (sup.)':>10} {base:>12.2f} {1 / base:>7.3f} {'-':>12} {1.0:>8.2f}", flush=True
        )
        for name in args.methods:
            train, views = bench_method(name, width, args.size, args.batch, args.steps)
            print(
                f"{width:>5} {name:>10} {train:>12.2f} {1 / train:>7.3f} {views:>12.1f} {train / base:>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
