"""The tables of a model x design section of the study report: parameter groups, scalars,
the model-bug-or-computation check, sampler diagnostics, the most extreme fits, the fits
that did not move and the calibration of the sign decisions.  Each is a DataFrame whose
verdict and p-value cells are :class:`~sbc.summarize.Badge` and
:class:`~sbc.summarize.PValue` (rendered by :mod:`sbc.render`); :mod:`sbc.report` arranges
them into sections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sbc import decisions
from sbc.calibration import LEVELS, at_floor
from sbc.stats import holm
from sbc.summarize import Badge, PValue
from sbc.verdicts import ALPHA, SHAPE_TEXT, Verdict

EXTREME_LISTED = 10  # the fits of largest |z| listed per model x design
EXTREME_BY_RANK = 3  # and those of the smallest and of the largest fractional rank
DEGENERATE_LISTED = 20  # fits that did not move listed per model x design
DEGENERATE_SCALARS = 8  # scalars whose prior percentile is shown for them


@dataclass(frozen=True)
class ComputationCheck:
    """Model bug or computation: the worst element of each failing group in flagged and
    clean fits, the cause the engine names, and the verdict without flagged fits."""

    table: pd.DataFrame
    cause_kind: str
    cause_evidence: str
    n_flagged: int
    changes: bool
    clean: Badge


def coverage_header(level: float, n: float) -> str:
    """A coverage column's header with its Monte Carlo error: 1.96 binomial standard errors
    at the nominal level for n fits, the spread simulation noise alone gives a calibrated
    parameter (every row of a table shares the fits, so the error is the column's)."""
    error = 1.96 * np.sqrt(level * (1 - level) / max(float(n), 1.0))
    return f"cov {round(level * 100)}% ±{error:.3f}"


def _coverage_columns(frame: pd.DataFrame, n: pd.Series) -> dict[str, pd.Series]:
    n_fits = float(n.median()) if len(n) else 1.0
    return {coverage_header(lv, n_fits): frame[f"cov{round(lv * 100)}"].to_numpy(float)
            for lv in LEVELS}


def group_table(groups: pd.DataFrame, scalars: pd.DataFrame) -> pd.DataFrame:
    n = groups["group"].map(scalars.groupby("group")["n_used"].median()).fillna(0)
    bound = groups["at_floor"].astype(bool)
    return pd.DataFrame({
        "parameter / group": groups["group"], "kind": groups["kind"],
        "elements": groups["elements"],
        "p (pooled)": [PValue(p, b) for p, b in zip(groups["p_pooled"], bound)],
        "Holm p": [PValue(p, b) for p, b in zip(groups["p_holm"], bound)],
        "result": [Badge("fail" if f else "pass") for f in groups["fails"]],
        "worst element": groups["worst"],
        "worst p": [PValue(p, b) for p, b in zip(groups["worst_p"], bound)],
        "shape": [SHAPE_TEXT.get(s, s) if f else "" for s, f in
                  zip(groups["worst_shape"], groups["fails"])],
        **_coverage_columns(groups, n),
        "robust sd(z)": groups["z_sd"], "contraction": groups["contraction"], "RMSE": groups["rmse"]})


SCALAR_COLUMNS = {"name": "name", "n_used": "n", "p_value": "p", "shape": "shape (p<0.05)",
                  "rank_mean": "mean u", "rank_var": "var u", "cov50": "cov 50%",
                  "cov80": "cov 80%", "cov90": "cov 90%", "cov95": "cov 95%", "bias": "bias",
                  "rmse": "RMSE", "z_median": "median z", "z_sd": "robust sd(z)",
                  "contraction_median": "contraction", "p_clean": "p clean",
                  "n_clean": "n clean"}


def scalar_table(scalars: pd.DataFrame, n_sim: int) -> pd.DataFrame:
    """One row per scalar; p-values at the Monte Carlo floor 1 / (n_sim + 1) shown as bounds,
    coverage with its Monte Carlo error."""
    columns = {k: v for k, v in SCALAR_COLUMNS.items() if not k.startswith("cov")}
    table = scalars[list(columns)].rename(columns=columns)
    for column in ("p", "p clean"):
        table[column] = pvalues(table[column], n_sim)
    at = table.columns.get_loc("var u") + 1
    for i, (column, values) in enumerate(_coverage_columns(scalars, scalars["n_used"]).items()):
        table.insert(at + i, column, values)
    return table


def pvalues(values, n_sim: int) -> list[PValue]:
    """Uniformity p-values as shown: at the Monte Carlo floor 1 / (n_sim + 1) a bound."""
    return [PValue(p, at_floor(p, n_sim)) for p in values]


def extremes_table(block: pd.DataFrame) -> pd.DataFrame:
    """The fits behind the outliers of a model x design, with the replicate to look up: the
    largest posterior |z| (truth far from the posterior mean, largest first), then the
    smallest and the largest fractional ranks (truth in a posterior tail) not listed yet."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (block["mean"] - block["truth"]) / block["sd"]
    fits = block.assign(z=z, az=z.abs())
    fits = fits[np.isfinite(fits["az"])]
    picks = [("largest |z|", fits.sort_values("az", ascending=False, kind="stable"),
              EXTREME_LISTED),
             ("smallest u", fits.sort_values("u", kind="stable"), EXTREME_BY_RANK),
             ("largest u", fits.sort_values("u", ascending=False, kind="stable"),
              EXTREME_BY_RANK)]
    chosen, why = [], []
    for reason, ordered, count in picks:
        new = [i for i in ordered.index if i not in set(chosen)][:count]
        chosen += new
        why += [reason] * len(new)
    worst = fits.loc[chosen]
    return pd.DataFrame({"parameter": worst["name"].to_numpy(), "replicate": worst["rep"].to_numpy(),
                         "listed for": why, "u": worst["u"].to_numpy(float),
                         "z": worst["z"].to_numpy(float), "truth": worst["truth"].to_numpy(float),
                         "posterior mean": worst["mean"].to_numpy(float),
                         "posterior sd": worst["sd"].to_numpy(float),
                         "sampler warning": ["yes" if f else "no" for f in worst["flagged"]]})


def computation_check(groups: pd.DataFrame, scalars: pd.DataFrame, verdict: Verdict,
                      clean_verdict: Verdict, diag, n_sim: int) -> ComputationCheck | None:
    """None when no group fails."""
    failing = groups[groups["fails"]]
    if failing.empty:
        return None
    worst = scalars.set_index("name").loc[failing["worst"]].reset_index()
    frame = pd.DataFrame({
        "element": worst["name"], "p all fits": pvalues(worst["p_value"], n_sim),
        "n flagged": worst["n_flagged"], "p flagged": pvalues(worst["p_flagged"], n_sim),
        "n clean": worst["n_clean"], "p clean": pvalues(worst["p_clean"], n_sim),
        "extremeness flagged": worst["extreme_flagged"],
        "extremeness clean": worst["extreme_clean"],
        "Mann-Whitney p": worst["assoc_p"], "correlation": worst["assoc_r"]})
    cause = verdict.cause
    return ComputationCheck(frame, cause.kind if cause else "", cause.evidence if cause else "",
                            diag["ok"] - diag["clean"], clean_verdict.status != verdict.status,
                            Badge(clean_verdict.status, note=clean_verdict.reason))


def diagnostics_table(diag) -> pd.DataFrame:
    return pd.DataFrame([{
        "fits": diag["fits"], "failed": diag["failed"], "ok": diag["ok"],
        "divergent": f"{diag['divergent']:.0%}", "max treedepth hit": f"{diag['treedepth']:.0%}",
        "R-hat > 1.01": f"{diag['rhat']:.0%}", "low ESS": f"{diag['low_ess']:.0%}",
        "rescued (refitted)": f"{diag.get('rescued', 0.0):.0%}",
        "did not move (degenerate, ranked)": f"{diag.get('degenerate', 0.0):.1%}",
        "any warning (after rescue)": f"{diag['flagged']:.0%}",
        "failed fits by reason": diag.get("failures", "") or "none",
        "median ranked draws": diag["median_ranked"],
        "median seconds / fit": diag["median_seconds"]}])


def degenerate_table(block: pd.DataFrame) -> pd.DataFrame | None:
    """Where in the prior the fits that did not move come from: per such replicate, the
    percentile of each scalar parameter's truth among the truths of every fit of this model x
    design (None when there are none).  Scalars of one-element groups (the hyperparameters)
    are shown; a model without any shows its first scalars."""
    if "degenerate" not in block or not block["degenerate"].any():
        return None
    block = block[block["kind"] == "parameter"] if "kind" in block else block
    sizes = block.groupby("group")["name"].nunique()
    names = [n for n in dict.fromkeys(block["name"]) if sizes.get(n, 0) == 1] or \
        list(dict.fromkeys(block["name"]))[:DEGENERATE_SCALARS]
    names = names[:DEGENERATE_SCALARS]
    truths = block[block["name"].isin(names)].pivot_table(index="rep", columns="name",
                                                          values="truth")[names]
    pct = truths.rank(pct=True) * 100
    stuck = sorted(block.loc[block["degenerate"], "rep"].unique())[:DEGENERATE_LISTED]
    table = pct.loc[stuck].round(0).astype(int).astype(str) + " %"
    table.columns = [f"{n} (percentile of truth)" for n in table.columns]
    return table.reset_index().rename(columns={"rep": "replicate"})


@dataclass(frozen=True)
class DecisionCheck:
    """The calibration of the sign decisions of a model x design: one row per parameter
    group whose event "below zero" says something (``table``), the reliability table of
    each (``reliability``: event -> table) and the level of the pass/fail (``alpha``)."""

    table: pd.DataFrame
    reliability: dict[str, pd.DataFrame]
    alpha: float


def _event(block: pd.DataFrame, group: str, column: str = "p_below_zero"
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """P(theta < c) and whether theta < c, (replicates, elements) of one group: c = 0 for
    ``p_below_zero``, the model's declared threshold for ``p_below_threshold``; only
    replicates with every probability recorded, only elements whose probability is not
    always its outcome (a positive parameter's P(theta < 0): always 0 and false, nothing to
    check)."""
    rows = block[block["group"] == group]
    p = rows.pivot(index="rep", columns="name", values=column)
    cut = 0.0 if column == "p_below_zero" else \
        rows.pivot(index="rep", columns="name", values="threshold")
    y = (rows.pivot(index="rep", columns="name", values="truth") < cut).astype(float)
    complete = p.notna().all(axis=1).to_numpy()
    p, y = p[complete], y[complete]
    says = ~(p.to_numpy() == y.to_numpy()).all(axis=0)
    return p.loc[:, says], y.loc[:, says]


def _interval(lower: float, upper: float) -> str:
    """A bin's interval as shown; empty where it has none (fewer than two fits in the bin)."""
    return f"[{lower:.3f}, {upper:.3f}]" if np.isfinite(lower) and np.isfinite(upper) else ""


def decision_check(block: pd.DataFrame, alpha: float = ALPHA) -> DecisionCheck | None:
    """Are the probabilities of the event "below zero" calibrated, for every parameter
    group of a model x design (``block``: its parameters table), and those of "below c"
    for the groups whose model declares a threshold c (``THRESHOLDS``)?  The probability
    is the share of a fit's posterior draws below zero (``p_below_zero``) or c
    (``p_below_threshold``), the outcome whether its truth is;
    :func:`sbc.decisions.event_calibration` tests each event (Spiegelhalter over the
    replicates, Bonferroni over its elements) and Holm over the events keeps the chance of
    any false 'fail' in this model x design at most ``alpha``.  None when the store's
    records predate ``p_below_zero``."""
    if "p_below_zero" not in block or not block["p_below_zero"].notna().any():
        return None
    block = block[block["kind"] == "parameter"] if "kind" in block else block
    events = [(g, "p_below_zero", "0") for g in dict.fromkeys(block["group"])]
    if "p_below_threshold" in block:  # the decisions the model declares (THRESHOLDS)
        declared = block[block["p_below_threshold"].notna()]
        for g, cut in declared.groupby("group", sort=False)["threshold"].first().items():
            events.append((g, "p_below_threshold", f"{cut:g}"))
    rows, tables = [], {}
    for group, column, cut in events:
        p, y = _event(block, group, column)
        if p.shape[1] == 0 or len(p) < 2:
            continue
        event = f"{group} < {cut}" if list(p.columns) == [group] else f"{group}[i] < {cut}"
        cal = decisions.event_calibration(p.to_numpy(), y.to_numpy())
        b, worst = cal.brier, cal.tests[cal.worst]
        rows.append({"event": event, "elements tested": p.shape[1], "decision fits": len(p),
                     "share true": float(y.to_numpy().mean()), "Brier": b.score,
                     "Brier reliability": b.reliability, "Brier resolution": b.resolution,
                     "Brier uncertainty": b.uncertainty, "Spiegelhalter z": worst.statistic,
                     "decision p": cal.p_value})
        tables[event] = pd.DataFrame([
            {"P(event)": r["bin"], "pairs": r["count"], "mean P(event)": r["mean_predicted"],
             "share true": r["observed"], "interval": _interval(r["lower"], r["upper"])}
            for r in cal.table.rows()])
    table = pd.DataFrame(rows, columns=["event", "elements tested", "decision fits",
                                        "share true", "Brier", "Brier reliability",
                                        "Brier resolution", "Brier uncertainty",
                                        "Spiegelhalter z", "decision p"])
    adjusted = holm(table["decision p"].to_numpy(float))
    table["decision Holm p"] = adjusted
    table["decision result"] = [Badge("fail" if q <= alpha else "pass") if np.isfinite(q)
                                else Badge("inconclusive", note="nothing to test")
                                for q in adjusted]
    return DecisionCheck(table, tables, alpha)
