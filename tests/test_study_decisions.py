"""The sign decisions of an ordinary study (P(theta < 0) per fit, checked with
sbc/decisions.py in sbc/report_tables.py): exact posteriors pass at the stated size over many
seeds, overconfident ones fail; positive parameters and stores written before the
probability was recorded are handled; a tiny exact study records the probability and its
report shows the section and what drives a failure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sbc
from sbc import decisions
from sbc.report import build_report
from sbc.report_tables import decision_check
from test_report import _manifest

ALPHA = 0.05
SEEDS = 200
# rejections of a test of size ALPHA in SEEDS independent runs: Binomial(SEEDS, ALPHA);
# this bound is exceeded with probability below 0.002
MAX_REJECTIONS = int(stats.binom.ppf(0.998, SEEDS, ALPHA))
NOISE_SD = 0.7


def _block(seed: int, n_reps: int = 100, elements: int = 1, scale: float = 1.0,
           draws: int = 400, cut: float | None = None) -> pd.DataFrame:
    """A parameters table of a conjugate normal model (prior N(0, 1), one observation with
    noise NOISE_SD per element): P(theta < 0) from ``draws`` posterior draws whose sd is
    ``scale`` times the exact one (1: calibrated), plus a positive parameter "sigma".  With
    ``cut``, theta also has a declared threshold and P(theta < cut) from the same draws."""
    rng = np.random.default_rng(seed)
    post_sd = 1.0 / np.sqrt(1.0 + 1.0 / NOISE_SD**2)
    rows = []
    for j in range(elements):
        name = "theta" if elements == 1 else f"theta[{j}]"
        theta = rng.normal(size=n_reps)
        mean = post_sd**2 * (theta + NOISE_SD * rng.normal(size=n_reps)) / NOISE_SD**2
        draw = rng.normal(mean[:, None], scale * post_sd, (n_reps, draws))
        below = (draw < 0).mean(axis=1)
        extra = {} if cut is None else {"threshold": cut}
        rows += [{"rep": r, "name": name, "group": "theta", "kind": "parameter",
                  "truth": theta[r], "p_below_zero": below[r], **extra,
                  **({} if cut is None else {"p_below_threshold": (draw[r] < cut).mean()})}
                 for r in range(n_reps)]
    rows += [{"rep": r, "name": "sigma", "group": "sigma", "kind": "parameter", "truth": 1.0,
              "p_below_zero": 0.0, **({} if cut is None else {"threshold": None,
                                                               "p_below_threshold": None})}
             for r in range(n_reps)]
    return pd.DataFrame(rows)


def test_exact_posteriors_pass_at_the_stated_size():
    failed = sum(bool(decision_check(_block(s)).table["decision result"].iloc[0].status
                      == "fail") for s in range(SEEDS))
    assert failed <= MAX_REJECTIONS
    assert failed >= 2  # it is a test, not a constant "pass"


def test_overconfident_posteriors_fail():
    checks = [decision_check(_block(s, scale=0.3)) for s in range(20)]
    assert all(c.table["decision result"].iloc[0].status == "fail" for c in checks)
    assert all(c.table["Spiegelhalter z"].iloc[0] > 0 for c in checks)  # too extreme
    good = decision_check(_block(0)).table.iloc[0]
    assert checks[0].table["Brier reliability"].iloc[0] > good["Brier reliability"]


def test_a_positive_parameter_is_not_checked_and_vectors_are_one_row():
    check = decision_check(_block(4, n_reps=80, elements=3))
    assert list(check.table["event"]) == ["theta[i] < 0"]  # sigma > 0: nothing to check
    row = check.table.iloc[0]
    assert row["elements tested"] == 3 and row["decision fits"] == 80
    reliability = check.reliability["theta[i] < 0"]
    assert reliability["pairs"].sum() == 240
    assert list(reliability.columns) == ["P(event)", "pairs", "mean P(event)", "share true",
                                         "interval"]


def test_the_elements_of_a_group_are_bonferroni_combined():
    block = _block(5, n_reps=80, elements=3)
    p = block[block["group"] == "theta"].pivot(index="rep", columns="name", values="p_below_zero")
    y = block[block["group"] == "theta"].pivot(index="rep", columns="name", values="truth") < 0
    cal = decisions.event_calibration(p.to_numpy(), y.to_numpy(float))
    single = [decisions.spiegelhalter_test(p.iloc[:, j], y.iloc[:, j]).p_value for j in range(3)]
    assert cal.p_value == pytest.approx(min(1.0, 3 * min(single)))
    assert cal.worst == int(np.argmin(single))
    assert cal.table.interval.startswith("cluster-robust")
    assert decisions.event_calibration(p.iloc[:, 0], y.iloc[:, 0]).table.interval == \
        "Clopper-Pearson"


def test_a_declared_threshold_is_checked_as_its_own_event():
    """THRESHOLDS = {"theta": -0.5}: the event theta < -0.5 gets its own row beside the sign;
    exact posteriors pass it at the stated size, overconfident ones fail it."""
    check = decision_check(_block(7, cut=-0.5))
    assert list(check.table["event"]) == ["theta < 0", "theta < -0.5"]
    assert check.table["decision fits"].tolist() == [100, 100]
    assert "theta < -0.5" in check.reliability
    seeds = range(100)
    bound = int(stats.binom.ppf(0.998, len(seeds), ALPHA))
    # the Holm-adjusted p of the threshold event is at least its own p: size at most ALPHA
    failed = sum(decision_check(_block(s, cut=-0.5)).table["decision result"].iloc[1].status
                 == "fail" for s in seeds)
    assert failed <= bound
    over = [decision_check(_block(s, cut=-0.5, scale=0.3)).table.iloc[1] for s in range(10)]
    assert all(row["decision result"].status == "fail" for row in over)


def test_thresholds_a_model_cannot_mean_are_refused_before_any_fit(tmp_path):
    from sbc.errors import ModelError

    source = (sbc_root() / "models" / "normal_known_sigma.py").read_text()
    for declared, says in (('{"nope": 1.0}', "no ranked parameter"),
                           ('{"mu": "low"}', "not a finite number"),
                           ('{"mu": float("nan")}', "not a finite number"),
                           ('{"mu": 10 ** 400}', "not a finite number"),
                           ('[("mu", 1.0)]', "must be a dict")):
        model = tmp_path / "bad_thresholds.py"
        model.write_text(source + f"\nTHRESHOLDS = {declared}\n")
        study = sbc.Study(name="bad", models=str(model), designs=[(3, 3, 1)], simulations=5,
                          seed=3, sampler={"name": "exact", "draws": 50})
        out = tmp_path / "out"
        with pytest.raises(ModelError, match=says):
            sbc.run(study, out, workers=0, progress=False)
        assert not (out / "replicates.parquet").exists()


def sbc_root():
    from support import ROOT

    return ROOT


def test_a_study_records_and_reports_a_declared_threshold(tmp_path):
    model = tmp_path / "with_thresholds.py"
    model.write_text((sbc_root() / "models" / "normal_known_sigma.py").read_text()
                     + '\nTHRESHOLDS = {"gene_effect": -0.5}\n')
    study = sbc.Study(name="thresholds", models=str(model), designs=[(3, 3, 1)],
                      simulations=30, seed=3, sampler={"name": "exact", "draws": 200})
    results = sbc.run(study, tmp_path / "out", workers=0, progress=False)
    params = results.parameters
    genes = params[params["group"] == "gene_effect"]
    assert (genes["threshold"] == -0.5).all()
    assert genes["p_below_threshold"].between(0, 1).all()
    assert (genes["p_below_threshold"] <= genes["p_below_zero"]).all()  # -0.5 < 0
    assert params.loc[params["group"] != "gene_effect", "p_below_threshold"].isna().all()
    html = (results.directory / "report.html").read_text()
    assert "<td class=\"l\">gene_effect[i] &lt; -0.5</td>" in html


def test_a_store_written_before_the_probability_was_recorded_still_reports():
    block = _block(6).drop(columns="p_below_zero")
    assert decision_check(block) is None
    older = _block(6).assign(p_below_zero=np.nan)
    assert decision_check(older) is None


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A tiny exact study (seconds) and its report."""
    study = sbc.Study(name="decisions", models="normal_known_sigma", designs=[(3, 3, 1)],
                      simulations=30, seed=3, sampler={"name": "exact", "draws": 200})
    results = sbc.run(study, tmp_path_factory.mktemp("decisions") / "out", workers=0,
                      progress=False)
    return results, (results.directory / "report.html").read_text()


def test_a_study_records_the_probability_below_zero(tiny_study):
    results, _ = tiny_study
    params = results.parameters
    p = params.loc[params["kind"] == "parameter", "p_below_zero"]
    assert p.notna().all() and p.between(0, 1).all()
    mu = params[params["name"] == "mu"]
    # the prior of mu is N(-1, 1): most truths and most probabilities are below zero
    assert (mu["p_below_zero"] > 0.5).mean() > 0.5


def test_the_report_of_a_study_shows_its_sign_decisions(tiny_study):
    _, html = tiny_study
    assert "Sign decisions: is P(parameter &lt; 0) calibrated?" in html
    assert "<td class=\"l\">mu &lt; 0</td>" in html
    assert "<td class=\"l\">gene_effect[i] &lt; 0</td>" in html
    assert "Reliability of each decision" in html


def test_a_failing_group_is_explained_with_links_to_its_records():
    from test_calibration import EXACT, synthetic_tables

    reps, params = synthetic_tables(60, dict(EXACT, sigma=(1, 0.3, 0.0)), seed=12)
    report, _ = build_report(_manifest(), reps, params)
    design = report.models[0].designs[0]
    assert design.decisions is None  # synthetic records carry no P(theta < 0)
    [found] = design.explanations
    assert found.name == "sigma" and found.shape.startswith("too narrow")
    assert found.region.startswith("too many ranks in the tails")
    assert 0 < len(found.links) <= 10 and found.in_region >= len(found.links)
    assert found.links[0].href == f"replicates/m/10x3x3/r{found.links[0].rep:06d}.json"
    html = sbc.render.report_html(report)
    assert "What drives each failure" in html and f'<a href="{found.links[0].href}">' in html
    assert "predate the probability" in html
