"""Design-size planning (`sbc plan`) on a conjugate normal model with a known posterior.

tests/plan_models/normal_mean.py: mu ~ N(0, 1), y_i ~ N(mu, 1), i = 1..n (n = design rows),
fitted with its exact posterior N(sum(y) / (1 + n), 1 / sqrt(1 + n)), so widths and
probabilities of success are known analytically.  Everything runs in-process (workers=0).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from sbc import stats
from sbc.cli import main
from sbc.design import Design
from sbc.errors import StudyError
from sbc.plan import (Target, plan_decision, dominated, load_plan, moment_matched_priors,
                      replicate_success, run_plan)

MODEL = Path(__file__).resolve().parent / "plan_models" / "normal_mean.py"
Z = norm.ppf(0.975)

PLAN = """
name = "normal_plan"
seed = {seed}
model = "{model}"
{extra_top}
probability = {probability}

[space]
cell_lines = {cell_lines}
genes = [1]
reps = {reps}

[target]
{target}

[cost]
per_cell_line = 10
per_screen = 1

[search]
{search}

[sampler]
name = "exact"
draws = 2000
"""


def write_plan(tmp_path: Path, *, target: str, cell_lines="[5, 10, 20]", reps="[2, 8]",
               probability=0.8, search="", extra_top="", seed=11) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.format(model=MODEL, target=target, cell_lines=cell_lines, reps=reps,
                                probability=probability, search=search, extra_top=extra_top,
                                seed=seed))
    return path


def run(path: Path, out: Path):
    return run_plan(load_plan(path), out, workers=0, stream=io.StringIO())


def analytic_width(d: Design) -> float:
    return 2 * Z / math.sqrt(1 + d.n_rows)


def test_width_target_recommends_the_analytically_cheapest_design(tmp_path):
    path = write_plan(tmp_path, target='quantity = "mu"\ncriterion = "width"\nbelow = 0.5')
    result = run(path, tmp_path / "out")
    plan = load_plan(path)
    # widths are deterministic here: the cheapest design whose exact width is below 0.5
    # (no design lies within 3 % of the threshold, so draw noise in quantiles cannot flip it)
    passing = [d for d in plan.designs() if analytic_width(d) < 0.5]
    assert all(abs(analytic_width(d) / 0.5 - 1) > 0.03 for d in plan.designs())
    cheapest = min(passing, key=plan.cost)
    assert result.recommended is not None
    assert result.recommended.design == cheapest
    assert result.recommended.calibration == "calibrated"
    # adaptive: fewer fits than the full grid at the same per-design maximum
    assert result.fits["used"] < result.fits["full_grid"]
    for name in ("plan.csv", "plan.json", "report.html"):
        assert (tmp_path / "out" / name).is_file()
    saved = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert saved["recommended"]["design"] == cheapest.label
    # expected posterior sd matches 1 / sqrt(1 + n) for every evaluated design
    done = result.table[result.table["simulations"] > 0]
    exact = 1 / np.sqrt(1 + done["rows"].to_numpy(float))
    np.testing.assert_allclose(done["posterior_sd"], exact, rtol=0.03)
    # resuming walks the same path from the stored records and refits nothing
    again = run(path, tmp_path / "out")
    assert result.fits["new"] > 0 and again.fits["new"] == 0
    assert again.recommended.design == cheapest




def assurance_excludes_zero(n: int) -> float:
    """P(95 % interval excludes 0) with mu drawn from the prior: the posterior mean is
    N(0, n / (n + 1)) marginally and the posterior sd 1 / sqrt(n + 1)."""
    return 2 * (1 - norm.cdf(Z / math.sqrt(n)))


def power_excludes_zero(n: int, mu: float) -> float:
    """The same with mu fixed (conditional power)."""
    w, s = n / (1 + n), 1 / math.sqrt(1 + n)
    mean, sd = w * mu, w / math.sqrt(n)
    return norm.sf((Z * s - mean) / sd) + norm.cdf((-Z * s - mean) / sd)


@pytest.mark.parametrize("design_model, expected", [
    ("", assurance_excludes_zero(16)),
    (f'design_model = "{MODEL}:build_fixed"', power_excludes_zero(16, 0.3)),
])
def test_probability_of_success_matches_analytic_value(tmp_path, design_model, expected):
    # one design (n = 16) at 400 simulations; the analytic value must lie in the 99.9 %
    # Wilson interval (false-alarm rate 0.1 % for a random seed; the seed is fixed)
    path = write_plan(tmp_path, target='quantity = "mu"\ncriterion = "excludes"\nthreshold = 0',
                      cell_lines="[4]", reps="[4]", extra_top=design_model,
                      search='strategy = "grid"\nbatch = 400\nmax_simulations = 400\n'
                             'calibration_simulations = 40')
    result = run(path, tmp_path / "out")
    row = result.table.iloc[0]
    assert row["simulations"] == 400
    k = row["p_success"] * 400
    lo, hi = stats.wilson_interval(k, 400, conf=0.999)
    assert lo <= expected <= hi, (row["p_success"], expected)
    # the calibration verdict always comes from analysis-prior fits
    assert row["calibration"] == "calibrated"
    assert row["calibration_simulations"] >= 40


def test_more_replicates_never_lower_precision(tmp_path):
    path = write_plan(tmp_path, target='quantity = "mu"\ncriterion = "excludes"\nthreshold = 0',
                      cell_lines="[1]", reps="[1, 4, 16]",
                      search='strategy = "grid"\nbatch = 100\nmax_simulations = 100')
    table = run(path, tmp_path / "out").table.sort_values("reps")
    sd = table["posterior_sd"].to_numpy()
    assert np.all(np.diff(sd) < 0.02 * sd[:-1])  # draw noise in sd estimates is < 1 %
    # probability of success: each next design's upper bound reaches the previous lower one
    # (95 % Wilson intervals of independent simulations; false alarm well below 5 %)
    lower, upper = table["p_lower"].to_numpy(), table["p_upper"].to_numpy()
    assert np.all(upper[1:] >= lower[:-1])
    assert table["p_success"].iloc[-1] > table["p_success"].iloc[0]


def test_unknown_target_parameter_is_a_clear_error(tmp_path, capsys):
    path = write_plan(tmp_path, target='quantity = "mu_g"\ncriterion = "width"\nbelow = 0.5')
    with pytest.raises(StudyError, match=r"'mu_g' is not a parameter.*did you mean 'mu'"):
        run(path, tmp_path / "out")
    assert main(["plan", str(path), "--out", str(tmp_path / "out2"), "--workers", "0"]) == 2
    assert "mu_g" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "replicates").exists()


@pytest.mark.parametrize("target, message", [
    ('quantity = "mu"\ncriterion = "wdth"\nbelow = 0.5', "did you mean 'width'"),
    ('quantity = "mu"\ncriterion = "width"', "needs below"),
    ('quantity = "mu"\ncriterion = "width"\nbelow = 0.5\nlevel = 0.7', "no stored quantiles"),
])
def test_bad_target_is_rejected_with_a_fix(tmp_path, target, message):
    with pytest.raises(StudyError, match=message):
        load_plan(write_plan(tmp_path, target=target))


def test_decide_and_dominance():
    assert plan_decision(0.85, 0.99, 0.8) == "pass"
    assert plan_decision(0.10, 0.79, 0.8) == "fail"
    assert plan_decision(0.70, 0.90, 0.8) is None
    mono = ("cell_lines", "reps")
    assert dominated(Design(4, 100, 2), Design(8, 100, 3), mono)
    assert not dominated(Design(4, 100, 4), Design(8, 100, 3), mono)
    assert not dominated(Design(4, 50, 2), Design(8, 100, 3), mono)  # genes not monotone


def test_each_and_all_aggregate_vector_targets():
    import pandas as pd

    params = pd.DataFrame({"rep": [0, 0, 1, 1], "name": ["b[0]", "b[1]"] * 2, "group": "b",
                           "kind": "parameter", "sd": [0.1, 0.3, 0.1, 0.1]})
    reps = pd.DataFrame({"rep": [0, 1, 2], "status": ["ok", "ok", "failed"]})
    each = replicate_success(params, reps, (Target("b", "sd", 0.2, over="each"),))
    every = replicate_success(params, reps, (Target("b", "sd", 0.2, over="all"),))
    assert each["success"].tolist() == [0.5, 1.0, 0.0]  # failed fits count as failures
    assert every["success"].tolist() == [0.0, 1.0, 0.0]


def test_pilot_posterior_is_moment_matched():
    rng = np.random.default_rng(3)
    draws = {"m": rng.normal(-1.0, 0.1, 4000), "s": rng.lognormal(math.log(0.3), 0.2, 4000)}
    priors = {"m": ("Normal", {"mu": 0, "sigma": 1}), "s": ("LogNormal", {"mu": 0, "sigma": 1})}
    out = moment_matched_priors(priors, draws)
    assert out["m"][0] == "Normal" and abs(out["m"][1]["mu"] + 1) < 0.01
    assert out["s"][0] == "LogNormal" and abs(out["s"][1]["sigma"] - 0.2) < 0.01
