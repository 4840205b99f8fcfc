"""`sbc check` on the shipped DepMap screens: verdicts, key statistics, LOO and wall time.

    .venv/bin/python benchmarks/real_check.py [--lineage neuroblastoma] [--out benchmarks]

Runs ``sbc check DATA --study studies/crispr_seed.toml`` (crispr_screen and
crispr_gene_spread, fitted side by side in two threads) on each lineage's gene-effect matrix,
times it, and writes ``real_check.md`` and ``real_check.json``; ``--readme`` puts the table
into docs/user_guide/real_screens.md between its ``real-check`` markers
(``tests/test_readme_claims.py`` checks it matches the json), ``--readme-only`` does that
from the stored json without fitting, as does ``python tools/readme.py`` (which calls
``readme_block``).  The load average before and after
is recorded, since a busy machine inflates the time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHOWN = ("gene_sd_max", "gene_sd_q90", "gene_sd_q10", "skewness", "share_below_-1", "q01", "q99")


def run(lineage: str) -> dict:
    import sbc

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = sbc.check(sbc.datasets.depmap(lineage), ["crispr_screen", "crispr_gene_spread"],
                       study=ROOT / "studies" / "crispr_seed.toml", seed=0,
                       out=ROOT / "reports" / f"check_{lineage}", stream=io.StringIO())
    seconds = time.perf_counter() - start
    out = {"lineage": lineage, "data": result.screen.describe().replace(str(ROOT) + "/", ""),
           "seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[0],
           "cores": os.cpu_count(), "best": result.best, "models": {}}
    for c in result.checks:
        out["models"][c.model] = {
            "verdict": c.verdict, "reasons": c.reasons, "notes": c.notes,
            "statistics": {s.name: {"observed": s.observed, "low": s.low, "high": s.high,
                                    "p": s.p, "misfit": s.misfit} for s in c.statistics},
            "descriptions": {s.name: s.description for s in c.statistics},
            "loo_pit_p": c.loo_pit_p, "loo_pit_deviation": c.loo_pit_deviation,
            "elpd": float(c.loo.elpd), "elpd_se": float(c.loo.se),
            "pareto_k_high": c.pareto_k_high, "fit_seconds": c.fit.seconds,
            "rescue_refits": max(0, len(c.fit.attempts) - 1),
            "genes_misfit": len(c.genes)}
    comparison = result.comparison
    out["elpd_diff"] = float(comparison.loc["crispr_screen", "elpd_diff"])
    out["elpd_dse"] = float(comparison.loc["crispr_screen", "dse"])
    return out


def table(results: list[dict]) -> str:
    lines = []
    for r in results:
        a, b = r["models"]["crispr_screen"], r["models"]["crispr_gene_spread"]
        lines += [f"**{r['data']}**: {r['seconds']:.0f} s on {r['cores']} cores (load average "
                  f"{r['load_before']:.1f} before); best by LOO: `{r['best']}`.", "",
                  "| statistic | observed | `crispr_screen` replicated 95 % (p) | "
                  "`crispr_gene_spread` replicated 95 % (p) |", "|---|---|---|---|"]
        for name in SHOWN:
            sa, sb = a["statistics"][name], b["statistics"][name]

            def cell(s):
                mark = " **misfit**" if s["misfit"] else ""
                return f"{s['low']:.3g} to {s['high']:.3g} ({s['p']:.2g}){mark}"
            lines.append(f"| {a['descriptions'][name]} | {sa['observed']:.3g} | {cell(sa)} | "
                         f"{cell(sb)} |")
        lines.append(f"| LOO-PIT: largest \\|ECDF - u\\| (p) | | {a['loo_pit_deviation']:.3f} "
                     f"({a['loo_pit_p']:.2g}) | {b['loo_pit_deviation']:.3f} "
                     f"({b['loo_pit_p']:.2g}) |")
        lines.append(f"| elpd_loo (se) | | {a['elpd']:.0f} ({a['elpd_se']:.0f}) | "
                     f"{b['elpd']:.0f} ({b['elpd_se']:.0f}) |")
        lines.append(f"| verdict | | {a['verdict']} | {b['verdict']} |")
        lines += ["", f"`crispr_screen` - `crispr_gene_spread` elpd_loo: {r['elpd_diff']:.0f} "
                  f"(se {r['elpd_dse']:.0f}); genes whose spread misfits: "
                  f"{a['genes_misfit']} under `crispr_screen`, {b['genes_misfit']} under "
                  "`crispr_gene_spread`.", ""]
    return "\n".join(lines)


START, END = "<!-- real-check:start -->", "<!-- real-check:end -->"


def readme_block(results: list[dict]) -> str:
    return f"{START}\n{table(results).rstrip()}\n{END}"


def write_readme(results: list[dict],
                 readme: Path = ROOT / "docs" / "user_guide" / "real_screens.md") -> None:
    text = readme.read_text()
    start, end = text.index(START), text.index(END) + len(END)
    readme.write_text(text[:start] + readme_block(results) + text[end:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lineage", action="append", choices=["neuroblastoma", "liver"])
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--readme", action="store_true", help="also write the docs page's table "
                        "(docs/user_guide/real_screens.md)")
    parser.add_argument("--readme-only", action="store_true",
                        help="write the docs page's table from the stored json; no fits")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.readme_only:
        write_readme(json.loads((out / "real_check.json").read_text()))
        return 0
    results = [run(lineage) for lineage in args.lineage or ["neuroblastoma"]]
    (out / "real_check.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "real_check.md").write_text(
        "# `sbc check` on DepMap screens\n\n`.venv/bin/python benchmarks/real_check.py` "
        f"({time.strftime('%Y-%m-%d %H:%M')}).  Models fitted with the procedure of "
        "studies/crispr_seed.toml.\n\n" + table(results))
    if args.readme:
        write_readme(results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
