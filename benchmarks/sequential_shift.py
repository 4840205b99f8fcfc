"""Sequential studies against the fixed-n schedule on weak shifts, on the same rank sets.

The validation suite compares the fits a sequential study needs to detect a bug with the
n at which the fixed-n schedule (25, 50, 100, 200, 400 fits, each look at the full alpha,
Holm over the groups) first fails.  That schedule is not a valid sequential procedure: it
looks five times at the full alpha, so it also "detects" calibrated models more often
than alpha.  This benchmark puts both on the same synthetic rank sets, a family of 8
single-scalar groups (the parameter groups of ``crispr_screen``) whose first group's
posterior mean is off by ``delta`` posterior sds (ranks Phi(Z - delta)), the others
calibrated, and states for each delta: the median fits to detection, the share detected
by 100 fits and at all (within 400 for the schedule, by the pass point for the
sequential study), and, at delta = 0, each procedure's family-wise false-alarm rate.

The sequential study is the production design of :mod:`sbc.sequential` (e-processes at
2 % of alpha after every fit, interim looks at 25, 50, 100 and 200 fits at 5 % each,
the rest at the pass point for the default stated departures), with its production test
(:func:`sbc.sequential.look_pvalues`).

    .venv/bin/python benchmarks/sequential_shift.py   # writes sequential_shift.json/.md
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from sbc import sequential as sq
from sbc import stats

HERE = Path(__file__).resolve().parent
STUDIES = 400  # per delta: Monte Carlo sd of a share <= 0.025
GROUPS = 8
ALPHA = 0.05
SCHEDULE = (25, 50, 100, 200, 400)
DELTAS = (0.0, 0.2, 0.3, 0.45, 0.6)
SEED = 20261206


def holm_min(p: np.ndarray) -> np.ndarray:
    """Each study's smallest Holm-adjusted p-value over its groups (p: studies x groups)."""
    return np.array([stats.holm(row).min() for row in p])


def summary(x: np.ndarray) -> dict:
    """Fits to detection per study (inf: none) -> the median (None when fewer than half
    detect), the share detected within 100 fits and the share detected at all."""
    found = np.isfinite(x)
    return {"median": float(np.median(x)) if found.mean() >= 0.5 else None,
            "by_100": float(np.mean(x <= 100)), "detected": float(found.mean())}


def detection(delta: float) -> dict:
    rng = np.random.default_rng([SEED, round(delta * 1000)])
    z = rng.standard_normal((STUDIES, GROUPS, SCHEDULE[-1]))
    z[:, 0] -= delta
    u = norm.cdf(z)
    p_at = {}

    def p_min(n: int) -> np.ndarray:
        if n not in p_at:
            p = sq.look_pvalues(u[:, :, :n].reshape(STUDIES * GROUPS, n), 1e-4)
            p_at[n] = holm_min(p.reshape(STUDIES, GROUPS))
        return p_at[n]

    fixed = np.full(STUDIES, np.inf)
    for n in SCHEDULE:
        fixed = np.where(np.isinf(fixed) & (p_min(n) <= ALPHA), n, fixed)
    point = sq.pass_point(GROUPS, ALPHA, 0.8, 0.5, 0.2, 1000).n
    seq = np.full(STUDIES, np.inf)
    log_t = math.log(GROUPS / (sq.EARLY * ALPHA))
    for s in range(STUDIES):
        for g in range(GROUPS):
            hit = np.flatnonzero(sq.log_eprocess(u[s, g, :point]) >= log_t)
            if len(hit):
                seq[s] = min(seq[s], hit[0] + 1)
    for n in sq.interim_looks(point):
        seq = np.where((seq > n) & (p_min(n) <= sq.LOOK_SHARE * ALPHA), n, seq)
    seq = np.where((seq > point) & (p_min(point) <= sq.FINAL * ALPHA), point, seq)

    return {"delta": delta, "pass_point": point, "fixed": summary(fixed),
            "sequential": summary(seq)}


def markdown(res: dict) -> str:
    sd = math.sqrt(0.25 / STUDIES)
    lines = [f"# Weak shifts: sequential study against the fixed-n schedule ({res['when']})", "",
             f"{STUDIES} synthetic studies per shift, {GROUPS} single-scalar groups, the first "
             "shifted by delta posterior sds; the same rank sets for both procedures. "
             "`median`: fits to detection (`-` when fewer than half detect); `by 100`: "
             "share detected within 100 fits; `detected`: within 400 fits (schedule) or by "
             f"the pass point ({res['rows'][0]['pass_point']} fits, sequential). Monte Carlo "
             f"sd of a share at most {sd:.3f}. At delta 0 `detected` is the family-wise "
             "false-alarm rate.", "",
             "| delta | schedule median | schedule by 100 | schedule detected | sequential "
             "median | sequential by 100 | sequential detected |", "|---|---|---|---|---|---|---|"]

    def med(v):
        return "-" if v is None else f"{v:.0f}"

    for r in res["rows"]:
        f, s = r["fixed"], r["sequential"]
        lines.append(f"| {r['delta']:.2f} | {med(f['median'])} | {f['by_100']:.3f} | "
                     f"{f['detected']:.3f} | {med(s['median'])} | {s['by_100']:.3f} | "
                     f"{s['detected']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    start = time.monotonic()
    res = {"when": time.strftime("%Y-%m-%d %H:%M"), "studies": STUDIES, "groups": GROUPS,
           "rows": [detection(d) for d in DELTAS]}
    res["seconds"] = time.monotonic() - start
    (HERE / "sequential_shift.json").write_text(json.dumps(res, indent=2) + "\n")
    (HERE / "sequential_shift.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
