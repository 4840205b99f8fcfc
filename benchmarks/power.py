"""Power of uniformity tests for SBC ranks, all compared at the same false-alarm rate.

Tests of uniformity of n fractional ranks u in (0, 1) (one study = one row of n ranks):

- ``sbc_gamma``: sbc's own ECDF "gamma" test (``sbc.stats.uniformity_pvalues``, Monte Carlo
  null of ``--sbc-n-sim`` uniform samples with its fixed seed);
- ``pot_c``, ``prit_c``, ``piet_c``: arviz-stats' ``uniformity_test`` (Cauchy combinations of
  pointwise tests; ``array_stats.uniformity_test(u, axis=-1, method=...)`` returns
  ``(p_value, shapley_vals, shapley_unsorted)``: we use the p-value);
- ``ks``: Kolmogorov-Smirnov, ``scipy.stats.kstest(u, "uniform")`` (exact p-value);
- ``ad``: Anderson-Darling against Uniform(0, 1), the statistic by formula and its null by Monte
  Carlo once per n (``--ad-n-null`` uniform samples; ``scipy.stats.goodness_of_fit`` simulates
  9,999 samples per call, about a second per study at n = 400: too slow here);
- ``chi2_10``: Pearson chi-square on 10 equal bins (asymptotic chi2(9) p-value).

Candidates for sbc's default test, every one calibrated on a Monte Carlo null of exact-uniform
samples (``--cand-n-sim`` per n, seed ``CAND_SEED``), so valid by construction:

- ``minp_g_ad``, ``minp_g_ad_pot``: the smallest Monte Carlo p-value of {gamma, AD} and of
  {gamma, AD, pot_c}, its null distribution taken from the same null samples;
- ``cauchy_g_ad_pot``: the Cauchy combination (mean of tan((1/2 - p) pi)) of the same three
  Monte Carlo p-values, calibrated on the Monte Carlo null (its nominal Cauchy p-value,
  0.5 - arctan(T) / pi, is not valid for these dependent p-values: its size is reported);
- ``ledwina``: Neyman's smooth test with the order chosen by Schwarz's rule (Ledwina 1994),
  Legendre components 1..10;
- ``neyman3``: Neyman's smooth test of order 3 (Legendre components: mean, spread, skewness);
- ``berk_jones``: Berk & Jones (1979), sup over x of n KL(ECDF(x) || x), tail-sensitive;
- ``minp_ad_bj_n3``: sbc's ``combined_uniformity_test`` (smallest Monte Carlo p-value of AD,
  Berk-Jones and neyman3, ties broken by the next smallest, counted among the null and the
  observed samples together: exact; its own null of ``--sbc-n-sim`` samples, sbc's seed).

The "best" test of a cell is the best of the seven single tests above (sbc_gamma .. chi2_10);
every test, candidates included, is "within MC error of the best" when its size-corrected
power is no more than 2 paired bootstrap sd below that best.  ``engine_cost`` times each
candidate as the calibration engine would call it: once per scalar, with the null simulated
once per sample size n and cached (cold = first call at a new n, warm = later calls).

Every test is calibrated on the same ``--n-null`` exact-uniform null studies per n: the size at
nominal 0.05 is the share of null p-values <= 0.05; the size-corrected level is the 5 % point
of the null p-values, with a randomised decision at that point when p-values tie, so every test
rejects exactly 5 % of the null studies.  Power (share of ``--n-alt`` departure studies
rejected) is reported at nominal 0.05 (binomial sd) and at the size-corrected level (sd from a
joint bootstrap of the null and departure studies: binomial error plus the error of the
calibrated level).  A test is "best within MC error" when its size-corrected power is within
2 bootstrap sd of the highest single test's (paired: the sd of the difference).

    .venv/bin/python benchmarks/power.py                          # writes power.{md,json}
    .venv/bin/python benchmarks/power.py --n-null 400 --n-alt 200 --out /tmp/p   # quick look
    .venv/bin/python benchmarks/power.py --render     # power.md again from power.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import special, stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sbc import seeding  # noqa: E402
from sbc import uniformity as sbc_uniformity  # noqa: E402
from sbc.stats import uniformity_pvalues, uniformity_test  # noqa: E402

REF_TESTS = ("sbc_gamma", "pot_c", "prit_c", "piet_c", "ks", "ad", "chi2_10")
# name -> (how the component p-values are combined, components); "sbc": sbc's own function
CANDIDATES = {
    "minp_g_ad": ("min", ("gamma", "ad")),
    "minp_g_ad_pot": ("min", ("gamma", "ad", "pot")),
    "cauchy_g_ad_pot": ("cauchy", ("gamma", "ad", "pot")),
    "ledwina": ("one", ("ledwina",)),
    "neyman3": ("one", ("neyman3",)),
    "berk_jones": ("one", ("berk_jones",)),
    "minp_ad_bj_n3": ("sbc", ("ad", "berk_jones", "neyman3")),
}
TESTS = REF_TESTS + tuple(CANDIDATES)
NS = (25, 50, 100, 200, 400)
ALPHA = 0.05
SEED = 20260601  # this study's draws; sbc's own null uses seeding.NULL_SEED (a different stream)
AD_SEED = 20260602
CAND_SEED = 20260604  # the candidates' Monte Carlo null (sbc's combined test uses sbc's seed)
BOOT_SEED = 20260603
N_BOOT = 300
Z_TIE = 2.0  # "within MC error": within Z_TIE sd of the difference to the best

# The 1-ulp guards keep log(u), log(1 - u) finite when Phi rounds to 0 or 1.
_LO, _HI = np.nextafter(0.0, 1.0), np.nextafter(1.0, 0.0)


def _phi(x: np.ndarray) -> np.ndarray:
    return np.clip(stats.norm.cdf(x), _LO, _HI)


def _shift(delta):
    return lambda rng, m, n: _phi(rng.standard_normal((m, n)) + delta)


def _scale(factor):
    return lambda rng, m, n: _phi(rng.standard_normal((m, n)) / factor)


def _skew(df):
    # Standardised chi-square(df): mean 0, sd 1, skewness sqrt(8 / df) (a posterior right in
    # mean and sd, wrong in shape).  Its support starts at -sqrt(df / 2), so no rank falls
    # below Phi(-sqrt(df / 2)).
    return lambda rng, m, n: _phi((rng.chisquare(df, (m, n)) - df) / np.sqrt(2.0 * df))


def _mixture(rng, m, n):
    z = rng.standard_normal((m, n))
    return _phi(z + 2.0 * (rng.uniform(size=(m, n)) < 0.10))


DEPARTURES = {
    "shift_0.25": ("shift: posterior mean off by 0.25 posterior sd, u = Phi(z + 0.25)", _shift(0.25)),
    "shift_0.5": ("shift: posterior mean off by 0.5 posterior sd, u = Phi(z + 0.5)", _shift(0.5)),
    "too_narrow": ("too narrow: posterior sd 0.8x, u = Phi(z / 0.8)", _scale(0.8)),
    "too_wide": ("too wide: posterior sd 1.25x, u = Phi(z / 1.25)", _scale(1.25)),
    "skew": ("skew: u = Phi((X - 8) / 4), X ~ chi-square(8) (mean 0, sd 1, skewness 1). X >= 0, "
             "so no rank falls below Phi(-2) = 0.023: part of this departure is an empty "
             "lower tail", _skew(8)),
    "skew_mild": ("mild skew: u = Phi((X - 32) / 8), X ~ chi-square(32) (mean 0, sd 1, "
                  "skewness 0.5; no rank below Phi(-4) = 3e-5)", _skew(32)),
    "mixture": ("mixture: 90 % calibrated, 10 % shifted by 2 sd, u = Phi(z + 2 B), B ~ Bernoulli(0.1)",
                _mixture),
}


# --------------------------------------------------------------------------------------
# The tests: p-values of every row of u (m, n)
# --------------------------------------------------------------------------------------


def ad_statistic(u: np.ndarray) -> np.ndarray:
    """Anderson-Darling A^2 of every row of u against Uniform(0, 1)."""
    n = u.shape[1]
    s = np.sort(u, axis=1)
    i = np.arange(1, n + 1)
    terms = (2 * i - 1) * (np.log(s) + np.log1p(-s[:, ::-1]))
    return -n - terms.sum(axis=1) / n


def ad_null(n: int, n_sim: int) -> np.ndarray:
    """Sorted A^2 of n_sim uniform samples of size n (the AD test's Monte Carlo null)."""
    rng = np.random.default_rng(np.random.SeedSequence([AD_SEED, n]))
    out = np.concatenate([ad_statistic(_clip(rng.uniform(size=(min(5000, n_sim - k), n))))
                          for k in range(0, n_sim, 5000)])
    return np.sort(out)


def _clip(u):
    return np.clip(u, _LO, _HI)


def pvalues(u: np.ndarray, ad_null_sorted: np.ndarray, sbc_n_sim: int, timing: dict,
            cand: CandidateNulls, extra: dict | None = None) -> dict[str, np.ndarray]:
    """p-values of every test for every row of u (m, n); seconds spent added to timing (a
    candidate's own combination under its name, its components under "comp:<name>")."""
    from arviz_stats.base import array_stats

    out = {}

    def timed(name, fn):
        t = time.process_time()
        out[name] = np.asarray(fn(), dtype=float)
        timing[name] = timing.get(name, 0.0) + time.process_time() - t

    timed("sbc_gamma", lambda: uniformity_pvalues(u, n_sim=sbc_n_sim))
    for method in ("pot_c", "prit_c", "piet_c"):
        timed(method, lambda m=method: array_stats.uniformity_test(u, axis=-1, method=m)[0])
    timed("ks", lambda: stats.kstest(u, "uniform", axis=1).pvalue)

    def ad():
        a = ad_statistic(u)
        n_ge = len(ad_null_sorted) - np.searchsorted(ad_null_sorted, a, side="left")
        return (1.0 + n_ge) / (len(ad_null_sorted) + 1.0)

    timed("ad", ad)

    def chi2():
        counts = np.stack([np.bincount(r, minlength=10)
                           for r in np.minimum((u * 10).astype(int), 9)])
        return stats.chisquare(counts, axis=1).pvalue

    timed("chi2_10", chi2)
    timed("minp_ad_bj_n3",
          lambda: sbc_uniformity.combined_uniformity_pvalues(u, n_sim=sbc_n_sim))
    out.update(cand.pvalues(u, timing, extra))
    return out


# --------------------------------------------------------------------------------------
# Candidates for the default test: component statistics (rows of u, larger = further
# from uniform) and their combinations, calibrated on a Monte Carlo null
# --------------------------------------------------------------------------------------


def gamma_statistic(u: np.ndarray) -> np.ndarray:
    """sbc's gamma statistic (minimum two-sided ECDF tail probability), negated."""
    n_eval = sbc_uniformity._resolve(u.shape[1], None)
    return -sbc_uniformity._min_tail_probs_of(u, n_eval)


def pot_statistic(u: np.ndarray) -> np.ndarray:
    """arviz-stats' pot_c statistic: the truncated Cauchy mean of the two-sided Beta(i,
    n - i + 1) tail probabilities of the order statistics (its p-value is 0.5 - arctan / pi)."""
    n = u.shape[1]
    i = np.arange(1, n + 1)
    b = special.betainc(i, i[::-1], np.sort(u, axis=1))
    p = 2.0 * np.minimum(b, 1.0 - b)
    return np.where(p < 0.5, np.tan((0.5 - p) * np.pi), 0.0).mean(axis=1)


def ledwina_statistic(u: np.ndarray, d: int = 10) -> np.ndarray:
    """Data-driven smooth test (Ledwina 1994): T_S, S = argmax_k (T_k - k log n), k <= d,
    T_k = sum_{j <= k} V_j^2, V_j = n^-1/2 sum_i sqrt(2j + 1) P_j(2 u_i - 1)."""
    m, n = u.shape
    x = 2.0 * u - 1.0
    prev, cur = np.ones_like(x), x
    v = np.empty((m, d))
    v[:, 0] = np.sqrt(3.0) * x.sum(axis=1)
    for j in range(2, d + 1):
        prev, cur = cur, ((2 * j - 1) * x * cur - (j - 1) * prev) / j
        v[:, j - 1] = np.sqrt(2.0 * j + 1.0) * cur.sum(axis=1)
    t = np.cumsum(v**2, axis=1) / n
    s = np.argmax(t - np.arange(1, d + 1) * np.log(n), axis=1)
    return t[np.arange(m), s]


COMPONENTS = {
    "gamma": gamma_statistic,
    "ad": lambda u: ad_statistic(_clip(u)),
    "pot": pot_statistic,
    "ledwina": ledwina_statistic,
    "berk_jones": lambda u: sbc_uniformity.combined_statistics(u)[:, 1],
    "neyman3": lambda u: sbc_uniformity.combined_statistics(u)[:, 2],
}


def _blocks(fn, u: np.ndarray, block: int = 200_000) -> np.ndarray:
    """fn on row blocks of u of about `block` values (the temporaries stay small)."""
    rows = max(1, block // u.shape[1])
    return np.concatenate([fn(u[k:k + rows]) for k in range(0, len(u), rows)])


class CandidateNulls:
    """The Monte Carlo null of the generic candidates at one n: the null statistics of
    every component they use (one set of n_sim uniform samples, seed (CAND_SEED, n)) and
    each candidate's combined null; ``pvalues`` gives their p-values for rows of u."""

    def __init__(self, n: int, n_sim: int, names=None, timing: dict | None = None):
        self.n, self.n_sim = n, n_sim
        self.names = [c for c in (names or CANDIDATES) if CANDIDATES[c][0] != "sbc"]
        comps = sorted({k for c in self.names for k in CANDIDATES[c][1]})
        rng = np.random.default_rng(np.random.SeedSequence([CAND_SEED, n]))
        rows = max(1, 200_000 // n)  # blocks of uniform rows: never all n_sim in memory
        blocks = {k: [] for k in comps}
        for start in range(0, n_sim, rows):
            u = _clip(rng.uniform(size=(min(rows, n_sim - start), n)))
            for k in comps:
                t = time.process_time()
                blocks[k].append(COMPONENTS[k](u))
                if timing is not None:
                    timing["comp:" + k] = timing.get("comp:" + k, 0.0) + time.process_time() - t
        self.null, counts = {}, {}
        for k in comps:
            t = time.process_time()
            values = np.concatenate(blocks[k])
            self.null[k] = np.sort(values)
            # a null sample's count includes itself but not the observed sample, so it is
            # never larger than among all n_sim + 1 and the combined p-value is conservative
            # (by O(1 / n_sim); sbc's combined_uniformity_test counts among all exactly)
            counts[k] = n_sim - np.searchsorted(self.null[k], values, side="left")
            if timing is not None:
                timing["comp:" + k] = timing.get("comp:" + k, 0.0) + time.process_time() - t
        self.combined = {}
        for c in self.names:
            t = time.process_time()
            kind, ks = CANDIDATES[c]
            if kind in ("min", "cauchy"):
                self.combined[c] = np.sort(self._combine(kind, [counts[k] for k in ks]))
            if timing is not None:
                timing[c] = timing.get(c, 0.0) + time.process_time() - t

    def _combine(self, kind, counts):
        if kind == "min":
            return -np.min(counts, axis=0)  # larger = further from uniform
        return np.mean([np.tan((0.5 - c / (self.n_sim + 1.0)) * np.pi) for c in counts], axis=0)

    def pvalues(self, u: np.ndarray, timing: dict | None = None,
                extra: dict | None = None) -> dict[str, np.ndarray]:
        """p-values of the candidates for the rows of u (m, n): (1 + #{null >= observed}) /
        (n_sim + 1) of the combined statistic.  ``extra`` gets the nominal Cauchy p-values."""
        def tick(key, t):
            if timing is not None:
                timing[key] = timing.get(key, 0.0) + time.process_time() - t

        counts = {}
        for k in self.null:
            t = time.process_time()
            counts[k] = 1 + self.n_sim - np.searchsorted(
                self.null[k], _blocks(COMPONENTS[k], u), side="left")
            tick("comp:" + k, t)
        out = {}
        for c in self.names:
            t = time.process_time()
            kind, ks = CANDIDATES[c]
            if kind == "one":
                out[c] = counts[ks[0]] / (self.n_sim + 1.0)
            else:
                s = self._combine(kind, [counts[k] for k in ks])
                n_ge = self.n_sim - np.searchsorted(self.combined[c], s, side="left")
                out[c] = (1.0 + n_ge) / (self.n_sim + 1.0)
                if kind == "cauchy" and extra is not None:
                    extra[c] = 0.5 - np.arctan(s) / np.pi
            tick(c, t)
        return out


def engine_cost(ns=(100, 400), n_sims=(4000, 100_000), calls: int = 200,
                seed: int = 20260605) -> dict:
    """CPU seconds of one call as the calibration engine makes it (one scalar's ranks):
    cold = the first call at a new n (null simulated), warm = the mean of ``calls`` later
    calls on fresh samples.  Today's test (``sbc_gamma``: ``uniformity_test``), sbc's
    ``combined_uniformity_test`` and the other candidates as implemented here."""
    out: dict = {}
    rng = np.random.default_rng(seed)

    def clear_sbc():
        for f in (sbc_uniformity._null_min_tail_probs, sbc_uniformity._two_sided_table,
                  sbc_uniformity._combined_null, sbc_uniformity._combined_weights):
            f.cache_clear()

    for name in ("sbc_gamma", *CANDIDATES):
        for n in ns:
            for n_sim in n_sims:
                clear_sbc()
                if name == "sbc_gamma":
                    def call(u, n_sim=n_sim):
                        return uniformity_test(u, n_sim=n_sim).p_value
                elif CANDIDATES[name][0] == "sbc":
                    def call(u, n_sim=n_sim):
                        return sbc_uniformity.combined_uniformity_test(u, n_sim=n_sim).p_value
                else:
                    state = {}

                    def call(u, n_sim=n_sim, name=name, state=state):
                        if "null" not in state:
                            state["null"] = CandidateNulls(len(u), n_sim, [name])
                        return state["null"].pvalues(u[None, :])[name][0]
                t = time.process_time()
                call(rng.uniform(size=n))
                cold = time.process_time() - t
                us = rng.uniform(size=(calls, n))
                t = time.process_time()
                for u in us:
                    call(u)
                warm = (time.process_time() - t) / calls
                out.setdefault(name, {})[f"{n}/{n_sim}"] = {"cold_s": cold, "warm_s": warm}
    clear_sbc()
    return out


# --------------------------------------------------------------------------------------
# Calibration and power
# --------------------------------------------------------------------------------------


def calibrate(p0: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """Critical p-value c and weight w such that rejecting when p < c, and with probability w
    when p == c, rejects exactly a share alpha of the null p-values p0."""
    s = np.sort(p0)
    c = s[int(np.floor(alpha * len(s) + 1e-9))]
    below = np.mean(p0 < c)
    at = np.mean(p0 == c)
    return float(c), float((alpha - below) / at)


def reject(p: np.ndarray, c: float, w: float) -> np.ndarray:
    return (p < c) + w * (p == c)


def _calibrate_rows(p0: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """calibrate() for every row of p0 (B, N) at once."""
    s = np.sort(p0, axis=1)
    c = s[:, int(np.floor(alpha * p0.shape[1] + 1e-9))][:, None]
    below = np.mean(p0 < c, axis=1, keepdims=True)
    at = np.mean(p0 == c, axis=1, keepdims=True)
    return c, (alpha - below) / at


def binom_sd(p: float, m: int) -> float:
    return float(np.sqrt(p * (1.0 - p) / m))


def size_interval(n_null: int, alpha: float = ALPHA, level: float = 0.99) -> tuple[float, float]:
    """Central binomial `level` interval of the empirical size of n_null null studies."""
    lo = stats.binom.ppf((1 - level) / 2, n_null, alpha) / n_null
    hi = stats.binom.ppf(1 - (1 - level) / 2, n_null, alpha) / n_null
    return float(lo), float(hi)


def compare(p0: dict, p1: dict, rng) -> dict:
    """Nominal and size-corrected power of every test on one departure at one n, with the
    joint-bootstrap sd of the corrected power and of its difference to the best single test
    (the best of REF_TESTS; a candidate above it has a positive ``minus_best``)."""
    n0, n1 = len(p0[TESTS[0]]), len(p1[TESTS[0]])
    idx0 = rng.integers(0, n0, (N_BOOT, n0))
    idx1 = rng.integers(0, n1, (N_BOOT, n1))
    res, boot = {}, {}
    for t in TESTS:
        c, w = calibrate(p0[t])
        nominal = float(np.mean(p1[t] <= ALPHA))
        corrected = float(np.mean(reject(p1[t], c, w)))
        cb, wb = _calibrate_rows(p0[t][idx0])
        q = p1[t][idx1]
        boot[t] = np.mean((q < cb) + wb * (q == cb), axis=1)
        res[t] = {"nominal": nominal, "nominal_sd": binom_sd(nominal, n1),
                  "corrected": corrected, "corrected_binom_sd": binom_sd(corrected, n1),
                  "corrected_sd": float(np.std(boot[t], ddof=1))}
    best = max(REF_TESTS, key=lambda t: res[t]["corrected"])
    for t in TESTS:
        res[t]["best_single"] = best
        d_sd = float(np.std(boot[best] - boot[t], ddof=1))
        gap = res[best]["corrected"] - res[t]["corrected"]
        res[t]["minus_best"] = 0.0 - gap
        res[t]["minus_best_sd"] = d_sd
        res[t]["best_within_mc"] = bool(gap <= Z_TIE * d_sd + 1e-12)
    sbc = boot["sbc_gamma"]
    for t in TESTS:
        res[t]["sbc_minus"] = res["sbc_gamma"]["corrected"] - res[t]["corrected"]
        res[t]["sbc_minus_sd"] = float(np.std(sbc - boot[t], ddof=1))
    return res


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def fmt(x: float, sd: float) -> str:
    return f"{x:.3f} ± {sd:.3f}"


def table(rows: list[list[str]], head: list[str]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def headline(data: dict) -> list[str]:
    """Sentences on the winners and on sbc's test, generated from the results."""
    power = data["power"]
    lines = []
    cells = [(d, n) for d in DEPARTURES for n in data["settings"]["ns"]]
    tie = [(d, n) for d, n in cells if power[d][str(n)]["sbc_gamma"]["best_within_mc"]]
    sole = [(d, n) for d, n in tie
            if sum(power[d][str(n)][t]["best_within_mc"] for t in REF_TESTS) == 1]
    lose = [(d, n) for d, n in cells if (d, n) not in tie]
    lines.append(
        f"sbc's gamma test is within MC error of the best single test in {len(tie)} of "
        f"{len(cells)} departure x n cells (the only single test within it in {len(sole)} of "
        f"them) and significantly behind the best in {len(lose)}.")
    if lose:
        worst = sorted(lose, key=lambda c: power[c[0]][str(c[1])]["sbc_gamma"]["minus_best"])[:4]
        parts = []
        for d, n in worst:
            r = power[d][str(n)]
            best = r["sbc_gamma"]["best_single"]
            parts.append(f"{d} n={n}: {r['sbc_gamma']['corrected']:.3f} vs {best} "
                         f"{r[best]['corrected']:.3f} (difference "
                         f"{r['sbc_gamma']['minus_best']:+.3f} ± "
                         f"{r['sbc_gamma']['minus_best_sd']:.3f})")
        lines.append("Largest deficits (size-corrected power): " + "; ".join(parts) + ".")
    for d in DEPARTURES:
        bits = []
        for n in data["settings"]["ns"]:
            r = power[d][str(n)]
            winners = [t for t in REF_TESTS if r[t]["best_within_mc"]]
            bits.append(f"n={n}: {', '.join(winners)} (sbc {r['sbc_gamma']['minus_best']:+.3f} "
                        f"± {r['sbc_gamma']['minus_best_sd']:.3f})")
        lines.append(f"- {d}: best single tests " + "; ".join(bits))
    biased = []
    for t in TESTS:
        where = [f"{d} n={n} ({power[d][str(n)][t]['corrected']:.3f})" for d, n in cells
                 if power[d][str(n)][t]["corrected"]
                 < ALPHA - Z_TIE * max(power[d][str(n)][t]["corrected_sd"], 1e-12)]
        if where:
            biased.append(f"{t} on " + ", ".join(where))
    if biased:
        lines.append("Biased (size-corrected power significantly below the 0.05 size): "
                     + "; ".join(biased) + ".")
    # How sbc's test does against each competitor, over all cells.
    vs = []
    for t in TESTS[1:]:
        diffs = [power[d][str(n)][t]["sbc_minus"] for d, n in cells]
        sds = [power[d][str(n)][t]["sbc_minus_sd"] for d, n in cells]
        wins = sum(x > Z_TIE * s for x, s in zip(diffs, sds))
        losses = sum(x < -Z_TIE * s for x, s in zip(diffs, sds))
        vs.append(f"{t} {wins}/{len(cells) - wins - losses}/{losses} "
                  f"(mean {np.mean(diffs):+.3f})")
    lines.append("sbc vs each test, significantly better / tied / worse in the cells (mean "
                 "difference in size-corrected power): " + ", ".join(vs) + ".")
    return lines


def default_summary(data: dict) -> dict:
    """Per test: cells within MC error of the best single test, worst deficit (and where),
    mean difference, nominal sizes, and the engine cost ratios against today's test."""
    power, ns = data["power"], data["settings"]["ns"]
    cells = [(d, n) for d in DEPARTURES for n in ns]
    cost = data.get("engine_cost", {})
    out = {}
    for t in TESTS:
        rows = [power[d][str(n)][t] for d, n in cells]
        k = int(np.argmin([r["minus_best"] for r in rows]))
        ratios = {}
        if t in cost:
            for kind in ("cold_s", "warm_s"):
                ratios[kind] = [cost[t][key][kind] / cost["sbc_gamma"][key][kind]
                                for key in cost["sbc_gamma"]]
        sizes = [data["size"][t][str(n)]["size_nominal"] for n in ns]
        out[t] = {"within": sum(r["best_within_mc"] for r in rows), "cells": len(cells),
                  "worst": rows[k]["minus_best"], "worst_sd": rows[k]["minus_best_sd"],
                  "worst_cell": f"{cells[k][0]} n={cells[k][1]}",
                  "mean_diff": float(np.mean([r["minus_best"] for r in rows])),
                  "sizes": sizes, "sizes_ok": all(data["size"][t][str(n)]["within99"] for n in ns),
                  "cost_ratio": ratios}
    return out


# The rule for the default.  No candidate comes within MC error of the best single test in every
# cell (the best test changes with the departure), so the default is the candidate that never
# loses power against today's test and gains it in most cells, at a valid size and a cost of
# at most 3x; among several, the one within MC error of the best in most cells.  The cells
# where it stays below the best single test are listed with the test that wins there.
DECISION = {"cost": 3.0}


def default_section(data: dict) -> list[str]:
    """The section "Which test is the default": one row per test, generated."""
    summ = default_summary(data)
    cost = data.get("engine_cost", {})
    md = ["## Which test is the default", ""]
    md.append(
        "Candidates, all calibrated on a Monte Carlo null of exact-uniform samples (n_sim = "
        f"{data['settings']['cand_n_sim']} per n here), so their size is exact by construction: "
        "`minp_g_ad`, `minp_g_ad_pot` the smallest Monte Carlo p-value of {gamma, AD} and "
        "{gamma, AD, pot_c}; `cauchy_g_ad_pot` the Cauchy combination of the same three "
        "p-values, calibrated on the Monte Carlo null; `ledwina` Neyman's smooth test with the "
        "order (1..10) chosen by Schwarz's rule (Ledwina 1994); `neyman3` Neyman's smooth test "
        "of order 3 (mean, spread, skewness); `berk_jones` the Berk-Jones (1979) statistic; "
        "`minp_ad_bj_n3` the smallest p-value of AD, Berk-Jones and neyman3 (ties broken by "
        "the next smallest), as `sbc.uniformity.combined_uniformity_test` computes it (its "
        "null: n_sim = " + str(data["settings"]["sbc_n_sim"]) + ", sbc's seed). Cells: the "
        f"{summ['sbc_gamma']['cells']} departure x n cells; best = the best single test of "
        "the cell (one of the seven before the candidates); within = no more than 2 paired "
        "MC sd below it; deficit = size-corrected "
        "power minus the best's (positive: above the best single test). Size: at nominal "
        "0.05 over n = " + ", ".join(map(str, data["settings"]["ns"])) + ". Cost: CPU time "
        "of one call as the engine makes it, divided by today's `uniformity_test`, at n = "
        "100 and 400 with n_sim = 4000 and 100 000 (cold: the first call at a new n, null "
        "simulated; warm: later calls; table below).")
    md.append("")
    rows = []
    for t in TESTS:
        z = summ[t]
        r = z["cost_ratio"]
        rows.append([
            t, f"{z['within']} / {z['cells']}",
            f"{z['worst']:+.3f} ± {z['worst_sd']:.3f} ({z['worst_cell']})",
            f"{z['mean_diff']:+.3f}",
            " / ".join(f"{x:.3f}" for x in z["sizes"]) + ("" if z["sizes_ok"] else " !"),
            f"{min(r['cold_s']):.1f}-{max(r['cold_s']):.1f}x" if r else "-",
            f"{min(r['warm_s']):.1f}-{max(r['warm_s']):.1f}x" if r else "-"])
    md.append("Candidates against the best single test:")
    md.append("")
    md += table(rows, ["test", "within MC error of the best", "worst deficit (cell)",
                       "mean deficit", "size at 0.05", "cost cold", "cost warm"])
    md.append("")
    cands = list(CANDIDATES)
    top = max(cands, key=lambda c: (summ[c]["within"], summ[c]["worst"]))
    least = max(cands, key=lambda c: summ[c]["worst"])
    ns = data["settings"]["ns"]

    def versus_today(c: str) -> tuple[int, int, int]:
        cells = [data["power"][d][str(n)][c] for d in DEPARTURES for n in ns]
        better = sum(r["sbc_minus"] < -Z_TIE * r["sbc_minus_sd"] for r in cells)
        worse = sum(r["sbc_minus"] > Z_TIE * r["sbc_minus_sd"] for r in cells)
        return better, len(cells) - better - worse, worse

    vs = {c: versus_today(c) for c in cands}
    meets = [c for c in cands if vs[c][2] == 0
             and 2 * vs[c][0] > summ[c]["cells"] and summ[c]["sizes_ok"]
             and summ[c]["cost_ratio"]
             and max(max(v) for v in summ[c]["cost_ratio"].values()) <= DECISION["cost"]]
    chosen = max(meets, key=lambda c: (summ[c]["within"], summ[c]["worst"])) if meets else None
    md.append(
        f"Most cells within MC error of the best single test: `{top}` ({summ[top]['within']} of "
        f"{summ[top]['cells']}; today's `sbc_gamma` {summ['sbc_gamma']['within']}). Smallest "
        f"worst deficit: `{least}` ({summ[least]['worst']:+.3f} at {summ[least]['worst_cell']}; "
        f"`sbc_gamma` {summ['sbc_gamma']['worst']:+.3f} at {summ['sbc_gamma']['worst_cell']}). "
        "No candidate is within MC error of the best single test in every cell: the best test "
        "changes with the departure. The rule for the default: significantly less powerful "
        "than `sbc_gamma` in no cell and more powerful in most, every size in the 99 % "
        f"interval, cold and warm cost at most {DECISION['cost']:.0f}x `sbc_gamma`'s; among "
        "those, the most cells within MC error of the best. Met by: "
        + (", ".join(f"`{c}`" for c in meets) if meets else "none")
        + (f"; the default is `{chosen}` (`sbc.stats.rank_test`)." if chosen else "."))
    md.append("")
    for c in [chosen] if chosen else []:
        better, tied, worse = vs[c]
        md.append(
            f"`{c}` against today's `sbc_gamma`, cell by cell (paired, 2 MC sd): significantly "
            f"more powerful in {better}, tied in {tied}, significantly less powerful in {worse} "
            f"of the {better + tied + worse} cells.")
        md.append("")
        rows = []
        for d in DEPARTURES:
            for n in ns:
                r = data["power"][d][str(n)]
                if not r[c]["best_within_mc"]:
                    rows.append([d, str(n), f"`{r[c]['best_single']}`",
                                 f"{r[c]['minus_best']:+.3f} ± {r[c]['minus_best_sd']:.3f}"])
        md.append(f"The cells where `{c}` stays more than 2 MC sd below the best single test:")
        md.append("")
        md += table(rows, ["departure", "n", "best single test", f"`{c}` minus the best"])
        md.append("")
        md.append(
            "Why these are accepted: in each of them one single test is tuned to that very "
            "departure (Anderson-Darling to a shift, piet_c to the tails at small n), while the "
            "combination shares its level among three components so that no departure is left "
            "to a weak test; taking that single test as the default would lose far more "
            "elsewhere (its own worst deficit in the table above).")
        md.append("")
    if data.get("cauchy_nominal_size"):
        sz = data["cauchy_nominal_size"]
        md.append(
            "`cauchy_g_ad_pot` with its nominal Cauchy p-value, 0.5 - arctan(T) / pi, instead of "
            "the Monte Carlo one: size " + " / ".join(f"{sz[str(n)]:.3f}" for n in
                                                      data["settings"]["ns"])
            + " at nominal 0.05 (n = " + ", ".join(map(str, data["settings"]["ns"])) + ").")
        md.append("")
    if cost:
        keys = list(cost["sbc_gamma"])
        md.append("Engine cost: CPU seconds of the first call at a new n (cold) and "
                  "milliseconds of a later call (warm), per (n / n_sim):")
        md.append("")
        rows = [[t] + [f"{cost[t][k]['cold_s']:.3f} s / {1e3 * cost[t][k]['warm_s']:.2f} ms"
                       for k in keys] for t in ("sbc_gamma", *CANDIDATES) if t in cost]
        md += table(rows, ["test", *[f"n / n_sim = {k}" for k in keys]])
        md.append("")
    return md


def write_md(data: dict, path: Path) -> None:
    s = data["settings"]
    ns = s["ns"]
    lo, hi = data["size_interval99"]
    md = ["# Power of uniformity tests for SBC ranks", ""]
    md.append(
        f"Settings: n = {', '.join(map(str, ns))} fractional ranks per study; {s['n_null']} "
        f"exact-uniform null studies per n (calibration and size) and {s['n_alt']} studies per "
        f"departure and n, seed {s['seed']}; sbc's test with n_sim = {s['sbc_n_sim']} null "
        f"samples (its fixed seed {s['sbc_null_seed']}), and so sbc's combined test; the other "
        f"candidates with n_sim = {s['cand_n_sim']} (seed {s['cand_seed']}); AD null from "
        f"{s['ad_n_null']} "
        f"uniform samples per n; level {ALPHA}; {N_BOOT} joint bootstrap resamples for the "
        f"corrected-power sd. Command: `{data['command']}`. Machine: {data['machine']}. "
        f"Date: {data['date']}. Runtime {data['runtime_s']:.0f} s wall.")
    md.append("")
    md.append("**Headline** (size-corrected power, best = within 2 MC sd of the highest single "
              "test, paired):")
    for line in headline(data):  # sentences as paragraphs, the per-departure lines as a list
        if not line.startswith("- ") or not md[-1].startswith("- "):
            md.append("")
        md.append(line)
    md.append("")
    md.append(
        "Tests: `sbc_gamma` sbc's ECDF gamma test (`sbc.stats.uniformity_pvalues`); `pot_c`, "
        "`prit_c`, `piet_c` arviz-stats 1.3.3 `array_stats.uniformity_test` (its p-value, the "
        "first of p-value, Shapley values, unsorted Shapley values); `ks` scipy `kstest` "
        "(exact); `ad` Anderson-Darling statistic by formula, Monte Carlo p-value; `chi2_10` "
        "Pearson chi-square on 10 equal bins (asymptotic chi2(9)). Size-corrected: each "
        "test's critical p-value is the 5 % point of its own null p-values (randomised at ties), "
        "so each rejects exactly 5 % of the null studies; its ± is a joint bootstrap sd (binomial "
        "error plus the error of the calibrated level). Nominal: reject when p <= 0.05; ± is the "
        "binomial sd. Candidates for the default test (columns after `chi2_10`, all "
        "calibrated on a Monte Carlo null): see the next section. Generated by "
        "`benchmarks/power.py`; nothing here is typed by hand.")
    md.append("")
    md += default_section(data)

    md.append("## Best test per departure and n (size-corrected, within MC error)")
    md.append("")
    md.append("Every test, single or candidate, within 2 paired MC sd of the best single test.")
    md.append("")
    rows = []
    for d in DEPARTURES:
        row = [d]
        for n in ns:
            r = data["power"][d][str(n)]
            row.append(", ".join(t for t in TESTS if r[t]["best_within_mc"]))
        rows.append(row)
    md += table(rows, ["departure", *[f"n={n}" for n in ns]])
    md.append("")

    md.append("## Null: empirical size at nominal 0.05")
    md.append("")
    md.append(f"Share of the {s['n_null']} null studies with p <= 0.05 ± binomial sd. Binomial 99 % "
              f"interval around 0.05: [{lo:.4f}, {hi:.4f}]; a cell outside it is marked `!`.")
    md.append("")
    rows = []
    for n in ns:
        row = [str(n)]
        for t in TESTS:
            z = data["size"][t][str(n)]
            row.append(fmt(z["size_nominal"], z["size_sd"]) + ("" if z["within99"] else " !"))
        rows.append(row)
    md += table(rows, ["n", *TESTS])
    md.append("")

    for d, (label, _) in DEPARTURES.items():
        md.append(f"## {d}")
        md.append("")
        md.append(label)
        md.append("")
        for kind, key, sd_key, title in (
                ("corrected", "corrected", "corrected_sd", "Size-corrected power (exactly 5 % "
                 "of null studies rejected)"),
                ("nominal", "nominal", "nominal_sd", "Power at nominal 0.05")):
            md.append(f"{title}:")
            md.append("")
            rows = []
            for n in ns:
                r = data["power"][d][str(n)]
                rows.append([str(n)] + [fmt(r[t][key], r[t][sd_key]) for t in TESTS])
            size_key = "size_corrected" if kind == "corrected" else "size_nominal"
            rows.append([f"null size (n={'/'.join(map(str, ns))})"] + [
                " / ".join(f"{data['size'][t][str(n)][size_key]:.3f}" for n in ns)
                for t in TESTS])
            md += table(rows, ["n", *TESTS])
            md.append("")
            if kind == "nominal" and data["size_flagged"]:
                md.append("Size at nominal 0.05 outside the binomial 99 % interval (their "
                          "nominal power is not comparable; read the size-corrected table): " +
                          "; ".join(f"{t} at n = {', '.join(map(str, v))}"
                                    for t, v in data["size_flagged"].items()) + ".")
                md.append("")
    md.append("## CPU microseconds per study")
    md.append("")
    md.append("Process time of each test's p-values over all studies at that n (its null "
              "simulations included; a candidate: its components plus its combination), divided "
              "by the number of studies.")
    md.append("")
    rows = [[str(n)] + [f"{data['cpu_us_per_study'][t][str(n)]:.0f}" for t in TESTS] for n in ns]
    md += table(rows, ["n", *TESTS])
    md.append("")
    path.write_text("\n".join(md))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-null", type=int, default=4000, help="null studies per n")
    ap.add_argument("--n-alt", type=int, default=4000, help="studies per departure and n")
    ap.add_argument("--ns", type=int, nargs="+", default=list(NS))
    ap.add_argument("--sbc-n-sim", type=int, default=4000)
    ap.add_argument("--ad-n-null", type=int, default=20000)
    ap.add_argument("--cand-n-sim", type=int, default=4000,
                    help="Monte Carlo null samples per n of the candidates")
    ap.add_argument("--no-cost", action="store_true", help="skip the engine cost timings")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--render", action="store_true",
                    help="only rewrite OUT/power.md from an existing OUT/power.json")
    args = ap.parse_args(argv)
    if args.render:
        write_md(json.loads((args.out / "power.json").read_text()), args.out / "power.md")
        return 0

    start = time.perf_counter()
    load0 = os.getloadavg()[0]
    timing: dict[str, dict[str, float]] = {t: {} for t in TESTS}
    size, power = {t: {} for t in TESTS}, {d: {} for d in DEPARTURES}
    cauchy_nominal: dict[str, float] = {}
    lo, hi = size_interval(args.n_null)
    for n in args.ns:
        t_n = time.perf_counter()
        tm: dict[str, float] = {}
        t_ad = time.process_time()
        ad0 = ad_null(n, args.ad_n_null)
        tm["ad"] = time.process_time() - t_ad
        cand = CandidateNulls(n, args.cand_n_sim, timing=tm)
        rng = np.random.default_rng(np.random.SeedSequence([SEED, n, 0]))
        extra: dict[str, np.ndarray] = {}
        p0 = pvalues(_clip(rng.uniform(size=(args.n_null, n))), ad0, args.sbc_n_sim, tm, cand,
                     extra)
        cauchy_nominal[str(n)] = float(np.mean(extra["cauchy_g_ad_pot"] <= ALPHA))
        n_rows = args.n_null
        for t in TESTS:
            c, w = calibrate(p0[t])
            z = float(np.mean(p0[t] <= ALPHA))
            size[t][str(n)] = {"size_nominal": z, "size_sd": binom_sd(z, args.n_null),
                               "within99": bool(lo <= z <= hi), "crit_p": c, "crit_weight": w,
                               "size_corrected": float(np.mean(reject(p0[t], c, w)))}
        for k, (d, (_, gen)) in enumerate(DEPARTURES.items(), start=1):
            rng = np.random.default_rng(np.random.SeedSequence([SEED, n, k]))
            p1 = pvalues(gen(rng, args.n_alt, n), ad0, args.sbc_n_sim, tm, cand)
            n_rows += args.n_alt
            boot_rng = np.random.default_rng(np.random.SeedSequence([BOOT_SEED, n, k]))
            power[d][str(n)] = compare(p0, p1, boot_rng)
        for t in TESTS:
            kind, comps = CANDIDATES.get(t, ("", ()))
            own = tm[t] + (sum(tm["comp:" + k] for k in comps) if kind != "sbc" else 0.0)
            timing[t][str(n)] = 1e6 * own / n_rows
        print(f"n={n}: {time.perf_counter() - t_n:.1f} s", flush=True)

    cost = {}
    if not args.no_cost:
        t_cost = time.perf_counter()
        cost = engine_cost()
        print(f"engine cost: {time.perf_counter() - t_cost:.1f} s", flush=True)
    runtime = time.perf_counter() - start
    flagged = {t: [int(n) for n, z in size[t].items() if not z["within99"]] for t in TESTS}
    flagged = {t: v for t, v in flagged.items() if v}
    cmd = " ".join([".venv/bin/python", "benchmarks/power.py", *(argv if argv is not None
                                                                 else sys.argv[1:])])
    data = {
        "settings": {"ns": args.ns, "n_null": args.n_null, "n_alt": args.n_alt,
                     "sbc_n_sim": args.sbc_n_sim, "sbc_null_seed": seeding.NULL_SEED,
                     "ad_n_null": args.ad_n_null, "alpha": ALPHA, "seed": SEED,
                     "n_boot": N_BOOT, "z_tie": Z_TIE, "cand_n_sim": args.cand_n_sim,
                     "cand_seed": CAND_SEED},
        "tests": list(TESTS),
        "reference_tests": list(REF_TESTS),
        "candidates": {c: {"combine": k, "components": list(v)}
                       for c, (k, v) in CANDIDATES.items()},
        "departures": {d: label for d, (label, _) in DEPARTURES.items()},
        "command": cmd,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared (load "
                   f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end)",
        "date": datetime.date.today().isoformat(),
        "runtime_s": runtime,
        "size_interval99": [lo, hi],
        "size": size,
        "power": power,
        "cpu_us_per_study": timing,
        "size_flagged": flagged,
        "cauchy_nominal_size": cauchy_nominal,
        "engine_cost": cost,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "power.json").write_text(json.dumps(data, indent=1))
    write_md(data, args.out / "power.md")
    print(f"wrote {args.out / 'power.md'} and power.json in {runtime:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
