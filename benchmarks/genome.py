"""Seconds per planned design against the number of genes: the genome shortcut
(sbc.plan.genome_fit) and full NUTS on the count model (sbc.plan.genome_nuts) side by side in
one run, and the shortcut's scaling over local Dask workers.

- Per number of genes (100 to 18,000), one design shape, 4 cell lines x 2 replicates x
  3 guides x 500 reads per guide (the shape the NUTS certification uses): seconds per
  simulated screen (simulation + fit), the median of ``--screens`` screens for the
  shortcut, and one screen for NUTS where it runs (nutpie, 1 chain, 500 + 500 draws; its
  compile reported apart, paid once per design shape).  Seconds per planned design =
  seconds per screen x 20 screens (a design decided at its second batch of 10), on one
  core.  Screens are interleaved (shortcut, NUTS, shortcut, ...) so a busy machine slows
  both alike.
- The genome-wide shape 12 cell lines x 3 replicates x 4 guides x 500 reads: the shortcut
  at 18,000 genes, and 20 screens through ``sbc.dispatch`` with 1 and 2 local Dask
  workers (the throughput the planner gets from a cluster; a design's batch of 10
  screens is the most it runs side by side).

    .venv/bin/python benchmarks/genome.py              # writes benchmarks/genome.json/.md
    .venv/bin/python benchmarks/genome.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from sbc.dispatch import map_calls, session  # noqa: E402
from sbc.plan.genome import GenomeSettings, GenomeTarget, ScreenDesign  # noqa: E402
from sbc.plan.genome_screen import run_screen, simulate  # noqa: E402

TARGETS = (GenomeTarget("essential_power", at_least=0.7),
           GenomeTarget("selective_power", at_least=0.8),
           GenomeTarget("width", below=0.6, at_least=0.9))
SCREENS_PER_DESIGN = 20


def settings(design: ScreenDesign) -> GenomeSettings:
    return GenomeSettings(seed=31, targets=TARGETS, max_cells=design.cell_lines,
                          max_guides=design.guides, n_candidates=20, fraction=0.25,
                          selective_effect=-0.5)


def shortcut_seconds(design: ScreenDesign, rep: int) -> float:
    start = time.perf_counter()
    run_screen(design, rep, settings(design))
    return time.perf_counter() - start


def nuts_seconds(design: ScreenDesign, rep: int) -> dict:
    from sbc.plan.genome_nuts import compile_full_model, nuts_posterior

    s = settings(design)
    start = time.perf_counter()
    _, t0, counts, _ = simulate(design, rep, s)
    simulated = time.perf_counter() - start
    compiled_start = time.perf_counter()
    compiled = compile_full_model(t0, counts, s)
    compile_s = time.perf_counter() - compiled_start
    _, diag = nuts_posterior(t0, counts, s, seed=rep, draws=500, tune=500, chains=1,
                             compiled=compiled)
    return {"compile": compile_s, "screen": simulated + diag["seconds"],
            "divergences": diag["divergences"]}


def by_genes(genes: list[int], nuts_genes: list[int], screens: int) -> list[dict]:
    rows = []
    for g in genes:
        design = ScreenDesign(4, g, 2, 3, 500)
        short, nuts = [], None
        for rep in range(screens):
            short.append(shortcut_seconds(design, rep))
            if rep == 0 and g in nuts_genes:
                nuts = nuts_seconds(design, rep)
        row = {"genes": g, "shortcut_screen_s": statistics.median(short),
               "shortcut_design_s": statistics.median(short) * SCREENS_PER_DESIGN}
        if nuts:
            row.update(nuts_compile_s=nuts["compile"], nuts_screen_s=nuts["screen"],
                       nuts_design_s=nuts["compile"] + nuts["screen"] * SCREENS_PER_DESIGN,
                       nuts_divergences=nuts["divergences"],
                       ratio=nuts["screen"] / statistics.median(short))
        rows.append(row)
        print(row, flush=True)
    return rows


def scaling(genes: int, screens: int) -> list[dict]:
    design = ScreenDesign(12, genes, 3, 4, 500)
    s = settings(design)
    rows = []
    for workers in (1, 2):
        with session(workers=workers, scheduler=None) as client:
            warm = []
            map_calls(client, run_screen, [(design, 1000 + i, s) for i in range(workers)],
                      warm.append)   # workers import and warm up
            done = []
            start = time.perf_counter()
            map_calls(client, run_screen, [(design, r, s) for r in range(screens)],
                      done.append)
            seconds = time.perf_counter() - start
        rows.append({"workers": workers, "screens": screens, "seconds": seconds,
                     "screens_per_minute": 60 * screens / seconds})
        print(rows[-1], flush=True)
    return rows


def markdown(res: dict) -> str:
    lines = [f"# Genome planning: seconds per design ({res['when']}, {res['machine']})", "",
             "Design shape 4 cell lines x 2 replicates x 3 guides x 500 reads per guide; a "
             f"planned design = {SCREENS_PER_DESIGN} simulated screens on one core (NUTS: "
             "plus one compile per design shape). Measured side by side in one run.", "",
             "| genes | shortcut s/screen | shortcut s/design | NUTS compile s | NUTS s/screen "
             "| NUTS s/design | NUTS / shortcut per screen |", "|---|---|---|---|---|---|---|"]
    for r in res["by_genes"]:
        nuts = [f"{r['nuts_compile_s']:.0f}", f"{r['nuts_screen_s']:.0f}",
                f"{r['nuts_design_s']:.0f}", f"{r['ratio']:.0f}"] if "ratio" in r else \
            ["not run", "", "", ""]
        lines.append(f"| {r['genes']:,} | {r['shortcut_screen_s']:.2f} | "
                     f"{r['shortcut_design_s']:.1f} | " + " | ".join(nuts) + " |")
    if not res["scaling"]:
        return "\n".join(lines) + "\n"
    lines += ["", f"## Local Dask workers (12 cell lines x {res['scaling_genes']:,} genes x 3 "
              "replicates x 4 guides x 500 reads)", "",
              "| workers | screens | seconds | screens per minute |", "|---|---|---|---|"]
    for r in res["scaling"]:
        lines.append(f"| {r['workers']} | {r['screens']} | {r['seconds']:.0f} | "
                     f"{r['screens_per_minute']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--out", default=str(HERE), help="directory for genome.json/.md")
    args = parser.parse_args(argv)
    genes = [100, 500] if args.quick else [100, 500, 2000, 5000, 18000]
    nuts_genes = [100] if args.quick else [100, 500]
    res = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} cores",
           "load_before": os.getloadavg()[0], "quick": args.quick,
           "by_genes": by_genes(genes, nuts_genes, 2 if args.quick else 3),
           "scaling_genes": 2000 if args.quick else 18000}
    res["scaling"] = scaling(res["scaling_genes"], 4 if args.quick else 20)
    res["load_after"] = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "genome.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "genome.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
