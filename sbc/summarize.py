"""Summaries: stored ranks and records -> per-parameter statistics and report sections."""

from __future__ import annotations

import pandas as pd

from sbc import report as R


def build_report_body(manifest: dict, reps: pd.DataFrame, params: pd.DataFrame):
    study = manifest["study"]
    parts = [f"<h1>SBC report: {R.esc(study['name'])}</h1>",
             f"<p>Models: {R.esc(', '.join(study['models']))}; designs: "
             f"{R.esc(', '.join(study['designs']))}; seed {R.esc(study['seed'])}.</p>"]
    if len(reps):
        counts = reps.groupby(["model", "design"]).agg(
            replicates=("rep", "size"), failed=("status", lambda s: int((s != "ok").sum())),
            divergent=("flag_divergent", "sum"), low_ess=("flag_low_ess", "sum"),
            median_seconds=("wall_seconds", "median")).reset_index()
        parts.append(R.table_html(counts))
    return "".join(parts), None


def summary_markdown(manifest: dict, summary: pd.DataFrame) -> str:
    return summary.to_markdown(index=False) if hasattr(summary, "to_markdown") else summary.to_string()
