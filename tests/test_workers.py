"""Workers under real faults: fits that run past their timeout are stopped (not abandoned),
fits that kill their process (os.abort, a segfault, os._exit) are recorded with the reason
while the study finishes, Ctrl-C is one message, and scheduler addresses are checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import ROOT, sbc_cmd
from sbc.errors import SchedulerError
from sbc.sampling import FitCrashed, FitTimeout, PymcBackend, call_stoppable
from sbc.pipeline import run_study
from sbc.store import Store
from sbc.study import SamplerSettings, load_study

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def ranks_of(out: Path) -> pd.DataFrame:
    _, params = Store(out).tables()
    return params[["model", "design", "rep", "name", "truth", "rank", "n_ranked"]].sort_values(
        ["model", "design", "rep", "name"], ignore_index=True)


def _spin():
    while True:
        pass


def _children() -> set[int]:
    """Child processes of this process, zombies included (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():  # zombies count: they were not reaped
                found.add(int(entry.name))
    return found


def cpu_while_idle(seconds: float = 1.0) -> float:
    """CPU seconds this process uses while its main thread sleeps: an abandoned busy thread
    would use about ``seconds``."""
    start = time.process_time()
    time.sleep(seconds)
    return time.process_time() - start


def test_a_timed_out_computation_is_stopped_not_abandoned():
    before = _children()
    start = time.perf_counter()
    for _ in range(6):
        with pytest.raises(FitTimeout, match="was stopped"):
            call_stoppable(_spin, 0.2)
    assert time.perf_counter() - start < 6 * 0.2 + 3.0
    assert cpu_while_idle() < 0.2  # a thread left spinning would use ~1 s here
    assert _children() <= before  # every forked child was killed and reaped


def test_stoppable_calls_return_values_exceptions_and_crashes():
    before = _children()
    assert call_stoppable(lambda: {"a": np.arange(3)}, 5)["a"].tolist() == [0, 1, 2]
    with pytest.raises(ZeroDivisionError):
        call_stoppable(lambda: 1 / 0, 5)
    with pytest.raises(FitCrashed, match="signal 6"):
        call_stoppable(os.abort, 5)
    assert _children() <= before


def test_pymc_fit_past_its_timeout_is_stopped():
    from sbc.design import Design
    from sbc.simulate import Simulator
    from sbc.spec import make_spec, resolve_model

    spec = make_spec(resolve_model("normal_known_sigma"), Design(5, 3, 2).frame())
    _, y = Simulator(spec).draw(np.random.SeedSequence(1))
    backend = PymcBackend(spec, SamplerSettings(name="pymc", draws=2_000_000, tune=100,
                                                timeout=0.5))
    with pytest.raises(FitTimeout):
        backend.fit(y, 1)
    assert cpu_while_idle() < 0.2


def test_a_fit_that_crashes_under_a_timeout_is_a_failed_record_in_process(
        exact_study, tmp_path, monkeypatch):
    monkeypatch.setenv("SBC_TEST_FAULT", "abort")
    summary = run_study(load_study(exact_study(sims=6, extra="timeout = 30")), tmp_path / "o",
                        workers=0, report=False)
    reps, _ = Store(tmp_path / "o").tables()
    failed = reps[reps.status == "failed"]
    assert len(reps) == 12 and 0 < len(failed) < 12 and summary.failed == len(failed)
    assert (failed["failure"] == "worker_died").all()
    assert failed["error"].str.contains("killed by signal 6").all()


# abort runs by default; the other ways to die take the same path and run with -m slow
@pytest.mark.parametrize("fault,how", [
    ("abort", "SIGABRT"),
    pytest.param("segfault", "SIGSEGV", marks=pytest.mark.slow),
    pytest.param("exit", "exited with status 3", marks=pytest.mark.slow)])
def test_fits_that_kill_their_worker_are_recorded_and_the_study_finishes(
        exact_study, tmp_path, monkeypatch, fault, how):
    path = exact_study(sims=6, extra="[run]\nbatch_size = 3")
    reference = tmp_path / "reference"
    run_study(load_study(path), reference, workers=0, report=False)

    monkeypatch.setenv("SBC_TEST_FAULT", fault)
    out = tmp_path / "out"
    start = time.monotonic()
    summary = run_study(load_study(path), out, workers=2, report=False)
    assert time.monotonic() - start < 240
    reps, _ = Store(out).tables()
    failed = reps[reps.status == "failed"]
    assert len(reps) == 12 and summary.lost_batches == 0
    assert 0 < len(failed) < 12
    assert (failed["failure"] == "worker_died").all()
    assert failed["error"].str.contains(how).all()
    # innocent batchmates were retried alone: every other replicate is as in a clean run
    ok = ranks_of(out)
    ref = ranks_of(reference)
    keep = ref.set_index(["design", "rep"]).index.isin(
        reps.loc[reps.status == "ok"].set_index(["design", "rep"]).index)
    pd.testing.assert_frame_equal(ok, ref[keep].reset_index(drop=True))
    # a resume does not crash again on them: they are stored as failed
    again = run_study(load_study(path), out, workers=0, report=False)
    assert again.new == 0


def test_ctrl_c_prints_one_message_and_a_resume_completes_the_study(exact_study, tmp_path):
    path = exact_study(sims=1500)
    out = tmp_path / "out"
    env = {**ENV, "SBC_TEST_FAULT": "slow"}
    # A program started with SIGINT ignored keeps ignoring it (POSIX; Python then installs
    # no KeyboardInterrupt handler), as background jobs do.  A terminal starts `sbc` with the
    # default disposition, so the test does too, whatever an earlier test in this pytest
    # worker left behind; what it found is reported if the run is not interrupted.
    found = signal.getsignal(signal.SIGINT)
    if found is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(sbc_cmd("run", path, "--out", out, "--workers", "2",
                                        "--no-report"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
    finally:
        if found is signal.SIG_IGN:
            signal.signal(signal.SIGINT, found)
    deadline = time.monotonic() + 120
    while len(list(out.glob("replicates/*/*/r*.json"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # as the terminal does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"SIGINT disposition in the test process: {found}\n{err}"
    assert "Run the same command again to resume" in err
    assert "Traceback" not in err, err
    assert len(err.splitlines()) < 12, err


@pytest.mark.parametrize("address,message", [
    ("foo", "not a Dask scheduler address"),
    ("http://127.0.0.1:8787", "http:// is the dashboard"),
    ("tcp://", "not a Dask scheduler address"),
    ("smtp://host:25", "scheme one of"),
])
def test_bad_scheduler_addresses_are_refused_before_anything_runs(exact_study, tmp_path,
                                                                   capsys, address, message):
    from sbc.cli import main

    assert main(["run", str(exact_study(sims=2)), "--out", str(tmp_path / "o"),
                 "--scheduler", address]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_tls_scheduler_without_certificates_says_what_to_give(exact_study, tmp_path, capsys):
    from sbc.cli import main

    assert main(["run", str(exact_study(sims=2)), "--out", str(tmp_path / "o"),
                 "--scheduler", "tls://127.0.0.1:1"]) == 2
    assert "--tls-ca-file" in capsys.readouterr().err


def test_plain_tcp_beyond_this_machine_is_warned_about(capsys):
    from sbc.execution import check_scheduler_address

    check_scheduler_address("tcp://127.0.0.1:8786")
    assert capsys.readouterr().err == ""
    check_scheduler_address("tcp://10.1.2.3:8786")
    assert "plain TCP beyond this machine" in capsys.readouterr().err


def test_workers_that_cannot_start_give_one_clear_line(monkeypatch):
    from sbc.dispatch import session

    def refuse(*args, **kwargs):
        raise TimeoutError("Nanny failed to start in 60 seconds")
    monkeypatch.setattr("dask.distributed.LocalCluster", refuse)
    with pytest.raises(SchedulerError, match=r"could not start .*fewer workers"):
        with session(workers=2, scheduler=None):
            pass


def test_raising_the_timeout_and_retry_failed_repair_a_study_in_place(exact_study, tmp_path,
                                                                     monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("SBC_TEST_FAULT", "hang")
    first = run_study(load_study(exact_study(sims=6, extra="timeout = 0.3")), out, workers=0,
                      report=False)
    assert first.failed > 0
    monkeypatch.delenv("SBC_TEST_FAULT")
    # the same study with another timeout is the same study: resumed, not refused
    fixed = load_study(exact_study(sims=6, extra="timeout = 60"))
    repaired = run_study(fixed, out, workers=0, report=False, retry_failed=True)
    assert repaired.new == first.failed and repaired.failed == 0
    reference = tmp_path / "reference"
    run_study(load_study(exact_study(sims=6)), reference, workers=0, report=False)
    pd.testing.assert_frame_equal(ranks_of(out), ranks_of(reference))


def test_a_run_whose_fits_all_fail_exits_non_zero_with_the_reasons(exact_study, tmp_path,
                                                                   capsys, monkeypatch):
    from sbc.cli import main

    broken = tmp_path / "broken.py"
    broken.write_text((ROOT / "tests/models/normal_mean.py").read_text().replace(
        "    counts = np.bincount(", "    raise ValueError('every fit fails here')\n"
        "    counts = np.bincount("))
    path = exact_study(sims=3)
    path.write_text(path.read_text().replace(str(ROOT / "tests/models/normal_mean.py"),
                                             str(broken)))
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--workers", "0",
                 "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "all 6 fits of this run failed" in err
    assert "6 x exception: ValueError: every fit fails here" in err


def test_local_workers_keep_the_adaptive_mmap_threshold_of_numpy(monkeypatch):
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_, which turns off glibc's adaptive mmap
    threshold and made numpy-heavy work (a genome screen) twice as slow; our local workers
    run without it, BLAS still single-threaded."""
    from sbc.dispatch import session

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with session(workers=1, scheduler=None) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in
                                  ("MALLOC_TRIM_THRESHOLD_", "OPENBLAS_NUM_THREADS")})
    assert list(env.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OPENBLAS_NUM_THREADS": "1"}]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
