"""Summaries: stored ranks and records -> per-parameter statistics, verdicts and report sections.

Data flow: the parameters table (one row per replicate x scalar) -> fractional ranks with each
replicate's true number of ranked draws -> per-scalar statistics (uniformity, failure shape,
coverage, recovery, relation to sampler warnings) -> per-group p-values (exchangeable
elements such as all ``alpha_g[i]`` combined with :func:`sbc.stats.pooled_pvalue`) -> Holm over
every (model, design, group) test of the report -> a verdict per model x design, per model and
overall, each with its reason.  The same is recomputed on the fits without sampler warnings.

Everything here is plain pandas / NumPy; HTML comes from :mod:`sbc.report`, figures from
:mod:`sbc.plots`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from sbc import stats

ALPHA = 0.05  # family-wise error rate of the whole report
LEVELS = (0.5, 0.8, 0.9, 0.95)
MIN_OK = 20  # fewer successful fits than this: no verdict
MIN_SIDE = 5  # fewest flagged and clean fits for comparing the two
MAX_N_SIM = 100_000  # cap on the null simulations behind each uniformity p-value
FLAG_COLUMNS = ("flag_divergent", "flag_low_ess", "flag_rhat")

SHAPE_TEXT = {
    "ok": "no clear shape",
    "too_narrow": "too narrow (U-shaped ranks: posterior overconfident)",
    "too_wide": "too wide (hump-shaped ranks: posterior underconfident)",
    "biased_low": "biased low (ranks high: posterior underestimates)",
    "biased_high": "biased high (ranks low: posterior overestimates)",
}


@dataclass(frozen=True)
class Verdict:
    """Calibration verdict of one model x design (or of a model, or of the study)."""

    status: str  # "pass" | "fail" | "inconclusive"
    reason: str
    failing: tuple[str, ...] = ()
    recommendation: str = ""


@dataclass(frozen=True)
class Summary:
    """All statistics of a study.

    scalars: one row per (model, design, scalar name); groups: one row per (model, design,
    group) with the pooled and Holm-adjusted p-values; diagnostics: one row per (model,
    design); verdicts: (model, design) -> Verdict on all successful fits; verdicts_clean: the
    same on fits without sampler warnings; n_sim: null simulations per uniformity p-value.
    """

    scalars: pd.DataFrame
    groups: pd.DataFrame
    groups_clean: pd.DataFrame
    diagnostics: pd.DataFrame
    verdicts: dict
    verdicts_clean: dict
    n_sim: int
    alpha: float


# --------------------------------------------------------------------------------------
# Per-scalar statistics
# --------------------------------------------------------------------------------------


def with_fractional_ranks(params: pd.DataFrame, reps: pd.DataFrame) -> pd.DataFrame:
    """The parameters table plus ``u`` (fractional rank from the replicate's own n_ranked)
    and ``flagged`` (the replicate had a divergence, low ESS or high R-hat).

    ``u`` is the randomised PIT (rank + V) / (n_ranked + 1), V ~ U(0, 1) keyed by the row:
    exactly uniform under calibration.  The midpoint (rank + 1/2) / (n_ranked + 1) is not,
    and with few ranked draws the gamma test sees its steps: with n_ranked = 19 and 300
    replicates it rejects a calibrated parameter nearly always.
    """
    out = params.copy()
    out["u"] = stats.table_fractional_ranks(out)
    flags = reps[["model", "design", "rep"]].copy()
    flags["flagged"] = reps[list(FLAG_COLUMNS)].fillna(False).astype(bool).any(axis=1)
    out = out.merge(flags, on=["model", "design", "rep"], how="left")
    out["flagged"] = out["flagged"].fillna(False).astype(bool)
    return out


def choose_n_sim(params: pd.DataFrame, alpha: float = ALPHA) -> int:
    """Null simulations per p-value, so that a clear failure can survive the corrections.

    A Monte Carlo p-value is >= 1 / (n_sim + 1); after Bonferroni within a group of k
    elements and Holm over G groups it is >= G k / (n_sim + 1), which must stay well below
    alpha.  Asks for G k / (n_sim + 1) <= alpha / 2, between 4000 and 100 000.
    """
    if params.empty:
        return stats.DEFAULT_N_SIM
    per_group = params.groupby(["model", "design", "group"])["name"].nunique()
    need = 2.0 * len(per_group) * int(per_group.max()) / alpha
    return int(min(MAX_N_SIM, max(stats.DEFAULT_N_SIM, 1000 * math.ceil(need / 1000))))


def _association(u: np.ndarray, flagged: np.ndarray) -> tuple[float, float, float, float]:
    """Are extreme ranks more common in flagged fits?  Extremeness |2u - 1| (0: the truth
    at the posterior median, 1: outside all draws).  Returns (mean extremeness flagged,
    mean extremeness clean, one-sided Mann-Whitney p (flagged more extreme), point-biserial
    correlation); NaN where a side is empty."""
    ext = np.abs(2.0 * u - 1.0)
    a, b = ext[flagged], ext[~flagged]
    if len(a) == 0 or len(b) == 0:
        return (float(a.mean()) if len(a) else math.nan,
                float(b.mean()) if len(b) else math.nan, math.nan, math.nan)
    p = float(mannwhitneyu(a, b, alternative="greater").pvalue)
    r = float(np.corrcoef(ext, flagged.astype(float))[0, 1]) if ext.std() > 0 else math.nan
    return float(a.mean()), float(b.mean()), p, r


def _uniformity(u: np.ndarray, n_sim: int, alpha: float) -> stats.UniformityResult | None:
    return stats.uniformity_test(u, alpha=alpha, n_sim=n_sim) if len(u) >= 2 else None


def scalar_row(rows: pd.DataFrame, n_sim: int, alpha: float = ALPHA) -> dict:
    """Statistics of one scalar of one (model, design) from its rows of the parameters
    table (one per successful replicate, with ``u`` and ``flagged``)."""
    rows = rows[rows["u"].notna()]
    u = rows["u"].to_numpy(float)
    flagged = rows["flagged"].to_numpy(bool)
    out: dict = {"n_used": len(u), "n_flagged": int(flagged.sum()),
                 "n_ranked_median": float(rows["n_ranked"].median()) if len(rows) else math.nan}
    test = _uniformity(u, n_sim, alpha)
    out["p_value"] = test.p_value if test else math.nan
    out["statistic"] = test.statistic if test else math.nan
    out["rank_mean"] = float(u.mean()) if len(u) else math.nan
    out["rank_var"] = float(u.var()) if len(u) else math.nan
    zm, zv = stats.moment_zscores(u) if len(u) >= 2 else (math.nan, math.nan)
    out["z_rank_mean"], out["z_rank_var"] = zm, zv
    out["shape"] = stats.failure_shape(u) if test and test.p_value < alpha else "ok"
    cov = stats.coverage(u, LEVELS) if len(u) else None
    for i, level in enumerate(LEVELS):
        tag = f"cov{round(level * 100)}"
        out[tag] = float(cov.coverage[i]) if cov else math.nan
        out[f"{tag}_lo"] = float(cov.lower[i]) if cov else math.nan
        out[f"{tag}_hi"] = float(cov.upper[i]) if cov else math.nan
    if len(u) >= 2:
        rec = stats.recovery(rows["truth"].to_numpy(float), rows["mean"].to_numpy(float),
                             rows["sd"].to_numpy(float))
        with np.errstate(invalid="ignore"):
            out.update(bias=float(rec.bias), rmse=float(rec.rmse), prior_sd=float(rec.prior_sd),
                       z_mean=float(np.nanmean(rec.z)), z_sd=float(np.nanstd(rec.z, ddof=1)),
                       contraction_median=float(np.nanmedian(rec.contraction)))
    else:
        out.update(bias=math.nan, rmse=math.nan, prior_sd=math.nan, z_mean=math.nan,
                   z_sd=math.nan, contraction_median=math.nan)
    clean = u[~flagged]
    test_clean = _uniformity(clean, n_sim, alpha)
    out["n_clean"] = len(clean)
    out["p_clean"] = test_clean.p_value if test_clean else math.nan
    test_flagged = _uniformity(u[flagged], n_sim, alpha)
    out["p_flagged"] = test_flagged.p_value if test_flagged else math.nan
    (out["extreme_flagged"], out["extreme_clean"], out["assoc_p"],
     out["assoc_r"]) = _association(u, flagged)
    return out


def scalar_statistics(params: pd.DataFrame, reps: pd.DataFrame, n_sim: int,
                      alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (model, design, scalar): see :func:`scalar_row`, plus the replicate
    counts of the (model, design) (failed fits are counted, never ranked)."""
    counts = reps.groupby(["model", "design"]).agg(
        n_reps=("rep", "size"), n_failed=("status", lambda s: int((s != "ok").sum())))
    rows = []
    for (model, design, name), block in params.groupby(["model", "design", "name"], sort=True):
        first = block.iloc[0]
        row = {"model": model, "design": design, "name": name, "group": first["group"],
               "kind": first["kind"]}
        n_reps, n_failed = counts.loc[(model, design)] if (model, design) in counts.index \
            else (len(block), 0)
        row.update(n_reps=int(n_reps), n_failed=int(n_failed))
        row.update(scalar_row(block, n_sim, alpha))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# Groups and the multiplicity correction
# --------------------------------------------------------------------------------------


def group_statistics(scalars: pd.DataFrame, p_column: str = "p_value",
                     alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (model, design, group): Bonferroni-pooled p-value of its elements
    (:func:`sbc.stats.pooled_pvalue`), Holm over all groups of the report, pass/fail, and
    the worst element with its failure shape."""
    rows = []
    for (model, design, group), block in scalars.groupby(["model", "design", "group"], sort=False):
        p = block[p_column].to_numpy(float)
        worst = block.iloc[int(np.nanargmin(p))] if np.isfinite(p).any() else block.iloc[0]
        rows.append({
            "model": model, "design": design, "group": group, "kind": block["kind"].iloc[0],
            "elements": len(block), "p_pooled": stats.pooled_pvalue(p),
            "n_below_alpha": int(np.sum(p < alpha)), "worst": worst["name"],
            "worst_p": float(worst[p_column]), "worst_shape": worst["shape"],
            "cov50": block["cov50"].mean(), "cov90": block["cov90"].mean(),
            "cov95": block["cov95"].mean(), "z_sd": block["z_sd"].mean(),
            "contraction": block["contraction_median"].mean(), "rmse": block["rmse"].mean(),
        })
    groups = pd.DataFrame(rows)
    if groups.empty:
        return groups
    _, adjusted = stats.overall_verdict(groups["p_pooled"].to_numpy(float), alpha)
    groups["p_holm"] = adjusted
    groups["fails"] = groups["p_holm"] <= alpha
    return groups


# --------------------------------------------------------------------------------------
# Diagnostics and verdicts
# --------------------------------------------------------------------------------------


def diagnostics_table(reps: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, design): fits, failures and shares of fits with each warning."""
    rows = []
    for (model, design), block in reps.groupby(["model", "design"], sort=True):
        ok = block[block["status"] == "ok"]
        n_ok = len(ok)

        def share(mask, n=n_ok):
            return float(mask.sum()) / n if n else math.nan
        flagged = ok[list(FLAG_COLUMNS)].fillna(False).astype(bool).any(axis=1)
        rows.append({
            "model": model, "design": design, "fits": len(block), "failed": len(block) - n_ok,
            "ok": n_ok,
            "divergent": share(ok["n_divergent"].fillna(0) > 0),
            "treedepth": share(ok["n_treedepth"].fillna(0) > 0),
            "rhat": share(ok["flag_rhat"].fillna(False).astype(bool)),
            "low_ess": share(ok["flag_low_ess"].fillna(False).astype(bool)),
            "flagged": share(flagged), "clean": int((~flagged).sum()),
            "median_ranked": float(ok["n_ranked"].median()) if n_ok else math.nan,
            "median_seconds": float(block["wall_seconds"].median()),
        })
    return pd.DataFrame(rows)


def recommendation(diag: dict) -> str:
    """Concrete sampler / model settings to try, from the warning shares of one design."""
    tips = []
    if diag.get("divergent", 0) > 0:
        tips.append("raise [sampler] target_accept to 0.95; if divergences remain, use the "
                    "non-centered form of the group effects (as models/crispr_screen.py does "
                    "with Bambi's noncentered=True)")
    if diag.get("treedepth", 0) > 0:
        tips.append("raise [sampler] max_treedepth to 12")
    if diag.get("low_ess", 0) > 0 or diag.get("rhat", 0) > 0:
        tips.append("more tune and draws (e.g. tune = 2000, draws = 3000) or more chains; if "
                    "the ESS of some parameters stays low, reparametrize them (parameters "
                    "identified only through their sum, like the seed model's two hyper-means, "
                    "need a single intercept as in models/crispr_screen.py)")
    return "; ".join(tips)


def _names(groups: pd.DataFrame) -> str:
    parts = []
    for g in groups.itertuples():
        label = g.group if g.elements == 1 else f"{g.group} ({g.elements} elements, worst {g.worst})"
        parts.append(f"{label}: {SHAPE_TEXT.get(g.worst_shape, g.worst_shape)}, Holm p = {g.p_holm:.2g}")
    return "; ".join(parts)


def decide(groups: pd.DataFrame, groups_clean: pd.DataFrame, scalars: pd.DataFrame,
           diag: dict, alpha: float = ALPHA) -> Verdict:
    """Verdict of one (model, design) from its group tests (all fits and clean fits).

    inconclusive: fewer than MIN_OK successful fits, or every failing group is explained by
        sampler warnings (it passes on the clean fits, with >= MIN_OK of them, or its worst
        element's ranks are more extreme in flagged fits: one-sided Mann-Whitney p < alpha),
        or there are too few clean or flagged fits (< MIN_SIDE) to compare them;
    fail: some group fails, no fit had warnings or the failure is not explained by them
        ("model or code wrong");
    pass: no group fails after Holm.
    """
    n_ok, n_fits = diag["ok"], diag["fits"]
    failed_note = (f" {diag['failed']} of {n_fits} fits failed and are not ranked; "
                   "if failures depend on the parameters this can hide a problem."
                   if diag["failed"] > 0.1 * n_fits else "")
    if n_ok < MIN_OK:
        return Verdict("inconclusive", f"only {n_ok} successful fits of {n_fits} (need at "
                       f"least {MIN_OK}); run more simulations.{failed_note}")
    failing = groups[groups["fails"]]
    flagged_share = diag["flagged"]
    if failing.empty:
        note = ""
        if flagged_share > 0:
            note = (f" {flagged_share:.0%} of fits had sampler warnings (divergences, low ESS "
                    "or R-hat); see the diagnostics.")
        # Warnings with uniform ranks still deserve better settings: with more simulations
        # unreliable fits can bend the ranks (the seed model does at 300 per design).
        return Verdict("pass", f"no parameter group deviates from uniform ranks (Holm, "
                       f"family-wise {alpha:.0%}; smallest Holm p = {groups['p_holm'].min():.2g})."
                       f"{note}{failed_note}", (), recommendation(diag) if flagged_share > 0 else "")
    explained, persistent, unclear = [], [], []
    clean_fail = set(groups_clean.loc[groups_clean["fails"], "group"]) if len(groups_clean) else set()
    n_flagged = diag["ok"] - diag["clean"]
    for g in failing.itertuples():
        worst = scalars[scalars["name"] == g.worst].iloc[0]
        if n_flagged == 0:
            persistent.append(g.group)
        elif (diag["clean"] >= MIN_OK and g.group not in clean_fail) or worst["assoc_p"] < alpha:
            explained.append(g.group)
        elif min(diag["clean"], n_flagged) < MIN_SIDE:
            unclear.append(g.group)  # too few fits on one side to compare
        else:
            persistent.append(g.group)
    tip = recommendation(diag)
    if persistent:
        rows = failing[failing["group"].isin(persistent)]
        why = ("no fit had sampler warnings" if flagged_share == 0 else
               "the failure is not concentrated in fits with sampler warnings")
        extra = f" Also failing, with sampler warnings: {', '.join(explained)}." if explained else ""
        return Verdict("fail", f"{_names(rows)}. {why}: the model or its code is wrong "
                       f"(or the simulator and the fitted model differ).{extra}{failed_note}",
                       tuple(failing["group"]), tip if explained else "")
    if unclear:
        return Verdict("inconclusive", f"{_names(failing)}; {flagged_share:.0%} of fits had "
                       f"sampler warnings and only {diag['clean']} had none, too few to tell a "
                       "model bug from a computational problem; fix the sampler warnings "
                       f"first.{failed_note}", tuple(failing["group"]), tip)
    return Verdict("inconclusive", f"{_names(failing)}; these failures coincide with "
                   f"computational problems ({flagged_share:.0%} of fits flagged: divergent "
                   f"{diag['divergent']:.0%}, low ESS {diag['low_ess']:.0%}), so the sampler "
                   f"rather than the model may be at fault.{failed_note}",
                   tuple(failing["group"]), tip)


def decide_clean(groups_clean: pd.DataFrame, diag: dict) -> Verdict:
    """Verdict on fits without sampler warnings only (fewer than MIN_OK: inconclusive)."""
    if diag["clean"] < MIN_OK:
        return Verdict("inconclusive", f"only {diag['clean']} fits without warnings")
    failing = groups_clean[groups_clean["fails"]]
    if failing.empty:
        return Verdict("pass", f"{diag['clean']} fits without warnings")
    return Verdict("fail", f"{', '.join(failing['group'])} on {diag['clean']} fits without "
                   "warnings", tuple(failing["group"]))


def combine(verdicts: list[tuple[str, Verdict]]) -> Verdict:
    """Verdict of several (model, design) verdicts: fail if any fails, else inconclusive if
    any is, else pass."""
    if not verdicts:
        return Verdict("inconclusive", "no results")
    for status in ("fail", "inconclusive"):
        hit = [label for label, v in verdicts if v.status == status]
        if hit:
            return Verdict(status, f"{status} in {', '.join(hit)}")
    return Verdict("pass", f"all {len(verdicts)} model x design combinations pass")


def summarize(reps: pd.DataFrame, params: pd.DataFrame, alpha: float = ALPHA) -> Summary:
    """Every statistic and verdict of a study from its replicates and parameters tables."""
    params = with_fractional_ranks(params, reps)
    n_sim = choose_n_sim(params, alpha)
    scalars = scalar_statistics(params, reps, n_sim, alpha)
    groups = group_statistics(scalars, "p_value", alpha)
    groups_clean = group_statistics(scalars, "p_clean", alpha)
    diagnostics = diagnostics_table(reps)
    verdicts, verdicts_clean = {}, {}
    for diag in diagnostics.to_dict("records"):
        key = (diag["model"], diag["design"])

        def sel(frame, key=key):
            if frame.empty:
                return frame
            return frame[(frame["model"] == key[0]) & (frame["design"] == key[1])]
        if sel(scalars).empty:
            verdicts[key] = Verdict("inconclusive", f"no successful fits of {diag['fits']}")
            verdicts_clean[key] = verdicts[key]
            continue
        verdicts[key] = decide(sel(groups), sel(groups_clean), sel(scalars), diag, alpha)
        verdicts_clean[key] = decide_clean(sel(groups_clean), diag)
    return Summary(scalars, groups, groups_clean, diagnostics, verdicts, verdicts_clean, n_sim, alpha)


def summary_frame(summary: Summary) -> pd.DataFrame:
    """summary.csv: one row per (model, design, scalar) with all statistics, the group's
    pooled and Holm p-values and the verdicts of its (model, design)."""
    s = summary.scalars
    if s.empty:
        return s
    g = summary.groups[["model", "design", "group", "elements", "p_pooled", "p_holm", "fails"]]
    g = g.rename(columns={"elements": "group_size", "p_pooled": "group_p",
                          "p_holm": "group_p_holm", "fails": "group_fails"})
    out = s.merge(g, on=["model", "design", "group"], how="left")
    out["p_holm_scalar"] = stats.holm(out["p_value"].to_numpy(float))
    v = summary.verdicts
    vc = summary.verdicts_clean
    out["verdict"] = [v[(m, d)].status for m, d in zip(out["model"], out["design"])]
    out["verdict_reason"] = [v[(m, d)].reason for m, d in zip(out["model"], out["design"])]
    out["verdict_without_flagged"] = [vc[(m, d)].status for m, d in zip(out["model"], out["design"])]
    out["recommendation"] = [v[(m, d)].recommendation for m, d in zip(out["model"], out["design"])]
    return out


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


def build_report_body(manifest: dict, reps: pd.DataFrame, params: pd.DataFrame):
    """HTML body of report.html and the summary.csv frame (None when nothing is stored)."""
    from sbc import report

    if reps.empty or params.empty:
        return report.empty_body(manifest, reps), None
    summary = summarize(reps, params)
    return report.summary_body(manifest, summary, with_fractional_ranks(params, reps)), \
        summary_frame(summary)


def summary_markdown(manifest: dict, summary_df: pd.DataFrame) -> str:
    """summary.md: verdicts per model x design and overall, and the failing parameters."""
    study = manifest["study"]
    lines = [f"# SBC summary: {study['name']}", ""]
    sim = study.get("simulate_model")
    if sim and sim not in study["models"]:
        lines += [f"**Data simulated from `{sim}`, fitted with {', '.join(study['models'])}.**", ""]
    if summary_df is None or summary_df.empty:
        return "\n".join(lines + ["No successful fits stored."]) + "\n"
    per = summary_df.drop_duplicates(["model", "design"])
    verdicts = [(f"{r.model} {r.design}", Verdict(r.verdict, r.verdict_reason))
                for r in per.itertuples()]
    overall = combine(verdicts)
    lines += [f"**Overall: {overall.status}** ({overall.reason}).", "",
              f"Holm over all parameter groups of the report, family-wise error {ALPHA:.0%}.", "",
              "| model | design | verdict | without flagged fits | reason |",
              "|---|---|---|---|---|"]
    for r in per.itertuples():
        reason = r.verdict_reason.replace("|", "\\|").replace("\n", " ")
        if getattr(r, "recommendation", ""):
            reason += f" **Try:** {r.recommendation.replace('|', chr(92) + '|')}."
        lines.append(f"| {r.model} | {r.design} | {r.verdict} | {r.verdict_without_flagged} | {reason} |")
    fails = summary_df[summary_df["group_fails"].astype(bool)]
    if len(fails):
        lines += ["", "## Failing parameter groups", "",
                  "| model | design | group | Holm p | worst element | p | shape |",
                  "|---|---|---|---|---|---|---|"]
        for (m, d, g), block in fails.groupby(["model", "design", "group"], sort=False):
            w = block.sort_values("p_value").iloc[0]
            lines.append(f"| {m} | {d} | {g} | {w['group_p_holm']:.2g} | {w['name']} | "
                         f"{w['p_value']:.2g} | {w['shape']} |")
    return "\n".join(lines) + "\n"
