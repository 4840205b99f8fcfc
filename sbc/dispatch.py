"""Dispatch: fan batches of replicates out over Dask; the only module that knows Dask.

Batches are submitted with ``client.submit(..., key=..., pure=False, retries=...)`` and
consumed with ``as_completed``; every record is written to the store as its batch arrives, so
an interrupted run keeps everything finished.  A worker that dies mid-task loses nothing:
the scheduler reruns the batch elsewhere, and seeds depend only on (model, design, replicate).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

from sbc.errors import SchedulerError
from sbc.replicate import BatchTask, run_batch
from sbc.study import ClusterSpec

RETRIES = 3


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Progress:
    """Replicates done / total, rate, ETA and failures on one line (stderr)."""

    def __init__(self, total: int, done: int = 0, stream=None, every: float = 5.0):
        self.total, self.done, self.failed, self.new = total, done, 0, 0
        self.start = time.monotonic()
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.every, self._last = every, 0.0

    def update(self, n_ok: int, n_failed: int) -> None:
        self.done += n_ok + n_failed
        self.new += n_ok + n_failed
        self.failed += n_failed
        now = time.monotonic()
        if self.tty or now - self._last >= self.every or self.done >= self.total:
            self._last = now
            self.stream.write(("\r" if self.tty else "") + self.line() + ("" if self.tty else "\n"))
            self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.new / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "?"
        return (f"[sbc] {self.done}/{self.total} replicates done, {self.failed} failed, "
                f"{rate:.2f}/s, ETA {eta}   ")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def auto_batch_size(n_missing: int, n_workers: int, n_rows: int) -> int:
    """Replicates per task: enough to amortize scheduling when fits are fast (small designs),
    one per task when a fit is long; always leave about 4 tasks per worker to balance load."""
    if n_rows > 5000:
        return 1
    return int(min(8, max(1, math.ceil(n_missing / (4 * max(1, n_workers))))))


def slurm_cluster(spec: ClusterSpec):
    """A ``dask_jobqueue.SLURMCluster`` from the study's [cluster] table (jobs not yet asked)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise SchedulerError("cluster kind 'slurm' needs dask-jobqueue: pip install "
                             "'sbc-screens[slurm]'") from exc
    kwargs = spec.slurm_kwargs()
    for key in ("job_extra_directives", "job_script_prologue"):
        if key in kwargs:
            kwargs[key] = list(kwargs[key])
    return SLURMCluster(scheduler_options={"dashboard_address": ":0"}, **kwargs)


class InProcess:
    """Stands in for a Dask client when ``workers=0``: batches run here, one after another."""


@contextlib.contextmanager
def session(*, workers: int | None, scheduler: str | None,
            cluster_spec: ClusterSpec | None = None) -> Iterator[object]:
    """A Dask client (or ``InProcess``) that lives across several ``run_tasks`` calls, so
    workers keep their compiled models between calls (the planner runs many small rounds).

    ``scheduler`` connects to a running scheduler; a SLURM ``cluster_spec`` starts jobs via
    dask-jobqueue; otherwise a LocalCluster with one single-threaded worker per core is
    started and closed.  ``workers=0`` without a scheduler runs in this process.
    """
    slurm = cluster_spec is not None and cluster_spec.kind == "slurm"
    if workers == 0 and not scheduler and not slurm:
        yield InProcess()
        return

    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler} within 10 s "
                                 f"({exc}); check the address (e.g. tcp://host:8786) and that "
                                 "`dask scheduler` is running, or leave --scheduler out to run "
                                 "locally") from exc
    elif slurm:
        cluster = slurm_cluster(cluster_spec)
        cluster.scale(jobs=cluster_spec.jobs)
        client = Client(cluster)
    else:
        cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                               processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_tasks(tasks: Sequence[BatchTask], on_records: Callable[[list[dict]], None], *,
              workers: int | None = None, scheduler: str | None = None,
              progress: Progress | None = None, cluster_spec: ClusterSpec | None = None,
              client: object | None = None) -> int:
    """Run batches and hand each batch's records to ``on_records`` as it completes.

    Pass ``client`` from ``session`` to reuse workers across calls; otherwise a session is
    opened for this call.  Returns the number of batches that could not be run
    (infrastructure errors); their replicates are simply missing and a rerun resumes them.
    """
    if client is None:
        with session(workers=workers, scheduler=scheduler, cluster_spec=cluster_spec) as own:
            return run_tasks(tasks, on_records, progress=progress, client=own)
    if isinstance(client, InProcess):
        for task in tasks:
            records = run_batch(task)
            on_records(records)
            if progress:
                _tick(progress, records)
        return 0

    from dask.distributed import as_completed

    lost = 0
    futures = []
    tag = uuid.uuid4().hex[:8]
    try:
        for i, task in enumerate(tasks):
            key = f"sbc-{task.model.label}-{task.design.label}-{task.reps[0]}-{tag}-{i}"
            futures.append(client.submit(run_batch, task, key=key, pure=False, retries=RETRIES))
        for future in as_completed(futures):
            try:
                records = future.result()
            except Exception as exc:  # a batch killed its workers repeatedly
                lost += 1
                print(f"[sbc] a batch could not be run ({type(exc).__name__}: {exc}); "
                      "its replicates are left for the next run", file=sys.stderr)
                continue
            on_records(records)
            if progress:
                _tick(progress, records)
            future.release()
    finally:
        for f in futures:
            f.cancel()
    return lost


def _tick(progress: Progress, records: list[dict]) -> None:
    failed = sum(r["status"] != "ok" for r in records)
    progress.update(len(records) - failed, failed)
