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

Every test is calibrated on the same ``--n-null`` exact-uniform null studies per n: the size at
nominal 0.05 is the share of null p-values <= 0.05; the size-corrected level is the 5 % point
of the null p-values, with a randomised decision at that point when p-values tie, so every test
rejects exactly 5 % of the null studies.  Power (share of ``--n-alt`` departure studies
rejected) is reported at nominal 0.05 (binomial sd) and at the size-corrected level (sd from a
joint bootstrap of the null and departure studies: binomial error plus the error of the
calibrated level).  A test is "best within MC error" when its size-corrected power is within
2 bootstrap sd of the highest (paired: the sd of the difference).

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
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sbc import seeding  # noqa: E402
from sbc.stats import uniformity_pvalues  # noqa: E402

TESTS = ("sbc_gamma", "pot_c", "prit_c", "piet_c", "ks", "ad", "chi2_10")
NS = (25, 50, 100, 200, 400)
ALPHA = 0.05
SEED = 20260601  # this study's draws; sbc's own null uses seeding.NULL_SEED (a different stream)
AD_SEED = 20260602
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


def pvalues(u: np.ndarray, ad_null_sorted: np.ndarray, sbc_n_sim: int,
            timing: dict) -> dict[str, np.ndarray]:
    """p-values of every test for every row of u (m, n); seconds spent added to timing."""
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
    joint-bootstrap sd of the corrected power and of its difference to the best test."""
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
    best = max(TESTS, key=lambda t: res[t]["corrected"])
    for t in TESTS:
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
            if sum(power[d][str(n)][t]["best_within_mc"] for t in TESTS) == 1]
    lose = [(d, n) for d, n in cells if (d, n) not in tie]
    lines.append(
        f"sbc's gamma test is within MC error of the best test in {len(tie)} of {len(cells)} "
        f"departure x n cells (the single best test in {len(sole)} of them) and significantly "
        f"behind the best in {len(lose)}.")
    if lose:
        worst = sorted(lose, key=lambda c: power[c[0]][str(c[1])]["sbc_gamma"]["minus_best"])[:4]
        parts = []
        for d, n in worst:
            r = power[d][str(n)]
            best = max(TESTS, key=lambda t: r[t]["corrected"])
            parts.append(f"{d} n={n}: {r['sbc_gamma']['corrected']:.3f} vs {best} "
                         f"{r[best]['corrected']:.3f} (difference "
                         f"{r['sbc_gamma']['minus_best']:+.3f} ± "
                         f"{r['sbc_gamma']['minus_best_sd']:.3f})")
        lines.append("Largest deficits (size-corrected power): " + "; ".join(parts) + ".")
    for d in DEPARTURES:
        bits = []
        for n in data["settings"]["ns"]:
            r = power[d][str(n)]
            winners = [t for t in TESTS if r[t]["best_within_mc"]]
            bits.append(f"n={n}: {', '.join(winners)} (sbc {r['sbc_gamma']['minus_best']:+.3f} "
                        f"± {r['sbc_gamma']['minus_best_sd']:.3f})")
        lines.append(f"- {d}: best " + "; ".join(bits))
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


def write_md(data: dict, path: Path) -> None:
    s = data["settings"]
    ns = s["ns"]
    lo, hi = data["size_interval99"]
    md = ["# Power of uniformity tests for SBC ranks", ""]
    md.append(
        f"Settings: n = {', '.join(map(str, ns))} fractional ranks per study; {s['n_null']} "
        f"exact-uniform null studies per n (calibration and size) and {s['n_alt']} studies per "
        f"departure and n, seed {s['seed']}; sbc's test with n_sim = {s['sbc_n_sim']} null "
        f"samples (its fixed seed {s['sbc_null_seed']}); AD null from {s['ad_n_null']} "
        f"uniform samples per n; level {ALPHA}; {N_BOOT} joint bootstrap resamples for the "
        f"corrected-power sd. Command: `{data['command']}`. Machine: {data['machine']}. "
        f"Date: {data['date']}. Runtime {data['runtime_s']:.0f} s wall.")
    md.append("")
    md.append("**Headline** (size-corrected power, best = within 2 MC sd of the highest, paired):")
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
        "binomial sd. Generated by `benchmarks/power.py`; nothing here is typed by hand.")
    md.append("")

    md.append("## Best test per departure and n (size-corrected, within MC error)")
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
    md.append("Process time of each test's p-values over all studies at that n (sbc's and AD's "
              "null simulations included), divided by the number of studies.")
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
    lo, hi = size_interval(args.n_null)
    for n in args.ns:
        t_n = time.perf_counter()
        tm: dict[str, float] = {}
        t_ad = time.process_time()
        ad0 = ad_null(n, args.ad_n_null)
        tm["ad"] = time.process_time() - t_ad
        rng = np.random.default_rng(np.random.SeedSequence([SEED, n, 0]))
        p0 = pvalues(_clip(rng.uniform(size=(args.n_null, n))), ad0, args.sbc_n_sim, tm)
        n_rows = args.n_null
        for t in TESTS:
            c, w = calibrate(p0[t])
            z = float(np.mean(p0[t] <= ALPHA))
            size[t][str(n)] = {"size_nominal": z, "size_sd": binom_sd(z, args.n_null),
                               "within99": bool(lo <= z <= hi), "crit_p": c, "crit_weight": w,
                               "size_corrected": float(np.mean(reject(p0[t], c, w)))}
        for k, (d, (_, gen)) in enumerate(DEPARTURES.items(), start=1):
            rng = np.random.default_rng(np.random.SeedSequence([SEED, n, k]))
            p1 = pvalues(gen(rng, args.n_alt, n), ad0, args.sbc_n_sim, tm)
            n_rows += args.n_alt
            boot_rng = np.random.default_rng(np.random.SeedSequence([BOOT_SEED, n, k]))
            power[d][str(n)] = compare(p0, p1, boot_rng)
        for t in TESTS:
            timing[t][str(n)] = 1e6 * tm[t] / n_rows
        print(f"n={n}: {time.perf_counter() - t_n:.1f} s", flush=True)

    runtime = time.perf_counter() - start
    flagged = {t: [int(n) for n, z in size[t].items() if not z["within99"]] for t in TESTS}
    flagged = {t: v for t, v in flagged.items() if v}
    cmd = " ".join([".venv/bin/python", "benchmarks/power.py", *(argv if argv is not None
                                                                 else sys.argv[1:])])
    data = {
        "settings": {"ns": args.ns, "n_null": args.n_null, "n_alt": args.n_alt,
                     "sbc_n_sim": args.sbc_n_sim, "sbc_null_seed": seeding.NULL_SEED,
                     "ad_n_null": args.ad_n_null, "alpha": ALPHA, "seed": SEED,
                     "n_boot": N_BOOT, "z_tie": Z_TIE},
        "tests": list(TESTS),
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
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "power.json").write_text(json.dumps(data, indent=1))
    write_md(data, args.out / "power.md")
    print(f"wrote {args.out / 'power.md'} and power.json in {runtime:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
