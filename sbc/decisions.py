"""Calibration of binary decisions: predicted probabilities against what happened.

A screen ends in binary calls (gene X is essential, a candidate is a selective dependency),
each made from a posterior probability ``p``.  The probabilities are calibrated when, among
the events given probability ``p``, a share ``p`` happens.  This module checks that from
(probability, outcome) pairs:

- :func:`reliability_table`: bins of predicted probability with their count, mean
  prediction, observed frequency and a Clopper-Pearson interval (independent pairs);
  :func:`pooled_reliability_table` the same from per-unit binned sums
  (:func:`binned_sums`) when the pairs of one unit (a screen) are dependent, with a
  cluster-robust interval (units independent).
- :func:`brier`: the Brier score and Murphy's (1973) decomposition
  ``score = reliability - resolution + uncertainty`` (exact when the probabilities are
  constant within bins; ``residual`` holds the within-bin terms otherwise, Stephenson et al.
  2008).
- :func:`spiegelhalter_test`: Spiegelhalter's (1986) z test of calibrated probabilities,
  valid when the outcomes are independent given the probabilities (e.g. one gene per
  screen, pooled over screens).
- :func:`count_z` and :func:`count_z_test`: a unit's count of events against the sum of
  its probabilities.  Within a screen the genes' outcomes share hyperparameters, so they
  are not independent given their probabilities, and the variance of the count is not
  ``sum p (1 - p)``: ``count_z`` takes the count's posterior variance from the caller (law
  of total variance over the hyperparameters' posterior), and ``count_z_test`` tests the
  spread of one z per unit across independent units.
- :func:`event_calibration`: all of the above for one binary event of a quantity with one or
  more elements, decided once per replicate (replicates independent; a quantity's elements
  within one replicate maybe not), e.g. the sign of a parameter in an SBC study.

Everything is numpy and scipy; each test states its size (``alpha``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Brier", "CalibrationTest", "EventCalibration", "ReliabilityTable", "binned_sums",
           "brier", "brier_from_sums", "count_z", "count_z_test", "event_calibration",
           "pooled_reliability_table", "reliability_table", "spiegelhalter_test",
           "threshold_columns"]


def _pairs(p, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, float).ravel()
    y = np.asarray(y, float).ravel()
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} outcomes")
    if np.any((p < -1e-9) | (p > 1 + 1e-9)) or not np.all(np.isfinite(p)):
        raise ValueError("probabilities must lie in [0, 1]")
    p = np.clip(p, 0.0, 1.0)  # rounding of a probability summed over mixture components
    if np.any((y != 0) & (y != 1)):
        raise ValueError("outcomes must be 0 or 1")
    return p, y


def _edges(bins: int | np.ndarray) -> np.ndarray:
    if np.ndim(bins) == 0:
        return np.linspace(0.0, 1.0, int(bins) + 1)
    return np.asarray(bins, float)


def binned_sums(p, y, bins: int | np.ndarray = 10) -> np.ndarray:
    """Per bin of predicted probability: (count, sum of p, sum of outcomes, sum of squared
    errors ``(p - y)^2``), shape (4, bins).  Bins are ``[e_i, e_{i+1})``, the last closed.

    Parameters
    ----------
    p, y : array_like
        Predicted probabilities and outcomes (0 or 1), same length.
    bins : int or array_like
        Number of equal-width bins on [0, 1], or their edges.

    Returns
    -------
    numpy.ndarray
        Shape (4, number of bins); sums of several units add up.
    """
    p, y = _pairs(p, y)
    edges = _edges(bins)
    k = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    return np.stack([np.bincount(k, minlength=nb).astype(float),
                     np.bincount(k, p, minlength=nb), np.bincount(k, y, minlength=nb),
                     np.bincount(k, (p - y) ** 2, minlength=nb)])


@dataclass(frozen=True)
class ReliabilityTable:
    """Bins of predicted probability: ``count``, ``mean_predicted``, ``observed`` frequency
    and its ``level`` interval [``lower``, ``upper``] (NaN in empty bins)."""

    edges: np.ndarray
    count: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    interval: str

    def rows(self) -> list[dict]:
        """The non-empty bins as dicts (for tables)."""
        return [{"bin": f"[{self.edges[i]:.2f}, {self.edges[i + 1]:.2f}"
                 + ("]" if i == len(self.count) - 1 else ")"),
                 "count": int(self.count[i]), "mean_predicted": float(self.mean_predicted[i]),
                 "observed": float(self.observed[i]), "lower": float(self.lower[i]),
                 "upper": float(self.upper[i]),
                 "covers": bool(self.lower[i] <= self.mean_predicted[i] <= self.upper[i])}
                for i in range(len(self.count)) if self.count[i] > 0]


def reliability_table(p, y, bins: int | np.ndarray = 10, level: float = 0.95
                      ) -> ReliabilityTable:
    """Reliability table of independent (probability, outcome) pairs, with the
    Clopper-Pearson (exact binomial) interval of each bin's observed frequency.

    Parameters
    ----------
    p, y : array_like
        Predicted probabilities and outcomes (0 or 1).
    bins : int or array_like
        Number of equal-width bins, or their edges.
    level : float
        Coverage of each bin's interval (pointwise, not simultaneous).

    Returns
    -------
    ReliabilityTable
    """
    sums = binned_sums(p, y, bins)
    n, sp, sy = sums[0], sums[1], sums[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, freq = sp / n, sy / n
    a = (1 - level) / 2
    k = sy.astype(int)
    nn = n.astype(int)
    lower = np.where(k > 0, stats.beta.ppf(a, k, nn - k + 1), 0.0)
    upper = np.where(k < nn, stats.beta.ppf(1 - a, k + 1, nn - k), 1.0)
    empty = n == 0
    lower, upper = np.where(empty, np.nan, lower), np.where(empty, np.nan, upper)
    return ReliabilityTable(_edges(bins), n, mean_p, freq, lower, upper, level,
                            "Clopper-Pearson")


def pooled_reliability_table(unit_sums, edges: int | np.ndarray = 10, level: float = 0.95
                             ) -> ReliabilityTable:
    """Reliability table pooled over units (screens) whose pairs are dependent within a
    unit but independent across units: each bin's observed frequency is the ratio of
    summed outcomes to summed counts, with a cluster-robust (units as clusters) Wald
    interval, clipped to [0, 1].  NaN where fewer than two units fill the bin.

    Parameters
    ----------
    unit_sums : array_like
        Shape (units, 4, bins): :func:`binned_sums` of each unit.
    edges : int or array_like
        The bins the sums were made with.
    level : float
        Coverage of each bin's interval.

    Returns
    -------
    ReliabilityTable
    """
    s = np.asarray(unit_sums, float)
    n_u, sp_u, sy_u = s[:, 0], s[:, 1], s[:, 2]
    n, sp, sy = n_u.sum(0), sp_u.sum(0), sy_u.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, freq = sp / n, sy / n
        resid = sy_u - freq * n_u
        units = (n_u > 0).sum(0)
        var = units / (units - 1) * (resid**2).sum(0) / n**2
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(var)
    ok = units >= 2
    lower = np.where(ok, np.clip(freq - half, 0, 1), np.nan)
    upper = np.where(ok, np.clip(freq + half, 0, 1), np.nan)
    return ReliabilityTable(_edges(edges), n, mean_p, freq, lower, upper, level,
                            "cluster-robust Wald (units as clusters)")


@dataclass(frozen=True)
class Brier:
    """The Brier score (mean squared error of the probabilities) and Murphy's
    decomposition over bins: ``score = reliability - resolution + uncertainty + residual``.
    Reliability (0 when calibrated) is the weighted squared gap between each bin's mean
    prediction and observed frequency; resolution how far the bins' frequencies spread
    around the base rate; uncertainty the base rate's ``o (1 - o)``; ``residual`` the
    within-bin terms (0 when the probabilities are constant within bins)."""

    score: float
    reliability: float
    resolution: float
    uncertainty: float
    residual: float
    n: int

    @property
    def skill(self) -> float:
        """Brier skill score against always predicting the base rate."""
        return 1 - self.score / self.uncertainty if self.uncertainty > 0 else math.nan


def brier_from_sums(sums) -> Brier:
    """:class:`Brier` from :func:`binned_sums` (summed over units if 3-dimensional)."""
    s = np.asarray(sums, float)
    if s.ndim == 3:
        s = s.sum(axis=0)
    n, sp, sy, se = s
    total = n.sum()
    if total == 0:
        return Brier(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    full = n > 0
    pbar, obar = sp[full] / n[full], sy[full] / n[full]
    base = sy.sum() / total
    score = se.sum() / total
    rel = float((n[full] * (pbar - obar) ** 2).sum() / total)
    res = float((n[full] * (obar - base) ** 2).sum() / total)
    unc = float(base * (1 - base))
    return Brier(float(score), rel, res, unc, float(score - (rel - res + unc)), int(total))


def brier(p, y, bins: int | np.ndarray = 10) -> Brier:
    """Brier score of (probability, outcome) pairs and its Murphy decomposition over
    ``bins``.

    Parameters
    ----------
    p, y : array_like
        Predicted probabilities and outcomes (0 or 1).
    bins : int or array_like
        Number of equal-width bins, or their edges.

    Returns
    -------
    Brier
    """
    return brier_from_sums(binned_sums(p, y, bins))


@dataclass(frozen=True)
class CalibrationTest:
    """A test of calibrated probabilities: its statistic, two-sided p-value and units;
    ``mean`` and ``sd`` of the per-unit z where the test has one (:func:`count_z_test`)."""

    name: str
    statistic: float
    p_value: float
    n: int
    mean: float = math.nan
    sd: float = math.nan

    def rejects(self, alpha: float) -> bool:
        """Whether the test rejects calibration at size ``alpha``."""
        return bool(self.p_value < alpha)


def spiegelhalter_test(p, y) -> CalibrationTest:
    """Spiegelhalter's z test that the probabilities are calibrated:
    ``Z = sum (y - p)(1 - 2p) / sqrt(sum (1 - 2p)^2 p (1 - p))``, standard normal under
    calibration when the outcomes are independent given the probabilities (many pairs);
    two-sided.  It detects probabilities too extreme (overconfident: Z > 0) or too timid.
    Pairs from one screen share hyperparameters and are not independent: pool one pair
    per screen.

    Parameters
    ----------
    p, y : array_like
        Predicted probabilities and outcomes (0 or 1).

    Returns
    -------
    CalibrationTest
    """
    p, y = _pairs(p, y)
    var = ((1 - 2 * p) ** 2 * p * (1 - p)).sum()
    if var <= 0:
        return CalibrationTest("Spiegelhalter z", math.nan, math.nan, len(p))
    z = float(((y - p) * (1 - 2 * p)).sum() / math.sqrt(var))
    return CalibrationTest("Spiegelhalter z", z, float(2 * stats.norm.sf(abs(z))), len(p))


def count_z(count: float, p_sum: float, variance: float) -> float:
    """One unit's count of events against its probabilities:
    ``(count - p_sum) / sqrt(variance)``.  ``variance`` must be the count's predictive
    variance: ``sum p (1 - p)`` only when the events are independent given the
    probabilities; for a screen's genes, whose classes share hyperparameters, it is
    ``E[sum p(1 - p) | h] + Var(sum p | h)`` over the hyperparameters' posterior."""
    return (float(count) - float(p_sum)) / math.sqrt(float(variance)) if variance > 0 \
        else math.nan


def count_z_test(z) -> CalibrationTest:
    """Test that per-unit count z-scores (:func:`count_z`, one per independent unit) have
    mean 0 and variance 1, as they do when the probabilities and the count's variance
    are right: ``sum z^2`` against chi-square with ``n`` degrees of freedom (two-sided;
    the z are taken as normal, fair when each unit's variance is a few events or more).
    Over-dispersion (sd above 1) means the count varies more than the stated variance.

    Parameters
    ----------
    z : array_like
        One z per unit; NaN entries are dropped.

    Returns
    -------
    CalibrationTest
        statistic ``sum z^2``; ``mean`` and ``sd`` (ddof 1) of z.
    """
    z = np.asarray(z, float)
    z = z[np.isfinite(z)]
    n = len(z)
    if n < 2:
        return CalibrationTest("count z", math.nan, math.nan, n)
    q = float((z**2).sum())
    p = float(min(1.0, 2 * min(stats.chi2.cdf(q, n), stats.chi2.sf(q, n))))
    return CalibrationTest("count z", q, p, n, float(z.mean()), float(z.std(ddof=1)))


@dataclass(frozen=True)
class EventCalibration:
    """How well the probabilities of one binary event of a quantity are calibrated:
    ``brier`` and its decomposition over every (replicate, element) pair; the reliability
    ``table``; Spiegelhalter's test of each element over the replicates (``tests``) and
    their Bonferroni combination ``p_value`` (``worst``: the element of the smallest p)."""

    brier: Brier
    table: ReliabilityTable
    tests: tuple[CalibrationTest, ...]
    p_value: float
    worst: int

    def rejects(self, alpha: float) -> bool:
        """Whether calibration is rejected at size ``alpha`` (for the whole quantity)."""
        return bool(self.p_value < alpha)


def event_calibration(p, y, bins: int | np.ndarray = 10, level: float = 0.95
                      ) -> EventCalibration:
    """Calibration of one binary event decided in independent replicates, for a quantity of
    one or more elements.  The elements of one replicate share its data and
    hyperparameters, so their outcomes are not independent given their probabilities:
    each element is tested over the replicates alone (:func:`spiegelhalter_test`, valid
    there) and the elements' p-values are combined by Bonferroni (valid under any
    dependence); the reliability table of several elements pools them with replicates as
    clusters (:func:`pooled_reliability_table`), of one element it is exact
    (:func:`reliability_table`).

    Parameters
    ----------
    p, y : array_like
        Shape (replicates,) or (replicates, elements): the event's probability and whether
        it happened.
    bins : int or array_like
        Number of equal-width bins, or their edges.
    level : float
        Coverage of each bin's interval.

    Returns
    -------
    EventCalibration
        ``p_value`` NaN where no element can be tested (every probability 0 or 1).
    """
    p, y = np.asarray(p, float), np.asarray(y, float)
    if p.ndim == 1:
        p, y = p[:, None], y[:, None]
    if p.shape != y.shape or p.ndim != 2:
        raise ValueError(f"probabilities of shape {p.shape} but outcomes of shape {y.shape}")
    tests = tuple(spiegelhalter_test(p[:, j], y[:, j]) for j in range(p.shape[1]))
    pvalues = np.array([t.p_value for t in tests])
    tested = np.isfinite(pvalues)
    worst = int(np.nanargmin(pvalues)) if tested.any() else 0
    combined = min(1.0, tested.sum() * pvalues[worst]) if tested.any() else math.nan
    sums = np.stack([binned_sums(p[i], y[i], bins) for i in range(len(p))])
    table = reliability_table(p, y, bins, level) if p.shape[1] == 1 else \
        pooled_reliability_table(sums, bins, level)
    return EventCalibration(brier_from_sums(sums), table, tests, float(combined), worst)


def threshold_columns(flat: np.ndarray, groups: list[str], thresholds: dict) -> dict:
    """A record's ``threshold`` (c, or None) and ``p_below_threshold`` (the share of the
    fit's draws ``flat`` (draws, scalars) below c, or None) per ranked scalar of parameter
    ``groups[i]``, for the decisions a model declares (``thresholds``: group -> c); nothing
    when it declares none."""
    if not thresholds:
        return {}
    c = [thresholds.get(g) for g in groups]
    declared = np.array([t is not None for t in c], dtype=bool)
    share = (flat[:, declared] < np.array([t for t in c if t is not None], dtype=float)
             ).mean(axis=0)
    below: list[float | None] = [None] * len(c)
    for i, p in zip(np.flatnonzero(declared), share):
        below[i] = float(p)
    return {"threshold": c, "p_below_threshold": below}
