"""The README's genome-planning numbers, generated from the committed result files:

- ``genome-certification``: tests/validation/GENOME.md (``pytest -m slow
  tests/validation/test_genome_validation.py``);
- ``genome-plan``: benchmarks/plan_genome.json (``benchmarks/plan_genome.py``: the timed
  ``sbc plan studies/plan_genome.toml``);
- ``genome-bench``: benchmarks/genome.json (``benchmarks/genome.py``).

Each block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in README.md.

    python tools/genome_readme.py            rewrite the blocks
    python tools/genome_readme.py --check    exit 1 when the README differs

tests/test_readme_genome.py fails when they differ.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GENOME_MD = ROOT / "tests" / "validation" / "GENOME.md"
PLAN_JSON = ROOT / "benchmarks" / "plan_genome.json"
FIGURE = "benchmarks/plan_genome_cost.png"
BENCH_JSON = ROOT / "benchmarks" / "genome.json"
SBC_ROWS = (("beta", "PIT of a gene effect: mean, Holm p"),
            ("u", "PIT of a gene x cell-line deviation"),
            ("gamma", "PIT of a candidate's selective effect"),
            ("95% coverage over all genes", "95 % intervals covering the truth (all genes)"),
            ("realised FDR of 5% calls", "realised FDR of the 5 % essential calls"),
            ("seconds per screen (simulate + fit)", "seconds per screen (simulate + fit, one core)"),
            ("P(essential) reliability z (mean, sd)",
             "P(essential) summed over genes against the essential count: z mean, sd"))
NUTS_HEADING = "## Shortcut against full NUTS"


def _sbc_table(text: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and "x" in cells[0] and cells[1].isdigit():
            rows[(cells[0], cells[2])] = cells
    return rows


def certification_block(genome_md: str) -> str:
    rows = _sbc_table(genome_md)
    designs = list(dict.fromkeys(d for d, _ in rows))
    head = ["check (`tests/validation/GENOME.md`)"]
    for d in designs:
        c, g, r, rest = d.split("x", 3)
        k, depth = rest.rstrip("r").split("g")
        n = rows[(d, "beta")][1]
        head.append(f"{c} x {int(g):,} x {r} x {k} guides, {depth} reads ({n} screens)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in SBC_ROWS:
        cells = []
        for d in designs:
            row = rows[(d, key)]
            cells.append(f"{row[3]}, {row[4]}" if key in ("beta", "u", "gamma") else row[3])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + nuts_part(genome_md)


def nuts_part(genome_md: str) -> str:
    """GENOME.md's comparison with full NUTS: its table and per-gene line, as written."""
    rest = genome_md.partition(NUTS_HEADING)[2]
    if not rest:
        raise SystemExit(f"{GENOME_MD} has no '{NUTS_HEADING}' section")
    scope = rest.splitlines()[0].strip().strip("()")
    body = [line for line in rest.splitlines()[1:] if line.strip()]
    table = [line for line in body if line.startswith("|")]
    prose = [line for line in body if not line.startswith("|")]
    return "\n".join([f"Against full NUTS on the same screens ({scope}):", "", *table, "",
                      *prose])


def plan_block(res: dict) -> str:
    r = res["recommended"]
    minutes = res["seconds"] / 60
    lines = [f"`{res['command']}` on this machine ({res['machine']}): **{minutes:.1f} minutes**, "
             f"{res['screens']} simulated screens of 18,000 genes over {res['designs_evaluated']} "
             f"of the {res['designs']} designs, one every {res['seconds'] / res['screens']:.2f} s "
             f"on average with 2 workers ({res['when']}).", ""]
    if r is None:
        lines.append("No design met the targets with the stated confidence.")
    else:
        lines.append(f"Recommended: **{r['cell_lines']} cell lines x {r['reps']} replicates, "
                     f"{r['guides']} guides per gene, {r['depth']} reads per guide** "
                     f"(`{r['design']}`), cost {r['cost']:.1f} kUSD, P(success) = "
                     f"{r['p_success']:.2f} [{r['p_lower']:.2f}, {r['p_upper']:.2f}] from "
                     f"{r['simulations']} screens, SBC {r['calibration']}.")
    if res["runners_up"]:
        lines += ["", "| runner-up | cost (kUSD) | P(success) | 95 % interval | screens |",
                  "|---|---|---|---|---|"]
        lines += [f"| `{u['design']}` | {u['cost']:.1f} | {u['p_success']:.2f} | "
                  f"[{u['p_lower']:.2f}, {u['p_upper']:.2f}] | {u['simulations']} |"
                  for u in res["runners_up"]]
    lines += ["", f"All {res['designs_evaluated']} designs evaluated, with each target's metric "
              "and Monte Carlo error and the realised FDR: `benchmarks/plan_genome.md`."]
    if (ROOT / FIGURE).exists():
        lines += ["", f"![P(success) against cost, every design evaluated]({FIGURE})"]
    return "\n".join(lines)


def bench_block(res: dict) -> str:
    lines = ["| genes | shortcut s/screen | shortcut s/design | NUTS s/screen | NUTS s/design "
             "(with compile) | NUTS / shortcut |", "|---|---|---|---|---|---|"]
    for r in res["by_genes"]:
        nuts = (f"{r['nuts_screen_s']:.0f} | {r['nuts_design_s']:.0f} | {r['ratio']:.0f}"
                if "ratio" in r else "not run | | ")
        lines.append(f"| {r['genes']:,} | {r['shortcut_screen_s']:.2f} | "
                     f"{r['shortcut_design_s']:.0f} | {nuts} |")
    if "load_before" in res:
        lines += ["", f"Load average (1 min) when it started: {res['load_before']:.2f}, when it "
                  f"ended: {res['load_after']:.2f} ({res['machine']}, {res['when']})."]
    if res["scaling"]:
        lines += ["", "| local Dask workers | screens (12 x 18,000 x 3 x 4 guides, 500 reads) | "
                  "seconds | screens per minute |", "|---|---|---|---|"]
        lines += [f"| {r['workers']} | {r['screens']} | {r['seconds']:.0f} | "
                  f"{r['screens_per_minute']:.1f} |" for r in res["scaling"]]
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    out = {"genome-certification": certification_block(GENOME_MD.read_text())}
    out["genome-plan"] = plan_block(json.loads(PLAN_JSON.read_text())) if PLAN_JSON.exists() \
        else ("No timed run of it is recorded yet (`make bench-genome-plan` writes "
              "`benchmarks/plan_genome.json`).")
    out["genome-bench"] = bench_block(json.loads(BENCH_JSON.read_text())) \
        if BENCH_JSON.exists() else "Not measured yet (`benchmarks/genome.py`)."
    return out


def render(readme: str, generated: dict[str, str]) -> str:
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- {name}:start --> ... end block")
        readme = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = render(text, blocks())
    if args.check:
        return 0 if new == text else 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
