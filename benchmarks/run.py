"""`make bench`: every speed number of the project, measured in one run, reported as ratios.

Two parts.  The speed part writes benchmarks/results.json, results.md and growth.png:
seconds per replicate of every path at the same sampler settings.  The equal-quality part
(benchmarks/quality.py) writes benchmarks/quality.json and quality.md: clean fits per
core-second of every path at its own settings, 90 to 40,000 rows; its targets are the
ratios to the peers.  The machine is shared, so the paths are interleaved (peers before and
after the rest) and the load average is recorded around every block; compare ratios from
one run, not absolute seconds across runs.

    .venv/bin/python benchmarks/run.py            # both parts (about 2 hours)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run of every part (a few minutes)
    .venv/bin/python benchmarks/run.py --part quality --sizes 10x3x3,30x10x3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quality  # noqa: E402
from paths import (DRAWS, TUNE, Block, naive_block, run_python, sbc_cli,  # noqa: E402
                   simuk_block)

SEED_DESIGN = (10, 3, 3)
# sbc's ratios to simuk and the plain loop have their targets on clean fits per core-second
# (quality.TARGETS); per replicate at equal settings they are reported, not judged
TARGETS = {"two_vs_one_worker": 1.8, "study_1000_seconds_2_workers": 300,
           "overhead_frac_90_rows": 0.10}
SLOW_SETTINGS = {"tune": TUNE, "draws": DRAWS, "chains": 1}
# (design, replicates): 90 to 40,000 rows; 9,000 rows is where the seed's form mixes badly
GROWTH = [("10x3x3", 20), ("30x10x3", 10), ("30x30x3", 8), ("100x30x3", 8), ("100x100x4", 2)]
OVERHEAD = [("crispr_seed", "10x3x3", 30), ("crispr_screen", "10x3x3", 30),
            ("crispr_screen", "30x5x3", 20)]


def spread(x) -> dict:
    """Median and spread (quartiles, extremes) of seconds per replicate."""
    x = np.asarray(x, dtype=float)
    return {"n": int(x.size), "median": float(np.median(x)), "q25": float(np.quantile(x, 0.25)),
            "q75": float(np.quantile(x, 0.75)), "min": float(x.min()), "max": float(x.max())}


def path_summary(blocks: list[Block]) -> dict:
    """Pool the blocks of one path: setup, seconds per replicate, replicates per core-second."""
    n = sum(b.n for b in blocks)
    total = sum(b.total_seconds for b in blocks)
    per = [t for b in blocks for t in b.per_replicate]
    cores = blocks[0].cores
    return {"n": n, "cores": cores, "total_seconds": total,
            "setup_seconds": float(np.mean([b.setup_seconds for b in blocks])),
            "seconds_per_replicate": spread(per),
            # everything counted: setup, compile, start-up, store and report
            "replicates_per_core_second": n / (total * cores),
            # the steady state: replicates per second of one busy core, setup left out
            "replicates_per_core_second_steady": len(per) / float(np.sum(per)),
            "load": [[round(b.load_before, 2), round(b.load_after, 2)] for b in blocks],
            **({"extra": {k: v for b in blocks for k, v in b.extra.items()
                          if k not in ("sampler_seconds",)}} if blocks[0].extra else {})}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", flush=True)


def measure(quick: bool) -> dict:
    n_slow = 2 if quick else 10  # per block; two blocks per slow path
    n_study = 40 if quick else 1000
    growth_plan = [(d, 2) for d, _ in GROWTH[:3]] if quick else GROWTH
    overhead_plan = [(m, d, 4) for m, d, _ in OVERHEAD[:1]] if quick else OVERHEAD
    c, g, r = SEED_DESIGN
    from sbc.design import Design

    frame = Design(c, g, r).frame()
    started = time.perf_counter()
    result: dict = {"overhead": [], "growth": []}

    for model, size, n in overhead_plan:
        log(f"overhead {model} {size} x{n}")
        result["overhead"].append(run_python(["overhead", model, size, str(n)]))

    blocks: dict[str, list[Block]] = {"naive": [], "simuk": [], "sbc_1": [], "sbc_2": []}
    with tempfile.TemporaryDirectory(prefix="sbc-bench-") as tmp:
        # ABBA order: slow paths before and after the sbc runs, so drifting load hits all
        log(f"naive x{n_slow}")
        blocks["naive"].append(naive_block(frame, n_slow, 1, SLOW_SETTINGS))
        log(f"simuk x{n_slow}")
        blocks["simuk"].append(simuk_block(frame, n_slow, 1, SLOW_SETTINGS))
        log(f"sbc run --workers 1 --sims {n_study}")
        blocks["sbc_1"].append(sbc_cli(Path(tmp), "w1", SEED_DESIGN, n_study, 1, TUNE, DRAWS, 7))
        log(f"sbc run --workers 2 --sims {n_study}")
        blocks["sbc_2"].append(sbc_cli(Path(tmp), "w2", SEED_DESIGN, n_study, 2, TUNE, DRAWS, 7))
        log(f"simuk x{n_slow}")
        blocks["simuk"].append(simuk_block(frame, n_slow, 2, SLOW_SETTINGS))
        log(f"naive x{n_slow}")
        blocks["naive"].append(naive_block(frame, n_slow, 2, SLOW_SETTINGS))

    for size, n in growth_plan:
        log(f"growth {size} x{n}")
        result["growth"].append(run_python(["growth", "crispr_seed", size, str(n)]))

    paths = {name: path_summary(bs) for name, bs in blocks.items()}
    rate = {name: p["replicates_per_core_second"] for name, p in paths.items()}
    steady = {name: p["replicates_per_core_second_steady"] for name, p in paths.items()}
    seed_overhead = result["overhead"][0]["configs"]
    result.update({
        "sbc_vs_simuk": rate["sbc_1"] / rate["simuk"],
        "sbc_vs_naive": rate["sbc_1"] / rate["naive"],
        # throughput of 2 workers over 1 at the same study (wall-clock)
        "two_vs_one_worker": paths["sbc_1"]["total_seconds"] / paths["sbc_2"]["total_seconds"],
        # the same with setup left out: busy seconds of one worker over those of two
        "two_vs_one_worker_steady": 2 * steady["sbc_2"] / steady["sbc_1"],
        "sbc_vs_simuk_steady": steady["sbc_1"] / steady["simuk"],
        "sbc_vs_naive_steady": steady["sbc_1"] / steady["naive"],
        # measured directly in a full run; a quick run scales its busy part to 1,000
        "study_1000_seconds_2_workers": paths["sbc_2"]["setup_seconds"]
        + (paths["sbc_2"]["total_seconds"] - paths["sbc_2"]["setup_seconds"]) * 1000 / n_study,
        "overhead_frac_90_rows": seed_overhead["vector_ess_raw_trace"]["overhead_frac_records"],
        "overhead_frac_90_rows_current_fit": seed_overhead["vector_ess"]["overhead_frac_records"],
        "paths": paths,
        "targets": TARGETS,
        "settings": {"model": "crispr_seed", "design": "x".join(map(str, SEED_DESIGN)),
                     "chains": 1, "tune": TUNE, "draws": DRAWS, "study_replicates": n_study,
                     "slow_path_replicates": 2 * n_slow, "quick": quick,
                     "sbc_sampler": sampler_settings()},
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "versions": {p: version(p) for p in ("pymc", "nutpie", "simuk", "pytensor",
                                                         "arviz-stats", "dask")}},
        "bench_seconds": time.perf_counter() - started,
        "load_end": os.getloadavg()[0],
    })
    return result


def sampler_settings() -> dict:
    """The settings of every sbc fit here: SamplerSettings' defaults with TUNE and DRAWS."""
    from sbc.study import SamplerSettings

    return asdict(SamplerSettings(chains=1, tune=TUNE, draws=DRAWS))


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def markdown(res: dict) -> str:
    """results.md: the tables a reader needs, from results.json alone."""
    s = res["settings"]
    lines = [f"# Benchmark results{' (quick smoke run)' if s['quick'] else ''}", "",
             (f"Model `{s['model']}`, design {s['design']}, 1 chain, {s['tune']} tune + "
             f"{s['draws']} draws. {res['machine']['cpus']} CPUs, shared with other jobs: "
             "load averages (1 min) before/after each block are listed; read the ratios, "
             "which come from one interleaved run."), "",
             "## Paths", "",
             ("| path | replicates | setup/compile s | s per replicate: median [q25, q75] | "
             "replicates per core-second (all in) | steady | load |"),
             "|---|---|---|---|---|---|---|"]
    for name, p in res["paths"].items():
        sp = p["seconds_per_replicate"]
        lines.append(f"| {name} | {p['n']} | {fmt(p['setup_seconds'])} | {fmt(sp['median'])} "
                     f"[{fmt(sp['q25'])}, {fmt(sp['q75'])}] | "
                     f"{fmt(p['replicates_per_core_second'])} | "
                     f"{fmt(p['replicates_per_core_second_steady'])} | {p['load']} |")
    lines += ["", ("setup: naive rebuilds and recompiles inside every replicate (its setup is "
              "what lies between replicates); simuk's is the prior-predictive draw and the "
              "rank computation; sbc's is process and Dask start, compile per worker, store "
              "and report."), "", "## Ratios against targets", "",
              "| ratio | measured | steady state | target |", "|---|---|---|---|"]
    t = res["targets"]
    for key in ("sbc_vs_simuk", "sbc_vs_naive"):
        lines.append(f"| {key}, per replicate at equal settings | {fmt(res[key])} | "
                     f"{fmt(res[key + '_steady'])} | on clean fits per core-second: quality.md |")
    ok = "met" if res["two_vs_one_worker"] >= t["two_vs_one_worker"] else "missed"
    lines.append(f"| two_vs_one_worker | {fmt(res['two_vs_one_worker'])} ({ok}) | "
                 f"{fmt(res['two_vs_one_worker_steady'])} | >= {t['two_vs_one_worker']} |")
    study = res["study_1000_seconds_2_workers"]
    lines.append(f"| 1,000-replicate study, 2 workers, seconds | {fmt(study)} "
                 f"({'met' if study < t['study_1000_seconds_2_workers'] else 'missed'}) | | "
                 f"< {t['study_1000_seconds_2_workers']} |")
    ov = res["overhead_frac_90_rows"]
    lines.append(f"| framework overhead / sampler time at 90 rows | {ov:.1%} "
                 f"({'met' if ov < t['overhead_frac_90_rows'] else 'missed'}) | | "
                 f"< {t['overhead_frac_90_rows']:.0%} |")
    lines += ["", ("## Framework overhead per replicate (in one process, configurations "
              "round-robin)"), "",
              ("Overhead = record `wall_seconds` - `sampler_seconds`. `sbc/sampling.py` reads nutpie's "
              "raw Arrow trace; the DataTree configurations patch the old path back in, and their "
              "conversion then sits inside `sampler_seconds`, so the last column compares wall "
              "time with the sampler call alone (raw-trace sampler time)."), "",
              ("| model | design (rows) | configuration | wall s | sampler s | overhead / sampler "
              "(records) | wall over sampler call alone |"), "|---|---|---|---|---|---|---|"]
    for o in res["overhead"]:
        for name, c in o["configs"].items():
            lines.append(f"| {o['model']} | {o['design']} ({o['n_rows']}) | {name}: {c['ess']} ESS, "
                         f"{c['trace']} | {fmt(c['wall_median'])} | {fmt(c['sampler_median'])} | "
                         f"{c['overhead_frac_records']:.1%} | "
                         f"{c['overhead_frac_vs_pure_sampler']:.1%} |")
    diffs = max(o["ess_max_rel_diff_vs_arviz"] for o in res["overhead"])
    lines += ["", (f"Vectorized ESS against arviz_stats on these fits: largest relative "
              f"difference {diffs:.1e} (same answers)."), "",
              "## Cost growth (seed model, one worker process per design)", "",
              ("| design | rows | replicates | compile s | first replicate s | "
               "s per replicate: median [min, max] | "
              "sampler s median | peak memory per worker, MB | flag_low_ess | flag_divergent |"),
              "|---|---|---|---|---|---|---|---|---|---|"]
    for gr in res["growth"]:
        w = spread(gr["wall"]) if gr["wall"] else None
        lines.append(f"| {gr['design']} | {gr['n_rows']:,} | {gr['n']} | "
                     f"{fmt(gr['compile_seconds'])} | {fmt(gr['first_replicate_seconds'])} | "
                     + (f"{fmt(w['median'])} [{fmt(w['min'])}, {fmt(w['max'])}] | "
                        f"{fmt(float(np.median(gr['sampler'])))}" if w else "failed | ")
                     + f" | {gr['peak_rss_mb']:.0f} | {_frac(gr['flag_low_ess'])} | "
                     f"{_frac(gr['flag_divergent'])} |")
    lines += ["", "![seconds per replicate and memory against design size](growth.png)", "",
              f"Whole benchmark: {res['bench_seconds'] / 60:.1f} minutes; load at the end "
              f"{res['load_end']:.1f}. Versions: "
              + ", ".join(f"{k} {v}" for k, v in res["machine"]["versions"].items()) + "."]
    return "\n".join(lines) + "\n"


def _frac(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    growth = [g for g in res["growth"] if g["wall"]]
    rows = np.array([g["n_rows"] for g in growth])
    med = np.array([np.median(g["wall"]) for g in growth])
    lo = med - np.array([np.min(g["wall"]) for g in growth])
    hi = np.array([np.max(g["wall"]) for g in growth]) - med
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.errorbar(rows, med, yerr=[lo, hi], marker="o", capsize=3, label="wall (record)")
    a.plot(rows, [np.median(g["sampler"]) for g in growth], "s--", label="sampler call")
    for g, x, y in zip(growth, rows, med):
        a.annotate(g["design"], (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    a.set(xscale="log", yscale="log", xlabel="rows in design", ylabel="seconds per replicate",
          title="Cost per replicate (crispr_seed, 1 chain, 1000+1000)")
    a.legend()
    b.plot(rows, [g["peak_rss_mb"] for g in growth], "o-")
    b.set(xscale="log", xlabel="rows in design", ylabel="peak resident memory, MB",
          title="Peak memory of one worker process")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every part")
    parser.add_argument("--out", default=str(HERE), help="directory for results.* and quality.*")
    parser.add_argument("--part", choices=("all", "speed", "quality"), default="all",
                        help="run both parts (default) or one")
    parser.add_argument("--sizes", help="equal-quality designs, comma-separated, from "
                        + ", ".join(s.design for s in quality.PLAN) + " (default: all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    missed = []
    if args.part in ("all", "speed"):
        res = measure(args.quick)
        (out / "results.json").write_text(json.dumps(res, indent=1, default=_jsonable) + "\n")
        plot(res, out / "growth.png")
        (out / "results.md").write_text(markdown(res))
        log(f"wrote {out / 'results.json'}, results.md, growth.png")
        print(markdown(res))
        missed += missed_targets(res)
    if args.part in ("all", "quality"):
        res = measure_quality(args.quick, args.sizes)
        (out / "quality.json").write_text(json.dumps(_finite(res), indent=1) + "\n")
        (out / "quality.md").write_text(quality.markdown(res))
        log(f"wrote {out / 'quality.json'}, quality.md")
        print(quality.markdown(res))
        missed += quality.missed_targets(res)
    if missed and not args.quick:  # a missed target fails the run: it is a bug or a finding
        log("targets missed: " + "; ".join(missed))
        return 1
    return 0


def measure_quality(quick: bool, sizes: str | None) -> dict:
    """The equal-quality part at the designs named in ``sizes`` (all of the plan if None)."""
    plan = quality.QUICK_PLAN if quick else quality.PLAN
    if sizes:
        known = [s.design for s in quality.PLAN]
        wanted = [d.strip() for d in sizes.split(",") if d.strip()]
        unknown = [d for d in wanted if d not in known]
        if unknown:
            raise SystemExit(f"--sizes: unknown design {', '.join(unknown)}; "
                             f"choose from {', '.join(known)}")
        plan = tuple(s for s in plan if s.design in wanted)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sbc-bench-quality-") as tmp:
        sizes_measured = quality.measure(plan, Path(tmp), log)
    command = " ".join(["benchmarks/run.py", *sys.argv[1:]])
    return quality.result(sizes_measured, quick, started, command)


def _finite(x):
    """JSON without Infinity or NaN (not JSON): such numbers become null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float | np.floating) and not math.isfinite(x):
        return None
    return _jsonable(x) if isinstance(x, np.generic) else x


def missed_targets(res: dict) -> list[str]:
    """Every stated target the run missed, as 'name: measured vs target'."""
    t, out = res["targets"], []
    for key in ("two_vs_one_worker",):
        if not res[key] >= t[key]:
            out.append(f"{key} {res[key]:.3g} < {t[key]}")
    for key in ("study_1000_seconds_2_workers", "overhead_frac_90_rows"):
        if not res[key] < t[key]:
            out.append(f"{key} {res[key]:.3g} >= {t[key]}")
    return out


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if hasattr(x, "__dataclass_fields__"):
        return asdict(x)
    raise TypeError(type(x))


if __name__ == "__main__":
    sys.exit(main())
