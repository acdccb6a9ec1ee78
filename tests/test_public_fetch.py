"""``angioseg data list | fetch | convert`` end to end, with downloads from a local 127.0.0.1 server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from angioseg.public.registry import DATASETS, RemoteFile
from conftest import run_cli
from public_fixtures import FileServer, make_dca1, make_drive, serve, zip_folder


@pytest.fixture
def dca1_zip(tmp_path: Path) -> Path:
    return zip_folder(make_dca1(tmp_path / "src", n=3), tmp_path / "DB_Angiograms_134.zip")


@pytest.fixture
def server(dca1_zip: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    """The local server holds the fake DCA1 archive; the registry's DCA1 entry points at it."""
    with serve() as s:
        s.files["DB_Angiograms_134.zip"] = dca1_zip.read_bytes()
        remote = RemoteFile(
            "DB_Angiograms_134.zip",
            (s.url("DB_Angiograms_134.zip"),),
            hashlib.sha256(s.files["DB_Angiograms_134.zip"]).hexdigest(),
            checksum_source="the test",
        )
        monkeypatch.setitem(DATASETS, "dca1", replace(DATASETS["dca1"], files=(remote,)))
        yield s


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["data", "list"]) == 0
    assert run_cli(["data", "fetch", "--list"]) == 0
    text = capsys.readouterr().out
    for name in DATASETS:
        assert name in text


def test_fetch_downloads_verifies_converts_and_is_not_repeated(server: FileServer, tmp_path: Path) -> None:
    out = tmp_path / "dca1"
    assert run_cli(["data", "fetch", "dca1", "--out", out]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["1.png", "2.png", "3.png"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["1.png", "2.png", "3.png"]
    record = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert record["dataset"] == "dca1" and record["complete"] and record["counts"] == {".": 3}
    source = record["sources"][0]
    assert source["verified"] and source["sha256"] == source["expected_sha256"]
    assert "Cervantes-Sanchez" in record["citation"]
    assert (out / ".downloads" / "DB_Angiograms_134.zip").exists() and not (out / ".raw").exists()
    assert len(server.log) == 1
    assert run_cli(["data", "fetch", "dca1", "--out", out]) == 0  # complete: nothing is fetched again
    assert len(server.log) == 1
    (out / "masks" / "2.png").unlink()
    assert run_cli(["data", "fetch", "dca1", "--out", out, "--force"]) == 0  # cached archive, re-converted
    assert len(server.log) == 1 and (out / "masks" / "2.png").exists()


def test_fetch_checksum_mismatch_fails_and_converts_nothing(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = replace(DATASETS["dca1"].files[0], sha256="f" * 64)
    monkeypatch.setitem(DATASETS, "dca1", replace(DATASETS["dca1"], files=(bad,)))
    out = tmp_path / "dca1"
    assert run_cli(["data", "fetch", "dca1", "--out", out]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (out / "images").exists() and not (out / ".downloads" / "DB_Angiograms_134.zip").exists()


def test_fetch_without_known_checksum_records_the_digest(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = replace(DATASETS["dca1"].files[0], sha256=None)
    monkeypatch.setitem(DATASETS, "dca1", replace(DATASETS["dca1"], files=(unknown,)))
    out = tmp_path / "dca1"
    assert run_cli(["data", "fetch", "dca1", "--out", out]) == 0
    assert "no published checksum" in capsys.readouterr().err
    source = json.loads((out / "dataset.json").read_text(encoding="utf-8"))["sources"][0]
    expected = hashlib.sha256(server.files["DB_Angiograms_134.zip"]).hexdigest()
    assert source["sha256"] == expected and source["verified"] is False and source["expected_sha256"] is None


def test_fetch_local_archive_checked_against_registry(
    server: FileServer, dca1_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["data", "fetch", "dca1", "--archive", dca1_zip, "--out", tmp_path / "a"]) == 0
    assert (
        json.loads((tmp_path / "a" / "dataset.json").read_text(encoding="utf-8"))["sources"][0]["verified"]
        is True
    )
    other = zip_folder(make_dca1(tmp_path / "other", n=1), tmp_path / "other.zip")
    assert run_cli(["data", "fetch", "dca1", "--archive", other, "--out", tmp_path / "b"]) == 2
    assert "use --no-verify" in capsys.readouterr().err
    assert run_cli(["data", "fetch", "dca1", "--archive", other, "--out", tmp_path / "b", "--no-verify"]) == 0
    assert server.log == []  # a local archive never touches the network


def test_fetch_drive_needs_an_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["data", "fetch", "drive", "--out", tmp_path / "drive"]) == 2
    assert "can't be downloaded automatically" in capsys.readouterr().err
    archive = zip_folder(make_drive(tmp_path / "src"), tmp_path / "DRIVE.zip")
    assert run_cli(["data", "fetch", "drive", "--archive", archive, "--out", tmp_path / "drive"]) == 0
    assert sorted(p.name for p in (tmp_path / "drive" / "train").iterdir()) == ["fov", "images", "masks"]
    record = json.loads((tmp_path / "drive" / "dataset.json").read_text(encoding="utf-8"))
    assert record["sources"][0]["expected_sha256"] is None and record["channel"] == "green"
    # an already extracted folder works too (nothing to verify, nothing unpacked)
    capsys.readouterr()
    assert run_cli(["data", "fetch", "drive", "--archive", tmp_path / "src", "--out", tmp_path / "d2"]) == 0
    assert "is a folder: no checksum to verify" in capsys.readouterr().err
    assert (tmp_path / "d2" / "test" / "masks" / "test_01.png").exists() and not (
        tmp_path / "d2" / ".raw"
    ).exists()


def test_fetch_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["data", "fetch", "cadica", "--out", tmp_path]) == 2
    assert "unknown dataset 'cadica'; known datasets: arcade, dca1, drive, xcad" in capsys.readouterr().err
    assert run_cli(["data", "fetch", "dca1"]) == 2


def test_convert_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_dca1(tmp_path / "src", n=2)
    assert run_cli(["data", "convert", "dca1", d, "--out", tmp_path / "out"]) == 0
    assert "converted 2 item(s)" in capsys.readouterr().out
    (d / "3.pgm").write_bytes((d / "1.pgm").read_bytes())  # an image without a mask
    assert run_cli(["data", "convert", "dca1", d, "--out", tmp_path / "out"]) == 1
    captured = capsys.readouterr()
    assert "kept 2 from an earlier run" in captured.out and "1 input(s) failed" in captured.err
    (tmp_path / "d.rar").write_bytes(b"Rar!")
    assert run_cli(["data", "convert", "dca1", tmp_path / "d.rar", "--out", tmp_path / "o"]) == 2
    assert "extract it with your own tool" in capsys.readouterr().err
