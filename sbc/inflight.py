"""What an in-process run is fitting, so a fit that kills the process says where it died.

With worker processes (Dask) a fit that kills its process (``os.abort()``, a segmentation
fault, ``os._exit``, running out of memory) is recorded as a failed replicate and the study
goes on.  In this process (``--workers 0``, ``--threads N``) it cannot be: it takes the run
with it.  A :class:`Guard` makes that death explain itself:

- a watcher process (a bare ``python -I -S``, started with the guard) reads a pipe from
  this process: before each replicate the runner notes "model M, design D, replicate R"
  (per thread), after it clears the note;
- when the pipe closes without the guard having been closed (this process died), the
  watcher prints which replicate(s) were being fitted and that worker processes
  (``--workers N``) keep such fits as failed replicates;
- Python's :mod:`faulthandler` writes the Python stack of the crash (where in the model it
  happened) for the fatal signals it handles to a temporary file, which the watcher prints
  before its message (without faulthandler's list of extension modules) and removes; unless
  something (pytest) already enabled faulthandler, which then prints the stack itself.

A guard that cannot start (no interpreter to run the watcher) or whose watcher is gone
never fails a run: it only stops noting.  Forked children (a fit under ``sampler.timeout``
runs in one) close the pipe and turn faulthandler off, so their crashes, which the parent
records as failed replicates, neither hold the pipe open nor print a stack.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import subprocess
import sys
import tempfile
import threading
import weakref

# The watcher: reads notes until the pipe closes; without "done" first, this process died.
WATCHER = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
how, crash, notes, done = sys.argv[1], sys.argv[2], {}, False
for raw in sys.stdin.buffer:
    line = raw.decode("utf-8", "replace").rstrip("\n")
    key, _, text = line[1:].partition("\t")
    if line == "done":
        done = True
    elif line.startswith("+"):
        notes[key] = text
    elif line.startswith("-"):
        notes.pop(key, None)
stack = ""
if crash:
    try:
        with open(crash, encoding="utf-8", errors="replace") as f:
            stack = f.read().split("\nExtension modules:")[0].strip()
        os.unlink(crash)
    except OSError:
        pass
if not done:
    if notes:
        head = ("the sbc process died while fitting in this process (" + how + "): "
                + "; ".join(notes.values()) + ".")
    else:
        head = "the sbc process died while running in this process (" + how + "), between fits."
    if stack:
        sys.stderr.write(stack + "\n\n")
    sys.stderr.write(
        "[sbc] error: " + head + " A fit that crashes its process (os.abort(), a segmentation fault, "
        "os._exit, running out of memory) ends an in-process run, and the replicate(s) it "
        "was fitting are not stored. Run with worker processes instead (--workers N with N "
        ">= 1; workers=N in Python): a fit that kills its worker is then recorded as a "
        "failed replicate and the study finishes. Finished replicates are stored; the same "
        "command resumes.\n")
    sys.stderr.flush()
"""

_GUARDS: weakref.WeakSet = weakref.WeakSet()


class Guard:
    """Notes the replicates in flight for a watcher process; use as a context manager.

    ``how``: how this process fits, for the message (e.g. "--workers 0")."""

    def __init__(self, how: str):
        self.how = how
        self._proc: subprocess.Popen | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._faulthandler = False
        self._crash = None  # the file faulthandler writes a crash's stack to

    def __enter__(self) -> Guard:
        if not sys.executable:
            return self
        crash = ""
        if not faulthandler.is_enabled():
            try:
                fd, crash = tempfile.mkstemp(prefix="sbc-crash-", suffix=".txt")
                self._crash = os.fdopen(fd, "w")
                self._crash_path = crash
            except OSError:
                crash = ""
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", WATCHER, self.how, crash],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                process_group=0)  # Ctrl-C reaches this process only
            self._fd = self._proc.stdin.fileno()
        except (OSError, ValueError):
            self._proc, self._fd = None, None
            self._drop_crash_file()
            return self
        _GUARDS.add(self)
        if self._crash is not None:
            faulthandler.enable(file=self._crash)
            self._faulthandler = True
        return self

    def _drop_crash_file(self) -> None:
        if self._crash is not None:
            with contextlib.suppress(OSError):
                self._crash.close()
                os.unlink(self._crash_path)
            self._crash = None

    def _write(self, line: str) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, (line + "\n").encode("utf-8", "replace"))
            except OSError:  # the watcher is gone: stop noting, never fail the run
                self._fd = None

    def start(self, text: str) -> None:
        """This thread now fits ``text`` (e.g. "model M, design D, replicate 3")."""
        self._write(f"+{threading.get_ident()}\t{text.replace(chr(10), ' ')}")

    def end(self) -> None:
        """This thread's fit finished (its record is in hand)."""
        self._write(f"-{threading.get_ident()}")

    def __exit__(self, *exc) -> None:
        self._write("done")
        with self._lock:
            proc, self._proc, self._fd = self._proc, None, None
        if self._faulthandler:
            faulthandler.disable()
            self._faulthandler = False
        self._drop_crash_file()  # the watcher finds no file: nothing crashed
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _after_fork(self) -> None:
        """In a forked child: its crash is the parent's to record, not this guard's."""
        self._lock = threading.Lock()
        if self._fd is not None and self._proc is not None:
            try:
                self._proc.stdin.close()  # the file object too: never closed twice
            except OSError:
                pass
        self._fd = None
        if self._faulthandler:
            faulthandler.disable()


def _after_fork_in_child() -> None:
    for guard in list(_GUARDS):
        guard._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
