"""The vectorized ESS equals arviz-stats' on autocorrelated chains; low-ESS flags."""

import numpy as np
import pytest
from arviz_stats.base import array_stats

from sbc.diagnostics import convergence
from sbc.replicate import low_ess


def ar1(n_chains, n_draws, phis, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros((n_chains, n_draws, len(phis)))
    for t in range(1, n_draws):
        x[:, t] = phis * x[:, t - 1] + rng.normal(size=(n_chains, len(phis)))
    return x + np.array([0.0, 5.0, -3.0, 1.0])[: len(phis)]


@pytest.mark.parametrize("n_chains", [1, 3])
def test_vectorized_ess_matches_arviz_stats(n_chains):
    matrix = ar1(n_chains, 500, np.array([0.0, 0.5, 0.9, 0.99]), seed=n_chains)
    ours = convergence(matrix)
    bulk = array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="bulk")
    tail = array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="tail", prob=(0.05, 0.95))
    np.testing.assert_allclose(ours["ess_bulk"], bulk, rtol=1e-9)
    np.testing.assert_allclose(ours["ess_tail"], tail, rtol=1e-9)
    # Stronger autocorrelation, fewer effective draws.
    assert np.all(np.diff(ours["ess_bulk"]) < 0)
    if n_chains > 1:
        np.testing.assert_allclose(ours["rhat"], array_stats.rhat(matrix, chain_axis=0, draw_axis=1))


def test_stuck_chain_has_zero_ess():
    matrix = ar1(1, 200, np.array([0.3, 0.3]), seed=1)
    matrix[:, :, 1] = 2.0
    assert convergence(matrix)["ess_bulk"][1] == 0.0


def test_low_ess_flags():
    assert low_ess(13.0, 13, "auto")  # the seed model's stuck hyper-means at 9,000 rows
    assert not low_ess(400.0, 400, "auto")
    assert low_ess(300.0, 500, 2)  # fixed thinning ranks autocorrelated draws
    assert not low_ess(300.0, 250, 4)
