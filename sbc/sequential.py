"""Anytime-valid SBC: e-processes for the uniformity of ranks, valid under continuous monitoring.

Under calibration the fractional ranks u_1, u_2, ... of one scalar, taken in replicate order,
are iid Uniform(0, 1) (each replicate has its own seed; the randomised PIT makes them exactly
uniform).  For any *predictable* density q_t on [0, 1] (built from u_1 .. u_{t-1} only),

    E_t = prod_{i <= t} q_i(u_i)

is a nonnegative martingale with E_0 = 1 under that null, a test martingale, so by Ville's
inequality P(sup_t E_t >= 1 / alpha) <= alpha: the evidence may be looked at after every
replicate and the study stopped whenever it crosses, without inflating the false-alarm rate
(Ville 1939; Shafer & Vovk 2019; Ramdas, Grünwald, Vovk & Shafer 2023, "Game-theoretic
statistics and safe anytime-valid inference", Statistical Science 38(4); the predictable
plug-in construction of Waudby-Smith & Ramdas 2024, JRSS B 86(1)).

q_t here is a histogram density whose bin probabilities are estimated from the earlier ranks
(prior counts proportional to the bin widths, half a count per bin on average) and mixed half
and half with the uniform, averaged over two partitions (an average of test martingales on
one filtration is one): two halves, which a shifted posterior (a slope) tilts, and 8 bins
finer in the tails (edges 0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975), where a too narrow (U) or
too wide (hump) posterior moves the ranks first.  The partitions were chosen by the power
against those three shapes at 200 replicates (equal-width 2/4/8 bins caught a Beta(0.6, 0.6)
U shape in 52 % of studies, these in 83 %); any predictable choice keeps the level.

Groups and families, without any independence assumption between the elements of a replicate:

- a group (the exchangeable elements of a vector parameter) gets the mean of its elements'
  e-processes, again a test martingale on the replicate filtration;
- the family of K group tests is Bonferroni-corrected: group g is rejected at the first t
  with E_t^g >= K / alpha, so P(any false rejection, at any look) <= alpha.

The decision depends only on the ranks in replicate order (never on arrival order or worker
count): the same study stops at the same replicate however it is run.

Stating a pass.  An e-process alone never "accepts"; a sequential study passes at a
*prespecified* pass point instead.  The family's alpha is split by a union bound, valid under
any dependence between the parts (a group-sequential design with a continuously monitored
stage, Jennison & Turnbull 2000, "Group Sequential Methods", ch. 1-2 and 7):

- a share ``EARLY`` (2 %) goes to the e-processes, watched after every replicate;
- a share ``LOOK_SHARE`` (5 %) to each interim look at the fixed n of ``LOOKS`` (25, 50, 100,
  200 fits) below the pass point: the fixed-n test (:func:`look_pvalues`, Bonferroni
  within a group, Holm over the groups) on the first n fits;
- the rest, ``FINAL`` (78 %), to one fixed-n look at the pass point, the same test
  (:func:`sbc.calibration.calibrate`).

The shares are fixed in advance (a look at or past the stop is simply not made, its share
unspent), so the levels never depend on the data or on the pass point.  Why interim looks and
not only a stronger e-process: a weak departure that the fixed-n test finds at 25 or 50 fits
leaves a p-value near alpha / K there, about log(K / alpha) of evidence, while the e-process
must reach log(K / (0.02 alpha)); at twice the fits the same departure's p-value is far smaller
(log p falls about linearly in n), so a look at 5 % of alpha at the next n of the fixed
schedule catches what that schedule caught one step before.  Measured on one of 4 groups
shifted by 0.4 posterior sds (100 studies, ``tests/test_stopping.py``): median stop 100 fits,
against 204 (the pass point) before the interim looks.  A finer geometric grid of looks
(20 ... 200, ratio about sqrt 2) at the same total share was no faster in median on shifted
and too wide ranks, and slower in the tail.

The pass point is the smallest n at which the whole procedure (crossing by n, rejecting at an
interim look below n, or rejecting at the final look at n) detects each stated departure of
one scalar with the stated probability: a posterior mean off by ``shift`` posterior sds (ranks
Phi(Z - shift)) and a posterior ``narrow`` too narrow (sd (1 - narrow) x the right one, ranks
Phi(Z / (1 - narrow))).  :func:`pass_point` estimates it by Monte Carlo with a fixed seed
(400 studies per departure), so it is the same number on every machine and every run.  The
smaller final share costs fits that the interim looks' power only partly wins back: the pass
point is at most 10 % above a fixed-n study of equal power (``tests/test_sequential.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from sbc import seeding, stats

# Partitions of [0, 1] averaged in the e-process: halves (a shifted posterior tilts them) and
# finer bins in the tails, where a too narrow or too wide posterior moves the ranks first.
TAILS = (0.0, 0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975, 1.0)
BINS = (2, TAILS)
PRIOR_COUNT = 0.5  # add-1/2 counts per bin
MIX = 0.5  # weight of the histogram against the uniform


def log_eprocess(u, bins=BINS, prior: float = PRIOR_COUNT, mix: float = MIX) -> np.ndarray:
    """log E_t, t = 1..n, of the predictable plug-in e-process for the uniformity of ``u``
    (fractional ranks in replicate order, shape (n,), values in [0, 1]; NaN not allowed:
    pass the ranked replicates only, in order).  ``bins``: partitions of [0, 1], each a
    number of equal bins or a sequence of edges from 0 to 1."""
    u = np.asarray(u, dtype=float)
    if u.ndim != 1:
        raise ValueError(f"u must be one-dimensional, got shape {u.shape}")
    if np.any(~np.isfinite(u)) or np.any((u < 0) | (u > 1)):
        raise ValueError("u must hold finite fractional ranks in [0, 1]")
    if not 0 < mix <= 1 or prior <= 0:
        raise ValueError("mix must lie in (0, 1] and prior be positive")
    n = len(u)
    per_b = []
    for b in bins:
        edges = np.linspace(0.0, 1.0, b + 1) if isinstance(b, int) else np.asarray(b, float)
        widths = np.diff(edges)
        k = len(widths)
        cell = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, k - 1)
        hits = np.zeros((n, k))
        hits[np.arange(n), cell] = 1.0
        before = np.vstack([np.zeros((1, k)), np.cumsum(hits, axis=0)[:-1]])  # predictable
        counts = before[np.arange(n), cell]
        # the prior count of a bin is proportional to its width: before any data q = 1
        prob = (counts + prior * k * widths[cell]) / (np.arange(n) + prior * k)
        per_b.append(np.cumsum(np.log((1.0 - mix) + mix * prob / widths[cell])))
    return logsumexp(np.vstack(per_b), axis=0) - math.log(len(bins))


def log_group_eprocess(u) -> np.ndarray:
    """log of the mean of the element e-processes of a group: ``u`` (n, k), one column per
    element, rows in replicate order.  Valid whatever the dependence between elements."""
    u = np.asarray(u, dtype=float)
    if u.ndim == 1:
        u = u[:, None]
    logs = np.vstack([log_eprocess(u[:, j]) for j in range(u.shape[1])])
    return logsumexp(logs, axis=0) - math.log(u.shape[1])


@dataclass(frozen=True)
class SequentialResult:
    """Where a family of sequential group tests stands after ``n`` replicates.

    stopped_at: the first replicate count at which some group's e-value crossed the
    threshold (None: no crossing yet); rejected: the groups that had crossed by then;
    log_e: group -> log E_t over t = 1..n; threshold: K / alpha.
    """

    n: int
    alpha: float
    threshold: float
    log_e: dict
    stopped_at: int | None
    rejected: tuple[str, ...]

    @property
    def rejects(self) -> bool:
        return self.stopped_at is not None

    def max_e(self, group: str) -> float:
        """The largest e-value the group reached (1 before any replicate)."""
        series = self.log_e[group]
        return float(np.exp(series.max())) if len(series) else 1.0


def sequential_test(groups: dict[str, np.ndarray], alpha: float = 0.05) -> SequentialResult:
    """Anytime-valid uniformity tests of a family of groups.

    groups: name -> fractional ranks (n,) or (n, k), rows in replicate order (the same n for
    every group: the ranked replicates of one model x design).  alpha: family-wise error over
    every group and every look.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if not groups:
        raise ValueError("no groups to test")
    logs = {name: log_group_eprocess(u) for name, u in groups.items()}
    lengths = {len(v) for v in logs.values()}
    if len(lengths) != 1:
        raise ValueError(f"every group needs the same replicates; got lengths {sorted(lengths)}")
    n = lengths.pop()
    threshold = len(groups) / alpha
    log_threshold = math.log(threshold)
    first = {name: int(np.argmax(v >= log_threshold)) + 1 for name, v in logs.items()
             if np.any(v >= log_threshold)}
    stopped = min(first.values()) if first else None
    rejected = tuple(sorted(g for g, t in first.items() if t == stopped)) if first else ()
    return SequentialResult(n, alpha, threshold, logs, stopped, rejected)


# --------------------------------------------------------------------------------------
# The pass point: power of the two-stage procedure against stated departures
# --------------------------------------------------------------------------------------

POWER_STUDIES = 400  # simulated studies per departure (Monte Carlo sd of a power <= 0.025)
EARLY = 0.02  # share of alpha watched continuously by the e-processes
LOOKS = (25, 50, 100, 200)  # interim looks: the fixed-n schedule's n below its last
LOOK_SHARE = 0.05  # share of alpha of each interim look
FINAL = 1.0 - EARLY - LOOK_SHARE * len(LOOKS)  # share of the look at the pass point (0.78)
SMALLEST = 10  # no pass point below this many fits (calibration.MIN_FITS)
MAX_N_SIM = 100_000  # cap on a look's null simulations (calibration.MAX_N_SIM)


def departures(shift: float, narrow: float) -> dict[str, float]:
    """The stated departures, by name ("shift", "narrow"), without those set to 0."""
    out = {}
    if shift > 0:
        out["shift"] = float(shift)
    if narrow > 0:
        out["narrow"] = float(narrow)
    return out


def departure_ranks(kind: str, size: float, n: int, studies: int = POWER_STUDIES,
                    seed: int = seeding.SEQUENTIAL_POWER_SEED) -> np.ndarray:
    """Fractional ranks (studies, n) of one scalar under a departure: "shift" (posterior mean
    off by ``size`` posterior sds) or "narrow" (posterior sd (1 - size) x the right one)."""
    z = np.random.default_rng([seed, 0 if kind == "shift" else 1]).standard_normal((studies, n))
    if kind == "shift":
        return norm.cdf(z - size)
    if kind == "narrow":
        if not 0 < size < 1:
            raise ValueError(f"narrow must lie in (0, 1), got {size!r}")
        return norm.cdf(z / (1.0 - size))
    raise ValueError(f"unknown departure {kind!r}")


def crossing_times(u: np.ndarray, threshold: float) -> np.ndarray:
    """For each row of u (studies, n): the first t at which the e-process crosses
    ``threshold`` (inf: never within n)."""
    log_t = math.log(threshold)
    out = np.full(len(u), np.inf)
    for i, row in enumerate(u):
        hit = np.flatnonzero(log_eprocess(row) >= log_t)
        if len(hit):
            out[i] = hit[0] + 1
    return out


def look_pvalues(u: np.ndarray, level: float) -> np.ndarray:
    """p-values of the fixed-n uniformity test for every row of ``u`` (rows, n): the one
    test of every look, interim and final (:func:`sbc.stats.rank_test_pvalues`, the test
    :func:`sbc.calibration.calibrate` uses at the pass point).  ``level``: the smallest level
    the p-values will be held against; the null simulations are enough to resolve it."""
    n_sim = min(MAX_N_SIM, max(stats.DEFAULT_N_SIM, 1000 * math.ceil(20.0 / level / 1000)))
    return stats.rank_test_pvalues(u, n_sim)


def _look_rejects(u: np.ndarray, n: int, level: float) -> np.ndarray:
    """Whether the fixed-n test rejects the first n ranks of each row of ``u`` at ``level``."""
    return look_pvalues(u[:, :n], level) <= level


def interim_looks(stop: int) -> tuple[int, ...]:
    """The interim looks made before a stop at ``stop`` fits (those of LOOKS below it)."""
    return tuple(n for n in LOOKS if n < stop)


@dataclass(frozen=True)
class LookResult:
    """The first interim look that rejected.  n: its fits; rejected: the groups whose Holm
    p-value (over the groups) is at most the look's level; p: group -> Holm p-value."""

    n: int
    rejected: tuple[str, ...]
    p: dict


def interim_test(groups: dict[str, np.ndarray], alpha: float, stop: int) -> LookResult | None:
    """The interim looks of a family of groups (name -> fractional ranks (n,) or (n, k), rows
    in replicate order) at family-wise ``alpha`` (the cell's), made at each n of LOOKS below
    ``stop`` that the rows reach, each at level LOOK_SHARE x alpha: a group's p-value is the
    Bonferroni minimum over its elements (:func:`sbc.stats.pooled_pvalue`), Holm over the
    groups.  The first look that rejects, or None."""
    level = LOOK_SHARE * alpha
    rows = {len(u) for u in groups.values()}
    if len(rows) != 1:
        raise ValueError(f"every group needs the same replicates; got lengths {sorted(rows)}")
    have = rows.pop()
    names = sorted(groups)
    widest = max((np.shape(groups[g])[1] if np.ndim(groups[g]) == 2 else 1) for g in names)
    for n in interim_looks(stop):
        if n > have:
            break
        pooled = []
        for g in names:
            block = np.asarray(groups[g], dtype=float).reshape(have, -1)[:n]
            pooled.append(stats.pooled_pvalue(look_pvalues(block.T, level / (len(names) * widest))))
        holm = stats.holm(np.asarray(pooled))
        rejected = tuple(g for g, p in zip(names, holm) if p <= level)
        if rejected:
            return LookResult(n, rejected, {g: float(p) for g, p in zip(names, holm)})
    return None


@dataclass(frozen=True)
class PassPoint:
    """Where a sequential study of one model x design may state a pass.

    n: the pass point (fits), None when even ``limit`` fits cannot reach the stated power;
    power: departure -> the procedure's power at n (or at ``limit``); fixed_n: departure ->
    fits a fixed-n study (the fixed-n test at the full level) needs for the same power (None
    beyond ``limit``); threshold: the e-value that rejects (groups / (EARLY x alpha));
    look_level: the per-group level of the look at the pass point (FINAL x alpha / groups);
    interim_level: the per-group level of each interim look (LOOK_SHARE x alpha / groups);
    looks: the interim looks before the pass point (or before ``limit``).
    """

    n: int | None
    power: dict
    threshold: float
    look_level: float
    target: float
    limit: int
    interim_level: float = 0.0
    looks: tuple[int, ...] = ()
    groups: int = 1
    alpha: float = 0.05
    shift: float = 0.0
    narrow: float = 0.0

    @property
    def fixed_n(self) -> dict:
        """departure -> fits a fixed-n study needs for the same power (for the report; its
        bisection costs more than the pass point itself, so it is computed when asked)."""
        return fixed_n_equal_power(self.groups, self.alpha, self.target, self.shift,
                                   self.narrow, self.limit)


def _smallest(ok, lo: int, hi: int) -> int | None:
    """The smallest n in [lo, hi] with ok(n), by bisection (power grows with n; the Monte
    Carlo estimate is not exactly monotone, so the answer is "an n where the estimate first
    reaches the target" to within a replicate or two, and always the same n)."""
    if ok(lo):
        return lo
    if not ok(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def detection_times(u: np.ndarray, groups: int, alpha: float, stop: int) -> np.ndarray:
    """For each row of ``u`` (studies, n >= stop), ranks of one scalar in a family of
    ``groups`` group tests at family-wise ``alpha``: the fits at which the procedure rejects
    (the e-process's crossing, an interim look, or the final look at ``stop``; inf: none)."""
    out = crossing_times(u[:, :stop], groups / (EARLY * alpha))
    for n in interim_looks(stop):
        out = np.where((out > n) & _look_rejects(u, n, LOOK_SHARE * alpha / groups), n, out)
    return np.where((out > stop) & _look_rejects(u, stop, FINAL * alpha / groups), stop, out)


# --------------------------------------------------------------------------------------
# A pass point costs about 2.6 s of Monte Carlo (8 groups), the largest part of a quick
# verdict's time after the compile.  It is a deterministic function of its arguments, of
# this module and sbc.stats, and of numpy's and scipy's code (fixed seeds), so it is kept on
# disk under a key of all of them: a later run in any directory reads the same numbers, and
# any change of the code or the libraries gives another key, never a stale point.
# --------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where sbc keeps what it may recompute at will: ``$SBC_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/sbc``, else ``~/.cache/sbc``."""
    if os.environ.get("SBC_CACHE_DIR"):
        return Path(os.environ["SBC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sbc"


@lru_cache(maxsize=1)
def _code_key() -> str:
    from importlib.metadata import version

    h = hashlib.sha256()
    for module in (__file__, stats.__file__):
        h.update(Path(module).read_bytes())
    h.update(f"numpy {np.__version__} scipy {version('scipy')}".encode())
    return h.hexdigest()[:16]


def _cache_file() -> Path:
    return cache_dir() / f"pass_points-{_code_key()}.json"


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # none yet, unreadable or torn: recompute
        return {}


def _write_cache(key: str, value: dict) -> None:
    """Add one entry; atomic (a reader sees the old file or the new one), and a cache that
    cannot be written costs only the recompute next time."""
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**_read_cache(), key: value}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pass_points-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError:
        pass


@lru_cache(maxsize=64)
def pass_point(groups: int, alpha: float, target: float, shift: float, narrow: float,
               limit: int) -> PassPoint:
    """The pass point of a family of ``groups`` group tests at family-wise ``alpha``, for
    power ``target`` against each departure (module docstring); at most ``limit`` fits.
    Computed once per machine and code version (:func:`cache_dir`)."""
    if groups < 1 or not 0 < alpha < 1 or not 0 < target < 1:
        raise ValueError("need groups >= 1 and alpha and target in (0, 1)")
    kinds = departures(shift, narrow)
    if not kinds:
        raise ValueError("state at least one departure (shift > 0 or narrow > 0)")
    limit = max(int(limit), SMALLEST)
    look = FINAL * alpha / groups  # Bonferroni: Holm at the look is at least this
    interim = LOOK_SHARE * alpha / groups
    key = json.dumps([int(groups), repr(float(alpha)), repr(float(target)), repr(float(shift)),
                      repr(float(narrow)), limit])
    known = _read_cache().get(key)
    if isinstance(known, dict) and isinstance(known.get("power"), dict) and \
            set(known["power"]) == set(kinds) and \
            (known.get("n") is None or isinstance(known.get("n"), int)):
        n, power = known.get("n"), {k: float(v) for k, v in known["power"].items()}
    else:
        n, power = _search_pass_point(groups, alpha, target, kinds, limit, look, interim)
        _write_cache(key, {"n": n, "power": power})
    return PassPoint(
        n=n, power=power, threshold=groups / (EARLY * alpha), look_level=look, target=target,
        limit=limit, interim_level=interim, looks=interim_looks(n if n is not None else limit),
        groups=groups, alpha=alpha, shift=shift, narrow=narrow)


def _search_pass_point(groups: int, alpha: float, target: float, kinds: dict, limit: int,
                       look: float, interim: float) -> tuple[int | None, dict]:
    """(the pass point or None, departure -> power there or at ``limit``), by Monte Carlo."""
    ranks = {k: departure_ranks(k, size, limit) for k, size in kinds.items()}
    crossed = {k: crossing_times(u, groups / (EARLY * alpha)) for k, u in ranks.items()}
    # the interim looks' rejections do not depend on the pass point: computed once
    early = {k: {n: _look_rejects(u, n, interim) for n in LOOKS if n < limit}
             for k, u in ranks.items()}

    def power(kind: str, n: int) -> float:
        hit = (crossed[kind] <= n) | _look_rejects(ranks[kind], n, look)
        for m in interim_looks(n):
            hit |= early[kind][m]
        return float(np.mean(hit))

    n = _smallest(lambda m: all(power(k, m) >= target for k in kinds), SMALLEST, limit)
    return n, {k: power(k, n if n is not None else limit) for k in kinds}


@lru_cache(maxsize=64)
def fixed_n_equal_power(groups: int, alpha: float, target: float, shift: float, narrow: float,
                        limit: int) -> dict:
    """departure -> the fits a fixed-n study (one look at the full alpha / groups) needs for
    power ``target`` against it, on the same simulated departures as :func:`pass_point`
    (None beyond ``limit``)."""
    limit = max(int(limit), SMALLEST)
    out = {}
    for kind, size in departures(shift, narrow).items():
        u = departure_ranks(kind, size, limit)
        out[kind] = _smallest(
            lambda m, u=u: float(np.mean(_look_rejects(u, m, alpha / groups))) >= target,
            SMALLEST, limit)
    return out
