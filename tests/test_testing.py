"""Tests of sbc.testing: assert_calibrated, the fit cache, strategies and the pytest plugin.

Runs use the exact backend (models with a known posterior), so they take seconds.  Each
calibration verdict uses a fixed seed; the false-alarm rate of a passing check is at most
alpha = 0.05 for a random seed (measured in tests/validation/RESULTS.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbc.design import Design
from sbc.errors import StudyError
from sbc.testing import CalibrationFailure, assert_calibrated, check_calibration
from sbc.testing import strategies as sst
from sbc.testing.calibration import cache_path, calibration_study, model_ref

ROOT = Path(__file__).resolve().parents[1]
BUGS = Path(__file__).resolve().parent / "validation" / "models"
EXACT = {"sampler": "exact", "report": False}


def test_exact_model_passes_and_reports_where_fits_are(tmp_path):
    # False-alarm rate of this check for a random seed: <= 5% (family-wise alpha).
    result = assert_calibrated("normal_known_sigma", (5, 3, 2), n_sims=60, seed=3,
                               cache_dir=tmp_path, **EXACT)
    assert result.passed and result.n_ok == 60 and result.new_fits == 60
    names = {c.name for c in result.checks}
    assert names == {"mu", "gene_effect[0]", "gene_effect[1]", "gene_effect[2]", "loglik",
                     "loglik_min"}
    assert "is calibrated" in result.message() and str(result.out) in result.message()


def test_sd_for_precision_bug_fails_with_a_readable_message(tmp_path):
    with pytest.raises(CalibrationFailure) as info:
        assert_calibrated(BUGS / "normal_sd_for_precision.py", (5, 3, 2), n_sims=60, seed=3,
                          simulate_model="normal_known_sigma", cache_dir=tmp_path, **EXACT)
    assert isinstance(info.value, AssertionError)
    text = str(info.value)
    assert "NOT calibrated" in text and "normal_known_sigma" in text
    assert "gene_effect" in text and "too wide" in text and "p = " in text
    failed = {c.group for c in info.value.result.failures}
    assert "gene_effect" in failed


def test_prior_only_posterior_is_seen_only_by_the_loglik_quantities(tmp_path):
    model = BUGS / "normal_prior_only.py"
    result = check_calibration(model, (5, 3, 2), n_sims=60, seed=3, cache_dir=tmp_path, **EXACT)
    assert not result.passed
    assert {c.kind for c in result.failures} == {"quantity"}
    assert "Only log-likelihood quantities fail" in result.message()
    # Parameter ranks alone cannot see it: prior draws are a calibrated posterior given no data.
    blind = check_calibration(model, (5, 3, 2), n_sims=60, seed=3, cache_dir=tmp_path,
                              quantities=False, **EXACT)
    assert blind.passed and blind.new_fits == 0


def test_rerun_reuses_cached_fits_and_extends_them(tmp_path):
    kwargs = dict(n_sims=20, seed=5, cache_dir=tmp_path, **EXACT)
    first = check_calibration("beta_binomial", (4, 2, 1), **kwargs)
    again = check_calibration("beta_binomial", (4, 2, 1), **kwargs)
    assert (first.new_fits, again.new_fits) == (20, 0) and again.out == first.out
    assert again.checks == first.checks
    more = check_calibration("beta_binomial", (4, 2, 1), **{**kwargs, "n_sims": 25})
    assert more.new_fits == 5 and more.out == first.out
    other_seed = check_calibration("beta_binomial", (4, 2, 1), **{**kwargs, "seed": 6})
    assert other_seed.out != first.out and other_seed.new_fits == 20


def test_cache_key_covers_model_source(tmp_path):
    src = (ROOT / "models" / "beta_binomial.py").read_text()
    model = tmp_path / "bb.py"
    model.write_text(src)
    study = calibration_study(model, (3, 2, 1), n_sims=5, sampler="exact")
    before = cache_path(study, tmp_path)
    model.write_text(src.replace("A, B = 2.0, 3.0", "A, B = 2.0, 4.0"))
    assert cache_path(calibration_study(model, (3, 2, 1), n_sims=50, sampler="exact"),
                      tmp_path) != before
    model.write_text(src)
    assert cache_path(calibration_study(model, (3, 2, 1), n_sims=50, sampler="exact"),
                      tmp_path) == before  # n_sims is not part of the key


@pytest.mark.parametrize("kwargs, match", [
    ({"n_sims": 1}, "n_sims must be \"auto\" \\(sequential\\) or an integer >= 2"),
    ({"design": "ten"}, "design 'ten' is not valid"),
    ({"sampler": "nuts"}, "unknown sampler 'nuts'"),
    ({"alpha": 1.5}, "alpha must lie in"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_user_mistakes_raise_study_errors(kwargs, match, tmp_path):
    args = {"n_sims": 10, "design": (3, 2, 1), "sampler": "exact", "cache_dir": tmp_path,
            **kwargs}
    with pytest.raises(StudyError, match=match):
        check_calibration("normal_known_sigma", args.pop("design"), **args)


def test_model_reference_from_a_function():
    def local_build(data):
        return data

    with pytest.raises(StudyError, match="top level"):
        model_ref(local_build)
    assert model_ref(sst.RandomInterceptModel.build).endswith("strategies.py:build")
    assert model_ref("crispr_screen") == "crispr_screen"


@settings(max_examples=30, deadline=None, derandomize=True)
@given(sst.designs(max_cell_lines=8, max_genes=4, max_reps=3, max_rows=60))
def test_designs_stay_within_bounds(design):
    assert isinstance(design, Design)
    assert 2 <= design.n_cell_lines <= 8 and 2 <= design.n_genes <= 4 and 1 <= design.n_reps <= 3
    assert design.n_rows <= 60


@given(sst.designs(max_genes=6, max_reps=3, max_rows=10))
def test_designs_respect_a_tight_row_bound(design):
    assert design.n_rows <= 10 and design.n_cell_lines >= 2 and design.n_genes >= 2


@settings(max_examples=3, deadline=None, derandomize=True)
@given(sst.random_intercept_models(), sst.designs(max_rows=40), sst.study_seeds())
def test_generated_models_build_with_proper_priors(model, design, seed):
    from sbc.spec import make_spec, resolve_model

    assert 0 <= seed < 2**32
    spec = make_spec(resolve_model(str(model.write(Path(tempfile.gettempdir()) / "sbc_generated"))),
                     design.frame())  # rejects improper priors
    assert spec.response == "logfc" and "Intercept" in spec.parameters and "sigma" in spec.parameters
    for factor in ("gene", "cell_line"):
        assert (f"1|{factor}_sigma" in spec.parameters) == (f"(1|{factor})" in model.formula)


@given(st.data())
@settings(max_examples=20, deadline=None, derandomize=True)
def test_formulas_are_random_intercepts_over_the_factors(data):
    formula = data.draw(sst.formulas())
    assert formula.startswith("logfc ~ 1 + ")
    assert ("(1|gene)" in formula) or ("(1|cell_line)" in formula)
    priors = data.draw(sst.priors(formula))
    assert {"Intercept", "sigma"} <= set(priors)


pytest_plugins = ["pytester"]


def test_plugin_fixture_runs_a_calibration_check(pytester):
    pytester.makepyfile(f"""
        def test_model(calibration):
            result = calibration.assert_calibrated("normal_known_sigma", (3, 2, 1), n_sims=10,
                                                   sampler="exact", report=False,
                                                   base_dir={str(ROOT)!r})
            assert result.passed
            assert str(result.out).startswith({str(pytester.path / 'cache')!r})
    """)
    # The plugin is registered through the package's pytest11 entry point (no -p needed).
    outcome = pytester.runpytest_inprocess("--sbc-cache",
                                           str(pytester.path / "cache"), "--sbc-profile", "dev",
                                           "-p", "no:cacheprovider")
    settings.load_profile("default")  # the profile option is global; undo it for later tests
    outcome.assert_outcomes(passed=1)
