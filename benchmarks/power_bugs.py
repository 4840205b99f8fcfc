"""The default uniformity test against the former one on the validation suite's known bugs.

benchmarks/power.md chooses the default test (``sbc.stats.rank_test``) on synthetic
departures.  This checks the choice on rank sets it was not chosen on: the known bugs of
tests/validation/test_validation.py that the exact sampler fits (cheap), each run through the
suite's fixed-n detection procedure (``sims_to_detection``: the schedule 25, 50, 100, 200,
400; a detection counts only where the correct twin passes at the same n) on several study
seeds, once with each test on the same fits.  Writes benchmarks/power_bugs.{json,md}.

    .venv/bin/python benchmarks/power_bugs.py --seeds 0:10

Fits go to a scratch cache (``--cache``, default a temporary directory); each bug and twin is
fitted once per seed at the schedule's largest n and every smaller n reads its first
replicates, so both tests judge identical ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "validation"))

import test_validation as tv  # noqa: E402

import sbc.stats  # noqa: E402
from sbc.testing import check_calibration  # noqa: E402

TESTS = {"rank_test": sbc.stats.rank_test, "gamma": sbc.stats.uniformity_test}


@contextmanager
def engine_test(name: str):
    """The calibration engine judges with TESTS[name] inside the block (it calls
    ``sbc.stats.rank_test`` by name)."""
    saved = sbc.stats.rank_test
    sbc.stats.rank_test = TESTS[name]
    try:
        yield
    finally:
        sbc.stats.rank_test = saved


def detection(bug, seed: int, cache: Path) -> dict[str, tuple[int | None, bool]]:
    """Per test: the detection n of one bug at one seed (None: not within the schedule), and
    whether its correct twin failed at the schedule's first n (a false alarm, which delays a
    detection: the twin must pass)."""
    kwargs = {"n_sims": bug.schedule[-1], "seed": seed, "sampler": bug.sampler,
              "cache_dir": cache, "report": False}
    check_calibration(bug.model, bug.design, simulate_model=bug.twin, **kwargs)  # fit once
    check_calibration(bug.twin, bug.design, **kwargs)
    out = {}
    for name in TESTS:
        with engine_test(name):
            twin = check_calibration(bug.twin, bug.design, **{**kwargs, "n_sims": bug.schedule[0]})
            out[name] = (tv.sims_to_detection(bug, cache, seed=seed)[0], not twin.passed)
    return out


def _median(ns: list) -> str:
    inf = max(tv.SCHEDULE) + 1
    m = statistics.median_low([n if n is not None else inf for n in ns])
    return str(m) if m < inf else f"> {max(tv.SCHEDULE)}"


def _seeds(flags: list[tuple[int, bool]]) -> str:
    return ", ".join(str(seed) for seed, failed in flags if failed) or "none"


def write_md(data: dict, path: Path) -> None:
    md = ["# The default test on the known bugs", "",
          f"Command: `.venv/bin/python benchmarks/power_bugs.py --seeds {data['seeds']}`. "
          f"{data['date']}, {data['minutes']:.0f} min, load {data['load'][0]:.1f} at start and "
          f"{data['load'][1]:.1f} at end (2 cores, shared). Each bug of "
          "tests/validation/test_validation.py fitted by the exact sampler goes through the "
          "suite's fixed-n detection procedure (schedule 25, 50, 100, 200, 400; its correct "
          "twin must pass at the same n) on every seed, once with each test on the same fits. "
          "`rank_test`: the default (smallest p-value of Anderson-Darling, Berk-Jones and "
          "Neyman-3, benchmarks/power.md); `gamma`: the former default, the ECDF gamma test. "
          "Earlier = detected at a smaller n of the schedule on that seed. Bugs of the same "
          "design share their twin, so one false alarm of the twin delays all of them.", "",
          "| bug | design | seeds | detection n, rank_test | detection n, gamma | median, "
          "rank_test | median, gamma | rank_test earlier / same / later | twin false alarm "
          "at 25 (seeds), rank_test / gamma |",
          "|---|---|---|---|---|---|---|---|---|"]
    inf = max(tv.SCHEDULE) + 1
    for row in data["bugs"]:
        new, old = row["rank_test"], row["gamma"]
        pairs = [(a if a is not None else inf, b if b is not None else inf)
                 for a, b in zip(new, old)]
        earlier = sum(a < b for a, b in pairs)
        later = sum(a > b for a, b in pairs)

        def counts(ns):
            keys = sorted({n if n is not None else inf for n in ns})
            return ", ".join(f"{k if k < inf else '> 400'}: "
                             f"{sum((n if n is not None else inf) == k for n in ns)}"
                             for k in keys)

        md.append(f"| {row['bug']} | {row['design']} | {len(new)} | {counts(new)} | "
                  f"{counts(old)} | {_median(new)} | {_median(old)} | "
                  f"{earlier} / {len(pairs) - earlier - later} / {later} | "
                  f"{_seeds(row['twin_rank_test'])} / {_seeds(row['twin_gamma'])} |")
    path.write_text("\n".join(md) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0:10", help="start:stop (Python range)")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    start, stop = map(int, args.seeds.split(":"))
    seeds = [s for s in range(start, stop) if s != tv.STUDY_SEED]
    bugs = [b for b in tv.BUGS if b.sampler == "exact"]
    t0, load0 = time.time(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        rows = []
        for bug in bugs:
            found = {key: [] for name in TESTS for key in (name, f"twin_{name}")}
            for seed in seeds:
                for name, (n, twin_failed) in detection(bug, seed, cache).items():
                    found[name].append(n)
                    found[f"twin_{name}"].append((seed, twin_failed))
            print(f"{bug.name}: {found}", flush=True)
            rows.append({"bug": bug.name, "design": bug.label, **found})
    data = {"seeds": args.seeds, "bugs": rows, "minutes": (time.time() - t0) / 60,
            "load": [load0, os.getloadavg()[0]], "date": time.strftime("%Y-%m-%d %H:%M")}
    (args.out / "power_bugs.json").write_text(json.dumps(data, indent=1) + "\n")
    write_md(data, args.out / "power_bugs.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
