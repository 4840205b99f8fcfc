"""Generate the README's result tables from the committed result files.

Two README sections are generated, each from its heading up to the next heading of level 1
to 3 (outside code fences):

- "### Validation results": from tests/validation/RESULTS.md (written by
  ``pytest -m slow tests/validation``): a fixed introduction, then RESULTS.md without its
  title, its "## " headings demoted to "#### ".
- "### Latest benchmark run": from benchmarks/results.json (written by ``make bench``):
  the settings, the machine and a table of the headline numbers.

    python tools/readme_tables.py            rewrite those README sections
    python tools/readme_tables.py --check    exit 1, printing a diff, when the README differs

Exit status 2 when a file, a key of results.json or a section heading is missing.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "tests" / "validation" / "RESULTS.md"
BENCH = ROOT / "benchmarks" / "results.json"
START = "### Validation results"
BENCH_START = "### Latest benchmark run"
INTRO = """\
`pytest -m slow tests/validation` (run with `make test-all`) writes
`tests/validation/RESULTS.md`; `python tools/readme_tables.py` copies it here, and
`tests/validation/test_readme_tables.py` fails when the two differ.
"""
BENCH_INTRO = """\
`make bench` writes `benchmarks/results.json` (all numbers) and `benchmarks/results.md`
(all tables); `python tools/readme_tables.py` copies the headline numbers here, and
`tests/validation/test_readme_tables.py` fails when the two differ.
"""
_HEADING = re.compile(r"^#{1,3} ")


class SectionError(ValueError):
    pass


def section_from_results(results: str) -> str:
    """The validation section (heading included, ending with one blank line)."""
    lines = results.strip("\n").splitlines()
    if not lines or lines[0].strip() != "# Validation results":
        raise SectionError("RESULTS.md does not start with '# Validation results'")
    body = ["####" + line[2:] if line.startswith("## ") else line for line in lines[1:]]
    text = "\n".join(body).strip("\n")
    return f"{START}\n\n{INTRO}\n{text}\n\n"


def _g(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if x < 0.1 else f"{100 * x:.0f} %"


def section_from_bench(bench: dict) -> str:
    """The benchmark section (heading included, ending with one blank line)."""
    try:
        s, m, paths, growth = bench["settings"], bench["machine"], bench["paths"], bench["growth"]
        seed = bench["overhead"][0]["configs"]["vector_ess_raw_trace"]
        sampler = s.get("sbc_sampler")
        if sampler:
            how = (f"sbc at its default sampler settings otherwise (target_accept "
                   f"{sampler['target_accept']}, `{sampler['adaptation']}` mass matrix, rescue "
                   f"{'on' if sampler['rescue'] else 'off'})")
        else:
            how = "sbc's sampler settings of that run were not recorded"
        versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        loads = [x for p in paths.values() for pair in p.get("load", []) for x in pair]
        loads += [bench["load_end"]] if "load_end" in bench else []
        load = (f", 1-minute load average {min(loads):.1f} to {max(loads):.1f} during the "
                "paths" if loads else "")
        when = f" on {bench['written']}" if bench.get("written") else ""
        head = (f"Written by `make bench`{when}: {m['cpus']} CPUs shared with other jobs{load}, "
                f"whole benchmark {bench['bench_seconds'] / 60:.1f} minutes ({versions}). "
                f"Model `{s['model']}`, design {s['design'].replace('x', ' x ')}, "
                f"{s['chains']} chain, {s['tune']} tuning + {s['draws']} kept draws; {how}; "
                "the plain loop and simuk use `pm.sample`'s defaults.\n")
        if s.get("quick"):
            head += ("\n**A `--quick` run (a handful of replicates): its numbers are not meant "
                     "to be read.**\n")
        sbc1, sbc2 = paths["sbc_1"], paths["sbc_2"]
        rows = [
            ("seconds per replicate, `sbc run` 1 worker (median)",
             _g(sbc1["seconds_per_replicate"]["median"], 2)),
            ("seconds per replicate, plain `pm.sample` loop / simuk (median)",
             f"{_g(paths['naive']['seconds_per_replicate']['median'])} / "
             f"{_g(paths['simuk']['seconds_per_replicate']['median'])}"),
            ("`sbc_vs_simuk`, `sbc_vs_naive` (replicates per core-second, setup included)",
             f"{bench['sbc_vs_simuk']:.1f}, {bench['sbc_vs_naive']:.1f}"),
            ("`two_vs_one_worker` (setup included / excluded)",
             f"{bench['two_vs_one_worker']:.2f} / {bench['two_vs_one_worker_steady']:.2f}"),
            (f"{s['study_replicates']:,}-replicate seed-design study, 2 workers, compile and "
             "report included", f"{bench['study_1000_seconds_2_workers']:.0f} s"),
            ("framework overhead per replicate at 90 rows (everything but the sampler call)",
             f"{_pct(bench['overhead_frac_90_rows'])} (about "
             f"{1000 * seed['overhead_median']:.0f} ms)"),
            ("fits flagged by the sampler, `sbc run` 1 worker (low ESS / divergent)",
             f"{_pct(sbc1['extra']['flag_low_ess'])} / "
             f"{_pct(sbc1['extra']['flag_divergent'])}"),
            ("failed fits, `sbc run` 1 worker / 2 workers",
             f"{sbc1['extra']['n_failed']} / {sbc2['extra']['n_failed']}"),
            ("seconds per replicate at " + " / ".join(f"{g['n_rows']:,}" for g in growth)
             + " rows", " / ".join(_g(statistics.median(g["wall"]), 2) for g in growth)),
            ("fits flagged low ESS at the same sizes",
             " / ".join(_pct(g["flag_low_ess"]) for g in growth)),
            (f"peak memory per worker at {growth[0]['n_rows']:,} / {growth[-1]['n_rows']:,} "
             "rows", f"{growth[0]['peak_rss_mb']:.0f} MB / {growth[-1]['peak_rss_mb']:.0f} MB"),
        ]
    except (KeyError, IndexError, TypeError) as exc:
        raise SectionError(f"benchmarks/results.json lacks {exc!r}; rerun make bench") from exc
    table = "\n".join(["| measure | result |", "|---|---|"] +
                      [f"| {k} | {v} |" for k, v in rows])
    return f"{BENCH_START}\n\n{BENCH_INTRO}\n{head}\n{table}\n\n"


def _section_bounds(lines: list[str], start_line: str) -> tuple[int, int]:
    """Index of the heading line and of the first heading (level <= 3) after it, outside
    code fences; the end is len(lines) when no heading follows."""
    start = None
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if start is None:
            if line.rstrip() == start_line:
                start = i
        elif _HEADING.match(line):
            return start, i
    if start is None:
        raise SectionError(f"README has no line '{start_line}'")
    return start, len(lines)


def replace_section(readme: str, section: str) -> str:
    """``readme`` with the section that starts with ``section``'s first line replaced."""
    lines = readme.splitlines(keepends=True)
    start, end = _section_bounds([line.rstrip("\n") for line in lines],
                                 section.splitlines()[0])
    if end == len(lines):  # the last section of the file: end with one newline
        section = section.rstrip("\n") + "\n"
    return "".join(lines[:start]) + section + "".join(lines[end:])


def wanted_readme(readme: str, results: Path | None, bench: Path | None) -> str:
    """The README with each section whose source is given regenerated."""
    if results is not None:
        readme = replace_section(readme, section_from_results(results.read_text("utf-8")))
    if bench is not None:
        readme = replace_section(readme, section_from_bench(json.loads(bench.read_text("utf-8"))))
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 with a diff when the README differs")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="validation results (RESULTS.md)")
    parser.add_argument("--bench", type=Path, default=BENCH,
                        help="benchmark results (results.json)")
    parser.add_argument("--only", choices=("validation", "bench"),
                        help="regenerate or check one section only")
    args = parser.parse_args(argv)
    results = None if args.only == "bench" else args.results
    bench = None if args.only == "validation" else args.bench
    sources = " and ".join(str(p) for p in (results, bench) if p is not None)
    try:
        readme = args.readme.read_text(encoding="utf-8")
        wanted = wanted_readme(readme, results, bench)
    except (OSError, SectionError, json.JSONDecodeError) as exc:
        print(f"readme_tables: {exc}", file=sys.stderr)
        return 2
    if wanted == readme:
        if not args.check:
            print(f"{args.readme}: tables already match {sources}")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(
            readme.splitlines(keepends=True), wanted.splitlines(keepends=True),
            fromfile=f"{args.readme} (now)", tofile=f"{args.readme} (from {sources})"))
        print(f"\n{args.readme} differs from {sources}; run: python tools/readme_tables.py",
              file=sys.stderr)
        return 1
    args.readme.write_text(wanted, encoding="utf-8")
    print(f"{args.readme}: tables rewritten from {sources}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
