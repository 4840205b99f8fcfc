"""Worker memory over a long run: resident set size of one worker process (this one) every
N replicates while it fits the same (model, design) thousands of times from its cache.

    .venv/bin/python benchmarks/worker_memory.py [--reps 2000] [--every 200]

A leak shows as RSS growing with the replicate count after the first few hundred; prints
one line per checkpoint and a JSON summary (MB at start/end, slope in MB per 1,000 replicates).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from sbc.design import Design
from sbc.replicate import BatchTask, prepare, run_replicate
from sbc.spec import resolve_model
from sbc.study import SamplerSettings

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--model", default="crispr_screen")
    args = parser.parse_args()
    task = BatchTask(resolve_model(args.model, ROOT / "studies"), None, Design(10, 3, 3),
                     SamplerSettings(), "auto", 1, ())
    prepared = prepare(task)
    points = []
    start = time.perf_counter()
    for rep in range(args.reps):
        record = run_replicate(prepared, task, rep)
        assert record["status"] == "ok", record.get("error")
        if rep % args.every == 0 or rep == args.reps - 1:
            points.append((rep + 1, rss_mb()))
            print(f"{rep + 1:6d} replicates  RSS {points[-1][1]:7.1f} MB  "
                  f"{time.perf_counter() - start:7.1f} s", flush=True)
    later = [p for p in points if p[0] > args.reps // 4]
    slope = np.polyfit([p[0] for p in later], [p[1] for p in later], 1)[0] * 1000
    print(json.dumps({"model": args.model, "replicates": args.reps,
                      "rss_mb_first": points[0][1], "rss_mb_last": points[-1][1],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "slope_mb_per_1000_replicates_after_first_quarter": slope}, indent=2))


if __name__ == "__main__":
    main()
