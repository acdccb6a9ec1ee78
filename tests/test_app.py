"""The web app's API through FastAPI's TestClient: open, segment with progress, QCA, downloads,
path confinement, upload limit and readable errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
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
        base_url="http://127.0.0.1:8765",
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


def test_mask_download_is_the_mask_that_was_measured(client: TestClient, data_dir) -> None:
    import io

    from PIL import Image
    from scipy import ndimage

    _, ph = data_dir
    info = _open(client)
    study = client.app.state.angioseg.studies[info["id"]]  # type: ignore[attr-defined]
    wider = ndimage.binary_dilation(study.masks["mask file"][1], iterations=2)
    study.masks["tiny"] = {1: wider}  # as if the model had segmented frame 1
    req = {"id": info["id"], "frame": 1, "source": "tiny", "proximal": ph.proximal, "distal": ph.distal}
    assert client.post("/api/qca", json=req).status_code == 200
    d = client.get(f"/api/download/{info['id']}/mask")
    assert d.status_code == 200
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(d.content))) > 0, wider)


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


def test_other_host_names_are_refused_against_dns_rebinding(client: TestClient) -> None:
    """A page of another site that rebinds its name to 127.0.0.1 reaches the server with its own
    Host header: it must not be able to list or read the data folder."""
    r = client.get("/api/files", headers={"host": "attacker.example:8765"})
    assert r.status_code == 400 and "cine.dcm" not in r.text
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765"):
        assert client.get("/api/files", headers={"host": host}).status_code == 200, host


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


def test_upload_with_a_bad_name_or_length_is_a_readable_400(client: TestClient) -> None:
    for name in ("..", ".", ""):
        r = client.post(f"/api/upload?name={name}", content=b"x")
        assert r.status_code == 400 and "file name" in r.json()["error"], (name, r.text)
    r = client.post("/api/upload?name=a.png", content=b"x", headers={"content-length": "abc"})
    assert r.status_code == 400 and "Content-Length" in r.json()["error"]


def test_upload_small_file(client: TestClient, data_dir) -> None:
    root, _ = data_dir
    r = client.post("/api/upload?name=cine.dcm", content=(root / "cine.dcm").read_bytes())
    assert r.status_code == 200 and r.json()["frames"] == 3


def test_serve_refuses_an_unknown_bundled_model_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(a))
    assert run_cli(["serve", "--data", tmp_path, "--model", "builtin:nope"]) == 2 and not started
    assert "builtin:xca_vessels" in capsys.readouterr().err.replace("\n", " ")
    assert run_cli(["serve", "--data", tmp_path, "--model", "builtin:xca_vessels"]) == 0 and started


def test_serve_offers_the_bundled_segmenter_when_no_model_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    apps: list = []
    monkeypatch.setattr(uvicorn, "run", lambda web, **k: apps.append(web))
    assert run_cli(["serve", "--data", tmp_path]) == 0
    assert "builtin:xca_vessels" in apps[0].state.angioseg.settings.models


def test_serve_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    assert run_cli(["serve", "--data", tmp_path / "nope"]) == 2
