"""Random streams saved in every checkpoint, so that ``--resume`` continues the draws of the run it resumes.

Lightning restores a run's weights, optimiser, schedule and epoch from ``last.ckpt``, but not the
random streams: the data order, the augmentations, the masks of a pretraining method and the patch
draws of CUTS would start again from the seed, and a run killed mid-training and resumed would see
other draws than the same run left alone (different final weights). :class:`RandomStreams`, a
callback that :func:`angioseg.train.trainer.make_trainer` adds to every Trainer, stores in each
checkpoint:

* the global streams: Python's ``random``, NumPy's legacy global RNG and PyTorch's CPU (and CUDA)
  generators;
* every stream reachable from the LightningModule and from the objects a command registers with
  :func:`track` (its training DataLoader): ``torch.Generator``, ``numpy.random.Generator`` and
  ``RandomState`` objects (MONAI's ``Randomizable.R``), found by walking the attributes of angioseg,
  MONAI and ``torch.utils.data`` objects in a fixed order.

They are put back when the checkpoint is restored, before the first batch is drawn. Together with a
fixed thread count this makes a killed-and-resumed run on one process end with the same weights as
the run left alone (checked by ``tests/test_resume_identical.py`` and ``bench/kill_resume.py``).
Not covered: DataLoader worker processes (``num_workers > 0``: each worker's streams), several DDP
processes (each process has its own augmentation stream; the streams are restored only when the
run was saved and is resumed in one process), and a kill in the middle of an epoch (Lightning
checkpoints at epoch ends; the epoch in progress is trained again from its start).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

_WALKED = ("angioseg", "monai", "torch.utils.data")  # classes whose attributes hold streams
# Only a guard against pathological nesting (cycles are cut by ``seen``): a stream past it is silently
# left out. 8 was one level too few for semi-supervised fine-tuning (the OneOf's RandGaussianNoise R of
# the paper's augmentations sits 9 levels below the DataLoader when SemiDataset wraps the dataset).
_MAX_DEPTH = 64


def _streams(root: Any) -> Iterator[Any]:
    """The random generators reachable from ``root``, each once, in a fixed order (depth first)."""
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> Iterator[Any]:
        if id(obj) in seen or depth > _MAX_DEPTH or obj is None:
            return
        if isinstance(obj, (str, bytes, int, float, bool, np.ndarray, torch.Tensor)):
            return
        seen.add(id(obj))
        if isinstance(obj, (torch.Generator, np.random.Generator, np.random.RandomState)):
            yield obj
            return
        if isinstance(obj, dict):
            for v in obj.values():
                yield from walk(v, depth + 1)
            return
        if isinstance(obj, (list, tuple)):
            for v in obj:
                yield from walk(v, depth + 1)
            return
        module = type(obj).__module__ or ""
        if not module.startswith(_WALKED):
            return
        attrs = getattr(obj, "__dict__", None)
        if attrs is None:
            return
        if isinstance(obj, torch.nn.Module):  # its children (other angioseg modules), not its parameters
            attrs = {k: v for k, v in attrs.items() if k not in ("_parameters", "_buffers", "_trainer")}
        for v in list(attrs.values()):
            yield from walk(v, depth + 1)

    yield from walk(root, 0)


def _get(stream: Any) -> Any:
    if isinstance(stream, torch.Generator):
        return stream.get_state()
    if isinstance(stream, np.random.Generator):
        return stream.bit_generator.state
    kind, keys, pos, has_gauss, gauss = stream.get_state(legacy=True)
    return [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)]


def _set(stream: Any, state: Any) -> None:
    if isinstance(stream, torch.Generator):
        stream.set_state(state)
    elif isinstance(stream, np.random.Generator):
        stream.bit_generator.state = state
    else:
        kind, keys, pos, has_gauss, gauss = state
        stream.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _kind(stream: Any) -> str:
    if isinstance(stream, np.random.Generator):
        return f"numpy.{type(stream.bit_generator).__name__}"
    return type(stream).__name__


def global_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _get(np.random.mtrand._rand),  # the legacy global RNG (np.random.seed, np.random.rand)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    _set(np.random.mtrand._rand, state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStreams(Callback):
    """Saves the random streams in each checkpoint and restores them on resume (module docstring)."""

    def __init__(self) -> None:
        self.roots: list[Any] = []
        self._module: Any = None
        self._world = 1

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._module = pl_module
        self._world = int(trainer.world_size)

    def streams(self) -> list[Any]:
        out: list[Any] = []
        seen: set[int] = set()
        for root in [self._module, *self.roots]:
            for s in _streams(root):
                if id(s) not in seen:
                    seen.add(id(s))
                    out.append(s)
        return out

    def state_dict(self) -> dict[str, Any]:
        streams = self.streams()
        return {
            "world_size": self._world,
            "global": global_state(),
            "kinds": [_kind(s) for s in streams],
            "streams": [_get(s) for s in streams],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if int(state_dict.get("world_size", 1)) != 1 or self._world != 1:
            return  # several processes: each has its own streams (module docstring)
        streams = self.streams()
        if [_kind(s) for s in streams] != list(state_dict.get("kinds", [])):
            warnings.warn(
                "the checkpoint's random streams do not match this run's; the resumed run draws afresh",
                stacklevel=2,
            )
            return
        set_global_state(state_dict["global"])
        for s, st in zip(streams, state_dict["streams"], strict=True):
            _set(s, st)


def track(trainer: Any, *roots: Any) -> None:
    """Register ``roots`` (a command's DataLoaders, datasets, ...) whose streams the checkpoints keep."""
    for cb in trainer.callbacks:
        if isinstance(cb, RandomStreams):
            cb.roots.extend(roots)
