"""Tests of the calibration engine (sbc.calibration): verdicts from synthetic parameters tables
with known calibration, and agreement of every reader of one store.

The tables come from a conjugate normal model, theta ~ N(0, 1), y ~ N(theta, 0.5^2), whose
exact posterior N(mu, s^2) is known: ranks of the truth among draws from it are exactly
uniform.  Miscalibrated "posteriors" scale its sd (too narrow / too wide) or shift its mean
(biased).  Seeds are fixed, so every test is deterministic; comments state how often a test
would fail for a random seed.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from scipy.stats import binom

from sbc.calibration import FLAG_COLUMNS, calibrate
from sbc.verdicts import Verdict, combine
from sbc.stats import wilson_interval
from sbc.study import SamplerSettings
from sbc.render import summary_markdown
from sbc.summarize import study_summary, summary_frame

summarize = calibrate

QUANTILE_COLUMNS = ("q0.025", "q0.05", "q0.1", "q0.25", "q0.5", "q0.75", "q0.9", "q0.95", "q0.975")
NOISE_SD = 0.5


def synthetic_tables(n_reps: int, spec: dict, seed: int = 0, n_ranked=99, model: str = "m",
                     design: str = "10x3x3", flagged=None, failed=()):
    """(replicates, parameters) tables like Store.tables() for a conjugate normal model.

    spec: group name -> (elements, sd scale, mean shift in posterior sds); (1, 1.0, 0.0) is
        the exact posterior of a scalar.  A scale or shift may be a function of the
        replicate's flag (for computation-like failures): callable(flagged) -> value.
    n_ranked: an int or (n_reps,) array: draws each rank is taken among.
    flagged: (n_reps,) bool, replicates with sampler warnings (flag_divergent).
    failed: replicate numbers whose fit failed (no parameter rows).
    """
    rng = np.random.default_rng(seed)
    n_ranked = np.broadcast_to(np.asarray(n_ranked), (n_reps,))
    flagged = np.zeros(n_reps, bool) if flagged is None else np.asarray(flagged, bool)
    post_sd = 1.0 / np.sqrt(1.0 + 1.0 / NOISE_SD**2)
    rows = []
    for group, (k, scale, shift) in spec.items():
        for j in range(k):
            name = group if k == 1 else f"{group}[{j}]"
            theta = rng.normal(size=n_reps)
            y = theta + NOISE_SD * rng.normal(size=n_reps)
            mu = post_sd**2 * y / NOISE_SD**2
            for r in range(n_reps):
                if r in failed:
                    continue
                sc = scale(flagged[r]) if callable(scale) else scale
                sh = shift(flagged[r]) if callable(shift) else shift
                m, s = mu[r] + sh * post_sd, sc * post_sd
                draws = rng.normal(m, s, size=int(n_ranked[r]))
                row = {"model": model, "design": design, "rep": r, "name": name, "group": group,
                       "kind": "parameter", "truth": theta[r],
                       "rank": int(np.sum(draws < theta[r])), "n_ranked": int(n_ranked[r]),
                       "mean": m, "sd": s}
                row.update(zip(QUANTILE_COLUMNS, np.quantile(draws, [float(q[1:]) for q in
                                                                     QUANTILE_COLUMNS])))
                rows.append(row)
    params = pd.DataFrame(rows)
    reps = pd.DataFrame({
        "model": model, "design": design, "rep": np.arange(n_reps),
        "status": ["failed" if r in failed else "ok" for r in range(n_reps)],
        "error": [("boom" if r in failed else None) for r in range(n_reps)],
        "wall_seconds": 0.1, "n_ranked": n_ranked, "n_divergent": flagged.astype(int),
        "n_treedepth": 0, "flag_divergent": flagged, "flag_low_ess": False, "flag_rhat": False,
        "flag_degenerate": False})
    return reps, params


EXACT = {"mu": (1, 1.0, 0.0), "sigma": (1, 1.0, 0.0), "tau": (1, 1.0, 0.0),
         "alpha_g": (5, 1.0, 0.0)}


def _only(summary):
    assert len(summary.verdicts) == 1
    return next(iter(summary.verdicts.values()))


def test_verdict_passes_for_exact_posterior():
    # 200 replicates, 8 scalars in 4 groups, exact posterior: a false "fail" has probability
    # <= 5% (Holm), so this fixed-seed test fails for ~5% of seeds.
    reps, params = synthetic_tables(200, EXACT, seed=1)
    summary = summarize(reps, params)
    verdict = _only(summary)
    assert verdict.status == "pass", verdict.reason
    assert "Holm" in verdict.reason
    assert not summary.groups["fails"].any()


@pytest.mark.parametrize(("scale", "shift", "shape"), [
    (0.5, 0.0, "too_narrow"),   # posterior sd halved: U-shaped ranks
    (2.0, 0.0, "too_wide"),     # posterior sd doubled: hump
    (1.0, 1.0, "biased_high"),  # posterior mean one sd too high: ranks low
    (1.0, -1.0, "biased_low"),
])
def test_verdict_fails_and_names_shape(scale, shift, shape):
    # 200 replicates; "sigma" miscalibrated, 7 other scalars exact.  Power is ~1 for these
    # effect sizes at n = 200 (each p-value is at the Monte Carlo floor).
    spec = dict(EXACT, sigma=(1, scale, shift))
    reps, params = synthetic_tables(200, spec, seed=2)
    summary = summarize(reps, params)
    verdict = _only(summary)
    assert verdict.status == "fail", verdict.reason
    assert verdict.failing == ("sigma",)
    assert "sigma" in verdict.reason and shape.replace("_", " ") in verdict.reason
    row = summary.groups.set_index("group").loc["sigma"]
    assert row["worst_shape"] == shape


def test_vector_group_failure_is_found_and_named():
    # one element of a 5-element group too narrow: the pooled (Bonferroni) test must find it
    spec = dict(EXACT, alpha_g=(5, 1.0, 0.0), beta=(1, 1.0, 0.0))
    reps, params = synthetic_tables(200, spec, seed=3)
    narrow = params["name"] == "alpha_g[3]"
    params.loc[narrow, "rank"] = np.where(params.loc[narrow, "rank"] < 50, 0, 99)
    summary = summarize(reps, params)
    verdict = _only(summary)
    assert verdict.status == "fail"
    assert summary.groups.set_index("group").loc["alpha_g", "worst"] == "alpha_g[3]"


N_STUDIES = 600
# two-sided acceptance region for the number of false alarms among N_STUDIES at alpha 0.05
ALARMS_LO, ALARMS_HI = binom.ppf(0.005, N_STUDIES, 0.05), binom.ppf(0.995, N_STUDIES, 0.05)


def test_false_alarm_bounds_have_the_stated_size_and_power():
    """The acceptance region 17..45 of 600: a correct engine (rate 5 %) fails the test below
    with probability 0.64 %; an engine at twice the rate (10 %) passes it with probability
    2.1 %, one at half the rate (2.5 %) with 36 %, and one that never rejects never passes."""
    def p_pass(rate):
        return binom.cdf(ALARMS_HI, N_STUDIES, rate) - binom.cdf(ALARMS_LO - 1, N_STUDIES, rate)
    assert (ALARMS_LO, ALARMS_HI) == (17, 45)
    assert p_pass(0.05) > 0.99 and p_pass(0.10) < 0.05 and p_pass(0.0) == 0.0


def _false_alarm(i: int) -> bool:
    """Does the engine fail synthetic calibrated study ``i`` (seeded by ``i``)?"""
    spec = {"a": (1, 1.0, 0.0), "b": (1, 1.0, 0.0)}
    tables = [synthetic_tables(60, spec, seed=5000 + 2 * i + j, design=d)
              for j, d in enumerate(("10x3x3", "20x5x3"))]
    reps = pd.concat([t[0] for t in tables], ignore_index=True)
    params = pd.concat([t[1] for t in tables], ignore_index=True)
    return calibrate(reps, params).overall().status == "fail"


def test_false_alarm_rate_of_the_engine_is_the_stated_alpha():
    # N_STUDIES synthetic studies at the exact posterior, each with 2 designs x 2 scalars
    # (four independent group tests in the study family, 60 replicates each).  Holm's first
    # step then rejects with probability 1 - (1 - 0.05/4)^4 = 0.049, so the engine's
    # family-wise rate must sit near 5 %: neither above (a loose checker) nor far below (a
    # checker that never rejects).  Size and power of the bounds: see the test above.
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max(1, min(4, len(os.sched_getaffinity(0))))) as pool:
        alarms = sum(pool.map(_false_alarm, range(N_STUDIES), chunksize=25))
    rate_lo, rate_hi = wilson_interval(alarms, N_STUDIES)
    assert ALARMS_LO <= alarms <= ALARMS_HI, (
        f"false-alarm rate {alarms / N_STUDIES:.3f} (Wilson 95 % {rate_lo:.3f}-{rate_hi:.3f}) "
        "is not the stated 5 %")


def test_fractional_ranks_use_each_fits_own_number_of_draws():
    # half the fits keep 99 draws, half 19: with the true n_ranked the ranks are uniform; a
    # common maximum would push the short fits' ranks towards 0 (a fake bias).
    n_ranked = np.where(np.arange(300) % 2 == 0, 99, 19)
    reps, params = synthetic_tables(300, {"mu": (1, 1.0, 0.0), "sigma": (1, 1.0, 0.0)},
                                    seed=4, n_ranked=n_ranked)
    assert _only(summarize(reps, params)).status == "pass"
    wrong = params.assign(n_ranked=99)
    assert _only(summarize(reps, wrong)).status == "fail"


def test_failed_fits_are_counted_not_ranked():
    reps, params = synthetic_tables(60, {"mu": (1, 1.0, 0.0)}, seed=5, failed={3, 7, 11})
    summary = summarize(reps, params)
    row = summary.scalars.iloc[0]
    assert (row["n_reps"], row["n_failed"], row["n_used"]) == (60, 3, 57)
    assert summary.diagnostics.iloc[0]["failed"] == 3


def test_too_few_successful_fits_is_inconclusive():
    reps, params = synthetic_tables(30, {"mu": (1, 1.0, 0.0)}, seed=6, failed=set(range(22)))
    verdict = _only(summarize(reps, params))
    assert verdict.status == "inconclusive"
    assert "only 8 successful fits" in verdict.reason
    assert verdict.cause.kind == "undetermined" and "22 of 30 fits failed" in verdict.cause.evidence


def test_failures_only_in_flagged_fits_point_to_computation():
    # 200 fits, every other one flagged with a too-narrow posterior; the clean ones are exact.
    flagged = np.arange(200) % 2 == 1
    spec = {"mu": (1, 1.0, 0.0), "sigma": (1, lambda f: 0.3 if f else 1.0, 0.0)}
    reps, params = synthetic_tables(200, spec, seed=7, flagged=flagged)
    summary = summarize(reps, params)
    verdict = _only(summary)
    # "Is it calibrated?" is answered no; "why?" separately: computation.
    assert verdict.status == "fail", verdict.reason
    assert verdict.cause.kind == "computation" and verdict.label == "fail: computation"
    assert "Mann-Whitney" in verdict.cause.evidence
    assert "target_accept from 0.9 to 0.95" in verdict.recommendation
    assert next(iter(summary.verdicts_clean.values())).status == "pass"


def test_failures_in_clean_fits_mean_the_model_is_wrong():
    # the same share of flagged fits, but every fit biased: flags do not explain the failure
    flagged = np.arange(200) % 2 == 1
    spec = {"mu": (1, 1.0, 0.0), "sigma": (1, 1.0, 1.0)}
    reps, params = synthetic_tables(200, spec, seed=8, flagged=flagged)
    summary = summarize(reps, params)
    verdict = _only(summary)
    assert verdict.status == "fail", verdict.reason
    assert verdict.cause.kind == "model or code", verdict.cause
    assert "clean fits alone" in verdict.cause.evidence
    assert "check the model code" in verdict.recommendation
    assert next(iter(summary.verdicts_clean.values())).status == "fail"


def test_summary_frame_has_one_row_per_scalar_with_all_statistics():
    reps, params = synthetic_tables(40, EXACT, seed=9)
    frame = summary_frame(summarize(reps, params))
    assert len(frame) == 8 and not frame.duplicated(["model", "design", "name"]).any()
    for column in ("model", "design", "name", "group", "kind", "n_reps", "n_failed", "n_used",
                   "p_value", "shape", "cov50", "cov80", "cov90", "cov95", "cov90_lo",
                   "cov90_hi", "bias", "rmse", "z_median", "z_sd", "contraction_median",
                   "group_p", "group_p_holm", "group_fails", "p_holm_scalar", "p_clean",
                   "assoc_p", "verdict", "verdict_label", "cause", "verdict_reason",
                   "verdict_without_flagged"):
        assert column in frame.columns, column
    assert set(FLAG_COLUMNS) <= set(reps.columns)


def test_summary_markdown_states_overall_verdict_and_simulator():
    reps, params = synthetic_tables(40, dict(EXACT, sigma=(1, 0.3, 0.0)), seed=10)
    manifest = {"study": {"name": "s", "models": ["m"], "simulate_model": "truth_model"}}
    text = summary_markdown(study_summary(manifest, summarize(reps, params)))
    assert "**Overall: fail**" in text and "sigma" in text and "truth_model" in text


def test_combine_orders_fail_before_inconclusive():
    verdicts = [("a", Verdict("pass", "")), ("b", Verdict("inconclusive", "")),
                ("c", Verdict("fail", ""))]
    assert combine(verdicts).status == "fail"
    assert combine(verdicts[:2]).status == "inconclusive"
    assert combine(verdicts[:1]).status == "pass"


def test_pass_with_many_flagged_fits_is_never_a_bare_pass():
    flagged = np.arange(200) % 3 == 0  # a third of the fits flagged, ranks exact
    reps, params = synthetic_tables(200, EXACT, seed=11, flagged=flagged)
    verdict = _only(calibrate(reps, params))
    assert verdict.status == "pass" and verdict.label == "pass, with warnings"
    assert "flagged fits" in verdict.warnings and not verdict.clean_pass
    assert "target_accept" in verdict.recommendation


def test_small_study_passes_only_with_low_power_stated():
    reps, params = synthetic_tables(20, EXACT, seed=12)
    verdict = _only(calibrate(reps, params))
    assert verdict.status == "pass" and verdict.label == "pass, low power"
    assert verdict.power < 0.8 and "probability" in verdict.reason
    big = _only(calibrate(*synthetic_tables(300, EXACT, seed=12)))
    assert big.clean_pass and big.power >= 0.8


def test_recommendations_never_repeat_a_setting_in_place():
    flagged = np.arange(200) % 2 == 1
    reps, params = synthetic_tables(200, EXACT, seed=13, flagged=flagged)
    reps["flag_low_ess"] = flagged
    reps["n_treedepth"] = flagged.astype(int)
    strong = SamplerSettings(target_accept=0.95, max_treedepth=12, tune=2000, draws=3000,
                             chains=2)
    tip = _only(calibrate(reps, params, sampler=strong)).recommendation
    assert "to 0.95" not in tip and "from 0.95 to 0.99" in tip
    assert "max_treedepth from 12 to 14" in tip and "draws from 3000 to 6000" in tip
    assert "tune from" not in tip and "chains from" not in tip
    default = _only(calibrate(reps, params)).recommendation  # settings unknown: the defaults
    assert "from 0.9 to 0.95" in default and "chains from 1 to 2" in default
    assert "rescue = true" not in default
    off = _only(calibrate(reps, params, sampler={"rescue": False})).recommendation
    assert "rescue = true" in off
    # a non-centered model (Bambi's *_offset parameters) is not told to become non-centered
    params_nc = params.replace({"group": {"alpha_g": "1|gene_offset"}})
    tip_nc = _only(calibrate(reps, params_nc)).recommendation
    assert "noncentered=False" in tip_nc and "noncentered=True" not in tip_nc


def test_advice_starts_from_what_the_fits_ran_with_not_from_the_study_file():
    flagged = np.arange(200) % 2 == 1
    reps, params = synthetic_tables(200, EXACT, seed=13, flagged=flagged)
    # the rescue refitted the flagged half at target_accept 0.99; divergences remained
    reps["target_accept"] = np.where(flagged, 0.99, 0.9)
    tip = _only(calibrate(reps, params, sampler=SamplerSettings())).recommendation
    assert "target_accept from" not in tip
    assert "divergences remain after refits at target_accept 0.99" in tip
    # the fitter's form comes from its graph (recorded per fit), not from ranked names: a
    # non-centered fitter whose *_offset parameters a separate generator never ranks
    reps["noncentered"] = True
    tip_nc = _only(calibrate(reps, params)).recommendation
    assert "noncentered=False" in tip_nc and "noncentered=True" not in tip_nc
    reps["noncentered"] = False  # a centered fitter is told the non-centered form
    assert "noncentered=True" in _only(calibrate(reps, params)).recommendation
    reps["noncentered"] = flagged & (np.arange(200) % 4 == 1)  # a quarter refitted non-centered
    tip_mixed = _only(calibrate(reps, params)).recommendation
    assert "25% of the ranked fits were refitted in the non-centered form" in tip_mixed
    assert "noncentered=True" not in tip_mixed


def test_an_undetermined_failure_still_advises_checking_the_model_code():
    flagged = np.arange(24) % 3 != 0  # 8 clean fits, passing: too few to compare
    reps, params = synthetic_tables(24, {"mu": (1, 1.0, lambda f: 3.0 if f else 0.0)}, seed=21,
                                    flagged=flagged)
    verdict = _only(calibrate(reps, params))
    assert verdict.status == "fail" and verdict.cause.kind == "undetermined", verdict.reason
    assert "check the model code" in verdict.recommendation


def test_clean_fits_that_fail_alone_blame_the_model_even_when_few():
    # a sequential study stops early, with fewer clean fits than a fixed verdict needs; when
    # those alone reject, the model or code is to blame, as at any size
    flagged = np.arange(24) % 3 != 0
    reps, params = synthetic_tables(24, {"mu": (1, 1.0, 4.0)}, seed=22, flagged=flagged)
    verdict = _only(calibrate(reps, params))
    assert verdict.status == "fail" and verdict.cause.kind == "model or code", verdict.reason
    assert "fails on the 8 clean fits alone" in verdict.cause.evidence


def test_one_stuck_fit_cannot_wreck_the_z_summary():
    reps, params = synthetic_tables(100, {"mu": (1, 1.0, 0.0)}, seed=14)
    params.loc[0, "sd"] = 1e-14  # a fit stuck at one point
    row = calibrate(reps, params).scalars.iloc[0]
    assert abs(row["z_median"]) < 0.5 and 0.6 < row["z_sd"] < 1.5


def test_study_family_corrects_over_every_design_and_cell_family_per_design():
    tables = [synthetic_tables(100, EXACT, seed=20 + j, design=d)
              for j, d in enumerate(("10x3x3", "20x5x3"))]
    reps = pd.concat([t[0] for t in tables], ignore_index=True)
    params = pd.concat([t[1] for t in tables], ignore_index=True)
    study = calibrate(reps, params, family="study")
    cell = calibrate(reps, params, family="cell")
    assert sum(study.n_tests.values()) == 8 and study.n_tests[("m", "10x3x3")] == 4
    # Holm over 8 tests adjusts at least as much as Holm over 4
    assert (study.groups["p_holm"].to_numpy() >= cell.groups["p_holm"].to_numpy() - 1e-12).all()
    one = calibrate(tables[0][0], tables[0][1], family="study")
    one_cell = calibrate(tables[0][0], tables[0][1], family="cell")
    np.testing.assert_allclose(one.groups["p_holm"], one_cell.groups["p_holm"])
    with pytest.raises(ValueError, match="family"):
        calibrate(reps, params, family="everything")


def test_few_ranked_draws_per_fit_are_reported_as_low_resolution():
    reps, params = synthetic_tables(200, EXACT, seed=15, n_ranked=20)
    verdict = _only(calibrate(reps, params))
    assert verdict.status == "pass" and "low resolution" in verdict.warnings
    assert "near-independent draws" in verdict.reason and "draws from" in verdict.recommendation
