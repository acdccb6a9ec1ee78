"""``angioseg qca``: quantitative coronary analysis of one frame (registered on the main app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from angioseg.cli import app, out_console
from angioseg.errors import AngiosegError


def parse_numbers(text: str | None, n: int, option: str) -> tuple[float, ...] | None:
    """``"12,34"`` -> (12.0, 34.0); a clear error naming the option otherwise."""
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.replace(";", ",").split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise AngiosegError(f"{option} expects {n} comma-separated numbers (pixels, x first), got {text!r}")
    return vals


@app.command()
def qca(
    image: Annotated[Path, typer.Argument(help="Image or DICOM cine run.")],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: STEM.json, STEM_profile.csv, .png, .html.")
    ],
    mask: Annotated[
        Path | None, typer.Option(help="Vessel mask file (same size; one frame or one per frame).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Run folder or checkpoint to segment the frame with (instead of --mask)."),
    ] = None,
    frame: Annotated[
        str, typer.Option(help="'auto' (largest opacified vessel area: end diastole) or a frame number.")
    ] = "auto",
    proximal: Annotated[str | None, typer.Option(help="Proximal point X,Y in pixels.")] = None,
    distal: Annotated[str | None, typer.Option(help="Distal point X,Y in pixels.")] = None,
    spacing: Annotated[
        float | None, typer.Option(help="mm per pixel, overriding every other calibration.")
    ] = None,
    catheter: Annotated[
        str | None, typer.Option(help="Catheter calibration: French size, e.g. 6F (2.0 mm) or 5F (1.67 mm).")
    ] = None,
    catheter_points: Annotated[
        str | None, typer.Option(help="Two points X0,Y0,X1,Y1 along the catheter (with --catheter).")
    ] = None,
    reference: Annotated[str, typer.Option(help="interpolated (PS3.17 T.4 reference line) or mean-ends.")] = (
        "interpolated"
    ),
    method: Annotated[
        str, typer.Option(help="Diameter: rays (perpendicular) or edt (2 x distance).")
    ] = "rays",
    lesion_fraction: Annotated[
        float, typer.Option(help="Lesion = extent more than this fraction below the reference.")
    ] = 0.2,
    top: Annotated[
        int, typer.Option(min=1, help="Without points: how many of the tightest branches to list.")
    ] = 5,
) -> None:
    """Quantitative coronary analysis: MLD, reference diameter, %DS, %AS and lesion length in mm.

    With --proximal and --distal the vessel segment between them is analysed; without, every branch
    of the mask is, and the tightest narrowings are listed. The calibration used (PixelSpacing,
    ImagerPixelSpacing/magnification, catheter, manual or pixels) is stated in every output.
    """
    from angioseg.qca.pipeline import QCAOptions, run_qca
    from angioseg.qca.report import write_report

    p = parse_numbers(proximal, 2, "--proximal")
    d = parse_numbers(distal, 2, "--distal")
    c = parse_numbers(catheter_points, 4, "--catheter-points")
    opts = QCAOptions(method=method, reference=reference, lesion_fraction=lesion_fraction)
    results, img, msk = run_qca(
        image,
        mask,
        model,
        frame,
        None if p is None else (p[0], p[1]),
        None if d is None else (d[0], d[1]),
        spacing,
        catheter,
        None if c is None else ((c[0], c[1]), (c[2], c[3])),
        opts,
        top,
    )
    paths = write_report(out, results, img, msk, stem=image.stem)
    cal, ctx = results[0].calibration, results[0].context
    out_console.print(
        f"frame {'-' if ctx.get('frame') is None else ctx['frame']} ({ctx.get('frame_rule')}); "
        f"calibration: {cal.method}"
        + (f", {cal.mm_per_px:.4f} mm/px" if cal.mm_per_px else " (lengths in px)")
    )
    for i, r in enumerate(results, 1):
        s = r.summary()
        u = s["unit"]
        out_console.print(
            f"{i}. MLD {s[f'mld_{u}']:.2f} {u}  RVD {s[f'rvd_{u}']:.2f} {u}  %DS {s['ds_percent']:.1f}  "
            f"%AS {s['as_percent']:.1f}  lesion {s[f'lesion_length_{u}']:.2f} {u}"
        )
    out_console.print(
        f"report: {paths['html']} (also {paths['json'].name}, {paths['csv'].name}, {paths['png'].name})"
    )
