"""One engine, one verdict: the terminal, --fail-on, the report, assert_calibrated and the
planner agree on the same store.

Exact-posterior models (seconds).  The broken model uses sd where the generator used a
precision (posterior too wide): it fails at 60 simulations with every seed tried; the correct
model passes with this seed (for a random seed it would fail with probability <= 5 %).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from support import ROOT, sbc_cmd
from sbc.plan import calibration_verdict
from sbc.report import write_report_with_calibration
from sbc.store import Store
from sbc.testing import check_calibration

BUG = ROOT / "tests" / "validation" / "models" / "normal_sd_for_precision.py"
TWIN = ROOT / "models" / "normal_known_sigma.py"
ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}

STUDY = """
name = "verdicts"
model = "{model}"
simulate_model = "{twin}"
seed = 3
simulations = 60
thin = 1

[[designs]]
cell_lines = 5
genes = 3
reps = 2

[sampler]
name = "exact"
draws = 99
"""


def _run(tmp_path, model, *extra):
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(model=model, twin=TWIN))
    return subprocess.run(sbc_cmd("run", study, "--out", tmp_path / "out", "--workers", "0",
                                  *extra), capture_output=True, text=True, env=ENV, timeout=600)


def test_terminal_prints_verdicts_and_fail_on_sets_the_exit_status(tmp_path):
    proc = _run(tmp_path, BUG, "--fail-on", "fail")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "overall: fail" in proc.stdout and "failing: " in proc.stdout
    assert "gene_effect" in proc.stdout or "loglik" in proc.stdout
    # the same store, judged again by `sbc report`, without and with --fail-on
    again = subprocess.run(sbc_cmd("report", tmp_path / "out"), capture_output=True, text=True,
                           env=ENV, timeout=600)
    assert again.returncode == 0 and "overall: fail" in again.stdout
    strict = subprocess.run(sbc_cmd("report", tmp_path / "out", "--fail-on", "inconclusive"),
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert strict.returncode == 1


def test_a_passing_study_exits_zero_with_fail_on(tmp_path):
    proc = _run(tmp_path, TWIN, "--fail-on", "fail")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "overall: pass" in proc.stdout


def test_fail_on_with_no_report_is_refused(tmp_path):
    proc = _run(tmp_path, TWIN, "--fail-on", "fail", "--no-report")
    assert proc.returncode == 2 and "--fail-on needs the verdicts" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model, expected", [(BUG, "fail"), (TWIN, "pass")],
                         ids=["broken", "correct"])
def test_report_assert_calibrated_and_planner_agree_on_one_store(tmp_path, model, expected):
    result = check_calibration(model, (5, 3, 2), n_sims=60, seed=3, simulate_model=TWIN,
                               sampler="exact", cache_dir=tmp_path, report=False)
    _, cal = write_report_with_calibration(Store(result.out))
    (report_verdict,) = cal.verdicts.values()
    reps, params = Store(result.out).tables()
    planner, _, failing = calibration_verdict(reps, params, 0.05)
    assert result.verdict.status == report_verdict.status == expected
    assert planner == {"pass": "calibrated", "fail": "miscalibrated"}[expected]
    assert result.verdict.failing == report_verdict.failing
    assert failing == ", ".join(report_verdict.failing)
    assert result.passed == (expected == "pass")
