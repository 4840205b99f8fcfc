"""The sampler registry (sbc.sampling): a fourth sampler is added without touching the pipeline,
found by name by the study parser, checked before any fit, and used for every replicate."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from support import ROOT
from sbc import sampling as fit
from sbc.errors import ModelError, StudyError
from sbc.pipeline import run_study
from sbc.study import load_study

STUDY = f"""
name = "toy_sampler"
model = "{ROOT / 'tests/models/normal_mean.py'}"
seed = 7
simulations = 12
thin = 1

[[designs]]
cell_lines = 4
genes = 3
reps = 2

[sampler]
name = "{{name}}"
draws = 200
"""


@pytest.fixture
def toy(monkeypatch):
    """A sampler named "toy" that counts its fits and delegates to the exact posterior."""
    calls = {"make": 0, "fit": 0, "check": 0}

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def fit(self, y, seed):
            calls["fit"] += 1
            return self.inner.fit(y, seed)

        def with_settings(self, settings):
            return self

    def make(spec, settings, data):
        calls["make"] += 1
        return Counting(fit.ExactBackend(spec, settings, data))

    def check(spec, settings):
        calls["check"] += 1
        fit.get_sampler("exact").check(spec, settings)

    monkeypatch.setattr(fit, "_REGISTERED", {})
    fit.register(fit.Sampler("toy", make, check=check, rescue=False))
    yield calls
    fit.samplers.cache_clear()


def test_a_registered_sampler_runs_a_study_through_the_pipeline(tmp_path, toy):
    path = tmp_path / "toy.toml"
    path.write_text(STUDY.format(name="toy"))
    study = load_study(path)
    assert study.sampler.name == "toy" and "toy" in fit.sampler_names()
    summary = run_study(study, tmp_path / "out", workers=0, report=False,
                        progress_stream=io.StringIO())
    assert (summary.new, summary.failed) == (12, 0)
    assert toy["check"] >= 1 and toy["make"] == 1 and toy["fit"] == 12
    reps = pd.read_parquet(tmp_path / "out" / "replicates.parquet")
    assert (reps["status"] == "ok").all()
    # the same ranks as the built-in exact sampler it wraps
    path.write_text(STUDY.format(name="exact"))
    run_study(load_study(path), tmp_path / "exact", workers=0, report=False,
              progress_stream=io.StringIO())
    cols = ["model", "design", "rep", "name", "rank"]
    toy_ranks = pd.read_parquet(tmp_path / "out" / "parameters.parquet")[cols]
    exact_ranks = pd.read_parquet(tmp_path / "exact" / "parameters.parquet")[cols]
    pd.testing.assert_frame_equal(toy_ranks, exact_ranks)


def test_an_unknown_sampler_is_refused_naming_the_known_ones(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(STUDY.format(name="nutpy"))
    with pytest.raises(StudyError, match="nutpie"):
        load_study(path)


def test_a_samplers_check_runs_before_any_fit(tmp_path, toy):
    """The toy sampler's check delegates to exact's: a model without exact_posterior is
    refused before the store is created."""
    path = tmp_path / "toy.toml"
    path.write_text(STUDY.format(name="toy").replace("tests/models/normal_mean.py",
                                                     "models/crispr_screen.py"))
    with pytest.raises(ModelError, match="exact_posterior"):
        run_study(load_study(path), tmp_path / "out", workers=0, report=False)
    assert not (tmp_path / "out").exists()


def test_entry_points_add_samplers(monkeypatch):
    """A package that declares an entry point in group "sbc.samplers" adds its sampler."""
    entry = fit.Sampler("from_entry_point", lambda spec, settings, data: None)

    class EntryPoint:
        name = "from_entry_point"

        def load(self):
            return entry

    def entry_points(group):
        return [EntryPoint()] if group == fit.ENTRY_POINT_GROUP else []

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    fit.samplers.cache_clear()
    try:
        assert fit.get_sampler("from_entry_point") is entry
        assert {"nutpie", "pymc", "exact"} <= set(fit.sampler_names())
    finally:
        fit.samplers.cache_clear()
