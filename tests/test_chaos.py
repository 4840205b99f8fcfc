"""Chaos: one study, run again and again while its client and workers are killed at random
moments (SIGKILL) and fits abort their own process once (os.abort inside the fit).  It must
always finish, and its results must be identical to an undisturbed run's."""

from __future__ import annotations

import contextlib
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
ROUNDS = 10
STEP = 10  # simulations per design added in each round


def ranks_of(out: Path) -> pd.DataFrame:
    reps, params = Store(out).tables()
    assert (reps["status"] == "ok").all(), reps[reps.status != "ok"][["rep", "error"]]
    return params[["model", "design", "rep", "name", "truth", "rank", "n_ranked"]].sort_values(
        ["model", "design", "rep", "name"], ignore_index=True)


def workers_of(pid: int) -> list[int]:
    """The Dask worker processes a ``sbc run`` started (its multiprocessing children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def stored(out: Path) -> int:
    return len(list(out.glob("replicates/*/*/r*.json")))


@pytest.mark.slow
def test_study_survives_random_kills_of_client_and_workers(exact_study, tmp_path):
    # every round extends the study (--sims grows by STEP), so every round has work to
    # disturb; the reference is an undisturbed in-process run of the final size
    path = exact_study(sims=STEP * ROUNDS, extra="[run]\nbatch_size = 3")
    reference = tmp_path / "reference"
    run_study(load_study(path), reference, workers=0, report=False)

    faults = tmp_path / "faults"
    faults.mkdir()
    env = {**ENV, "SBC_TEST_FAULT": "abort-once", "SBC_TEST_FAULT_DIR": str(faults)}
    out = tmp_path / "out"
    rng = np.random.default_rng(20261126)
    log = []
    for round_no in range(ROUNDS):
        sims = STEP * (round_no + 1)
        proc = subprocess.Popen(sbc_cmd("run", path, "--out", out, "--workers", "2",
                                        "--no-report", "--sims", sims),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, start_new_session=True)
        # kill a worker at a random moment, then (in most rounds) the client later on
        worker_at, client_at = rng.uniform(4.0, 10.0), rng.uniform(8.0, 25.0)
        kill_client = rng.random() < 0.8
        start, killed = time.monotonic(), []
        while proc.poll() is None:
            now = time.monotonic() - start
            if now > worker_at and "worker" not in killed:
                victims = workers_of(proc.pid)[:1]  # none yet: try again in a moment
                for pid in victims:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    killed.append("worker")
            if kill_client and now > client_at:
                os.killpg(proc.pid, signal.SIGKILL)  # the client, its nannies and workers
                killed.append("client")
                break
            if now > 600:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"round {round_no}: sbc run hung ({log})")
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert proc.returncode in (0, -signal.SIGKILL), (round_no, killed, err)
        log.append((round_no, killed, proc.returncode, stored(out)))
    # finish: one undisturbed run (the abort-once faults stay armed for replicates not yet
    # tried), then the results must be those of the reference
    done = subprocess.run(sbc_cmd("run", path, "--out", out, "--workers", "2", "--no-report"),
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, (log, done.stderr)
    assert any(faults.iterdir()), "no fit aborted: the fault was not injected"
    assert all(killed for _, killed, _, _ in log), log  # every round was disturbed
    assert sum("client" in killed for _, killed, _, _ in log) >= 5, log
    assert sum("worker" in killed for _, killed, _, _ in log) >= 5, log
    pd.testing.assert_frame_equal(ranks_of(out), ranks_of(reference))
    assert not list(out.glob("replicates/*/*/*.tmp")) and not list(out.glob("replicates/*/*/.*"))
