"""The calibration engine: stored ranks -> tests -> verdicts with a stated cause.

Every reader of a store (the report, ``sbc plan``, ``sbc.testing``, the terminal summary of
``sbc run``) judges calibration here and nowhere else, so they cannot disagree.

Data flow::

    parameters table (one row per replicate x scalar) + replicates table
      -> fractional ranks u (randomised PIT with each fit's own number of ranked draws)
      -> per-scalar uniformity test (stats.rank_test), shape, coverage, recovery
      -> per-group p-value (exchangeable elements, e.g. every alpha_g[i]: Bonferroni minimum)
      -> Holm over the *family* of group tests (below)
      -> a :class:`Verdict` per (model, design): the answer to "is this pipeline calibrated?"
         plus a separate :class:`Cause` answering "if not, why?"

The family.  ``family="study"`` (the report's default) corrects every group test of every
model and design together, so the chance that a calibrated study shows any false "fail"
anywhere is at most ``alpha``.  ``family="cell"`` corrects within each (model, design), so each
verdict on its own has false-fail rate ``alpha`` (what a planner judging one design at a time,
or a test of one model at one design, needs).  With one model and one design the two agree.

Verdict semantics.

- ``fail``: some group's ranks depart from uniform after the correction (coverage departures
  are departures of the ranks, so the same test covers them);
- ``pass``: none does; it carries warnings when a material share of fits was flagged by the
  sampler or failed, and when the study is too small to see a moderate miscalibration (the
  power to detect a 0.5-sd shift of one scalar is computed and stated);
- ``inconclusive``: fewer than :data:`MIN_FITS` successful fits, nothing to test.

The verdicts, the cause of a ``fail`` and the advice are decided in :mod:`sbc.verdicts` from
the tests computed here; :func:`calibrate` is the one entry point of both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from sbc import stats
from sbc.verdicts import (ALPHA, MIN_FITS, POWER_SHIFT, Cause, Verdict, combine, decide,
                          decide_clean, recommendation)

__all__ = [
    "ALPHA",
    "FAMILIES",
    "LEVELS",
    "MIN_FITS",
    "Calibration",
    "Cause",
    "Verdict",
    "at_floor",
    "calibrate",
    "combine",
    "diagnostics_table",
    "recommendation",
    "with_fractional_ranks",
]

FAMILIES = ("study", "cell")
LEVELS = (0.5, 0.8, 0.9, 0.95)
MAX_N_SIM = 100_000  # cap on the null simulations behind each uniformity p-value
FLAG_COLUMNS = ("flag_divergent", "flag_low_ess", "flag_rhat", "flag_degenerate")
KEY = ["model", "design"]


@dataclass(frozen=True)
class Calibration:
    """Every statistic and verdict of a store.

    scalars: one row per (model, design, scalar); groups: one row per (model, design, group)
    with the pooled and Holm-adjusted p-values; groups_clean: the same on fits without sampler
    warnings; diagnostics: one row per (model, design); verdicts: (model, design) ->
    :class:`Verdict`; verdicts_clean: the verdict the clean fits alone would get (a hint: the
    excluded fits are not a random subset); n_sim: null simulations per p-value; family:
    "study" or "cell"; n_tests: the number of group tests in each Holm family.
    """

    scalars: pd.DataFrame
    groups: pd.DataFrame
    groups_clean: pd.DataFrame
    diagnostics: pd.DataFrame
    verdicts: dict
    verdicts_clean: dict
    n_sim: int
    alpha: float
    family: str = "study"
    n_tests: dict = field(default_factory=dict)
    # (model, design) -> sbc.stopping.Outcome for a sequential study (empty otherwise)
    sequential: dict = field(default_factory=dict)
    # the replicates and parameters tables the verdicts rest on (a sequential study: each
    # cell's replicates up to its stop), so no reader selects them again
    reps: pd.DataFrame | None = field(default=None, repr=False)
    params: pd.DataFrame | None = field(default=None, repr=False)

    def verdict(self, model: str, design: str) -> Verdict:
        return self.verdicts[(model, design)]

    def overall(self) -> Verdict:
        return combine([(f"{m} {d}", v) for (m, d), v in self.verdicts.items()])

    def family_text(self) -> str:
        """The multiplicity family in words, for reports and messages."""
        if self.sequential:
            o = next(iter(self.sequential.values()))
            return (f"sequential: alpha {o.settings.alpha:.0%} split over the "
                    f"{len(self.sequential)} model x design combination(s), each watched after "
                    f"every replicate and judged once at its stopping point; the chance of any "
                    f"false 'fail' anywhere, at any look, is at most {o.settings.alpha:.0%}")
        if self.family == "study":
            n = sum(self.n_tests.values())
            return (f"Holm over all {n} group tests of the study: the chance of any false "
                    f"'fail' anywhere is at most {self.alpha:.0%}")
        return (f"Holm over the group tests of each model x design: each verdict's chance "
                f"of a false 'fail' is at most {self.alpha:.0%}")


# --------------------------------------------------------------------------------------
# Fractional ranks and per-scalar statistics
# --------------------------------------------------------------------------------------


def flagged_mask(reps: pd.DataFrame) -> pd.Series:
    """Fits with a sampler warning (divergence, low ESS, high R-hat, or a fit that did not
    move at all)."""
    cols = [c for c in FLAG_COLUMNS if c in reps]
    if not cols:
        return pd.Series(False, index=reps.index)
    return reps[cols].fillna(False).astype(bool).any(axis=1)


def with_fractional_ranks(params: pd.DataFrame, reps: pd.DataFrame) -> pd.DataFrame:
    """The parameters table plus ``u`` (randomised fractional rank from the replicate's own
    n_ranked, :func:`sbc.stats.table_fractional_ranks`) and ``flagged``.  A fitter whose
    posterior CDF is exact (the genome shortcut) gives its PIT as ``u`` directly; those rows
    keep it."""
    out = params.copy()
    given = out["u"].to_numpy(float) if "u" in out else np.full(len(out), np.nan)
    missing = ~np.isfinite(given)
    if missing.any():
        given[missing] = stats.table_fractional_ranks(out[missing])
    out["u"] = given
    flags = reps[["model", "design", "rep"]].copy()
    flags["flagged"] = flagged_mask(reps)
    flags["degenerate"] = reps["flag_degenerate"] if "flag_degenerate" in reps else False
    out = out.merge(flags, on=["model", "design", "rep"], how="left")
    for column in ("flagged", "degenerate"):
        out[column] = out[column].fillna(False).astype(bool)
    return out


def choose_n_sim(n_tests: int, largest_group: int, alpha: float) -> int:
    """Null simulations per p-value, so that a clear failure can survive the corrections.

    A Monte Carlo p-value is >= 1 / (n_sim + 1); after Bonferroni within a group of k
    elements and Holm over G tests it is >= G k / (n_sim + 1), which must stay well below
    alpha.  Asks for G k / (n_sim + 1) <= alpha / 2, between 4000 and 100 000.
    """
    need = 2.0 * max(n_tests, 1) * max(largest_group, 1) / alpha
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


def at_floor(p: float, n_sim: int) -> bool:
    """Whether a Monte Carlo p-value sits at its floor 1 / (n_sim + 1): no null simulation
    was as extreme, so the true p is smaller and p is only an upper bound."""
    return bool(float(p) <= (1.0 + 1e-9) / (n_sim + 1.0))


def _p(u: np.ndarray, n_sim: int) -> float:
    return _test(u, n_sim)[0]


def _test(u: np.ndarray, n_sim: int) -> tuple[float, float]:
    """(p-value, statistic) of the default uniformity test (:func:`sbc.stats.rank_test`; its
    statistic is the smallest component p-value); NaN below 2 values."""
    if len(u) < 2:
        return math.nan, math.nan
    t = stats.rank_test(u, n_sim=n_sim)
    return t.p_value, t.statistic


def _robust_sd(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the sd for normal data, and one stuck fit
    with a z-score of 1e13 cannot move it."""
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def scalar_row(rows: pd.DataFrame, n_sim: int, alpha: float = ALPHA) -> dict:
    """Statistics of one scalar of one (model, design) from its rows of the parameters
    table (one per successful replicate, with ``u`` and ``flagged``)."""
    rows = rows[rows["u"].notna()]
    u = rows["u"].to_numpy(float)
    flagged = rows["flagged"].to_numpy(bool)
    out: dict = {"n_used": len(u), "n_flagged": int(flagged.sum()),
                 "n_ranked_median": float(rows["n_ranked"].median()) if len(rows) else math.nan}
    out["p_value"], out["statistic"] = _test(u, n_sim)
    out["rank_mean"] = float(u.mean()) if len(u) else math.nan
    out["rank_var"] = float(u.var()) if len(u) else math.nan
    zm, zv = stats.moment_zscores(u) if len(u) >= 2 else (math.nan, math.nan)
    out["z_rank_mean"], out["z_rank_var"] = zm, zv
    out["shape"] = stats.failure_shape(u) if out["p_value"] < alpha else "ok"
    cov = stats.coverage(u, LEVELS) if len(u) else None
    for i, level in enumerate(LEVELS):
        tag = f"cov{round(level * 100)}"
        out[tag] = float(cov.coverage[i]) if cov else math.nan
        out[f"{tag}_lo"] = float(cov.lower[i]) if cov else math.nan
        out[f"{tag}_hi"] = float(cov.upper[i]) if cov else math.nan
    if len(u) >= 2 and np.isfinite(rows["truth"].to_numpy(float)).any():
        rec = stats.recovery(rows["truth"].to_numpy(float), rows["mean"].to_numpy(float),
                             rows["sd"].to_numpy(float))
        with np.errstate(invalid="ignore"):
            # median / MAD: a single near-degenerate fit (sd ~ 1e-14) must not decide them
            out.update(bias=float(rec.bias), rmse=float(rec.rmse), prior_sd=float(rec.prior_sd),
                       z_median=float(np.nanmedian(rec.z)), z_sd=_robust_sd(rec.z),
                       contraction_median=float(np.nanmedian(rec.contraction)))
    else:
        out.update(bias=math.nan, rmse=math.nan, prior_sd=math.nan, z_median=math.nan,
                   z_sd=math.nan, contraction_median=math.nan)
    out["n_clean"] = int((~flagged).sum())
    out["p_clean"] = _p(u[~flagged], n_sim)
    out["p_flagged"] = _p(u[flagged], n_sim)
    (out["extreme_flagged"], out["extreme_clean"], out["assoc_p"],
     out["assoc_r"]) = _association(u, flagged)
    return out


def scalar_statistics(params: pd.DataFrame, reps: pd.DataFrame, n_sim: int,
                      alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (model, design, scalar): see :func:`scalar_row`, plus the replicate
    counts of the (model, design) (failed fits are counted, never ranked)."""
    counts = reps.groupby(KEY).agg(n_reps=("rep", "size"),
                                   n_failed=("status", lambda s: int((s != "ok").sum())))
    rows = []
    for (model, design, name), block in params.groupby(["model", "design", "name"], sort=True):
        first = block.iloc[0]
        row = {"model": model, "design": design, "name": name, "group": first["group"],
               "kind": first["kind"]}
        n_reps, n_failed = counts.loc[(model, design)] if (model, design) in counts.index \
            else (block["rep"].nunique(), 0)
        row.update(n_reps=int(n_reps), n_failed=int(n_failed))
        row.update(scalar_row(block, n_sim, alpha))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# Groups and the multiplicity correction
# --------------------------------------------------------------------------------------


def group_statistics(scalars: pd.DataFrame, p_column: str, alpha: float,
                     family: str, n_sim: int) -> pd.DataFrame:
    """One row per (model, design, group): Bonferroni-pooled p-value of its elements
    (:func:`sbc.stats.pooled_pvalue`), Holm over the family, pass/fail, and the worst element
    with its failure shape."""
    rows = []
    for (model, design, group), block in scalars.groupby(["model", "design", "group"], sort=False):
        p = block[p_column].to_numpy(float)
        worst = block.iloc[int(np.nanargmin(p))] if np.isfinite(p).any() else block.iloc[0]
        rows.append({
            "model": model, "design": design, "group": group, "kind": block["kind"].iloc[0],
            "elements": len(block), "p_pooled": stats.pooled_pvalue(p),
            "n_below_alpha": int(np.sum(p < alpha)), "worst": worst["name"],
            "worst_p": float(worst[p_column]), "worst_shape": worst["shape"],
            # the worst p is the Monte Carlo floor: the adjusted p is then an upper bound
            "at_floor": at_floor(worst[p_column], n_sim),
            **{f"cov{round(lv * 100)}": block[f"cov{round(lv * 100)}"].mean() for lv in LEVELS},
            "z_sd": block["z_sd"].mean(), "contraction": block["contraction_median"].mean(),
            "rmse": block["rmse"].mean(),
        })
    groups = pd.DataFrame(rows)
    if groups.empty:
        return groups
    groups["p_holm"] = np.nan
    for _, idx in _families(groups, family):
        groups.loc[idx, "p_holm"] = stats.holm(groups.loc[idx, "p_pooled"].to_numpy(float))
    groups["fails"] = groups["p_holm"] <= alpha
    return groups


def scalar_adjusted(scalars: pd.DataFrame, groups: pd.DataFrame,
                    p_column: str = "p_value") -> np.ndarray:
    """Each scalar's p-value adjusted as its group's is (Bonferroni within the group, the
    group's Holm step across groups), so a scalar is rejected (<= alpha) only in a failing
    group, and the worst element of a failing group always is."""
    g = groups.set_index(["model", "design", "group"])
    key = pd.MultiIndex.from_frame(scalars[["model", "design", "group"]])
    pooled = g["p_pooled"].reindex(key).to_numpy(float)
    holm_p = g["p_holm"].reindex(key).to_numpy(float)
    k = g["elements"].reindex(key).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(pooled > 0, holm_p / pooled, 1.0)  # the Holm multiplier of the group
        adj = np.minimum(1.0, np.maximum(step, 1.0) * k * scalars[p_column].to_numpy(float))
    return np.minimum(np.maximum(adj, holm_p), 1.0)


def _families(frame: pd.DataFrame, family: str):
    """(key, index) of each Holm family of a frame with model and design columns."""
    if family == "study":
        yield "study", frame.index
    else:
        for key, block in frame.groupby(KEY, sort=False):
            yield key, block.index


# --------------------------------------------------------------------------------------
# Diagnostics, recommendations, verdicts
# --------------------------------------------------------------------------------------


def diagnostics_table(reps: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, design): fits, failures and shares of fits with each warning."""
    rows = []
    for (model, design), block in reps.groupby(KEY, sort=True):
        ok = block[block["status"] == "ok"]
        n_ok = len(ok)

        def share(mask, n=n_ok):
            return float(mask.sum()) / n if n else math.nan
        flagged = flagged_mask(ok)
        rows.append({
            "model": model, "design": design, "fits": len(block), "failed": len(block) - n_ok,
            "ok": n_ok,
            "divergent": share(ok["n_divergent"].fillna(0) > 0),
            "treedepth": share(ok["n_treedepth"].fillna(0) > 0),
            "rhat": share(ok["flag_rhat"].fillna(False).astype(bool)),
            "degenerate": share(ok["flag_degenerate"].fillna(False).astype(bool))
            if "flag_degenerate" in ok else 0.0,
            "low_ess": share(ok["flag_low_ess"].fillna(False).astype(bool)),
            "flagged": share(flagged), "clean": int((~flagged).sum()),
            "rescued": share(ok["rescued"].fillna(False).astype(bool)) if "rescued" in ok
            else 0.0,
            "median_ranked": float(ok["n_ranked"].median()) if n_ok else math.nan,
            "failures": _failure_counts(block),
            "untested": _untested(ok),
            # what the ranked fits ran with (rescues included): advice starts from there
            "target_accept_used": _column_max(ok, "target_accept"),
            "noncentered": share(ok["noncentered"].fillna(False).astype(bool))
            if "noncentered" in ok and ok["noncentered"].notna().any() else math.nan,
            "median_seconds": float(block["wall_seconds"].median()),
            # the machine-independent cost: leapfrog steps per replicate, rescues included
            "median_gradient_evals": _column_median(block, "gradient_evals"),
        })
    return pd.DataFrame(rows)


def _column_median(block: pd.DataFrame, column: str) -> float:
    return _column_stat(block, column, "median")


def _column_max(ok: pd.DataFrame, column: str) -> float:
    return _column_stat(ok, column, "max")


def _column_stat(frame: pd.DataFrame, column: str, how: str) -> float:
    """``how`` ("median", "max") of a column's numbers; NaN when it is absent (older
    records) or holds none."""
    values = pd.to_numeric(frame[column], errors="coerce") if column in frame else pd.Series([])
    return float(values.agg(how)) if values.notna().any() else math.nan


def _untested(ok: pd.DataFrame) -> str:
    """What the fits left unranked ("" when nothing): derived quantities skipped and
    parameters without a partner, each reason once."""
    notes = []
    for column, what in (("quantities_skipped", "log-likelihood quantities not ranked: "),
                         ("unranked", "")):
        if column in ok:
            notes += [what + text for text in dict.fromkeys(ok[column].dropna()) if text]
    return "; ".join(notes)


def _failure_counts(block: pd.DataFrame) -> str:
    """Failed fits by reason code, e.g. "degenerate 2, timeout 1" ("" when none)."""
    failed = block[block["status"] != "ok"]
    if failed.empty:
        return ""
    codes = failed["failure"].fillna("error") if "failure" in failed else \
        pd.Series("error", index=failed.index)
    return ", ".join(f"{code} {n}" for code, n in codes.value_counts().items())


def calibrate(reps: pd.DataFrame, params: pd.DataFrame, *, alpha: float = ALPHA,
              family: str = "study", sampler=None) -> Calibration:
    """Every statistic and verdict of a store's tables (``Store.tables()``).

    reps: one row per replicate (status, diagnostics, flags); params: one row per replicate x
    scalar (rank, n_ranked, truth, mean, sd, quantiles).  alpha: family-wise false-fail rate;
    family: "study" or "cell" (module docstring); sampler: the settings the fits used
    (:class:`sbc.study.SamplerSettings` or its dict), for recommendations.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    raw_params, params = params, with_fractional_ranks(params, reps)
    sizes = params.groupby(["model", "design", "group"])["name"].nunique()
    per_cell = sizes.groupby(level=[0, 1]).size()
    n_tests = {key: int(n) for key, n in per_cell.items()}
    family_size = sum(n_tests.values()) if family == "study" else max(n_tests.values(), default=1)
    n_sim = choose_n_sim(family_size, int(sizes.max()) if len(sizes) else 1, alpha)
    scalars = scalar_statistics(params, reps, n_sim, alpha)
    groups = group_statistics(scalars, "p_value", alpha, family, n_sim)
    groups_clean = group_statistics(scalars, "p_clean", alpha, family, n_sim)
    diagnostics = diagnostics_table(reps)
    verdicts, verdicts_clean = {}, {}
    for diag in diagnostics.to_dict("records"):
        key = (diag["model"], diag["design"])

        def sel(frame, key=key):
            if frame.empty:
                return frame
            return frame[(frame["model"] == key[0]) & (frame["design"] == key[1])]
        if sel(scalars).empty:
            verdicts[key] = Verdict("inconclusive", f"no successful fits of {diag['fits']}",
                                    recommendation=recommendation(diag, sampler),
                                    cause=Cause("undetermined", f"every fit failed "
                                                f"({diag['failures']})"))
            verdicts_clean[key] = verdicts[key]
            continue
        m = family_size if family == "study" else n_tests.get(key, 1)
        power = stats.shift_power(int(diag["ok"]), POWER_SHIFT, alpha / m, n_sim)
        verdicts[key] = decide(sel(groups), sel(groups_clean), sel(scalars), diag, alpha,
                               power, sampler)
        verdicts_clean[key] = decide_clean(sel(groups_clean), diag)
    return Calibration(scalars, groups, groups_clean, diagnostics, verdicts, verdicts_clean,
                       n_sim, alpha, family, n_tests, reps=reps, params=raw_params)


