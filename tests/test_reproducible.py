"""A study's ranks are a pure function of its file, its models' sources and the numerics
(sbc.numerics): the same whatever state the compile cache is in, however many workers or
threads fit, and after the run was killed and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from support import ROOT, sbc_cmd
from sbc.store import Store

STUDY = ROOT / "studies" / "crispr_seed.toml"
SIMS = 6
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
KEY = ["model", "design", "rep", "name"]


def table(out: Path) -> pd.DataFrame:
    reps, params = Store(out).tables()
    assert len(reps) == 2 * 3 * SIMS, reps[["model", "design", "rep"]]  # 2 models x 3 designs
    return params[KEY + ["truth", "rank", "n_ranked"]].sort_values(KEY, ignore_index=True)


def statuses(out: Path) -> pd.DataFrame:
    reps, _ = Store(out).tables()
    return reps[["model", "design", "rep", "status", "rescued"]].sort_values(
        ["model", "design", "rep"], ignore_index=True)


def sbc_run(out: Path, *options: str, env: dict | None = None) -> None:
    done = subprocess.run(sbc_cmd("run", STUDY, "--sims", SIMS, "--no-report", "--out", out,
                                  *options), capture_output=True, text=True, env=env or ENV,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def stored(out: Path) -> int:
    return len(list(out.glob("replicates/*/*/r*.json")))


@pytest.mark.slow
@pytest.mark.ci
def test_ranks_are_identical_across_cache_state_workers_threads_and_a_resume(tmp_path):
    # cold: an empty PyTensor/numba compile directory, so every function is compiled fresh
    cold_env = {**ENV, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'cold-cache'}"}
    runs = {"cold, 1 worker": tmp_path / "cold"}
    sbc_run(runs["cold, 1 worker"], "--workers", "1", env=cold_env)
    # warm: the same compile directory again, now holding every function compiled above
    runs["warm, 2 workers"] = tmp_path / "warm2"
    sbc_run(runs["warm, 2 workers"], "--workers", "2", env=cold_env)
    runs["threads"] = tmp_path / "threads"
    sbc_run(runs["threads"], "--threads", "2")  # the user's default cache, in whatever state
    # killed (the client, its nannies and workers) once a third of the fits are stored, then
    # resumed in this process's way (--workers 0)
    resumed = runs["killed, resumed"] = tmp_path / "resumed"
    proc = subprocess.Popen(sbc_cmd("run", STUDY, "--sims", SIMS, "--no-report", "--out", resumed,
                                    "--workers", "2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    start = time.monotonic()
    while proc.poll() is None and stored(resumed) < 12 and time.monotonic() - start < 600:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert 12 <= stored(resumed) < 2 * 3 * SIMS
    sbc_run(resumed, "--workers", "0")

    reference = table(runs["cold, 1 worker"])
    assert len(reference) > 1000 and reference["rank"].notna().all()
    for label, out in runs.items():
        pd.testing.assert_frame_equal(table(out), reference, obj=label)
        pd.testing.assert_frame_equal(statuses(out), statuses(runs["cold, 1 worker"]), obj=label)
