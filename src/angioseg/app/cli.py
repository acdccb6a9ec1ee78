"""``angioseg serve``: start the local web app (registered on the main app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from angioseg.cli import app, out_console
from angioseg.errors import AngiosegError

DEFAULT_MODEL = "builtin:xca_vessels"


def model_names(models: list[str]) -> dict[str, str]:
    """Names shown in the page for ``--model`` values (run folders, checkpoints, builtin:NAME)."""
    out: dict[str, str] = {}
    for m in models:
        name = m if m.startswith("builtin:") else Path(m).name or m
        out[name if name not in out else m] = m
    return out


@app.command()
def serve(
    data: Annotated[Path, typer.Option(help="Data folder: only files inside it can be opened.")] = Path("."),
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="Model to offer (run folder, checkpoint or builtin:NAME); repeatable. "
            "Default: the bundled segmenter builtin:xca_vessels."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; the default serves this machine only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload in MB.")] = 200.0,
) -> None:
    """Start the local web app: open a cine or image, play it with the vessel overlay, click two points
    on a vessel for QCA, download masks, CSV, JSON and the report. Works offline."""
    import uvicorn

    from angioseg.app.api import create_app
    from angioseg.app.server import LOOPBACK_HOSTS, Settings
    from angioseg.zoo import builtin_path, is_builtin

    models = model_names(model or [DEFAULT_MODEL])  # a first run can segment with no training
    for m in models.values():  # a wrong --model is an error now, not when the page asks for it
        if is_builtin(m):
            builtin_path(m)  # an unknown name: CheckpointError listing the bundled ones
        elif not Path(m).exists():
            raise AngiosegError(f"{m}: --model does not exist")
    loopback = host in ("127.0.0.1", "localhost", "::1")
    hosts = LOOPBACK_HOSTS if loopback else ("*",)
    web = create_app(Settings(data.resolve(), models, max_upload_mb, hosts))
    if not loopback:
        out_console.print(f"warning: binding {host}: other machines on the network can reach the app")
    out_console.print(
        f"angioseg app on http://{host}:{port}/ (data folder {data.resolve()}); Ctrl-C stops it"
    )
    uvicorn.run(web, host=host, port=port, log_level="warning")
