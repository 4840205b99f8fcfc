"""Task granularity: replicates per Dask task, measured side by side in one run.

Runs the same study (crispr_screen at the seed design, 2 local workers) with batch sizes
1, 4 and 8 (and the automatic choice), twice each in alternating order, and reports wall
seconds and replicates per second after the workers have compiled.

    .venv/bin/python benchmarks/granularity.py [--sims 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from sbc.pipeline import run_study
from sbc.study import load_study

ROOT = Path(__file__).resolve().parent.parent
STUDY = """
name = "granularity"
model = "{model}"
seed = 5
simulations = {sims}
[[designs]]
cell_lines = 10
genes = 3
reps = 3
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.toml"
        path.write_text(STUDY.format(model=ROOT / "models/crispr_screen.py", sims=args.sims))
        base = load_study(path)
        timings: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            for batch in (1, 4, 8, None):
                study = dataclasses.replace(base, batch_size=batch)
                start = time.perf_counter()
                run_study(study, Path(tmp) / f"b{batch}-{round_}", workers=2, report=False)
                timings.setdefault(str(batch or "auto"), []).append(time.perf_counter() - start)
                print(f"batch {batch or 'auto'}: {timings[str(batch or 'auto')][-1]:.1f} s", flush=True)
    result = {k: {"median_wall_s": statistics.median(v), "replicates_per_s": args.sims / statistics.median(v)}
              for k, v in timings.items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
