"""Calibration verdicts from SBC ranks: fractional ranks, coverage, recovery, several
parameters (Holm, pooled p-values) and the one p-value formatter.

Pure functions on NumPy arrays (NumPy in, NumPy or small frozen dataclasses out).  The
replicate axis is axis 0 wherever an input has one; NaN marks a failed fit and is dropped by
the functions that summarise over replicates.

Under correct inference the rank of the truth among L thinned posterior draws is discrete
uniform on 0..L (Talts et al. 2018).  Its fractional rank u = (rank + 1/2) / (L + 1) is then
(close to) uniform on (0, 1) whatever L is, which lets replicates with different numbers of
kept draws be pooled.  Uniformity is judged by :func:`rank_test`, the smallest p-value of
Anderson-Darling, Berk-Jones and Neyman's smooth test of order 3 against a Monte Carlo null
(benchmarks/power.md says why it is the default); the plots draw the simultaneous ECDF band
of Säilynoja, Bürkner & Vehtari (2022), whose "gamma" test is ``uniformity_test``.  Both tests
are built in :mod:`sbc.uniformity` and re-exported here; :func:`rank_test` says which one
the engine uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.stats import beta, norm

from sbc import seeding
from sbc.uniformity import (
    DEFAULT_N_SIM,
    DEFAULT_SEED,
    EcdfBand,
    UniformityResult,
    _clean,
    coverage_difference,
    ecdf_band,
    ecdf_difference,
    evaluation_points,
    failure_shape,
    combined_uniformity_pvalues,
    combined_uniformity_test,
    moment_zscores,
    pooled_band,
    uniformity_pvalues,
    uniformity_test,
)

__all__ = [
    "DEFAULT_N_SIM",
    "DEFAULT_SEED",
    "CoverageResult",
    "EcdfBand",
    "RecoveryResult",
    "UniformityResult",
    "coverage",
    "coverage_difference",
    "ecdf_band",
    "ecdf_difference",
    "evaluation_points",
    "failure_shape",
    "format_p",
    "fractional_ranks",
    "holm",
    "jeffreys_interval",
    "moment_zscores",
    "overall_verdict",
    "pooled_band",
    "pooled_fractional_ranks",
    "pooled_pvalue",
    "rank_test",
    "rank_test_pvalues",
    "recovery",
    "shift_power",
    "uniformity_pvalues",
    "uniformity_test",
    "wilson_interval",
]


# --------------------------------------------------------------------------------------
# The default test of uniform ranks, and the power it gives a pass
# --------------------------------------------------------------------------------------


def rank_test(u, alpha: float = 0.05, n_sim: int = DEFAULT_N_SIM,
              seed: int = DEFAULT_SEED) -> UniformityResult:
    """The default test of uniform fractional ranks: :func:`combined_uniformity_test`.

    Chosen by benchmarks/power.md ("Which test is the default"): against the ECDF gamma test
    (:func:`sbc.uniformity.uniformity_test`, the test of the plotted bands) it is
    significantly more powerful in 27 of the 35 departure x n cells and less powerful in none,
    at the same exact size; the cells where a single test beats it are listed there with the reason.  The
    calibration engine, the power a pass states and the sequential look call this one name.
    """
    return combined_uniformity_test(u, alpha=alpha, n_sim=n_sim, seed=seed)


def rank_test_pvalues(u: np.ndarray, n_sim: int = DEFAULT_N_SIM,
                      seed: int = DEFAULT_SEED) -> np.ndarray:
    """The p-values of :func:`rank_test` for every row of ``u`` (m, n) at once."""
    return combined_uniformity_pvalues(u, n_sim=n_sim, seed=seed)


@lru_cache(maxsize=256)
def shift_power(n: int, shift: float, level: float, n_sim: int = DEFAULT_N_SIM,
                n_alt: int = 400, seed: int = DEFAULT_SEED) -> float:
    """Probability that :func:`rank_test` (the default test) on n fractional ranks rejects at
    ``level`` when the posterior mean is off by ``shift`` posterior sds (a Gaussian posterior,
    so the fractional rank of the truth is Phi(Z - shift), Z ~ N(0, 1)).

    Estimated from ``n_alt`` simulated studies with a fixed seed (Monte Carlo sd <=
    0.025 at n_alt = 400).  Used to say how much a "pass" is worth: a pass at power 0.3
    says little.
    """
    if n < 2:
        return 0.0
    rng = np.random.default_rng(seed + 1)
    u = norm.cdf(rng.standard_normal((n_alt, n)) - shift)
    return float(np.mean(rank_test_pvalues(u, n_sim, seed) <= level))


# --------------------------------------------------------------------------------------
# Fractional ranks
# --------------------------------------------------------------------------------------


def fractional_ranks(ranks, n_ranked, rng: np.random.Generator | None = None,
                     offset=None) -> np.ndarray:
    """PIT-like values in (0, 1) from ranks with a per-replicate number of ranked draws.

    ranks: (n_rep, *shape) ranks in 0..n_ranked, NaN for failed fits.
    n_ranked: the number of draws each rank was taken among; broadcastable to ``ranks``
        (typically (n_rep,) per replicate, given as (n_rep, 1, ...) or (n_rep,) for 1-D ranks).
    rng: if given, returns the randomised PIT (rank + V) / (n_ranked + 1), V ~ U(0, 1), which
        is exactly uniform under correct inference; ``offset`` gives V explicitly (e.g.
        from ``sbc.seeding.pit_offsets``); by default the midpoint
        (rank + 1/2) / (n_ranked + 1), whose distribution differs from uniform by at most
        1 / (2 (n_ranked + 1)) in CDF.

    Returns float array of the broadcast shape; NaN ranks stay NaN (callers drop them).

    The true number of ranked draws must be used: dividing by a common maximum L would push
    the ranks of replicates with fewer kept draws towards 0 and fake a miscalibration.
    """
    ranks = np.asarray(ranks, dtype=float)
    n_ranked = np.asarray(n_ranked, dtype=float)
    if n_ranked.ndim == 1 and ranks.ndim > 1 and n_ranked.shape[0] == ranks.shape[0]:
        # one L per replicate: align it with the replicate axis
        n_ranked = n_ranked.reshape((-1,) + (1,) * (ranks.ndim - 1))
    ranks, n_ranked = np.broadcast_arrays(ranks, n_ranked)
    ok = ~np.isnan(ranks)
    if np.any(ok & ~np.isfinite(n_ranked)):
        raise ValueError("n_ranked must be finite wherever the rank is not NaN")
    if np.any(ok & (ranks < 0)):
        raise ValueError(f"ranks must be >= 0; got minimum {np.nanmin(ranks)}")
    over = ok & (ranks > n_ranked)
    if np.any(over):
        i = np.flatnonzero(over)[0]
        raise ValueError(
            f"rank exceeds the number of ranked draws ({int(over.sum())} values), e.g. rank "
            f"{ranks.flat[i]:g} > n_ranked {n_ranked.flat[i]:g}; ranks lie in 0..n_ranked"
        )
    if offset is None:
        offset = 0.5 if rng is None else rng.uniform(size=ranks.shape)
    return (ranks + offset) / (n_ranked + 1.0)


PIT_KEYS = ("seed_entropy", "model", "design", "rep", "name")


def table_fractional_ranks(params) -> np.ndarray:
    """Randomised fractional ranks of a parameters table (columns rank, n_ranked and the keys
    seed_entropy (the study seed), model, design, rep, name, as many as it has), V keyed by
    those columns, so studies that differ only in their seed draw independent V.  Use this
    rather than midpoints:
    with few ranked draws (ESS-based thinning can keep about 10) midpoints are visibly
    discrete and the gamma test rejects exactly uniform ranks."""
    keys = [params[c] for c in PIT_KEYS if c in params]
    return fractional_ranks(params["rank"].to_numpy(float), params["n_ranked"].to_numpy(float),
                            offset=seeding.pit_offsets(*keys))


def pooled_fractional_ranks(u) -> np.ndarray:
    """Concatenate the fractional ranks of the elements of one vector parameter, for plotting.

    u: (n_rep, k) or a sequence of 1-D arrays.  Returns 1-D, NaN dropped.

    Only for display (one histogram / ECDF per vector parameter).  Do not feed the result to
    :func:`uniformity_test` or judge it against :func:`ecdf_band` with n = n_rep * k: the k
    elements of one replicate share the simulated data and hyper-parameters, so they are
    dependent, the pooled ECDF varies more than that of n_rep * k independent uniforms, and a
    band for n_rep * k values is too narrow (false alarms).  Test each element and combine
    with :func:`pooled_pvalue` instead.
    """
    if isinstance(u, np.ndarray):
        flat = u.astype(float).ravel()
    else:
        flat = np.concatenate([np.asarray(x, dtype=float).ravel() for x in u])
    return flat[~np.isnan(flat)]


# --------------------------------------------------------------------------------------
# The one p-value formatter
# --------------------------------------------------------------------------------------


def format_p(p: float, bound: bool = False) -> str:
    """A p-value as every table, verdict and summary shows it (the one formatter): two
    significant digits; ``bound``: it derives from a Monte Carlo p-value at its floor
    1 / (n_sim + 1), so the true value is smaller and it is shown as "< p" with the bound
    rounded up (1.51e-5 -> "< 1.6e-05"), never down; NaN -> "n/a"."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if bound and p < 1:
        exp = math.floor(math.log10(p)) - 1
        return f"< {math.ceil(p / 10 ** exp - 1e-9) * 10 ** exp:.2g}"
    return f"{p:.2g}"


# --------------------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------------------


def wilson_interval(k, n, conf: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion k / n; arrays broadcast.

    Good coverage also near 0 and 1 and for small n, unlike the Wald interval.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    q = norm.ppf(0.5 + conf / 2.0)
    q2 = q * q
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (k + q2 / 2.0) / (n + q2)
        half = q / (n + q2) * np.sqrt(k * (n - k) / n + q2 / 4.0)
    # exact 0 / 1 at k = 0 / n (the formula gives them only up to rounding)
    lo = np.where(k > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(k < n, np.clip(centre + half, 0.0, 1.0), 1.0)
    return lo, hi


def jeffreys_interval(k, n, conf: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Jeffreys interval: equal-tailed Beta(k + 1/2, n - k + 1/2) interval; 0 / 1 at k = 0 / n."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    a = (1.0 - conf) / 2.0
    lo = np.where(k > 0, beta.ppf(a, k + 0.5, n - k + 0.5), 0.0)
    hi = np.where(k < n, beta.ppf(1.0 - a, k + 0.5, n - k + 0.5), 1.0)
    return lo, hi


@dataclass(frozen=True)
class CoverageResult:
    """Empirical coverage of central posterior intervals, per level (arrays of shape (m,))."""

    levels: np.ndarray
    coverage: np.ndarray
    k: np.ndarray
    n: int
    lower: np.ndarray
    upper: np.ndarray
    method: str


def coverage(
    u, levels=(0.5, 0.8, 0.9, 0.95), conf: float = 0.95, method: str = "wilson"
) -> CoverageResult:
    """Share of replicates whose truth lies in the central posterior interval, per level.

    u: (n_rep,) fractional ranks; NaN dropped.  The truth is inside the central ``level``
    interval of the draws (between their (1 - level)/2 and (1 + level)/2 quantiles) iff
    |u - 1/2| <= level / 2, so coverage needs only the ranks.  ``lower``/``upper`` is a
    ``conf`` interval for the coverage ("wilson" or "jeffreys").  Under calibration
    coverage = level up to rank discreteness (<= 1 / (n_ranked + 1)).
    """
    u = _clean(u)
    levels = np.atleast_1d(np.asarray(levels, dtype=float))
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError("levels must lie in (0, 1)")
    n = len(u)
    k = (np.abs(u[:, None] - 0.5) <= levels[None, :] / 2.0).sum(axis=0)
    if method == "wilson":
        lo, hi = wilson_interval(k, n, conf)
    elif method == "jeffreys":
        lo, hi = jeffreys_interval(k, n, conf)
    else:
        raise ValueError(f"method must be 'wilson' or 'jeffreys', got {method!r}")
    cov = k / n if n else np.full(levels.shape, np.nan)
    return CoverageResult(levels, cov, k, n, np.asarray(lo), np.asarray(hi), method)


# --------------------------------------------------------------------------------------
# Several parameters
# --------------------------------------------------------------------------------------


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values; same shape as the input, NaN kept as NaN.

    Controls the family-wise error rate under any dependence between the tests, which is
    needed here: ranks of different parameters from the same replicate are dependent.
    Reject hypothesis i at level alpha iff adjusted[i] <= alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    m = len(ok)
    adj = np.full(flat.shape, np.nan)
    order = ok[np.argsort(flat[ok], kind="stable")]
    # step-down: (m - i) p_(i) for the i-th smallest (0-based), made monotone, capped at 1
    stepped = np.maximum.accumulate((m - np.arange(m)) * flat[order])
    adj[order] = np.minimum(stepped, 1.0)
    return adj.reshape(p.shape)


def overall_verdict(pvalues, alpha: float = 0.05) -> tuple[bool, np.ndarray]:
    """Does any parameter fail, with family-wise error rate alpha (Holm)?

    pvalues: (k,) one p-value per scalar parameter (or per vector parameter, from
    :func:`pooled_pvalue`).  Returns (reject, holm-adjusted p-values).
    """
    adj = holm(pvalues)
    return bool(np.any(adj[~np.isnan(adj)] <= alpha)), adj


def pooled_pvalue(pvalues) -> float:
    """One p-value for the exchangeable elements of a vector parameter (e.g. all alpha[gene]).

    Bonferroni on the minimum, min(1, k * min p), over the k non-NaN p-values: valid under
    any dependence between the elements.  The elements are *not* pooled into one ECDF test,
    because elements of one replicate are dependent and a band for n_rep * k values would
    be too narrow (see :func:`pooled_fractional_ranks`).
    """
    p = _clean(pvalues)
    if len(p) == 0:
        return float("nan")
    return float(min(1.0, len(p) * p.min()))


# --------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryResult:
    """Parameter recovery.  z, contraction: per replicate (n_rep, *shape);
    bias, rmse, prior_sd: per parameter (*shape)."""

    z: np.ndarray
    contraction: np.ndarray
    bias: np.ndarray
    rmse: np.ndarray
    prior_sd: np.ndarray


def recovery(truth, post_mean, post_sd, prior_sd=None) -> RecoveryResult:
    """Posterior z-scores, contraction, bias and RMSE of the posterior mean.

    truth, post_mean, post_sd: (n_rep, *shape); NaN for failed fits (ignored in bias/rmse).
    prior_sd: broadcastable to shape; by default the sd of the truths over replicates,
        which are draws from the prior.

    z = (post_mean - truth) / post_sd (~ N(0, 1) if calibrated and near-Gaussian);
    contraction = 1 - post_sd^2 / prior_sd^2 (0: data uninformative, 1: fully identified);
    bias = mean(post_mean - truth); rmse = sqrt(mean((post_mean - truth)^2)).
    """
    truth = np.asarray(truth, dtype=float)
    post_mean = np.asarray(post_mean, dtype=float)
    post_sd = np.asarray(post_sd, dtype=float)
    if prior_sd is None:
        prior_sd = np.nanstd(truth, axis=0, ddof=1)
    prior_sd = np.asarray(prior_sd, dtype=float)
    err = post_mean - truth
    with np.errstate(divide="ignore", invalid="ignore"):
        z = err / post_sd
        contraction = 1.0 - post_sd**2 / prior_sd**2
    bias = np.nanmean(err, axis=0)
    rmse = np.sqrt(np.nanmean(err**2, axis=0))
    return RecoveryResult(z=z, contraction=contraction, bias=bias, rmse=rmse, prior_sd=prior_sd)
