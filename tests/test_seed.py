"""`sbc fit-seed` reproduces the seed notebook's analysis: its data (to the printed digits)
and its posterior (within Monte Carlo error)."""

from __future__ import annotations

import numpy as np
import pytest

from sbc.notebook import seed_data, seed_posterior

# The notebook's printed data: the first ten rows (cell line, gene, experiment, logfc).
NOTEBOOK_ROWS = [(0, 0, 0, -1.73762), (0, 0, 1, -1.87747), (0, 0, 2, -1.88619),
                 (0, 1, 0, -1.27018), (0, 1, 1, -1.32484), (0, 1, 2, -1.28888),
                 (0, 2, 0, -0.934375), (0, 2, 1, -0.936662), (0, 2, 2, -1.08875),
                 (1, 0, 0, -2.13649)]
# The notebook's posterior summary (PyMC, 4 chains): mean, sd, Monte Carlo se of the mean.
NOTEBOOK_POSTERIOR = {"mu_alpha": (-1.062, 1.454, 0.044), "sigma_alpha": (0.834, 0.680, 0.017),
                      "mu_beta": (-0.038, 1.471, 0.047), "sigma_beta": (0.588, 0.170, 0.003)}


def test_seed_data_are_the_notebooks():
    data, truth = seed_data()
    assert len(data) == 90 and truth["sigma"] == 0.05
    codes = {col: data[col].cat.codes.to_numpy() for col in ("cell_line", "gene", "expt")}
    for i, (c, g, e, logfc) in enumerate(NOTEBOOK_ROWS):
        assert (codes["cell_line"][i], codes["gene"][i], codes["expt"][i]) == (c, g, e)
        assert data["logfc"].iloc[i] == pytest.approx(logfc, abs=6e-6), i


def test_seed_posterior_matches_the_notebooks():
    """Each posterior mean within 4.5 combined Monte Carlo standard errors of the notebook's
    (ours: sd / sqrt(ESS)); for a correct reproduction the chance that any of the four is
    farther is about 3e-5 (normal approximation), while a different model or data set
    moves them by many standard errors."""
    from arviz_stats import ess

    trace = seed_posterior("crispr_seed")
    post = trace["posterior"]
    for name, (mean, sd, mcse) in NOTEBOOK_POSTERIOR.items():
        draws = post[name].values.ravel()
        ours_se = draws.std() / np.sqrt(float(ess(post[name].values, method="mean")))
        tol = 4.5 * np.hypot(mcse, ours_se)
        assert abs(draws.mean() - mean) < tol, (name, draws.mean(), mean, tol)
        assert draws.std() == pytest.approx(sd, rel=0.15), name


def _trace(shift: float = 0.0):
    from arviz_base import from_dict

    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 1000))
    a[0] += shift  # one chain elsewhere: R-hat well above 1.01
    return from_dict({"posterior": {"a": a, "b": rng.normal(2.0, 0.5, size=(4, 1000, 2))}})


def test_seed_summary_is_the_notebooks_format_beside_the_truth():
    from arviz_stats import hdi

    from sbc.notebook import SUMMARY_COLUMNS, seed_summary

    trace = _trace()
    table = seed_summary(trace, ["a", "b"], {"a": 0.1, "b": [2.0, 2.5]})
    assert list(table.columns) == [*SUMMARY_COLUMNS, "true_value"]
    assert list(table.index) == ["a", "b[0]", "b[1]"]
    assert list(table["true_value"]) == [0.1, 2.0, 2.5]
    draws = trace["posterior"]["a"].values
    lo, hi = np.asarray(hdi(draws.ravel(), prob=0.94))
    assert table.loc["a", "hdi_3%"] == pytest.approx(lo, abs=1e-3)
    assert table.loc["a", "hdi_97%"] == pytest.approx(hi, abs=1e-3)
    assert table.loc["a", "mean"] == round(float(draws.mean()), 3)  # 3 decimals, not by MCSE


def test_high_rhat_is_warned_about_by_name():
    from sbc.notebook import rhat_warning, seed_summary

    calm = seed_summary(_trace(), ["a", "b"], {"a": 0.0, "b": [2.0, 2.0]})
    assert calm["r_hat"].max() <= 1.01 and rhat_warning(calm) == ""
    split = seed_summary(_trace(shift=1.0), ["a", "b"], {"a": 0.0, "b": [2.0, 2.0]})
    warning = rhat_warning(split)
    assert split.loc["a", "r_hat"] > 1.01
    assert warning.startswith("\nWARNING: R-hat above 1.01 for a (")
    assert "b[0]" not in warning
