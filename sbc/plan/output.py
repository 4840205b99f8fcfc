"""What a plan writes: the table of designs, the curves of P(target met), the HTML page and
the JSON form of its results."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sbc.plan.config import DIMENSIONS, Plan
from sbc.plan.search import DesignResult

def result_table(results: list[DesignResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in sorted(results, key=lambda r: (r.cost, r.design))])


def curves_png(table: pd.DataFrame, probability: float) -> str:
    """P(success) with its MC interval against each varied dimension (base64 PNG)."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table["simulations"] > 0]
    dims = [d for d in DIMENSIONS if done[d].nunique() > 1] or ["cell_lines"]
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 3.6), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        others = [d for d in DIMENSIONS if d != dim]
        for key, block in done.groupby(others):
            block = block.sort_values(dim)
            label = ", ".join(f"{o}={v}" for o, v in zip(others, key))
            x, p = block[dim].to_numpy(), block["p_success"].to_numpy()
            err = np.vstack([p - block["p_lower"], block["p_upper"] - p])
            ax.errorbar(x, p, yerr=err, marker="o", capsize=3, label=label)
        ax.axhline(probability, color="grey", ls="--", lw=1)
        ax.set_xlabel(dim.replace("_", " "))
        ax.set_ylabel("P(target met)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def report_html(plan: Plan, table: pd.DataFrame, recommended: DesignResult | None,
                fits: dict) -> str:
    from sbc import report as R

    s = plan.search
    targets = "".join(f"<li>{R.esc(t.describe())}</li>" for t in plan.targets)
    parts = [f"<h1>Design plan: {R.esc(plan.name)}</h1>",
             f"<p>{R.esc(plan.description)}</p>" if plan.description else "",
             f"<p>Analysis model <b>{R.esc(plan.model)}</b>; truths simulated from "
             f"<b>{R.esc(fits['design_prior'])}</b>. Target, with probability at least "
             f"<b>{plan.probability:.0%}</b>:</p><ul>{targets}</ul>"]
    if recommended is not None:
        r = recommended
        parts.append(
            f"<p class='note'>Recommended: <b>{r.design.n_cell_lines} cell lines x "
            f"{r.design.n_genes} genes x {r.design.n_reps} replicates</b> (cost {r.cost:g} "
            f"{R.esc(plan.cost.unit)}): P(target met) = {r.probability:.2f}, "
            f"{s.confidence:.0%} Wilson interval [{r.lower:.2f}, {r.upper:.2f}] from {r.n} "
            f"simulated screens; SBC calibration: <span class='pass'>{R.esc(r.calibration)}"
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
                 + R.img_html(curves_png(table, plan.probability),
                              "probability of success against design dimensions")
                 + f"<p>Bars: {s.confidence:.0%} Wilson intervals (Monte Carlo error). "
                   "Dashed line: required probability.</p>")
    shown = table.drop(columns=[c for c in ("rows",) if c in table])
    parts.append("<h2>All designs</h2>" + R.table_html(shown))
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
    return R.page(f"Design plan: {plan.name}", "".join(parts))


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
