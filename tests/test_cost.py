"""Every fit attempt records its cost in gradient evaluations (leapfrog steps, tuning
included): a unit no machine, load or release of the hardware changes, so costs compare
across machines and releases (seconds do not)."""

from __future__ import annotations

import io

from sbc.pipeline import run_study
from sbc.study import load_study
from support import ROOT

STUDY = f"""
name = "cost"
models = ["{ROOT}/models/crispr_screen.py"]
seed = 5
simulations = 3

[[designs]]
cell_lines = 4
genes = 3
reps = 2

[sampler]
draws = 200
tune = 200
"""


def test_records_and_tables_carry_gradient_evaluations(tmp_path):
    import pandas as pd

    path = tmp_path / "s.toml"
    path.write_text(STUDY)
    run_study(load_study(path), tmp_path / "out", workers=0, progress_stream=io.StringIO(),
              report=False)
    reps = pd.read_parquet(tmp_path / "out" / "replicates.parquet")
    ok = reps[reps["status"] == "ok"]
    assert len(ok) == 3
    # every draw and tuning step takes at least one leapfrog step, at most 2^10 - 1
    assert (ok["gradient_evals"] >= 400).all() and (ok["gradient_evals"] <= 400 * 1023).all()
    from sbc.store import Store

    for record in Store(tmp_path / "out").iter_records():
        if record.get("attempts"):  # a rescued fit's cost is the sum of its attempts
            assert record["gradient_evals"] == sum(a["gradient_evals"]
                                                   for a in record["attempts"])


def test_the_diagnostics_table_states_the_median_cost_per_replicate():
    import pandas as pd

    from sbc.calibration import diagnostics_table

    reps = pd.DataFrame({"model": "m", "design": "d", "rep": range(4), "status": "ok",
                         "n_divergent": 0, "n_treedepth": 0, "flag_rhat": False,
                         "flag_low_ess": False, "n_ranked": 100, "wall_seconds": 1.0,
                         "gradient_evals": [1000, 3000, 2000, None]})
    (row,) = diagnostics_table(reps).to_dict("records")
    assert row["median_gradient_evals"] == 2000
