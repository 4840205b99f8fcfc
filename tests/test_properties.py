"""Property-based tests of the framework itself (hypothesis): ranks, per-parameter
statistics, seeds, coverage and thinning.

Statistical tolerances carry their false-alarm rate in a comment; hypothesis runs are
derandomized so the suite is deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sbc.rank import rank_of_truth, thin_draws, thin_factor
from sbc.stats import coverage
from sbc.testing.calibration import calibration_checks, check_calibration

FAST = settings(max_examples=40, deadline=None, derandomize=True)


@FAST
@given(n_draws=st.integers(1, 60), k=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       coarse=st.booleans())
def test_ranks_lie_in_0_to_number_of_draws(n_draws, k, seed, coarse):
    rng = np.random.default_rng(seed)
    draws = rng.normal(size=(n_draws, k))
    truth = rng.normal(size=k)
    if coarse:  # rounded values make ties, which are broken at random
        draws, truth = np.round(draws), np.round(truth)
    ranks = rank_of_truth(draws, truth, rng)
    assert ranks.shape == (k,)
    assert np.all((ranks >= 0) & (ranks <= n_draws))
    assert np.issubdtype(ranks.dtype, np.integer)


@FAST
@given(n_draws=st.integers(2, 40), k=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_permuting_parameters_permutes_their_ranks(n_draws, k, seed):
    rng = np.random.default_rng(seed)
    draws, truth = rng.normal(size=(n_draws, k)), rng.normal(size=k)  # continuous: no ties
    order = rng.permutation(k)
    ranks = rank_of_truth(draws, truth, np.random.default_rng(0))
    permuted = rank_of_truth(draws[:, order], truth[order], np.random.default_rng(0))
    np.testing.assert_array_equal(permuted, ranks[order])


def _params_frame(rng, n_rep, k, n_ranked):
    """A parameters table like Store.tables()[1], with one miscalibrated scalar."""
    rows = []
    for j in range(k):
        ranks = rng.integers(0, n_ranked + 1, size=n_rep)
        if j == 0:  # piled up at the ends: a clear failure, so both outcomes are exercised
            ranks = np.where(rng.random(n_rep) < 0.5, 0, n_ranked)
        kind = "quantity" if j == k - 1 else "parameter"
        rows += [{"rep": r, "name": f"p[{j}]" if kind == "parameter" else "loglik",
                  "group": "p" if kind == "parameter" else "loglik", "kind": kind,
                  "rank": int(ranks[r]), "n_ranked": n_ranked} for r in range(n_rep)]
    return pd.DataFrame(rows)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(k=st.integers(2, 5), n_rep=st.integers(20, 60), seed=st.integers(0, 2**32 - 1))
def test_permuting_parameter_order_keeps_per_parameter_statistics(k, n_rep, seed):
    rng = np.random.default_rng(seed)
    frame = _params_frame(rng, n_rep, k, n_ranked=99)
    shuffled = frame.sample(frac=1.0, random_state=int(rng.integers(2**31)))
    a = {c.name: c for c in calibration_checks(frame)}
    b = {c.name: c for c in calibration_checks(shuffled)}
    assert a == b
    assert a["p[0]"].failed and a["p[0]"].shape == "too_narrow"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(u=arrays(float, st.integers(1, 80), elements=st.floats(0.001, 0.999)),
       levels=st.lists(st.floats(0.01, 0.99), min_size=2, max_size=6, unique=True))
def test_coverage_is_monotone_in_interval_width(u, levels):
    levels = sorted(levels)
    result = coverage(u, levels)
    assert np.all(np.diff(result.coverage) >= 0)
    assert np.all(np.diff(result.k) >= 0)


def _ar1(rng, rho, n):
    x = np.empty(n)
    x[0] = rng.normal()
    noise = rng.normal(size=n) * np.sqrt(1 - rho**2)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + noise[i]
    return x


def _lag1(x):
    x = x - x.mean()
    return float(np.dot(x[:-1], x[1:]) / np.dot(x, x))


@settings(max_examples=20, deadline=None, derandomize=True)
@given(rho=st.floats(0.0, 0.95), seed=st.integers(0, 2**32 - 1))
def test_thinning_never_increases_autocorrelation_of_ranked_draws(rho, seed):
    from sbc.diagnostics import convergence

    rng = np.random.default_rng(seed)
    n = 2000
    chain = _ar1(rng, rho, n)[None, :, None]  # (chain, draw, scalar), as the replicate has it
    diag = convergence(chain)
    ess = float(min(diag["ess_bulk"].min(), diag["ess_tail"].min()))
    factor = thin_factor(ess, n)
    kept = thin_draws(chain, factor)[:, 0]
    assert len(kept) == -(-n // factor)
    # The lag-1 estimate of m independent-ish draws has sd ~ 1/sqrt(m); 4 sd of slack gives a
    # false-alarm rate below 1e-4 per example.
    assert _lag1(kept) <= max(_lag1(chain[0, :, 0]), 0.0) + 4 / np.sqrt(len(kept))


@FAST
@given(ess_a=st.floats(1, 5000), ess_b=st.floats(1, 5000), n=st.integers(10, 5000))
def test_thin_factor_grows_as_effective_sample_size_falls(ess_a, ess_b, n):
    lo, hi = sorted((ess_a, ess_b))
    assert thin_factor(lo, n) >= thin_factor(hi, n) >= 1
    assert thin_factor(lo, n) <= max(1, n // 10)  # always keeps at least 10 draws


@pytest.mark.filterwarnings("ignore")
def test_fixed_seed_gives_identical_results(tmp_path):
    runs = [check_calibration("normal_known_sigma", (3, 2, 1), n_sims=6, sampler="exact",
                              seed=11, out=tmp_path / name, report=False)
            for name in ("a", "b")]
    from sbc.store import Store

    tables = [Store(r.out).tables()[1] for r in runs]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert runs[0].checks == runs[1].checks
    other = check_calibration("normal_known_sigma", (3, 2, 1), n_sims=6, sampler="exact",
                              seed=12, out=tmp_path / "c", report=False)
    assert not Store(other.out).tables()[1]["truth"].equals(tables[0]["truth"])
