"""sbc.uniformity.combined_uniformity_test: the smallest Monte Carlo p-value of Anderson-Darling,
Berk-Jones and Neyman's smooth test of order 3, calibrated on the same null samples.

Its statistics against their textbook definitions, its size on exact-uniform samples (over
many null seeds, so the check is of the method and not of one lucky null draw), and its power
against clear departures, also where sbc's gamma test is weak.  Fast: small n and n_sim.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import legendre
from scipy.stats import norm

from sbc import uniformity
from sbc.uniformity import (COMBINED_COMPONENTS, UniformityResult, combined_statistics,
                            combined_uniformity_pvalues, combined_uniformity_test,
                            uniformity_pvalues)


def _anderson_darling(u):
    s, n = np.sort(u), len(u)
    i = np.arange(1, n + 1)
    return -n - np.mean((2 * i - 1) * (np.log(s) + np.log(1 - s[::-1])))


def _berk_jones(u):
    """sup over x of n KL(ECDF(x) || x), by brute force on a fine grid plus both sides of
    every order statistic."""
    s, n = np.sort(u), len(u)
    eps = 1e-12
    x = np.concatenate([np.linspace(1e-6, 1 - 1e-6, 20001), s - eps, s, s + eps])
    x = np.clip(x, 1e-15, 1 - 1e-15)
    f = np.searchsorted(s, x, side="right") / n
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (np.nan_to_num(f * np.log(f / x)) + np.nan_to_num((1 - f) * np.log((1 - f) / (1 - x))))
    return n * kl.max()


def _neyman3(u):
    x, n = 2 * np.asarray(u) - 1, len(u)
    return sum((2 * k + 1) * legendre.legval(x, np.eye(k + 1)[k]).sum() ** 2
               for k in (1, 2, 3)) / n


@pytest.mark.parametrize("n", [2, 7, 30])
def test_statistics_match_their_definitions(n):
    rng = np.random.default_rng(n)
    u = rng.uniform(size=(5, n)) ** 1.3
    got = combined_statistics(u)
    assert got.shape == (5, len(COMBINED_COMPONENTS))
    for row, values in zip(u, got):
        assert values[0] == pytest.approx(_anderson_darling(row), rel=1e-9)
        assert values[1] == pytest.approx(_berk_jones(row), rel=1e-6)
        assert values[2] == pytest.approx(_neyman3(row), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n, n_sim", [(5, 300), (30, 200)])
def test_p_value_is_the_rank_among_all_samples(n, n_sim):
    """The p-value is, by brute force, the share of the n_sim + 1 samples (null and observed)
    whose sorted component counts, each counted among all n_sim + 1, are lexicographically at
    most the observed one's: the exchangeable construction that makes the size exact."""
    rng = np.random.default_rng(n)
    u = np.vstack([rng.uniform(size=(150, n)), rng.uniform(size=(50, n)) ** 3])
    null, counts, _, _ = uniformity._combined_null(n, n_sim, 3)
    values = np.stack([null[k][n_sim - counts[:, k]] for k in range(3)], axis=1)
    want = []
    for row in combined_statistics(u):
        every = np.vstack([row, values])
        c = np.stack([(every[None, :, k] >= every[:, None, k]).sum(axis=1) for k in range(3)],
                     axis=1)
        key = uniformity._lex_keys(c, n_sim + 2)
        want.append(np.sum(key <= key[0]) / (n_sim + 1))
    assert np.array_equal(combined_uniformity_pvalues(u, n_sim=n_sim, seed=3), want)


@pytest.mark.parametrize("level", [0.01, 0.05, 0.2])
def test_size_on_exact_uniform_samples(level):
    """Over 100 null seeds x 100 uniform samples of n = 40 (n_sim = 500 each), the share of
    p-values <= level is level within 4 sd.  The sd adds the binomial error of the 10 000
    samples to that of each seed's null draw: the size given one null draw varies by about
    sqrt(level (1 - level) / n_sim) around level, and the mean over 100 seeds by a tenth of
    that.  Valid by construction, so the check is two-sided: neither too many false alarms
    nor a conservative test."""
    n_sim, seeds, per_seed = 500, 100, 100
    rng = np.random.default_rng(20260610)
    p = np.concatenate([combined_uniformity_pvalues(rng.uniform(size=(per_seed, 40)),
                                                    n_sim=n_sim, seed=s) for s in range(seeds)])
    sd = np.sqrt(level * (1 - level) * (1 / len(p) + 1 / (n_sim * seeds)))
    assert abs(np.mean(p <= level) - level) <= 4 * sd, (np.mean(p <= level), level, sd)


def test_default_null_false_alarm_rate():
    """With its default null (n_sim = 4000, fixed seed): 2000 exact-uniform samples of
    n = 100 are rejected at 0.05 at a rate of 0.05 within 4 sd (binomial and null draw)."""
    u = np.random.default_rng(20260611).uniform(size=(2000, 100))
    rate = np.mean(combined_uniformity_pvalues(u) <= 0.05)
    assert abs(rate - 0.05) <= 4 * np.sqrt(0.05 * 0.95 * (1 / 2000 + 1 / 4000)), rate


def _departure(kind, rng, m, n):
    z = rng.standard_normal((m, n))
    if kind == "shift":
        return norm.cdf(z + 0.5)
    if kind == "too_narrow":
        return norm.cdf(z / 0.7)
    if kind == "too_wide":
        return norm.cdf(z / 1.5)
    if kind == "skew":  # standardised chi-square(8): right mean and sd, skewness 1
        return norm.cdf((rng.chisquare(8, (m, n)) - 8) / 4)
    return norm.cdf(z + 2.0 * (rng.uniform(size=(m, n)) < 0.1))  # mixture: 10 % off by 2 sd


@pytest.mark.parametrize("kind", ["shift", "too_narrow", "too_wide", "skew", "mixture"])
def test_power_against_clear_departures(kind):
    """n = 200 ranks of a clearly miscalibrated posterior are rejected at 0.05 in at least
    90 % of 200 studies (with these seeds: 0.93 for the mixture, 1.0 for the others)."""
    u = _departure(kind, np.random.default_rng(20260612), 200, 200)
    assert np.mean(combined_uniformity_pvalues(u) <= 0.05) >= 0.9


@pytest.mark.parametrize("kind, n", [("skew", 100), ("mixture", 50), ("too_narrow", 50)])
def test_more_power_than_the_gamma_test_where_it_is_weak(kind, n):
    """Where benchmarks/power.md finds sbc's gamma test well behind the best single test (skew,
    mixture, too narrow at small n; too narrow is 0.7x here), the combined test rejects at
    0.05 clearly more often: with these seeds 0.77 vs 0.50, 0.44 vs 0.26, 0.86 vs 0.65 (1000
    studies, the same for both tests)."""
    u = _departure(kind, np.random.default_rng(20260613), 1000, n)
    combined = np.mean(combined_uniformity_pvalues(u) <= 0.05)
    gamma = np.mean(uniformity_pvalues(u) <= 0.05)
    assert combined >= gamma + 0.05, (combined, gamma)


def test_one_sample_matches_the_batch_and_reports():
    rng = np.random.default_rng(7)
    u = rng.uniform(size=(3, 60))
    u[2] = u[2] ** 3  # ranks piled up near 0: the truth below the draws
    batch = combined_uniformity_pvalues(u, n_sim=2000, seed=11)
    for row, p in zip(u, batch):
        r = combined_uniformity_test(row, n_sim=2000, seed=11)
        assert isinstance(r, UniformityResult)
        assert r.p_value == p and r.n == 60
        assert 0 < r.statistic <= 1
    bad = combined_uniformity_test(u[2], n_sim=2000, seed=11)
    assert bad.p_value == pytest.approx(1 / 2001)  # at its floor
    assert bad.shape == "biased_high"
    assert combined_uniformity_test(u[0], n_sim=2000, seed=11).p_value > 0.05


def test_input_handling():
    u = np.random.default_rng(8).uniform(size=50)
    with_nan = np.concatenate([u, [np.nan, np.nan]])
    assert combined_uniformity_test(with_nan).p_value == combined_uniformity_test(u).p_value
    p1, p2 = (combined_uniformity_test(u, seed=s).p_value for s in (1, 2))
    # another null draw moves p by Monte Carlo error only
    assert abs(p1 - p2) <= 4 * np.sqrt(2 * p1 * (1 - p1) / 4000) + 1 / 4001
    assert np.isfinite(combined_uniformity_test(np.array([0.0, 0.5, 1.0])).p_value)
    with pytest.raises(ValueError):
        combined_uniformity_test([0.5])
    with pytest.raises(ValueError):
        combined_uniformity_test([0.2, 1.5])
