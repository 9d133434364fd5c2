"""Self-contained HTML reports: one file with inline CSS and every image embedded.

The report opens from an e-mail attachment or a USB stick with no network and no
side files: images are ``data:`` URIs, the style sheet is inline, and a
Content-Security-Policy forbids loading anything from elsewhere (so a stray
external reference shows up as a broken image instead of silently working on the
author's machine only). A tiny inline script records, after the page has loaded,
how many images decoded (``<body data-images-loaded="N/M">``); the headless-browser
test reads it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from lucyd import __version__
from lucyd.errors import InputError
from lucyd.io.atomic import atomic_path
from lucyd.report.figures import image_bytes
from lucyd.report.tables import format_value, is_numeric, normalize_rows

__all__ = ["ReportSection", "png_css_width", "render_html_report", "write_html_report"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)

_CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --rule: #d9dce1; --accent: #7a1f5c; --zebra: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1240px; padding: 24px 32px 48px; color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--rule); }
h3 { font-size: 15px; margin: 16px 0 6px; color: var(--muted); }
p { margin: 6px 0 10px; max-width: 900px; }
nav.toc { margin: 12px 0 4px; font-size: 14px; }
nav.toc ol { margin: 4px 0; padding-left: 22px; }
a { color: var(--accent); }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 18px; margin: 8px 0;
  font-size: 14px; }
dl.kv dt { font-weight: 600; color: var(--muted); }
dl.kv dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 13px; word-break: break-word; }
figure { margin: 14px 0 22px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; max-width: 1000px; }
table.metrics { border-collapse: collapse; margin: 10px 0 16px; font-size: 14px; }
table.metrics th, table.metrics td { padding: 4px 12px; border-bottom: 1px solid var(--rule);
  text-align: left; }
table.metrics th { background: #eef0f3; font-weight: 600; }
table.metrics tbody tr:nth-child(even) { background: var(--zebra); }
table.metrics td.num, table.metrics th.num { text-align: right;
  font-variant-numeric: tabular-nums; }
details { margin: 6px 0 12px; }
details summary { cursor: pointer; color: var(--muted); font-size: 13px; }
pre { background: var(--zebra); padding: 10px 12px; overflow-x: auto; font-size: 12px;
  border: 1px solid var(--rule); }
footer { margin-top: 40px; padding-top: 8px; border-top: 1px solid var(--rule);
  font-size: 12px; color: var(--muted); }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, ok = 0, failed = [];
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { ok++; }
    else { failed.push(images[i].getAttribute("alt") || String(i)); }
  }
  document.body.dataset.imagesLoaded = ok + "/" + images.length;
  document.body.dataset.imagesFailed = failed.join(" | ");
});
"""


@dataclass
class ReportSection:
    """One section of a report.

    Parameters
    ----------
    heading : str
        Section title.
    text : str, optional
        Plain text (HTML-escaped); blank lines separate paragraphs.
    images : list
        Each entry ``(image, caption)`` or just ``image``, where ``image`` is a
        file path, PNG/JPEG/SVG bytes or a matplotlib Figure (embedded as a
        ``data:`` URI).
    table : list of dict, or (columns, rows), optional
        Metric table; numbers are formatted per column by
        :func:`lucyd.report.tables.format_value` (PSNR 2 decimals, SSIM 4).
    columns : sequence of str, optional
        Table columns to show and their order.
    params : mapping, optional
        Parameters used, shown as a definition list with the full JSON in a
        collapsible block.
    """

    heading: str
    text: str | None = None
    images: list = field(default_factory=list)
    table: object = None
    columns: Sequence[str] | None = None
    params: Mapping | None = None


def _as_section(section) -> ReportSection:
    if isinstance(section, ReportSection):
        return section
    if isinstance(section, Mapping):
        allowed = {f.name for f in fields(ReportSection)}
        unknown = sorted(set(section) - allowed)
        if unknown:
            raise InputError(f"report section: unknown keys {unknown} (allowed: {sorted(allowed)})")
        if "heading" not in section:
            raise InputError("report section: missing 'heading'")
        return ReportSection(**section)
    raise InputError(f"report section: expected a ReportSection or a dict, got {type(section)}")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):  # pydantic models (JobConfig)
        return obj.model_dump(mode="json")
    return str(obj)


def _value_text(key: str, value) -> str:
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    return format_value(value, key)


def _definition_list(values: Mapping) -> str:
    items = [
        f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_value_text(str(k), v))}</dd>"
        for k, v in values.items()
    ]
    return '<dl class="kv">' + "".join(items) + "</dl>"


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    return "".join(f"<p>{html.escape(b)}</p>" for b in blocks)


def _table_html(table, columns) -> str:
    cols, rows = normalize_rows(table, columns)
    numeric = {c: any(is_numeric(r.get(c)) for r in rows) for c in cols}
    head = "".join(f"<th{' class=num' if numeric[c] else ''}>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = "".join(
            f"<td{' class=num' if numeric[c] else ''}>{html.escape(format_value(r.get(c), c))}</td>"
            for c in cols
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<table class="metrics"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def png_css_width(data: bytes) -> float | None:
    """Width in CSS pixels (1/96 inch) of a PNG from its header and ``pHYs`` resolution.

    Returns None when ``data`` is not a PNG or has no physical resolution, so
    that a figure saved at 150 dpi is shown at the size it was designed for
    (same font sizes for every figure) instead of 1.56× larger.
    """
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 33:
        return None
    width = struct.unpack(">I", data[16:20])[0]
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"pHYs" and length == 9:
            ppu_x, _, unit = struct.unpack(">IIB", data[pos + 8 : pos + 17])
            if unit == 1 and ppu_x > 0:  # pixels per metre
                return width * 96.0 / (ppu_x * 0.0254)
            return None
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _image_html(entry) -> str:
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        source, caption = entry
    else:
        source, caption = entry, None
    data, mime = image_bytes(source)
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    alt = caption or (Path(source).name if isinstance(source, (str, Path)) else "figure")
    css_width = png_css_width(data) if mime == "image/png" else None
    style = f' style="width: {css_width:.0f}px"' if css_width else ""
    cap = f"<figcaption>{html.escape(str(caption))}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{html.escape(str(alt))}"{style}>{cap}</figure>'


def _slug(text: str, index: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return f"s{index}-{slug}"[:60]


def render_html_report(
    *,
    title: str,
    sections: Sequence,
    metadata: Mapping | None = None,
    generated: _dt.datetime | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_html_report`)."""
    secs = [_as_section(s) for s in sections]
    when = (generated or _dt.datetime.now(_dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="lucyd {html.escape(__version__)}">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<header><h1>{html.escape(title)}</h1>",
    ]
    if metadata:
        out.append(_definition_list(metadata))
    out.append("</header>")
    if len(secs) >= 3:
        links = "".join(
            f'<li><a href="#{_slug(s.heading, i)}">{html.escape(s.heading)}</a></li>'
            for i, s in enumerate(secs)
        )
        out.append(f'<nav class="toc"><strong>Contents</strong><ol>{links}</ol></nav>')
    for i, s in enumerate(secs):
        out.append(f'<section id="{_slug(s.heading, i)}"><h2>{html.escape(s.heading)}</h2>')
        if s.text:
            out.append(_paragraphs(s.text))
        if s.table is not None:
            out.append(_table_html(s.table, s.columns))
        for entry in s.images or []:
            out.append(_image_html(entry))
        if s.params:
            out.append("<h3>Parameters</h3>")
            out.append(_definition_list(s.params))
            dump = json.dumps(s.params, indent=2, default=_json_default, ensure_ascii=False)
            out.append(
                f"<details><summary>Parameters as JSON</summary><pre>{html.escape(dump)}</pre>"
                "</details>"
            )
        out.append("</section>")
    out.append(f"<footer>Generated by lucyd {html.escape(__version__)} on {when}.</footer>")
    out.append(f"<script>{_SCRIPT}</script>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html_report(
    path: str | Path,
    *,
    title: str,
    sections: Sequence,
    metadata: Mapping | None = None,
) -> Path:
    """Write a self-contained HTML report (one file, no external resources).

    Parameters
    ----------
    path : str or Path
        Output ``.html`` file, written atomically.
    title : str
        Page title and main heading.
    sections : sequence of ReportSection or dict
        Sections in order; a dict takes the fields of :class:`ReportSection`.
    metadata : mapping, optional
        Key facts shown under the title (command line, data, device, seed, ...).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    All text is HTML-escaped; images are embedded as base64 ``data:`` URIs; CSS
    is inline; a Content-Security-Policy blocks every non-inline resource. The
    footer gives the lucyd version and the generation time (UTC).
    """
    text = render_html_report(title=title, sections=sections, metadata=metadata)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
