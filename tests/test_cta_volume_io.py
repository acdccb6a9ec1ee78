"""Volume formats keep their geometry; predictions come back in the input's format and geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from angioseg.cta.volume_io import (
    Volume,
    list_volumes,
    output_path,
    read_label,
    read_volume,
    volume_stem,
    write_volume,
)
from angioseg.errors import DataError


def oblique_volume(shape: tuple[int, int, int] = (6, 7, 8)) -> Volume:
    th = np.deg2rad(20)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    arr = np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)
    return Volume(arr, (2.0, 0.5, 0.75), (10.0, -20.0, 5.0), rot)


def assert_same_geometry(a: Volume, b: Volume) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=1e-6)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "fmt"), [("v.nrrd", "nrrd"), ("v.nii.gz", "nifti"), ("v.mha", "mha"), ("v", "dicom")]
)
def test_round_trip_keeps_values_and_geometry(tmp_path: Path, name: str, fmt: str) -> None:
    vol = oblique_volume()
    path = write_volume(tmp_path / name, vol.array, vol)
    back = read_volume(path)
    assert back.format == fmt
    assert_same_geometry(back, vol)
    np.testing.assert_array_equal(back.array, vol.array)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]  # no temporary left behind


def test_output_path_keeps_the_input_format(tmp_path: Path) -> None:
    vol = oblique_volume()
    for name, expected in [("a.nrrd", "a.nrrd"), ("b.nii.gz", "b.nii.gz"), ("c_dcm", "c_dcm")]:
        src = write_volume(tmp_path / "in" / name, vol.array, vol)
        assert output_path(read_volume(src), tmp_path / "out").name == expected
    assert volume_stem("case_1.nii.gz") == "case_1"
    assert sorted(list_volumes(tmp_path / "in")) == ["a", "b", "c_dcm"]


def test_world_and_index_coordinates_invert_each_other() -> None:
    vol = oblique_volume()
    zyx = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [5.5, 6.0, 7.25]])
    xyz = vol.index_to_world(zyx)
    np.testing.assert_allclose(xyz[0], vol.origin)
    # one step along x (array axis 2) moves 0.75 mm along the first direction column
    np.testing.assert_allclose(
        vol.index_to_world(np.array([[0, 0, 1.0]]))[0] - vol.origin, 0.75 * vol.direction[:, 0]
    )
    np.testing.assert_allclose(vol.world_to_index(xyz), zyx, atol=1e-9)


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.nrrd: volume does not exist"):
        read_volume(tmp_path / "missing.nrrd")
    (tmp_path / "junk.nrrd").write_text("not a volume")
    with pytest.raises(DataError, match=r"junk\.nrrd: cannot read nrrd volume"):
        read_volume(tmp_path / "junk.nrrd")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="not a volume format"):
        read_volume(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM series"):
        read_volume(tmp_path / "empty")
    vol = oblique_volume()
    small = oblique_volume((3, 3, 3))
    write_volume(tmp_path / "lab.nrrd", small.array, small)
    with pytest.raises(DataError, match=r"lab.nrrd: label shape \(3, 3, 3\) differs"):
        read_label(tmp_path / "lab.nrrd", vol.shape)
