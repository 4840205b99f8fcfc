"""Compiled once per design vs rebuilt per replicate, measured side by side in one run.

For each model at the seed design (10 x 3 x 3), replicates alternate between
  rebuilt:  build the model, derive generator and fitter, compile nutpie, then fit
  compiled: reuse the worker's cached compiled model and only swap the data
and the median wall seconds per replicate of each are reported with their ratio.

    .venv/bin/python benchmarks/compile_once.py [--reps 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sbc import replicate
from sbc.design import Design
from sbc.replicate import BatchTask, prepare, run_replicate
from sbc.spec import resolve_model
from sbc.study import SamplerSettings

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    results = {}
    for name in ("crispr_screen", "crispr_seed"):
        model = resolve_model(name, ROOT / "studies")
        task = BatchTask(model, None, Design(10, 3, 3), SamplerSettings(), "auto", 103, ())
        prepared = prepare(task)
        run_replicate(prepared, task, 10_000)  # first call pays one-off JIT warm-up
        rebuilt, compiled = [], []
        for rep in range(args.reps):
            replicate._CACHE.clear()
            start = time.perf_counter()
            run_replicate(prepare(task), task, rep)
            rebuilt.append(time.perf_counter() - start)
            prepared = prepare(task)
            start = time.perf_counter()
            run_replicate(prepared, task, rep)
            compiled.append(time.perf_counter() - start)
        results[name] = {
            "rebuilt_s_per_replicate": statistics.median(rebuilt),
            "compiled_once_s_per_replicate": statistics.median(compiled),
            "speedup": statistics.median(rebuilt) / statistics.median(compiled),
            "replicates": args.reps,
        }
        print(f"{name}: rebuilt {results[name]['rebuilt_s_per_replicate']:.3f} s/replicate, "
              f"compiled once {results[name]['compiled_once_s_per_replicate']:.3f} s/replicate, "
              f"ratio {results[name]['speedup']:.1f}x", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
