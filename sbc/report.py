"""The HTML report; the only module that writes HTML.

The report is built from sections (functions returning HTML fragments) so adding a section
is adding a function.  All user-supplied text is escaped; images are embedded (base64 PNG),
so the file is self-contained and opens without network.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from sbc.store import Store

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
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def table_html(frame: pd.DataFrame, float_format: str = "{:.3g}") -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if pd.isna(v) else esc(float_format.format(v))
        return esc(v)
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def img_html(png_b64: str, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{png_b64}">'


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")


def write_report(store: Store) -> Path:
    """Recompute every statistic from the store (no refitting) and write report.html,
    summary.csv and summary.md."""
    from sbc.summarize import build_report_body

    manifest = store.read_manifest()
    reps, params = store.write_tables()
    body, summary = build_report_body(manifest, reps, params)
    if summary is not None:
        store.write_text("summary.csv", summary.to_csv(index=False))
        from sbc.summarize import summary_markdown
        store.write_text("summary.md", summary_markdown(manifest, summary))
    return store.write_text("report.html", page(f"SBC report: {manifest['study']['name']}", body))
