"""Summaries for files: the calibration engine's result -> summary.csv and summary.md.

Statistics and verdicts come from :mod:`sbc.calibration` (the one engine every reader of a
store uses); the HTML report (:mod:`sbc.report`) is built on these, never the reverse.
"""

from __future__ import annotations

import pandas as pd

from sbc import stats
from sbc.calibration import Calibration, calibrate


def calibrate_store_tables(manifest: dict, reps: pd.DataFrame, params: pd.DataFrame,
                           alpha: float | None = None, family: str = "study") -> Calibration:
    """The engine on a store's tables, with the study's own sampler settings (for
    recommendations that never repeat a setting in place)."""
    from sbc.calibration import ALPHA

    sampler = manifest.get("study", {}).get("sampler")
    return calibrate(reps, params, alpha=ALPHA if alpha is None else alpha, family=family,
                     sampler=sampler)


def summary_frame(cal: Calibration) -> pd.DataFrame:
    """summary.csv: one row per (model, design, scalar) with all statistics, the group's
    pooled and Holm p-values and the verdict of its (model, design) with cause and warnings."""
    s = cal.scalars
    if s.empty:
        return s
    g = cal.groups[["model", "design", "group", "elements", "p_pooled", "p_holm", "fails"]]
    g = g.rename(columns={"elements": "group_size", "p_pooled": "group_p",
                          "p_holm": "group_p_holm", "fails": "group_fails"})
    out = s.merge(g, on=["model", "design", "group"], how="left")
    out["p_holm_scalar"] = stats.holm(out["p_value"].to_numpy(float))
    v = [cal.verdicts[(m, d)] for m, d in zip(out["model"], out["design"])]
    vc = [cal.verdicts_clean[(m, d)] for m, d in zip(out["model"], out["design"])]
    out["verdict"] = [x.status for x in v]
    out["verdict_label"] = [x.label for x in v]
    out["verdict_warnings"] = [", ".join(x.warnings) for x in v]
    out["cause"] = [x.cause.kind if x.cause else "" for x in v]
    out["power_shift_0.5sd"] = [x.power for x in v]
    out["verdict_reason"] = [x.reason for x in v]
    out["verdict_without_flagged"] = [x.status for x in vc]
    out["recommendation"] = [x.recommendation for x in v]
    out["family"] = cal.family
    return out


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(manifest: dict, cal: Calibration | None) -> str:
    """summary.md: verdicts per model x design and overall, and the failing parameters."""
    study = manifest["study"]
    lines = [f"# SBC summary: {study['name']}", ""]
    sim = study.get("simulate_model")
    if sim and sim not in study["models"]:
        lines += [f"**Data simulated from `{sim}`, fitted with {', '.join(study['models'])}.**", ""]
    if cal is None or cal.scalars.empty:
        return "\n".join(lines + ["No successful fits stored."]) + "\n"
    overall = cal.overall()
    lines += [f"**Overall: {overall.label}** ({_md(overall.reason)}).", "",
              f"{cal.family_text()}.", "",
              "| model | design | verdict | clean / fits | without flagged fits | reason |",
              "|---|---|---|---|---|---|"]
    diag = cal.diagnostics.set_index(["model", "design"])
    for (m, d), v in cal.verdicts.items():
        reason = _md(v.reason)
        if v.recommendation:
            reason += f" **Try:** {_md(v.recommendation)}."
        row = diag.loc[(m, d)]
        lines.append(f"| {m} | {d} | {v.label} | {int(row['clean'])} / {int(row['fits'])} | "
                     f"{cal.verdicts_clean[(m, d)].status} | {reason} |")
    fails = cal.groups[cal.groups["fails"]]
    if len(fails):
        lines += ["", "## Failing parameter groups", "",
                  "| model | design | group | Holm p | worst element | p | shape |",
                  "|---|---|---|---|---|---|---|"]
        for g in fails.itertuples():
            lines.append(f"| {g.model} | {g.design} | {g.group} | "
                         f"{stats.format_p(g.p_holm, g.at_floor)} | {g.worst} | "
                         f"{stats.format_p(g.worst_p, g.at_floor)} | {g.worst_shape} |")
    return "\n".join(lines) + "\n"
