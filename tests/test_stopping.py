"""Sequential studies (sbc.stopping): settings, where a study stops and why, determinism
over workers and resumes, replicates beyond the stop, the command line and sbc.testing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import sbc
from sbc import sequential, stopping
from sbc.errors import StudyError
from sbc.sequential import pass_point
from sbc.study import load_study

ROOT = Path(__file__).resolve().parents[1]
BUG = ROOT / "tests" / "validation" / "models" / "normal_gene_index_shift.py"


def study_file(tmp_path: Path, body: str, name: str = "s") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nseed = 5\n' + body)
    return path


EXACT = '[[designs]]\ncell_lines = 5\ngenes = 3\nreps = 2\n[sampler]\nname = "exact"\n'


# --- settings ------------------------------------------------------------------------------


def test_auto_with_defaults_and_a_sequential_table(tmp_path):
    s = load_study(study_file(tmp_path, 'model = "normal_known_sigma"\nsimulations = "auto"\n'
                              + EXACT))
    assert s.sequential == stopping.Sequential()
    assert s.simulations == s.max_simulations == 1000
    s = load_study(study_file(tmp_path, 'model = "normal_known_sigma"\nsimulations = "auto"\n'
                              'max_simulations = 300\n' + EXACT
                              + "[sequential]\npower = 0.9\nnarrow = 0\n"))
    assert s.sequential == stopping.Sequential(max_simulations=300, power=0.9, narrow=0.0)
    assert s.simulations == 300
    # the command line overrides: a fixed count, or auto with its own maximum
    fixed = load_study(study_file(tmp_path, 'model = "normal_known_sigma"\nsimulations = '
                                  '"auto"\n' + EXACT), sims=50)
    assert fixed.sequential is None and fixed.simulations == 50
    auto = load_study(study_file(tmp_path, 'model = "normal_known_sigma"\nsimulations = 50\n'
                                 + EXACT), sims="auto", max_sims=80)
    assert auto.sequential.max_simulations == 80


@pytest.mark.parametrize("body, match", [
    ('simulations = 100\nmax_simulations = 300\n', "max_simulations.*needs simulations"),
    ('simulations = 100\n[sequential]\npower = 0.9\n', r"\[sequential\] table needs"),
    ('simulations = "autoo"\n', 'must be an integer or "auto"'),
    ('simulations = "auto"\nmax_simulations = 5\n', "max_simulations.*>= 10"),
    ('simulations = "auto"\n[sequential]\npower = 1.5\n', "power must be a number strictly"),
    ('simulations = "auto"\n[sequential]\nnarrow = 1\n', "narrow must be a fraction"),
    ('simulations = "auto"\n[sequential]\nshift = 0\nnarrow = 0\n', "both 0"),
    ('simulations = "auto"\n[sequential]\npowr = 0.9\n', r"unknown key\(s\) \['powr'\]"),
    ('simulations = "auto"\nsequential = 3\n', r"\[sequential\] must be a table"),
])
def test_bad_sequential_settings_are_refused_with_the_key(tmp_path, body, match):
    # the table (if any) comes last in the file, after the designs and sampler
    head, sep, table = body.partition("[sequential]")
    path = study_file(tmp_path, 'model = "normal_known_sigma"\n' + head + EXACT + sep + table)
    with pytest.raises(StudyError, match=match):
        load_study(path)


def test_max_sims_on_the_command_line_needs_auto(tmp_path):
    path = study_file(tmp_path, 'model = "normal_known_sigma"\nsimulations = 50\n' + EXACT)
    with pytest.raises(StudyError, match="--max-sims needs a sequential study"):
        load_study(path, max_sims=100)


def test_python_studies_normalize_and_survive_replace():
    s = sbc.Study(name="d", models="normal_known_sigma", designs=[(5, 3, 2)],
                  simulations="auto", max_simulations=60, seed=1, sampler="exact")
    assert (s.simulations, s.sequential.max_simulations) == (60, 60)
    assert dataclasses.replace(s, seed=2).sequential == s.sequential
    with pytest.raises(StudyError, match="needs simulations=\"auto\""):
        sbc.Study(name="d", models="normal_known_sigma", designs=[(5, 3, 2)],
                  simulations=60, max_simulations=80, seed=1)


# --- where a cell stops ----------------------------------------------------------------------


def tables(u: np.ndarray, status=None, reps=None):
    """reps and params (with u) of one cell with a single scalar group 'x'."""
    ids = np.arange(len(u)) if reps is None else np.asarray(reps)
    status = ["ok"] * len(ids) if status is None else status
    r = pd.DataFrame({"model": "m", "design": "d", "rep": ids, "status": status})
    ok = [i for i, s in zip(ids, status) if s == "ok"]
    p = pd.DataFrame({"model": "m", "design": "d", "rep": ok, "name": "x", "group": "x",
                      "u": [u[list(ids).index(i)] for i in ok]})
    return r, p


SETTINGS = stopping.Sequential(max_simulations=400)


def test_a_clear_departure_stops_early_at_the_crossing():
    rng = np.random.default_rng(1)
    u = rng.uniform(0.97, 1.0, size=100)  # the truth above nearly every draw
    reps, params = tables(u)
    o = stopping.cell_outcome("m", "d", reps, params, SETTINGS, cells=1)
    assert o.status == "fail" and o.rejected == ("x",)
    assert o.stop_rep == o.fits - 1 < 15
    assert o.beyond == len(u) - o.fits
    assert np.exp(o.log_e["x"][o.fits - 1]) >= o.threshold > np.exp(o.log_e["x"][o.fits - 2])


def test_calibrated_ranks_stop_at_the_pass_point_and_not_before():
    u = np.random.default_rng(2).uniform(size=400)
    point = pass_point(1, 0.05, 0.8, 0.5, 0.2, 400)
    before = stopping.cell_outcome("m", "d", *tables(u[: point.n - 1]), SETTINGS, cells=1)
    assert before.status == "running" and before.stop_rep is None
    at = stopping.cell_outcome("m", "d", *tables(u), SETTINGS, cells=1)
    assert at.status == "look" and at.fits == point.n and at.stop_rep == point.n - 1
    assert at.beyond == 400 - point.n
    assert at.saved == 0  # everything up to 400 is stored, so nothing was saved


def test_only_the_contiguous_prefix_counts_and_failed_fits_are_skipped():
    u = np.full(60, 0.5)
    u[10:] = 0.999  # a departure from replicate 10 on
    ids = [i for i in range(60) if i != 5]  # replicate 5 not stored yet
    reps, params = tables(u[ids], reps=ids)
    o = stopping.cell_outcome("m", "d", reps, params, SETTINGS, cells=1)
    assert o.status == "running" and o.fits == 5  # nothing after the hole is judged
    status = ["ok"] * 60
    status[3] = "failed"
    reps, params = tables(u, status=status)
    o = stopping.cell_outcome("m", "d", reps, params, SETTINGS, cells=1)
    assert o.status == "fail"
    # the crossing is counted in successful fits; the stop is the replicate that made it
    assert o.stop_rep == o.fits  # one failed fit before it


def test_the_limit_stops_a_study_before_its_pass_point():
    u = np.random.default_rng(3).uniform(size=30)
    settings = stopping.Sequential(max_simulations=30)
    o = stopping.cell_outcome("m", "d", *tables(u), settings, cells=1)
    assert o.status == "limit" and o.stop_rep == 29 and o.point.n is None
    assert "before the pass point" in o.sentence()


def test_alpha_is_split_over_the_cells():
    u = np.random.default_rng(4).uniform(size=50)
    one = stopping.cell_outcome("m", "d", *tables(u), SETTINGS, cells=1)
    four = stopping.cell_outcome("m", "d", *tables(u), SETTINGS, cells=4)
    assert four.threshold == pytest.approx(4 * one.threshold)
    assert four.alpha == pytest.approx(one.alpha / 4)


# --- whole studies ---------------------------------------------------------------------------


def bug_study(tmp_path, max_sims=200, model=BUG, name="bug", designs=((5, 3, 2),)):
    return sbc.Study(name=name, models=str(model), simulate_model="normal_known_sigma",
                     designs=list(designs), simulations="auto", max_simulations=max_sims,
                     seed=5, sampler="exact", base_dir=str(tmp_path))


def test_a_broken_model_stops_at_the_same_replicate_with_any_workers_and_resumes(tmp_path):
    study = bug_study(tmp_path)
    alone = sbc.run(study, tmp_path / "w0", workers=0, progress=False)
    two = sbc.run(study, tmp_path / "w2", workers=2, progress=False)
    o0 = alone.calibration.sequential[(BUG.stem, "5x3x2")]
    o2 = two.calibration.sequential[(BUG.stem, "5x3x2")]
    assert o0.status == o2.status == "fail"
    assert (o0.stop_rep, o0.fits, o0.rejected) == (o2.stop_rep, o2.fits, o2.rejected)
    assert o0.stop_rep < 30  # a clear bug: seconds, not the 200 allowed
    assert alone.verdict.status == two.verdict.status == "fail"
    # attributed and advised by the same engine as a fixed study's failure
    stopped = alone.calibration.verdicts[(BUG.stem, "5x3x2")]
    assert stopped.cause.kind == "model or code", stopped.reason
    assert "check the model code" in stopped.recommendation
    html = (tmp_path / "w2" / "report.html").read_text()
    assert "<h4>Sequential test</h4>" in html and "where it stopped" in html
    assert 'alt="sequential test"' in html
    # in flight at the stop: stored, and reported as beyond it
    assert len(two.replicates) == o2.stop_rep + 1 + o2.beyond
    assert o0.beyond == 0  # in this process nothing runs past the stop
    # an interrupted study (here: 3 replicates stored by a fixed run) stops at the same place
    sbc.run(dataclasses.replace(study, simulations=3, sequential=None, max_simulations=None),
            tmp_path / "resumed", workers=0, progress=False)
    resumed = sbc.run(study, tmp_path / "resumed", workers=0, progress=False)
    o3 = resumed.calibration.sequential[(BUG.stem, "5x3x2")]
    assert (o3.stop_rep, o3.rejected) == (o0.stop_rep, o0.rejected)
    assert resumed.last_run.already_done == 3
    # running it again fits nothing and says the same
    again = sbc.run(study, tmp_path / "w0", workers=0, progress=False)
    assert again.last_run.new == 0
    assert again.calibration.sequential[(BUG.stem, "5x3x2")].stop_rep == o0.stop_rep


def test_a_fixed_run_on_a_sequential_store_is_judged_fixed_and_vice_versa(tmp_path):
    study = bug_study(tmp_path)
    out = tmp_path / "s"
    seq = sbc.run(study, out, workers=0, progress=False)
    stop = seq.calibration.sequential[(BUG.stem, "5x3x2")].stop_rep
    fixed = sbc.run(dataclasses.replace(study, simulations=stop + 11, sequential=None,
                                        max_simulations=None), out, workers=0,
                    progress=False)
    assert fixed.calibration.sequential == {}
    assert int(fixed.calibration.diagnostics["fits"].iloc[0]) == stop + 11
    back = sbc.open(out)  # the store remembers how its last run judged it
    assert back.manifest["sequential"] is None and back.calibration.sequential == {}
    seq_again = sbc.run(study, out, workers=0, progress=False)
    o = seq_again.calibration.sequential[(BUG.stem, "5x3x2")]
    assert o.stop_rep == stop and o.beyond == 10  # stored, never counted


def test_a_calibrated_model_passes_at_its_limit_with_low_power_stated(tmp_path):
    study = bug_study(tmp_path, max_sims=20, model=ROOT / "models" / "normal_known_sigma.py",
                      name="good")
    result = sbc.run(dataclasses.replace(study, simulate_model=None), tmp_path / "g",
                     workers=0, progress=False)
    (o,) = result.calibration.sequential.values()
    assert o.status == "limit" and o.fits == 20
    assert result.verdict.status == "pass"
    v = next(iter(result.verdicts.values()))
    assert "low power" in v.warnings and "before the pass point" in v.reason


def test_the_command_line_runs_auto_and_prints_where_it_stopped(tmp_path):
    path = study_file(tmp_path, f'model = "{BUG}"\nsimulate_model = "normal_known_sigma"\n'
                      'simulations = 40\n' + EXACT)
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "sbc.cli", "run", str(path), "--out", str(out),
                           "--workers", "0", "--sims", "auto", "--max-sims", "100",
                           "--fail-on", "fail"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Sequential test: stopped after" in proc.stdout
    assert "stopped at replicate" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "sbc.cli", "run", str(path), "--out",
                          str(tmp_path / "x"), "--sims", "sometimes"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "a positive integer or 'auto'" in bad.stderr


def test_assert_calibrated_is_sequential_by_default(tmp_path):
    from sbc.testing import CalibrationFailure, assert_calibrated, check_calibration

    with pytest.raises(CalibrationFailure) as caught:
        assert_calibrated(BUG, (5, 3, 2), simulate_model="normal_known_sigma",
                          sampler="exact", cache_dir=tmp_path, report=False)
    result = caught.value.result
    assert result.n_sims < 30 and result.new_fits < 30
    assert {c.group for c in result.failures} >= {"loglik"}
    assert "Sequential test: stopped after" in str(caught.value)
    good = check_calibration("normal_known_sigma", (5, 3, 2), sampler="exact",
                             cache_dir=tmp_path, report=False, max_sims=25)
    assert good.passed and good.n_sims == 25


def test_threads_fit_the_same_replicates_as_one_process(tmp_path):
    """Fitting in threads of one process (one compile, no workers) stores exactly what a
    single process stores, and a sequential study stops at the same replicate."""
    study = bug_study(tmp_path, designs=((5, 3, 2), (4, 3, 2)))  # two cells interleaved
    alone = sbc.run(study, tmp_path / "one", workers=0, progress=False)
    threads = sbc.run(study, tmp_path / "threads", threads=2, progress=False)
    a, b = (r.parameters.sort_values(["rep", "name"], ignore_index=True)
            for r in (alone, threads))
    cols = ["design", "rep", "name", "rank", "truth", "mean"]
    a = a.sort_values(cols[:3], ignore_index=True)
    b = b.merge(a[cols[:3]], on=cols[:3]).sort_values(cols[:3], ignore_index=True)
    # (threads may run past the stop: only the replicates both have are compared)
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert len(alone.sequential) == 2
    for key, o in alone.sequential.items():
        assert threads.sequential[key].stop_rep == o.stop_rep
        assert threads.sequential[key].rejected == o.rejected


def test_threads_are_refused_for_a_sampler_that_cannot_share_a_process(tmp_path):
    study = dataclasses.replace(bug_study(tmp_path), sampler="pymc")
    with pytest.raises(StudyError, match="sampler 'pymc' cannot fit in threads"):
        sbc.run(study, tmp_path / "p", threads=2, progress=False)
    assert not (tmp_path / "p").exists()


def test_readme_states_the_pass_points_and_the_early_share():
    """The README's numbers about sequential studies are the code's."""
    from sbc.sequential import EARLY, FINAL

    text = "\n".join((ROOT / "docs" / "user_guide" / page).read_text()
                     for page in ("sequential.md", "testing.md"))  # moved from the README
    s = stopping.Sequential()
    one, eight = (pass_point(k, s.alpha, s.power, s.shift, s.narrow, s.max_simulations).n
                  for k in (1, 8))
    assert f"({one} fits for a single parameter group,\n{eight} for eight)" in text
    assert f"`groups / ({EARLY:g} alpha)`" in text
    assert f"with probability at most {EARLY:g} alpha" in text
    assert f"remaining {FINAL * 100:.0f} % of alpha" in text
    assert (s.alpha, s.power, s.shift, s.narrow, s.max_simulations) == (0.05, 0.8, 0.5, 0.2,
                                                                        1000)
    for line in ("alpha = 0.05", "power = 0.8", "shift = 0.5", "narrow = 0.2",
                 "max_simulations = 1000"):
        assert line in text


@pytest.mark.parametrize("value, match", [
    ({"alpha": "x"}, "'sequential' settings are not valid"),
    ({"power": 2}, "'sequential' settings are not valid"),
    ({"bogus": 1}, "'sequential' settings are not valid"),
])
def test_damaged_sequential_settings_in_a_store_are_reported(tmp_path, value, match):
    import json

    from sbc.errors import StoreError

    out = tmp_path / "s"
    sbc.run(bug_study(tmp_path), out, workers=0, progress=False, report=False)
    manifest = json.loads((out / "study.json").read_text())
    records = sorted(p.read_bytes() for p in (out / "replicates").rglob("*.json"))
    manifest["sequential"] = value
    (out / "study.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=match):
        sbc.open(out).calibration  # noqa: B018
    assert sorted(p.read_bytes() for p in (out / "replicates").rglob("*.json")) == records


def test_results_expose_the_sequential_outcome(tmp_path):
    r = sbc.run(bug_study(tmp_path), tmp_path / "r", workers=0, progress=False, report=False)
    (o,) = r.sequential.values()
    assert o.status == "fail" and sbc.open(tmp_path / "r").sequential[(o.model, o.design)] \
        .stop_rep == o.stop_rep


@pytest.fixture(scope="module")
def stored_records(tmp_path_factory):
    """The records of a sequential study run past its stop (a fixed run of 60 replicates of
    the broken model, so there is something beyond every possible stop)."""
    from sbc.store import Store

    tmp = tmp_path_factory.mktemp("records")
    study = bug_study(tmp)
    sbc.run(dataclasses.replace(study, simulations=60, sequential=None, max_simulations=None),
            tmp / "s", workers=0, progress=False, report=False)
    return list(Store(tmp / "s").iter_records())


def test_the_monitor_decides_as_the_judge_whatever_the_arrival_order(stored_records):
    """Records arriving in any order, in batches of any size, lead the run's monitor to the
    stop the store's judge finds afterwards (the decision reads the replicates in order)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sbc.calibration import with_fractional_ranks
    from sbc.record import records_to_tables

    reps, params = records_to_tables(stored_records)
    cell = (stored_records[0]["model"], stored_records[0]["design"])
    expected = stopping.cell_outcome(*cell, reps, with_fractional_ranks(params, reps),
                                     SETTINGS, cells=1)
    assert expected.status == "fail"

    @settings(max_examples=25, deadline=None)
    @given(order=st.permutations(range(len(stored_records))),
           sizes=st.lists(st.integers(1, 8), min_size=1, max_size=60))
    def check(order, sizes):
        monitor = stopping.Monitor(SETTINGS, [cell])
        arriving = [stored_records[i] for i in order]
        i = 0
        for size in sizes * len(arriving):
            if i >= len(arriving):
                break
            monitor.add(arriving[i:i + size])
            i += size
        got = monitor.found[cell]
        assert (got.status, got.stop_rep, got.fits, got.rejected) == \
            (expected.status, expected.stop_rep, expected.fits, expected.rejected)

    check()


def synthetic_records(u: np.ndarray, n_ranked: int = 999) -> list[dict]:
    """Minimal ok records of one cell with a single scalar 'x' whose rank gives ``u``."""
    return [{"model": "m", "design": "d", "rep": i, "status": "ok", "n_ranked": n_ranked,
             "seed_entropy": 1, "parameters": {"name": ["x"], "group": ["x"],
                                               "rank": [int(v * (n_ranked + 1))]},
             "quantities": {}} for i, v in enumerate(u)]


def test_the_monitor_ignores_replicates_past_max_simulations_as_the_judge_does():
    """A store may hold more replicates than max_simulations (an earlier, larger fixed run);
    neither the monitor nor the judge counts them, so both stop at the limit here although
    the replicates past it depart clearly."""
    from sbc.calibration import with_fractional_ranks
    from sbc.record import records_to_tables

    u = np.random.default_rng(5).uniform(size=60)
    u[20:] = 0.999
    records = synthetic_records(u)
    settings = stopping.Sequential(max_simulations=15)
    reps, params = records_to_tables(records)
    judged = stopping.cell_outcome("m", "d", reps, with_fractional_ranks(params, reps),
                                   settings, cells=1)
    monitor = stopping.Monitor(settings, [("m", "d")])
    monitor.add(records)
    got = monitor.found[("m", "d")]
    assert judged.status == "limit" and judged.stop_rep == 14
    assert (got.status, got.stop_rep, got.fits) == (judged.status, judged.stop_rep,
                                                     judged.fits)


# --- interim looks -----------------------------------------------------------------------------


def decide(groups: dict, settings: stopping.Sequential) -> stopping.Outcome:
    """The outcome of one cell whose every replicate is an ok fit with these group ranks."""
    n = len(next(iter(groups.values())))
    ids = np.arange(n)
    return stopping.decide_cell("m", "d", ids, n, groups, ids, settings, cells=1)


def test_the_family_wise_false_fail_rate_over_every_look_is_at_most_alpha():
    """600 calibrated cells of 2 groups (a scalar, a group of 3 strongly dependent elements),
    each watched to 210 replicates (no pass point within 210, so every part is used): the
    e-processes after every replicate, the interim looks at 25, 50, 100 and 200 (production
    decide_cell), and the final look at 210 at the rest of alpha (its Holm family rejects iff
    the smallest group p-value is below its level over the groups).  By the union bound the
    rate of any false 'fail' is at most 0.05.  Fails above 41: a procedure at exactly 0.05
    does so with probability 0.019, one at 0.10 with probability 0.996 (scipy binom)."""
    settings = stopping.Sequential(max_simulations=210, narrow=0.05)
    rng = np.random.default_rng(2030)
    studies, n = 600, 210
    early, cells = 0, []
    for _ in range(studies):
        base = rng.uniform(size=n)
        groups = {"a": rng.uniform(size=(n, 1)),
                  "b": np.column_stack([(base + c) % 1.0 for c in (0.0, 0.31, 0.62)])}
        o = decide(groups, settings)
        assert o.status in ("fail", "limit"), o.status
        early += o.status == "fail"
        cells.append((groups, o.status == "fail"))
    level = sequential.FINAL * 0.05 / 2  # Bonferroni over the 2 groups: Holm's first step
    p_a = sequential.look_pvalues(np.stack([g["a"][:, 0] for g, _ in cells]), level / 3)
    p_b = 3 * np.min([sequential.look_pvalues(np.stack([g["b"][:, j] for g, _ in cells]),
                                              level / 3) for j in range(3)], axis=0)
    final = (np.minimum(p_a, p_b) <= level) & ~np.array([f for _, f in cells])
    assert early + int(final.sum()) <= 41, (early, int(final.sum()))


def test_an_interim_look_finds_a_weak_shift_far_earlier_than_the_pass_point():
    """A weak bug: one of 4 groups' posterior mean off by 0.4 sds, 100 studies.  Before the
    interim looks a study stopped at the e-value's crossing or else at the pass point (204
    fits here); now the look at 50 or 100 fits stops most of them: the median stop must be at
    most 100 fits (half the old one; measured: 100 against 204), and no study may stop later
    than the old rule would have."""
    rng = np.random.default_rng(2029)
    point = pass_point(4, 0.05, 0.8, 0.5, 0.2, 400)
    new, old = [], []
    for _ in range(100):
        groups = {"bad": norm.cdf(rng.standard_normal((400, 1)) - 0.4),
                  **{g: rng.uniform(size=(400, 1)) for g in "xyz"}}
        o = decide(groups, SETTINGS)  # "look": stopped at the pass point, the final look decides
        assert o.status in ("fail", "look")
        if o.interim is not None:
            assert o.fits in sequential.LOOKS and o.stop_rep == o.fits - 1
            assert "interim look" in o.sentence()
        new.append(o.fits)
        crossed = sequential.sequential_test(groups, alpha=sequential.EARLY * 0.05).stopped_at
        old.append(crossed if crossed is not None and crossed <= point.n else point.n)
    assert np.median(new) <= 100 < np.median(old), (np.median(new), np.median(old))
    assert all(a <= b for a, b in zip(new, old))
