"""The golden run: what a small study and a small plan store and decide, byte for byte where
it can be.  ``tests/test_golden.py`` reruns them and compares with golden.json, so a
restructuring of the code that changes any stored rank, truth, status, verdict or plan
decision fails a test.

    .venv/bin/python tests/golden/make_golden.py     rewrite golden.json (only on purpose)

Three runs, each in this process (no Dask):

- ``exact``: two exact-posterior models on two designs, 12 replicates each (any machine);
- ``nutpie``: the flagship ``crispr_screen`` at 4 x 3 x 2 with nutpie at the default sampler
  settings, 6 replicates: its draws depend on the machine's floating point, so it is compared
  only where the library versions and the machine match those recorded (slow test);
- ``plan``: ``sbc plan`` on the exact model of tests/plan_models over a 4 x 3 grid.
"""

from __future__ import annotations

import io
import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN = HERE / "golden.json"
sys.path.insert(0, str(ROOT / "tests"))
from support import TINY_GENOME_PLAN  # noqa: E402

EXACT_STUDY = """
name = "golden_exact"
models = ["{root}/models/normal_known_sigma.py", "{root}/models/beta_binomial.py"]
seed = 7
simulations = 12

[[designs]]
cell_lines = 3
genes = 3
reps = 2

[[designs]]
cell_lines = 1
genes = 4
reps = 1

[sampler]
name = "exact"
draws = 500
"""

NUTPIE_STUDY = """
name = "golden_nutpie"
models = ["{root}/models/crispr_screen.py"]
seed = 11
simulations = 6

[[designs]]
cell_lines = 4
genes = 3
reps = 2
"""

PLAN = """
name = "golden_plan"
seed = 11
model = "{root}/tests/plan_models/normal_mean.py"
probability = 0.8

[space]
cell_lines = [2, 4, 8, 12]
genes = [1]
reps = [1, 3, 6]
monotone = ["cell_lines", "reps"]

[target]
quantity = "mu"
criterion = "sd"
below = 0.155

[cost]
per_cell_line = 10
per_screen = 1

[search]
batch = 20
max_simulations = 40

[sampler]
name = "exact"
draws = 4000
"""


# the genome tests' tiny plan (tests/support.py) under its own name
GENOME_PLAN = TINY_GENOME_PLAN.replace('name = "tiny_genome"', 'name = "golden_genome"')


def _g(x) -> float | None:
    """A float to 12 significant digits (JSON-stable), None for NaN."""
    x = float(x)
    return None if x != x else float(f"{x:.12g}")


def run_study(template: str, out: Path) -> dict:
    from sbc.pipeline import run_study as run
    from sbc.study import load_study

    path = out.parent / f"{out.name}.toml"
    path.write_text(template.format(root=ROOT))
    summary = run(load_study(path), out, workers=0, progress_stream=io.StringIO())
    import pandas as pd

    params = pd.read_parquet(out / "parameters.parquet").sort_values(
        ["model", "design", "rep", "name"])
    reps = pd.read_parquet(out / "replicates.parquet").sort_values(["model", "design", "rep"])
    cal = summary.calibration
    verdicts = {f"{m} {d}": v.label for (m, d), v in sorted(cal.verdicts.items())}
    groups = cal.groups.sort_values(["model", "design", "group"])
    return {
        "parameters": [[r.model, r.design, int(r.rep), r.name, _g(r.truth), int(r.rank),
                        int(r.n_ranked)] for r in params.itertuples()],
        "replicates": [[r.model, r.design, int(r.rep), r.status] for r in reps.itertuples()],
        "verdicts": verdicts,
        # the statistics: they depend on the ranks and on the randomised PIT's stream
        "group_p": [[r.model, r.design, r.group, _g(r.p_pooled), _g(r.cov90), _g(r.z_sd)]
                    for r in groups.itertuples()],
    }


def run_plan(out: Path) -> dict:
    from sbc.plan import load_plan, run_plan as run

    path = out.parent / f"{out.name}.toml"
    path.write_text(PLAN.format(root=ROOT))
    result = run(load_plan(path), out, workers=0, stream=io.StringIO())
    rows = [[r["design"], r["status"], int(r["simulations"]), _g(r["p_success"]),
             r["calibration"]] for _, r in result.table.sort_values("design").iterrows()]
    return {"recommended": result.recommended.design.label if result.recommended else None,
            "designs": rows, "fits": {k: result.fits[k] for k in ("used", "full_grid")}}


def run_genome_plan(out: Path) -> dict:
    from sbc.plan.genome_config import load_genome_plan
    from sbc.plan.planner import run_plan as run

    path = out.parent / f"{out.name}.toml"
    path.write_text(GENOME_PLAN)
    result = run(load_genome_plan(path), out, workers=0, stream=io.StringIO())
    table = result.table.sort_values("design")
    rows = [[r["design"], r["status"], int(r["simulations"]), _g(r["p_success"]),
             _g(r["fdp_at_0.05"]), _g(r["coverage95"]), r["calibration"],
             _g(r["calibration_p_holm"])]
            for _, r in table.iterrows()]
    return {"recommended": result.recommended.design.label if result.recommended else None,
            "designs": rows, "fits": {k: result.fits[k] for k in ("used", "full_grid")}}


def environment() -> dict:
    from sbc.numerics import numerics

    return {"machine": platform.machine(), "processor": platform.processor(),
            "versions": {p: version(p) for p in ("numpy", "pymc", "pytensor", "nutpie")},
            "numerics": numerics()}


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        golden = {"environment": environment(),
                  "exact": run_study(EXACT_STUDY, tmp / "exact"),
                  "nutpie": run_study(NUTPIE_STUDY, tmp / "nutpie"),
                  "plan": run_plan(tmp / "plan"),
                  "genome_plan": run_genome_plan(tmp / "genome")}
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
