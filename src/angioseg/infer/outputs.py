"""Cine outputs written as the frames come: a multi-frame mask TIFF, an overlay video, a progress bar.

* :class:`MaskStack`: ``<name>.masks.tif``, one 1-bit page per frame (zlib, fast level 1), readable back with
  :func:`angioseg.data.io.read_frames` or ``tifffile.imread`` (frames x H x W, bool);
* :class:`OverlayVideo`: ``<name>.overlay.mp4`` through PyAV (the optional ``video`` extra; FFmpeg's
  own MPEG-4 Part 2 encoder, so no GPL encoder is used), or an animated ``<name>.overlay.gif``
  through Pillow when PyAV is not installed. MP4 frames are streamed to the encoder; the GIF
  fallback keeps its frames, reduced to at most :data:`GIF_MAX_SIDE` pixels and 256 colours, in
  memory until the end (about 64 kB a frame);
* :func:`progress_columns`: a rich progress bar that shows frames per second;
* :class:`OrderedWriter`: one background thread that writes a batch's outputs while the next
  batch is decoded and segmented.

Both files are written to a temporary name and moved into place only when the run ends without
error, so an interrupted run never leaves a truncated stack or video behind.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from angioseg.utils import atomic_path

GIF_MAX_SIDE = 256


class _AtomicFile:
    """Holds ``atomic_path(path)`` open between ``__enter__`` and ``__exit__``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stack = contextlib.ExitStack()
        self.tmp: Path = Path()

    def __enter__(self) -> Any:
        self.tmp = self._stack.enter_context(atomic_path(self.path))
        try:
            self.open()
        except BaseException:
            self._stack.__exit__(None, None, None)
            raise
        return self

    def open(self) -> None: ...

    def finish(self) -> None: ...

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is not None:  # close the handles; atomic_path then removes the temporary file
            with contextlib.suppress(Exception):
                self.finish()
            self._stack.__exit__(et, ev, tb)
            return
        try:
            self.finish()
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.__exit__(None, None, None)


class MaskStack(_AtomicFile):
    """Multi-frame TIFF of binary masks, one page per frame."""

    def open(self) -> None:
        import tifffile

        self.writer = tifffile.TiffWriter(self.tmp, bigtiff=True)
        self.frames = 0

    def add(self, mask: np.ndarray) -> None:
        page = np.asarray(mask, bool)  # a 1-bit page: ~0.3 ms for 512² at zlib level 1, 0.7 as 0/255
        self.writer.write(
            page, compression="zlib", compressionargs={"level": 1}, photometric="minisblack", metadata=None
        )  # zlib level 1: about half the time of the default level 6
        self.frames += 1

    def finish(self) -> None:
        self.writer.close()


def video_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def video_path(stem: Path) -> Path:
    """``<stem>.overlay.mp4`` with PyAV installed, else ``<stem>.overlay.gif``."""
    return stem.with_name(stem.name + (".overlay.mp4" if video_available() else ".overlay.gif"))


class OverlayVideo(_AtomicFile):
    """An RGB overlay per frame into an MP4 (PyAV) or, without PyAV, an animated GIF."""

    def __init__(self, path: Path, fps: float = 15.0) -> None:
        super().__init__(path)
        self.fps = max(1.0, float(fps))
        self.gif = path.suffix.lower() == ".gif"
        self._gif_frames: list[Any] = []
        self.frames = 0

    def open(self) -> None:
        if self.gif:
            return
        import av

        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        self.stream = self.container.add_stream("mpeg4", rate=round(self.fps))
        self.stream.pix_fmt = "yuv420p"
        self.stream.bit_rate = 4_000_000
        self.size: tuple[int, int] | None = None

    def add(self, rgb: np.ndarray) -> None:
        self.frames += 1
        if self.gif:
            from PIL import Image

            im = Image.fromarray(rgb)
            scale = GIF_MAX_SIDE / max(im.size)
            if scale < 1:
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
            self._gif_frames.append(im.quantize(256))
            return
        import av

        if self.size is None:  # yuv420p needs even sides
            self.size = (rgb.shape[0] - rgb.shape[0] % 2, rgb.shape[1] - rgb.shape[1] % 2)
            self.stream.height, self.stream.width = self.size
        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[: self.size[0], : self.size[1]]), format="rgb24"
        )
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def finish(self) -> None:
        if self.gif:
            if self._gif_frames:
                first, *rest = self._gif_frames
                first.save(
                    self.tmp,
                    format="GIF",
                    save_all=True,
                    append_images=rest,
                    duration=round(1000 / self.fps),
                    loop=0,
                )
            self._gif_frames = []
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def progress_columns() -> tuple[Any, ...]:
    """Rich progress columns: description, bar, count, frames per second, elapsed / remaining time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class FpsColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("- frames/s" if speed is None else f"{speed:5.1f} frames/s")

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        FpsColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


class CineOutputs:
    """The multi-frame mask TIFF and overlay video of each cine in a batch, opened at its first
    frame and finished when the next file starts (or at :meth:`close`). A file that fails part-way
    leaves neither behind (:meth:`abort`)."""

    def __init__(self, folder: Path, video: bool = True) -> None:
        self.folder = folder
        self.video = video
        self.source: Path | None = None
        self._stack = contextlib.ExitStack()
        self.masks: MaskStack | None = None
        self.overlay: OverlayVideo | None = None
        self.written: list[Path] = []

    def add(
        self, source: Path, name: str, fps: float | None, mask: np.ndarray, rgb: np.ndarray | None
    ) -> None:
        if source != self.source:
            self.close()
            self.source = source
            stem = self.folder / name
            self.masks = self._stack.enter_context(MaskStack(stem.with_name(stem.name + ".masks.tif")))
            if self.video and rgb is not None:
                self.overlay = self._stack.enter_context(OverlayVideo(video_path(stem), fps or 15.0))
        assert self.masks is not None
        self.masks.add(mask)
        if self.overlay is not None and rgb is not None:
            self.overlay.add(rgb)

    def close(self) -> None:
        """Finish the current cine's files (moved into place)."""
        done = [w.path for w in (self.masks, self.overlay) if w is not None]
        self._stack.close()
        self.written.extend(done)
        self.source, self.masks, self.overlay = None, None, None

    def abort(self, exc: BaseException) -> None:
        """Drop the current cine's files (temporary files removed)."""
        self._stack.__exit__(type(exc), exc, exc.__traceback__)
        self._stack = contextlib.ExitStack()
        self.source, self.masks, self.overlay = None, None, None

    def __enter__(self) -> CineOutputs:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        """On an error (Ctrl-C included), :meth:`abort` the open cine; a clean exit leaves it to
        :meth:`close`."""
        if ev is not None:
            self.abort(ev)


class OrderedWriter:
    """Runs jobs (mask files, the cine's stack and video, vessel geometry) on one background thread,
    in the order submitted, so that they overlap the next batch's decoding and network call (PNG
    and video encoding, scipy and most numpy work release the GIL).

    At most ``depth`` jobs wait (memory stays bounded). A job's error is raised again by the next
    :meth:`submit` or by :meth:`drain`, and the jobs after it are skipped. Use as a context
    manager: leaving it waits for every job (a clean exit) or drops those not started (an error).
    """

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="angioseg-writer")
        self._pending: deque[Future[None]] = deque()
        self._failed = False

    def _run(self, job: Callable[[], None]) -> None:
        if self._failed:
            return
        try:
            job()
        except BaseException:
            self._failed = True
            raise

    def submit(self, job: Callable[[], None]) -> None:
        self._pending.append(self._pool.submit(self._run, job))
        while len(self._pending) > self.depth:
            self._pending.popleft().result()

    def drain(self) -> None:
        """Wait for every job submitted; raise the first error."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> OrderedWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is None:
                self.drain()
        finally:
            self._failed = self._failed or et is not None
            self._pool.shutdown(wait=True, cancel_futures=True)
