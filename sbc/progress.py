"""The progress line of a run: replicates done / total, rate, ETA and failures on one line
of stderr (:class:`Progress`), moved on by each batch's records (:func:`tick`) wherever the
batches run (:mod:`sbc.execution` in this process, :mod:`sbc.dispatch` on Dask workers).
"""

from __future__ import annotations

import sys
import time


class Progress:
    """Replicates done / total, rate, ETA and failures on one line (stderr).

    The rate is measured from the first finished batch on, not from the start: the time
    before it is start-up (imports, workers, compiling the model once per worker), which a
    rate over the whole run would spread over every replicate and so inflate the ETA many
    times over on a fresh run.  Until a second batch finishes the ETA reads "estimating".
    """

    def __init__(self, total: int, done: int = 0, stream=None, every: float = 5.0,
                 clock=time.monotonic):
        self.total, self.done, self.failed, self.new = total, done, 0, 0
        self.clock = clock
        self.first: tuple[float, int] | None = None  # (time, replicates) at the first batch
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.every, self._last = every, 0.0

    def update(self, n_ok: int, n_failed: int) -> None:
        self.done += n_ok + n_failed
        self.new += n_ok + n_failed
        self.failed += n_failed
        now = self.clock()
        if self.first is None:
            self.first = (now, self.new)
        if self.tty or now - self._last >= self.every or self.done >= self.total:
            self._last = now
            self.stream.write(("\r" if self.tty else "") + self.line() + ("" if self.tty else "\n"))
            self.stream.flush()

    def rate(self) -> float | None:
        """Replicates per second since the first finished batch (None: not measured yet)."""
        if self.first is None:
            return None
        seconds, n = self.clock() - self.first[0], self.new - self.first[1]
        return n / seconds if n > 0 and seconds > 0 else None

    def line(self) -> str:
        rate = self.rate()
        left = self.total - self.done
        if left <= 0:
            eta = "0s"
        else:
            eta = _duration(left / rate) if rate else "estimating"
        shown = f"{rate:.2f}/s" if rate else "rate after the first batches"
        return (f"[sbc] {self.done}/{self.total} replicates done, {self.failed} failed, "
                f"{shown}, ETA {eta}   ")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def tick(progress: Progress, records: list[dict]) -> None:
    """Count one finished batch's records (failed: status other than "ok") on ``progress``."""
    failed = sum(r["status"] != "ok" for r in records)
    progress.update(len(records) - failed, failed)
