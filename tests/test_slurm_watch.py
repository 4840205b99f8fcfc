"""The SLURM job watcher's "no Dask workers connected" note, without SLURM: a stand-in
cluster (the attributes :class:`sbc.dispatch.slurm.SlurmJobs` reads) and no ``squeue``
needed (the watcher's squeue round runs every SLURM_POLL s, after these tests end).

Fast.  tests/test_slurm.py runs the watcher on a real SLURM cluster.
"""

import time

import pytest

import sbc.dispatch.slurm as slurm


class StandInCluster:
    """What SlurmJobs reads of a dask_jobqueue cluster: no job has a worker yet."""

    def __init__(self):
        self.workers, self.worker_spec = {}, {}
        self.scheduler_info = {"workers": {}}
        self.scaled = None

    def scale(self, jobs):
        self.scaled = jobs


@pytest.fixture
def jobs(monkeypatch):
    monkeypatch.setattr(slurm, "NO_WORKERS_NOTE", 0.2)
    watcher = slurm.SlurmJobs(StandInCluster(), jobs=2)
    yield watcher
    watcher.stop()


def test_the_time_without_workers_counts_from_the_submission(jobs):
    """Before the watcher's first look (1 s after the jobs are submitted) the note already
    counts from the submission."""
    assert jobs.cluster.scaled == 2
    time.sleep(0.3)
    note = jobs.note()
    assert note is not None and note.startswith("no Dask workers connected for 0 s"), note
    assert jobs.note() is None  # once every NO_WORKERS_NOTE seconds, not at every call


def test_a_connected_worker_ends_the_count(jobs):
    jobs.cluster.scheduler_info = {"workers": {"tcp://w": {"name": "job-0"}}}
    jobs.cluster.workers = {"job-0": object()}
    time.sleep(1.5)  # the watcher looks once a second
    assert jobs.without_workers_since is None
    assert jobs.note() is None
    assert "job-0" in jobs.seen
