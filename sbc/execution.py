"""Where a run's fits go, and running them in this process: the part of dispatching that
needs no Dask (:mod:`sbc.dispatch`, the only module that knows Dask, runs them on workers).

- :func:`check_how` refuses a worker or thread count that would hang a run or silently
  ignore a setting, and any two of workers, threads and a scheduler given together;
  :func:`check_scheduler_address` refuses what is no Dask scheduler address (and warns when
  plain TCP leaves this machine) before Dask is touched.
- :func:`default_workers` (one per core this process may use) and :func:`auto_batch_size`
  (replicates per task).
- :class:`InProcess` (``workers=0``) and :class:`Threads` (``threads=N``) stand in for a Dask
  client; :func:`run_in_process` and :func:`run_in_threads` run batches with them, handing
  each batch's records over in the calling thread as it finishes.
"""

from __future__ import annotations

import contextlib

import math
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from numbers import Integral
from urllib.parse import urlsplit

from sbc.errors import ArgumentError, SchedulerError
from sbc.progress import tick
from sbc.replicate import run_batch


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _shown(name: str, value, option: bool) -> str:
    """How a message names a value: ``--workers 2`` (command line) or ``workers=2``."""
    return f"--{name} {value}" if option else f"{name}={value!r}"


def check_how(*, workers=None, threads=None, scheduler=None, option: bool = False) -> None:
    """Refuse (ArgumentError) what would make a run hang or silently ignore a setting: a
    worker count that is not an integer >= 0, a thread count that is not an integer >= 1,
    and any two of workers, threads and scheduler given together (each picks where fits
    run: local worker processes, threads of this process, a running scheduler's workers).
    ``option``: name them as command-line options (``--workers``), else as arguments."""
    for name, value, minimum, what in (
            ("workers", workers, 0, "0 fits in this process, N starts N local single-threaded "
                                    "Dask workers; leave it out for one per core"),
            ("threads", threads, 1, "threads of this process that fit side by side; leave it "
                                    "out to fit in worker processes")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)
                                  or value < minimum):
            raise ArgumentError(f"{_shown(name, value, option)}: {name} must be a whole number "
                                f">= {minimum} ({what})")
    given = [(n, v) for n, v in (("workers", workers), ("threads", threads),
                                 ("scheduler", scheduler)) if v is not None]
    if len(given) > 1:
        (a, va), (b, vb) = given[:2]
        where = {"workers": "local worker processes", "threads": "threads of this process",
                 "scheduler": "the workers of that running scheduler"}
        raise ArgumentError(
            f"{_shown(a, va, option)} and {_shown(b, vb, option)} were both given, but they "
            f"choose where fits run ({a}: {where[a]}; {b}: {where[b]}), so one of them would "
            f"be ignored; drop " + " or ".join(f"--{n}" if option else n for n, _ in given))


def auto_batch_size(n_missing: int, n_workers: int, n_rows: int) -> int:
    """Replicates per task: enough to amortize scheduling when fits are fast (small designs),
    one per task when a fit is long; always leave about 4 tasks per worker to balance load."""
    if n_rows > 5000:
        return 1
    return int(min(8, max(1, math.ceil(n_missing / (4 * max(1, n_workers))))))


class InProcess:
    """Stands in for a Dask client when ``workers=0``: batches run here, one after another;
    ``guard`` (:class:`sbc.inflight.Guard`) is told which replicate is being fitted."""

    def __init__(self, guard=None):
        self.guard = guard


@dataclass(frozen=True)
class Threads:
    """Stands in for a Dask client with ``threads=N``: batches run in N threads of this
    process, which compiles each model once (no worker processes to start or to compile in).
    Only for samplers that fit side by side in threads (``Sampler.threads``); a fit that
    crashes the process (os.abort, a segfault) ends the run, and a rerun resumes it; its
    ``guard`` (:class:`sbc.inflight.Guard`) then says which replicates were being fitted."""

    n: int
    guard: object = field(default=None, compare=False, repr=False)


SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def check_scheduler_address(address: str | None) -> str | None:
    """``address`` if it is a Dask scheduler address (``scheme://host:port``), else a
    SchedulerError saying what is expected.  Warns (stderr) when plain TCP leaves this
    machine: Dask sends pickled tasks and results over it, unencrypted and unauthenticated."""
    if address is None:
        return None
    parts = urlsplit(address) if "://" in address else None
    if parts is None or parts.scheme not in SCHEMES or (not parts.hostname and parts.scheme != "inproc"):
        hint = (" (http:// is the dashboard; the scheduler listens on tcp://, port 8786 by "
                "default)" if address.startswith(("http://", "https://")) else "")
        raise SchedulerError(f"--scheduler/run.scheduler {address!r} is not a Dask scheduler "
                             f"address{hint}; give scheme://host:port with scheme one of "
                             f"{', '.join(SCHEMES)}, e.g. tcp://127.0.0.1:8786")
    if parts.scheme in ("tcp", "ws") and parts.hostname not in _LOOPBACK:
        print(f"[sbc] warning: {address} is plain {parts.scheme.upper()} beyond this machine: "
              "anyone who can reach the scheduler can run code on its workers and read "
              "results. Use tls:// with certificates (--tls-ca-file, --tls-cert, --tls-key) "
              "on networks you do not control (docs/user_guide/scale_out.md: 'What a scheduler "
              "address trusts')",
              file=sys.stderr)
    return address


def run_in_process(tasks, on_records, progress, wanted, guard=None) -> int:
    """:func:`sbc.dispatch.run_tasks` in this process (:class:`InProcess`): batches one after
    another, each batch's records handed to ``on_records`` as it finishes; ``guard`` is told
    which replicate is being fitted."""
    for task in tasks:
        if wanted is not None and not wanted(task):
            continue
        records = run_batch(task, guard)
        on_records(records)
        if progress:
            tick(progress, records)
    return 0


def run_in_threads(tasks, on_records, n: int, progress, window, wanted, guard=None) -> int:
    """:func:`sbc.dispatch.run_tasks` on ``n`` threads (:class:`Threads`): records are handed
    over in this (the calling) thread, in the order the batches finish; at most ``window``
    batches in flight.  Once every batch left is past its cell's stop
    (:func:`past_every_stop`) it returns without waiting: those threads finish unrecorded
    (the interpreter waits for them at exit)."""
    queue = list(reversed(tasks))
    limit = window or len(tasks)
    running: dict = {}  # future -> its task
    pool = ThreadPoolExecutor(n, thread_name_prefix="sbc-fit")
    drain = True
    try:
        while queue or running:
            while queue and len(running) < limit:
                task = queue.pop()
                if wanted is None or wanted(task):
                    running[pool.submit(run_batch, task, guard)] = task
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                records = future.result()  # run_batch never raises for a replicate
                on_records(records)
                if progress:
                    tick(progress, records)
            if past_every_stop(queue, running.values(), wanted):
                drain = False  # their records would not count: do not wait for them
                break
    finally:  # Ctrl-C or an error: drop what has not started, wait for what runs
        pool.shutdown(wait=drain, cancel_futures=True)
    return 0


def past_every_stop(queued, running, wanted) -> bool:
    """Whether every batch still queued or running is one ``wanted`` declines (its cell's
    sequential verdict is reached), with some still running: the run may end without them.
    Their replicates lie past the stop, where no verdict counts them, and a later run that
    needs them fits them again to the same bits (each replicate has its own seed)."""
    if wanted is None:  # not sequential: nothing is past a stop (and nothing is listed)
        return False
    running = list(running)
    return bool(running) and not any(wanted(t) for t in running) and \
        not any(wanted(t) for t in queued)


@contextlib.contextmanager
def main_script_hidden():
    """Worker processes that do not run the caller's script again.

    Dask's nannies start workers with multiprocessing's "spawn", which imports the main
    script in every new process (as ``__mp_main__``) when ``__main__`` has a ``__file__``:
    a plain script that calls :func:`sbc.run` at its top level, without an
    ``if __name__ == "__main__":`` guard, then starts a study again in each worker and the
    workers never come up.  Nothing a worker runs lives in the script (models are loaded
    from their files, replicates by sbc's own functions), so while the session lasts (a
    nanny restarts a dead worker later) ``__main__`` is presented without its file, as it
    is in Jupyter and ``python -c``, and the script is not imported by the workers."""
    main = sys.modules.get("__main__")
    hidden = {}
    for name in ("__file__", "__spec__"):
        if main is not None and getattr(main, name, None) is not None:
            hidden[name] = getattr(main, name)
            setattr(main, name, None)
    try:
        yield
    finally:
        for name, value in hidden.items():
            setattr(main, name, value)
