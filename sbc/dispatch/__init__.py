"""Dispatch: fan batches of replicates out over Dask; the only module that knows Dask.

Batches are submitted with ``client.submit(..., key=..., pure=False, retries=...)`` and
consumed with ``as_completed``; every record is written to the store as its batch arrives, so
an interrupted run keeps everything finished.  A worker that dies mid-task loses nothing:
the scheduler reruns the batch elsewhere, and seeds depend only on (model, design, replicate).

Here: sessions (:func:`session`: a LocalCluster, SLURM jobs, a scheduler given by address,
with its TLS certificates), batches with their retries and worker deaths (:func:`run_tasks`),
and the genome planner's plain calls (:func:`map_calls`).  What needs no Dask (checking where
fits run, worker and batch counts, running batches in this process or in its threads) is
:mod:`sbc.execution`; the progress line is :mod:`sbc.progress`.

SLURM jobs (the cluster and :class:`~sbc.dispatch.slurm.SlurmJobs`, which replaces jobs that
ended and says when no worker is connected) are :mod:`sbc.dispatch.slurm`, the certificates of
a ``tls://`` scheduler :mod:`sbc.dispatch.tls`; Dask stays in this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sbc.errors import SchedulerError
from sbc.execution import (InProcess, Threads, check_how, check_scheduler_address,
                           default_workers, main_script_hidden, past_every_stop, run_in_process,
                           run_in_threads)
from sbc.inflight import Guard
from sbc.progress import Progress, tick
from sbc.replicate import BatchTask, run_batch, worker_died_record
from sbc.dispatch.slurm import SlurmJobs, slurm_cluster
from sbc.dispatch.tls import TLS
from sbc.study import ClusterSpec

# Dask is imported where a session, a probe or a wait needs it: runs with workers=0 or
# threads, and sbc.open, import this module (sbc.results -> sbc.pipeline) and need no Dask.

RETRIES = 3


# A replicate whose fit kills the process running it (os.abort, a segfault, out of memory) is
# tried on this many workers, then recorded as failed ("worker_died").  A batch that kills a
# worker this often is split, and each of its replicates is retried alone, so one crashing
# replicate never takes innocent batchmates with it.  Applies to clusters this module starts
# (Dask's ``distributed.scheduler.allowed-failures`` is set to one less); a scheduler given by
# address keeps its own setting.
WORKER_DEATHS = 2
# On SLURM, workers also die with their jobs (walltime, scancel, preemption): a batch whose
# workers died while jobs of the cluster ended is rerun whole, up to this many times, before
# its deaths are charged to its replicates as above.
JOB_END_RERUNS = 3




class _Deaths(logging.Handler):
    """Remembers the last 'Worker process N was killed by signal S' line of the nannies that
    this process runs (a LocalCluster's), to say how a crashing replicate died."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.last: str | None = None

    def emit(self, record):
        text = record.getMessage()
        if text.startswith("Worker process") and ("signal" in text or "status" in text):
            signal_no = text.rsplit(" ", 1)[-1]
            name = ""
            if "signal" in text and signal_no.isdigit():
                with contextlib.suppress(ValueError):
                    name = f" ({signal.Signals(int(signal_no)).name})"
            self.last = text.split(" ", 3)[-1].removeprefix("was ") + name


def _ignore_interrupt_plugin():
    """A worker plugin: workers ignore SIGINT, so Ctrl-C stops only the client (which then
    closes the cluster) instead of printing every worker's traceback."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreInterrupt(WorkerPlugin):
        name = "sbc-ignore-sigint"

        def setup(self, worker):
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupt()


def _local_cluster(factory, n: int, attempts: int = 2):
    """A LocalCluster of ``n`` single-threaded workers; a start that fails (a worker killed
    or crashed while starting) is tried once more before the error is raised."""
    for attempt in range(attempts):
        try:
            return factory(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.CRITICAL)
        except Exception:
            if attempt == attempts - 1:
                raise
            print("[sbc] the Dask workers did not start; trying once more", file=sys.stderr)
    raise AssertionError("unreachable")


CONNECT_TIMEOUT = 10.0  # seconds for a scheduler given by address to answer (connect + handshake)


def _unreachable(address: str, exc: BaseException, timeout: float | None = None) -> str:
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    return (f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
            f"({type(exc).__name__}: {exc}); check the address (e.g. tcp://host:8786), that "
            "`dask scheduler` is running, and for tls:// the certificates, or leave "
            "--scheduler out to run locally")


def probe_scheduler(address: str, security=None, timeout: float | None = None) -> None:
    """Refuse (SchedulerError) an address where no Dask scheduler answers within ``timeout``
    (default :data:`CONNECT_TIMEOUT`): connect, Dask's handshake and the scheduler's
    ``identity``, all bounded.  Dask's client bounds only the connect; its handshake waits
    for a reply forever, so an address where something else listens (a web server, the
    dashboard's HTTP port) would hang the run without a word."""
    from distributed.comm import connect
    from distributed.comm.core import CommClosedError
    from distributed.core import send_recv

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    args = security.get_connection_args("client") if security is not None else {}

    async def identity():
        comm = await connect(address, timeout=timeout, **args)
        try:
            return await send_recv(comm, op="identity")
        finally:
            comm.abort()

    async def bounded():  # the connect's own deadline first, then the handshake's
        task = asyncio.ensure_future(identity())
        done, _ = await asyncio.wait({task}, timeout=timeout + 2)
        if not done:
            task.cancel()
            return None
        return task.result()

    silent = (f"no Dask scheduler answered at {address} within {timeout:g} s: something "
              "accepts connections there but does not speak Dask's protocol (e.g. a web "
              "server, or the dashboard's HTTP port; the scheduler itself listens on port "
              "8786 by default); check the address and port, or leave --scheduler out to run "
              "locally")
    with ThreadPoolExecutor(1, thread_name_prefix="sbc-probe") as pool:
        try:
            info = pool.submit(asyncio.run, bounded()).result()
        except CommClosedError as exc:  # connected, then closed before Dask's handshake
            raise SchedulerError(f"{silent} (it closed the connection: {exc})") from None
        except Exception as exc:
            raise SchedulerError(_unreachable(address, exc, timeout)) from exc
    if info is None:
        raise SchedulerError(silent)
    kind = info.get("type") if isinstance(info, dict) else None
    if kind != "Scheduler":
        raise SchedulerError(f"{address} answered as a Dask {kind or 'server'}, not a scheduler; "
                             "give the address of the scheduler (`dask scheduler` prints it, "
                             "e.g. tcp://host:8786)")


@contextlib.contextmanager
def session(*, workers: int | None, scheduler: str | None,
            cluster_spec: ClusterSpec | None = None, tls: TLS | None = None,
            threads: int | None = None) -> Iterator[object]:
    """A Dask client (or ``InProcess``) that lives across several ``run_tasks`` calls, so
    workers keep their compiled models between calls (the planner runs many small rounds).

    ``scheduler`` connects to a running scheduler (``tls://`` with ``tls`` certificates); a
    SLURM ``cluster_spec`` starts jobs via dask-jobqueue; otherwise a LocalCluster with one
    single-threaded worker per core is started and closed.  ``workers=0`` without a scheduler
    runs in this process; ``threads=N`` runs in N threads of this process (:class:`Threads`).
    A cluster that cannot start is one SchedulerError line.
    """
    check_how(workers=workers)  # a count < 0 would start no worker and wait forever
    check_how(threads=threads)
    if tls is not None:
        tls.check_for(scheduler)
    slurm = cluster_spec is not None and cluster_spec.kind == "slurm"
    if threads and not scheduler and not slurm:
        with Guard(f"--threads {threads}") as guard:
            yield Threads(threads, guard)
        return
    if workers == 0 and not scheduler and not slurm:
        with Guard("--workers 0") as guard:
            yield InProcess(guard)
        return

    import dask
    from dask.distributed import Client, LocalCluster

    check_scheduler_address(scheduler)
    cluster = None
    keeper = None  # SlurmJobs: keeps a SLURM cluster at its number of jobs
    deaths = _Deaths()
    nanny_log = logging.getLogger("distributed.nanny")
    with contextlib.ExitStack() as stack:
        if scheduler:
            security = (tls or TLS()).security() if scheduler.startswith("tls://") else None
            try:
                probe_scheduler(scheduler, security)
                client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT:g}s", security=security)
            except SchedulerError:
                raise
            except (OSError, TimeoutError, ValueError, TypeError) as exc:
                raise SchedulerError(_unreachable(scheduler, exc)) from exc
        else:
            # worker-saturation 1.0: a single-threaded worker holds only the task it runs, so
            # a worker's death is charged to that task alone, never to one queued behind it.
            # lost-worker-timeout: a LocalCluster closes for good any nanny whose worker is
            # not registered 15 s after some earlier death of it, even while the nanny is
            # restarting it; with fits that crash every few seconds this closed every nanny
            # and the run waited forever with no workers.  The nannies restart their workers
            # themselves, so they are never closed here (SLURM jobs keep Dask's default).
            options = {"distributed.scheduler.allowed-failures": WORKER_DEATHS - 1,
                       "distributed.scheduler.worker-saturation": 1.0}
            # MALLOC_TRIM_THRESHOLD_: Dask's nannies set it (65536) to hand freed memory back
            # to the system; any value turns off glibc's adaptive mmap threshold, so every
            # numpy temporary over 128 KiB is mapped and unmapped afresh.  That doubled the
            # time of a genome screen (one process: 2.6 -> 5.0 s; two workers: 1.88 -> 3.45 s
            # per screen).  Local workers run without it; a value set in the environment
            # still wins.
            if not slurm:
                options["distributed.deploy.lost-worker-timeout"] = "3650d"
                options["distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"] = None
            stack.enter_context(dask.config.set(options))
            if not slurm:
                stack.enter_context(main_script_hidden())
            nanny_log.addHandler(deaths)
            stack.callback(nanny_log.removeHandler, deaths)
            try:
                if slurm:
                    cluster = slurm_cluster(cluster_spec)
                    keeper = SlurmJobs(cluster, cluster_spec.jobs,
                                       cluster_spec.slurm_kwargs().get("log_directory"))
                else:
                    cluster = _local_cluster(LocalCluster, workers or default_workers())
                client = Client(cluster)
            except SchedulerError:
                raise
            except Exception as exc:
                if keeper is not None:
                    keeper.stop()
                if cluster is not None:
                    with contextlib.suppress(Exception):
                        cluster.close()
                raise SchedulerError(
                    f"the Dask workers could not start ({type(exc).__name__}: {exc}); "
                    "try fewer workers (--workers), check free memory, or run in this "
                    "process with --workers 0") from None
        client.sbc_deaths = deaths
        client.sbc_slurm = keeper
        with contextlib.suppress(Exception):
            client.register_plugin(_ignore_interrupt_plugin())
        try:
            yield client
        finally:
            if keeper is not None:
                keeper.stop()
            with contextlib.suppress(Exception):
                client.close()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()


def run_tasks(tasks: Sequence[BatchTask], on_records: Callable[[list[dict]], None], *,
              workers: int | None = None, scheduler: str | None = None,
              progress: Progress | None = None, cluster_spec: ClusterSpec | None = None,
              client: object | None = None, tls: TLS | None = None,
              window: int | None = None, wanted: Callable[[BatchTask], bool] | None = None
              ) -> int:
    """Run batches and hand each batch's records to ``on_records`` as it completes.

    ``window``: at most this many batches in flight, submitted in the order given (None:
    all at once); ``wanted``: asked just before a batch is submitted, a batch it declines is
    skipped (a sequential study that has stopped).  Batches already in flight reach
    ``on_records`` as they finish, until every batch left is one ``wanted`` declines: then
    the run ends without them (:func:`sbc.execution.past_every_stop`), so a verdict is not
    held back by fits it does not count.

    Pass ``client`` from ``session`` to reuse workers across calls; otherwise a session is
    opened for this call.  A batch that kills its workers (``KilledWorker``) is split and its
    replicates retried alone; a replicate that still kills them is recorded as failed
    ("worker_died", with the signal when this process runs the nannies).  Returns the number
    of batches that could not be run for other reasons (infrastructure errors); their
    replicates are simply missing and a rerun resumes them.
    """
    if client is None:
        with session(workers=workers, scheduler=scheduler, cluster_spec=cluster_spec,
                     tls=tls) as own:
            return run_tasks(tasks, on_records, progress=progress, client=own,
                             window=window, wanted=wanted)
    if isinstance(client, InProcess):
        return run_in_process(tasks, on_records, progress, wanted, getattr(client, "guard", None))
    if isinstance(client, Threads):
        return run_in_threads(tasks, on_records, client.n, progress, window, wanted,
                               client.guard)

    from dask.distributed import as_completed
    from distributed.scheduler import KilledWorker

    lost = 0
    tag = uuid.uuid4().hex[:8]
    task_of: dict[str, BatchTask] = {}
    untaken: dict[str, BatchTask] = {}  # submitted, result not yet taken (in flight)
    keeper = getattr(client, "sbc_slurm", None)
    ends_at: dict[str, int] = {}  # key -> SLURM jobs ended before the batch was submitted
    reruns: dict[str, int] = {}  # key -> times the batch was rerun after job ends

    shipped: dict[int, object] = {}  # id(design) -> its future on the cluster

    def submit(task: BatchTask, i: int | str):
        key = f"sbc-{task.model.label}-{task.design.label}-{task.reps[0]}-{tag}-{i}"
        task_of[key] = untaken[key] = task
        ends_at[key] = keeper.replaced if keeper is not None else 0
        if _data_size(task.design) < SCATTER_BYTES:
            return client.submit(run_batch, task, key=key, pure=False, retries=RETRIES)
        # large observed data (posterior SBC): sent to the cluster once, not with every task
        if id(task.design) not in shipped:
            shipped[id(task.design)] = client.scatter(task.design, broadcast=True, hash=False)
        return client.submit(_run_with_design, replace(task, design=None),
                             shipped[id(task.design)], key=key, pure=False, retries=RETRIES)

    queue = list(enumerate(tasks))
    queue.reverse()  # pop() from the end: the first task first

    def more(n: int) -> list:
        out = []
        while queue and len(out) < n:
            i, task = queue.pop()
            if wanted is None or wanted(task):
                out.append(submit(task, i))
        return out

    futures = more(window or len(tasks))
    pending = as_completed(futures)

    handled = 0  # batches whose result this loop has taken (in flight: the others)

    def refill() -> None:  # keep ``window`` batches in flight, after the last one's records
        for f in more(window - (len(futures) - handled)):
            futures.append(f)
            pending.add(f)

    def take(future) -> list[dict] | None:
        """The records of a finished batch; None when there is nothing to hand over (the
        batch was split and resubmitted, or lost)."""
        nonlocal lost
        task = task_of[future.key]
        try:
            return future.result()
        except KilledWorker:
            done = reruns.get(future.key, 0)
            if keeper is not None and keeper.replaced > ends_at[future.key] \
                    and done < JOB_END_RERUNS:
                print(f"[sbc] the workers fitting replicates {task.reps[0]}-{task.reps[-1]} of "
                      f"{task.model.label} {task.design.label} ended with their SLURM jobs; "
                      "rerunning the batch", file=sys.stderr)
                f = submit(task, f"{future.key.split(tag + '-', 1)[1]}-rerun{done + 1}")
                reruns[f.key] = done + 1
                futures.append(f)
                pending.add(f)
                return None
            if len(task.reps) > 1:
                print(f"[sbc] a worker died while fitting replicates {task.reps[0]}-"
                      f"{task.reps[-1]} of {task.model.label} {task.design.label}; "
                      "retrying each alone", file=sys.stderr)
                for rep in task.reps:
                    f = submit(replace(task, reps=(rep,)), f"alone-{rep}")
                    futures.append(f)
                    pending.add(f)
                return None
            how = getattr(getattr(client, "sbc_deaths", None), "last", None)
            reason = (f"worker died: the process fitting this replicate died on "
                      f"{WORKER_DEATHS} workers" + (f" (last: {how})" if how else "")
                      + "; e.g. os.abort(), a segmentation fault or running out of "
                      "memory in the model or sampler. `sbc run --retry-failed` tries it "
                      "again")
            print(f"[sbc] {task.model.label} {task.design.label} replicate "
                  f"{task.reps[0]}: {reason.split(';')[0]}; recorded as failed",
                  file=sys.stderr)
            return [worker_died_record(task, task.reps[0], reason)]
        except Exception as exc:  # infrastructure: the scheduler lost the task
            lost += 1
            print(f"[sbc] a batch could not be run ({type(exc).__name__}: {exc}); "
                  "its replicates are left for the next run", file=sys.stderr)
            return None

    try:
        for future in _waiting(pending, getattr(client, "sbc_slurm", None), progress):
            handled += 1
            untaken.pop(future.key, None)
            records = take(future)
            if records is not None:
                on_records(records)
                if progress:
                    tick(progress, records)
                future.release()
            if window:
                refill()
            if wanted is not None and past_every_stop((t for _, t in queue),
                                                      untaken.values(), wanted):
                break  # the finally cancels them
    finally:
        for f in futures:
            f.cancel()
    return lost


def _waiting(pending, keeper: SlurmJobs | None, progress: Progress | None):
    """The futures of ``pending`` (``as_completed``) as they finish.  On SLURM (``keeper``)
    the wait also says, on the progress line, when no Dask worker has been connected for a
    while and what squeue says about the jobs, and ends with a SchedulerError when no more
    jobs are submitted (:meth:`SlurmJobs.problem`)."""
    if keeper is None:
        yield from pending
        return
    import time

    if progress:
        keeper.stream = progress.stream  # its job messages go where the progress line goes
    while not pending.is_empty():
        if pending.has_ready():
            yield next(pending)
            continue
        problem = keeper.problem()
        if problem:
            raise SchedulerError(problem)
        note = keeper.note()
        if note:
            stream = progress.stream if progress else sys.stderr
            line = progress.line().rstrip() + "; " if progress else "[sbc] "
            tty = getattr(stream, "isatty", lambda: False)()
            stream.write(("\r" if tty else "") + line + note + "\n")
            stream.flush()
        time.sleep(0.1)


def map_calls(client: object, fn: Callable, calls: Sequence[tuple],
              on_result: Callable[[object], None]) -> None:
    """``fn(*args)`` for every ``args`` of ``calls`` on the session's workers (a client from
    :func:`session`; in this process for ``InProcess`` and ``Threads``), each result handed
    to ``on_result`` in this process as it completes.  For the genome planner's simulated
    screens, which return a small record each."""
    if isinstance(client, (InProcess, Threads)):
        for args in calls:
            on_result(fn(*args))
        return
    from dask.distributed import as_completed

    futures = [client.submit(fn, *args, pure=False, retries=RETRIES) for args in calls]
    try:
        for future in as_completed(futures):
            on_result(future.result())
            future.release()
    finally:
        for future in futures:
            future.cancel()


# Designs that carry data (posterior SBC's observed CSV) above this size are scattered once.
SCATTER_BYTES = 1_000_000


def _data_size(design) -> int:
    return len(getattr(design, "csv_text", ""))


def _run_with_design(task: BatchTask, design) -> list[dict]:
    return run_batch(replace(task, design=design))


