"""The web app's API through FastAPI's TestClient: open, segment with progress, QCA, downloads,
path confinement, upload limit and readable errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from angioseg.app.api import create_app
from angioseg.app.server import Settings
from tests.conftest import run_cli
from tests.qca_fixtures import write_phantom_cine


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("app")
    root = base / "data"
    ph = write_phantom_cine(root)
    (root / "broken.png").write_bytes(b"not a png at all")
    (base / "secret.png").write_bytes(b"outside")
    (root / "link.png").symlink_to(base / "secret.png")
    return root, ph


@pytest.fixture
def client(data_dir, tiny_model: Path) -> TestClient:
    root, _ = data_dir
    return TestClient(
        create_app(Settings(root, {"tiny": str(tiny_model)}, max_upload_mb=1.0)),
        raise_server_exceptions=False,
    )


def _open(client: TestClient) -> dict:
    r = client.post("/api/open", json={"path": "cine.dcm"})
    assert r.status_code == 200, r.text
    return r.json()


def test_open_and_qca_roundtrip(client: TestClient, data_dir) -> None:
    _, ph = data_dir
    files = client.get("/api/files").json()
    assert "cine.dcm" in files["files"] and "cine_mask.npy" not in files["files"]
    info = _open(client)
    assert info["frames"] == 3 and info["spacing_source"] == "PixelSpacing"
    assert info["mask_sources"][:2] == ["mask file", "tiny"]
    assert client.get(f"/api/frame/{info['id']}/2.png").headers["content-type"] == "image/png"
    r = client.post(
        "/api/qca",
        json={
            "id": info["id"],
            "frame": 0,
            "source": "mask file",
            "proximal": ph.proximal,
            "distal": ph.distal,
        },
    )
    assert r.status_code == 200, r.text
    s = r.json()["summary"]
    assert abs(s["ds_percent"] - ph.truth["ds_percent"]) <= 5
    assert s["calibration"]["method"] == "PixelSpacing" and s["unit"] == "mm"
    for kind, ctype in (("json", "json"), ("csv", "csv"), ("png", "png"), ("html", "html"), ("mask", "png")):
        d = client.get(f"/api/download/{info['id']}/{kind}")
        assert d.status_code == 200 and ctype in d.headers["content-type"], (kind, d.text[:200])
    dumped = json.loads(client.get(f"/api/download/{info['id']}/json").content)
    assert dumped["results"][0]["ds_percent"] == pytest.approx(s["ds_percent"])


def test_segment_with_progress(client: TestClient) -> None:
    info = _open(client)
    r = client.post("/api/segment", json={"id": info["id"], "source": "tiny"})
    assert r.status_code == 200 and r.json()["total"] == 3
    for _ in range(600):
        job = client.get(f"/api/progress/{info['id']}").json()
        if job["state"] != "running":
            break
        time.sleep(0.1)
    assert job["state"] == "done" and job["done"] == 3
    m = client.get(f"/api/mask/{info['id']}/1.png", params={"source": "tiny"})
    assert m.status_code == 200 and m.content[:4] == b"\x89PNG"


def test_paths_outside_the_data_folder_are_refused(client: TestClient) -> None:
    for path in ("../secret.png", "/etc/passwd", "link.png"):
        r = client.post("/api/open", json={"path": path})
        assert r.status_code == 400 and "outside the data folder" in r.json()["error"]


def test_readable_errors_and_upload_limit(client: TestClient) -> None:
    r = client.post("/api/open", json={"path": "broken.png"})
    assert r.status_code == 400 and "broken.png" in r.json()["error"] and "Traceback" not in r.text
    r = client.post("/api/upload?name=big.png", content=b"0" * (1024 * 1024 + 10))
    assert r.status_code == 413 and "limit is 1 MB" in r.json()["error"]
    info = _open(client)
    r = client.post(
        "/api/qca",
        json={"id": info["id"], "frame": 0, "source": "tiny", "proximal": [1, 1], "distal": [5, 5]},
    )
    assert r.status_code == 400 and "segment first" in r.json()["error"]
    r = client.get("/api/download/nope/json")
    assert r.status_code == 400 and "open a file first" in r.json()["error"]


def test_upload_small_file(client: TestClient, data_dir) -> None:
    root, _ = data_dir
    r = client.post("/api/upload?name=cine.dcm", content=(root / "cine.dcm").read_bytes())
    assert r.status_code == 200 and r.json()["frames"] == 3


def test_serve_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    assert run_cli(["serve", "--data", tmp_path / "nope"]) == 2
