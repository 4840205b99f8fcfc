"""Equal quality: what each SBC path costs per *clean* fit, at 90 to 40,000 rows.

A fit is clean when it has no divergence and the bulk and the tail ESS of every ranked scalar
are at least ``sbc.diagnostics.ESS_MIN`` (100); a failed fit is not clean.  Every path is
judged by that one rule, on the scalars sbc ranks (``paths.ranked_names``): sbc from its
records, the other paths from their own traces (``paths.fit_quality``, arviz-stats ESS).
R-hat and tree depth are left out of the rule because a one-chain fit has no R-hat.

Per design and path this reports the clean share (with one-sided 95 % Clopper-Pearson
bounds), clean fits per core-second (all in: setup, compile, start-up), the projected
seconds to ``N_CLEAN`` clean fits, effective draws per core-second (the smallest ESS of
each fit, summed) and leapfrog steps per replicate.  The paths of one design run
interleaved (peers before and after the rest) with the load average recorded per block.

The targets compare sbc (one worker) with each peer on clean fits per core-second at 90
rows.  A peer with few fits and none clean has an estimated rate of 0 and a ratio of inf,
which proves little: 0 clean fits in 6 leaves a clean share of up to 39 %.  So the
targets are judged on the *conservative* ratio, sbc's rate at the lower bound of its clean
share over the peer's at the upper bound of its own; the point ratio is printed beside it.
(Seconds to N clean fits would say the same as the point ratio: never, for a peer with
none.)
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import beta

from paths import DRAWS, TUNE, Block, naive_block, nutpie_block, sbc_cli, simuk_block
from sbc.design import Design
from sbc.diagnostics import ESS_MIN
from sbc.sampling import SamplerSettings

N_CLEAN = 100  # "seconds to N clean replicates"
CONFIDENCE = 0.95  # one-sided, for each bound of a clean share
TARGET_DESIGN = "10x3x3"
# clean fits per core-second at TARGET_DESIGN, sbc with one worker over the peer
TARGETS = {"simuk": 30.0, "naive": 25.0}
NAIVE_SETTINGS = {"tune": TUNE, "draws": DRAWS, "chains": 1}  # the loop as written by hand
# which draws a path's leapfrog steps cover: pm.sample drops the warm-up from its trace
STEPS_COVER = {"naive": "kept draws", "simuk": "kept draws", "nutpie": "tuning and draws",
               "sbc_1": "tuning and draws, every attempt", "sbc_2": "tuning and draws, every attempt"}
PATH_ORDER = ("sbc_1", "sbc_2", "nutpie", "simuk", "naive")


@dataclass(frozen=True)
class SizePlan:
    """Replicates per path at one design: sbc and nutpie in one block each, each peer in
    two blocks of ``peer`` replicates that stop early once ``budget`` seconds are spent."""

    design: str
    sbc: int
    nutpie: int
    peer: int
    budget: float


PLAN = (SizePlan("10x3x3", 500, 200, 6, 300), SizePlan("30x10x3", 100, 60, 3, 300),
        SizePlan("100x30x3", 12, 12, 6, 600), SizePlan("100x100x4", 4, 4, 1, 900))
QUICK_PLAN = (SizePlan("10x3x3", 6, 4, 1, 60), SizePlan("30x10x3", 4, 2, 1, 60))


def is_clean(fit: dict) -> bool:
    """No failure, no divergence, bulk and tail ESS of every ranked scalar >= ESS_MIN."""
    return (not fit["failed"] and fit["n_divergent"] == 0
            and min(fit["ess_bulk_min"], fit["ess_tail_min"]) >= ESS_MIN)


def share_bounds(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds (lower, upper) of a share seen as k in n."""
    lower = 0.0 if k == 0 else float(beta.ppf(1 - confidence, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(confidence, k + 1, n - k))
    return lower, upper


def path_quality(blocks: list[Block]) -> dict:
    """Pool the blocks of one path at one design into its quality and cost measures."""
    fits = [f for b in blocks for f in b.fits]
    n, cores = len(fits), blocks[0].cores
    clean = sum(is_clean(f) for f in fits)
    total = sum(b.total_seconds for b in blocks)
    setup = float(np.mean([b.setup_seconds for b in blocks]))  # paid once per run
    busy = total - sum(b.setup_seconds for b in blocks)
    core_seconds = total * cores
    lower, upper = share_bounds(clean, n)
    ess = [0.0 if f["failed"] else min(f["ess_bulk_min"], f["ess_tail_min"]) for f in fits]
    return {
        "n": n, "clean": clean, "cores": cores, "total_seconds": total, "setup_seconds": setup,
        "core_seconds": core_seconds,
        "clean_share": clean / n, "clean_share_bounds": [lower, upper],
        "flagged_share": 1 - clean / n,
        "divergent_share": float(np.mean([f["n_divergent"] > 0 for f in fits])),
        "low_ess_share": float(np.mean([not f["failed"] and e < ESS_MIN
                                        for f, e in zip(fits, ess)])),
        "failed_share": float(np.mean([f["failed"] for f in fits])),
        "clean_per_core_second": clean / core_seconds,
        "clean_per_core_second_bounds": [lower * n / core_seconds, upper * n / core_seconds],
        # setup once, then the measured seconds per clean fit
        "seconds_to_n_clean": setup + N_CLEAN * busy / clean if clean else math.inf,
        "effective_draws_per_core_second": float(np.sum(ess)) / core_seconds,
        "gradient_evals_median": float(np.median([f["gradient_evals"] for f in fits])),
        "seconds_per_replicate_median": float(np.median([f["seconds"] for f in fits])),
        "load": [[round(b.load_before, 2), round(b.load_after, 2)] for b in blocks],
        "fits": fits,
    }


def ratio(a: dict, b: dict) -> dict:
    """Clean fits per core-second of path ``a`` over path ``b``: the point estimate and the
    conservative one (a at its lower bound, b at its upper bound)."""
    point = (a["clean_per_core_second"] / b["clean_per_core_second"]
             if b["clean"] else math.inf if a["clean"] else math.nan)
    bound = a["clean_per_core_second_bounds"][0] / b["clean_per_core_second_bounds"][1]
    text = (f"inf (peer had no clean fit in {b['n']})" if math.isinf(point)
            else f"{point:.3g}")
    return {"point": point, "conservative": bound, "text": text}


def size_ratios(paths: dict) -> dict:
    """sbc (one and two workers) over every other path, on clean fits per core-second."""
    return {f"{a}_vs_{b}": ratio(paths[a], paths[b])
            for a in ("sbc_1", "sbc_2") for b in ("simuk", "naive", "nutpie")
            if a in paths and b in paths}


def measure(plan: tuple[SizePlan, ...], workdir: Path, log) -> list[dict]:
    """Every path at every design of ``plan`` (see :func:`measure_size`)."""
    return [measure_size(size, workdir, log) for size in plan]


def measure_size(size: SizePlan, workdir: Path, log) -> dict:
    """Every path at one design, interleaved: naive, simuk, the bare nutpie call, sbc with
    one worker, with two, then simuk and naive again."""
    design = Design.from_label(size.design)
    frame = design.frame()
    blocks: dict[str, list[Block]] = {name: [] for name in PATH_ORDER}
    _peer_blocks(frame, size, 1, blocks, log)
    log(f"quality {size.design} nutpie x{size.nutpie}")
    blocks["nutpie"].append(nutpie_block(frame, size.nutpie, seed=5, budget=size.budget))
    for workers in (1, 2):
        log(f"quality {size.design} sbc run --workers {workers} --sims {size.sbc}")
        blocks[f"sbc_{workers}"].append(sbc_cli(
            workdir, f"q{size.design}_w{workers}",
            (design.n_cell_lines, design.n_genes, design.n_reps), size.sbc, workers,
            tune=None, draws=None, seed=11))
    _peer_blocks(frame, size, 2, blocks, log)
    paths = {name: path_quality(bs) for name, bs in blocks.items()}
    return {"design": size.design, "rows": len(frame), "plan": asdict(size), "paths": paths,
            "ratios": size_ratios(paths)}


def _peer_blocks(frame, size: SizePlan, seed: int, blocks: dict, log) -> None:
    """One block of the plain loop and one of simuk (its defaults), each within the budget."""
    log(f"quality {size.design} naive up to x{size.peer}")
    blocks["naive"].append(naive_block(frame, size.peer, seed, NAIVE_SETTINGS, size.budget))
    log(f"quality {size.design} simuk up to x{size.peer}")
    blocks["simuk"].append(simuk_block(frame, size.peer, seed, None, size.budget))


def result(sizes: list[dict], quick: bool, started: float, command: str = "") -> dict:
    """quality.json: the measured designs with the settings and targets they are read by."""
    return {"quick": quick, "command": command, "sizes": sizes,
            "not_measured": [s.design for s in PLAN
                             if s.design not in {m["design"] for m in sizes}],
            "n_clean": N_CLEAN, "ess_min": ESS_MIN,
            "confidence": CONFIDENCE, "targets": {"design": TARGET_DESIGN, **TARGETS},
            "settings": {"sbc": asdict(SamplerSettings()), "naive": NAIVE_SETTINGS,
                         "simuk": "simuk.SBC defaults (pm.sample defaults)",
                         "nutpie": "sbc's SamplerSettings defaults, one chain"},
            "steps_cover": STEPS_COVER, "cpus": os.cpu_count(),
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "bench_seconds": time.perf_counter() - started, "load_end": os.getloadavg()[0]}


def missed_targets(res: dict) -> list[str]:
    """Every equal-quality target missed (conservative ratio below target), or not measured."""
    t = res["targets"]
    at = next((s for s in res["sizes"] if s["design"] == t["design"]), None)
    if at is None:
        return [f"clean fits per core-second: design {t['design']} not measured"]
    out = []
    for peer in ("simuk", "naive"):
        r = at["ratios"].get(f"sbc_1_vs_{peer}")
        if r is None:
            out.append(f"sbc_1_vs_{peer} clean fits per core-second: not measured")
        elif not r["conservative"] >= t[peer]:
            out.append(f"sbc_1_vs_{peer} clean fits per core-second {r['conservative']:.3g} "
                       f"(conservative; point {r['text']}) < {t[peer]:g}")
    return out


def _num(x: float) -> str:
    if math.isinf(x):
        return "never"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _settings_text(name: str, p: dict, res: dict) -> str:
    s = res["settings"]["sbc"]
    sbc = (f"tune {s['tune']}, draws {s['draws']}, target_accept {s['target_accept']}, "
           f"{s['adaptation']}, rescue {'on' if s['rescue'] else 'off'}")
    return {"sbc_1": f"`sbc run --workers 1`, defaults ({sbc})",
            "sbc_2": "`sbc run --workers 2`, the same",
            "nutpie": f"compile once, `nutpie.sample` per fit, 1 chain ({sbc.split(', rescue')[0]})",
            "simuk": f"`simuk.SBC` defaults: `pm.sample()` defaults, {p['cores']} chains on "
                     f"{p['cores']} cores here",
            "naive": "`pm.sample(tune=1000, draws=1000, chains=1)`, rebuilt per fit"}[name]


def markdown(res: dict) -> str:
    """quality.md: one table per design and the ratios against the targets."""
    t = res["targets"]
    lines = [f"# Equal quality: clean fits per core-second{' (quick smoke run)' if res['quick'] else ''}",
             "", (f"A fit is clean with no divergence and bulk and tail ESS >= {res['ess_min']} "
                  "for every ranked scalar of `crispr_seed`; every path is judged on the same "
                  "scalars by the same rule (see `benchmarks/README.md`). "
                  f"{res['cpus']} CPUs, shared with other jobs: the 1-minute load average before "
                  "and after each block is listed; read the ratios, which come from one "
                  "interleaved run. Bounds: one-sided "
                  f"{res['confidence']:.0%} Clopper-Pearson on the clean share. Seconds to "
                  f"{res['n_clean']} clean: setup once plus the measured seconds per clean fit."),
             "", (f"Run: `{res['command']}`; designs measured: "
                  f"{', '.join(s['design'] for s in res['sizes']) or 'none'}"
                  + (f"; not measured in this run: {', '.join(res['not_measured'])}"
                     if res["not_measured"] else "") + "."), ""]
    for size in res["sizes"]:
        lines += [f"## {size['design']} ({size['rows']:,} rows)", "",
                  ("| path | settings | fits | clean | flagged (divergent / ESS<100 / failed) | "
                   "clean fits per core-second [bounds] | seconds to "
                   f"{res['n_clean']} clean | effective draws per core-second | leapfrog steps "
                   "per replicate (median) | s per replicate (median) | load |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in PATH_ORDER:
            p = size["paths"].get(name)
            if p is None:
                continue
            lo, hi = p["clean_per_core_second_bounds"]
            lines.append(
                f"| {name} | {_settings_text(name, p, res)} | {p['n']} | {p['clean']} | "
                f"{p['flagged_share']:.0%} ({p['divergent_share']:.0%} / "
                f"{p['low_ess_share']:.0%} / {p['failed_share']:.0%}) | "
                f"{_num(p['clean_per_core_second'])} [{_num(lo)}, {_num(hi)}] | "
                f"{_num(p['seconds_to_n_clean'])} | "
                f"{_num(p['effective_draws_per_core_second'])} | "
                f"{p['gradient_evals_median']:,.0f} ({res['steps_cover'][name]}) | "
                f"{_num(p['seconds_per_replicate_median'])} | {p['load']} |")
        lines += ["", "| clean fits per core-second | point | conservative |", "|---|---|---|"]
        for key, r in size["ratios"].items():
            lines.append(f"| {key} | {r['text']} | {_num(r['conservative'])} |")
        lines.append("")
    lines += ["## Targets", "", f"At {t['design']}, on the conservative ratio:", ""]
    missed = missed_targets(res)
    for peer in ("simuk", "naive"):
        bad = [m for m in missed if m.startswith(f"sbc_1_vs_{peer}") or "not measured" in m]
        lines.append(f"- sbc_1 over {peer} >= {t[peer]:g}: {'missed' if bad else 'met'}")
    lines += ["", f"Equal-quality part: {res['bench_seconds'] / 60:.1f} minutes; load at the "
              f"end {res['load_end']:.1f}; written {res['written']}."]
    return "\n".join(lines) + "\n"
