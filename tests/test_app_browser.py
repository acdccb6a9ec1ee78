"""The web app in a real browser: Playwright driving Debian's chromium (/usr/bin/chromium).

Loads the phantom cine, uses its mask file, clicks the proximal and distal points on the canvas and
checks the %DS shown against the phantom's truth; saves a screenshot (to $ANGIOSEG_SCREENSHOT when
set, as docs/qca_app.png was made). Skips, saying why, where chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("ANGIOSEG_CHROMIUM", "/usr/bin/chromium"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_browser_qca_on_phantom_cine(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no chromium at {CHROMIUM}: install it with 'apt-get install -y chromium' to run the browser test"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    import uvicorn

    from angioseg.app.api import create_app
    from angioseg.app.server import Settings
    from tests.qca_fixtures import write_phantom_cine

    ph = write_phantom_cine(tmp_path / "data")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(tmp_path / "data")), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.querySelectorAll('#file option').length > 0")
            page.select_option("#file", "cine.dcm")
            page.click("#open")
            page.wait_for_function("document.getElementById('info').textContent.includes('3 frame')")
            assert page.input_value("#source") == "mask file"
            page.click("#segment")
            page.wait_for_function("document.getElementById('progress').textContent === 'segmented'")
            box = page.locator("#canvas").bounding_box()
            assert box is not None
            scale = box["width"] / 256
            for x, y in (ph.proximal, ph.distal):
                page.mouse.click(box["x"] + x * scale, box["y"] + y * scale)
            page.wait_for_selector("#v-pctDS, #error:not([hidden])", timeout=120_000)
            assert page.is_hidden("#error"), page.text_content("#error")
            shown = float(page.text_content("#v-pctDS") or "nan")
            assert abs(shown - ph.truth["ds_percent"]) <= 5, (shown, ph.truth)
            assert page.is_hidden("#error")
            page.wait_for_timeout(300)
            shot = Path(os.environ.get("ANGIOSEG_SCREENSHOT", tmp_path / "app.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            # a path outside the data folder gives a readable message in the page, not a trace
            page.evaluate("document.getElementById('file').innerHTML = '<option>../secret.dcm</option>'")
            page.click("#open")
            page.wait_for_selector("#error:not([hidden])")
            assert "outside the data folder" in (page.text_content("#error") or "")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_file_names_are_shown_as_text_not_markup(tmp_path: Path) -> None:
    """A file in the data folder named with markup must be listed verbatim, never run as script."""
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: install it with 'apt-get install -y chromium'")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import uvicorn

    from angioseg.app.api import create_app
    from angioseg.app.server import Settings
    from tests.qca_fixtures import write_phantom_cine

    write_phantom_cine(tmp_path / "data")
    evil = "x<img src=1 onerror=window.pwned=1>.dcm"
    (tmp_path / "data" / evil).write_bytes((tmp_path / "data" / "cine.dcm").read_bytes())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(tmp_path / "data")), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.querySelectorAll('#file option').length > 1")
            names = page.eval_on_selector_all("#file option", "os => os.map((o) => o.value)")
            pwned = page.evaluate("window.pwned === 1")
            browser.close()
    finally:
        server.should_exit = True
    assert evil in names and not pwned
