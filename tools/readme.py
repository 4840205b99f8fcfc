"""Regenerate every generated block of the documentation pages from the committed result files.

Each block is the text between a ``<!-- NAME:start -->`` line and a ``<!-- NAME:end -->`` line
of its page in docs/ (outside code fences); headings and prose around the markers are plain
page text.  The blocks, their pages and their sources:

- ``real-check`` (docs/user_guide/real_screens.md): benchmarks/real_check.json
  (``benchmarks/real_check.py``), rendered by real_check.py's own ``readme_block``;
- ``genome-certification`` (docs/user_guide/genome_plans.md): tests/validation/GENOME.md
  (``pytest -m slow tests/validation/test_genome_validation.py``);
- ``genome-plan`` (docs/user_guide/genome_plans.md): benchmarks/plan_genome.json
  (``benchmarks/plan_genome.py``: the timed ``sbc plan studies/plan_genome.toml``); a
  placeholder sentence while it is absent;
- ``genome-bench`` (docs/user_guide/genome_plans.md): benchmarks/genome.json
  (``benchmarks/genome.py``); a placeholder sentence while it is absent;
- ``validation`` (docs/results/validation.md): tests/validation/RESULTS.md (``pytest -m slow
  tests/validation``): a fixed introduction, then RESULTS.md without its title;
- ``bench`` (docs/user_guide/performance.md): benchmarks/results.json (``make bench``): the
  settings, the machine and a table of the headline numbers;
- ``power`` (docs/user_guide/report.md): benchmarks/power.json (``benchmarks/power.py``): the
  default rank test against the former one and the best single tests.

    python tools/readme.py                rewrite every block
    python tools/readme.py --check        exit 1, printing a unified diff, when a block differs
    python tools/readme.py --only NAME    rewrite (with --check: check) that block only
    python tools/readme.py --page FILE    the named blocks (default: all) are in FILE instead

Exit status 2 when a source file, a key of it or a block's markers are missing.
tests/validation/test_readme_tables.py and tests/test_readme_genome.py fail when a page
differs from what this writes.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "tests" / "validation" / "RESULTS.md"
BENCH = ROOT / "benchmarks" / "results.json"
GENOME_MD = ROOT / "tests" / "validation" / "GENOME.md"
PLAN_JSON = ROOT / "benchmarks" / "plan_genome.json"
FIGURE = "benchmarks/plan_genome_cost.png"
FIGURE_LINK = "../../" + FIGURE  # as the genome page (docs/user_guide/) links it
BENCH_JSON = ROOT / "benchmarks" / "genome.json"
REAL_CHECK_JSON = ROOT / "benchmarks" / "real_check.json"
REAL_CHECK_PY = ROOT / "benchmarks" / "real_check.py"
POWER_JSON = ROOT / "benchmarks" / "power.json"
POWER_PY = ROOT / "benchmarks" / "power.py"


class BlockError(ValueError):
    """A source file, a key of it or a page's marker is missing (exit status 2)."""


# ---- validation: tests/validation/RESULTS.md -------------------------------------------

INTRO = """\
`pytest -m slow tests/validation` (run with `make test-all`) writes
`tests/validation/RESULTS.md`; `python tools/readme.py` copies it here, and
`tests/validation/test_readme_tables.py` fails when the two differ.
"""


def validation_block(results: str) -> str:
    """The validation block: a fixed introduction, then RESULTS.md without its title (its
    "## " headings are the page's sections)."""
    lines = results.strip("\n").splitlines()
    if not lines or lines[0].strip() != "# Validation results":
        raise BlockError("RESULTS.md does not start with '# Validation results'")
    text = "\n".join(lines[1:]).strip("\n")
    return f"{INTRO}\n{text}"


# ---- bench: benchmarks/results.json -----------------------------------------------------

BENCH_INTRO = """\
`make bench` writes `benchmarks/results.json` (all numbers) and `benchmarks/results.md`
(all tables); `python tools/readme.py` copies the headline numbers here, and
`tests/validation/test_readme_tables.py` fails when the two differ.
"""


def _g(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if x < 0.1 else f"{100 * x:.0f} %"


def bench_block(bench: dict) -> str:
    """The benchmark block: the settings, the machine and the headline numbers."""
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
        raise BlockError(f"benchmarks/results.json lacks {exc!r}; rerun make bench") from exc
    table = "\n".join(["| measure | result |", "|---|---|"] +
                      [f"| {k} | {v} |" for k, v in rows])
    return f"{BENCH_INTRO}\n{head}\n{table}"


# ---- genome-certification: tests/validation/GENOME.md -----------------------------------

SBC_ROWS = (("beta", "PIT of a gene effect: mean, Holm p"),
            ("u", "PIT of a gene x cell-line deviation"),
            ("gamma", "PIT of a candidate's selective effect"),
            ("95% coverage over all genes", "95 % intervals covering the truth (all genes)"),
            ("realised FDR of 5% calls", "realised FDR of the 5 % essential calls"),
            ("seconds per screen (simulate + fit)", "seconds per screen (simulate + fit, one core)"),
            ("P(essential) reliability z (mean, sd)",
             "essential count against P(essential) summed over genes, variance Σp(1-p) "
             "(genes taken as independent): z mean, sd"),
            ("essential count z (posterior variance): mean",
             "essential count against its posterior mean and variance: z mean"),
            ("essential count z (posterior variance): sd",
             "essential count against its posterior mean and variance: z sd"),
            ("P(essential) of one gene per screen: Spiegelhalter z",
             "P(essential), one gene per screen: Spiegelhalter z"),
            ("P(essential) Brier: score, reliability, resolution, uncertainty",
             "P(essential) Brier score, reliability, resolution, uncertainty"))
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
    if not rows:
        raise BlockError("GENOME.md has no SBC table (rows of design | screens | check | ...)")
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
            # a PIT's Holm p, else the row's verdict where GENOME.md gives one (pass / FAIL)
            cells.append(f"{row[3]}, {row[4]}" if key in ("beta", "u", "gamma")
                         else f"{row[3]} ({row[5]})" if row[5] else row[3])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + nuts_part(genome_md)


def nuts_part(genome_md: str) -> str:
    """GENOME.md's comparison with full NUTS: its table and per-gene line, as written."""
    rest = genome_md.partition(NUTS_HEADING)[2]
    if not rest:
        raise BlockError(f"GENOME.md has no '{NUTS_HEADING}' section")
    scope = rest.splitlines()[0].strip().strip("()")
    body = [line for line in rest.splitlines()[1:] if line.strip()]
    table = [line for line in body if line.startswith("|")]
    prose = [line for line in body if not line.startswith("|")]
    return "\n".join([f"Against full NUTS on the same screens ({scope}):", "", *table, "",
                      *prose])


# ---- genome-plan: benchmarks/plan_genome.json -------------------------------------------

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
        lines += ["", f"![P(success) against cost, every design evaluated]({FIGURE_LINK})"]
    return "\n".join(lines)


# ---- genome-bench: benchmarks/genome.json -----------------------------------------------

def genome_bench_block(res: dict) -> str:
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


# ---- real-check: benchmarks/real_check.json, rendered by benchmarks/real_check.py --------

def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _real_check_module():
    return _module("real_check", REAL_CHECK_PY)


# ---- power: benchmarks/power.json -----------------------------------------------------------

POWER_ROWS = {"minp_ad_bj_n3": "default (`sbc.stats.rank_test`)", "sbc_gamma": "former default",
              "ad": "", "berk_jones": "", "neyman3": "", "piet_c": ""}


def power_block(data: dict) -> str:
    """The default rank test against the former one and the strongest single tests, from
    power.py's own summary of power.json (cells within Monte Carlo error of the best single
    test, the worst deficit, and the paired comparison with the former default)."""
    power = _module("power", POWER_PY)
    summ = power.default_summary(data)
    rows = ["| test | | cells within MC error of the best test | worst deficit (cell) |",
            "|---|---|---|---|"]
    for name, role in POWER_ROWS.items():
        z = summ[name]
        rows.append(f"| `{name}` | {role} | {z['within']} of {z['cells']} | "
                    f"{z['worst']:+.3f} ({z['worst_cell']}) |")
    n = data["settings"]["ns"]
    return ("Power at the same size (0.05), " + f"{data['settings']['n_alt']:,}".replace(",", " ")
            + " simulated studies per departure (" + ", ".join(power.DEPARTURES) + ") and n "
            f"({', '.join(map(str, n))} ranks), {len(power.DEPARTURES) * len(n)} cells; from "
            "`benchmarks/power.md`:\n\n"
            + "\n".join(rows))


def real_check_block(results: list[dict]) -> str:
    """The inside of real_check.py's ``readme_block`` (the function its ``--readme`` uses)."""
    module = _real_check_module()
    start, end = markers("real-check")
    if (module.START, module.END) != (start, end):
        raise BlockError(f"benchmarks/real_check.py's markers {module.START!r}, {module.END!r} "
                         f"are not {start!r}, {end!r}")
    block = module.readme_block(results)
    if not (block.startswith(start + "\n") and block.endswith("\n" + end)):
        raise BlockError("benchmarks/real_check.py's readme_block is not wrapped in its markers")
    return block[len(start) + 1:-len(end) - 1]


# ---- the blocks --------------------------------------------------------------------------

def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _json(path: Path):
    return json.loads(_text(path))


class Block(NamedTuple):
    source: Path
    make: Callable[[Path], str]  # the block's text (no marker lines) from its source file
    written_by: str  # what writes the source file
    page: Path  # the documentation page that holds the block
    absent: str | None = None  # the block's text while the source is absent; None: required


GUIDE = DOCS / "user_guide"
BLOCKS: dict[str, Block] = {
    "real-check": Block(REAL_CHECK_JSON, lambda p: real_check_block(_json(p)),
                        "benchmarks/real_check.py", GUIDE / "real_screens.md"),
    "genome-certification": Block(GENOME_MD, lambda p: certification_block(_text(p)),
                                  "pytest -m slow tests/validation/test_genome_validation.py",
                                  GUIDE / "genome_plans.md"),
    "genome-plan": Block(PLAN_JSON, lambda p: plan_block(_json(p)), "make bench-genome-plan",
                         GUIDE / "genome_plans.md",
                         absent="No timed run of it is recorded yet (`make bench-genome-plan` "
                                "writes `benchmarks/plan_genome.json`)."),
    "genome-bench": Block(BENCH_JSON, lambda p: genome_bench_block(_json(p)),
                          "benchmarks/genome.py", GUIDE / "genome_plans.md",
                          absent="Not measured yet (`benchmarks/genome.py`)."),
    "validation": Block(RESULTS, lambda p: validation_block(_text(p)),
                        "pytest -m slow tests/validation", DOCS / "results" / "validation.md"),
    "bench": Block(BENCH, lambda p: bench_block(_json(p)), "make bench",
                   GUIDE / "performance.md"),
    "power": Block(POWER_JSON, lambda p: power_block(_json(p)), "benchmarks/power.py",
                   GUIDE / "report.md"),
}


def pages(names: list[str] | None = None) -> dict[Path, list[str]]:
    """The pages that hold the named blocks (default: all), each with its blocks in order."""
    found: dict[Path, list[str]] = {}
    for name in BLOCKS if names is None else names:
        found.setdefault(BLOCKS[name].page, []).append(name)
    return found


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def generate(name: str, source: Path | None = None) -> str:
    """The text of block ``name`` (without its marker lines), from ``source`` or its default
    source file; BlockError when the file or a key of it is missing."""
    block = BLOCKS[name]
    path = block.source if source is None else source
    if block.absent is not None and source is None and not path.exists():
        return block.absent
    try:
        return block.make(path)
    except BlockError as exc:
        raise BlockError(f"{name}: {exc}") from exc
    except FileNotFoundError as exc:
        raise BlockError(f"{name}: {_show(path)} is missing (written by "
                         f"{block.written_by})") from exc
    except OSError as exc:
        raise BlockError(f"{name}: cannot read {_show(path)}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BlockError(f"{name}: {_show(path)} is not valid JSON: {exc}") from exc
    except (KeyError, IndexError, TypeError) as exc:
        raise BlockError(f"{name}: {_show(path)} lacks {exc!r}; rerun {block.written_by}") \
            from exc


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _marker_lines(lines: list[str], marker: str) -> list[int]:
    """Indices of the lines that are ``marker``, outside code fences."""
    found, fenced = [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.strip() == marker:
            found.append(i)
    return found


def replace_block(readme: str, name: str, body: str, where: str = "the page") -> str:
    """``readme`` (a page's text) with the lines between block ``name``'s markers replaced by
    ``body``; all else, the marker lines included, kept byte for byte."""
    start, end = markers(name)
    lines = readme.splitlines(keepends=True)
    starts, ends = _marker_lines(lines, start), _marker_lines(lines, end)
    if not starts or not ends:
        raise BlockError(f"{where} has no {start if not starts else end} line")
    if len(starts) > 1 or len(ends) > 1:
        raise BlockError(f"{where} has more than one {start if len(starts) > 1 else end} line")
    if ends[0] < starts[0]:
        raise BlockError(f"{where}: {end} comes before {start}")
    inside = body + "\n" if body else ""
    return "".join(lines[:starts[0] + 1]) + inside + "".join(lines[ends[0]:])


def render(readme: str, names: list[str] | None = None,
           sources: dict[str, Path] | None = None) -> str:
    """``readme`` (a page's text) with each named block (default: all) regenerated from its
    source."""
    sources = sources or {}
    for name in BLOCKS if names is None else names:
        readme = replace_block(readme, name, generate(name, sources.get(name)))
    return readme


def _source(arg: str) -> tuple[str, Path]:
    name, sep, path = arg.partition("=")
    if not sep or name not in BLOCKS or not path:
        raise argparse.ArgumentTypeError(
            f"expected NAME=PATH with NAME one of {', '.join(BLOCKS)}, not {arg!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="blocks: " + "; ".join(f"{n} in {_show(b.page)} from {_show(b.source)}"
                                      for n, b in BLOCKS.items()))
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 with a unified diff when a block differs")
    parser.add_argument("--only", action="append", choices=list(BLOCKS), metavar="NAME",
                        help="regenerate or check this block only (repeatable); one of "
                             + ", ".join(BLOCKS))
    parser.add_argument("--page", "--readme", dest="page", type=Path, default=None,
                        help="the file that holds the named blocks (default: each block's "
                             "own page in docs/)")
    parser.add_argument("--source", action="append", type=_source, default=[],
                        metavar="NAME=PATH", help="read block NAME from PATH instead")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.only)) if args.only else list(BLOCKS)
    sources = dict(args.source)
    where = {args.page: names} if args.page is not None else pages(names)
    texts: dict[Path, tuple[str, str]] = {}  # page -> (now, generated)
    stale: list[str] = []
    try:
        for page, blocks in where.items():
            text = page.read_text(encoding="utf-8")
            wanted = text
            for name in blocks:
                new = replace_block(wanted, name, generate(name, sources.get(name)), _show(page))
                if new != wanted:
                    stale.append(name)
                wanted = new
            texts[page] = (text, wanted)
    except (OSError, BlockError) as exc:
        print(f"tools/readme.py: {exc}", file=sys.stderr)
        return 2
    if not stale:
        if not args.check:
            print(f"{', '.join(_show(p) for p in texts)}: {', '.join(names)} already match "
                  "their sources")
        return 0
    if args.check:
        for page, (text, wanted) in texts.items():
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), wanted.splitlines(keepends=True),
                fromfile=f"{_show(page)} (now)", tofile=f"{_show(page)} (generated)"))
        only = "".join(f" --only {n}" for n in stale)
        print(f"\nblock(s) {', '.join(stale)} differ from their sources; run: "
              f"python tools/readme.py{only}", file=sys.stderr)
        return 1
    for page, (text, wanted) in texts.items():
        if wanted != text:
            page.write_text(wanted, encoding="utf-8")
            print(f"{_show(page)}: rewrote {', '.join(n for n in where[page] if n in stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
