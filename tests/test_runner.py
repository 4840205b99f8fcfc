"""The replicate runner (sbc.runner) under `sbc run`, `sbc plan` and `sbc.testing`: one lock,
one finished set, batching from the client's real worker count, the Dask session closed
before tables are written; and the planner gets [cluster], [run] batch_size and the lock
through it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from support import ROOT
from sbc.design import Design
from sbc.errors import StoreError
from sbc.plan import Planner, load_plan, run_plan
from sbc.runner import Job, Runner, manifest
from sbc.spec import resolve_model
from sbc.study import SamplerSettings

MODEL = ROOT / "tests" / "plan_models" / "normal_mean.py"
EXACT = SamplerSettings(name="exact", draws=500)

PLAN = f"""
name = "runner"
seed = 5
model = "{MODEL}"
probability = 0.8
[space]
cell_lines = [2, 4]
genes = [1]
reps = [1]
[target]
quantity = "mu"
criterion = "sd"
below = 0.9
[search]
batch = 20
max_simulations = 20
[sampler]
name = "exact"
draws = 500
"""


def _manifest(ref) -> dict:
    study = {"name": "runner-test", "seed": 3, "models": [ref.label], "designs": ["2x1x1"]}
    return manifest(fingerprint="f" * 16, study=study,
                    model_refs={ref.label: ref.ref}, model_digests={ref.label: ref.digest})


@pytest.fixture
def ref():
    return resolve_model(str(MODEL), ROOT)


def test_ensure_fits_only_missing_replicates_and_counts_them(tmp_path, ref):
    job = Job(ref, Design(2, 1, 1), 6, EXACT, "auto", 3)
    with Runner(tmp_path / "out", _manifest(ref), workers=0, stream=io.StringIO()) as runner:
        first = runner.ensure([job])
        again = runner.ensure([job])
        more = runner.ensure([Job(ref, Design(2, 1, 1), 9, EXACT, "auto", 3)])
    assert (first.total, first.already, first.new, first.failed) == (6, 0, 6, 0)
    assert (again.new, again.already) == (0, 6)
    assert (more.new, more.already) == (3, 6)
    with Runner(tmp_path / "out", _manifest(ref), workers=0, stream=io.StringIO()) as runner:
        assert len(runner.finished) == 9  # read back from the store on opening
        assert runner.ensure([job]).new == 0


def test_the_store_is_locked_while_a_runner_holds_it(tmp_path, ref):
    with Runner(tmp_path / "out", _manifest(ref), workers=0, stream=io.StringIO()):
        with pytest.raises(StoreError, match="another sbc process"):
            with Runner(tmp_path / "out", _manifest(ref), workers=0, stream=io.StringIO()):
                pass
    with Runner(tmp_path / "out", _manifest(ref), workers=0, stream=io.StringIO()):
        pass  # released on exit


def test_two_plans_on_one_directory_do_not_interleave(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    plan = load_plan(path)
    with Planner(plan, tmp_path / "out", 0, None, io.StringIO()):
        with pytest.raises(StoreError, match="another sbc process"):
            run_plan(plan, tmp_path / "out", workers=0, stream=io.StringIO())
    result = run_plan(plan, tmp_path / "out", workers=0, stream=io.StringIO())
    assert result.recommended is not None


class _FakeClient:
    """Stands in for a Dask client that reports ``n`` workers."""

    def __init__(self, n: int):
        self.n = n

    def scheduler_info(self):
        return {"workers": {f"w{i}": {} for i in range(self.n)}}


@pytest.mark.parametrize("n_workers, expected", [(1, 8), (3, 4), (10, 1)])
def test_batches_follow_the_clients_real_worker_count(tmp_path, ref, n_workers, expected):
    """auto batch size: ceil(missing / (4 x workers)), at most 8: 40 missing replicates on 1,
    3 and 10 workers are batched 8, 4 and 1 per task, whatever was asked for."""
    with Runner(tmp_path / "out", _manifest(ref), workers=2, stream=io.StringIO()) as runner:
        runner._client = _FakeClient(n_workers)
        try:
            tasks, total = runner.tasks([Job(ref, Design(2, 1, 1), 40, EXACT, "auto", 3)])
        finally:
            runner._client = None
    assert total == 40 and {len(t.reps) for t in tasks[:-1]} == {expected}
    assert sorted(r for t in tasks for r in t.reps) == list(range(40))


def test_a_plan_reads_cluster_and_batch_size_and_hands_them_to_the_runner(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN + '\n[run]\nbatch_size = 3\n\n[cluster]\nkind = "slurm"\njobs = 2\n'
                    'cores = 4\nmemory = "8GB"\n')
    plan = load_plan(path)
    assert plan.batch_size == 3 and plan.cluster.kind == "slurm" and plan.cluster.jobs == 2
    planner = Planner(plan, tmp_path / "out", None, None, io.StringIO())
    planner.open()
    try:
        assert planner.runner.cluster is plan.cluster and planner.runner.batch_size == 3
        assert planner.runner.where() == "SLURM (2 jobs)"
    finally:
        planner.close()


def test_the_session_is_closed_before_tables_are_written(tmp_path, ref):
    """With a Dask client alive, xarray takes a cluster-wide lock to write NetCDF (and fails
    when the client is gone mid-write); the runner stops the workers first."""
    with Runner(tmp_path / "out", _manifest(ref), workers=1, stream=io.StringIO()) as runner:
        runner.ensure([Job(ref, Design(2, 1, 1), 4, EXACT, "auto", 3)])
        assert runner._client is not None
        runner.close_session()
        assert runner._client is None
        runner.store.write_tables()
    assert Path(tmp_path / "out" / "ranks.nc").is_file()


@pytest.mark.parametrize("decided", [True, False])
def test_threads_do_not_wait_for_batches_past_every_stop(monkeypatch, decided):
    """A sequential verdict is not held back by fits it does not count: once every batch
    left is past its cell's stop, the threads are not waited for and their records are not
    handed over; while any batch left is still wanted, every finished batch is handed over."""
    import threading
    import time

    from sbc import execution

    release = threading.Event()

    def fake_batch(task, guard=None):
        if task == "slow":
            release.wait(20)
        return [task]

    monkeypatch.setattr(execution, "run_batch", fake_batch)
    stopped, seen = [], []

    def on_records(records):
        seen.extend(records)
        if "fast" in records and decided:
            stopped.append(True)

    start = time.monotonic()
    waiter = threading.Timer(3.0, release.set)  # without the early end: a 3 s wait
    waiter.start()
    try:
        execution.run_in_threads(["slow", "fast"], on_records, 2, None, 2,
                                 lambda task: not stopped)
        took = time.monotonic() - start
    finally:
        release.set()
        waiter.cancel()
    if decided:
        assert seen == ["fast"] and took < 2.5, (seen, took)
    else:
        assert sorted(seen) == ["fast", "slow"] and took >= 2.5, (seen, took)


def test_past_every_stop_needs_every_batch_left_declined():
    from sbc.execution import past_every_stop

    def wanted(task):
        return task != "past"

    assert past_every_stop([], ["past"], wanted)
    assert past_every_stop(["past"], ["past", "past"], wanted)
    assert not past_every_stop(["open"], ["past"], wanted)  # a wanted batch queued
    assert not past_every_stop([], ["past", "open"], wanted)  # one still running
    assert not past_every_stop(["past"], [], wanted)  # nothing running: the loop ends anyway
    assert not past_every_stop([], ["past"], None)  # not sequential: every batch counts
