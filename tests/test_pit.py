"""Fractional ranks of stored rows: exactly uniform with few ranked draws, stable on resume,
and the same for every reader (report, planner, assert_calibrated)."""

import numpy as np
import pandas as pd

from sbc.plan import calibration_verdict
from sbc.stats import table_fractional_ranks, uniformity_test
from sbc.testing.calibration import calibration_checks


def uniform_table(n_reps, n_ranked, names=("x",), seed=0, rank=None):
    rng = np.random.default_rng(seed)
    rows = [{"model": "m", "design": "d", "rep": r, "name": n, "group": n.split("[")[0],
             "kind": "parameter", "n_ranked": n_ranked,
             "rank": int(rng.integers(0, n_ranked + 1)) if rank is None else rank}
            for r in range(n_reps) for n in names]
    return pd.DataFrame(rows)


def test_few_ranked_draws_do_not_raise_false_alarms():
    # 300 replicates with 10 ranked draws each: midpoints (rank + 0.5) / 11 were rejected
    # nearly always; the randomized values must pass (false-alarm rate 1 %, fixed seeds).
    rejections = sum(uniformity_test(table_fractional_ranks(uniform_table(300, 10, seed=s)))
                     .p_value < 0.01 for s in range(20))
    assert rejections <= 2  # P(>= 3 of 20 at 1 %) = 0.001
    checks = calibration_checks(uniform_table(300, 10, seed=1), alpha=0.05, quantities=True)
    assert not any(c.failed for c in checks)


def test_offsets_do_not_move_when_replicates_are_added():
    small = uniform_table(50, 20)
    large = uniform_table(80, 20)  # same first 50 rows (same seed), plus 30 more
    np.testing.assert_array_equal(table_fractional_ranks(small),
                                  table_fractional_ranks(large)[:50])
    shuffled = small.sample(frac=1.0, random_state=3)
    np.testing.assert_array_equal(table_fractional_ranks(shuffled),
                                  table_fractional_ranks(small)[shuffled.index])


def test_planner_flags_a_large_miscalibrated_group():
    names = [f"beta_g[{i}]" for i in range(100)]
    table = uniform_table(40, 100, names=names, rank=0)  # truth below every draw
    reps = table.drop_duplicates("rep")[["model", "design", "rep"]].assign(
        status="ok", n_divergent=0, n_treedepth=0, flag_divergent=False, flag_low_ess=False,
        flag_rhat=False, wall_seconds=0.1, n_ranked=100)
    verdict, p_holm, failing = calibration_verdict(reps, table.assign(truth=0.0, mean=0.0,
                                                                      sd=1.0), alpha=0.01)
    assert verdict == "miscalibrated" and "beta_g" in failing and p_holm <= 0.01
