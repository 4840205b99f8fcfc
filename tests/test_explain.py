"""Explanations of a rejection (sbc/explain.py): a shift, a too-narrow and a too-wide
posterior are located in the right part of the rank distribution with the fits that fall
there; calibrated ranks are explained by nothing at the band's stated false-alarm rate; the
Shapley values are those of arviz-stats' pot_c test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sbc import explain

N = 100


def _ranks(seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Fractional ranks of N truths in a normal posterior moved by ``shift`` posterior sds and
    scaled by ``scale`` (0, 1: exact)."""
    z = np.random.default_rng(seed).normal(size=N)
    return stats.norm.cdf((z + shift) / scale)


def test_a_shift_is_located_in_the_upper_ranks_with_its_replicates():
    u = _ranks(1, shift=0.8)
    reps = np.arange(N) + 500
    found = explain.explain_ranks(u, reps, "mu", "mu")
    region = found.region
    assert found.shape == "biased_low" and region.kind == "upper tail"
    assert region.count == int(np.sum(u > region.above)) > region.expected == N * (1 - region.above)
    assert found.text().startswith(f"too many ranks above {region.above:.2f}: {region.count} of 100")
    # every fit in the region is listed, once, with its own rank, most responsible first
    assert sorted(found.reps) == sorted(reps[u > region.above].tolist())
    assert all(u[r - 500] == x for r, x in zip(found.reps, found.u))
    assert list(found.shapley) == sorted(found.shapley, reverse=True)


def test_a_too_narrow_posterior_is_located_in_both_tails():
    u = _ranks(1, scale=0.5)
    found = explain.explain_ranks(u, np.arange(N))
    region = found.region
    assert found.shape == "too_narrow" and region.kind == "tails"
    assert region.below < 0.5 < region.above
    listed = np.asarray(found.u)
    assert np.all((listed <= region.below) | (listed > region.above))
    assert region.count >= 3 * region.expected
    assert "in the tails" in found.text()


def test_a_too_wide_posterior_is_located_in_the_middle():
    found = explain.explain_ranks(_ranks(1, scale=2.0), np.arange(N))
    region = found.region
    assert found.shape == "too_wide" and region.kind == "middle"
    assert region.above < 0.5 < region.below
    assert all(region.above < x <= region.below for x in found.u)


def test_calibrated_ranks_are_explained_by_nothing():
    found = explain.explain_ranks(np.random.default_rng(1).random(N), np.arange(N))
    assert found.region is None and found.reps == () and found.shapley == ()
    assert found.text().startswith("nothing drives a rejection")
    # the band is simultaneous at 95 %: calibrated ranks leave it in about 5 % of 300
    # seeds; more than 27 happens with probability below 0.002 (Binomial(300, 0.05))
    named = sum(explain.rejection_region(np.random.default_rng(s).random(N)) is not None
                for s in range(300))
    assert named <= stats.binom.ppf(0.998, 300, 0.05) == 27
    assert named >= 3  # it is a band, not a constant "nothing"


def test_nan_ranks_are_dropped_with_their_replicates():
    u = _ranks(1, shift=0.8)
    u[:5] = np.nan
    found = explain.explain_ranks(u, np.arange(N))
    assert found.n == N - 5 and not set(found.reps) & set(range(5))


def test_shapley_values_are_those_of_arviz_stats_pot_c():
    from arviz_stats.base import array_stats

    if not hasattr(array_stats, "uniformity_test"):
        pytest.skip("arviz-stats before 1.3 has no pot_c test")
    u = _ranks(3, scale=0.7)
    _, _, theirs = array_stats.uniformity_test(u, method="pot_c")
    np.testing.assert_allclose(explain.shapley_contributions(u), theirs, rtol=1e-9)


def test_failing_groups_are_explained_by_their_worst_element():
    u_bad, u_good = _ranks(2, scale=0.5), _ranks(3)
    block = pd.DataFrame({"name": ["s"] * N + ["g[0]"] * N, "rep": list(range(N)) * 2,
                          "u": np.concatenate([u_bad, u_good])})
    groups = pd.DataFrame({"group": ["s", "g"], "fails": [True, False], "worst": ["s", "g[0]"]})
    found = explain.explain_failures(groups, block)
    assert [(f.name, f.group) for f in found] == [("s", "s")]
    assert found[0].region.kind == "tails"
