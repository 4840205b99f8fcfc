"""The replicate runner: the one way ``sbc run``, ``sbc plan`` and ``sbc.testing`` fit replicates.

For one store it owns

- the manifest's common fields (:func:`manifest`: versions, creation time, model digests)
  and opening the store against it (the store refuses another study's fingerprint);
- the store's exclusive lock, held from opening to closing, so two runs (or two plans) on
  one directory never interleave;
- the set of finished replicates (read once, each record checked; unusable files set aside);
- batching, from the number of workers the Dask client really has;
- progress (replicates done, rate, ETA, failures) and failure counts;
- the Dask session (a local cluster, a scheduler address, SLURM), started on the first
  replicate that must be fitted and kept across calls, so workers keep compiled models.

Callers describe what must exist as :class:`Job` s (the first ``n`` replicates of one model on
one design) and call :meth:`Runner.ensure`; only missing replicates are fitted.  Work that is
not a replicate of a model (the genome plan's simulated screens) goes through
:meth:`Runner.map` on the same store, lock and session.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sbc.design import Design
from sbc.dispatch import TLS, map_calls, run_tasks, session
from sbc.execution import auto_batch_size, check_how, default_workers
from sbc.progress import Progress
from sbc.replicate import BatchTask
from sbc.numerics import numerics
from sbc.spec import ModelRef
from sbc.store import Store, counts_as_done
from sbc.sampling import SamplerSettings
from sbc.study import ClusterSpec

SEQUENTIAL_BATCH = 2  # replicates per batch of a sequential study: few fitted past its stop
SEQUENTIAL_WINDOW = 2  # batches in flight per worker in a sequential study
VERSIONED = ("sbc-screens", "pymc", "bambi", "nutpie", "pytensor", "arviz-stats", "dask")


def versions() -> dict[str, str]:
    """Installed versions of sbc and the libraries that decide a fit."""
    out = {}
    for pkg in VERSIONED:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def manifest(*, fingerprint: str, study: dict, model_refs: dict, model_digests: dict,
             **extra) -> dict:
    """A store's study.json: what was run (``study``), its fingerprint, the models'
    references and digests, the versions and the time; ``extra`` adds kind-specific
    fields (e.g. ``kind="plan"``)."""
    return {"fingerprint": fingerprint, **extra, "study": study,
            "model_digests": model_digests, "model_refs": model_refs,
            "versions": versions(), "numerics": numerics(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@dataclass(frozen=True)
class Job:
    """Replicates ``0 .. n-1`` of ``model`` on ``design`` must be stored."""

    model: ModelRef
    design: Design
    n: int
    sampler: SamplerSettings
    thin: int | str
    seed: int
    simulate: ModelRef | None = None
    parameter_map: tuple = ()


@dataclass
class Counts:
    """What one :meth:`Runner.ensure` call did."""

    total: int = 0
    already: int = 0
    new: int = 0
    failed: int = 0
    lost_batches: int = 0
    # failure code -> [count, the first one's error text]
    failures: dict[str, list] = field(default_factory=dict)


class Runner:
    """Fits the missing replicates of a store; use as a context manager::

        with Runner(out, manifest, workers=2) as runner:
            runner.ensure([Job(model, design, 100, settings, "auto", seed)])

    ``workers``: local single-threaded Dask workers (0: in this process, no Dask; None:
    one per core); local workers beyond the cores are capped with a note.  ``scheduler``,
    ``cluster`` and ``tls`` select a running scheduler or SLURM instead.  ``batch_size``
    fixes the replicates per task (default: from the design size and the worker count).
    ``keep_records``: keep every record in memory (:attr:`records`) for callers that
    evaluate them between calls (the planner).  ``retry_failed``: failed records count as
    missing and are refitted with their own seeds.
    """

    def __init__(self, out: str | Path, manifest: dict, *, workers: int | None = None,
                 scheduler: str | None = None, cluster: ClusterSpec | None = None,
                 tls: TLS | None = None, batch_size: int | None = None, stream=None,
                 keep_records: bool = False, retry_failed: bool = False,
                 threads: int | None = None):
        check_how(workers=workers)  # a negative count would start no worker: a silent hang
        check_how(threads=threads)
        self.out, self.manifest = Path(out), manifest
        self.scheduler, self.cluster, self.tls = scheduler, cluster, tls
        self.batch_size, self.keep_records, self.retry_failed = batch_size, keep_records, \
            retry_failed
        self.stream = stream or sys.stderr
        self.threads = threads if threads and not scheduler and (
            cluster is None or cluster.kind != "slurm") else None
        self.workers = self._local_workers(threads if self.threads else workers)
        self.records: dict[tuple[str, str, int], dict] = {}
        self.finished: set[tuple[str, str, int]] = set()
        self.new_fits = 0
        self._stack = contextlib.ExitStack()  # the lock
        self._session = contextlib.ExitStack()  # the Dask session, closed first
        self._client = None

    def _local_workers(self, workers: int | None) -> int:
        workers = default_workers() if workers is None else workers
        cores = default_workers()
        if not self.scheduler and self.cluster is None and workers > cores:
            # single-threaded workers beyond the cores only add processes (each ~0.5 GB) and
            # slow every fit; a cluster or scheduler brings its own cores
            print(f"[sbc] {workers} local workers asked for, but this machine has {cores} "
                  f"cores: using {cores}", file=self.stream)
            return cores
        return workers

    # --- opening and closing ---------------------------------------------------------
    def __enter__(self) -> Runner:
        self.store = Store.open_for_run(self.out, self.manifest)
        self._stack.enter_context(self.store.exclusive())
        try:
            for record in self.store.iter_records(quarantine=True):
                key = (record["model"], record["design"], record["rep"])
                if self.keep_records:
                    self.records[key] = record
                if counts_as_done(record, self.retry_failed):
                    self.finished.add(key)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close_session()
        finally:
            self._stack.close()

    def close_session(self) -> None:
        """Stop the Dask workers (the lock stays held).  Call it before writing tables: with
        a Dask client alive, xarray would take a cluster-wide lock to write NetCDF."""
        self._session.close()
        self._client = None

    @property
    def client(self):
        """The Dask client (or in-process stand-in), started on first use."""
        if self._client is None:
            self._client = self._session.enter_context(session(
                workers=self.workers, scheduler=self.scheduler, cluster_spec=self.cluster,
                tls=self.tls, threads=self.workers if self.threads else None))
        return self._client

    def n_workers(self) -> int:
        """Workers the client has now (at least 1); the asked-for count before it starts."""
        if self._client is None or not hasattr(self._client, "scheduler_info"):
            return max(1, self.workers)
        try:
            return max(1, len(self._client.scheduler_info().get("workers", {})))
        except Exception:  # a scheduler that does not answer: the asked-for count
            return max(1, self.workers)

    def where(self) -> str:
        if self.scheduler:
            return f"scheduler {self.scheduler}"
        if self.cluster is not None and self.cluster.kind == "slurm":
            return f"SLURM ({self.cluster.jobs} jobs)"
        if self.threads:
            return f"{self.workers} thread(s) of this process (no Dask)"
        return "this process (no Dask)" if self.workers == 0 else \
            f"{self.workers} local Dask worker(s)"

    # --- fitting -----------------------------------------------------------------------
    def map(self, fn, calls, on_result) -> None:
        """``fn(*args)`` for every ``args`` of ``calls`` on the session's workers, each result
        handed to ``on_result`` here as it completes (the genome plan's screens)."""
        map_calls(self.client, fn, list(calls), on_result)

    def missing(self, job: Job) -> list[int]:
        return [r for r in range(job.n)
                if (job.model.label, job.design.label, r) not in self.finished]

    def tasks(self, jobs: Iterable[Job], sequential: bool = False
              ) -> tuple[list[BatchTask], int]:
        """The batches that fit every missing replicate of ``jobs``, and the jobs' total.
        ``sequential``: small batches, interleaved across jobs in replicate order (a
        sequential study decides on the replicates in order, so they are fitted in order)."""
        per_job, total = [], 0
        workers = self.n_workers()
        for job in jobs:
            total += job.n
            missing = self.missing(job)
            size = self.batch_size or (SEQUENTIAL_BATCH if sequential else auto_batch_size(
                len(missing), workers, job.design.n_rows))
            per_job.append([BatchTask(job.model, job.simulate, job.design, job.sampler,
                                      job.thin, job.seed, tuple(missing[i:i + size]),
                                      job.parameter_map)
                            for i in range(0, len(missing), size)])
        if sequential:
            return sorted((t for ts in per_job for t in ts), key=lambda t: t.reps[0]), total
        return [t for ts in per_job for t in ts], total

    def ensure(self, jobs: Iterable[Job], *, announce: str | None = None,
               progress: bool = True, monitor=None) -> Counts:
        """Fit every missing replicate of ``jobs`` and store it; returns what was done.
        ``announce``: a name for the one-line summary printed before fitting starts.
        ``monitor``: a :class:`sbc.stopping.Monitor` of a sequential study: batches go out in
        replicate order, a few per worker at a time, and none of a (model, design) the
        monitor has decided (the batches in flight then finish and are stored)."""
        jobs = list(jobs)
        if monitor is not None:
            monitor.add(self.records.values())
            jobs = [job for job in jobs if not monitor.decided(job.model.label,
                                                               job.design.label)]
        if any(self.missing(job) for job in jobs):
            self.client  # noqa: B018  (start workers before batching by their number)
        tasks, total = self.tasks(jobs, sequential=monitor is not None)
        counts = Counts(total=total, already=total - sum(len(t.reps) for t in tasks))
        if not tasks:
            return counts
        if announce:
            most = "at most " if monitor is not None else ""
            print(f"[sbc] {announce}: {most}{total} replicates ({counts.already} already "
                  f"stored), {len(tasks)} tasks on {self.where()}"
                  + ("; sequential: stops when each verdict is reached" if most else ""),
                  file=self.stream)
        bar = Progress(total, counts.already, stream=self.stream) if progress else None

        def write(records):
            for record in records:
                self.store.write_record(record)
                key = (record["model"], record["design"], record["rep"])
                self.finished.add(key)
                if self.keep_records:
                    self.records[key] = record
                if record["status"] != "ok":
                    entry = counts.failures.setdefault(record.get("failure") or "exception",
                                                       [0, str(record.get("error") or "")])
                    entry[0] += 1
                    counts.failed += 1
            counts.new += len(records)
            self.new_fits += len(records)

        def write_and_watch(records):
            write(records)
            monitor.add(records)

        try:
            if monitor is None:
                counts.lost_batches = run_tasks(tasks, write, progress=bar, client=self.client)
            else:
                counts.lost_batches = run_tasks(
                    tasks, write_and_watch, progress=bar, client=self.client,
                    window=SEQUENTIAL_WINDOW * self.n_workers(),
                    wanted=lambda t: not monitor.decided(t.model.label, t.design.label))
        finally:
            if bar is not None:
                bar.close()
        return counts
