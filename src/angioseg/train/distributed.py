"""Data parallelism (Lightning DDP) for fine-tuning and the CT pipeline: who writes, who sees which sample.

With ``--devices N --strategy ddp`` every process runs the whole command (Lightning's launcher
re-runs it for ranks 1..N-1; SLURM and ``torchrun`` start all N), so:

* only rank 0 writes the run folder (:func:`process_rank` before the Trainer exists,
  ``trainer.is_global_zero`` after);
* ``--batch-size`` stays the batch of one optimiser step: each process takes ``batch / N``
  (:func:`per_process_batch`), and :func:`shard` gives process ``r`` the draws ``r, r + N, ...`` of
  the one-process sampler (the same generator, seeded the same in every process), so the N
  processes' batch ``k`` together are exactly the one-process batch ``k``: same samples, same number
  of optimiser steps per epoch, same effective batch and learning rate. What differs is BatchNorm
  (statistics of ``batch / N`` images per process; PyTorch's SyncBatchNorm does not run on CPU) and
  the augmentation draws (each process has its own stream);
* validation images are split without repetition (:func:`eval_sampler`; Lightning's default pads a
  split with repeated images) and the metrics are reduced over all of them
  (:class:`angioseg.train.module.SegmentationModule` logs ``torchmetrics.MeanMetric`` objects).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset, Sampler

from angioseg.errors import AngiosegError


def process_rank() -> int:
    """This process's global rank under a DDP launcher (0 without one), known before any Trainer exists.

    Lightning reads it from ``RANK`` (torchrun), ``SLURM_PROCID`` or ``LOCAL_RANK`` (its own launcher
    on one machine); use SLURM or torchrun on several nodes.
    """
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def per_process_batch(batch_size: int, trainer: Any) -> int:
    """``batch_size / world_size``: the global batch split over the processes (must divide)."""
    world = int(trainer.world_size)
    if batch_size % world:
        raise AngiosegError(
            f"--batch-size {batch_size} cannot be split over {world} processes: give a multiple of {world} "
            "(the batch size is that of one optimiser step, over all processes)"
        )
    return batch_size // world


def shard(sampler: Sampler[Any], trainer: Any) -> Sampler[Any]:
    """``sampler`` itself in one process; else this process's draws ``rank, rank + N, ...`` of it.

    Every process must hold the same ``sampler`` with its generator in the same state; each epoch
    draws afresh from it. Lightning keeps a ``DistributedSampler`` it is given (no second sharding).
    """
    world = int(trainer.world_size)
    if world <= 1:
        return sampler
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    return DistributedSamplerWrapper(
        sampler, num_replicas=world, rank=int(trainer.global_rank), shuffle=False
    )


def eval_sampler(dataset: Dataset[Any], trainer: Any, what: str = "validation split") -> Sampler[Any] | None:
    """``None`` (in order) in one process; else this process's share, every image exactly once overall.

    Raises:
        AngiosegError: fewer items than processes (a process without a batch would never join the
            reduction of the metrics).
    """
    world = int(trainer.world_size)
    if world <= 1:
        return None
    n = len(dataset)  # type: ignore[arg-type]
    if n < world:
        raise AngiosegError(
            f"the {what} has {n} item(s), fewer than the {world} processes: every process needs one "
            "(use fewer --devices or a larger validation split)"
        )
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(
        dataset, num_replicas=world, rank=int(trainer.global_rank), shuffle=False
    )


def parse_devices(value: str | int) -> int | str:
    """``"2"`` -> 2; ``"auto"`` and Lightning's other device strings unchanged."""
    return int(value) if str(value).isdigit() else value
