"""SLURM jobs as Dask workers: the dask-jobqueue cluster of a study's ``[cluster]`` table
(:func:`slurm_cluster`) and :class:`SlurmJobs`, which keeps it at its number of jobs
(replacing a job that ended: ``scancel``, its walltime, a preemption) and says when no worker
is connected.  Part of :mod:`sbc.dispatch`, the package that knows Dask.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from sbc.errors import SchedulerError
from sbc.study import ClusterSpec


PRE_SPAWN_ENVIRON = ("export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="
                     "\"{'MALLOC_TRIM_THRESHOLD_': None}\"")


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
    # The nanny of each job sets MALLOC_TRIM_THRESHOLD_ (Dask's default, 65536) in its
    # workers, which turns off glibc's adaptive mmap threshold and doubled a genome screen's
    # time; local workers run without it (sbc.dispatch.session), and so do the jobs' workers.
    # A variable of that name cannot unset it (Dask lowercases an override's key and an
    # explicit value wins), so the whole table is overridden; the rest of it (single-threaded
    # BLAS: OMP/MKL/OPENBLAS_NUM_THREADS=1) stays as Dask sets it.
    kwargs["job_script_prologue"] = [PRE_SPAWN_ENVIRON, *kwargs.get("job_script_prologue", [])]
    return SLURMCluster(scheduler_options={"dashboard_address": ":0"}, **kwargs)


# SLURM: how often squeue is asked about the cluster's jobs (seconds), after how many seconds
# without a connected Dask worker the progress line says so (and again as often), and how many
# jobs in a row may end before their worker ever connected before no more are submitted.
SLURM_POLL = 10.0
NO_WORKERS_NOTE = 60.0
FAILED_STARTS = 3
# squeue states of a job that no longer runs its Dask workers (COMPLETING: see check).
_ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
          "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT"}


class SlurmJobs:
    """Keeps a SLURMCluster at ``jobs`` running or pending jobs for as long as it lives.

    ``cluster.scale(jobs=n)`` submits n jobs once: a job that ends (``scancel``, its walltime,
    preemption, a failed node) takes its workers with it and is never replaced, so a study
    whose only job ended waited forever.  A thread asks ``squeue`` every :data:`SLURM_POLL`
    seconds about the cluster's jobs; one that has ended (or is gone from squeue) is dropped
    from the cluster and a new job is submitted in its place, under a new name.  Its batches
    go back to the scheduler and run on the new job's workers; nothing they computed reached
    the store, so no replicate is lost or written twice.  After :data:`FAILED_STARTS` jobs in
    a row that ended before any of their workers connected (a broken job script or
    environment) no more are submitted and :meth:`problem` says why.
    """

    def __init__(self, cluster, jobs: int, log_directory: str | None = None, stream=None):
        import getpass
        import time

        self.cluster, self.jobs, self.log_directory = cluster, jobs, log_directory
        self.stream = stream or sys.stderr
        self.user = getpass.getuser()
        self.states: dict[str, tuple[str, str]] = {}  # job id -> (state, reason), last squeue
        self.squeue_error: str | None = None
        self.known: dict[str, str] = {}  # job name -> SLURM job id
        self.seen: set[str] = set()  # job names that had a worker connected
        self.completing: set[str] = set()  # job names squeue showed COMPLETING
        self.unsubmitted: set[str] = set()  # job names without a SLURM job id last round
        self.failed_starts = 0
        self.gave_up: str | None = None
        self.replaced = 0
        # no worker has connected yet: counted from the first submission, below
        self.without_workers_since: float | None = time.monotonic()
        self.noted = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        cluster.scale(jobs=jobs)
        self._thread = threading.Thread(target=self._watch, name="sbc-slurm-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=SLURM_POLL + 30)

    # -- the watching thread -------------------------------------------------------------
    def _watch(self) -> None:
        import time

        asked = time.monotonic()
        while not self._stop.wait(1.0):
            try:
                self._look()
                if time.monotonic() - asked >= SLURM_POLL:
                    asked = time.monotonic()
                    self.check()
            except Exception as exc:  # never let the watcher die silently mid-study
                print(f"[sbc] checking the SLURM jobs failed ({type(exc).__name__}: {exc})",
                      file=self.stream)

    def _look(self) -> None:
        """Every second: which jobs have a worker connected, and since when none has."""
        import time

        names = [str(n) for n in self._worker_names()]
        with self._lock:
            if names:
                self.without_workers_since = None
            elif self.without_workers_since is None:
                self.without_workers_since = time.monotonic()
        for name in list(self.cluster.workers):
            if name not in self.seen and any(n == name or n.startswith(f"{name}-") for n in names):
                self.seen.add(name)
                self.failed_starts = 0

    def _squeue(self) -> dict[str, tuple[str, str]] | None:
        import subprocess

        try:
            out = subprocess.run(["squeue", "-h", "--states=all", "-u", self.user,
                                  "-o", "%i|%T|%r"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.squeue_error = f"squeue failed: {exc}"
            return None
        if out.returncode != 0:
            self.squeue_error = f"squeue failed: {(out.stderr or out.stdout).strip()[:200]}"
            return None
        self.squeue_error = None
        states = {}
        for line in out.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                states[parts[0]] = (parts[1], parts[2])
        return states

    def _worker_names(self) -> list[str]:
        for _ in range(3):
            with contextlib.suppress(RuntimeError):  # changed while read: read again
                return [w.get("name") for w in list(self.cluster.scheduler_info.get(
                    "workers", {}).values())]
        return []

    def check(self) -> None:
        """One round: read squeue, replace the jobs that ended."""
        # the job id of every job name the cluster has submitted; a name still wanted
        # (worker_spec) whose job Dask itself dropped (its worker gone for
        # distributed.deploy.lost-worker-timeout) has ended too
        # (a job still without an id a round later was never submitted: sbatch failed)
        unsubmitted = set()
        for name, job in list(self.cluster.workers.items()):
            if getattr(job, "job_id", None):
                self.known[name] = str(job.job_id)
            else:
                unsubmitted.add(name)
        failed_sbatch, self.unsubmitted = unsubmitted & self.unsubmitted, unsubmitted
        current = set(self.cluster.workers)
        jobs = {name: self.known[name] for name in list(self.cluster.worker_spec)
                if name in self.known}
        states = self._squeue()
        if states is None:
            return
        with self._lock:
            self.states = {job_id: states[job_id] for job_id in jobs.values() if job_id in states}
        ended = {name: "not submitted: sbatch failed" for name in failed_sbatch}
        for name, job_id in jobs.items():
            state, reason = states.get(job_id, ("no longer in squeue", "None"))
            if state == "COMPLETING":  # ending: its final state (TIMEOUT, ...) on the next
                if name in self.completing:  # round, unless it stays stuck in COMPLETING
                    ended[name] = state + (f", {reason}" if reason != "None" else "")
                self.completing.add(name)
            elif state in _ENDED or job_id not in states:
                ended[name] = state
            elif name not in current:
                ended[name] = f"{state}, but its Dask workers are lost"
        if not ended or self.gave_up:
            return
        for name, state in ended.items():
            if name not in self.seen:
                self.failed_starts += 1
            print(f"[sbc] SLURM job {jobs.get(name, name)} ended ({state})"
                  + (" with its Dask workers" if name in self.seen
                     else " before its Dask workers connected"), file=self.stream)
        if self.failed_starts >= FAILED_STARTS:
            log = self.log_directory
            self.gave_up = (
                f"{self.failed_starts} SLURM jobs in a row ended before their Dask workers "
                f"connected (the last: job {jobs.get(list(ended)[-1], list(ended)[-1])}, "
                f"{list(ended.values())[-1]}); "
                "no more are submitted. Their output says why: "
                + (f"the job logs in {log}" if log else "slurm-JOBID.out in the directory "
                   "sbc was started from (or set [cluster] log_directory)"))
            return
        self.cluster.sync(self._replace, list(ended))
        self.replaced += len(ended)
        states = self._squeue()  # the new jobs, for the progress line
        if states is not None:
            ids = [str(job.job_id) for job in list(self.cluster.workers.values())
                   if getattr(job, "job_id", None)]
            with self._lock:
                self.states = {job_id: states[job_id] for job_id in ids if job_id in states}
        rerun = any(name in self.seen for name in ended)
        print("[sbc] submitted a new SLURM job in its place"
              + ("; the batches it was running are rerun" if rerun else "")
              if len(ended) == 1 else f"[sbc] submitted {len(ended)} new SLURM jobs in their "
              "place" + ("; the batches they were running are rerun" if rerun else ""),
              file=self.stream)

    async def _replace(self, names: list[str]) -> None:  # on the cluster's event loop
        for name in names:
            self.cluster.worker_spec.pop(name, None)
            self.known.pop(name, None)
            self.completing.discard(name)
            job = self.cluster.workers.pop(name, None)
            if job is not None:  # scancel, in case it is only leaving (COMPLETING, requeued)
                with contextlib.suppress(Exception):
                    await job.close()
        # New names for the new jobs.  SpecCluster hands out the first free name, which is the
        # ended job's; Dask closes (scancels) the job under a name whose worker left
        # lost-worker-timeout (15 s) before and is not back, so a job started under the ended
        # job's name within those 15 s was cancelled as it started and never replaced.
        self.cluster._i += len(names)
        self.cluster.scale(jobs=self.jobs)
        await self.cluster._correct_state()

    # -- asked by the waiting loop -------------------------------------------------------
    def problem(self) -> str | None:
        """Why the study cannot go on (no more jobs are submitted), or None."""
        return self.gave_up

    def note(self) -> str | None:
        """Once every :data:`NO_WORKERS_NOTE` seconds without a connected worker: what
        squeue says about the cluster's jobs (else None)."""
        import time

        with self._lock:
            since = self.without_workers_since
            now = time.monotonic()
            if since is None or now - since < NO_WORKERS_NOTE or now - self.noted < NO_WORKERS_NOTE:
                return None
            self.noted = now
            states = dict(self.states)
        counts: dict[str, list[str]] = {}
        for job_id, (state, reason) in sorted(states.items()):
            counts.setdefault(state.lower(), []).append(
                f"{job_id}" + (f" {reason}" if reason and reason != "None" else ""))
        jobs = ", ".join(f"{len(ids)} {state} ({'; '.join(ids)})" for state, ids in counts.items())
        return (f"no Dask workers connected for {now - since:.0f} s; SLURM jobs (squeue): "
                + (jobs or "none listed") + (f"; {self.squeue_error}" if self.squeue_error else ""))


