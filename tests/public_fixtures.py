"""Helpers for the public-dataset tests: a local HTTP server and tiny fake dataset folders.

The server runs on 127.0.0.1 (no network needed), serves byte strings from memory, honours
``Range: bytes=N-`` with ``206 Partial Content`` like Zenodo does, and can misbehave on purpose:
drop the connection after a number of bytes, or ignore ``Range`` and answer ``200``.
"""

from __future__ import annotations

import json
import re
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class FileServer:
    """State of the local server; ``log`` holds ``(path, Range header or None)`` per request."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[str, str | None]] = field(default_factory=list)
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before hanging up (once)
    ignore_range: bool = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.lstrip("/").split("?")[0]
            rng = self.headers.get("Range")
            state.log.append((path, rng))
            if path not in state.files:
                self.send_error(404, "Not Found")
                return
            data = state.files[path]
            start, status = 0, 200
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and not state.ignore_range:
                start, status = int(m.group(1)), 206
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            limit = state.drop_after.pop(path, None)
            self.wfile.write(body if limit is None else body[:limit])
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


@contextmanager
def serve() -> Iterator[FileServer]:
    """Run a :class:`FileServer` on a free port of 127.0.0.1 for the duration of the block."""
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def save(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """Zip ``folder`` (its name becomes the top-level folder of the archive, as in real releases)."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return zip_path


def gray(seed: int, shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def disk(shape: tuple[int, int] = (16, 16), radius: float = 5.0) -> np.ndarray:
    r, c = np.mgrid[: shape[0], : shape[1]]
    return ((r - shape[0] / 2) ** 2 + (c - shape[1] / 2) ** 2 < radius**2).astype(np.uint8) * 255


def make_dca1(root: Path, n: int = 3) -> Path:
    """``root/Database_134_Angiograms/{i}.pgm`` + ``{i}_gt.pgm`` for i = 1..n (16 x 16)."""
    d = root / "Database_134_Angiograms"
    for i in range(1, n + 1):
        save(d / f"{i}.pgm", gray(i), "PPM")
        save(d / f"{i}_gt.pgm", disk(radius=2 + i), "PPM")
    return d


def make_drive(root: Path, test_labels: bool = True) -> Path:
    """A 2-training + 1-test DRIVE tree (RGB .tif, .gif masks) under ``root/DRIVE``."""
    d = root / "DRIVE"
    rng = np.random.default_rng(0)
    for split, nums, suffix in (("training", ["21", "22"], "training"), ("test", ["01"], "test")):
        for num in nums:
            save(
                d / split / "images" / f"{num}_{suffix}.tif",
                rng.integers(0, 256, (16, 12, 3), dtype=np.uint8),
            )
            save(d / split / "mask" / f"{num}_{suffix}_mask.gif", disk((16, 12), 6))
            if split == "training" or test_labels:
                save(d / split / "1st_manual" / f"{num}_manual1.gif", disk((16, 12), 3))
    return d


def coco(images: list[tuple[int, str, int, int]], anns: list[tuple[int, int, list[float]]]) -> dict[str, Any]:
    """A COCO dict: ``images`` as (id, file, w, h), ``anns`` as (image_id, category_id, polygon)."""
    cats = [{"id": i, "name": str(i)} for i in range(1, 26)] + [{"id": 26, "name": "stenosis"}]
    return {
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "categories": cats,
        "annotations": [
            {"id": k, "image_id": i, "category_id": c, "segmentation": [p], "iscrowd": 0}
            for k, (i, c, p) in enumerate(anns, start=1)
        ],
    }


def make_arcade(root: Path) -> Path:
    """``root/arcade``: syntax/train (2 images, 3 polygons incl. a stenosis one), stenosis/val (1 image)."""
    base = root / "arcade"
    tr = base / "syntax" / "train"
    save(tr / "images" / "1.png", np.repeat(gray(1)[..., None], 3, axis=2))  # RGB with equal channels
    save(tr / "images" / "2.png", gray(2))
    spec = coco(
        [(1, "1.png", 16, 16), (2, "2.png", 16, 16)],
        [
            (1, 1, [1, 1, 5, 1, 5, 4, 1, 4]),
            (1, 5, [10, 10, 14, 10, 14, 12, 10, 12]),
            (1, 26, [0, 8, 3, 8, 3, 9, 0, 9]),
        ],
    )
    (tr / "annotations").mkdir(parents=True)
    (tr / "annotations" / "train.json").write_text(json.dumps(spec))
    va = base / "stenosis" / "val"
    save(va / "images" / "1.png", gray(3))
    spec = coco([(7, "1.png", 16, 16)], [(7, 26, [0, 0, 5, 0, 0, 4])])
    (va / "annotations").mkdir(parents=True)
    (va / "annotations" / "val.json").write_text(json.dumps(spec))
    return base


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)
