"""Other splits of alpha for the sequential study, on the same synthetic weak shifts.

:mod:`sbc.sequential` splits a cell's alpha in advance: 2 % to the e-processes watched after
every fit, 5 % to each interim look at 25, 50, 100 and 200 fits, 78 % to the look at the
pass point.  Would another split detect weak departures in fewer fits?  Each split below is
run as a whole procedure, with its own pass point (the fewest fits at which it detects a
0.5-sd shift and a 20 % too narrow posterior of one scalar with probability 0.8, as
:func:`sbc.sequential.pass_point` finds it, on the same departure draws), on the rank sets
of ``sequential_shift.py``: 8 single-scalar groups, the first shifted by delta posterior
sds, the others calibrated.  Every split keeps the family-wise error at most alpha by the
union bound; delta 0 measures it.

    .venv/bin/python benchmarks/sequential_split.py   # writes sequential_split.{json,md}
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
from sequential_shift import summary  # the same columns as sequential_shift.md

HERE = Path(__file__).resolve().parent
ALPHA = 0.05
GROUPS = 8
STUDIES = 400  # per delta: Monte Carlo sd of a share <= 0.025
LIMIT = 600  # longest study and largest pass point searched
DELTAS = (0.0, 0.2, 0.3, 0.45, 0.6)
SEED = 20261207
# name -> (e-process share, {interim look n: share}, share of the look at the pass point)
SPLITS = {
    "production": (sq.EARLY, {n: sq.LOOK_SHARE for n in sq.LOOKS}, sq.FINAL),
    "later looks heavier": (0.02, {25: 0.02, 50: 0.04, 100: 0.10, 200: 0.10}, 0.72),
    "a fifth at 100": (0.02, {25: 0.02, 50: 0.04, 100: 0.20}, 0.72),
    "10 % per look": (0.02, {25: 0.10, 50: 0.10, 100: 0.10, 200: 0.10}, 0.58),
    "looks only (no e-process)": (0.0, {25: 0.2, 50: 0.2, 100: 0.2, 200: 0.2}, 0.2),
}


def running_max_log_e(u: np.ndarray) -> np.ndarray:
    """(studies, n) running maximum over fits and groups of the log e-value; ``u``:
    (studies, groups, n) or (studies, n) for one group."""
    u = u[:, None, :] if u.ndim == 2 else u
    out = np.full((u.shape[0], u.shape[2]), -np.inf)
    for s in range(u.shape[0]):
        for g in range(u.shape[1]):
            out[s] = np.maximum(out[s], sq.log_eprocess(u[s, g]))
    return np.maximum.accumulate(out, axis=1)


def first_crossing(log_max: np.ndarray, share: float, stop: int) -> np.ndarray:
    """Per study: the first fit <= stop at which the e-value crosses GROUPS / (share alpha)."""
    if share == 0:
        return np.full(len(log_max), np.inf)
    hit = log_max[:, :stop] >= math.log(GROUPS / (share * ALPHA))
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1.0, np.inf)


class Ranks:
    """Rank sets ``u`` (studies, groups, n) or (studies, n) for one group, and where the
    fixed-n test rejects them (computed once per n and level)."""

    def __init__(self, u: np.ndarray):
        self.u = u if u.ndim == 3 else u[:, None, :]
        self.log_max = running_max_log_e(self.u)
        self._min_p: dict[tuple[int, float], np.ndarray] = {}

    def rejects(self, n: int, share: float) -> np.ndarray:
        """Per study: whether the fixed-n test on the first n fits rejects at ``share`` of
        alpha, Holm over GROUPS groups (its first step: the smallest group p at most share x
        alpha / GROUPS), with production's resolution (:func:`sbc.sequential.look_pvalues`)."""
        level = share * ALPHA / GROUPS
        if (n, level) not in self._min_p:
            s, g, _ = self.u.shape
            p = sq.look_pvalues(self.u[:, :, :n].reshape(s * g, n), level)
            self._min_p[(n, level)] = p.reshape(s, g).min(axis=1)
        return self._min_p[(n, level)] <= level

    def detection(self, split: tuple, stop: int) -> np.ndarray:
        """Per study: the fits at which the split's procedure with pass point ``stop``
        rejects (inf: it passes there)."""
        early, looks, final = split
        out = first_crossing(self.log_max, early, stop)
        for n, share in sorted(looks.items()):
            if n < stop:
                out = np.where((out > n) & self.rejects(n, share), n, out)
        return np.where((out > stop) & self.rejects(stop, final), stop, out)


def pass_point(split: tuple, departures: dict[str, Ranks]) -> int | None:
    """The fewest fits at which the split detects each departure of one scalar with
    probability 0.8 (bisection, as :func:`sbc.sequential.pass_point`)."""
    def ok(n: int) -> bool:
        return all(np.mean(np.isfinite(r.detection(split, n))) >= 0.8
                   for r in departures.values())

    lo, hi = sq.SMALLEST, LIMIT
    if not ok(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def family(delta: float) -> Ranks:
    z = np.random.default_rng([SEED, round(delta * 1000)]).standard_normal(
        (STUDIES, GROUPS, LIMIT))
    z[:, 0] -= delta
    return Ranks(norm.cdf(z))


def run() -> dict:
    departures = {k: Ranks(sq.departure_ranks(k, size, LIMIT))
                  for k, size in (("shift", 0.5), ("narrow", 0.2))}
    families = {d: family(d) for d in DELTAS}
    rows = []
    for name, split in SPLITS.items():
        if not math.isclose(split[0] + sum(split[1].values()) + split[2], 1.0):
            raise ValueError(f"split {name!r} does not spend exactly alpha")
        point = pass_point(split, departures)
        rows.append({"split": name, "early": split[0], "looks": split[1], "final": split[2],
                     "pass_point": point,
                     "deltas": {d: summary(families[d].detection(split, point))
                                for d in DELTAS}})
    return {"studies": STUDIES, "groups": GROUPS, "rows": rows}


def markdown(res: dict) -> str:
    sd = math.sqrt(0.25 / res["studies"])
    deltas = list(res["rows"][0]["deltas"])
    head = " | ".join(f"delta {d}: median, by 100, detected" for d in deltas[1:])
    lines = [f"# Other splits of alpha for the sequential study ({res['when']})", "",
             f"{res['studies']} synthetic studies per delta, {res['groups']} single-scalar "
             "groups, the first shifted by delta posterior sds; every split on the same rank "
             "sets, each with its own pass point (power 0.8 against a 0.5-sd shift and a 20 % "
             "too narrow posterior). `median`: fits to detection (`-` when fewer than half "
             "detect); `by 100`: share detected within 100 fits; `detected`: by the pass "
             "point; `false alarm`: detected at delta 0. Monte Carlo sd of a share at most "
             f"{sd:.3f}; {res['seconds']:.0f} s.", "",
             f"| split (e-process / looks / pass point) | pass point | false alarm | {head} |",
             "|---|---|---|" + "---|" * (len(deltas) - 1)]
    for r in res["rows"]:
        looks = ", ".join(f"{n}: {s:.0%}" for n, s in r["looks"].items())
        cells = []
        for d in deltas[1:]:
            x = r["deltas"][d]
            med = "-" if x["median"] is None else f"{x['median']:.0f}"
            cells.append(f"{med}, {x['by_100']:.3f}, {x['detected']:.3f}")
        lines.append(f"| {r['split']} ({r['early']:.0%} / {looks} / {r['final']:.0%}) | "
                     f"{r['pass_point']} | {r['deltas'][deltas[0]]['detected']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    start = time.monotonic()
    res = {"when": time.strftime("%Y-%m-%d %H:%M"), **run()}
    res["seconds"] = time.monotonic() - start
    (HERE / "sequential_split.json").write_text(json.dumps(res, indent=2) + "\n")
    (HERE / "sequential_split.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
