"""SLURM for real: studies through ``[cluster] kind = "slurm"`` whose fits run in real
``sbatch`` jobs, on a running SLURM cluster (``make slurm`` starts a one-node one on this
machine: partition "debug").  The same study run in this process (``--workers 0``) gives
identical ranks; a job cancelled with ``scancel`` mid-study, or one that reaches its walltime,
is replaced and the study finishes with nothing lost or doubled.

Skipped, with the reason, where SLURM is not installed or no node is up; with
SBC_REQUIRE_SLURM=1 (CI after ``make slurm``) that is a failure instead.  The fits record the
SLURM job they ran in (``SLURM_JOB_ID``), which is how the tests know they ran under SLURM.
"""

import dataclasses
import io
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from support import ROOT
from sbc.pipeline import run_study
from sbc.store import Store
from sbc.study import load_study
from test_pipeline import ranks_of

UP = {"idle", "mixed", "allocated", "completing"}


def slurm_problem() -> str | None:
    """Why SLURM cannot run these tests here (None: it can)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (no sinfo/sbatch): `make slurm` (root) starts a one-node cluster"
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return "dask-jobqueue is not installed: pip install 'sbc-screens[slurm]'"
    try:
        out = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%T"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer ({exc}): `make slurm` starts SLURM"
    if out.returncode != 0:
        return f"SLURM does not answer (sinfo: {(out.stderr or out.stdout).strip()}): run `make slurm`"
    states = {s.rstrip("*~#$@^-") for s in out.stdout.split()}
    if not states & UP:
        return (f"no node of partition 'debug' is up (sinfo: {', '.join(sorted(states)) or 'none'}): "
                "run `make slurm`")
    return None


@pytest.fixture(scope="module")
def slurm():
    """Skips (fails with SBC_REQUIRE_SLURM set) where SLURM cannot run these tests; asked only
    when a test of this module runs, never at collection."""
    problem = slurm_problem()
    if problem and os.environ.get("SBC_REQUIRE_SLURM"):
        pytest.fail(f"SBC_REQUIRE_SLURM is set, but {problem}")
    if problem:
        pytest.skip(problem)


pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.usefixtures("slurm")]


# The head of the exact model files below: normal_mean's model, and where fits are logged.
EXACT_HEAD = '''
import importlib.util
import os
import time

_spec = importlib.util.spec_from_file_location("_slurm_normal_mean", {base!r})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)
build = _base.build
LOG = {log!r}


def _claim(slot, job):
    """The job holding ``slot``: the first job whose process linked the slot's file."""
    path = os.path.join(LOG, slot)
    if not os.path.exists(path):
        tmp = os.path.join(LOG, f"{{slot}}.{{job}}.{{os.getpid()}}")
        with open(tmp, "w") as f:
            f.write(job)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        os.unlink(tmp)
    with open(path) as f:
        return f.read()
'''

# A model file that records the SLURM job of every fit (fits-JOB-PID.txt, one line per fit)
# and makes the fits of the first SLURM job slow, so that job is still fitting when it is
# cancelled or reaches its walltime; the jobs after it fit at full speed.
EXACT_MODEL = EXACT_HEAD + '''FIRST_JOB_SLEEP = {sleep!r}


def _first_job(job):
    return _claim("first-job", job)


def exact_posterior(data, y, n_draws, rng):
    job = os.environ.get("SLURM_JOB_ID", "local")
    if job != "local" and _first_job(job) == job:
        time.sleep(FIRST_JOB_SLEEP)
    with open(os.path.join(LOG, f"fits-{{job}}-{{os.getpid()}}.txt"), "a") as f:
        f.write(f"{{float(y[0])!r}}\\n")
    return _base.exact_posterior(data, y, n_draws, rng)
'''

# crispr_screen itself, recording the SLURM job of every process that builds it.
CRISPR_MODEL = '''
import importlib.util
import os

_spec = importlib.util.spec_from_file_location("_slurm_crispr_screen", {base!r})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)
globals().update({{k: v for k, v in vars(_base).items() if not k.startswith("__")}})
LOG = {log!r}


def build(data):
    job = os.environ.get("SLURM_JOB_ID", "local")
    with open(os.path.join(LOG, f"builds-{{job}}-{{os.getpid()}}.txt"), "a") as f:
        f.write("build\\n")
    return _base.build(data)
'''

STUDY = """
name = "slurm_{name}"
model = "{model}"
seed = 5
simulations = {sims}
[[designs]]
cell_lines = 4
genes = 3
reps = 2
[sampler]
{sampler}
[cluster]
kind = "slurm"
jobs = 1
cores = 1
memory = "2GB"
queue = "debug"
walltime = "{walltime}"
log_directory = "{logs}"
"""
EXACT_SAMPLER = 'name = "exact"\ndraws = 99'
NUTPIE_SAMPLER = 'name = "nutpie"\nchains = 1\ntune = 100\ndraws = 200\nrescue = false'


def write_study(tmp_path: Path, name: str, model_text: str, sims: int, sampler: str,
                walltime: str = "00:10:00", **fill):
    logs, fits = tmp_path / "logs", tmp_path / "fits"
    logs.mkdir()
    fits.mkdir()
    model = tmp_path / f"{name}_model.py"
    model.write_text(model_text.format(log=str(fits), **fill))
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(name=name, model=model, sims=sims, sampler=sampler,
                                 walltime=walltime, logs=logs))
    return load_study(path), logs, fits


class Squeue(threading.Thread):
    """Polls squeue while a study runs: the job ids it saw RUNNING."""

    def __init__(self):
        super().__init__(daemon=True)
        self.running: set[str] = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.5):
            out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
            for line in out.stdout.splitlines():
                job, state = line.split()
                if state == "RUNNING":
                    self.running.add(job)

    def stop(self):
        self.done.set()
        self.join()


def job_state(job: str) -> str:
    """A job's final state: squeue keeps ended jobs for a few minutes (MinJobAge); the one-node
    cluster of `make slurm` also writes one line per finished job (jobcomp/filetxt)."""
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", job, "-o", "%T"],
                         capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.split()[0]
    comp = Path("/var/log/slurm/jobcomp.log")
    if comp.exists():
        for line in comp.read_text().splitlines():
            if line.startswith(f"JobId={job} "):
                return re.search(r"JobState=(\S+)", line).group(1)
    return "unknown"


def fits_by_job(fits: Path, prefix: str = "fits") -> Counter:
    """Lines written per SLURM job id (``local``: outside SLURM)."""
    counts = Counter()
    for f in fits.glob(f"{prefix}-*.txt"):
        job = f.name.split("-")[1]
        counts[job] += len(f.read_text().splitlines())
    return counts


def fitted_values(fits: Path, job_filter) -> set[str]:
    return {line for f in fits.glob("fits-*.txt") if job_filter(f.name.split("-")[1])
            for line in f.read_text().splitlines()}


@pytest.fixture
def cancel_leftovers():
    """A list of this test's job ids, cancelled after the test in case one is still queued
    (a failed test); other tests' jobs on the same cluster are never touched."""
    jobs: list[str] = []
    yield jobs
    if jobs:
        subprocess.run(["scancel", *sorted(set(jobs))], capture_output=True)


def jobs_of(logs: Path) -> set[str]:
    """The ids of the jobs that wrote a log in ``logs`` (dask-worker-JOBID.err)."""
    return {f.name.removesuffix(".err").rsplit("-", 1)[1] for f in logs.glob("*.err")}


def check_counts(out: Path, total: int, progress: str, summary) -> None:
    """Every replicate stored once, none failed, none lost; the progress line never counted
    past the total."""
    assert summary.lost_batches == 0 and summary.failed == 0, summary
    reps, _ = Store(out).tables()
    assert len(reps) == total
    assert reps[["model", "design", "rep"]].duplicated().sum() == 0
    done = [int(a) for a, _ in re.findall(r"(\d+)/(\d+) replicates done", progress)]
    assert done and max(done) == total and done[-1] == total, progress


def test_slurm_study_gives_the_ranks_of_a_local_run(tmp_path, cancel_leftovers):
    study, logs, fits = write_study(tmp_path, "crispr", CRISPR_MODEL, sims=8,
                                    sampler=NUTPIE_SAMPLER,
                                    base=str(ROOT / "models/crispr_screen.py"))
    start = time.monotonic()
    run_study(study, tmp_path / "local", workers=0, report=False)
    local_s = time.monotonic() - start
    squeue, stream = Squeue(), io.StringIO()
    squeue.start()
    start = time.monotonic()
    try:
        summary = run_study(study, tmp_path / "slurm", report=False, progress_stream=stream)
    finally:
        squeue.stop()
        cancel_leftovers.extend(jobs_of(logs))
    slurm_s = time.monotonic() - start
    print(f"crispr_screen 4x3x2, 8 replicates: {local_s:.1f} s in this process, "
          f"{slurm_s:.1f} s on SLURM (1 job)")
    output = stream.getvalue()
    assert "on SLURM (1 jobs)" in output
    check_counts(tmp_path / "slurm", 8, output, summary)
    pd.testing.assert_frame_equal(ranks_of(tmp_path / "local"), ranks_of(tmp_path / "slurm"))
    # the model was built in this process for the local run, and in SLURM jobs only for the
    # SLURM run: jobs that squeue listed as running, each with its own log file
    builds = fits_by_job(fits, "builds")
    jobs = set(builds) - {"local"}
    assert builds["local"] >= 1 and jobs, builds
    assert jobs <= squeue.running, (jobs, squeue.running)
    for job in jobs:
        err = (logs / f"dask-worker-{job}.err").read_text()
        assert "Registered to:" in err, err[-2000:]


def _run_with_a_lost_job(tmp_path, name, sims, sleep, walltime, lose, cancel_leftovers,
                         monkeypatch):
    """Runs the exact study locally and on SLURM, where ``lose(first_job, stored)`` is
    called once the first job has stored a few replicates; returns the first job's id, the
    SLURM run's output and the fits per job."""
    import sbc.dispatch.slurm

    # say "no Dask workers connected" after 0.3 s (60 s by default), to see it in this test.
    # The count starts when the first job is submitted, and the study's progress asks for the
    # note before that job's worker connects (sbatch, the job's start and Python's imports
    # take longer); the gap after the lost job may be shorter than the watcher's one look a
    # second (its replacement is submitted as soon as squeue shows it ended), so a threshold
    # of seconds missed it on a fast machine.
    monkeypatch.setattr(sbc.dispatch.slurm, "NO_WORKERS_NOTE", 0.3)
    study, logs, fits = write_study(tmp_path, name, EXACT_MODEL, sims=sims,
                                    sampler=EXACT_SAMPLER, walltime=walltime, sleep=sleep,
                                    base=str(ROOT / "tests/models/normal_mean.py"))
    run_study(study, tmp_path / "local", workers=0, report=False)
    out = tmp_path / "slurm"
    first: list[str] = []

    def watch():
        deadline = time.monotonic() + 240
        marker = fits / "first-job"
        while time.monotonic() < deadline:
            stored = len(list(out.glob("replicates/*/*/*.json")))
            if marker.exists() and marker.read_text() and stored >= 4:
                first.append(marker.read_text())
                cancel_leftovers.append(first[0])
                lose(first[0], stored)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stream = io.StringIO()
    start = time.monotonic()
    summary = run_study(study, out, report=False, progress_stream=stream)
    print(f"{name}: {time.monotonic() - start:.1f} s on SLURM")
    watcher.join(timeout=5)
    output = stream.getvalue()
    print(output)
    assert first, f"the first job never stored 4 replicates:\n{output}"
    jobs = fits_by_job(fits)
    cancel_leftovers.extend(jobs_of(logs))
    check_counts(out, sims, output, summary)
    pd.testing.assert_frame_equal(ranks_of(tmp_path / "local"), ranks_of(out))
    # every replicate of the SLURM run was fitted in a SLURM job, in the first job or after it
    assert fitted_values(fits, lambda j: j != "local") == fitted_values(fits, lambda j: j == "local")
    later = set(jobs) - {"local", first[0]}
    assert jobs[first[0]] >= 4 and later, jobs
    for job in [first[0], *later]:  # each ran a Dask worker under SLURM, with its own log
        assert "Registered to:" in (logs / f"dask-worker-{job}.err").read_text()
    assert "submitted a new SLURM job in its place" in output, output
    assert "no Dask workers connected for" in output and "SLURM jobs (squeue):" in output, output
    return first[0], output, jobs


def test_a_cancelled_job_is_replaced_and_the_study_finishes(tmp_path, cancel_leftovers,
                                                             monkeypatch):
    stored_at_cancel = []

    def cancel(job, stored):
        stored_at_cancel.append(stored)
        subprocess.run(["scancel", job], check=True)

    first, output, _ = _run_with_a_lost_job(tmp_path, "scancel", sims=24, sleep=0.5,
                                            walltime="00:10:00", lose=cancel,
                                            cancel_leftovers=cancel_leftovers,
                                            monkeypatch=monkeypatch)
    assert stored_at_cancel[0] < 24, "the job was cancelled after the study had finished"
    assert job_state(first) == "CANCELLED"
    assert f"SLURM job {first} ended (CANCELLED" in output, output


def test_a_job_at_its_walltime_is_replaced_and_the_study_finishes(tmp_path, cancel_leftovers,
                                                                  monkeypatch):
    # The first job fits 5 s a replicate: 24 take 2 minutes, past its walltime of 1 minute
    # (SLURM ends it 60-90 s after it started: it checks limits every 30 s).
    first, output, jobs = _run_with_a_lost_job(tmp_path, "walltime", sims=24, sleep=5.0,
                                               walltime="00:01:00", lose=lambda job, n: None,
                                               cancel_leftovers=cancel_leftovers,
                                               monkeypatch=monkeypatch)
    assert jobs[first] < 24, jobs
    assert job_state(first) == "TIMEOUT"
    assert f"SLURM job {first} ended (TIMEOUT" in output, output


# Fits that take long in the first two SLURM jobs (each fit writes started-JOB first), at full
# speed in later ones: one batch of both replicates is in flight when each of those jobs ends.
TWO_SLOW_JOBS_MODEL = EXACT_HEAD + '''

def _slow(job):
    return any(_claim(slot, job) == job for slot in ("job-1", "job-2"))


def exact_posterior(data, y, n_draws, rng):
    job = os.environ.get("SLURM_JOB_ID", "local")
    open(os.path.join(LOG, f"started-{{job}}"), "a").close()
    if job != "local" and _slow(job):
        time.sleep(600)
    with open(os.path.join(LOG, f"fits-{{job}}-{{os.getpid()}}.txt"), "a") as f:
        f.write(f"{{float(y[0])!r}}\\n")
    return _base.exact_posterior(data, y, n_draws, rng)
'''


def test_a_batch_whose_jobs_end_twice_is_rerun_whole_not_charged_to_its_replicates(
        tmp_path, cancel_leftovers, capsys):
    """Two job ends under one batch are two worker deaths, which Dask charges to the batch
    (allowed-failures 1).  They are the cluster's doing, not the replicates': the batch is
    rerun whole on the next job, not split or recorded as a crash."""
    study, logs, fits = write_study(tmp_path, "twice", TWO_SLOW_JOBS_MODEL, sims=2,
                                    sampler=EXACT_SAMPLER,
                                    base=str(ROOT / "tests/models/normal_mean.py"))
    study = dataclasses.replace(study, batch_size=2)
    run_study(study, tmp_path / "local", workers=0, report=False)
    cancelled: list[str] = []

    def cancel_each_slow_job():
        deadline = time.monotonic() + 400
        while len(cancelled) < 2 and time.monotonic() < deadline:
            for marker in fits.glob("started-*"):
                job = marker.name.removeprefix("started-")
                if job != "local" and job not in cancelled:
                    cancelled.append(job)
                    cancel_leftovers.append(job)
                    subprocess.run(["scancel", job], check=True)
            time.sleep(0.2)

    watcher = threading.Thread(target=cancel_each_slow_job, daemon=True)
    watcher.start()
    stream = io.StringIO()
    try:
        summary = run_study(study, tmp_path / "slurm", report=False, progress_stream=stream)
    finally:
        cancel_leftovers.extend(jobs_of(logs))
    watcher.join(timeout=5)
    output = stream.getvalue() + capsys.readouterr().err  # the batch messages go to stderr
    print(output)
    assert len(cancelled) == 2, (cancelled, output)
    assert all(job_state(job) == "CANCELLED" for job in cancelled), cancelled
    assert "ended with their SLURM jobs; rerunning the batch" in output, output
    assert "a worker died while fitting" not in output, output
    check_counts(tmp_path / "slurm", 2, output, summary)
    pd.testing.assert_frame_equal(ranks_of(tmp_path / "local"), ranks_of(tmp_path / "slurm"))
    later = set(fits_by_job(fits)) - {"local", *cancelled}
    assert later, fits_by_job(fits)  # both replicates were fitted by a third job


def test_jobs_that_cannot_start_their_workers_end_the_run_with_the_reason(
        tmp_path, cancel_leftovers, monkeypatch):
    import sbc.dispatch.slurm
    from sbc.errors import SchedulerError

    monkeypatch.setattr(sbc.dispatch.slurm, "SLURM_POLL", 2.0)
    _, logs, _ = write_study(tmp_path, "broken", EXACT_MODEL, sims=4,
                             sampler=EXACT_SAMPLER, sleep=0.0,
                             base=str(ROOT / "tests/models/normal_mean.py"))
    path = tmp_path / "broken.toml"
    path.write_text(path.read_text() + 'python = "/nonexistent/python3"\n')
    stream = io.StringIO()
    start = time.monotonic()
    with pytest.raises(SchedulerError, match=rf"3 SLURM jobs in a row ended before their Dask "
                       rf"workers connected .*the job logs in {re.escape(str(logs))}"):
        run_study(load_study(path), tmp_path / "slurm", report=False, progress_stream=stream)
    assert time.monotonic() - start < 120
    output = stream.getvalue()
    ended = re.findall(r"SLURM job (\d+) ended \((\w+)\) before its Dask workers connected", output)
    cancel_leftovers.extend(job for job, _ in ended)
    assert len(ended) == 3 and {state for _, state in ended} == {"FAILED"}, output
    assert "/nonexistent/python3" in (logs / f"dask-worker-{ended[0][0]}.err").read_text()


def test_a_genome_plan_runs_on_slurm_workers_with_the_decisions_of_a_local_run(
        tmp_path, cancel_leftovers):
    """A genome plan's screens simulated and fitted in SLURM jobs: the same designs,
    decisions, P(success) and SBC verdicts as the plan run in this process."""
    from support import TINY_GENOME_PLAN

    from sbc.plan.genome_config import load_genome_plan
    from sbc.plan.planner import run_plan

    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = ('\n[cluster]\nkind = "slurm"\njobs = 1\ncores = 1\nmemory = "2GB"\n'
               f'queue = "debug"\nwalltime = "00:10:00"\nlog_directory = "{logs}"\n')
    (tmp_path / "slurm.toml").write_text(TINY_GENOME_PLAN + cluster)
    (tmp_path / "local.toml").write_text(TINY_GENOME_PLAN)
    watch = Squeue()
    watch.start()
    try:
        on_slurm = run_plan(load_genome_plan(tmp_path / "slurm.toml"), tmp_path / "slurm_out",
                            stream=io.StringIO())
    finally:
        watch.stop()
        cancel_leftovers.extend(jobs_of(logs))
    local = run_plan(load_genome_plan(tmp_path / "local.toml"), tmp_path / "local_out",
                     workers=0, stream=io.StringIO())
    columns = ["design", "status", "simulations", "p_success", "calibration",
               "calibration_p_holm"]
    pd.testing.assert_frame_equal(on_slurm.table[columns], local.table[columns])
    assert on_slurm.recommended.design == local.recommended.design
    ran = jobs_of(logs)
    assert ran and ran <= watch.running, (ran, watch.running)


def test_slurm_workers_run_with_the_local_workers_environment(tmp_path, cancel_leftovers):
    """The jobs' workers run as local workers do: single-threaded BLAS and no
    MALLOC_TRIM_THRESHOLD_ (Dask's nanny sets 65536, which doubled a genome screen's time)."""
    from sbc.dispatch import session
    from sbc.study import ClusterSpec

    logs = tmp_path / "logs"
    logs.mkdir()
    spec = ClusterSpec("slurm", 1, (("queue", "debug"), ("cores", 1), ("memory", "2GB"),
                                    ("walltime", "00:05:00"), ("log_directory", str(logs))))
    names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "SLURM_JOB_ID")
    try:
        with session(workers=None, scheduler=None, cluster_spec=spec) as client:
            client.wait_for_workers(1, timeout=180)
            seen = list(client.run(lambda: {k: os.environ.get(k) for k in names}).values())
    finally:
        cancel_leftovers.extend(jobs_of(logs))
    assert len(seen) == 1
    (env,) = seen
    assert env["SLURM_JOB_ID"] in jobs_of(logs)
    assert env["MALLOC_TRIM_THRESHOLD_"] is None
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
