"""The plan page (report.html of ``sbc plan``): the plan, its recommendation, the curves of
P(target met) and the table of designs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from sbc.plots import plan_curves
from sbc.render.html import esc, img_html, page, table_html

if TYPE_CHECKING:
    from sbc.plan.config import Plan
    from sbc.plan.search import DesignResult


def plan_page(plan: Plan, table: pd.DataFrame, recommended: DesignResult | None,
                fits: dict) -> str:
    s = plan.search
    targets = "".join(f"<li>{esc(t.describe())}</li>" for t in plan.targets)
    parts = [f"<h1>Design plan: {esc(plan.name)}</h1>",
             f"<p>{esc(plan.description)}</p>" if plan.description else "",
             f"<p>Analysis model <b>{esc(plan.model)}</b>; truths simulated from "
             f"<b>{esc(fits['design_prior'])}</b>. Target, with probability at least "
             f"<b>{plan.probability:.0%}</b>:</p><ul>{targets}</ul>"]
    if recommended is not None:
        r = recommended
        parts.append(
            f"<p class='note'>Recommended: <b>{r.design.n_cell_lines} cell lines x "
            f"{r.design.n_genes} genes x {r.design.n_reps} replicates</b> (cost {r.cost:g} "
            f"{esc(plan.cost.unit)}): P(target met) = {r.probability:.2f}, "
            f"{s.confidence:.0%} Wilson interval [{r.lower:.2f}, {r.upper:.2f}] from {r.n} "
            f"simulated screens; SBC calibration: <span class='pass'>{esc(r.calibration)}"
            f"</span> ({r.calibration_n} analysis-prior fits).</p>")
    else:
        parts.append("<p class='note'><span class='fail'>No design of the space meets the "
                     "target with the stated confidence</span> (see the table: widen the "
                     "space or raise search.max_simulations for inconclusive designs).</p>")
    parts.append(
        f"<p>Fits used: <b>{fits['used']}</b> (this run: {fits['new']}) against "
        f"<b>{fits['full_grid']}</b> for the full grid of {fits['designs']} designs at "
        f"{s.max_simulations} simulations each"
        + (f" plus {s.calibration_simulations} calibration fits" if fits['separate'] else "")
        + f". Saved: {fits['saved_share']:.0%}.</p>")
    parts.append("<h2>Probability of success by design dimension</h2>"
                 + img_html(plan_curves(table, plan.probability),
                              "probability of success against design dimensions", dpi=90)
                 + f"<p>Bars: {s.confidence:.0%} Wilson intervals (Monte Carlo error). "
                   "Dashed line: required probability.</p>")
    shown = table.drop(columns=[c for c in ("rows",) if c in table])
    parts.append("<h2>All designs</h2>" + table_html(shown))
    parts.append(
        "<h2>How this was computed</h2><ul>"
        f"<li>Designs are visited cheapest first; each gets batches of {s.batch} simulated "
        f"screens until the {s.confidence:.0%} Wilson interval of P(target met) lies wholly "
        f"above or below {plan.probability:.0%}, or {s.max_simulations} are reached "
        "(inconclusive). Repeated looks make the stated confidence approximate.</li>"
        f"<li>Monotone in {', '.join(plan.monotone) or 'no dimension'}: a design no larger "
        "than a failing one is inferred to fail, one at least as large as a passing one to "
        "pass; these are marked 'inferred' and were not fitted.</li>"
        "<li>Failed fits count as not meeting the target. A design with more than "
        f"{s.max_flagged:.0%} failed or flagged fits, or whose SBC ranks are not uniform "
        f"(ECDF test per parameter, Holm over parameter groups at {s.alpha:g}), is flagged "
        "and never recommended.</li>"
        "<li>Posterior sd, width, contraction, bias and RMSE are for the first target's "
        "quantity, averaged over simulations and elements.</li></ul>")
    return page(f"Design plan: {plan.name}", "".join(parts))
