"""One measurement in a fresh process (so peak memory is that of one worker); prints JSON.

    worker.py growth MODEL CxGxR N     compile once, run N replicates as a worker does
    worker.py overhead MODEL CxGxR N   framework overhead per replicate, before and after

The replicates run through ``sbc.replicate`` exactly as a Dask worker runs them.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _task(model: str, size: str, n: int):
    from sbc.design import Design
    from sbc.replicate import BatchTask
    from sbc.spec import resolve_model
    from paths import DRAWS, TUNE

    from sbc.study import SamplerSettings

    c, g, r = (int(x) for x in size.split("x"))
    return BatchTask(resolve_model(model, ROOT / "studies"), None, Design(c, g, r),
                     SamplerSettings(chains=1, tune=TUNE, draws=DRAWS), "auto", 20260, tuple(range(n)))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process.  VmHWM, not ru_maxrss: on Linux ru_maxrss
    carries the parent's high-water mark across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # KiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def growth(model: str, size: str, n: int) -> dict:
    from sbc.replicate import prepare, run_replicate

    task = _task(model, size, n)
    start = time.perf_counter()
    prepared = prepare(task)
    compile_seconds = time.perf_counter() - start
    # The first fit in a process pays one-off costs (lazy imports, JIT of helpers); it is
    # reported apart so the per-replicate numbers are those of a warm worker.
    start = time.perf_counter()
    run_replicate(prepared, task, 10_000)
    first_seconds = time.perf_counter() - start
    records = [run_replicate(prepared, task, rep) for rep in task.reps]
    ok = [r for r in records if r["status"] == "ok"]
    return {"model": model, "design": size, "n_rows": task.design.n_rows, "n": n,
            "compile_seconds": compile_seconds, "first_replicate_seconds": first_seconds,
            "wall": [r["wall_seconds"] for r in ok],
            "sampler": [r["sampler_seconds"] for r in ok],
            "n_failed": len(records) - len(ok),
            "flag_low_ess": float(np.mean([r["flag_low_ess"] for r in ok])) if ok else None,
            "flag_divergent": float(np.mean([r["flag_divergent"] for r in ok])) if ok else None,
            "ess_bulk_min_median": float(np.median([r["ess_bulk_min"] for r in ok])) if ok else None,
            "record_bytes": float(np.mean([len(json.dumps(r)) for r in records])),
            "peak_rss_mb": _peak_rss_mb()}


def legacy_convergence(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """The per-scalar arviz_stats loop that sbc.diagnostics.convergence used before."""
    from arviz_stats.base import array_stats

    with np.errstate(all="ignore"):
        bulk = np.asarray(array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="bulk"))
        tail = np.asarray(array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="tail",
                                          prob=(0.05, 0.95)))
        rhat = (np.asarray(array_stats.rhat(matrix, chain_axis=0, draw_axis=1))
                if matrix.shape[0] > 1 else np.full(matrix.shape[2], np.nan))
    constant = np.ptp(matrix, axis=(0, 1)) == 0
    bulk = np.where(constant | ~np.isfinite(bulk), 0.0, bulk)
    tail = np.where(constant | ~np.isfinite(tail), 0.0, tail)
    return {"ess_bulk": bulk, "ess_tail": tail, "rhat": rhat}


CONFIGS = {
    # name: (ESS implementation, nutpie result path)
    "before": ("arviz_stats loop", "DataTree"),
    "vector_ess": ("vectorized", "DataTree"),
    "vector_ess_raw_trace": ("vectorized", "raw Arrow trace"),
}


def overhead(model: str, size: str, n: int) -> dict:
    """Round-robin over CONFIGS, one replicate each in turn, so load drift hits all alike."""
    import rawfit

    from sbc import diagnostics, replicate, seeding

    task = _task(model, size, n)
    prepared = replicate.prepare(task)
    vector = replicate.convergence
    out = {name: {"wall": [], "sampler": []} for name in CONFIGS}
    ess_diff, stored = 0.0, []
    replicate.run_replicate(prepared, task, 10_000)  # warm caches
    for rep in task.reps:
        for name, (ess, trace) in CONFIGS.items():
            replicate.convergence = legacy_convergence if ess.startswith("arviz") else vector
            rawfit.use_raw_trace(trace.startswith("raw"))
            record = replicate.run_replicate(prepared, task, rep)
            out[name]["wall"].append(record["wall_seconds"])
            out[name]["sampler"].append(record["sampler_seconds"])
            if name == "vector_ess_raw_trace":
                stored.append(record)
    replicate.convergence = vector
    rawfit.use_raw_trace(True)  # back to the library's own path
    # Same answers: the vectorized ESS against arviz_stats on this design's real fits.
    for rep in task.reps[:10]:
        fit = prepared.backend.fit(prepared.simulator.draw(
            seeding.replicate(1, "x", task.design.label, rep))[1], rep)
        matrix = diagnostics.stack_scalars(fit.draws, list(prepared.ranked))
        a, b = legacy_convergence(matrix), diagnostics.convergence(matrix)
        for key in ("ess_bulk", "ess_tail"):
            ess_diff = max(ess_diff, float(np.max(np.abs(a[key] - b[key]) /
                                                  np.maximum(1.0, np.abs(a[key])))))
    summary = {}
    pure = np.median(out["vector_ess_raw_trace"]["sampler"])
    for name, v in out.items():
        wall, sampler = np.array(v["wall"]), np.array(v["sampler"])
        summary[name] = {
            "ess": CONFIGS[name][0], "trace": CONFIGS[name][1],
            "wall_median": float(np.median(wall)), "sampler_median": float(np.median(sampler)),
            "overhead_median": float(np.median(wall - sampler)),
            "overhead_frac_records": float(np.median((wall - sampler) / sampler)),
            # against the sampler call alone (the raw-trace sampler time): the DataTree
            # conversion sits inside sampler_seconds in the current sampling.py
            "overhead_frac_vs_pure_sampler": float((np.median(wall) - pure) / pure),
        }
    return {"model": model, "design": size, "n_rows": task.design.n_rows, "n": n,
            "configs": summary, "ess_max_rel_diff_vs_arviz": ess_diff,
            "record_bytes": float(np.mean([len(json.dumps(r)) for r in stored]))}


def main(argv: list[str]) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    mode, model, size, n = argv
    result = {"growth": growth, "overhead": overhead}[mode](model, size, int(n))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
