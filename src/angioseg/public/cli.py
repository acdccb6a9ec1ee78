"""``angioseg data list | fetch | convert``: public datasets into angioseg's images/ + masks/ layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from angioseg.cli import app, console, exit_on_failures, out_console

data_app = typer.Typer(
    help=(
        "Public X-ray coronary datasets (ARCADE, DCA1, XCAD) and DRIVE: list them, download and "
        "convert them (fetch), or convert a local copy (convert) into images/ + masks/ folders."
    ),
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

TaskOpt = Annotated[
    str,
    typer.Option(help="ARCADE: which task to convert: syntax (vessel masks), stenosis, or all."),
]
SegmentsOpt = Annotated[
    bool,
    typer.Option(
        "--segments",
        help="ARCADE: also write SYNTAX segment label maps (pixel = segment id 1-25) to segments/.",
    ),
]
ChannelOpt = Annotated[
    str,
    typer.Option(help="DRIVE: green (the green channel as 8-bit gray, as vessel papers use it) or rgb."),
]
KeepRawOpt = Annotated[
    bool, typer.Option("--keep-raw", help="Keep the unpacked archive in OUT/.raw after converting.")
]


def _options(task: str, segments: bool, channel: str, overwrite: bool = False):  # type: ignore[no-untyped-def]
    from angioseg.public.common import ConvertOptions

    return ConvertOptions(task=task.lower(), segments=segments, channel=channel.lower(), overwrite=overwrite)


def _summary(result, out: Path) -> None:  # type: ignore[no-untyped-def]
    for folder, n in sorted(result.counts.items()):
        out_console.print(
            f"  {out if folder == '.' else out / folder}: {n} item(s)", highlight=False, soft_wrap=True
        )
    out_console.print(
        f"converted {result.written} item(s), kept {result.skipped} from an earlier run; record: {out / 'dataset.json'}",
        highlight=False,
        soft_wrap=True,
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    exit_on_failures(result.failed)


def _print_registry() -> None:
    from rich.table import Table

    from angioseg.public.registry import DATASETS

    t = Table(title="public datasets (angioseg data fetch NAME --out DIR)")
    for col in ("name", "what", "licence / terms", "download"):
        t.add_column(col, overflow="fold")
    for info in DATASETS.values():
        if not info.downloadable:
            how = "manual: --archive FILE"
        elif all(f.sha256 for f in info.files):
            how = f"automatic, SHA-256 from {info.files[0].checksum_source}"
        else:
            how = "automatic, no published checksum (recorded, not verified)"
        t.add_row(info.name, info.title, info.licence, how)
    out_console.print(t)


@data_app.command("list")
def list_datasets() -> None:
    """Show the datasets that fetch knows: what they are, their terms, how they are downloaded."""
    _print_registry()


@data_app.command()
def fetch(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Dataset name: arcade, dca1, xcad or drive.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (images/, masks/, dataset.json).")
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            help="Use this local archive (or extracted folder) instead of downloading; needed for DRIVE."
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the known datasets and exit.")] = False,
    cache: Annotated[
        Path | None,
        typer.Option(help="Folder for downloaded archives (default OUT/.downloads); reruns reuse it."),
    ] = None,
    task: TaskOpt = "all",
    segments: SegmentsOpt = False,
    channel: ChannelOpt = "green",
    keep_raw: KeepRawOpt = False,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify", help="Convert a local --archive even if its checksum differs from the registry's."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Convert again although OUT says it is complete.")
    ] = False,
) -> None:
    """Download a public dataset (resumable, checksummed) and convert it into OUT.

    An interrupted download resumes where it stopped when the command is run again; a file whose
    SHA-256 differs from the published one is deleted and reported. Licence, citation, URL and
    checksums are written to OUT/dataset.json. ARCADE gives OUT/{syntax,stenosis}/{train,val,test}/,
    DCA1 OUT/images + OUT/masks, DRIVE OUT/{train,test}/ with fov/, XCAD mirrors its folders.
    """
    if list_:
        _print_registry()
        return
    if name is None or out is None:
        from angioseg.errors import AngiosegError

        raise AngiosegError("give a dataset NAME and --out DIR (or --list to see the datasets)")
    from angioseg.public.fetch import fetch_dataset

    res = fetch_dataset(
        name,
        out,
        archive=archive,
        cache=cache,
        options=_options(task, segments, channel),
        keep_raw=keep_raw,
        verify=not no_verify,
        force=force,
        announce=lambda s: console.print(s, markup=False, highlight=False, soft_wrap=True),
    )
    if res.conversion is None:
        out_console.print(f"{res.info.name}: already complete in {out}", highlight=False, soft_wrap=True)
        return
    out_console.print(f"{res.info.name} terms: {res.info.licence}", highlight=False, soft_wrap=True)
    out_console.print(f"please cite: {res.info.citation}", highlight=False, soft_wrap=True)
    _summary(res.conversion, out)


@data_app.command("convert")
def convert_cmd(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="Source format: arcade, dca1, xcad or drive.")],
    src: Annotated[
        Path,
        typer.Argument(
            metavar="SRC", help="The dataset as downloaded: a folder or a .zip/.tar(.gz) archive."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (images/, masks/, dataset.json).")],
    task: TaskOpt = "all",
    segments: SegmentsOpt = False,
    channel: ChannelOpt = "green",
    keep_raw: KeepRawOpt = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Rewrite outputs that exist (default: keep them and resume).")
    ] = False,
) -> None:
    """Convert a local copy of a public dataset into angioseg's layout (no download, no checksum).

    Images become PNG in images/, masks {0,255} PNG in masks/ with the same stems (DRIVE also fov/).
    Outputs are written atomically and kept on a rerun, so an interrupted conversion resumes; bad
    inputs are listed at the end and the rest is written.
    """
    from angioseg.public.convert import convert

    result = convert(fmt, src, out, _options(task, segments, channel, overwrite), keep_raw=keep_raw)
    _summary(result, out)
