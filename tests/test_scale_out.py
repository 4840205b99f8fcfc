"""Scale-out: a real `dask scheduler` with `dask worker` processes, a worker killed
mid-study, and the SLURM recipe (job script rendered and checked without SLURM)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from support import ROOT
from sbc.pipeline import run_study
from sbc.store import Store
from sbc.study import load_study
from test_pipeline import ranks_of

DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster():
    """`dask scheduler` plus two single-threaded `dask worker` processes on localhost."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SBC_TEST_FAULT": "slow"}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    time.sleep(2)
    for i in range(2):
        procs.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-nanny", "--name", f"w{i}"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from dask.distributed import Client
    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    yield address, procs
    for p in procs[::-1]:
        p.kill()
        p.wait()


def test_external_scheduler_gives_identical_ranks_and_survives_a_killed_worker(
        dask_cluster, exact_study, tmp_path, monkeypatch):
    address, procs = dask_cluster
    study = load_study(exact_study(sims=40, extra=""))
    monkeypatch.setenv("SBC_TEST_FAULT", "slow")  # the same 50 ms per fit in-process
    run_study(study, tmp_path / "local", workers=0, report=False)
    remote = tmp_path / "remote"

    import threading
    killer = threading.Thread(target=_kill_when, args=(remote, 10, procs[1]))
    killer.start()
    summary = run_study(study, remote, scheduler=address, report=False)
    killer.join()
    assert procs[1].poll() is not None, "the worker should have been killed mid-study"
    assert summary.lost_batches == 0
    reps, _ = Store(remote).tables()
    assert len(reps) == 80 and reps[["model", "design", "rep"]].duplicated().sum() == 0
    pd.testing.assert_frame_equal(ranks_of(tmp_path / "local"), ranks_of(remote))


def _kill_when(out: Path, n_files: int, proc) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("replicates/*/*/*.json"))) < n_files:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)


SLURM_STUDY = """
name = "slurm_recipe"
model = "crispr_screen"
seed = 1
simulations = 10
[[designs]]
cell_lines = 10
genes = 3
reps = 3
[cluster]
kind = "slurm"
jobs = 4
queue = "short"
account = "crispr-lab"
cores = 8
memory = "32GB"
walltime = "02:00:00"
job_extra_directives = ["--constraint=skylake"]
log_directory = "/scratch/crispr/logs"
job_script_prologue = ["source /opt/venvs/sbc/bin/activate"]
"""


def test_slurm_recipe_renders_a_valid_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from sbc.dispatch import slurm_cluster

    path = tmp_path / "slurm.toml"
    path.write_text(SLURM_STUDY)
    study = load_study(path)
    assert study.cluster.kind == "slurm" and study.cluster.jobs == 4
    cluster = slurm_cluster(study.cluster)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    # what a cluster admin looks for: partition, account, cores, memory, walltime, the
    # site's own directives, where the logs go and how the environment is activated
    for line in ("#SBATCH -p short", "#SBATCH -A crispr-lab", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=30G", "#SBATCH -t 02:00:00", "#SBATCH --constraint=skylake",
                 "#SBATCH -e /scratch/crispr/logs/dask-worker-%J.err",
                 "#SBATCH -o /scratch/crispr/logs/dask-worker-%J.out",
                 "source /opt/venvs/sbc/bin/activate\n"):
        assert line in script
    assert script.index("source /opt/venvs/sbc/bin/activate") < script.index("dask_worker")
    # the workers' environment as local workers have it (sbc.dispatch.slurm.PRE_SPAWN_ENVIRON)
    assert script.index("MALLOC_TRIM_THRESHOLD_': None}") < script.index("dask_worker")
    # One single-threaded worker per core, as for the local cluster.
    assert "--nthreads 1" in script and "--nworkers 8" in script


@pytest.mark.parametrize("bad,expected", [('walltime = "2 hours"', "not a SLURM time"),
                                          ('memory = "lots"', "write e.g. \"16GB\""),
                                          ('qeue = "short"', "did you mean 'cluster.queue'"),
                                          ('kind = "kubernetes"', "unknown cluster kind")])
def test_slurm_settings_are_validated(tmp_path, bad, expected):
    from sbc.errors import StudyError

    key = bad.split(" = ")[0]
    text = "\n".join(line for line in SLURM_STUDY.splitlines() if not line.startswith(key + " "))
    path = tmp_path / "slurm.toml"
    path.write_text(text + "\n" + bad + "\n")
    with pytest.raises(StudyError, match=expected.replace("(", r"\(")):
        load_study(path)
