"""End-to-end runs through the CLI and the pipeline: workers, resume, faults."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import ROOT, sbc_cmd
from sbc.pipeline import run_study
from sbc.store import Store
from sbc.study import load_study

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def ranks_of(out: Path) -> pd.DataFrame:
    _, params = Store(out).tables()
    return params[["model", "design", "rep", "name", "truth", "rank", "n_ranked"]].sort_values(
        ["model", "design", "rep", "name"], ignore_index=True)


def test_small_study_end_to_end_through_cli(exact_study, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(sbc_cmd("run", exact_study(sims=12), "--out", out, "--workers", "0"),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "24/24 replicates done" in proc.stderr
    for name in ("study.json", "replicates.parquet", "parameters.parquet", "ranks.nc", "report.html"):
        assert (out / name).is_file(), name
    reps = pd.read_parquet(out / "replicates.parquet")
    assert len(reps) == 24 and (reps["status"] == "ok").all()
    params = pd.read_parquet(out / "parameters.parquet")
    assert set(params.loc[params.kind == "quantity", "name"]) == {"loglik", "loglik_min"}
    assert params["rank"].between(0, params["n_ranked"]).all()
    # The rank tree opens with the layout arviz-plots reads.
    import xarray as xr
    tree = xr.open_datatree(out / "ranks.nc", engine="h5netcdf")
    assert tree["normal_mean/4x3x2/prior_sbc"]["mu"].dims == ("chain", "draw", "mu_dim_0")
    # ... and holds the values of the Parquet table: integer ranks, and the fractional
    # ranks the engine tests (sbc.stats.table_fractional_ranks)
    from sbc.stats import table_fractional_ranks
    params = params.assign(u=table_fractional_ranks(params))
    for design in ("4x3x2", "6x2x2"):
        node = tree[f"normal_mean/{design}"]
        block = params[params.design == design]
        for name in ("mu[0]", "mu[1]", "loglik"):
            rows = block[block.name == name].sort_values("rep")
            group, element = (name[:2], name[3:-1]) if name.startswith("mu") else (name, None)
            frac, raw = node["prior_sbc"][group], node["sbc_ranks"][group]
            if element is not None:
                frac, raw = frac.sel(mu_dim_0=element), raw.sel(mu_dim_0=element)
            assert raw.sel(chain=0, draw=rows.rep.to_numpy()).values.tolist() == \
                rows["rank"].tolist(), (design, name)
            np.testing.assert_array_equal(frac.sel(chain=0, draw=rows.rep.to_numpy()).values,
                                          rows["u"].to_numpy())
        assert (node["sbc_ranks"]["n_ranked"].values == 99).all()
    # A second run of the same command finds everything stored and refits nothing.
    again = subprocess.run(sbc_cmd("run", exact_study(sims=12), "--out", out, "--workers", "0"),
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0 and "0 new replicates" in again.stdout
    # `sbc report` rewrites the report from the store alone.
    (out / "report.html").unlink()
    rep = subprocess.run(sbc_cmd("report", out), capture_output=True, text=True, env=ENV, timeout=300)
    assert rep.returncode == 0 and (out / "report.html").is_file()


def test_results_do_not_depend_on_worker_count(exact_study, tmp_path):
    study = load_study(exact_study(sims=16))
    run_study(study, tmp_path / "w0", workers=0, report=False)
    run_study(study, tmp_path / "w1", workers=1, report=False)
    run_study(study, tmp_path / "w2", workers=2, report=False)
    base = ranks_of(tmp_path / "w0")
    assert len(base) == 16 * 3 + 16 * 2 + 2 * 2 * 16  # scalars + two quantities per replicate
    pd.testing.assert_frame_equal(base, ranks_of(tmp_path / "w1"))
    pd.testing.assert_frame_equal(base, ranks_of(tmp_path / "w2"))


def test_nutpie_ranks_identical_with_one_and_two_workers(tmp_path):
    path = tmp_path / "nutpie.toml"
    path.write_text(f"""
name = "nutpie_workers"
model = "{ROOT / 'models/crispr_screen.py'}"
seed = 11
simulations = 6
[[designs]]
cell_lines = 10
genes = 3
reps = 3
[sampler]
draws = 300
tune = 300
[run]
batch_size = 2
""")
    study = load_study(path)
    run_study(study, tmp_path / "one", workers=1, report=False)
    run_study(study, tmp_path / "two", workers=2, report=False)
    for out in ("one", "two"):  # two empty frames would compare equal: every fit must be here
        reps, _ = Store(tmp_path / out).tables()
        assert len(reps) == 6 and (reps["status"] == "ok").all(), reps[["rep", "error"]]
    one = ranks_of(tmp_path / "one")
    assert len(one) == 6 * one.name.nunique() and one.name.nunique() >= 8
    pd.testing.assert_frame_equal(one, ranks_of(tmp_path / "two"))


def test_seeds_do_not_depend_on_the_other_designs_of_the_study(exact_study, tmp_path):
    """A design run alone gives the same truths and ranks as inside a larger study (and the
    order of designs in the file does not matter)."""
    both = load_study(exact_study(sims=6))
    alone = both.__class__(**{**both.__dict__, "designs": both.designs[1:]})
    swapped = both.__class__(**{**both.__dict__, "designs": both.designs[::-1]})
    for name, study in (("both", both), ("alone", alone), ("swapped", swapped)):
        run_study(study, tmp_path / name, workers=0, report=False)
    label = both.designs[1].label
    inside = ranks_of(tmp_path / "both")
    inside = inside[inside.design == label].reset_index(drop=True)
    assert len(inside) > 0
    pd.testing.assert_frame_equal(inside, ranks_of(tmp_path / "alone"))
    pd.testing.assert_frame_equal(ranks_of(tmp_path / "both"), ranks_of(tmp_path / "swapped"))


def test_more_simulations_extend_a_study_without_changing_stored_ones(exact_study, tmp_path):
    path = exact_study(sims=8)
    run_study(load_study(path), tmp_path / "a", workers=0, report=False)
    before = ranks_of(tmp_path / "a")
    run_study(load_study(path, sims=12), tmp_path / "a", workers=0, report=False)
    after = ranks_of(tmp_path / "a")
    run_study(load_study(path, sims=12), tmp_path / "b", workers=0, report=False)
    pd.testing.assert_frame_equal(after, ranks_of(tmp_path / "b"))
    merged = after.merge(before, on=["model", "design", "rep", "name"], suffixes=("", "_old"))
    assert len(merged) == len(before) and (merged["rank"] == merged["rank_old"]).all()


def _kill_after(cmd, out: Path, n_files: int) -> None:
    proc = subprocess.Popen(cmd, env={**ENV, "SBC_TEST_FAULT": "slow"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("replicates/*/*/*.json"))) < n_files:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_run_resumes_to_identical_results(exact_study, tmp_path):
    path = exact_study(sims=15)
    reference = tmp_path / "reference"
    run_study(load_study(path), reference, workers=0, report=False)
    out = tmp_path / "killed"
    cmd = sbc_cmd("run", path, "--out", out, "--workers", "0", "--no-report")
    for n_files in (3, 11, 22):  # SIGKILL at three different moments, resuming each time
        _kill_after(cmd, out, n_files)
        stored = len(list(out.glob("replicates/*/*/*.json")))
        assert n_files <= stored < 30
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    files = list(out.glob("replicates/*/*/*.json"))
    assert len(files) == 30 and not list(out.glob("replicates/*/*/.*.tmp"))
    pd.testing.assert_frame_equal(ranks_of(reference), ranks_of(out))


@pytest.mark.parametrize("fault,reason", [("raise", "injected fault"),
                                          ("nan", "non-finite draws"),
                                          ("hang", "timeout")])
def test_faulty_fits_are_recorded_and_the_study_goes_on(exact_study, tmp_path, monkeypatch, fault, reason):
    monkeypatch.setenv("SBC_TEST_FAULT", fault)
    study = load_study(exact_study(sims=10, extra="timeout = 0.5"))
    summary = run_study(study, tmp_path / "out", workers=0, report=True)
    reps, _ = Store(tmp_path / "out").tables()
    assert len(reps) == 20
    failed = reps[reps.status == "failed"]
    assert 0 < len(failed) < 20 and summary.failed == len(failed)
    assert failed["error"].str.contains(reason).all()


def test_corrupt_record_is_recomputed_and_nothing_else_touched(exact_study, tmp_path):
    path = exact_study(sims=6)
    out = tmp_path / "out"
    run_study(load_study(path), out, workers=0, report=False)
    before = ranks_of(out)
    victim = out / "replicates/normal_mean/4x3x2/r000003.json"
    others = {p: p.stat().st_mtime_ns for p in out.glob("replicates/*/*/*.json") if p != victim}
    victim.write_bytes(victim.read_bytes()[:40])  # a truncated write
    summary = run_study(load_study(path), out, workers=0, report=False)
    assert summary.new == 1
    assert json.loads(victim.read_text())["rep"] == 3
    assert {p: p.stat().st_mtime_ns for p in others} == others
    assert list(victim.parent.glob("r000003.json.corrupt-*"))
    pd.testing.assert_frame_equal(before, ranks_of(out))


def test_second_run_on_the_same_store_is_refused_while_one_is_running(exact_study, tmp_path, capsys):
    from sbc.cli import main

    path = exact_study(sims=4)
    out = tmp_path / "out"
    run_study(load_study(path), out, workers=0, report=False)
    with Store(out).exclusive():  # as if another `sbc run` were writing
        rc = main(["run", str(path), "--out", str(out), "--sims", "6", "--workers", "0"])
    assert rc == 2
    assert "another sbc process is writing to" in capsys.readouterr().err
    assert len(list(out.glob("replicates/*/*/*.json"))) == 8


def test_pymc_sampler_runs_a_study(exact_study, tmp_path):
    path = exact_study(sims=3, extra="")
    path.write_text(path.read_text().replace('name = "exact"', 'name = "pymc"\ntune = 200')
                    .replace("draws = 99", "draws = 200"))
    run_study(load_study(path), tmp_path / "out", workers=0, report=False)
    reps, params = Store(tmp_path / "out").tables()
    assert (reps["status"] == "ok").all() and len(reps) == 6
    assert params["rank"].between(0, params["n_ranked"]).all()


def test_failures_to_build_a_model_on_a_worker_are_retried_on_resume(exact_study, tmp_path,
                                                                     monkeypatch):
    import sbc.replicate

    path = exact_study(sims=3)
    original = sbc.replicate.make_spec

    def broken(*args, **kwargs):
        raise RuntimeError("worker cannot build the model")

    monkeypatch.setattr(sbc.replicate, "make_spec", broken)
    monkeypatch.setattr(sbc.replicate, "_CACHE", type(sbc.replicate._CACHE)())  # no compiled model
    run_study(load_study(path), tmp_path / "out", workers=0, report=False)
    reps, _ = Store(tmp_path / "out").tables()
    assert (reps["status"] == "failed").all() and reps["error"].str.contains("cannot build").all()
    monkeypatch.setattr(sbc.replicate, "make_spec", original)
    summary = run_study(load_study(path), tmp_path / "out", workers=0, report=False)
    assert summary.new == 6
    reps, _ = Store(tmp_path / "out").tables()
    assert (reps["status"] == "ok").all()


def test_retry_failed_refits_only_the_failed_replicates(exact_study, tmp_path, monkeypatch):
    path = exact_study(sims=10)
    out = tmp_path / "out"
    monkeypatch.setenv("SBC_TEST_FAULT", "raise")  # a transient fault in some fits
    run_study(load_study(path), out, workers=0, report=False)
    failed = Store(out).tables()[0].query("status == 'failed'")
    assert len(failed) > 0
    ok_files = {p: p.read_bytes() for p in out.glob("replicates/*/*/*.json")
                if json.loads(p.read_text())["status"] == "ok"}
    monkeypatch.delenv("SBC_TEST_FAULT")
    plain = run_study(load_study(path), out, workers=0, report=False)
    assert plain.new == 0  # failed fits are data: a plain resume keeps them
    again = run_study(load_study(path), out, workers=0, report=False, retry_failed=True)
    assert again.new == len(failed)
    reps = Store(out).tables()[0]
    assert (reps["status"] == "ok").all() and len(reps) == 20
    assert {p: p.read_bytes() for p in ok_files} == ok_files  # nothing else rewritten


def test_more_local_workers_than_cores_are_capped_with_a_note(exact_study, tmp_path):
    import io

    from sbc.execution import default_workers

    stream = io.StringIO()
    summary = run_study(load_study(exact_study(sims=2)), tmp_path / "out", workers=100,
                        report=False, progress_stream=stream)
    assert summary.new == 4 and summary.lost_batches == 0
    assert f"using {default_workers()}" in stream.getvalue()


def test_records_of_another_study_or_replicate_are_never_counted(exact_study, tmp_path):
    path = exact_study(sims=4)
    out, other = tmp_path / "out", tmp_path / "other"
    run_study(load_study(path), out, workers=0, report=False)
    before = ranks_of(out)
    other_path = tmp_path / "other.toml"
    other_path.write_text(path.read_text().replace("seed = 7", "seed = 99"))
    run_study(load_study(other_path), other, workers=0, report=False)
    # a record copied from the study with seed 99, and one moved to another replicate's name
    victim = out / "replicates/normal_mean/4x3x2/r000001.json"
    victim.write_bytes((other / "replicates/normal_mean/4x3x2/r000001.json").read_bytes())
    moved = out / "replicates/normal_mean/4x3x2/r000002.json"
    moved.write_bytes((out / "replicates/normal_mean/4x3x2/r000003.json").read_bytes())
    reps, _ = Store(out).tables()
    assert len(reps) == 6  # 8 replicates stored, the two foreign ones not counted
    summary = run_study(load_study(path), out, workers=0, report=False)
    assert summary.new == 2  # both recomputed with this study's seeds
    assert list(victim.parent.glob("r000001.json.foreign-*"))
    pd.testing.assert_frame_equal(before, ranks_of(out))
