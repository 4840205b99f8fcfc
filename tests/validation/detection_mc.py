"""Monte Carlo behaviour of the detection procedure: where the tolerances of
test_validation.py's bug tests come from.

The bug tests run ``sims_to_detection`` with one study seed (2025), which makes the detection
n a deterministic function of sbc, the libraries and the models.  A change that reshuffles
the random streams (a new seed derivation, another numpy) draws a new sample of it; this
script shows what that sample looks like by running the same procedure with other seeds,
and writes DETECTION_MC.md next to it:

    .venv/bin/python tests/validation/detection_mc.py --sampler exact --seeds 0:20 --jobs 2
    .venv/bin/python tests/validation/detection_mc.py --sampler nutpie --seeds 0:8 --jobs 2

Each run replaces its backend's section of DETECTION_MC.md.  Fits go to a scratch cache
(``--cache``, default a temporary directory, removed at the end; pass the same directory
again to reuse fits when only signatures or tolerances changed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "DETECTION_MC.md"


def _run(args):
    """One seed of one group of bugs sharing a twin: [(bug id, n, signature problems)]."""
    ids, seed, cache = args
    import test_validation as tv

    out = []
    for bug in (b for b in tv.BUGS if b.id in ids):
        n, result = tv.sims_to_detection(bug, Path(cache), seed=seed)
        problems = bug.signature.problems(result.failures) if bug.signature and n else []
        out.append((bug.id, n, problems))
    return seed, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sampler", choices=("exact", "nutpie"), required=True)
    p.add_argument("--seeds", default="0:40", help="start:stop (Python range)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cache", type=Path, default=None)
    args = p.parse_args(argv)
    import test_validation as tv

    start, stop = map(int, args.seeds.split(":"))
    seeds = [s for s in range(start, stop) if s != tv.STUDY_SEED]
    bugs = [b for b in tv.BUGS if b.sampler == args.sampler]
    groups: dict[tuple, list[str]] = {}
    for b in bugs:  # bugs sharing a twin and design share its store: one process per group
        groups.setdefault((b.twin, b.design), []).append(b.id)
    tmp = tempfile.TemporaryDirectory(prefix="sbc-mc-") if args.cache is None else None
    cache = args.cache or Path(tmp.name)
    tasks = [(tuple(ids), seed, str(cache)) for ids in groups.values() for seed in seeds]
    t0 = time.time()
    found: dict[str, list] = {b.id: [] for b in bugs}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for seed, rows in pool.map(_run, tasks):
            for bug_id, n, problems in rows:
                found[bug_id].append((seed, n, problems))
                print(f"seed {seed:3d} {bug_id:55s} n={n} {'; '.join(problems)}", flush=True)
    minutes = (time.time() - t0) / 60
    header = [
        "# Detection n over study seeds\n\n",
        "Written by `tests/validation/detection_mc.py`: the detection procedure of\n",
        "`test_validation.py` (`sims_to_detection`) run with other study seeds than the\n",
        "suite's 2025.  `detection n`: how many seeds detected the bug first at each n of its\n",
        "schedule; `accepted`: the detection n the test accepts; `signature holds`: seeds\n",
        "whose failures at their detection n match the asserted signature, of the seeds that\n",
        "detected it.  The tests' tolerances rest on these counts.\n"]
    # keep the other backend's section
    kept = []
    if OUT.exists():
        sections = OUT.read_text().split("\n## ")[1:]
        kept = ["\n## " + sec.rstrip("\n") + "\n" for sec in sections
                if not sec.startswith(f"{args.sampler} backend")]
    lines = [f"\n## {args.sampler} backend, seeds {start} to {stop - 1} "
              f"({time.strftime('%Y-%m-%d')}, {minutes:.0f} min with {args.jobs} processes)\n\n",
              "| bug | design | seeds | detection n | stated | at stated n | accepted | "
              "within accepted | signature holds |\n|---|---|---|---|---|---|---|---|---|\n"]
    for b in bugs:
        rows = found[b.id]
        counts = Counter(n for _, n, _ in rows)
        dist = ", ".join(f"{tv._n_text(n, b)}: {counts[n]}" for n in (*b.schedule, None)
                         if counts[n])
        detected = [r for r in rows if r[1] is not None]
        sig = (f"{sum(not r[2] for r in detected)} of {len(detected)}" if b.signature else "")
        within = sum(counts[n] for n in b.tolerance)
        lines.append(f"| {b.name} | {b.label} | {len(rows)} | {dist} | "
                     f"{tv._n_text(b.recorded, b)} | {counts[b.recorded]} of {len(rows)} | "
                     f"{b.tolerance_text()} | {within} of {len(rows)} | {sig} |\n")
        for seed, n, problems in rows:
            if problems:
                print(f"  {b.id} seed {seed} (n={n}): {'; '.join(problems)}")
    order = {"exact": 0, "nutpie": 1}
    blocks = sorted([*kept, "".join(lines)],
                    key=lambda sec: min((i for k, i in order.items() if sec.startswith(f"\n## {k}")),
                                        default=9))
    OUT.write_text("".join(header) + "".join(blocks))
    print("".join(lines))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
