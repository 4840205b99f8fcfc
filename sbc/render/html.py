"""HTML building blocks: escaping, tables, badges, embedded figures and the page (a Jinja2
template with autoescape on).  Every other module of :mod:`sbc.render` builds on these."""

from __future__ import annotations

import base64
import html
import io
from functools import cache

import numpy as np
import pandas as pd
from markupsafe import Markup

DPI = 80

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.inconclusive{color:#9a6700;font-weight:600}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}
img{max-width:100%}details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
h3{margin-top:1.6em;border-left:4px solid #0969da;padding-left:.5em}
.verdict{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:.6em 0}
.verdict.fail{border-color:#cf222e;background:#fff5f5;font-weight:normal}
.verdict.pass{border-color:#1a7f37;background:#f4fbf6;font-weight:normal}
.verdict.inconclusive{border-color:#9a6700;background:#fffbea;font-weight:normal}
.badge{display:inline-block;padding:0 .5em;border-radius:4px;color:#fff;font-weight:600}
.badge.pass{background:#1a7f37;color:#fff}.badge.fail{background:#cf222e;color:#fff}
.badge.inconclusive{background:#9a6700;color:#fff}
.badge.warned{background:#bf8700;color:#fff}.verdict.warned{border-color:#bf8700;background:#fffbea}
.warn{background:#fff5f5;border:2px solid #cf222e;padding:.6em 1em;font-weight:600}
.tw{overflow-x:auto;max-width:100%}.small{font-size:.85em;color:#555}
figure{margin:.8em 0}figcaption{font-size:.85em;color:#555}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def table_html(frame: pd.DataFrame, float_format: str = "{:.3g}",
               html_columns: tuple[str, ...] = ()) -> str:
    """An HTML table of ``frame``; every value escaped except in ``html_columns``, whose
    values are HTML built by this module (e.g. :func:`badge`).  Text cells are left-aligned."""
    raw = [c in html_columns for c in frame.columns]

    def cell(v, is_raw):
        if is_raw:
            return f"<td class='l'>{v}</td>"
        if isinstance(v, (float, np.floating)):
            return "<td></td>" if pd.isna(v) else f"<td>{esc(float_format.format(v))}</td>"
        if isinstance(v, (int, np.integer, bool, np.bool_)):
            return f"<td>{esc(v)}</td>"
        return f"<td class='l'>{esc(v)}</td>"
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(cell(v, r) for v, r in zip(row, raw)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return (f"<div class='tw'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
            "</table></div>")


def badge(status: str, label: str | None = None) -> str:
    """A coloured verdict label: "pass", "fail", "inconclusive", or "warned" (a pass that
    carries warnings: never shown green).  ``label``: the text, by default the status."""
    cls = status if status in ("pass", "fail", "inconclusive", "warned") else ""
    return f"<span class='badge {cls}'>{esc(label or status)}</span>"


def verdict_badge(v) -> str:
    """The badge of a :class:`sbc.calibration.Verdict`, with its label ("pass, with
    warnings", "fail: computation", ...)."""
    status = "warned" if v.status == "pass" and v.warnings else v.status
    return badge(status, v.label)


def png_b64(fig, dpi: int = DPI) -> str:
    """A matplotlib Figure encoded as base64 PNG (the figure needs no pyplot state)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(fig, alt: str, caption: str) -> str:
    return f"<figure>{img_html(fig, alt)}<figcaption>{esc(caption)}</figcaption></figure>"


def img_html(fig, alt: str, dpi: int = DPI) -> str:
    """An embedded image of a Figure (or of an already encoded base64 PNG)."""
    data = fig if isinstance(fig, str) else png_b64(fig, dpi)
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


@cache
def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("sbc.render", "templates"),
                       autoescape=select_autoescape(["html", "j2"]))


def page(title: str, body: str) -> str:
    """A whole HTML page: ``title`` is escaped by the template; ``body`` is HTML built here
    (every user text in it escaped where it was built)."""
    return _environment().get_template("page.html.j2").render(
        title=title, css=Markup(CSS), body=Markup(body))


