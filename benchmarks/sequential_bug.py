"""A weak known bug, sequentially and by the fixed-n schedule, at equal false-alarm rates.

The validation suite (RESULTS.md, "Sequential studies: known bugs") compares the fits a
sequential study needs to detect each known bug with the n at which the fixed-n schedule
first fails, over 3 to 8 study seeds.  Two things make that comparison weak for the weakest
bug (the intercept prior's mean +1 instead of -1, 10x3x3, nutpie): 3 and 8 seeds give a
median with a wide spread, and the schedule (25, 50, 100, 200, 400 fits, each look at the
full alpha, Holm over the groups) is not a level-alpha procedure: it looks five times at
alpha, so it "detects" calibrated models more often than alpha.

This benchmark measures both procedures on the same rank sets, many times over: it fits the
bug and its correct twin ``POOL`` times each with the production pipeline
(``check_calibration`` at a fixed n, nutpie at the default settings, fractional ranks as
every verdict uses them), then draws ``STUDIES`` studies of ``LENGTH`` fits from each pool
(without replacement within a study) and runs on every study:

- the fixed-n schedule as the suite runs it (a detection at n counts only where a twin
  study, drawn independently, passes at the same n), at the per-look level 0.05;
- the same schedule with its per-look level lowered until its family-wise false-alarm rate
  on the twin's studies is 0.05 (a valid procedure, as the sequential study is);
- the sequential study of :mod:`sbc.stopping` (e-processes after every fit, interim looks,
  the look at the pass point), with the production thresholds and pass point, checked
  against :func:`sbc.stopping.decide_cell` on the first studies.

The twin's studies give each procedure's family-wise false-alarm rate on real ranks.

    .venv/bin/python benchmarks/sequential_bug.py   # writes sequential_bug.{json,md}

The fits (``POOL`` of each model, two Dask workers, about 8 a second on 2 cores) are stored
under ``--cache`` (default benchmarks/_work/sequential_bug) and reused by a rerun; the
recorded run took 13 minutes with 2,000 of its 8,000 fits already stored.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

import sbc
import sbc.stats
from sbc import sequential as sq
from sbc import stopping
from sbc.calibration import with_fractional_ranks
from sbc.testing import check_calibration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUG = ROOT / "tests" / "validation" / "models" / "screen_intercept_prior_mean.py"
TWIN = ROOT / "models" / "crispr_screen.py"
DESIGN = (10, 3, 3)
FIT_SEEDS = (101, 102, 103, 104)  # study seeds none of the suite's runs of this bug uses
PER_SEED = 1000  # fits of each model per seed
POOL = PER_SEED * len(FIT_SEEDS)
LENGTH = 400  # fits per resampled study: the schedule's last n (the suite's max_sims)
STUDIES = 1000  # resampled studies of each model (Monte Carlo sd of a share <= 0.016)
SCHEDULE = (25, 50, 100, 200, 400)
ALPHA = 0.05
RESAMPLE_SEED = 20261206
CHECKED = 40  # studies whose sequential outcome is checked against stopping.decide_cell


def pool(which: str, cache: Path, workers: int) -> tuple[dict[str, np.ndarray], dict]:
    """(group -> fractional ranks (fits, elements) of the bug's or the twin's fits, PER_SEED
    from each of FIT_SEEDS, fits that lack a scalar left out; seed -> group -> mean probit
    rank of that seed's fits)."""
    model = BUG if which == "bug" else TWIN
    parts = []
    for seed in FIT_SEEDS:
        result = check_calibration(model, DESIGN, simulate_model=TWIN, n_sims=PER_SEED,
                                   seed=seed, sampler="nutpie", out=cache / f"{which}-{seed}",
                                   workers=workers, report=False, verbose=True)
        reps, params = sbc.open(result.out).tables()
        reps, params = reps[reps["rep"] < PER_SEED], params[params["rep"] < PER_SEED]
        ok = np.sort(reps.loc[reps["status"] == "ok", "rep"].to_numpy(int))
        groups = stopping._group_ranks(with_fractional_ranks(params, reps), ok)
        complete = np.all([~np.isnan(v).any(axis=1) for v in groups.values()], axis=0)
        parts.append({g: v[complete] for g, v in groups.items()})
    means = {seed: mean_probit(p) for seed, p in zip(FIT_SEEDS, parts)}
    return {g: np.concatenate([p[g] for p in parts]) for g in parts[0]}, means


def mean_probit(groups: dict) -> dict:
    """group -> mean of Phi^-1(u) over its fits and elements (0 when calibrated; negative:
    ranks low, the posterior overestimates)."""
    return {g: float(np.mean(norm.ppf(np.clip(v, 1e-9, 1 - 1e-9)))) for g, v in groups.items()}


def pool_test(groups: dict) -> dict:
    """The fixed-n test on a whole pool: group -> Holm p (how far the pool itself is from
    uniform; studies drawn from one pool share its deviation)."""
    pooled = [sbc.stats.pooled_pvalue(sq.look_pvalues(v.T, 1e-4)) for v in groups.values()]
    return dict(zip(groups, map(float, sbc.stats.holm(np.asarray(pooled)))))


def draw_studies(groups: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """group -> ranks (STUDIES, LENGTH, elements): each study LENGTH distinct pool fits."""
    size = len(next(iter(groups.values())))
    idx = np.stack([rng.choice(size, LENGTH, replace=False) for _ in range(STUDIES)])
    return {g: v[idx] for g, v in groups.items()}


def family_minp(studies: dict, n: int, level: float) -> np.ndarray:
    """Per study: the smallest Holm-adjusted p-value of the fixed-n test on the first n fits,
    groups pooled by Bonferroni over their elements (:func:`sbc.stats.pooled_pvalue`), Holm
    over the groups (its first step: K x the smallest group p).  ``level``: the smallest
    level it is held against (sets the null simulations, as in production)."""
    k = len(studies)
    widest = max(v.shape[2] for v in studies.values())
    pooled = []
    for v in studies.values():
        rows = np.moveaxis(v[:, :n, :], 2, 1).reshape(-1, n)  # (studies x elements, n)
        p = sq.look_pvalues(rows, level / (k * widest)).reshape(STUDIES, v.shape[2])
        pooled.append(np.minimum(1.0, v.shape[2] * p.min(axis=1)))
    return np.minimum(1.0, k * np.min(pooled, axis=0))


def crossings(studies: dict, threshold: float, stop: int) -> np.ndarray:
    """Per study: the first fit at which some group's e-value reaches ``threshold``."""
    out = np.full(STUDIES, np.inf)
    log_t = math.log(threshold)
    for v in studies.values():
        for s in range(STUDIES):
            hit = np.flatnonzero(sq.log_group_eprocess(v[s, :stop]) >= log_t)
            if len(hit):
                out[s] = min(out[s], hit[0] + 1)
    return out


def schedule_detection(p: dict, level: float, twin_p: dict | None = None) -> np.ndarray:
    """Per study: the first n of SCHEDULE at which the family rejects at ``level`` (and, given
    ``twin_p``, the paired twin study does not); inf: none."""
    out = np.full(STUDIES, np.inf)
    for n in SCHEDULE:
        hit = p[n] <= level
        if twin_p is not None:
            hit &= twin_p[n] > level
        out = np.where(np.isinf(out) & hit, n, out)
    return out


def sequential_detection(studies: dict, p: dict, point: int) -> np.ndarray:
    """Per study: the fits at which the production sequential study fails (inf: it passes
    at the pass point)."""
    k = len(studies)
    out = crossings(studies, k / (sq.EARLY * ALPHA), point)
    for n in sq.interim_looks(point):
        out = np.where((out > n) & (p[n] <= sq.LOOK_SHARE * ALPHA), n, out)
    return np.where((out > point) & (p[point] <= sq.FINAL * ALPHA), point, out)


def check_against_production(studies: dict, found: np.ndarray, point: int) -> int:
    """The first CHECKED studies through stopping.decide_cell: the same stop wherever the
    study fails before its pass point (the look there is calibrate's, not decide_cell's)."""
    settings = stopping.Sequential(max_simulations=LENGTH, alpha=ALPHA)
    ids = np.arange(LENGTH)
    for s in range(CHECKED):
        groups = {g: v[s] for g, v in studies.items()}
        o = stopping.decide_cell("m", "d", ids, LENGTH, groups, ids, settings, 1)
        mine = found[s] if found[s] < point else None
        theirs = o.fits if o.status == "fail" else None
        if mine != theirs:
            raise AssertionError(f"study {s}: benchmark stops at {mine}, decide_cell at "
                                 f"{theirs} ({o.status})")
    return CHECKED


def summary(x: np.ndarray) -> dict:
    found = np.isfinite(x)
    return {"median": float(np.median(x)) if found.mean() >= 0.5 else None,
            "quartiles": [float(q) for q in np.quantile(x, [0.25, 0.75])],
            "by_50": float(np.mean(x <= 50)), "by_100": float(np.mean(x <= 100)),
            "by_200": float(np.mean(x <= 200)), "detected": float(found.mean())}


def matched_level(twin_p: dict, rate: float) -> float:
    """The per-look level at which the schedule's family-wise false-alarm rate on the twin's
    studies is ``rate``: the rate-quantile of each study's smallest p over the looks."""
    smallest = np.min([twin_p[n] for n in SCHEDULE], axis=0)
    return float(np.quantile(smallest, rate, method="inverted_cdf"))


def run(cache: Path, workers: int) -> dict:
    rng = np.random.default_rng(RESAMPLE_SEED)
    (bug_pool, by_seed), (twin_pool, _) = pool("bug", cache, workers), pool("twin", cache, workers)
    tested = {"bug": pool_test(bug_pool), "twin": pool_test(twin_pool)}
    bug, twin = draw_studies(bug_pool, rng), draw_studies(twin_pool, rng)
    k = len(bug)
    point = sq.pass_point(k, ALPHA, 0.8, 0.5, 0.2, LENGTH).n
    smallest = sq.LOOK_SHARE * ALPHA
    looks = sorted(set(SCHEDULE) | {point})
    p_bug = {n: family_minp(bug, n, smallest) for n in looks}
    p_twin = {n: family_minp(twin, n, smallest) for n in looks}
    level = matched_level(p_twin, ALPHA)
    seq_bug = sequential_detection(bug, p_bug, point)
    seq_twin = sequential_detection(twin, p_twin, point)
    checked = check_against_production(bug, seq_bug, point) + \
        check_against_production(twin, seq_twin, point)
    z_bug = mean_probit(bug_pool)
    rows = {
        "schedule at 0.05 per look (the suite's)": {
            "level": ALPHA, "bug": summary(schedule_detection(p_bug, ALPHA, p_twin)),
            "false_alarm": float(np.mean(np.isfinite(schedule_detection(p_twin, ALPHA))))},
        "schedule at family-wise 0.05": {
            "level": level, "bug": summary(schedule_detection(p_bug, level, p_twin)),
            "false_alarm": float(np.mean(np.isfinite(schedule_detection(p_twin, level))))},
        "sequential (production)": {
            "level": None, "bug": summary(seq_bug),
            "false_alarm": float(np.mean(np.isfinite(seq_twin)))},
    }
    # a level-alpha study that looks once, at n, with the whole alpha: what spending all of
    # it on one n buys (a reference for the share detected by n, not a bound)
    single = {n: {"bug": float(np.mean(p_bug[n] <= ALPHA)),
                  "false_alarm": float(np.mean(p_twin[n] <= ALPHA))} for n in looks}
    return {"pass_point": point, "groups": k, "pool": POOL, "studies": STUDIES,
            "length": LENGTH, "checked_against_decide_cell": checked, "rows": rows,
            "single_look": single, "pool_test": tested, "mean_probit_rank": z_bug,
            "intercept_by_seed": {s: m["Intercept"] for s, m in by_seed.items()}}


def markdown(res: dict) -> str:
    sd = math.sqrt(0.25 / res["studies"])
    lines = [
        f"# A weak known bug, sequentially and by the fixed-n schedule ({res['when']})", "",
        f"The intercept prior's mean +1 instead of -1 (10x3x3, nutpie): {res['pool']:,} fits of "
        f"the bug and of its correct twin, {res['studies']:,} studies of {res['length']} fits "
        "drawn from each (without replacement within a study). A schedule detection counts "
        "only where the paired twin study passes at the same n. `false alarm`: the share of "
        "the twin's studies the procedure fails (its family-wise error on real ranks). The "
        f"sequential study's pass point is {res['pass_point']} fits ({res['groups']} groups); "
        f"its stops before the pass point agree with `sbc.stopping.decide_cell` on the first "
        f"{res['checked_against_decide_cell'] // 2} studies of each model, and its look there "
        f"is the same fixed-n test at {sq.FINAL:.0%} of alpha. "
        f"Monte Carlo sd of a share at most {sd:.3f}; {res['seconds'] / 60:.0f} min.", "",
        "| procedure | per-look level | false alarm | median fits to detection | quartiles "
        "| by 50 | by 100 | by 200 | detected |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["rows"].items():
        b = r["bug"]
        med = "-" if b["median"] is None else f"{b['median']:.0f}"
        q = " - ".join("> 400" if math.isinf(v) else f"{v:.0f}" for v in b["quartiles"])
        lvl = "-" if r["level"] is None else f"{r['level']:.4f}"
        lines.append(f"| {name} | {lvl} | {r['false_alarm']:.3f} | {med} | {q} | "
                     f"{b['by_50']:.3f} | {b['by_100']:.3f} | {b['by_200']:.3f} | "
                     f"{b['detected']:.3f} |")
    lines += ["", "A level-0.05 study that looks once, at n fits, with the whole alpha (what "
              "spending all of it on one n buys; a reference for the shares detected by n "
              "above):", "", "| n | bug detected | twin failed |", "|---|---|---|"]
    for n, r in res["single_look"].items():
        lines.append(f"| {n} | {r['bug']:.3f} | {r['false_alarm']:.3f} |")
    lines += ["", "Mean probit rank of the bug's fits, by group (0 when calibrated; negative: "
              "the posterior overestimates): " + ", ".join(
                  f"{g} {z:+.3f}" for g, z in res["mean_probit_rank"].items()) +
              "; the Intercept's by fit seed: " + ", ".join(
                  f"{s} {z:+.3f}" for s, z in res["intercept_by_seed"].items()) + ".", "",
              "Studies drawn from one pool share its deviation from uniform, which a binomial "
              "sd does not include: the twin's pool itself, tested whole (Holm p by group): " +
              ", ".join(f"{g} {p:.2f}" for g, p in res["pool_test"]["twin"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=HERE / "_work" / "sequential_bug")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    start = time.monotonic()
    res = {"when": time.strftime("%Y-%m-%d %H:%M"), **run(args.cache, args.workers)}
    res["seconds"] = time.monotonic() - start
    (HERE / "sequential_bug.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (HERE / "sequential_bug.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
