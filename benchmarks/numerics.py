"""What switching numba's fastmath off costs (sbc.numerics): the same replicates fitted with
the model compiled with fastmath and without, alternating fit by fit in one process, so both
see the same machine load.  Reported per design: median seconds per fit, gradient evaluations
(leapfrog steps) per second, and the ratio off / on.

    .venv/bin/python benchmarks/numerics.py            # writes benchmarks/numerics.{md,json}
    .venv/bin/python benchmarks/numerics.py --quick    # 4 fits per design, no files
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

DESIGNS = ("10x3x3", "30x10x3", "100x30x3")
MODEL = "crispr_screen"


def compiled(spec, fastmath: bool):
    import nutpie
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=fastmath):
        start = time.perf_counter()
        out = nutpie.compile_pymc_model(spec.fit_model, var_names=list(spec.parameters))
        return out, time.perf_counter() - start


def fit(model, y, seed: int) -> tuple[float, int]:
    """Seconds and leapfrog steps of one fit with the study defaults."""
    import nutpie
    import pyarrow as pa

    from sbc.sampling import RESPONSE_DATA_NAME

    start = time.perf_counter()
    raw = nutpie.sample(model.with_data(**{RESPONSE_DATA_NAME: y}), chains=1, cores=1, tune=500,
                        draws=1000, seed=seed, target_accept=0.9, adaptation="low_rank",
                        progress_bar=False, return_raw_trace=True)
    seconds = time.perf_counter() - start
    _, stats = raw.get_arrow_trace()
    steps = sum(int(np.sum(pa.array(batch.column("n_steps")).to_numpy(zero_copy_only=False)))
                for batch in stats)
    return seconds, steps


def measure(design: str, n_fits: int) -> dict:
    from sbc.design import Design
    from sbc.simulate import Simulator
    from sbc.spec import make_spec, resolve_model

    spec = make_spec(resolve_model(MODEL), Design.from_label(design).frame())
    simulator = Simulator(spec)
    variants = {"on": compiled(spec, True), "off": compiled(spec, False)}
    rows = {k: [] for k in variants}
    for i in range(n_fits):
        _, y = simulator.draw(np.random.SeedSequence([7, i]))
        order = ("on", "off") if i % 2 == 0 else ("off", "on")  # alternate who goes first
        for key in order:
            rows[key].append(fit(variants[key][0], y, 1000 + i))
    out = {"design": design, "fits": n_fits}
    for key, (_, compile_s) in variants.items():
        seconds = np.array([r[0] for r in rows[key]])
        steps = np.array([r[1] for r in rows[key]])
        out[key] = {"compile_s": compile_s, "median_s": float(np.median(seconds)),
                    "grad_per_s": float(steps.sum() / seconds.sum()),
                    "steps_median": float(np.median(steps))}
    out["ratio_s"] = out["off"]["median_s"] / out["on"]["median_s"]
    out["ratio_grad_per_s"] = out["off"]["grad_per_s"] / out["on"]["grad_per_s"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n_fits = 4 if args.quick else 20
    results = [measure(d, n_fits) for d in DESIGNS]
    lines = ["# numba fastmath on vs off (sbc.numerics)", "",
             f"`{MODEL}`, study defaults (nutpie, tune 500, draws 1000, target_accept 0.9, "
             f"low-rank mass matrix), {n_fits} replicates simulated from the prior per design, "
             "each fitted by both compiled variants in alternating order in one process "
             f"({platform.processor() or platform.machine()}, "
             f"{time.strftime('%Y-%m-%d')}; `.venv/bin/python benchmarks/numerics.py`).", "",
             "Gradient evaluations (leapfrog steps) per second compare the compiled code alone:"
             " the two variants take different trajectories, so their step counts differ.", "",
             "| design | s / fit (on) | s / fit (off) | off / on | gradients / s (on) | "
             "gradients / s (off) | off / on |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['design']} | {r['on']['median_s']:.3f} | {r['off']['median_s']:.3f} | "
                     f"{r['ratio_s']:.2f} | {r['on']['grad_per_s']:,.0f} | "
                     f"{r['off']['grad_per_s']:,.0f} | {r['ratio_grad_per_s']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        (HERE / "numerics.md").write_text(text)
        (HERE / "numerics.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
