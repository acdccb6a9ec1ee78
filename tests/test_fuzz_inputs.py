"""A fixed-seed subset of bench/fuzz_inputs.py: every reader and command survives fuzzed input.

Each case must return normally or raise an AngiosegError naming the file; a good file next to a
fuzzed one must still be processed. The 10,000-case run is ``python bench/fuzz_inputs.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from bench.fuzz_inputs import Case, fuzz, make_models, run_case, write_seed

from angioseg.data.io import read_frames
from angioseg.errors import DataError


@pytest.fixture(scope="module")
def stats(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return fuzz(300, seed=0, workdir=tmp_path_factory.mktemp("fuzz"), limit=60.0)


def test_300_fuzzed_cases_no_uncaught_exception(stats) -> None:  # type: ignore[no-untyped-def]
    assert stats.n == 300
    assert stats.failures == []
    # The draw covers every kind of case, and both outcomes occur (a harness that refused or
    # accepted everything would be testing nothing).
    assert set(stats.by_kind) == {"mutate", "array", "header", "fs", "cli"}
    assert stats.outcomes.get("refused", 0) > 50 and stats.outcomes.get("ok", 0) > 20


@pytest.mark.parametrize("fmt", ["png", "dcm", "tiff", "npy", "nrrd", "nii", "mha"])
def test_absurd_header_refused_before_allocation(fmt: str) -> None:
    outcome, _, cpu, detail = run_case(Case("header", {"fmt": fmt, "name": "big file"}), {}, {}, 60.0)
    assert outcome == "refused" and cpu < 5, detail
    assert "big file" in detail and ("limit" in detail or "DecompressionBomb" in detail), detail


def test_fifo_named_like_an_image_is_refused_not_waited_on(tmp_path: Path) -> None:
    p = tmp_path / "cine ü.png"
    os.mkfifo(p)
    with pytest.raises(DataError, match="not a regular file"):
        read_frames(p)


def test_good_file_next_to_a_corrupt_one_is_segmented(tmp_path: Path) -> None:
    seeds = {"dcm_multi": write_seed("dcm_multi", tmp_path / "seed.dcm")}
    models = make_models(tmp_path)
    case = Case(
        "cli",
        {"command": "segment", "seed": "dcm_multi", "ops": [("truncate", 0.6, 0)], "name": "ångström 1"},
    )
    outcome, _, _, detail = run_case(case, seeds, models, 60.0)
    assert outcome == "ok", detail


def test_integer_images_round_trip_exactly(tmp_path: Path) -> None:
    """The property the array cases check, on a case where a plausible bug (a lossy cast) shows."""
    arr = (np.arange(9 * 11, dtype=np.int32).reshape(9, 11) * 601 - 30000).astype(np.int16)
    outcome, _, _, detail = run_case(Case("array", {"array": arr, "fmt": "dcm", "name": "s"}), {}, {}, 60.0)
    assert outcome == "ok", detail


@pytest.mark.parametrize(
    "data",
    [
        {"images": [{"id": [1], "file_name": "a.png"}]},
        {"images": [{"id": 1, "file_name": "a.png", "width": "wide"}]},
        {"images": [{"id": 1, "file_name": "a.png"}], "categories": 5},
        {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": {"x": 1}}]},
    ],
)
def test_malformed_coco_entries_are_data_errors(data: dict, tmp_path: Path) -> None:
    import json

    from angioseg.public.arcade import load_coco

    path = tmp_path / "instances ü.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match="instances ü.json: malformed COCO entry"):
        load_coco(path)


def test_coco_polygon_with_nan_is_a_data_error() -> None:
    from angioseg.public.arcade import CocoImage, rasterise

    ann = {"id": 3, "image_id": 1, "segmentation": [[1, 1, 9, 1, float("nan"), 9]]}
    with pytest.raises(DataError, match=r"a\.png \(annotation 3\).*NaN"):
        rasterise(CocoImage(1, "a.png", 16, 16, [ann]), (16, 16), {}, "syntax")


def test_dicom_with_an_unknown_value_representation_is_a_data_error(tmp_path: Path) -> None:
    """Found by the 10,000-case run: pydicom raised NotImplementedError when PixelSpacing was read."""
    path = write_seed("dcm", tmp_path / "séries 1.dcm")
    data = path.read_bytes()
    tag = b"\x28\x00\x30\x00DS"  # (0028,0030) PixelSpacing, explicit VR little endian
    assert tag in data
    path.write_bytes(data.replace(tag, b"\x28\x00\x30\x00FS"))
    with pytest.raises(DataError, match="séries 1.dcm: not a readable DICOM file"):
        read_frames(path)
