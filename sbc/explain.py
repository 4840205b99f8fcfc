"""Why the ranks of a scalar were rejected: which part of their distribution, and which fits.

A failing verdict says *that* a scalar's fractional ranks are not uniform.  This module says
*where* and *who*, so that a reader can open the fits behind a failure:

- where: the region of u in which the ECDF of the ranks leaves its simultaneous band
  (:func:`sbc.uniformity.ecdf_band`, the band whose exit defines the ECDF test's statistic),
  as a count of ranks against the count expected there (:class:`Region`);
- who: the replicates whose ranks fall in that region, most responsible first.  Their
  responsibility is their Shapley value in the pointwise order test with Cauchy combination
  ("pot_c": the order statistic u_(i) against its Beta(i, n - i + 1) law under uniformity,
  the pointwise p-values combined by the mean of their Cauchy transforms) of Tesso & Vehtari
  (2026, arXiv 2603.02928), whose mean statistic gives closed-form Shapley values.  That test
  is not the verdict's test (:func:`sbc.stats.rank_test`), but both read the same departures
  of the ranks, and its Shapley values, unlike a leave-one-out rerun of the verdict's test
  (a new Monte Carlo count per fit), cost one pass over the ranks.

Pure functions on arrays and DataFrames; :mod:`sbc.report` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from sbc import uniformity

__all__ = ["BAND_PROB", "Explanation", "Region", "explain_failures", "explain_ranks",
           "rejection_region", "shapley_contributions"]

BAND_PROB = 0.95  # the simultaneous band whose exit locates a departure (as in the figures)


@dataclass(frozen=True)
class Region:
    """The part of (0, 1) that holds too many ranks.  ``below``: the ECDF is above its band
    there, too many ranks at or below it; ``above``: the ECDF is below its band, too many
    ranks above it.  With both, the region is the two tails (below < above: posterior too
    narrow) or the middle between them (above < below: too wide).  ``count`` of the ``n``
    ranks fall in it where ``expected`` are expected under uniformity."""

    below: float | None
    above: float | None
    count: int
    expected: float
    n: int

    def contains(self, u) -> np.ndarray:
        """Which of the ranks ``u`` fall in the region (bool, the shape of ``u``)."""
        u = np.asarray(u, float)
        low = u <= self.below if self.below is not None else np.zeros(u.shape, bool)
        high = u > self.above if self.above is not None else np.zeros(u.shape, bool)
        if self.below is not None and self.above is not None and self.above < self.below:
            return low & high
        return low | high

    @property
    def kind(self) -> str:
        """"lower tail", "upper tail", "tails" or "middle"."""
        if self.above is None:
            return "lower tail"
        if self.below is None:
            return "upper tail"
        return "tails" if self.below < self.above else "middle"

    def text(self) -> str:
        """The region in words, e.g. "too many ranks above 0.90: 31 of 100 where 10
        expected"."""
        kind = self.kind
        if kind == "lower tail":
            where = f"below {self.below:.2f}"
        elif kind == "upper tail":
            where = f"above {self.above:.2f}"
        elif kind == "tails":
            where = f"in the tails, below {self.below:.2f} or above {self.above:.2f}"
        else:
            where = f"in the middle, between {self.above:.2f} and {self.below:.2f}"
        return f"too many ranks {where}: {self.count} of {self.n} where {self.expected:.3g} expected"


def _width(below: float | None, above: float | None) -> float:
    """The share of (0, 1) the region of these ends covers."""
    if above is None:
        return below
    if below is None:
        return 1.0 - above
    return below + 1.0 - above if below < above else below - above


def _most_significant(points: np.ndarray, tail: np.ndarray) -> float | None:
    return float(points[np.argmin(tail)]) if len(points) else None


def rejection_region(u, prob: float = BAND_PROB) -> Region | None:
    """Where the ECDF of the ranks ``u`` (NaN dropped) leaves its simultaneous ``prob`` band,
    or None where it stays inside.  Of the points above the band, the one whose excess of
    ranks at or below it is least likely under uniformity (binomial tail) ends the lower
    region; of the points below the band, the least likely one starts the upper region."""
    u = np.asarray(u, float)
    u = u[np.isfinite(u)]
    n = len(u)
    if n == 0:
        return None
    band = uniformity.ecdf_band(n, prob)
    z = band.z
    diff = uniformity.ecdf_difference(u, z)
    counts = np.rint((diff + z) * n)
    high, low = diff > band.upper + 1e-12, diff < band.lower - 1e-12
    below = _most_significant(z[high], stats.binom.sf(counts[high] - 1, n, z[high]))
    above = _most_significant(z[low], stats.binom.cdf(counts[low], n, z[low]))
    if below is None and above is None:
        return None
    region = Region(below, above, 0, 0.0, n)
    return Region(below, above, int(region.contains(u).sum()), n * _width(below, above), n)


def shapley_contributions(u) -> np.ndarray:
    """Each rank's Shapley value in the pointwise order test with Cauchy combination (pot_c;
    Tesso & Vehtari 2026), in the order of ``u`` (no NaN): large and positive = the rank
    pushes the test towards rejection.

    The sorted ranks u_(i) are Beta(i, n - i + 1) under uniformity; each gets the two-sided
    p-value p_i of that law and the Cauchy value t_i = tan((1/2 - p_i) pi); the test's
    statistic is their mean, so the Shapley value of rank i is
    t_i / n + (H_n - 1) / n * (t_i - mean of the other t), H_n the n-th harmonic number (the
    closed form arviz-stats 1.3 uses).  Written out here because the package asks for an
    arviz-stats that may predate it, and importing arviz-stats costs a second on the path
    of every report."""
    u = np.asarray(u, float)
    n = len(u)
    if n < 2:
        return np.zeros(n)
    order = np.argsort(u, kind="stable")
    i = np.arange(1, n + 1)
    cdf = special.betainc(i, n - i + 1, u[order])
    t = np.tan((0.5 - 2 * np.minimum(cdf, 1 - cdf)) * np.pi)
    harmonic = np.sum(1.0 / i)
    others = (t.sum() - t) / (n - 1)
    out = np.empty(n)
    out[order] = t / n + (harmonic - 1) / n * (t - others)
    return out


@dataclass(frozen=True)
class Explanation:
    """What drives the rejection of one scalar's ranks: its failure ``shape``
    (:func:`sbc.uniformity.failure_shape`), the ``region`` of too many ranks (None: the ECDF
    stays inside its band, nothing drives a rejection), and the replicates whose ranks fall
    in it, most responsible first (``reps``, with their ranks ``u`` and Shapley values)."""

    name: str
    group: str
    n: int
    shape: str
    region: Region | None
    reps: tuple[int, ...]
    u: tuple[float, ...]
    shapley: tuple[float, ...]

    def text(self, prob: float = BAND_PROB) -> str:
        """The region in words, or that nothing drives a rejection."""
        if self.region is None:
            return (f"nothing drives a rejection: the ECDF of its {self.n} ranks stays "
                    f"inside its simultaneous {prob:.0%} band")
        return self.region.text()


def explain_ranks(u, reps, name: str = "", group: str = "", prob: float = BAND_PROB
                  ) -> Explanation:
    """The :class:`Explanation` of one scalar's fractional ranks ``u`` (n,) of the
    replicates ``reps`` (n,); NaN ranks are dropped."""
    u, reps = np.asarray(u, float), np.asarray(reps)
    keep = np.isfinite(u)
    u, reps = u[keep], reps[keep]
    shape = uniformity.failure_shape(u) if len(u) > 1 else "ok"
    region = rejection_region(u, prob)
    if region is None:
        return Explanation(name, group, len(u), shape, None, (), (), ())
    inside = region.contains(u)
    value = shapley_contributions(u)[inside]
    order = np.argsort(-value, kind="stable")
    return Explanation(name, group, len(u), shape, region,
                       tuple(int(r) for r in reps[inside][order]),
                       tuple(float(x) for x in u[inside][order]),
                       tuple(float(x) for x in value[order]))


def explain_failures(groups: pd.DataFrame, block: pd.DataFrame, prob: float = BAND_PROB
                     ) -> list[Explanation]:
    """One :class:`Explanation` per failing group of a model x design: of its worst element,
    whose p-value decides the group's.  groups: the engine's group rows (``group``,
    ``fails``, ``worst``); block: the parameters table of the same model x design with
    ``name``, ``rep`` and fractional ranks ``u``."""
    out = []
    for g in groups[groups["fails"].astype(bool)].itertuples():
        rows = block[block["name"] == g.worst]
        out.append(explain_ranks(rows["u"].to_numpy(float), rows["rep"].to_numpy(), g.worst,
                                 g.group, prob))
    return out
