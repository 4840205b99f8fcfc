"""Posterior SBC: truths come from the observed data's posterior, data are observed + new."""

import numpy as np
import pandas as pd
import pytest

from support import ROOT
from sbc.errors import StudyError
from sbc.pipeline import run_study
from sbc.stats import fractional_ranks, uniformity_test
from sbc.store import Store
from sbc.study import load_study

STUDY = f"""
name = "posterior"
model = "{ROOT / 'tests/models/normal_mean.py'}"
seed = 3
simulations = 200
thin = 1
[posterior_sbc]
data = "observed.csv"
[sampler]
name = "exact"
draws = 99
"""


@pytest.fixture
def observed(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"c{c}", f"g{g}", e) for c in range(3) for g in range(2) for e in range(2)]
    frame = pd.DataFrame(rows, columns=["cell_line", "gene", "expt"])
    frame["logfc"] = np.where(frame["gene"] == "g0", 1.5, -0.5) + rng.normal(0, 0.5, len(frame))
    frame.to_csv(tmp_path / "observed.csv", index=False)
    (tmp_path / "study.toml").write_text(STUDY)
    return tmp_path


def test_posterior_sbc_ranks_uniform_and_truths_from_the_posterior(observed):
    study = load_study(observed / "study.toml")
    run_study(study, observed / "out", workers=0, report=True)
    reps, params = Store(observed / "out").tables()
    assert (reps["status"] == "ok").all() and len(reps) == 200
    mu0 = params[params["name"] == "mu[0]"]
    # Truths are posterior draws given 6 observations of gene g0 (posterior sd 0.196, mean
    # near 1.5), not prior draws (sd 1, mean 0).
    assert 0.15 < mu0["truth"].std() < 0.25 and mu0["truth"].mean() > 1.0
    # Exact posterior of observed + new data: ranks uniform (false-alarm rate 1 %; fixed seed).
    for name in ("mu[0]", "mu[1]", "loglik"):
        rows = params[params["name"] == name]
        u = fractional_ranks(rows["rank"].to_numpy(float), rows["n_ranked"].to_numpy(float),
                             rng=np.random.default_rng(1))
        assert uniformity_test(u).p_value > 0.01, name
    import xarray as xr
    tree = xr.open_datatree(observed / "out/ranks.nc", engine="h5netcdf")
    assert "posterior_sbc" in tree["normal_mean/posterior-observed"].children


def test_observed_data_are_validated(observed):
    (observed / "observed.csv").write_text("gene,cell_line,logfc\ng0,c0,abc\n")
    with pytest.raises(StudyError, match="logfc in data row 1"):
        load_study(observed / "study.toml")
    (observed / "observed.csv").write_text("gene,logfc\ng0,1.0\n")
    with pytest.raises(StudyError, match="lacks column"):
        load_study(observed / "study.toml")


def test_large_observed_data_are_sent_to_the_workers_once(observed, monkeypatch):
    """Observed data above SCATTER_BYTES are scattered once (here: every size), and the
    results equal an in-process run's."""
    import sbc.dispatch

    study = load_study(observed / "study.toml")
    small = study.__class__(**{**study.__dict__, "simulations": 12})
    run_study(small, observed / "local", workers=0, report=False)
    submitted = []
    monkeypatch.setattr(sbc.dispatch, "SCATTER_BYTES", 0)
    real_submit = __import__("distributed").Client.submit

    def spy(self, fn, *args, **kwargs):
        submitted.append((fn.__name__, args[0].design))
        return real_submit(self, fn, *args, **kwargs)
    monkeypatch.setattr("distributed.Client.submit", spy)
    run_study(small, observed / "dask", workers=2, report=False)
    assert submitted and all(name == "_run_with_design" and design is None
                             for name, design in submitted)
    _, local = Store(observed / "local").tables()
    _, dask = Store(observed / "dask").tables()
    pd.testing.assert_frame_equal(local, dask)
