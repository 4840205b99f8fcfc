"""Summaries of a calibration as data: summary.csv's table and summary.md's content.

Statistics and verdicts come from :mod:`sbc.calibration` (the one engine every reader of a
store uses); this module only selects and arranges them.  It also holds the two small value
types every page uses, :class:`Badge` (a verdict as a coloured label) and :class:`Plot` (a
figure with its alt text and caption).  Text and HTML come from :mod:`sbc.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from sbc import plots, sequential, stats, stopping
from sbc.calibration import Calibration, calibrate
from sbc.errors import StoreError, StudyError
from sbc.verdicts import ALPHA, Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Badge", "MarkdownRow", "PValue", "Plot", "StudySummary", "calibrate_store_tables",
           "sequential_plot", "sequential_table", "study_summary", "summary_frame"]


@dataclass(frozen=True)
class Badge:
    """A verdict shown as a coloured label.

    status: "pass", "fail", "inconclusive" or "warned" (a pass that carries warnings, never
    shown green); any other status is shown uncoloured.  label: the text, by default the
    status.  note: plain text shown after the label.
    """

    status: str
    label: str = ""
    note: str = ""

    @classmethod
    def of(cls, verdict: Verdict, note: str = "") -> Badge:
        """The badge of an engine verdict, with its label ("pass, with warnings", ...)."""
        status = "warned" if verdict.status == "pass" and verdict.warnings else verdict.status
        return cls(status, verdict.label, note)


@dataclass(frozen=True)
class PValue:
    """A p-value as a table shows it (:func:`sbc.stats.format_p`, the one formatter).
    ``bound``: the value is an upper bound (the test's Monte Carlo floor was reached, so the
    true p is smaller): shown as "< 1.6e-05", the bound rounded up, never as an estimate."""

    value: float
    bound: bool = False

    @property
    def text(self) -> str:
        return stats.format_p(self.value, self.bound)


@dataclass(frozen=True)
class Plot:
    """A figure of a page with its alt text and (optional) caption."""

    figure: Figure
    alt: str
    caption: str = ""


def calibrate_store_tables(manifest: dict, reps: pd.DataFrame, params: pd.DataFrame,
                           alpha: float | None = None, family: str = "study") -> Calibration:
    """The engine on a store's tables, with the study's own sampler settings (for
    recommendations that never repeat a setting in place)."""
    sampler = manifest.get("study", {}).get("sampler")
    if manifest.get("sequential"):  # judged by the sequential rule it ran under
        try:
            settings = stopping.from_value(manifest["sequential"])
        except StudyError as exc:
            raise StoreError(f"study.json: its 'sequential' settings are not valid ({exc}); "
                             "rerun the study (`sbc run`) to rewrite them") from None
        return stopping.judge(reps, params, settings, sampler=sampler)
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


@dataclass(frozen=True)
class MarkdownRow:
    """One (model, design) of summary.md: its verdict, fit counts and advice."""

    model: str
    design: str
    label: str
    clean: int
    fits: int
    clean_status: str
    reason: str
    recommendation: str = ""


@dataclass(frozen=True)
class FailingGroup:
    """A failing parameter group of summary.md, p-values already formatted."""

    model: str
    design: str
    group: str
    p_holm: str
    worst: str
    worst_p: str
    worst_shape: str


@dataclass(frozen=True)
class StudySummary:
    """What summary.md says: the overall verdict, one row per (model, design) and the
    failing groups.  overall is None when no successful fit is stored.  simulated_from: the
    simulating model when no fitted model is it (else empty)."""

    name: str
    models: list[str]
    simulated_from: str = ""
    overall: Verdict | None = None
    family_text: str = ""
    rows: list[MarkdownRow] = field(default_factory=list)
    failing: list[FailingGroup] = field(default_factory=list)


def study_summary(manifest: dict, cal: Calibration | None) -> StudySummary:
    """The content of summary.md, from the study's manifest and the engine's result."""
    study = manifest["study"]
    sim = study.get("simulate_model")
    base = {"name": study["name"], "models": list(study["models"]),
            "simulated_from": sim if sim and sim not in study["models"] else ""}
    if cal is None or cal.scalars.empty:
        return StudySummary(**base)
    diag = cal.diagnostics.set_index(["model", "design"])
    rows = [MarkdownRow(m, d, v.label, int(diag.loc[(m, d)]["clean"]),
                        int(diag.loc[(m, d)]["fits"]), cal.verdicts_clean[(m, d)].status,
                        v.reason, v.recommendation)
            for (m, d), v in cal.verdicts.items()]
    failing = [FailingGroup(g.model, g.design, g.group, stats.format_p(g.p_holm, g.at_floor),
                            g.worst, stats.format_p(g.worst_p, g.at_floor), g.worst_shape)
               for g in cal.groups[cal.groups["fails"]].itertuples()]
    return StudySummary(**base, overall=cal.overall(), family_text=cal.family_text(),
                        rows=rows, failing=failing)


def sequential_plot(o) -> Plot:
    """The e-value path of one model x design of a sequential study (an
    :class:`sbc.stopping.Outcome`)."""
    stop = o.fits if o.decided else None
    paths = {g: v[: o.fits] if o.decided else v for g, v in o.log_e.items()}
    return Plot(plots.sequential_path(paths, o.threshold, stop,
                                      o.point.n if o.point else None, o.rejected),
                "sequential test",
                "E-value of each parameter group after every successful fit (log scale). A "
                "group is rejected when its e-value reaches the dashed line, valid however often it "
                "is looked at; the fixed-n test also looks at "
                + ", ".join(map(str, sequential.LOOKS)) + " fits (below the pass point) with a "
                "small share of alpha each; with no rejection the study "
                "stops at the pass point (dotted), where the fixed-n test decides.")


def sequential_table(o) -> pd.DataFrame:
    """Where a sequential model x design stopped, why, and what it saved (the report's
    table; ``o``: an :class:`sbc.stopping.Outcome`)."""
    point = o.point
    fixed = max((n for n in point.fixed_n.values() if n), default=None) if point else None
    failed = (f"stopped: the interim look at {o.fits} fits rejected"
              if getattr(o, "interim", None) is not None else "stopped: e-value crossed")
    return pd.DataFrame([{
        "where it stopped": {"fail": failed, "look": "stopped at the pass point",
                             "limit": "stopped at max_simulations",
                             "running": "not stopped yet"}[o.status],
        "stop replicate": o.stop_rep if o.stop_rep is not None else "",
        "fits counted": o.fits,
        "stored beyond the stop": o.beyond,
        "reject at e-value": f"{o.threshold:.3g}",
        "pass point (fits)": point.n if point and point.n else f"> {o.settings.max_simulations}",
        "fixed-n study of equal power (fits)": fixed if fixed else "",
        "max_simulations": o.settings.max_simulations,
        "replicates not fitted": o.saved if o.decided else "",
    }])
