"""QCA outputs: JSON (numbers, calibration, settings), CSV (the profile), PNG and HTML reports.

Every file is written atomically. The PNG shows the frame with the vessel mask, the analysed path,
the MLD and the lesion; beside it the diameter profile with the reference line. The HTML page
embeds that PNG (no external resource) above a table of the numbers.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.qca.pipeline import QCAResult
from angioseg.utils import atomic_open, atomic_path, write_json

PROFILE_COLUMNS = (
    "index",
    "arc_px",
    "arc_mm",
    "diameter_px",
    "diameter_mm",
    "reference_px",
    "reference_mm",
    "x",
    "y",
    "valid",
    "healthy",
)


def write_profile_csv(path: str | Path, result: QCAResult) -> None:
    with atomic_open(path, newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(PROFILE_COLUMNS))
        w.writeheader()
        for row in result.profile_rows():
            w.writerow(
                {k: "" if v is None else (f"{v:.5g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def report_figure(result: QCAResult, image: np.ndarray, mask: np.ndarray) -> bytes:
    """PNG bytes of the two-panel report figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from angioseg.predict import overlay

    st, pr, cal = result.stenosis, result.profile, result.calibration
    scale = cal.mm_per_px or 1.0
    unit = cal.unit
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1, 1.3]})
    a0.imshow(overlay(image, mask, alpha=0.3))
    a0.plot(pr.points[:, 1], pr.points[:, 0], "-", color="#00e0ff", lw=1.2, label="analysed path")
    les = (pr.arc >= st.lesion_start) & (pr.arc <= st.lesion_end)
    a0.plot(pr.points[les, 1], pr.points[les, 0], "-", color="yellow", lw=2.5, label="lesion")
    y, x = pr.points[st.mld_index]
    a0.plot([x], [y], "o", mfc="none", mec="yellow", ms=12, mew=1.5)
    a0.plot(*result.proximal, "^", color="lime", ms=7, label="proximal")
    a0.plot(*result.distal, "v", color="orange", ms=7, label="distal")
    a0.set_axis_off()
    a0.legend(loc="lower left", fontsize=7, framealpha=0.6)
    arc = (pr.arc - pr.arc[0]) * scale
    a1.plot(arc, pr.raw * scale, color="0.75", lw=0.8, label="diameter (raw)")
    a1.plot(arc, pr.diameter * scale, color="C0", lw=1.6, label="diameter")
    a1.plot(arc, st.reference * scale, "--", color="C3", lw=1.3, label=f"reference ({st.reference_method})")
    a1.axvspan(
        (st.lesion_start - pr.arc[0]) * scale, (st.lesion_end - pr.arc[0]) * scale, color="gold", alpha=0.25
    )
    a1.plot([arc[st.mld_index]], [st.mld * scale], "o", color="k")
    a1.set_xlabel(f"arc length from the proximal point ({unit})")
    a1.set_ylabel(f"diameter ({unit})")
    a1.set_ylim(
        0, max(float(np.percentile(pr.diameter[pr.valid], 98)), float(st.reference.max())) * scale * 1.25
    )
    a1.set_title(
        f"MLD {st.mld * scale:.2f} {unit}, RVD {st.rvd * scale:.2f} {unit}, %DS {st.ds_percent:.1f}, "
        f"%AS {st.as_percent:.1f}, lesion {st.lesion_length * scale:.2f} {unit}",
        fontsize=9,
    )
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def report_html(summaries: list[dict[str, Any]], png: bytes, title: str) -> str:
    """A self-contained HTML page: the figure (inline PNG) and one table row per result key."""
    rows = []
    for i, s in enumerate(summaries):
        rows.append(f"<h2>result {i + 1}</h2><table>")
        rows += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in s.items()]
        rows.append("</table>")
    img = base64.b64encode(png).decode()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + "</title><style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "td,th{border-bottom:1px solid #ddd;font-size:14px}</style></head><body><h1>"
        + html.escape(title)
        + f"</h1><img alt='QCA report' style='max-width:100%' src='data:image/png;base64,{img}'>"
        + "".join(rows)
        + "</body></html>\n"
    )


def write_report(
    out: str | Path, results: list[QCAResult], image: np.ndarray, mask: np.ndarray, stem: str = "qca"
) -> dict[str, Path]:
    """Write ``STEM.json``, ``STEM_profile.csv`` (the first result's), ``STEM.png`` and ``STEM.html``."""
    out = Path(out)
    summaries = [r.summary() for r in results]
    paths = {
        "json": out / f"{stem}.json",
        "csv": out / f"{stem}_profile.csv",
        "png": out / f"{stem}.png",
        "html": out / f"{stem}.html",
    }
    write_json(paths["json"], {"results": summaries, "profile": results[0].profile_rows()})
    write_profile_csv(paths["csv"], results[0])
    png = report_figure(results[0], image, mask)
    with atomic_path(paths["png"]) as tmp:
        tmp.write_bytes(png)
    with atomic_open(paths["html"]) as fh:
        fh.write(report_html(summaries, png, f"QCA: {Path(str(summaries[0].get('file', stem))).name}"))
    return paths
