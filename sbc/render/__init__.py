"""Rendering at the edge: the text of every page and file, from summaries, through templates.

The one module that knows HTML and Markdown.  Summaries (the :class:`sbc.report.Report`, the
:class:`sbc.summarize.StudySummary`, a plan's table and decisions) go in as data; Jinja2
templates (``sbc/render/templates``) turn them into text.  HTML templates escape every value
(autoescape), so user text (study, model, parameter names) is always shown literally; a cell
that needs markup, such as a verdict badge, is a value type (:class:`sbc.summarize.Badge`)
that the templates draw.  Figures arrive as :class:`matplotlib.figure.Figure` and are encoded
as inline base64 PNG only here, so a page is one self-contained file that opens without
network.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure

from sbc.glossary import explain
from sbc.plots import PLAN_DIMENSIONS, plan_curves_figure
from sbc.summarize import Badge, PValue, StudySummary

__all__ = ["check_page", "environment", "plan_curves_figure", "plan_page", "plan_results_html", "png_base64",
           "report_html", "results_html", "summary_markdown"]

BADGE_STATUSES = ("pass", "fail", "inconclusive", "warned")


PNG_COLORS = 64  # palette size of the report's PNGs


def png_base64(figure: Figure) -> str:
    """``figure`` as a base64 PNG, at the figure's own resolution, reduced to a palette of
    :data:`PNG_COLORS` colours (plots have few colours; this makes a report about three times
    smaller; 64 colours keep the thin lines and grey bands of the plots intact)."""
    from PIL import Image

    buf = io.BytesIO()
    with warnings.catch_warnings():  # a name in a script the font lacks: drawn as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(buf, format="png", dpi="figure")
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    small = io.BytesIO()
    image.quantize(colors=PNG_COLORS, method=Image.Quantize.MEDIANCUT).save(
        small, format="PNG", optimize=True)
    return base64.b64encode(small.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Cell:
    """One table cell as drawn: kind "num" (right-aligned), "text" (left-aligned) or
    "badge" (``badge`` set)."""

    kind: str
    text: str = ""
    badge: Badge | None = None


@dataclass(frozen=True)
class TableView:
    columns: list[str]
    rows: list[list[Cell]]


def _cell(value: Any, float_format: str) -> Cell:
    if isinstance(value, Badge):
        return Cell("badge", badge=value)
    if isinstance(value, PValue):
        return Cell("num", value.text)
    if isinstance(value, (float, np.floating)):
        return Cell("num", "" if pd.isna(value) else float_format.format(value))
    if isinstance(value, (int, np.integer, bool, np.bool_)):
        return Cell("num", str(value))
    return Cell("text", str(value))


def table_view(frame: pd.DataFrame, float_format: str = "{:.3g}") -> TableView:
    """The cells of ``frame`` as a table shows them: floats with ``float_format`` (NaN:
    empty), integers as they are, text left-aligned, :class:`Badge` values as badges."""
    return TableView([str(c) for c in frame.columns],
                     [[_cell(v, float_format) for v in row]
                      for row in frame.itertuples(index=False)])


def badge_class(badge: Badge) -> str:
    return badge.status if badge.status in BADGE_STATUSES else ""


def fmt(value: Any, spec: str) -> str:
    """``format(value, spec)``: a format specification in a template (``x | fmt(".0%")``)."""
    return format(value, spec)


def markdown_cell(text: Any) -> str:
    """Text that stays inside one Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def environment() -> Environment:
    """The Jinja2 environment of the package's templates: autoescape for ``*.html.j2``, none
    for ``*.md.j2`` (Markdown cells go through the ``md`` filter)."""
    env = Environment(loader=PackageLoader("sbc.render", "templates"),
                      autoescape=select_autoescape(enabled_extensions=("html.j2",),
                                                   default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters.update(png=png_base64, table_view=table_view, fmt=fmt, md=markdown_cell,
                       badge_class=badge_class, explain=explain)
    return env


_ENV = environment()


def report_html(report) -> str:
    """report.html of a :class:`sbc.report.Report`."""
    return _ENV.get_template("report.html.j2").render(report=report)


def summary_markdown(summary: StudySummary) -> str:
    """summary.md of a :class:`sbc.summarize.StudySummary`."""
    return _ENV.get_template("summary.md.j2").render(s=summary)


def results_html(name: str, directory: str, verdict, table: pd.DataFrame, n_replicates: int) -> str:
    """The HTML a notebook shows for :class:`sbc.results.Results`: the overall verdict and
    one row per model x design."""
    from sbc.summarize import Badge

    badge = Badge.of(verdict) if verdict is not None else None
    return _ENV.get_template("results.html.j2").render(
        name=name, directory=directory, verdict=verdict, badge=badge, table=table,
        n_replicates=n_replicates)


def plan_results_html(name: str, directory: str, recommended: str, table: pd.DataFrame) -> str:
    """The HTML a notebook shows for :class:`sbc.results.PlanResults`."""
    return _ENV.get_template("plan_results.html.j2").render(
        name=name, directory=directory, recommended=recommended, table=table)


def plan_page(plan, table: pd.DataFrame, recommended, fits: dict,
              curves: Figure | None = None,
              dimensions: Sequence[str] = PLAN_DIMENSIONS) -> str:
    """report.html of a design plan.

    plan: the :class:`sbc.plan.Plan` (name, description, model, targets, probability, cost,
    search, monotone).  table: one row per design (``DesignResult.row()``; a ``rows`` column
    is not shown).  recommended: the recommended ``DesignResult`` or None.  fits: the fit
    counts of ``run_plan`` (used, new, full_grid, designs, separate, saved_share,
    design_prior).  curves: the probability-of-success figure, by default
    :func:`plan_curves_figure` of ``table`` over ``dimensions``.
    """
    if curves is None:
        curves = plan_curves_figure(table, plan.probability, dimensions)
    shown = table.drop(columns=[c for c in ("rows",) if c in table])
    return _ENV.get_template("plan.html.j2").render(
        plan=plan, table=shown, recommended=recommended, fits=fits, curves=curves)


def check_page(result) -> str:
    """check.html of a model check against real data (:class:`sbc.model_check.CheckResult`):
    verdicts, the statistics table of each model, genes and cell lines that misfit, the LOO
    comparison, and the figures (test statistics, LOO-PIT)."""
    statistics_fig, pit_fig = result.plot_statistics(), result.plot_loo_pit()
    comparison = None
    if result.comparison is not None:
        comparison = result.comparison.reset_index(names="model")[
            ["model", "rank", "elpd", "p", "elpd_diff", "se", "dse", "weight"]]
    return _ENV.get_template("check.html.j2").render(
        result=result, badge=lambda v: Badge("pass" if v == "adequate" else "fail", v),
        statistics_fig=statistics_fig, pit_fig=pit_fig, comparison=comparison)


def genome_plan_summary(plan, table: pd.DataFrame, recommended, fits: dict, seconds: float,
                        pilot=None, screens: dict | None = None) -> str:
    """The plan's outcome as Markdown: the recommendation, the targets, the priors a pilot
    gave, the evaluated designs and, given their screen records (``screens``: design label
    -> rep -> record), how well P(essential) works as a decision probability
    (:func:`sbc.plan.genome.essential_decisions`)."""
    unit = plan.cost.unit
    lines = [f"# {plan.name}", "", plan.description, ""]
    if recommended is None:
        lines.append("No design meets the targets with the stated confidence.")
    else:
        r = recommended
        d = r.design
        lines.append(f"Recommended: **{d.cell_lines} cell lines x {d.reps} replicates, "
                     f"{d.guides} guides per gene, {d.depth} reads per guide, {d.genes:,} "
                     f"genes**; cost {r.cost:.4g} {unit}; P(success) = {r.probability:.2f} "
                     f"[{r.lower:.2f}, {r.upper:.2f}] from {r.n} simulated screens; SBC "
                     f"{r.calibration}.")
    lines += ["", "Targets (all must be met in a screen):", ""]
    lines += [f"{i}. {t.describe()}" for i, t in enumerate(plan.targets)]
    if pilot is not None:
        from sbc.plan.genome_pilot import describe_prior

        lines += ["", f"Priors (design and analysis) from the pilot `{plan.pilot.data}` "
                  f"({pilot.format}); the rest are the plan's:", "",
                  "| hyperparameter | plan's prior | pilot's prior | pilot posterior mean "
                  "[5 %, 95 %] |", "|---|---|---|---|"]
        for name, post in pilot.posterior.items():
            lines.append(f"| {name} | {describe_prior(pilot.base[name])} | "
                         + (describe_prior(pilot.priors[name]) if name in pilot.priors
                            else "(not used)")
                         + f" | {post['mean']:.3g} [{post['q05']:.3g}, {post['q95']:.3g}] |")
        if "library_sd" in pilot.used:
            lines.append(f"| library sd | {pilot.library['replaced_library_sd']:.3g} | "
                         f"{plan.library_sd:.3g} | |")
        lines += [f"- {n}" for n in pilot.notes]
    lines += ["", f"Screens simulated: {fits['used']} ({fits['new']} new) of "
              f"{fits['full_grid']} for the full grid; {seconds:.0f} s.", ""]
    done = table[table["simulations"] > 0]
    cols = ["design", "cost", "status", "simulations", "p_success", "p_lower", "p_upper",
            *[f"metric{i}" for i in range(len(plan.targets))], "fdp_at_0.05", "calibration"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in done[cols].itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                       for v in row) + " |")
    if screens:
        from sbc.plan.genome import essential_decisions

        found = {}
        for label, n in zip(done["design"], done["simulations"]):
            have = screens.get(label, {})
            found[label] = essential_decisions([have[r] for r in range(int(n)) if r in have])
        found = {k: v for k, v in found.items() if v is not None}
        if found:
            lines += ["", "## P(essential) as a decision probability", "",
                      "Brier score of every gene's P(essential) with its decomposition "
                      "(10 bins; reliability 0 when calibrated); per gene: Spiegelhalter's z "
                      "on one gene per screen (the PIT gene, so outcomes are independent); "
                      "per screen: z = (essential count - sum of P(essential)) / sd, with the "
                      "count's posterior variance (hyperparameter uncertainty included; sd 1 "
                      "when calibrated) and with sum p (1 - p), which treats the genes as "
                      "independent and so overstates the spread.  p: two-sided.", "",
                      "| design | screens | Brier | reliability | resolution | uncertainty "
                      "| per-gene z (p) | count z mean, sd (p) | count z sd, genes "
                      "independent |", "|" + "---|" * 9]
            for label, e in found.items():
                b, g, c, ci = e["brier"], e["per_gene"], e["count"], e["count_independent"]
                lines.append(f"| {label} | {e['screens']} | {b.score:.4f} | "
                             f"{b.reliability:.2g} | {b.resolution:.4f} | "
                             f"{b.uncertainty:.4f} | {g.statistic:.2f} ({g.p_value:.2g}) | "
                             f"{c.mean:+.2f}, {c.sd:.2f} ({c.p_value:.2g}) | {ci.sd:.2f} |")
            label = recommended.design.label if recommended is not None and \
                recommended.design.label in found else next(iter(found))
            t = found[label]["table"]
            lines += ["", f"Reliability of P(essential), `{label}`, every gene of its "
                      f"{found[label]['screens']} screens ({t.level:.0%} intervals, "
                      "screens as clusters):", "",
                      "| P(essential) | genes | mean P(essential) | share essential | "
                      "interval |", "|---|---|---|---|---|"]
            for r in t.rows():
                lines.append(f"| {r['bin']} | {r['count']:,} | {r['mean_predicted']:.4f} | "
                             f"{r['observed']:.4f} | [{r['lower']:.4f}, {r['upper']:.4f}] |")
    return "\n".join(lines) + "\n"
