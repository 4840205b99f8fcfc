"""Calibration of binary decisions (sbc/decisions.py): the tests hold their stated size on
calibrated probabilities over many seeds and reject overconfident ones; the count test
with the law-of-total-variance variance holds its size when outcomes share a parameter,
and the independent-outcomes variance does not; the Brier decomposition and the
reliability tables add up."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from sbc import decisions as d

SEEDS = 300
ALPHA = 0.05
# rejections of a test of size ALPHA in SEEDS independent runs: Binomial(SEEDS, ALPHA);
# this bound is exceeded with probability about 0.002
MAX_REJECTIONS = int(stats.binom.ppf(0.998, SEEDS, ALPHA))


def _calibrated(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 0.6, n)
    return p, (rng.random(n) < p).astype(float)


def _overconfident(p: np.ndarray, factor: float = 2.0) -> np.ndarray:
    return special.expit(factor * special.logit(np.clip(p, 1e-9, 1 - 1e-9)))


def test_spiegelhalter_holds_its_size_on_calibrated_probabilities():
    rejections = sum(d.spiegelhalter_test(*_calibrated(s)).rejects(ALPHA) for s in range(SEEDS))
    assert rejections <= MAX_REJECTIONS
    assert rejections >= 3  # it is a test, not a constant "pass"


def test_spiegelhalter_rejects_overconfident_probabilities():
    z = []
    for s in range(50):
        p, y = _calibrated(s)
        z.append(d.spiegelhalter_test(_overconfident(p), y))
    assert all(t.rejects(ALPHA) for t in z)
    assert all(t.statistic > 0 for t in z)  # too extreme: outcomes closer to 1/2 than said


def test_brier_reliability_term_tells_calibrated_from_overconfident():
    p, y = _calibrated(1, 20_000)
    good, bad = d.brier(p, y), d.brier(_overconfident(p), y)
    assert good.reliability < 0.001 < bad.reliability
    assert bad.score > good.score
    for b, q in ((good, p), (bad, _overconfident(p))):
        assert b.score == pytest.approx(np.mean((q - y) ** 2))
        assert b.uncertainty == pytest.approx(y.mean() * (1 - y.mean()))
        assert b.score == pytest.approx(b.reliability - b.resolution + b.uncertainty
                                        + b.residual)


def test_brier_decomposition_is_exact_when_probabilities_are_constant_in_bins():
    rng = np.random.default_rng(3)
    p = rng.choice(np.arange(0.05, 1.0, 0.1), 5000)   # one value per bin
    y = (rng.random(5000) < p).astype(float)
    b = d.brier(p, y)
    assert abs(b.residual) < 1e-12
    assert b.n == 5000 and 0 < b.skill < 1


def test_reliability_table_bins_and_covers():
    p, y = _calibrated(7, 4000)
    t = d.reliability_table(p, y, bins=10)
    assert t.count.sum() == 4000
    rows = t.rows()
    assert rows[-1]["bin"].endswith("]") and rows[0]["bin"].startswith("[0.00")
    assert sum(r["covers"] for r in rows) >= 8   # 95 % intervals, 10 bins
    assert d.reliability_table([1.0, 0.0], [1, 0], bins=4).count.tolist() == [1, 0, 0, 1]
    over = d.reliability_table(_overconfident(p), y)
    assert sum(not r["covers"] for r in over.rows()) >= 4


def test_pooled_table_matches_pairs_and_widens_for_shared_units():
    """Per-unit binned sums pool to the same frequencies as the pairs; when the units'
    outcomes share a unit-level shift the cluster-robust interval is wider than the
    binomial one (which assumes independent pairs)."""
    rng = np.random.default_rng(11)
    sums, ps, ys = [], [], []
    for _ in range(60):
        p = rng.beta(0.6, 0.6, 300)
        shift = rng.normal(0, 0.8)                        # shared within the unit
        y = (rng.random(300) < special.expit(special.logit(p) + shift)).astype(float)
        sums.append(d.binned_sums(p, y))
        ps.append(p)
        ys.append(y)
    pooled = d.pooled_reliability_table(sums)
    pairs = d.reliability_table(np.concatenate(ps), np.concatenate(ys))
    np.testing.assert_allclose(pooled.observed, pairs.observed)
    np.testing.assert_allclose(pooled.count, pairs.count)
    assert np.all((pooled.upper - pooled.lower)[3:7] > (pairs.upper - pairs.lower)[3:7])
    assert np.isnan(d.pooled_reliability_table([sums[0]]).lower).all()  # one unit: no interval
    assert d.brier_from_sums(sums).n == 60 * 300


# --- the count test: a unit's outcomes share a parameter ---------------------------------
PIS = np.linspace(0.0025, 0.9975, 400)
LOG_PRIOR = stats.beta.logpdf(PIS, 2, 8)


def _unit(rng, genes: int = 200, mu: float = 1.5):
    """One screen of a two-class model with a shared class probability, exactly Bayes
    on a grid: pi ~ Beta(2, 8), class ~ Bernoulli(pi), signal ~ N(mu class, 1).  Returns
    (true count, posterior mean of the count, its posterior variance by the law of total
    variance over pi, sum p (1 - p) of the marginal probabilities)."""
    pi = rng.beta(2, 8)
    c = rng.random(genes) < pi
    x = rng.normal(mu * c, 1.0)
    l1, l0 = stats.norm.pdf(x, mu), stats.norm.pdf(x)
    mix = PIS[:, None] * l1 + (1 - PIS[:, None]) * l0
    lw = np.log(mix).sum(axis=1) + LOG_PRIOR
    w = np.exp(lw - lw.max())
    w /= w.sum()
    P = PIS[:, None] * l1 / mix                      # P(class | x, pi), (grid, genes)
    S, V = P.sum(axis=1), (P * (1 - P)).sum(axis=1)
    mean = w @ S
    p = w @ P
    return c.sum(), mean, w @ V + w @ (S - mean) ** 2, (p * (1 - p)).sum()


def test_count_z_with_total_variance_holds_its_size_and_independent_variance_fails():
    runs, units = 40, 50
    total, independent, sds = [], [], []
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        u = [_unit(rng) for _ in range(units)]
        a = d.count_z_test([d.count_z(n, m, v) for n, m, v, _ in u])
        b = d.count_z_test([d.count_z(n, m, v) for n, m, _, v in u])
        total.append(a.rejects(ALPHA))
        independent.append(b.rejects(ALPHA))
        sds.append((a.sd, b.sd))
    assert sum(total) <= int(stats.binom.ppf(0.998, runs, ALPHA))
    assert sum(independent) >= 0.9 * runs
    sd_total, sd_independent = np.mean(sds, axis=0)
    assert 0.9 < sd_total < 1.1 and sd_independent > 1.4


def test_count_z_test_holds_its_size_for_independent_outcomes():
    rejections = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        p = rng.beta(0.3, 3, (40, 300))
        y = rng.random(p.shape) < p
        z = [d.count_z(yy.sum(), pp.sum(), (pp * (1 - pp)).sum()) for pp, yy in zip(p, y)]
        rejections += d.count_z_test(z).rejects(ALPHA)
    assert rejections <= MAX_REJECTIONS


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="outcomes"):
        d.brier([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        d.spiegelhalter_test([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d.reliability_table([1.2], [1])
    assert math.isnan(d.count_z(3, 2.0, 0.0))
    assert math.isnan(d.count_z_test([0.5]).p_value)


def test_threshold_columns_give_the_share_of_draws_below_each_declared_threshold():
    """Per ranked scalar: its group's threshold and the share of draws below it; None for
    scalars of groups that declare none; no columns when the model declares nothing."""
    rng = np.random.default_rng(3)
    flat = rng.normal(size=(400, 4))
    groups = ["a", "b", "b", "sigma"]
    out = d.threshold_columns(flat, groups, {"b": -0.5, "a": 0.0})
    assert out["threshold"] == [0.0, -0.5, -0.5, None]
    expected = [(flat[:, 0] < 0).mean(), (flat[:, 1] < -0.5).mean(),
                (flat[:, 2] < -0.5).mean(), None]
    assert out["p_below_threshold"] == expected
    assert all(isinstance(p, float) for p in out["p_below_threshold"][:3])
    assert d.threshold_columns(flat, groups, {}) == {}
    none = d.threshold_columns(flat, groups, {"c": 1.0})
    assert none == {"threshold": [None] * 4, "p_below_threshold": [None] * 4}
