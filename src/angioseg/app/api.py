"""FastAPI routes of ``angioseg serve`` (the state and helpers are in :mod:`angioseg.app.server`)."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from angioseg.app.server import (
    STATIC,
    AppState,
    Settings,
    list_files,
    mask_overlay_png,
    open_study,
    png_bytes,
    segment_job,
    study_info,
)
from angioseg.errors import AngiosegError


class OpenRequest(BaseModel):
    path: str


class SegmentRequest(BaseModel):
    id: str
    source: str


class QCARequest(BaseModel):
    id: str
    frame: int
    source: str
    proximal: tuple[float, float]
    distal: tuple[float, float]
    reference: str = "interpolated"
    spacing: float | None = None
    catheter: str | None = None
    catheter_points: tuple[tuple[float, float], tuple[float, float]] | None = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(settings: Settings) -> FastAPI:
    """The app for one data folder and a set of models."""
    if not settings.data_root.is_dir():
        raise AngiosegError(f"{settings.data_root}: the data folder does not exist")
    state = AppState(settings)
    app = FastAPI(title="angioseg", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.angioseg = state
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))

    @app.exception_handler(AngiosegError)
    async def _user_error(request: Request, exc: AngiosegError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({exc.__class__.__name__}: {exc}); the server log has details")

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        p = (STATIC / name).resolve()
        if p.parent != STATIC.resolve() or not p.is_file():
            raise AngiosegError(f"no static file {name!r}")
        return FileResponse(p)

    @app.get("/api/files")
    def files() -> dict[str, Any]:
        return {"root": str(state.root), "files": list_files(state.root), "models": sorted(settings.models)}

    @app.post("/api/open")
    def open_file(req: OpenRequest) -> dict[str, Any]:
        path = state.confined(req.path)
        if path.is_dir():
            raise AngiosegError(f"{req.path}: is a folder; choose an image or DICOM file in it")
        sid, study = open_study(state, path, req.path)
        return study_info(sid, study, state)

    @app.post("/api/upload")
    async def upload(request: Request) -> dict[str, Any]:
        limit = int(settings.max_upload_mb * 1024 * 1024)
        declared = request.headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            raise AngiosegError(f"upload: Content-Length must be a number of bytes, got {declared!r}")
        if declared is not None and int(declared) > limit:
            return _error(
                413,
                f"upload too large: {int(declared) / 1e6:.1f} MB, the limit is {settings.max_upload_mb:g} MB",
            )  # type: ignore[return-value]
        name = Path(request.query_params.get("name", "upload.png")).name
        if name in ("", ".", ".."):
            raise AngiosegError("upload: give the file name (?name=NAME.dcm); its suffix says how to read it")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                return _error(413, f"upload too large: the limit is {settings.max_upload_mb:g} MB")  # type: ignore[return-value]
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_bytes(bytes(data))
            sid, study = open_study(state, p, name)
        return study_info(sid, study, state)

    @app.get("/api/frame/{sid}/{index}.png")
    def frame_png(sid: str, index: int) -> Response:
        from angioseg.data.io import to_uint8

        study = state.study(sid)
        if not 0 <= index < len(study.frames):
            raise AngiosegError(f"frame {index} out of range (0..{len(study.frames) - 1})")
        return Response(png_bytes(to_uint8(study.frames[index].image)), media_type="image/png")

    @app.get("/api/mask/{sid}/{index}.png")
    def mask_png(sid: str, index: int, source: str, overlay: int = 1) -> Response:
        study = state.study(sid)
        masks = study.masks.get(source, {})
        if index not in masks:
            raise AngiosegError(f"no mask for frame {index} from {source!r} yet: segment first")
        m = masks[index]
        data = mask_overlay_png(m) if overlay else png_bytes(m.astype(np.uint8) * 255)
        return Response(data, media_type="image/png")

    @app.post("/api/segment")
    def segment(req: SegmentRequest) -> dict[str, Any]:
        study = state.study(req.id)
        if req.source == "mask file":
            return {"state": "done", "done": len(study.frames), "total": len(study.frames)}
        state.segmenter(req.source)  # unknown / broken model: an error now, not in the thread
        if study.job.get("state") == "running":
            raise AngiosegError("a segmentation of this file is already running")
        study.job = {"state": "running", "done": 0, "total": len(study.frames), "source": req.source}
        threading.Thread(target=segment_job, args=(state, study, req.source), daemon=True).start()
        return study.job

    @app.get("/api/progress/{sid}")
    def progress(sid: str) -> dict[str, Any]:
        return state.study(sid).job or {"state": "idle"}

    @app.post("/api/qca")
    def qca(req: QCARequest) -> dict[str, Any]:
        from angioseg.qca import QCAOptions, calibrate, qca_between

        study = state.study(req.id)
        mask = study.masks.get(req.source, {}).get(req.frame)
        if mask is None:
            raise AngiosegError(f"no mask for frame {req.frame} from {req.source!r}: segment first")
        fr = study.frames[req.frame]
        cal = calibrate(fr, req.spacing, req.catheter, req.catheter_points, fr.image)
        res = qca_between(mask, req.proximal, req.distal, cal, QCAOptions(reference=req.reference))
        res.context.update(file=study.name, frame=req.frame, mask_source=req.source)
        study.result, study.result_frame = res, req.frame
        return {"summary": res.summary(), "profile": res.profile_rows()}

    @app.get("/api/download/{sid}/{kind}")
    def download(sid: str, kind: str) -> Response:
        from angioseg.qca.report import report_figure, report_html

        study = state.study(sid)
        stem = Path(study.name).stem
        if kind == "mask":
            if study.result is not None:  # the mask that was measured
                src, i = str(study.result.context["mask_source"]), study.result_frame
            else:
                src = next((s for s, m in study.masks.items() if m), "")
                if not src:
                    raise AngiosegError("no mask yet: segment first")
                i = min(study.masks[src])
            return _attachment(
                png_bytes(study.masks[src][i].astype(np.uint8) * 255), f"{stem}_mask.png", "image/png"
            )
        res = study.result
        if res is None:
            raise AngiosegError("no QCA result yet: click two points on a vessel first")
        if kind == "json":
            import json

            from angioseg.utils import clean_for_json

            body = json.dumps(
                clean_for_json({"results": [res.summary()], "profile": res.profile_rows()}), indent=2
            )
            return _attachment(body.encode(), f"{stem}_qca.json", "application/json")
        if kind == "csv":
            import csv
            import io

            buf = io.StringIO()
            rows = res.profile_rows()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
            return _attachment(buf.getvalue().encode(), f"{stem}_profile.csv", "text/csv")
        fr = study.frames[study.result_frame]
        mask = study.masks[str(res.context["mask_source"])][study.result_frame]
        png = report_figure(res, fr.image, mask)
        if kind == "png":
            return _attachment(png, f"{stem}_qca.png", "image/png")
        if kind == "html":
            page = report_html([res.summary()], png, f"QCA: {study.name}")
            return _attachment(page.encode(), f"{stem}_qca.html", "text/html")
        raise AngiosegError(f"unknown download {kind!r}; one of mask, json, csv, png, html")

    return app


def _attachment(body: bytes, filename: str, media_type: str) -> Response:
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
