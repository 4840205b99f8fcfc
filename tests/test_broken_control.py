"""The deliberately broken control study fails, naming the parameter whose prior differs."""

import pandas as pd
import pytest

from support import ROOT
from sbc.pipeline import run_study
from sbc.study import load_study


@pytest.mark.slow
@pytest.mark.ci
def test_wrong_sigma_prior_fails_naming_sigma(tmp_path):
    study = load_study(ROOT / "studies/crispr_broken.toml")
    run_study(study, tmp_path / "out", workers=2, report=True)
    summary = pd.read_csv(tmp_path / "out/summary.csv")
    failing = set(summary.loc[summary["group_fails"].astype(bool), "group"])
    # the README's claim: fails naming sigma (biased: the fitter's prior pulls sigma down, so
    # the posterior underestimates it) and loglik_min
    assert {"sigma", "loglik_min"} <= failing, failing
    sigma = summary[summary["name"] == "sigma"].iloc[0]
    assert sigma["shape"] == "biased_low", sigma["shape"]
    assert (summary["verdict"] == "fail").all()
    assert "simulated" in (tmp_path / "out/summary.md").read_text()
