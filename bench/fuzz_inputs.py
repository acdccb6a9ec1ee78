"""Fuzz every input reader and the ``segment`` / ``evaluate`` / ``cta segment`` commands.

Cases are drawn by a `hypothesis` strategy (:func:`cases`) from one seed, so a run is reproducible:

* ``mutate``: byte-level mutation (bit flips, overwritten bytes and 32-bit words, truncation,
  insertion, deletion, duplicated chunks) of valid seed files in every format: PNG (8/16-bit, RGB,
  RGBA, palette), PGM, BMP, JPEG, TIFF (one and several pages, float), NPY, DICOM (single- and
  multi-frame, signed, MONOCHROME1, RLE-compressed), NRRD, NIfTI, MHA, COCO JSON, and the real
  angiograms bundled in ``angioseg/data/sample``;
* ``array``: arrays of any dtype (8/16/32-bit, signed, float with NaN/inf, bool) and shape (1 pixel,
  1 row, stacks, 2-5 channels) written as PNG / TIFF / NPY / DICOM / NRRD / NIfTI; a finite integer
  2D image of at least 8 x 8 pixels must come back exactly, anything else may be refused;
* ``header``: files whose header claims 100,000 x 100,000 pixels (or 10^15 voxels) but hold a few
  bytes: they must be refused before any allocation;
* ``fs``: empty folders, symlink loops, dangling links, a folder or a FIFO named like an image,
  empty files;
* ``cli``: a good file next to a fuzzed one through ``segment``, ``evaluate`` and ``cta segment``
  (random-weight tiny models): the good file's output must be written.

Every case passes when it returns normally or raises :class:`~angioseg.errors.AngiosegError` whose
message names the file; anything else (another exception, a case above ``--limit`` seconds) is a
failure. File names use spaces and non-ASCII characters. Unreadable files (``chmod 000``) are not
fuzzed when running as root, where permissions do not apply.

    nice -n 15 env OMP_NUM_THREADS=1 PYTHONPATH=src python bench/fuzz_inputs.py --cases 10000 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for tests.dicom_utils when run as a script
    sys.path.insert(0, str(ROOT))

from angioseg.errors import AngiosegError  # noqa: E402

NAMES = ("case", "a b", "ångström_血管", "-dash", "x.y")
IMAGE_KINDS = ("png8", "png16", "png_rgb", "png_rgba", "png_pal", "pgm", "bmp", "jpeg", "tiff")
IMAGE_KINDS += ("tiff_pages", "tiff_float", "npy", "npy_stack", "dcm", "dcm_multi", "dcm_signed")
IMAGE_KINDS += ("dcm_mono1", "dcm_rle", "real_png", "real_mask")
VOLUME_KINDS = ("nrrd", "nii_gz", "nii", "mha")
SEED_KINDS = (*IMAGE_KINDS, *VOLUME_KINDS, "coco")
EXT = {"pgm": ".pgm", "bmp": ".bmp", "jpeg": ".jpg", "npy": ".npy", "npy_stack": ".npy", "coco": ".json"}
EXT |= {k: ".png" for k in SEED_KINDS if "png" in k or k == "real_mask"}
EXT |= {k: ".tif" for k in SEED_KINDS if k.startswith("tiff")}
EXT |= {k: ".dcm" for k in SEED_KINDS if k.startswith("dcm")}
EXT |= {"nrrd": ".nrrd", "nii_gz": ".nii.gz", "nii": ".nii", "mha": ".mha"}


# --------------------------------------------------------------------------- seed files and models


@functools.lru_cache(maxsize=4)
def _angiogram(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    from angioseg.data.synthetic import SynthConfig, synthetic_angiogram

    return synthetic_angiogram(np.random.default_rng(0), SynthConfig(size=size))


def write_dicom_any(path: Path, frames: np.ndarray, **attrs: Any) -> Path:
    """A DICOM file of any 8/16-bit integer frames (signed ones with PixelRepresentation 1)."""
    from tests.dicom_utils import write_dicom

    if frames.dtype.kind == "i":
        attrs.setdefault("PixelRepresentation", 1)
    return write_dicom(path, frames, **attrs)


def write_seed(kind: str, path: Path) -> Path:
    """Write a valid file of ``kind`` to ``path`` (the fuzzing starts from these)."""
    import SimpleITK as sitk
    import tifffile
    from PIL import Image

    img, _mask = _angiogram()
    if kind == "real_png":
        path.write_bytes((ROOT / "src/angioseg/data/sample/labeled/images/training_01.png").read_bytes())
    elif kind == "real_mask":
        path.write_bytes((ROOT / "src/angioseg/data/sample/labeled/masks/training_01.png").read_bytes())
    elif kind in ("png8", "pgm", "bmp", "jpeg"):
        Image.fromarray(img).save(path)
    elif kind == "png16":
        Image.fromarray(img.astype(np.uint16) * 200).save(path)
    elif kind in ("png_rgb", "png_rgba"):
        Image.fromarray(img).convert("RGB" if kind == "png_rgb" else "RGBA").save(path)
    elif kind == "png_pal":
        Image.fromarray(img).convert("P").save(path)
    elif kind == "tiff":
        tifffile.imwrite(path, img)
    elif kind == "tiff_pages":
        tifffile.imwrite(path, np.stack([img, img[::-1], img[:, ::-1]]))
    elif kind == "tiff_float":
        tifffile.imwrite(path, img.astype(np.float32) / 255)
    elif kind == "npy":
        np.save(path, img.astype(np.float32))
    elif kind == "npy_stack":
        np.save(path, np.stack([img, img]).astype(np.int16))
    elif kind == "dcm":
        write_dicom_any(path, img.astype(np.uint16) * 16)
    elif kind == "dcm_multi":
        write_dicom_any(path, np.stack([img, img[::-1], img]))
    elif kind == "dcm_signed":
        write_dicom_any(path, img.astype(np.int16) - 100, RescaleSlope=2, RescaleIntercept=-1024)
    elif kind == "dcm_mono1":
        write_dicom_any(path, img, photometric="MONOCHROME1", spacing=None)
    elif kind == "dcm_rle":
        import pydicom
        from pydicom.uid import RLELossless

        write_dicom_any(path, np.stack([img, img]))
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    elif kind in VOLUME_KINDS:
        vol = np.zeros((8, 16, 16), np.int16) - 1000
        vol[:, 6:10, 6:10] = 300
        im = sitk.GetImageFromArray(vol)
        im.SetSpacing((0.5, 0.5, 1.0))
        sitk.WriteImage(im, str(path), useCompression=kind in ("nrrd", "nii_gz"))
    elif kind == "coco":
        data = {
            "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 20, 3, 20, 20, 3, 18]]}
            ],
            "categories": [{"id": 1, "name": "1"}, {"id": 26, "name": "stenosis"}],
        }
        path.write_text(json.dumps(data), encoding="utf-8")
    else:
        raise ValueError(kind)
    return path


def make_models(folder: Path) -> dict[str, Path]:
    """Random-weight tiny 2D and 3D models (robustness needs no trained weights)."""
    import torch

    from angioseg.data.preprocess import PreprocessConfig
    from angioseg.models.unet import UNet
    from angioseg.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    for sub in ("m2d", "m3d"):
        (folder / sub).mkdir(exist_ok=True)
    m2 = UNet(width=4, depth=2)
    pre = PreprocessConfig(image_size=32, inpaint_corners=False).to_dict()
    save_checkpoint(
        folder / "m2d", m2.state_dict(), {"task": "segmentation", "model": m2.config(), "preprocess": pre}
    )
    m3 = UNet(spatial_dims=3, width=4, depth=2)
    cta = {"dims": 3, "crop": 16, "depth": 8, "channel": "none", "min_size": 0, "keep_largest": None}
    save_checkpoint(
        folder / "m3d", m3.state_dict(), {"task": "segmentation", "model": m3.config(), "cta": cta}
    )
    return {"2d": folder / "m2d", "3d": folder / "m3d"}


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


MUTATIONS = ("flip", "byte", "word", "truncate", "insert", "delete", "dup")


def mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    """Apply byte-level mutations; positions are fractions of the current length."""
    b = bytearray(data)
    for op, where, value in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if op == "flip" and b:
            b[i] ^= 1 << (value % 8)
        elif op == "byte" and b:
            b[i] = value % 256
        elif op == "word" and len(b) >= 4:  # a 32-bit field set to an extreme value
            i = min(i, len(b) - 4)
            b[i : i + 4] = (0xFFFFFFFF, 0x7FFFFFFF, 0, 0x80000000, 100_000)[value % 5].to_bytes(4, "little")
        elif op == "truncate":
            del b[i:]
        elif op == "insert":
            b[i:i] = bytes([value % 256]) * (1 + value % 64)
        elif op == "delete":
            del b[i : i + 1 + value % 64]
        elif op == "dup":
            b[i:i] = b[i : i + 1 + value % 256]
    return bytes(b)


def array_cases() -> st.SearchStrategy[Case]:
    """Property-based cases: a hypothesis-drawn array written in one of :data:`ARRAY_FORMATS`."""
    return st.builds(
        lambda arr, fmt, name: Case("array", {"array": arr, "fmt": fmt, "name": name}),
        _array(),
        st.sampled_from(ARRAY_FORMATS),
        st.sampled_from(NAMES),
    )


ARRAY_FORMATS = ("png", "tiff", "npy", "dcm", "nrrd", "nii_gz")
DTYPES = ("uint8", "uint16", "int16", "int32", "float32", "float64", "bool")
SIDES = (1, 2, 7, 8, 9, 33)


@st.composite
def _array(draw: Any) -> np.ndarray:
    from hypothesis.extra.numpy import arrays

    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.sampled_from(SIDES), min_size=2, max_size=2)))
    extra = draw(st.sampled_from(((), (1,), (3,), (4,), (5,), ("pre", 3), ("pre", 1))))
    if extra and extra[0] == "pre":
        shape = (extra[1], *shape)
    else:
        shape = (*shape, *extra)  # type: ignore[arg-type]
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
        fill = st.sampled_from([0.0, 0.5, 1e30, float("nan")])
    elif dtype.kind == "b":
        elements, fill = st.booleans(), st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
        fill = st.integers(0, min(int(info.max), 255))
    return draw(arrays(dtype, shape, elements=elements, fill=fill))


def draw_case(rng: np.random.Generator, cli: bool = True) -> Case:
    """One non-array fuzz case: mutate 70 %, header 12 %, fs 8 %, cli 10 % (when ``cli``)."""
    name = str(rng.choice(NAMES))
    roll = int(rng.integers(0, 100 if cli else 90))

    def ops(k: int) -> list[tuple[str, float, int]]:
        return [
            (str(rng.choice(MUTATIONS)), float(rng.random()), int(rng.integers(0, 2**16))) for _ in range(k)
        ]

    if roll < 70:
        seed = str(rng.choice(SEED_KINDS))
        return Case("mutate", {"seed": seed, "ops": ops(int(rng.integers(1, 5))), "name": name})
    if roll < 82:
        fmt = str(rng.choice(("png", "dcm", "tiff", "npy", "nrrd", "nii", "mha")))
        return Case("header", {"fmt": fmt, "name": name})
    if roll < 90:
        return Case("fs", {"what": str(rng.choice(FS_CASES)), "name": name})
    command = str(rng.choice(("segment", "evaluate", "cta")))
    seed = str(rng.choice(VOLUME_KINDS if command == "cta" else IMAGE_KINDS))
    return Case("cli", {"command": command, "seed": seed, "ops": ops(1), "name": name})


# --------------------------------------------------------------------------- running a case


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_absurd(fmt: str, path: Path) -> None:
    """A small file whose header claims an image of 100,000 x 100,000 pixels (or more)."""
    big = 100_000
    if fmt == "png":
        ihdr = struct.pack(">IIBBBBB", big, big, 8, 0, 0, 0, 0)
        idat = zlib.compress(b"\0" * 1000)
        path.write_bytes(
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b"")
        )
    elif fmt == "dcm":
        write_dicom_any(path, np.zeros((8, 8), np.uint16))
        import pydicom

        ds = pydicom.dcmread(path)
        ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, big
        ds.save_as(path)
    elif fmt == "tiff":
        import tifffile

        tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
        b = bytearray(path.read_bytes())
        (ifd,) = struct.unpack_from("<I", b, 4)
        (n,) = struct.unpack_from("<H", b, ifd)
        for k in range(n):
            at = ifd + 2 + 12 * k
            tag, _typ = struct.unpack_from("<HH", b, at)
            if tag in (256, 257):  # ImageWidth, ImageLength
                struct.pack_into("<HHII", b, at, tag, 4, 1, big)
        path.write_bytes(bytes(b))
    elif fmt == "npy":
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f8", "fortran_order": False, "shape": (big, big)}
            )
            fh.write(b"\0" * 64)
    elif fmt == "nrrd":
        path.write_bytes(
            b"NRRD0004\ntype: short\ndimension: 3\nsizes: 100000 100000 100000\nendian: little\nencoding: raw\n\n"
            + b"\0" * 64
        )
    elif fmt == "mha":
        path.write_bytes(
            b"ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_SHORT\n"
            b"ElementDataFile = LOCAL\n" + b"\0" * 64
        )
    elif fmt == "nii":
        write_seed("nii", path)
        b = bytearray(path.read_bytes())
        struct.pack_into("<8h", b, 40, 3, 32767, 32767, 32767, 1, 1, 1, 1)
        path.write_bytes(bytes(b))
    else:
        raise ValueError(fmt)


def write_array(arr: np.ndarray, fmt: str, path: Path) -> Path:
    """Write ``arr`` in ``fmt`` as faithfully as the format allows (a format that cannot hold the
    dtype gets it cast, as an exporting program would); returns the path written."""
    import SimpleITK as sitk
    import tifffile
    from PIL import Image

    path = path.with_suffix(
        {"png": ".png", "tiff": ".tif", "npy": ".npy", "dcm": ".dcm", "nrrd": ".nrrd"}.get(fmt, ".nii.gz")
    )
    if fmt == "npy":
        np.save(path, arr)
    elif fmt == "tiff":
        tifffile.imwrite(path, arr)
    elif fmt == "png":
        a = (
            arr
            if arr.dtype in (np.uint8, np.uint16, bool)
            else np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        )
        if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (3, 4):
            a = a[0]
        if a.ndim == 3 and (a.shape[2] not in (3, 4) or a.dtype != np.uint8):
            a = a[..., 0]
        Image.fromarray(a).save(path)
    elif fmt == "dcm":
        a = (
            arr
            if arr.dtype in (np.uint8, np.uint16, np.int16)
            else np.clip(np.nan_to_num(arr), -32768, 32767).astype(np.int16)
        )
        if a.ndim == 3 and a.shape[2] in (1, 3, 4, 5):
            a = a[..., 0]
        write_dicom_any(path, a)
    else:
        a = arr.astype(np.uint8) if arr.dtype == bool else arr
        if a.ndim == 2:
            a = a[None]
        sitk.WriteImage(sitk.GetImageFromArray(a, isVector=False), str(path))
    return path


def _read_image(p: Path) -> object:
    from angioseg.data.io import read_frames

    return read_frames(p)


def _read_any(p: Path) -> object:
    """The reader a user of this file would call."""
    from angioseg.cta.volume_io import read_label, read_volume, volume_format
    from angioseg.data.io import read_frames, read_mask
    from angioseg.public.arcade import load_coco, rasterise

    if p.suffix == ".json":
        images, cats = load_coco(p)
        return [rasterise(im, (32, 32), cats, "syntax") for im in images]
    if volume_format(p) not in (None, "dicom") or p.is_dir():
        vol = read_volume(p)
        return read_label(p, vol.shape) if vol.array.size < 10**6 else vol
    frames = read_frames(p)
    if len(frames) == 1:
        read_mask(p)
    return frames


def _check_roundtrip(arr: np.ndarray, fmt: str, frames: Any) -> str | None:
    """A finite integer 2D image >= 8 x 8 written losslessly must be read back exactly."""
    if fmt not in ("png", "tiff", "npy", "dcm") or arr.ndim != 2 or min(arr.shape) < 8:
        return None
    if arr.dtype.kind not in "ui" or (fmt == "png" and arr.dtype not in (np.uint8, np.uint16)):
        return None
    if fmt == "dcm" and arr.dtype not in (np.uint8, np.uint16, np.int16):
        return None
    got = frames[0].image
    if got.shape != arr.shape or not np.array_equal(got, arr.astype(np.float32)):
        return f"{fmt} {arr.dtype} {arr.shape}: read back differs"
    return None


FS_CASES = ("empty_dir", "symlink_loop", "dangling", "dir_named_png", "fifo", "empty_file", "dir_loop")


def _fs_case(what: str, d: Path, name: str) -> tuple[Path, Callable[[Path], object]]:
    from angioseg.cta.volume_io import list_volumes
    from angioseg.data.io import list_image_files

    p = d / f"{name}.png"
    if what == "empty_dir":
        (d / name).mkdir()
        return d / name, lambda q: list_image_files([q])
    if what == "symlink_loop":
        (d / "other.png").symlink_to(p)
        p.symlink_to(d / "other.png")
        return p, _read_any
    if what == "dangling":
        p.symlink_to(d / "nowhere.png")
        return p, _read_any
    if what == "dir_named_png":
        p.mkdir()
        return p, _read_any
    if what == "fifo":
        os.mkfifo(p)
        return p, _read_any
    if what == "empty_file":
        p.touch()
        return p, _read_any
    (d / name).mkdir()  # dir_loop: a folder holding a link to itself, read recursively
    (d / name / "loop").symlink_to(d / name)
    write_seed("png8", d / name / "good.png")

    def both(q: Path) -> object:
        files = list_image_files([q], recursive=True)
        assert [f.name for f in files] == ["good.png"], files
        return list_volumes(q)

    return d / name, both


@contextlib.contextmanager
def _quiet() -> Any:
    with (
        contextlib.redirect_stdout(io.StringIO()) as out,
        contextlib.redirect_stderr(io.StringIO()) as err,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield out, err


def _cli_case(case: Case, d: Path, seeds: dict[str, Path], models: dict[str, Path]) -> str | None:
    from angioseg.cli import main

    p = case.params
    src = seeds[p["seed"]]
    ext = EXT[p["seed"]]
    bad_dir, out = d / "in", d / "out"
    bad_dir.mkdir()
    bad = bad_dir / f"{p['name']}{ext}"
    bad.write_bytes(mutate(src.read_bytes(), p["ops"]))
    if p["command"] == "cta":
        write_seed("nrrd", bad_dir / "good.nrrd")
        argv = ["cta", "segment", str(bad_dir), "--model", str(models["3d"]), "--out", str(out)]
        expect = out / "masks" / "good.nrrd"
    elif p["command"] == "segment":
        write_seed("png8", bad_dir / "good.png")
        argv = ["segment", str(bad_dir), "--model", str(models["2d"]), "--out", str(out)]
        expect = out / "masks" / "good.png"
    else:
        truth = d / "truth"
        truth.mkdir()
        _, m = _angiogram()
        from angioseg.data.io import write_png

        write_png(truth / "good.png", m)
        write_png(bad_dir / "good.png", m)
        write_png(truth / f"{p['name']}.png", m)
        argv = ["evaluate", "--pred", str(bad_dir), "--truth", str(truth), "--out", str(out)]
        expect = out / "metrics.csv"
    with _quiet() as (_stdout, stderr):
        code = main(argv)
    if code not in (0, 1, 2):
        return f"exit code {code}"
    if code == 2:  # a fatal error must be about the bad file (the good one alone is fine)
        if bad.name not in stderr.getvalue() and bad.stem not in stderr.getvalue():
            return f"exit 2 without naming {bad.name}: {stderr.getvalue()[-300:]}"
        return None
    if not expect.exists():
        return f"good file not processed (exit {code})"
    if p["command"] == "evaluate" and "good" not in expect.read_text(encoding="utf-8"):
        return "good pair missing from metrics.csv"
    return None


class Timeout(BaseException):  # not swallowed by a per-file "except Exception"
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Timeout


def run_case(
    case: Case, seeds: dict[str, Path], models: dict[str, Path], limit: float
) -> tuple[str, float, float, str]:
    """Run one case in a fresh folder: ``(outcome, wall s, CPU s, detail)``; outcome ``ok``,
    ``refused`` (an AngiosegError naming the file) or ``FAIL``."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        p = case.params
        check: Callable[[Any], str | None] = lambda r: None  # noqa: E731
        reader: Callable[[Path], object] = _read_any
        if case.kind == "mutate":
            path = d / f"{p['name']}{EXT[p['seed']]}"
            path.write_bytes(mutate(seeds[p["seed"]].read_bytes(), p["ops"]))
        elif case.kind == "array":
            path = write_array(p["array"], p["fmt"], d / p["name"])
            if p["fmt"] in ("png", "tiff", "npy", "dcm"):
                reader = _read_image
                check = lambda r: _check_roundtrip(p["array"], p["fmt"], r)  # noqa: E731
        elif case.kind == "header":
            path = d / f"{p['name']}.{p['fmt']}"
            write_absurd(p["fmt"], path)
        elif case.kind == "fs":
            path, reader = _fs_case(p["what"], d, p["name"])
        # The limit is on CPU time (SIGPROF), so that a busy shared machine does not fail a case;
        # a case that waits without computing (a FIFO) is caught by the wall-clock guard.
        old = signal.signal(signal.SIGPROF, _alarm), signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_PROF, limit)
        signal.setitimer(signal.ITIMER_REAL, max(60.0, 10 * limit))
        t, cpu = time.perf_counter(), time.process_time()
        try:
            if case.kind == "cli":
                with _quiet():
                    detail = _cli_case(case, d, seeds, models)
                outcome = "ok" if detail is None else "FAIL"
            else:
                with _quiet():
                    result = reader(path)
                detail = check(result)
                outcome = "ok" if detail is None else "FAIL"
        except Timeout:
            outcome, detail = "FAIL", f"above {limit} s of CPU (or {max(60.0, 10 * limit)} s of wall time)"
        except AngiosegError as exc:
            named = path.name in str(exc) or path.stem in str(exc) or "annotation" in str(exc)
            outcome, detail = (
                ("refused", str(exc)[:200]) if named else ("FAIL", f"error without file name: {exc}")
            )
        except Exception as exc:
            outcome = "FAIL"
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGPROF, old[0])
            signal.signal(signal.SIGALRM, old[1])
        return outcome, time.perf_counter() - t, time.process_time() - cpu, detail or ""


@dataclass
class Stats:
    n: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    max_s: float = 0.0
    max_cpu_s: float = 0.0
    slowest: str = ""

    def add(self, case: Case, outcome: str, secs: float, cpu: float, detail: str) -> None:
        self.max_cpu_s = max(self.max_cpu_s, cpu)
        self.n += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.by_kind[case.kind] = self.by_kind.get(case.kind, 0) + 1
        label = f"{case.kind} {case.params.get('seed') or case.params.get('fmt') or case.params.get('what') or ''}"
        if outcome == "FAIL":
            self.failures.append(f"{label} {case.params.get('command', '')}: {detail}")
        if secs > self.max_s:
            self.max_s, self.slowest = secs, label


def fuzz(
    n: int,
    seed: int,
    workdir: Path,
    limit: float = 5.0,
    cli: bool = True,
    array_share: float = 0.2,
    progress: bool = False,
    start: int = 0,
    only: str | None = None,
) -> Stats:
    """Run ``n`` cases from ``seed``: ``array_share`` of them drawn by hypothesis (:func:`array_cases`),
    the rest by :func:`draw_case`. Failures are collected, not raised.

    ``only`` (``KIND`` or ``KIND:SEEDPREFIX``, e.g. ``mutate:dcm``) runs only the drawn non-array cases
    of that kind (and seed file kind): a re-check of one reader on exactly the cases of a full run.
    """
    seeds = {k: write_seed(k, workdir / f"seed_{k}{EXT[k]}") for k in SEED_KINDS}
    kind, _, prefix = (only or "").partition(":")
    cli_cases = cli and kind in ("", "cli")  # draws still include cli cases when ``cli``
    models = make_models(workdir) if cli_cases else {}
    if cli_cases:  # warm up: first imports (torch, matplotlib, SimpleITK) are not a case's time
        for command, kind in (("segment", "png8"), ("evaluate", "png8"), ("cta", "nrrd")):
            run_case(
                Case("cli", {"command": command, "seed": kind, "ops": [], "name": "w"}), seeds, models, 600
            )
    stats = Stats()

    def one(case: Case) -> None:
        stats.add(case, *run_case(case, seeds, models, limit))
        if progress and stats.n % 100 == 0:
            print(
                f"{stats.n} cases, {stats.outcomes}, max {stats.max_s:.2f} s wall, {stats.max_cpu_s:.2f} s CPU",
                flush=True,
            )
            for f in stats.failures[-3:]:
                print("  FAIL", f, flush=True)

    n_array = round(n * array_share)
    for i in range(start, start + n - n_array):  # case i depends only on (seed, i)
        case = draw_case(np.random.default_rng([seed, i]), cli)
        if only and (case.kind != kind or not str(case.params.get("seed", "")).startswith(prefix)):
            continue
        one(case)
    if n_array:

        @settings(
            max_examples=n_array,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(array_cases())
        def prop(case: Case) -> None:
            one(case)

        from hypothesis import seed as hseed

        hseed(seed)(prop)()
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=float, default=5.0, help="CPU seconds allowed per case")
    ap.add_argument("--start", type=int, default=0, help="index of the first (non-array) case")
    ap.add_argument("--array-share", type=float, default=0.2, help="fraction of hypothesis array cases")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--only", help="run only these drawn cases: KIND or KIND:SEEDPREFIX (e.g. mutate:dcm)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stats = fuzz(
            args.cases,
            args.seed,
            Path(tmp),
            args.limit,
            cli=args.array_share < 1,
            array_share=args.array_share,
            progress=True,
            start=args.start,
            only=args.only,
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fig = {
        "cases": stats.n,
        "outcomes": stats.outcomes,
        "by_kind": stats.by_kind,
        "uncaught_or_wrong": len(stats.failures),
        "max_wall_seconds_per_case": round(stats.max_s, 3),
        "max_cpu_seconds_per_case": round(stats.max_cpu_s, 3),
        "slowest_case": stats.slowest,
        "peak_rss_mb": round(peak_mb, 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "seed": args.seed,
        "drawn": f"indices {args.start}-{args.start + args.cases - 1}"
        + (f", only {args.only}" if args.only else ""),
    }
    print(json.dumps(fig, indent=1))
    for f in stats.failures[:50]:
        print("FAIL", f)
    if args.json:
        args.json.write_text(json.dumps({**fig, "failures": stats.failures}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
