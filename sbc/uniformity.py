"""The ECDF uniformity test of SBC ranks: the simultaneous ECDF band and the matching
"gamma" test of Säilynoja, Bürkner & Vehtari (2022), "Graphical test for discrete uniformity
and its applications in goodness-of-fit evaluation and multiple sample comparison",
Statistics and Computing 32:32, with their Monte Carlo null (tables of binomial tail
probabilities and the simulated minima, cached per sample size), the p-values of many
samples at once, the test's power against a shift, and the failure shape a rejected
parameter is given.

Pure functions on NumPy arrays, like :mod:`sbc.stats`, which re-exports the public names
(callers write ``stats.uniformity_test``); the band, the test and its power share the
cached null, so they live together here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import gammaln

from sbc import seeding

DEFAULT_N_SIM = 4000
DEFAULT_SEED = seeding.NULL_SEED  # fixed, so that bands and p-values are reproducible
MAX_N_EVAL = 999  # finer grids add time but (almost) no power

SHAPES = ("ok", "too_narrow", "too_wide", "biased_high", "biased_low")

# Moments of U ~ Uniform(0, 1): var(U) = 1/12 and var((U - 1/2)^2) = 1/80 - 1/144.
_VAR_U = 1.0 / 12.0
_VAR_OF_VAR_U = 1.0 / 80.0 - 1.0 / 144.0


def _checked(u) -> np.ndarray:
    """Fractional ranks with NaN dropped; at least 2, all in [0, 1], or ValueError."""
    u = _clean(u)
    if len(u) < 2:
        raise ValueError(f"need at least 2 non-NaN fractional ranks, got {len(u)}")
    if np.any((u < 0) | (u > 1)):
        raise ValueError("fractional ranks must lie in [0, 1]")
    return u


def _clean(u) -> np.ndarray:
    """1-D float array of the non-NaN values of ``u``."""
    u = np.asarray(u, dtype=float).ravel()
    return u[~np.isnan(u)]


# --------------------------------------------------------------------------------------
# Simultaneous ECDF band and the gamma test (Säilynoja, Bürkner & Vehtari 2022)
# --------------------------------------------------------------------------------------
#
# Written here rather than taken from arviz-stats: in arviz-stats 1.3.3
# ``ecdf_utils.simulate_confidence_bands`` (single-chain path) evaluates the upper tail as
# ``1 - bdtr(count - 1, n, z)``, and scipy's ``bdtr(-1, ...)`` is NaN, not 0.  Whenever a
# simulated ECDF is 0 at the first evaluation point (probability ~ e^-1) the upper tail is
# NaN and Python's ``min(lower, nan)`` silently keeps the lower tail, so the simulated
# minima are too large and the band too narrow.  Below, both tails are cumulative sums of
# the binomial pmf, so P(X >= 0) = 1 exactly and nothing can be NaN.


def evaluation_points(n: int, n_eval: int | None = None) -> np.ndarray:
    """Evaluation points z_j = j / (n_eval + 1), j = 1..n_eval, inside (0, 1).

    Default n_eval = min(n - 1, 999), i.e. z_j = j / n as in the paper for n <= 1000.
    """
    if n_eval is None:
        n_eval = min(max(n - 1, 1), MAX_N_EVAL)
    if n_eval < 1:
        raise ValueError(f"n_eval must be >= 1, got {n_eval}")
    return np.arange(1, n_eval + 1) / (n_eval + 1)


@lru_cache(maxsize=8)
def _two_sided_table(n: int, n_eval: int) -> np.ndarray:
    """(n_eval, n + 1) table of 2 * min(P(X <= c), P(X >= c)), X ~ Binomial(n, z_j), capped at 1.

    One table serves both the simulated and the observed statistic, so equal counts give
    bit-identical values and ties between them are counted consistently.
    """
    z = evaluation_points(n, n_eval)[:, None]
    c = np.arange(n + 1)
    logpmf = (
        gammaln(n + 1)
        - gammaln(c + 1)
        - gammaln(n - c + 1)
        + c * np.log(z)
        + (n - c) * np.log1p(-z)
    )
    pmf = np.exp(logpmf)
    # Summing from each end keeps small tails accurate (no 1 - cdf cancellation).
    lower = np.cumsum(pmf, axis=1)
    upper = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]
    table = np.minimum(1.0, 2.0 * np.minimum(lower, upper))
    table.flags.writeable = False
    return table


def _min_tail_prob(counts: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Minimum over evaluation points of the two-sided tail probability.

    counts: (..., n_eval) ECDF counts #(u <= z_j).  Returns shape (...).
    """
    return table[np.arange(table.shape[0]), counts].min(axis=-1)


@lru_cache(maxsize=32)
def _null_min_tail_probs(n: int, n_eval: int, n_sim: int, seed: int) -> np.ndarray:
    """Sorted (n_sim,) minima of the two-sided tail probability for n iid uniforms."""
    table = _two_sided_table(n, n_eval)
    rng = np.random.default_rng(seed)
    out = np.empty(n_sim)
    chunk = max(1, 4_000_000 // max(n, n_eval))  # bound memory to a few tens of MB
    for start in range(0, n_sim, chunk):
        m = min(chunk, n_sim - start)
        # Counts below z_j = j / (n_eval + 1) from bin indices floor(u * (n_eval + 1)):
        # a bincount per simulated sample, then a cumulative sum (no sorting needed).
        bins = np.floor(rng.uniform(size=(m, n)) * (n_eval + 1)).astype(np.intp)
        bins += (n_eval + 1) * np.arange(m)[:, None]
        hist = np.bincount(bins.ravel(), minlength=m * (n_eval + 1)).reshape(m, n_eval + 1)
        counts = np.cumsum(hist[:, :-1], axis=1)
        out[start : start + m] = _min_tail_prob(counts, table)
    out.sort()
    out.flags.writeable = False
    return out


def _resolve(n: int, n_eval: int | None) -> int:
    if n < 1:
        raise ValueError(f"need at least one value, got n={n}")
    return len(evaluation_points(n, n_eval))


@dataclass(frozen=True)
class EcdfBand:
    """Simultaneous band for ECDF(z) - z of n iid uniforms.

    z, lower, upper: (n_eval,).  gamma: the adjusted pointwise level (per-point two-sided
    tail probability below which a point leaves the band).
    """

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    prob: float
    n: int


@lru_cache(maxsize=64)
def ecdf_band(
    n: int,
    prob: float = 0.95,
    n_eval: int | None = None,
    n_sim: int = DEFAULT_N_SIM,
    seed: int = DEFAULT_SEED,
) -> EcdfBand:
    """Simultaneous `prob` band for the ECDF difference of n iid Uniform(0, 1) values.

    Simulation method of Säilynoja et al. (2022): for n_sim uniform samples take the minimum
    over the evaluation points of the two-sided binomial tail probability
    2 min(P(X <= n ECDF(z)), P(X >= n ECDF(z))), X ~ Binomial(n, z); the (1 - prob) quantile of
    these minima is the adjusted pointwise level gamma; the band at z is the central
    binomial (1 - gamma) interval, [q(gamma/2), q(1 - gamma/2)] / n, minus z.

    Returns an :class:`EcdfBand` with arrays of shape (n_eval,), read-only (results are
    cached per argument set).  The whole ECDF difference of a uniform sample stays inside
    the band at all evaluation points with probability >= prob, up to Monte Carlo error
    in gamma (sd ~ sqrt(prob (1 - prob) / n_sim) in coverage).
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    n_eval = _resolve(n, n_eval)
    minima = _null_min_tail_probs(n, n_eval, n_sim, seed)
    # Largest gamma such that at most a (1 - prob) share of the null minima fall below it;
    # the statistic is discrete, so this errs on the side of coverage.
    gamma = float(minima[int(np.floor((1.0 - prob) * n_sim))])
    table = _two_sided_table(n, n_eval)
    # A count is inside iff its two-sided tail probability is >= gamma; the set of such
    # counts is an interval (the tail probability is unimodal in the count) and equals the
    # binomial quantile interval [q(gamma/2), q(1 - gamma/2)].
    inside = table >= gamma
    lo = np.argmax(inside, axis=1)
    hi = n - np.argmax(inside[:, ::-1], axis=1)
    z = evaluation_points(n, n_eval)
    lower, upper = lo / n - z, hi / n - z
    for a in (z, lower, upper):
        a.flags.writeable = False
    return EcdfBand(z=z, lower=lower, upper=upper, gamma=gamma, prob=prob, n=n)


def pooled_band(n: int, k: int, prob: float = 0.95) -> EcdfBand:
    """Simultaneous `prob` band for the pooled curve of k exchangeable elements with n fits
    each, whatever their dependence.

    The pooled ECDF (and the pooled coverage-difference curve) of k elements is a weighted
    mean of the k element curves, so it lies inside any band that holds every element curve.
    Every element stays inside its :func:`ecdf_band` at level 1 - (1 - prob) / k with
    probability >= prob (Bonferroni, as in the group's test), hence so does the pooled curve.
    Dependent elements (shared data and hyper-parameters) only make this conservative; a
    band for n * k independent values would be too narrow (see
    :func:`sbc.stats.pooled_fractional_ranks`).  k = 1 gives :func:`ecdf_band` itself.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return ecdf_band(n, 1.0 - (1.0 - prob) / k)


def ecdf_difference(u, z) -> np.ndarray:
    """ECDF(z) - z for the non-NaN values of u.  u: (n,) in (0, 1); z: (m,).  Returns (m,)."""
    u = np.sort(_clean(u))
    z = np.asarray(z, dtype=float)
    return np.searchsorted(u, z, side="right") / len(u) - z


def coverage_difference(u, widths) -> np.ndarray:
    """Empirical coverage of the central posterior interval of every width minus the width.

    A fit's truth lies inside the central interval of width w (probability mass w) iff
    V = |2u - 1| <= w, so the coverage of all widths at once is the ECDF of V, and the
    curve is ECDF_V(w) - w (the curve of R SBC's ``plot_coverage_diff``).  Under
    calibration u ~ Uniform(0, 1), hence V ~ Uniform(0, 1): the simultaneous band of
    :func:`ecdf_band` for n values holds for the whole curve.  Above zero: intervals cover
    too often (posterior too wide); below: too rarely (too narrow, or biased).

    u: (n,) fractional ranks (NaN dropped); widths: (m,) in [0, 1].  Returns (m,).
    """
    return ecdf_difference(np.abs(2.0 * _clean(u) - 1.0), widths)


@dataclass(frozen=True)
class UniformityResult:
    """Outcome of :func:`uniformity_test` for one scalar parameter.

    statistic: minimum two-sided binomial tail probability over the evaluation points
        (small = far from uniform).  p_value: Monte Carlo p-value, >= 1 / (n_sim + 1).
    n: non-NaN values used.  shape: :func:`failure_shape` if p_value < alpha, else "ok".
    mean, var: sample mean and variance of u (1/2 and 1/12 under uniformity).
    """

    statistic: float
    p_value: float
    n: int
    shape: str
    mean: float
    var: float


def uniformity_test(
    u,
    alpha: float = 0.05,
    n_eval: int | None = None,
    n_sim: int = DEFAULT_N_SIM,
    seed: int = DEFAULT_SEED,
) -> UniformityResult:
    """Test fractional ranks u for uniformity with the ECDF "gamma" statistic.

    u: (n_rep,) fractional ranks; NaN dropped.  The statistic is the one that defines
    :func:`ecdf_band`: the smallest two-sided binomial tail probability of the ECDF over
    the evaluation points.  p-value = (1 + #{null minima <= observed}) / (n_sim + 1) from
    n_sim simulated uniform samples of the same size (cached per (n, n_eval, n_sim, seed)).
    The p-value cannot go below 1 / (n_sim + 1); with k parameters and Holm at level alpha
    n_sim must exceed k / alpha.

    ``alpha`` only decides whether ``shape`` is named; with several parameters, name shapes
    after the multiplicity correction (:func:`sbc.stats.overall_verdict`) with :func:`failure_shape`.
    """
    u = _checked(u)
    n = len(u)
    n_eval = _resolve(n, n_eval)
    z = evaluation_points(n, n_eval)
    counts = np.searchsorted(np.sort(u), z, side="right")
    stat = float(_min_tail_prob(counts, _two_sided_table(n, n_eval)))
    minima = _null_min_tail_probs(n, n_eval, n_sim, seed)
    n_le = int(np.searchsorted(minima, stat, side="right"))
    p_value = (1.0 + n_le) / (n_sim + 1.0)
    shape = failure_shape(u) if p_value < alpha else "ok"
    return UniformityResult(
        statistic=stat, p_value=p_value, n=n, shape=shape, mean=float(u.mean()), var=float(u.var())
    )


def _min_tail_probs_of(u: np.ndarray, n_eval: int) -> np.ndarray:
    """Gamma statistics of the rows of u (m, n), as in :func:`_null_min_tail_probs`."""
    m, n = u.shape
    table = _two_sided_table(n, n_eval)
    bins = np.minimum(np.floor(u * (n_eval + 1)).astype(np.intp), n_eval)
    bins += (n_eval + 1) * np.arange(m)[:, None]
    hist = np.bincount(bins.ravel(), minlength=m * (n_eval + 1)).reshape(m, n_eval + 1)
    return _min_tail_prob(np.cumsum(hist[:, :-1], axis=1), table)


def uniformity_pvalues(u: np.ndarray, n_sim: int = DEFAULT_N_SIM,
                       seed: int = DEFAULT_SEED) -> np.ndarray:
    """The Monte Carlo p-values of :func:`uniformity_test` for every row of ``u`` (m, n) at
    once (rows of n fractional ranks, no NaN), from the same cached null minima: for power
    studies, which test many simulated samples of one size."""
    n = u.shape[1]
    n_eval = _resolve(n, None)
    minima = _null_min_tail_probs(n, n_eval, n_sim, seed)
    stat = _min_tail_probs_of(u, n_eval)
    return (1.0 + np.searchsorted(minima, stat, side="right")) / (n_sim + 1.0)


# --------------------------------------------------------------------------------------
# A combined test (benchmarks/power.md): Anderson-Darling, strong against a shift; Berk-Jones
# (1979), the sup of the ECDF's binomial log-likelihood ratio, in the tails (too narrow, a few
# bad fits); Neyman's N_3 (mean, spread, skewness) against a wrong spread or shape
# --------------------------------------------------------------------------------------

COMBINED_COMPONENTS = ("anderson_darling", "berk_jones", "neyman3")


@lru_cache(maxsize=64)
def _combined_weights(n: int) -> tuple[np.ndarray, ...]:
    """Per-order-statistic constants of :func:`combined_statistics` for sample size n."""
    i = np.arange(1, n + 1)
    a_hi, a_lo = i / n, (i - 1) / n
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0 = 0
        c_hi, c_lo = (np.nan_to_num(a * np.log(a)) + np.nan_to_num((1 - a) * np.log1p(-a))
                      for a in (a_hi, a_lo))
    out = (2.0 * i - 1.0, np.full(n, 2.0 * n), -a_hi, c_hi, c_lo - c_hi)
    for a in out:
        a.flags.writeable = False
    return out


def combined_statistics(u: np.ndarray) -> np.ndarray:
    """(m, 3) statistics of the rows of u (m, n), in :data:`COMBINED_COMPONENTS` order;
    larger = further from uniform; values clipped into the open interval (0, 1).

    With s the sorted row, L = log(1 - s), D = log(s / (1 - s)): Anderson-Darling
    A^2 = -n - sum((2i - 1) log s_i + (2n - 2i + 1) L_i) / n; Berk-Jones = sup_x n KL(ECDF(x)
    || x), at an order statistic from the right (ECDF = a = i / n) or the left ((i - 1) / n),
    n KL(a || s) = n (a log a + (1 - a) log(1 - a) - L - a D); Neyman's N_3 = sum over
    k = 1..3 of (sum_i sqrt(2k + 1) P_k(2 s_i - 1))^2 / n, P_k the Legendre polynomials.
    """
    n = u.shape[1]
    w_ad, w_l, minus_a, c_hi, dc = _combined_weights(n)
    s = np.sort(u, axis=1)  # in place from here: the arrays are large in the null simulation
    np.clip(s, np.nextafter(0.0, 1.0), np.nextafter(1.0, 0.0), out=s)
    log1m = np.log1p(-s)
    d = np.log(s)
    d -= log1m
    ad = -n - (d @ w_ad + log1m @ w_l) / n
    k = np.multiply(d, minus_a)
    k += c_hi - log1m  # KL from the right; from the left it is this + D / n + c_lo - c_hi
    d *= 1.0 / n
    d += dc + k
    bj = n * np.maximum(k.max(axis=1), d.max(axis=1))
    np.subtract(np.multiply(s, 2.0, out=s), 1.0, out=s)  # x = 2 s - 1
    x2 = s * s
    s1, s2, s3 = s.sum(axis=1), x2.sum(axis=1), (x2 * s).sum(axis=1)
    neyman3 = (3.0 * s1**2 + 5.0 * ((3.0 * s2 - n) / 2.0) ** 2
               + 7.0 * ((5.0 * s3 - 3.0 * s1) / 2.0) ** 2) / n
    return np.array([ad, bj, neyman3]).T  # np.array: cheaper than np.stack for one row


def _lex_keys(counts: np.ndarray, base: int) -> np.ndarray:
    """Integer keys ordering count vectors (..., 3) by their smallest count, ties broken by
    the next smallest, then the largest (every count < base)."""
    c = np.sort(counts, axis=-1).astype(np.int64)
    return (c[..., 0] * base + c[..., 1]) * base + c[..., 2]


@lru_cache(maxsize=32)
def _combined_null(n: int, n_sim: int, seed: int) -> tuple[np.ndarray, ...]:
    """The null for n iid uniforms: sorted statistics (3, n_sim); every null sample's counts
    #{null statistics >= its own} (n_sim, 3), itself included; by_rank (3, n_sim), the sample
    with count r in component k at [k, r - 1]; the sorted keys of the samples' counts."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 200_000 // n)  # rows per block: its arrays stay in cache
    values = np.concatenate([combined_statistics(rng.uniform(size=(min(chunk, n_sim - k), n)))
                             for k in range(0, n_sim, chunk)]).T
    null = np.sort(values, axis=1)
    counts = np.stack([n_sim - np.searchsorted(null[k], values[k], side="left")
                       for k in range(len(values))], axis=1).astype(np.int32)
    by_rank = np.argsort(-values, axis=1, kind="stable").astype(np.int32)
    keys = np.sort(_lex_keys(counts, n_sim + 2))
    for a in (null, counts, by_rank, keys):
        a.flags.writeable = False
    return null, counts, by_rank, keys


def _combined_counts(u: np.ndarray, n_sim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(smallest component count, combined count) of the rows of u: p-values x (n_sim + 1).
    Counts among the null samples and the observed one: the observed one's is 1 + #{null >=
    it}; a null sample's grows by one where the observed one is as extreme (ties go against
    the observed one), which matters only if its smallest count is the observed one's, m: the
    (at most 3) samples holding count m in a component are rechecked."""
    null, counts, by_rank, keys = _combined_null(u.shape[1], n_sim, seed)
    obs = 1 + n_sim - np.array([np.searchsorted(null[k], v, side="left")
                                for k, v in enumerate(combined_statistics(u).T)]).T
    m = obs.min(axis=1)
    total = 1 + np.searchsorted(keys, m * (n_sim + 2) ** 2, side="left")  # smallest count < m
    for i, (a, mi) in enumerate(zip(obs.tolist(), m.tolist())):  # plain ints: one row is fast
        key = sorted(a)
        for j in {int(j) for j in by_rank[:, min(mi, n_sim) - 1]}:
            c = counts[j].tolist()
            if min(c) == mi and sorted(x + (x >= y) for x, y in zip(c, a)) <= key:
                total[i] += 1
    return m, total


def combined_uniformity_pvalues(u: np.ndarray, n_sim: int = DEFAULT_N_SIM,
                                seed: int = DEFAULT_SEED) -> np.ndarray:
    """The p-values of :func:`combined_uniformity_test` for every row of ``u`` (m, n) at once
    (rows of n fractional ranks, no NaN), from the same cached null: for power studies."""
    return _combined_counts(np.asarray(u, dtype=float), n_sim, seed)[1] / (n_sim + 1.0)


def combined_uniformity_test(
    u, alpha: float = 0.05, n_sim: int = DEFAULT_N_SIM, seed: int = DEFAULT_SEED
) -> UniformityResult:
    """Test fractional ranks u for uniformity with the smallest p-value of three tests.

    Components (:func:`combined_statistics`): Anderson-Darling, Berk-Jones, Neyman's N_3.  The
    observed sample and n_sim uniform samples of its size (cached per (n, n_sim, seed)) get
    each component's count #{samples at least as extreme} (its Monte Carlo p-value x
    (n_sim + 1)); a sample's combined statistic is its smallest count, ties broken by the next.
    p-value = #{samples at least as extreme in that} / (n_sim + 1): exchangeable samples, so
    P(p <= alpha) <= alpha exactly, whatever the dependence of the components; p >= 1 /
    (n_sim + 1), as for :func:`uniformity_test`, reached when beyond every null sample in all 3.

    Returns a :class:`UniformityResult` whose ``statistic`` is the smallest component p-value
    (small = far from uniform); NaN dropped; ``alpha`` only decides whether ``shape`` is named.
    """
    u = _checked(u)
    n = len(u)
    smallest, count = _combined_counts(u[None, :], n_sim, seed)
    p_value = float(count[0]) / (n_sim + 1.0)
    shape = failure_shape(u) if p_value < alpha else "ok"
    return UniformityResult(statistic=float(smallest[0]) / (n_sim + 1.0), p_value=p_value, n=n,
                            shape=shape, mean=float(u.mean()), var=float(u.var()))


# --------------------------------------------------------------------------------------
# Failure shape
# --------------------------------------------------------------------------------------


def moment_zscores(u) -> tuple[float, float]:
    """Standardised deviations of the mean and variance of u from 1/2 and 1/12.

    z_mean = (mean - 1/2) / sqrt(1/12 / n); z_var = (var - 1/12) / sqrt((1/80 - 1/144) / n),
    both ~ N(0, 1) for large n under uniformity.  The variance is taken around the sample
    mean so that a pure shift shows up in z_mean only (to first order).
    """
    u = _clean(u)
    n = len(u)
    z_mean = (u.mean() - 0.5) / np.sqrt(_VAR_U / n)
    z_var = (u.var() - _VAR_U) / np.sqrt(_VAR_OF_VAR_U / n)
    return float(z_mean), float(z_var)


def failure_shape(u, threshold: float = 2.0) -> str:
    """Name how fractional ranks u deviate from uniform; meant for a parameter that failed.

    Returns one of
      "too_narrow":  U shape, var(u) > 1/12 - the truth falls in the tails of the draws too
                     often: the posterior is overconfident (too narrow);
      "too_wide":    hump, var(u) < 1/12 - the posterior is underconfident (too wide);
      "biased_low":  mean(u) > 1/2 - ranks mostly high, the truth lies above the draws: the
                     posterior is shifted down (underestimates);
      "biased_high": mean(u) < 1/2 - ranks mostly low, the truth lies below the draws: the
                     posterior is shifted up (overestimates);
      "ok":          neither standardised deviation (:func:`moment_zscores`) exceeds
                     ``threshold`` (default 2, i.e. ~5% two-sided per moment under the null).
    The larger of the two standardised deviations names the shape.  Call it only for a
    parameter the uniformity test rejected; on a calibrated one it names a shape by chance
    in ~10% of cases.
    """
    z_mean, z_var = moment_zscores(u)
    if max(abs(z_mean), abs(z_var)) <= threshold:
        return "ok"
    if abs(z_var) >= abs(z_mean):
        return "too_narrow" if z_var > 0 else "too_wide"
    return "biased_low" if z_mean > 0 else "biased_high"
