"""A tiny document model rendered twice: Markdown (images linked) and self-contained HTML (images embedded).

Blocks are headings, paragraphs, tables, images and code. Inline markup in text is limited to
```code```, ``**bold**`` and ``*italics*``, which both renderers understand.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INLINE = re.compile(r"(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)")


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("bullets", items))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("image", (Path(path), caption)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document, base: Path) -> str:
    """Markdown; images as paths relative to ``base`` (the folder the .md file is written to)."""
    out = [f"# {doc.title}", ""]
    for kind, value in doc.blocks:
        if kind == "heading":
            out += ["#" * value[0] + " " + value[1], ""]
        elif kind == "para":
            out += [value, ""]
        elif kind == "bullets":
            out += [f"- {item}" for item in value] + [""]
        elif kind == "table":
            header, rows = value
            out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
        elif kind == "image":
            path, caption = value
            out += [f"![{caption}]({path.relative_to(base).as_posix()})", "", f"*{caption}*", ""]
        elif kind == "code":
            out += ["```", value, "```", ""]
    return "\n".join(out)


def _inline_html(text: str) -> str:
    parts = []
    for piece in _INLINE.split(text):
        if piece.startswith("`") and piece.endswith("`") and len(piece) > 1:
            parts.append(f"<code>{html.escape(piece[1:-1])}</code>")
        elif piece.startswith("**") and piece.endswith("**") and len(piece) > 3:
            parts.append(f"<strong>{html.escape(piece[2:-2])}</strong>")
        elif piece.startswith("*") and piece.endswith("*") and len(piece) > 2:
            parts.append(f"<em>{html.escape(piece[1:-1])}</em>")
        else:
            parts.append(html.escape(piece))
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0 1.6em}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:0.9em;color:#555}code{background:#f4f4f4;padding:0 3px}
pre{background:#f4f4f4;padding:0.6em;overflow-x:auto}
"""


def to_html(doc: Document) -> str:
    """One self-contained HTML page: images embedded as base64 data URIs."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for kind, value in doc.blocks:
        if kind == "heading":
            out.append(f"<h{value[0]}>{_inline_html(value[1])}</h{value[0]}>")
        elif kind == "para":
            out.append(f"<p>{_inline_html(value)}</p>")
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in value) + "</ul>")
        elif kind == "table":
            header, rows = value
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "image":
            path, caption = value
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{_inline_html(caption)}</figcaption></figure>"
            )
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(value)}</code></pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
