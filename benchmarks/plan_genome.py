"""The genome-wide plan of the README, timed: ``sbc plan studies/plan_genome.toml`` (18,000
genes, 216 designs) in a fresh process with 2 local Dask workers, from a fresh output
directory.  Writes benchmarks/plan_genome.json (seconds, machine, load, the recommendation,
runners-up, screens simulated), plan_genome.md (the plan's summary.md) and
plan_genome_cost.png (P(success) against cost).

    .venv/bin/python benchmarks/plan_genome.py                # about 20-30 minutes on 2 cores
    .venv/bin/python benchmarks/plan_genome.py --record DIR   # record a finished run in DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PLAN = ROOT / "studies" / "plan_genome.toml"


def record(out: Path, seconds: float | None, command: str) -> dict:
    data = json.loads((out / "plan.json").read_text())
    rows = data["designs"]
    passing = [r for r in rows if r["status"] == "pass"]
    res = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} cores",
           "command": command, "seconds": seconds if seconds is not None else data["seconds"],
           "plan_sha256": hashlib.sha256(PLAN.read_bytes()).hexdigest(),
           "load_after": os.getloadavg()[0], "designs": len(rows),
           "designs_evaluated": sum(1 for r in rows if r["simulations"] > 0),
           "screens": data["fits"]["used"], "recommended": data["recommended"],
           "runners_up": [r for r in passing if data["recommended"] is None
                          or r["design"] != data["recommended"]["design"]],
           "targets": data["targets"]}
    (HERE / "plan_genome.json").write_text(json.dumps(res, indent=2) + "\n")
    shutil.copyfile(out / "summary.md", HERE / "plan_genome.md")
    shutil.copyfile(out / "plan_cost.png", HERE / "plan_genome_cost.png")
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", help="record a finished run's output directory instead")
    args = parser.parse_args(argv)
    command = f"sbc plan {PLAN.relative_to(ROOT)} --workers 2"
    if args.record:
        res = record(Path(args.record), None, command)
    else:
        with tempfile.TemporaryDirectory(prefix="sbc-plan-genome-") as tmp:
            start = time.perf_counter()
            subprocess.run([str(ROOT / ".venv" / "bin" / "sbc"), "plan", str(PLAN), "--out",
                            str(Path(tmp) / "out"), "--workers", "2"], check=True)
            res = record(Path(tmp) / "out", time.perf_counter() - start, command)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
