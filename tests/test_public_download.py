"""The resumable downloader and the archive unpacker, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from angioseg.errors import DataError
from angioseg.public.archive import DONE_MARKER, extract
from angioseg.public.download import download, parse_content_range
from public_fixtures import FileServer, serve

DATA = np.random.default_rng(7).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> FileServer:  # type: ignore[misc]
    with serve() as s:
        s.files["data.zip"] = DATA
        yield s


def test_download_whole_file_verified(server: FileServer, tmp_path: Path) -> None:
    res = download(server.url("data.zip"), tmp_path / "d.zip", SHA, len(DATA), progress=False)
    assert (tmp_path / "d.zip").read_bytes() == DATA
    assert res.verified and res.sha256 == SHA and res.fetched == len(DATA) and res.resumed_from == 0
    assert not (tmp_path / "d.zip.part").exists()
    assert server.log == [("data.zip", None)]


def test_interrupted_download_resumes_with_range(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "d.zip.part").write_bytes(DATA[:4000])  # what an earlier, interrupted run left
    res = download(server.url("data.zip"), tmp_path / "d.zip", SHA, progress=False)
    assert server.log == [("data.zip", "bytes=4000-")]
    assert (tmp_path / "d.zip").read_bytes() == DATA
    assert res.resumed_from == 4000 and res.fetched == len(DATA) - 4000


def test_dropped_connection_is_resumed_within_the_call(server: FileServer, tmp_path: Path) -> None:
    server.drop_after["data.zip"] = 3000
    res = download(server.url("data.zip"), tmp_path / "d.zip", SHA, retries=2, backoff=0, progress=False)
    assert server.log == [("data.zip", None), ("data.zip", "bytes=3000-")]
    assert (tmp_path / "d.zip").read_bytes() == DATA and res.fetched == len(DATA)


def test_dropped_connection_without_retries_keeps_the_part_for_the_next_run(
    server: FileServer, tmp_path: Path
) -> None:
    server.drop_after["data.zip"] = 2500
    with pytest.raises(DataError, match=r"2500 bytes are kept in .*d\.zip\.part.*run the command again"):
        download(server.url("data.zip"), tmp_path / "d.zip", SHA, retries=0, progress=False)
    assert (tmp_path / "d.zip.part").stat().st_size == 2500 and not (tmp_path / "d.zip").exists()
    download(server.url("data.zip"), tmp_path / "d.zip", SHA, progress=False)  # the user reruns
    assert server.log[-1] == ("data.zip", "bytes=2500-")
    assert (tmp_path / "d.zip").read_bytes() == DATA


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    server.ignore_range = True
    (tmp_path / "d.zip.part").write_bytes(b"x" * 1234)  # would corrupt the file if appended to
    download(server.url("data.zip"), tmp_path / "d.zip", SHA, progress=False)
    assert server.log == [("data.zip", "bytes=1234-")]
    assert (tmp_path / "d.zip").read_bytes() == DATA


def test_complete_part_not_yet_renamed_is_finished_via_416(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "d.zip.part").write_bytes(DATA)
    res = download(server.url("data.zip"), tmp_path / "d.zip", SHA, progress=False)
    assert server.log == [("data.zip", f"bytes={len(DATA)}-")] and res.fetched == 0
    assert (tmp_path / "d.zip").read_bytes() == DATA


def test_checksum_mismatch_deletes_the_download(server: FileServer, tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(DataError, match=f"checksum mismatch.*SHA-256 is {SHA}, expected {wrong}"):
        download(server.url("data.zip"), tmp_path / "d.zip", wrong, progress=False)
    assert not (tmp_path / "d.zip").exists() and not (tmp_path / "d.zip.part").exists()


def test_existing_file_is_checked_not_downloaded(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "d.zip").write_bytes(DATA)
    res = download(server.url("data.zip"), tmp_path / "d.zip", SHA, progress=False)
    assert res.verified and res.fetched == 0 and server.log == []
    (tmp_path / "e.zip").write_bytes(b"corrupt")
    with pytest.raises(DataError, match=r"e\.zip: exists but its SHA-256 is .*delete it"):
        download(server.url("data.zip"), tmp_path / "e.zip", SHA, progress=False)


def test_unknown_checksum_is_recorded_not_verified(server: FileServer, tmp_path: Path) -> None:
    res = download(server.url("data.zip"), tmp_path / "d.zip", None, progress=False)
    assert res.sha256 == SHA and not res.verified


def test_http_errors_and_mirrors(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.zip: download failed: HTTP 404"):
        download(server.url("missing.zip"), tmp_path / "d.zip", SHA, progress=False)
    res = download(
        [server.url("missing.zip"), server.url("data.zip")], tmp_path / "d.zip", SHA, progress=False
    )
    assert res.url == server.url("data.zip") and (tmp_path / "d.zip").read_bytes() == DATA


def test_size_announced_by_server_must_match_registry(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="server offers 10000 bytes, but the registry expects 999"):
        download(server.url("data.zip"), tmp_path / "d.zip", SHA, size=999, progress=False)


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="cannot reach the server"):
        download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", retries=1, backoff=0, progress=False)


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 100-199/1000") == (100, 1000)
    assert parse_content_range("bytes */1000") == (None, 1000)
    assert parse_content_range("bytes 0-9/*") == (0, None)
    assert parse_content_range(None) == (None, None)


# --- archives --------------------------------------------------------------------------------------


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("ok/a.txt", "a")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match=r"refusing to extract '\.\./evil\.txt'"):
        extract(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_tar_link_pointing_outside_is_refused(tmp_path: Path) -> None:
    arc = tmp_path / "d.tar"
    with tarfile.open(arc, "w") as tf:
        link = tarfile.TarInfo("top/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tf.addfile(link)
    with pytest.raises(DataError, match="would land outside the target folder"):
        extract(arc, tmp_path / "raw")


def test_tar_gz_extracts_once(tmp_path: Path) -> None:
    arc = tmp_path / "d.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        info = tarfile.TarInfo("top/a.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    dest = extract(arc, tmp_path / "raw")
    assert (dest / "top" / "a.txt").read_text(encoding="utf-8") == "hello" and (dest / DONE_MARKER).exists()
    (dest / "top" / "a.txt").write_text("changed")
    extract(arc, tmp_path / "raw")  # complete: not redone
    assert (dest / "top" / "a.txt").read_text(encoding="utf-8") == "changed"


def test_unfinished_extraction_is_redone(tmp_path: Path) -> None:
    arc = tmp_path / "d.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("a.txt", "a")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "leftover.txt").write_text("half-written")
    extract(arc, tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [DONE_MARKER, "a.txt"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.rar", b"Rar!\x1a\x07\x00", "RAR archives can't be unpacked here.*extract it with your own tool"),
        ("d.7z", b"7z\xbc\xaf", "7z archives can't be unpacked here"),
        ("d.zip", b"PK\x03\x04 truncated", "not a valid zip archive"),
        ("d.txt", b"hello", "not a zip or tar archive"),
    ],
)
def test_bad_archives_are_clear_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        extract(tmp_path / name, tmp_path / "raw")
