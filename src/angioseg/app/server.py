"""The local web app: a small FastAPI router over the reader, the segmenter and QCA.

Design (docs/qca.md says why FastAPI and a plain page): the server binds 127.0.0.1 by default,
serves one static page with plain JavaScript (no CDN, nothing fetched from outside), and reads
only inside its data folder: every path the API is given is resolved (symlinks included) and
refused unless it lies inside that folder. Uploads are limited in size. Errors come back as
``{"error": "..."}`` with a readable message, never a traceback.

State is in memory: an opened file gets an id; its frames, masks and last QCA result live in
``AppState`` until the server stops.
"""

from __future__ import annotations

import io
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.errors import AngiosegError, DataError

STATIC = Path(__file__).parent / "static"
MASK_SUFFIXES = ("_mask", "_gt", "_label")
# Host headers accepted when bound to this machine: another site whose name is rebound to
# 127.0.0.1 (DNS rebinding) sends its own name and is refused, so it cannot read the data folder.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class Settings:
    data_root: Path
    models: dict[str, str] = field(
        default_factory=dict
    )  # name shown -> run folder / checkpoint / builtin:NAME
    max_upload_mb: float = 200.0
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # ("*",): any (bound to the network on purpose)


@dataclass
class Study:
    name: str
    frames: list[Any]  # angioseg.data.io.Frame
    masks: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)  # source -> frame -> mask
    mask_file: Path | None = None
    result: Any = None  # last QCA result (QCAResult), with its frame index
    result_frame: int = 0
    job: dict[str, Any] = field(default_factory=dict)


class AppState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.data_root.resolve()
        self.studies: dict[str, Study] = {}
        self.segmenters: dict[str, Any] = {}
        self.lock = threading.Lock()

    def confined(self, rel: str) -> Path:
        """The path ``rel`` inside the data folder; an error for anything that resolves outside it."""
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise AngiosegError(f"{rel}: outside the data folder; only files under {self.root} can be opened")
        if not p.exists():
            raise DataError(rel, "no such file in the data folder")
        return p

    def study(self, sid: str) -> Study:
        if sid not in self.studies:
            raise AngiosegError(f"unknown study {sid!r}: open a file first")
        return self.studies[sid]

    def segmenter(self, name: str) -> Any:
        from angioseg.infer.engines import DEFAULT_TTA
        from angioseg.predict import Segmenter

        if name not in self.settings.models:
            raise AngiosegError(f"unknown model {name!r}; available: {sorted(self.settings.models)}")
        with self.lock:
            if name not in self.segmenters:
                self.segmenters[name] = Segmenter.from_checkpoint(self.settings.models[name], tta=DEFAULT_TTA)
        return self.segmenters[name]


def find_mask_file(path: Path) -> Path | None:
    """A mask next to an image: ``NAME_mask.*`` (or _gt, _label) beside it, or ``../masks/NAME.*``."""
    from angioseg.data.io import IMAGE_EXTS

    candidates = [path.parent / f"{path.stem}{s}{e}" for s in MASK_SUFFIXES for e in IMAGE_EXTS]
    candidates += [path.parent.parent / "masks" / f"{path.stem}{e}" for e in IMAGE_EXTS]
    return next((c for c in candidates if c.is_file()), None)


def list_files(root: Path, limit: int = 2000) -> list[str]:
    """Image files under the data folder (relative paths), masks and hidden files left out."""
    from angioseg.data.io import is_image_file

    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or "masks" in rel.parts[:-1]:
            continue
        if p.is_file() and is_image_file(p) and not p.stem.endswith(MASK_SUFFIXES):
            out.append(rel.as_posix())
            if len(out) >= limit:
                break
    return out


def open_study(state: AppState, path: Path, name: str) -> tuple[str, Study]:
    from angioseg.data.io import binarize_mask, read_frames

    frames = read_frames(path)
    study = Study(name, frames)
    mfile = find_mask_file(path)
    if mfile is not None:
        mframes = read_frames(mfile)
        if len(mframes) in (1, len(frames)) and mframes[0].image.shape == frames[0].image.shape:
            study.mask_file = mfile
            study.masks["mask file"] = {
                i: binarize_mask(mframes[min(i, len(mframes) - 1)].image, mfile) for i in range(len(frames))
            }
    sid = uuid.uuid4().hex[:12]
    state.studies[sid] = study
    return sid, study


def study_info(sid: str, study: Study, state: AppState) -> dict[str, Any]:
    f0 = study.frames[0]
    sources = (["mask file"] if study.mask_file else []) + sorted(state.settings.models)
    return {
        "id": sid,
        "name": study.name,
        "frames": len(study.frames),
        "height": int(f0.image.shape[0]),
        "width": int(f0.image.shape[1]),
        "spacing_mm": None if f0.spacing is None else list(f0.spacing),
        "spacing_source": f0.spacing_source,
        "mask_sources": sources,
    }


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def mask_overlay_png(mask: np.ndarray) -> bytes:
    """RGBA PNG: vessels in translucent red, the rest transparent (drawn over the frame in the page)."""
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = (255, 40, 40, 110)
    return png_bytes(rgba)


def segment_job(state: AppState, study: Study, source: str) -> None:
    """Segment every frame with a model, recording progress in ``study.job`` (runs in a thread)."""
    job = study.job
    try:
        seg = state.segmenter(source)
        out = study.masks.setdefault(source, {})
        for i, fr in enumerate(study.frames):
            if i not in out:
                out[i] = seg.segment(fr.image)
            job["done"] = i + 1
        job["state"] = "done"
    except AngiosegError as exc:
        job.update(state="error", error=str(exc))
    except Exception as exc:  # a bug or a broken model: a readable line, not a traceback
        job.update(state="error", error=f"segmentation failed ({exc.__class__.__name__}: {exc})")
