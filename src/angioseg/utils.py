"""Small shared helpers: seeding, atomic file output, JSON/YAML writing."""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch from one integer (the only seeding function of the package)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (seeds code that uses the legacy global RNG)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    A crash or Ctrl-C inside the block leaves no half-written ``path`` behind. With ``durable``, the
    file's data reach the disk before the rename and the rename itself after it (``fsync`` of the file,
    then of its folder), so a power loss too leaves the old file or the new one: for checkpoints,
    where one save is worth minutes of training and the cost of two fsyncs is nothing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give it the permissions open() would (0666 & ~umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        if durable:
            _fsync(tmp_path)
        os.replace(tmp_path, path)
        if durable:
            _fsync_folder(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync(path: Path) -> None:
    """Flush the file ``path`` to the disk (a handle that may write: Windows flushes no other)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(path: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the system allows it: Windows
    cannot open a folder, and some network file systems refuse (the rename is done either way)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` that writes to a temporary file and renames it into place on success.

    Text modes default to UTF-8 whatever the locale (reports contain ``±`` and ``×``).
    """
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clean_for_json(obj: Any) -> Any:
    """Replace NaN and inf floats by ``None`` so that the output is strict JSON."""
    if isinstance(obj, dict):
        return {k: clean_for_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_for_json(v) for v in obj]
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if np.isfinite(f) else None
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write strict JSON (NaN/inf become null) atomically."""
    with atomic_open(path) as fh:
        json.dump(clean_for_json(obj), fh, indent=2, default=_json_default, allow_nan=False)
        fh.write("\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    """Write YAML atomically."""
    import yaml

    with atomic_open(path) as fh:
        yaml.safe_dump(
            json.loads(json.dumps(clean_for_json(obj), default=_json_default)), fh, sort_keys=False
        )


def read_yaml(path: str | Path) -> Any:
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)
