"""The calibration report of a store: recompute every statistic from the stored records (no
refitting) and write report.html, summary.csv and summary.md.  The HTML itself is built by
:mod:`sbc.render`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sbc.render.html import page
from sbc.render.report import empty_body, summary_body
from sbc.store import Store
from sbc.summarize import calibrate_store_tables, summary_frame, summary_markdown


def write_report(store: Store) -> Path:
    """Recompute every statistic from the store (no refitting) and write report.html,
    summary.csv and summary.md."""
    return write_report_with_calibration(store)[0]


def write_report_with_calibration(store: Store):
    """:func:`write_report`, also returning the engine's result (None when nothing is
    stored), so that a command can print the verdicts it wrote."""

    manifest = store.read_manifest()
    reps, params = store.write_tables()
    body, cal = build_report_body(manifest, reps, params)
    if cal is not None:
        store.write_text("summary.csv", summary_frame(cal).to_csv(index=False))
        store.write_text("summary.md", summary_markdown(manifest, cal))
    path = store.write_text("report.html", page(f"SBC report: {manifest['study']['name']}", body))
    return path, cal


def build_report_body(manifest: dict, reps: pd.DataFrame, params: pd.DataFrame):
    """HTML body of report.html and the engine's result (None when nothing is stored)."""
    from sbc.calibration import with_fractional_ranks

    if reps.empty or params.empty:
        return empty_body(manifest, reps), None
    cal = calibrate_store_tables(manifest, reps, params)
    return summary_body(manifest, cal, with_fractional_ranks(params, reps)), cal


