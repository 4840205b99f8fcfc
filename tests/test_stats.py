"""Tests for sbc.stats: fractional ranks, ECDF bands, uniformity test, shapes, coverage,
multiplicity and recovery.

Statistical thresholds carry their false-alarm rate in a comment.  Seeds are fixed, so each
test is deterministic; the stated rate is how often it would fail for a random seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import bdtr
from scipy.stats import binom, norm

from sbc.stats import (
    coverage,
    ecdf_band,
    ecdf_difference,
    evaluation_points,
    failure_shape,
    fractional_ranks,
    holm,
    jeffreys_interval,
    overall_verdict,
    pooled_fractional_ranks,
    pooled_pvalue,
    recovery,
    uniformity_test,
    wilson_interval,
)
from sbc.uniformity import _two_sided_table

Z999 = norm.ppf(0.9995)  # 3.29: two-sided 99.9%


def simulate_ranks(rng, n_rep, n_draws, scale=1.0, shift=0.0):
    """Ranks of the truth among draws from a (mis)specified posterior, conjugate normal model.

    truth ~ N(0, 1), y ~ N(truth, 0.5^2): exact posterior N(m, s).  Draws come from
    N(m + shift * s, scale * s); scale = 1, shift = 0 is correct inference.
    Returns (truth, m, s, ranks).
    """
    sigma_y = 0.5
    truth = rng.normal(size=n_rep)
    y = truth + sigma_y * rng.normal(size=n_rep)
    s2 = 1.0 / (1.0 + 1.0 / sigma_y**2)
    m = s2 * y / sigma_y**2
    s = np.sqrt(s2)
    draws = m[:, None] + shift * s + scale * s * rng.normal(size=(n_rep, n_draws))
    return truth, m, np.full(n_rep, s), (draws < truth[:, None]).sum(axis=1)


# --------------------------------------------------------------------------------------
# Fractional ranks
# --------------------------------------------------------------------------------------


def test_fractional_ranks_use_true_number_of_draws():
    rng = np.random.default_rng(1)
    # Ranks 0..10 among L = 100 draws: all in the bottom tenth, not uniform.
    ranks = rng.integers(0, 11, size=200)
    u = fractional_ranks(ranks, 100)
    assert u.max() <= 10.5 / 101
    assert uniformity_test(u).p_value < 0.001  # deviation is huge; no false-alarm issue
    # Same ranks, L = 10: uniform.
    np.testing.assert_allclose(fractional_ranks(ranks, 10), (ranks + 0.5) / 11)

    # L varies by replicate (ESS-based thinning) and ranks are uniform on 0..L_i.
    n_ranked = rng.integers(20, 201, size=400)
    ranks = rng.integers(0, n_ranked + 1)
    good = uniformity_test(fractional_ranks(ranks, n_ranked)).p_value
    wrong = uniformity_test((ranks + 0.5) / (n_ranked.max() + 1)).p_value
    assert good > 0.01  # null holds: fails for 1% of seeds
    assert wrong < 0.001  # dividing by the common maximum fakes a failure


def test_fractional_ranks_validation_nan_and_shapes():
    with pytest.raises(ValueError, match="exceeds the number of ranked draws"):
        fractional_ranks([3, 11], [10, 10])
    with pytest.raises(ValueError, match=">= 0"):
        fractional_ranks([-1], [10])
    u = fractional_ranks([0.0, np.nan, 10.0], [10, 10, 10])
    np.testing.assert_allclose(u, [0.5 / 11, np.nan, 10.5 / 11])
    # NaN rank may come with a meaningless n_ranked
    assert np.isnan(fractional_ranks([np.nan], [np.nan])[0])
    # one L per replicate aligns with axis 0 of (n_rep, k) ranks
    u2 = fractional_ranks(np.array([[0, 1], [2, 3]]), np.array([1, 3]))
    np.testing.assert_allclose(u2, [[0.25, 0.75], [2.5 / 4, 3.5 / 4]])
    # randomised PIT stays within the rank's cell
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 51, size=1000)
    ur = fractional_ranks(ranks, 50, rng=rng)
    assert np.all((ur >= ranks / 51) & (ur <= (ranks + 1) / 51))


def test_pooled_fractional_ranks_concatenates_and_drops_nan():
    u = np.array([[0.1, 0.2], [np.nan, 0.4]])
    np.testing.assert_allclose(pooled_fractional_ranks(u), [0.1, 0.2, 0.4])
    np.testing.assert_allclose(pooled_fractional_ranks([[0.1], [0.3, np.nan]]), [0.1, 0.3])


# --------------------------------------------------------------------------------------
# ECDF band and uniformity test
# --------------------------------------------------------------------------------------


def test_two_sided_table_has_no_nan_where_scipy_bdtr_does():
    # The arviz-stats 1.3.3 flaw: bdtr(-1, ...) is NaN, so "1 - bdtr(count - 1)" is NaN at
    # count 0.  Our table must give P(X >= 0) = 1 there and be finite everywhere.
    assert np.isnan(bdtr(-1, 10, 0.3))
    n = 50
    table = _two_sided_table(n, n - 1)
    assert np.all(np.isfinite(table))
    z = evaluation_points(n)
    lower = binom.cdf(np.arange(n + 1)[None, :], n, z[:, None])
    upper = binom.sf(np.arange(n + 1)[None, :] - 1, n, z[:, None])
    np.testing.assert_allclose(table, np.minimum(1, 2 * np.minimum(lower, upper)), rtol=1e-9)


@pytest.mark.parametrize("n", [100, 500])
def test_ecdf_band_has_nominal_simultaneous_coverage(n):
    n_sim, n_fresh = 20_000, 2000
    band = ecdf_band(n, prob=0.95, n_sim=n_sim, seed=7)
    assert np.all(band.lower < 0) and np.all(band.upper > 0)
    rng = np.random.default_rng(2024)  # different from the band's seed
    out = np.empty(n_fresh, dtype=bool)
    for i in range(n_fresh):
        u = rng.uniform(size=n)
        d = ecdf_difference(u, band.z)
        out[i] = np.any((d < band.lower - 1e-12) | (d > band.upper + 1e-12))
        # leaving the band is the same event as the gamma statistic falling below gamma
        stat = uniformity_test(u, n_sim=n_sim, seed=7).statistic
        assert out[i] == (stat < band.gamma)
    rate = out.mean()
    # Binomial 99.9% interval for the exit share of n_fresh samples (false alarm 0.1%),
    # widened for the Monte Carlo error of the band's own gamma (n_sim simulations).
    tol = Z999 * np.sqrt(0.05 * 0.95 * (1 / n_fresh + 1 / n_sim))
    assert abs(rate - 0.05) <= tol, rate


def test_ecdf_band_is_cached_and_read_only():
    a = ecdf_band(200)
    assert ecdf_band(200) is a
    with pytest.raises(ValueError):
        a.lower[0] = 0.0


def test_uniformity_false_alarm_rate_nominal():
    rng = np.random.default_rng(3)
    n_studies, n_rep = 400, 200
    p = np.empty(n_studies)
    for s in range(n_studies):
        n_ranked = rng.integers(30, 301, size=n_rep)  # L varies by replicate
        ranks = rng.integers(0, n_ranked + 1)  # exact discrete-uniform ranks
        p[s] = uniformity_test(fractional_ranks(ranks, n_ranked)).p_value
    rate = np.mean(p < 0.05)
    # 0.05 +- 3 binomial sd for 400 studies (fails for ~0.3% of seeds).
    sd = np.sqrt(0.05 * 0.95 / n_studies)
    assert 0.05 - 3 * sd <= rate <= 0.05 + 3 * sd, rate


@pytest.mark.parametrize(
    ("scale", "shift", "shape"),
    [
        (0.5, 0.0, "too_narrow"),
        (2.0, 0.0, "too_wide"),
        (1.0, 0.5, "biased_high"),  # posterior shifted up: truth below the draws, low ranks
        (1.0, -0.5, "biased_low"),
    ],
)
def test_miscalibration_detected_and_shape_named(scale, shift, shape):
    rng = np.random.default_rng(11)
    *_, ranks = simulate_ranks(rng, 200, 100, scale=scale, shift=shift)
    res = uniformity_test(fractional_ranks(ranks, 100))
    # Effects are large (p ~ 1/(n_sim + 1)); p < 0.01 has power ~1 here.
    assert res.p_value < 0.01, res
    assert res.shape == shape
    assert failure_shape(fractional_ranks(ranks, 100)) == shape


def test_exact_posterior_passes():
    rng = np.random.default_rng(12)
    *_, ranks = simulate_ranks(rng, 200, 100)
    res = uniformity_test(fractional_ranks(ranks, 100))
    assert res.p_value >= 0.05  # fails for 5% of seeds
    assert res.shape == "ok"  # implied by p >= alpha
    assert res.n == 200


def test_failure_shape_on_known_distributions():
    rng = np.random.default_rng(5)
    n = 500
    assert failure_shape(rng.beta(0.5, 0.5, n)) == "too_narrow"
    assert failure_shape(rng.beta(3, 3, n)) == "too_wide"
    assert failure_shape(rng.uniform(size=n) ** 1.5) == "biased_high"  # mass near 0
    assert failure_shape(rng.uniform(size=n) ** (1 / 1.5)) == "biased_low"  # mass near 1
    # under uniformity both |z| <= 2 with probability ~0.9 (fails for ~10% of seeds)
    assert failure_shape(rng.uniform(size=n)) == "ok"


def test_uniformity_test_drops_nan():
    rng = np.random.default_rng(6)
    u = rng.uniform(size=100)
    with_nan = np.concatenate([u, [np.nan] * 5])
    assert uniformity_test(with_nan) == uniformity_test(u)


# --------------------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------------------


def test_wilson_interval_hand_checked():
    # k = 8, n = 10, z = 1.959964: centre (8 + z^2/2) / (10 + z^2) = 0.716740,
    # half-width z / (10 + z^2) * sqrt(8 * 2 / 10 + z^2 / 4) = 0.226578.
    lo, hi = wilson_interval(8, 10)
    np.testing.assert_allclose([lo, hi], [0.490162, 0.943318], atol=1e-6)
    lo0, hi0 = wilson_interval(0, 20)
    assert lo0 == 0.0 and 0.15 < hi0 < 0.17  # 0.1611
    jl, jh = jeffreys_interval([0, 10], [10, 10])
    assert jl[0] == 0.0 and jh[1] == 1.0


def test_coverage_of_exact_posterior_is_nominal():
    rng = np.random.default_rng(8)
    n_draws = 200
    *_, ranks = simulate_ranks(rng, 1000, n_draws)
    u = fractional_ranks(ranks, n_draws)
    # inside iff |u - 1/2| <= level/2, i.e. the truth is between the draws' quantiles
    levels = (0.5, 0.8, 0.9, 0.95)
    res = coverage(u, levels, conf=0.999)
    # Each level inside its 99.9% Wilson interval: false alarm ~0.1% per level, 0.4% in all.
    # (Rank discreteness shifts true coverage by < 1 / (n_draws + 1) = 0.005.)
    assert np.all((res.lower <= res.levels) & (res.levels <= res.upper)), res
    assert res.n == 1000 and res.k.shape == (4,)
    # Too-narrow posteriors under-cover, clearly outside the interval.
    *_, ranks = simulate_ranks(rng, 1000, n_draws, scale=0.5)
    res = coverage(fractional_ranks(ranks, n_draws), levels, method="jeffreys")
    assert np.all(res.upper < res.levels)


def test_coverage_equivalence_with_quantiles():
    rng = np.random.default_rng(9)
    draws = rng.normal(size=(300, 99))
    truth = rng.normal(size=300)
    u = fractional_ranks((draws < truth[:, None]).sum(axis=1), 99)
    lo, hi = np.quantile(draws, [0.1, 0.9], axis=1, method="inverted_cdf")
    by_quantile = np.mean((truth >= lo) & (truth <= hi))
    # same count up to the truth falling in the boundary draw cells (<= 2 of 100 cells)
    assert abs(coverage(u, [0.8]).coverage[0] - by_quantile) <= 0.03


# --------------------------------------------------------------------------------------
# Several parameters
# --------------------------------------------------------------------------------------


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> cummax.
    adj = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    adj = holm([0.5, np.nan, 0.6])
    np.testing.assert_allclose(adj, [1.0, np.nan, 1.0])
    reject, adj = overall_verdict([0.001, 0.2, 0.3], alpha=0.05)
    assert reject and adj[0] == pytest.approx(0.003)
    assert not overall_verdict([0.02, 0.03, 0.04])[0]  # Holm: 0.06 > 0.05


def test_overall_verdict_false_alarm_under_null():
    rng = np.random.default_rng(10)
    n_studies, k, n_rep = 300, 20, 100
    rejected = np.empty(n_studies, dtype=bool)
    for s in range(n_studies):
        p = [uniformity_test(rng.uniform(size=n_rep)).p_value for _ in range(k)]
        rejected[s] = overall_verdict(p)[0]
    rate = rejected.mean()
    # Holm keeps FWER <= 0.05; allow 3 binomial sd for 300 studies (fails for ~0.1% of seeds).
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / n_studies), rate


def test_pooled_pvalue_valid_for_dependent_elements_while_pooled_ecdf_is_not():
    rng = np.random.default_rng(13)
    n_studies, k, n_rep, rho = 150, 10, 100, 0.8
    naive, pooled = np.empty(n_studies), np.empty(n_studies)
    for s in range(n_studies):
        # marginally uniform, dependent within a replicate through a shared component
        shared = rng.normal(size=(n_rep, 1))
        u = norm.cdf(rho * shared + np.sqrt(1 - rho**2) * rng.normal(size=(n_rep, k)))
        naive[s] = uniformity_test(pooled_fractional_ranks(u)).p_value
        pooled[s] = pooled_pvalue([uniformity_test(u[:, j]).p_value for j in range(k)])
    # Bonferroni-min is valid: <= 0.05 + 3 binomial sd (fails for ~0.1% of seeds).
    assert np.mean(pooled < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / n_studies)
    # One band for n_rep * k dependent values is too narrow: far above 0.05.
    assert np.mean(naive < 0.05) > 0.2
    assert pooled_pvalue([0.01, 0.5, np.nan]) == pytest.approx(0.02)
    assert pooled_pvalue([0.3, 0.5]) == 0.6 and pooled_pvalue([0.9, 0.8]) == 1.0


# --------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------


def test_recovery_hand_computed():
    res = recovery([0.0, 1.0, 2.0], [0.5, 1.0, 1.5], [0.5, 0.5, 0.5], prior_sd=1.0)
    np.testing.assert_allclose(res.z, [1.0, 0.0, -1.0])
    np.testing.assert_allclose(res.contraction, 0.75)
    assert res.bias == pytest.approx(0.0)
    assert res.rmse == pytest.approx(np.sqrt(0.5 / 3))


def test_recovery_of_exact_posterior():
    rng = np.random.default_rng(14)
    truth, m, s, _ = simulate_ranks(rng, 4000, 1)
    m[0] = np.nan  # a failed fit
    res = recovery(truth, m, s)  # prior sd estimated from the truths (prior draws)
    z = res.z[1:]
    # z ~ N(0, 1): mean within 4 sd of 0 (sd 1/sqrt(n)); sd within 0.05 of 1 (sd of sd ~0.011)
    assert abs(z.mean()) < 4 / np.sqrt(len(z)) and abs(z.std() - 1) < 0.05
    assert res.prior_sd == pytest.approx(1.0, abs=0.05)  # sd of the estimate ~0.011
    np.testing.assert_allclose(res.contraction[1:], 1 - s[1:] ** 2 / res.prior_sd**2)
    assert res.rmse == pytest.approx(s[0], rel=0.05)  # RMSE of posterior mean = posterior sd
    assert abs(res.bias) < 4 * s[0] / np.sqrt(len(z))


def test_coverage_difference_of_calibrated_ranks_stays_in_the_band():
    """Under calibration the coverage-difference curve (ECDF of |2u - 1| minus the width) of
    n = 100 exact uniforms leaves the simultaneous 95 % band in about 5 % of 400 samples.
    Pass region [8, 34] of Binomial(400, 0.05): a false alarm has probability below 0.002."""
    from sbc.stats import coverage_difference, ecdf_band

    band = ecdf_band(100, 0.95)
    rng = np.random.default_rng(2027)
    outside = 0
    for _ in range(400):
        curve = coverage_difference(rng.uniform(size=100), band.z)
        outside += bool(np.any((curve < band.lower - 1e-12) | (curve > band.upper + 1e-12)))
    assert 8 <= outside <= 34, outside


def test_coverage_difference_sees_an_overconfident_posterior():
    """Ranks of a posterior too narrow (U-shaped) give intervals that cover too rarely: the
    curve sits below zero and leaves the band."""
    from sbc.stats import coverage_difference, ecdf_band

    u = np.random.default_rng(3).beta(0.6, 0.6, size=200)
    band = ecdf_band(200, 0.95)
    curve = coverage_difference(u, band.z)
    assert curve[len(curve) // 2] < 0 and np.any(curve < band.lower)
    assert coverage_difference(np.array([0.5, 0.05, 0.95]), np.array([0.5]))[0] == \
        pytest.approx(1 / 3 - 0.5)  # only the middle one lies in the central 50 % interval


def test_pooled_band_holds_the_pooled_curve_of_dependent_elements():
    """The pooled ECDF of k = 5 exchangeable, calibrated but strongly dependent elements (each
    u = Phi(shared + own noise) of one replicate, so every element is exactly uniform) leaves
    the pooled band (Bonferroni over the elements) in at most 5 % of 300 samples: pass region
    outside <= 27, a false alarm of probability below 0.003 even at the 5 % limit.  The band
    of n * k independent values is too narrow for these curves (far more than 5 % outside)."""
    from scipy.stats import norm

    from sbc.stats import ecdf_band, ecdf_difference, pooled_band, pooled_fractional_ranks

    n, k = 60, 5
    band = pooled_band(n, k)
    assert np.all(band.lower <= ecdf_band(n).lower) and np.all(band.upper >= ecdf_band(n).upper)
    naive = ecdf_band(n * k)
    rng = np.random.default_rng(2028)
    outside = naive_outside = 0
    for _ in range(300):
        shared = rng.normal(size=(n, 1)) * np.sqrt(0.8)
        u = norm.cdf(shared + rng.normal(size=(n, k)) * np.sqrt(0.2))  # each element ~ U(0, 1)
        pooled = pooled_fractional_ranks(u)
        curve = ecdf_difference(pooled, band.z)
        outside += bool(np.any((curve < band.lower - 1e-12) | (curve > band.upper + 1e-12)))
        wide = ecdf_difference(pooled, naive.z)
        naive_outside += bool(np.any((wide < naive.lower) | (wide > naive.upper)))
    assert outside <= 27, outside
    assert naive_outside > 60, naive_outside
    assert pooled_band(n, 1).gamma == ecdf_band(n).gamma
    with pytest.raises(ValueError):
        pooled_band(n, 0)
