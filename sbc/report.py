"""The study report as data, and the files a store's report consists of.

:func:`build_report` arranges the engine's result (:mod:`sbc.calibration`) into a
:class:`Report`: a header, the summary verdicts and one section per model and design, each
a set of tables (DataFrames whose verdict cells are :class:`~sbc.summarize.Badge`), verdict
boxes and figures (:mod:`sbc.plots`), with what drives each failure (:mod:`sbc.explain`)
and the calibration of the sign decisions.  It holds no HTML: :mod:`sbc.render` turns a Report
into report.html.  :func:`write_report` runs the whole flow for a store: statistics ->
summaries -> rendered text -> report.html, summary.csv and summary.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from sbc import plots, render
from sbc.glossary import canonical, explain
from sbc.calibration import LEVELS, Calibration, with_fractional_ranks
from sbc.explain import Explanation, explain_failures
from sbc.report_tables import (ComputationCheck, DecisionCheck, computation_check,
                               decision_check, degenerate_table, diagnostics_table,
                               extremes_table, group_table, scalar_table)
from sbc.store import Store, record_path
from sbc.summarize import (Badge, Plot, calibrate_store_tables, sequential_plot,
                           sequential_table, study_summary, summary_frame)
from sbc.verdicts import MIN_FITS, SHAPE_TEXT, Verdict, combine


WORST_LISTED = 10  # individual elements listed / plotted per model x design
LINKED_FITS = 10  # fits linked per explained failure


@dataclass(frozen=True)
class VerdictBox:
    """A verdict with its reason and advice; title: what it judges ("Overall:", ...)."""

    badge: Badge
    reason: str
    recommendation: str = ""
    title: str = ""

    @classmethod
    def of(cls, verdict: Verdict, title: str = "") -> VerdictBox:
        return cls(Badge.of(verdict), verdict.reason, verdict.recommendation, title)


@dataclass(frozen=True)
class StudyHeader:
    """What was run: the study's name, models, designs, seed and sampler settings.
    fitted_elsewhere: fitted models that differ from the simulating model ``simulated_from``."""

    name: str
    description: str
    models: list[str]
    designs: list[str]
    seed: object
    sampler: dict
    thin: object
    simulated_from: str = ""
    fitted_elsewhere: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SummarySection:
    """The verdicts of the study: overall, per model (when several), per model x design, and
    the facts the method paragraph states."""

    overall: VerdictBox
    per_model: list[VerdictBox]
    table: pd.DataFrame
    n_sim: int
    n_tests: int
    family_text: str
    min_fits: int = MIN_FITS


@dataclass(frozen=True)
class RecordLink:
    """A fit's record as report.html links it: ``href`` relative to the store's root (where
    report.html lies), ``u`` the fit's fractional rank."""

    rep: int
    u: float
    href: str


@dataclass(frozen=True)
class ExplainedFailure:
    """What drives the failure of a group: the ``region`` of its worst element's ranks in
    words (:class:`sbc.explain.Explanation`), the failure ``shape`` in words, and links to
    the first fits in that region, most responsible first, of ``in_region``."""

    name: str
    group: str
    shape: str
    region: str
    in_region: int
    links: list[RecordLink]


def explained_failure(found: Explanation, model: str, design: str) -> ExplainedFailure:
    """An :class:`~sbc.explain.Explanation` with its first fits linked to their records."""
    links = [RecordLink(rep, u, quote(str(record_path(model, design, rep))))
             for rep, u in zip(found.reps[:LINKED_FITS], found.u)]
    return ExplainedFailure(found.name, found.group, SHAPE_TEXT.get(found.shape, found.shape),
                            found.text(), len(found.reps), links)


@dataclass(frozen=True)
class DesignSection:
    """One model x design: verdict, group and element tables, diagnostics and figures."""

    model: str
    design: str
    verdict: VerdictBox
    groups: pd.DataFrame
    worst: pd.DataFrame
    computation: ComputationCheck | None
    diagnostics: pd.DataFrame
    plots: list[Plot]
    worst_elements: Plot | None
    scalars: pd.DataFrame
    extremes: pd.DataFrame | None = None  # the fits behind the outliers
    degenerate: pd.DataFrame | None = None  # fits that did not move, and where in the prior
    sequential: pd.DataFrame | None = None  # a sequential study: where it stopped and why
    explanations: list[ExplainedFailure] = field(default_factory=list)  # one per failing group
    decisions: DecisionCheck | None = None  # None: the records predate P(theta < 0)


@dataclass(frozen=True)
class TrendSection:
    """How calibration and recovery change with design size, for one model: recovery
    (``plot``) and the coverage of every level with its Monte Carlo range (``coverage``)."""

    table: pd.DataFrame
    plot: Plot
    coverage: Plot | None = None


@dataclass(frozen=True)
class ModelSection:
    name: str
    trend: TrendSection | None
    designs: list[DesignSection]


@dataclass(frozen=True)
class Report:
    """Everything report.html shows.  summary is None when no fit succeeded; then
    failed_fits lists what is stored instead."""

    header: StudyHeader
    summary: SummarySection | None = None
    models: list[ModelSection] = field(default_factory=list)
    failed_fits: pd.DataFrame | None = None

    @property
    def title(self) -> str:
        return f"SBC report: {self.header.name}"

    def tables(self) -> list[pd.DataFrame]:
        """Every table the report shows."""
        out = [self.failed_fits] if self.failed_fits is not None else []
        if self.summary is not None:
            out.append(self.summary.table)
        for model in self.models:
            if model.trend is not None:
                out.append(model.trend.table)
            for d in model.designs:
                out += [d.groups, d.worst, d.diagnostics, d.scalars]
                out += [t for t in (d.extremes, d.computation and d.computation.table)
                        if t is not None]
                if d.decisions is not None:
                    out += [d.decisions.table, *d.decisions.reliability.values()]
        return out

    @property
    def glossary(self) -> dict[str, str]:
        """Column header -> its explanation, for every column of every table shown."""
        return {canonical(c): explain(c) for t in self.tables() for c in t.columns}


def write_report(store: Store) -> Path:
    """Recompute all from the store (no refit) under its lock, write the report's files."""
    with store.for_report():
        return write_report_with_calibration(store)[0]


def write_report_with_calibration(store: Store, on_verdict=None) -> tuple[Path, Calibration | None]:
    """:func:`write_report`, also returning the engine's result (None when nothing is
    stored), so that a command can print the verdicts it wrote.  ``on_verdict(cal)`` is
    called with the verdicts as soon as they are known, before the figures are drawn."""
    manifest = store.study_manifest()  # a plan's store is refused: its report is the plan's
    reps, params = store.write_tables()
    report, cal = build_report(manifest, reps, params, on_verdict)
    if cal is not None:
        store.write_text("summary.csv", summary_frame(cal).to_csv(index=False))
        store.write_text("summary.md", render.summary_markdown(study_summary(manifest, cal)))
    path = store.write_text("report.html", render.report_html(report))
    return path, cal


def build_report(manifest: dict, reps: pd.DataFrame, params: pd.DataFrame, on_verdict=None
                 ) -> tuple[Report, Calibration | None]:
    """The report of a store's tables and the engine's result (None when nothing is stored);
    ``on_verdict(cal)`` gets the engine's result before the report is built."""
    header = study_header(manifest)
    if reps.empty or params.empty:
        failed = None
        if len(reps):
            failed = reps.loc[reps["status"] != "ok", ["model", "design", "rep", "error"]].head(20)
        return Report(header, failed_fits=failed), None
    cal = calibrate_store_tables(manifest, reps, params)
    if on_verdict is not None:
        on_verdict(cal)
    # figures show the replicates the verdicts rest on (a sequential study's, up to its stops)
    return study_report(header, cal, with_fractional_ranks(cal.params, cal.reps)), cal


def study_header(manifest: dict) -> StudyHeader:
    study = manifest["study"]
    sim = study.get("simulate_model") or ""
    elsewhere = [m for m in study["models"] if sim and m != sim]
    return StudyHeader(study["name"], study.get("description") or "", list(study["models"]),
                       list(study["designs"]), study["seed"], study.get("sampler", {}),
                       study.get("thin"), sim if elsewhere else "", elsewhere)


def study_report(header: StudyHeader, cal: Calibration, params: pd.DataFrame) -> Report:
    """The report of a calibration.  params: the parameters table with fractional ranks
    ``u`` and ``flagged`` columns (:func:`sbc.calibration.with_fractional_ranks`)."""
    models = []
    for model in dict.fromkeys(m for m, _ in cal.verdicts):
        designs = [design_section(m, d, cal, params) for m, d in cal.verdicts
                   if m == model and not cal.scalars.query("model == @m and design == @d").empty]
        models.append(ModelSection(model, trend_section(model, cal), designs))
    return Report(header, summary_section(cal), models)


def summary_section(cal: Calibration) -> SummarySection:
    v = cal.verdicts
    models = list(dict.fromkeys(m for m, _ in v))
    rows = []
    for (m, d), x in v.items():
        diag = cal.diagnostics.query("model == @m and design == @d").iloc[0]
        clean = cal.verdicts_clean[(m, d)]
        rows.append({"model": m, "design": d, "verdict": Badge.of(x),
                     "cause": x.cause.kind if x.cause else "",
                     "reason": x.reason, "fits ok / total": f"{diag['ok']} / {diag['fits']}",
                     "clean fits": f"{diag['clean']} ({1 - diag['flagged']:.0%})",
                     "median ranked draws": diag["median_ranked"],
                     "without flagged fits": Badge(clean.status, note=clean.reason),
                     "changes": "no" if clean.status == x.status else "yes"})
    per_model = [VerdictBox.of(combine([(d, x) for (mm, d), x in v.items() if mm == m]),
                               f"Model {m}:") for m in models] if len(models) > 1 else []
    return SummarySection(VerdictBox.of(cal.overall(), "Overall:"), per_model,
                          pd.DataFrame(rows), cal.n_sim, len(cal.groups), cal.family_text())


def _design_rows(label: str) -> int:
    try:
        return int(np.prod([int(x) for x in str(label).split("x")]))
    except ValueError:
        return 0


def _panel(params: pd.DataFrame, title: str, failing: bool) -> plots.Panel:
    """A plots.Panel for the rows of one scalar or group of one (model, design)."""
    us = [rows["u"].to_numpy(float) for _, rows in params.groupby("name", sort=True)]
    prior_sd = params.groupby("name")["truth"].transform(lambda t: t.std(ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (params["mean"] - params["truth"]) / params["sd"]
        contraction = 1 - params["sd"] ** 2 / prior_sd ** 2
    return plots.Panel(title=title, failing=failing, u=us, truth=params["truth"].to_numpy(float),
                       mean=params["mean"].to_numpy(float), lo=params["q0.05"].to_numpy(float),
                       hi=params["q0.95"].to_numpy(float), contraction=contraction.to_numpy(float),
                       z=z.to_numpy(float), flagged=params["flagged"].to_numpy(bool))


def coverage_rows(groups: pd.DataFrame, scalars: pd.DataFrame) -> list[plots.CoverageRow]:
    """The rows of the coverage figure of a model x design."""
    tags = [f"cov{round(level * 100)}" for level in LEVELS]
    rows = []
    for g in groups.itertuples():
        s = scalars[scalars["group"] == g.group]
        cov = s[tags].to_numpy(float)
        one = len(s) == 1
        lower = s[[f"{t}_lo" for t in tags]].to_numpy(float)[0] if one else None
        upper = s[[f"{t}_hi" for t in tags]].to_numpy(float)[0] if one else None
        label = g.group if one else f"{g.group} [{len(s)}]"
        rows.append(plots.CoverageRow(label, int(s["n_used"].median()), cov, lower, upper,
                                      bool(g.fails)))
    return rows


def design_panels(groups: pd.DataFrame, block: pd.DataFrame) -> list[plots.Panel]:
    """One panel per parameter group of a model x design (``block``: its parameters table
    with ``u`` and ``flagged``); ``[k]`` marks a group of k elements."""
    return [_panel(block[block["group"] == g.group], g.group if g.elements == 1 else
                   f"{g.group} [{g.elements}]", bool(g.fails)) for g in groups.itertuples()]


def design_plots(groups: pd.DataFrame, scalars: pd.DataFrame, block: pd.DataFrame) -> list[Plot]:
    panels = design_panels(groups, block)
    return [
        Plot(plots.ecdf_difference_grid(panels), "ECDF difference plots",
             "ECDF difference of fractional ranks with simultaneous 95% bands (grey) for one "
             "element; groups: thin line per element, black = pooled with its simultaneous "
             "95% band (dashed; Bonferroni over the elements). Red "
             "title: the group fails."),
        Plot(plots.rank_histogram_grid(panels), "rank histograms",
             "Rank histograms (groups: mean over elements); grey: 95% range of a bin for one "
             "element under uniformity. U shape: posterior too narrow; hump: too wide; slope: "
             "biased."),
        Plot(plots.coverage_plot(coverage_rows(groups, scalars)), "coverage",
             "Coverage of central posterior intervals minus nominal, with Wilson 95% bars "
             "(scalars) or one dot per element (groups, [k] = elements); grey: range expected "
             "under calibration."),
        Plot(plots.coverage_difference_grid(panels), "coverage difference over all widths",
             "Coverage of the central posterior interval of every width minus the width, with "
             "the simultaneous 95% band of a calibrated parameter (grey); groups: thin line per "
             "element, black = pooled with its 95% band (dashed). Below zero: intervals too "
             "narrow; above: "
             "too wide."),
        Plot(plots.zscore_contraction_grid(panels), "z-score vs contraction",
             "Posterior z-score against posterior contraction, one point per fit and element "
             "(at most 600 shown)."),
        Plot(plots.truth_estimate_grid(panels), "truth vs estimate",
             "Posterior mean and 90% interval against the truth."),
    ]


def worst_elements_plot(groups: pd.DataFrame, scalars: pd.DataFrame,
                        block: pd.DataFrame) -> Plot | None:
    """ECDF of the worst individual elements of vector parameters (None without any)."""
    worst = scalars[scalars["group"].map(groups.set_index("group")["elements"]) > 1]
    worst = worst.sort_values("p_value").head(WORST_LISTED)
    if worst.empty:
        return None
    failing = set(groups.loc[groups["fails"], "group"])
    panels = [_panel(block[block["name"] == r.name], f"{r.name} (p={r.p_value:.2g})",
                     r.group in failing) for r in worst.itertuples()]
    return Plot(plots.ecdf_difference_grid(panels), "worst elements ECDF")


def design_section(model: str, design: str, cal: Calibration,
                   params: pd.DataFrame) -> DesignSection:
    sel = "model == @model and design == @design"
    groups = cal.groups.query(sel)
    scalars = cal.scalars.query(sel)
    block = params.query(sel)
    diag = cal.diagnostics.query(sel).iloc[0]
    verdict = cal.verdicts[(model, design)]
    clean_verdict = cal.verdicts_clean[(model, design)]
    outcome = cal.sequential.get((model, design))
    figures = design_plots(groups, scalars, block)
    if outcome is not None and outcome.log_e:
        figures.insert(0, sequential_plot(outcome))
    return DesignSection(
        model, design, VerdictBox.of(verdict), group_table(groups, scalars),
        scalar_table(scalars.sort_values("p_value").head(WORST_LISTED), cal.n_sim),
        computation_check(groups, scalars, verdict, clean_verdict, diag, cal.n_sim),
        diagnostics_table(diag), figures,
        worst_elements_plot(groups, scalars, block), scalar_table(scalars, cal.n_sim),
        extremes=extremes_table(block),
        sequential=sequential_table(outcome) if outcome is not None else None,
        degenerate=degenerate_table(block),
        explanations=[explained_failure(found, model, design)
                      for found in explain_failures(groups, block)],
        decisions=decision_check(block, cal.alpha))


def trend_section(model: str, cal: Calibration) -> TrendSection | None:
    """None when the model was run at fewer than two designs."""
    groups = cal.groups[cal.groups["model"] == model]
    designs = list(dict.fromkeys(groups["design"]))
    if len(designs) < 2:
        return None
    names = list(dict.fromkeys(groups["group"]))
    tags = {f"cov{round(lv * 100)}": lv for lv in LEVELS}
    pivot = {col: groups.pivot(index="group", columns="design", values=col)
             .reindex(index=names, columns=designs) for col in
             ("contraction", "rmse", "p_holm", *tags)}
    table = pivot["contraction"].round(3).astype(str) + " / " + \
        pivot["rmse"].map(lambda x: f"{x:.3g}") + " / " + pivot["p_holm"].map(lambda x: f"{x:.2g}")
    table = table.reset_index().rename(columns={"group": "group (contraction / RMSE / Holm p)"})
    fits = cal.scalars[cal.scalars["model"] == model].groupby("design")["n_used"].median()
    fits = fits.reindex(designs).to_numpy(float)
    failing = set(groups.loc[groups["fails"], "group"])
    rows = [_design_rows(d) for d in designs]
    figure = plots.design_trend(
        names, designs, rows,
        {"median posterior contraction": pivot["contraction"].to_numpy(),
         "RMSE of posterior mean": pivot["rmse"].to_numpy()}, failing)
    coverage = plots.design_trend(
        names, designs, rows,
        {f"{round(lv * 100)}% interval coverage": pivot[tag].to_numpy()
         for tag, lv in tags.items()}, failing,
        nominal={f"{round(lv * 100)}% interval coverage": (lv, fits) for lv in LEVELS})
    return TrendSection(table, Plot(figure, "design trend", "Per group (mean over elements) "
                                    "against the number of observations; dashed: the group "
                                    "fails somewhere."),
                        Plot(coverage, "coverage across designs",
                             "Coverage of the central 50, 80, 90 and 95% posterior intervals "
                             "per group (mean over elements) against the number of "
                             "observations; line: the nominal level; grey: the 95% range of a "
                             "calibrated scalar's coverage over that many fits (binomial), so "
                             "a line inside it is Monte Carlo noise, not a trend; dashed: the "
                             "group fails somewhere."))
