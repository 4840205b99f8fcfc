"""The file primitives under the study store (:mod:`sbc.store`), which alone knows what its
files are called and what they hold; these know only how a file is safely read or written.

- Every file is written atomically (:func:`atomic_write_bytes`: a fresh temporary file from
  ``tempfile.mkstemp`` in the same directory, created with O_EXCL so nothing planted there is
  followed, then fsync and rename), so killing the process at any moment loses at most the
  file being written.
- Every directory goes through :func:`make_dirs`: a file where one belongs (or a directory
  where a file is written) is named, with how to clear the way (:func:`in_the_way`), never
  reported as a permission or disk problem.
- A file is read only if it is a regular file (opened with O_NOFOLLOW and O_NONBLOCK: a
  symbolic link is never followed, a FIFO never blocks) of bounded size
  (:func:`read_regular`); one that is not is :class:`Unreadable`, and a file that fails its
  checks is named in one line and, in a resumed run, renamed aside (:func:`not_counted`).
- A directory is probed for writing before anything is fitted (:func:`check_writable`), and
  locked with an flock on the directory itself (:func:`flock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sbc.errors import StoreError

PROBE = ".sbc-write-probe"  # prefix of the file that tests whether a directory is writable
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one.

    The temporary file is a fresh name from ``tempfile.mkstemp`` in the same directory
    (created with O_EXCL: a file or link planted under a predictable name is never opened),
    and ``os.replace`` swaps it in (a link at ``path`` is replaced, never followed).  A file
    where a directory of ``path`` belongs is a StoreError naming it (:func:`make_dirs`)."""
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def kind_of(path: Path) -> str:
    """What a path that is not a directory is, for messages: "a file", "a symbolic link", ..."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "something"
    if stat.S_ISLNK(mode):
        return "a symbolic link" + ("" if os.path.isdir(path) else " (not to a directory)")
    if stat.S_ISREG(mode):
        return "a file"
    return "a special file (FIFO, socket or device)"


def in_the_way(path: Path, file: str | None = None) -> str:
    """The message for ``path`` being in the way of what sbc creates there (a directory, or
    with ``file`` the file it writes): what it is, that nothing stored was changed, and
    how to clear the way."""
    what, needed = (kind_of(path), "a directory of that name") if file is None else \
        ("a directory", f"to write {file}")
    return (f"{path} is {what}, where sbc needs {needed}; nothing was written there and "
            "nothing stored was changed. Move it away (e.g. `mv "
            f"{path} {path}.moved`) or remove it if it is not needed, then run the same "
            "command again")


def make_dirs(directory: Path) -> None:
    """``mkdir -p directory``; a file (or anything but a directory) at ``directory`` or at one
    of its parents is a StoreError naming it (:func:`in_the_way`), never "check permissions"."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return
    except (FileExistsError, NotADirectoryError) as exc:
        error = exc
    for candidate in [*reversed(directory.parents), directory]:  # outermost first
        if os.path.lexists(candidate) and not candidate.is_dir():
            raise StoreError(in_the_way(candidate)) from None
    raise error  # no blocker found (changed meanwhile): the caller reports the OSError


class Unreadable(Exception):
    """A file the store will not read: ``kind`` ("corrupt" or "invalid") and why."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, opened with O_NOFOLLOW (a
    symbolic link is never followed) and O_NONBLOCK (a FIFO or device never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise Unreadable("invalid", "it is a symbolic link (never followed)") from None
        raise Unreadable("corrupt", f"it cannot be read ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "a special file"
            raise Unreadable("invalid", f"it is {what}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise Unreadable("corrupt", f"it cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Unreadable("invalid", f"it is larger than {limit} bytes, more than any such file")
    return data


def check_writable(directory: Path, probe: bool = True) -> None:
    """StoreError unless files can be created in ``directory``: with ``probe``, create and
    remove a temporary file there (the truth, whatever the file system); else ask the kernel
    (``access(W_OK)``: one call, for the many replicate directories)."""
    why = None
    if probe:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{PROBE}.", suffix=".tmp", dir=directory)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            why = exc.strerror
    elif not os.access(directory, os.W_OK | os.X_OK):
        why = "not writable"
    if why:
        raise StoreError(f"cannot write to {directory} ({why}); nothing was changed. Make it "
                         f"writable (e.g. chmod u+w {directory}) or choose another output "
                         "directory with --out, then run again")


@contextlib.contextmanager
def flock(directory: Path, busy: str) -> Iterator[None]:
    """An exclusive, non-blocking flock on ``directory`` itself, held while the context
    runs (why the directory and not a lock file: :meth:`sbc.store.Store.exclusive`);
    StoreError ``busy`` when another process holds it."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError(f"cannot open output directory {directory} to lock it "
                         f"({exc.strerror}); check that it exists and is readable") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreError(busy) from exc
        except OSError as exc:
            raise StoreError(f"cannot lock output directory {directory} ({exc.strerror}); "
                             "its file system does not support flock on directories: "
                             "use an output directory on a local disk") from exc
        yield
    finally:
        os.close(fd)


def not_counted(path: Path, kind: str, reason: str, quarantine: bool, stream=None) -> None:
    """Name a file that is not counted (``kind``: the suffix it is set aside with, and
    ``reason``) in one line on ``stream`` (default: stderr); with ``quarantine`` (a resumed
    run) also rename it aside (NAME.KIND-TIME) so what it held is recomputed."""
    stream = stream or sys.stderr
    reason, name = printable(" ".join(reason.split())), printable(str(path))
    if not quarantine:
        print(f"[sbc] skipped {name}: {kind}: {reason}; not counted (`sbc run` sets it "
              "aside and refits the replicate)", file=stream)
        return
    target = aside_name(path, kind)
    try:
        os.rename(path, target)
    except OSError as exc:
        raise StoreError(f"cannot set aside {name} ({kind}: {reason}): {exc.strerror}; make "
                         f"{path.parent} writable, or move the file away yourself, and run "
                         "again") from exc
    print(f"[sbc] set aside {name} as {printable(target.name)}: {kind}: {reason}; not "
          "counted (the replicate is refitted if the study has it)", file=stream)


def printable(text: str) -> str:
    """``text`` with control characters escaped, for one-line messages about file names."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def aside_name(path: Path, kind: str) -> Path:
    base = f"{path.name}.{kind}-{int(time.time())}"
    target, n = path.with_name(base), 1
    while os.path.lexists(target):
        target, n = path.with_name(f"{base}.{n}"), n + 1
    return target


def link_message(links: list[Path]) -> str:
    shown = ", ".join(map(str, links[:5])) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
    return (f"{shown} {'is a symbolic link' if len(links) == 1 else 'are symbolic links'}; sbc "
            "never reads or writes a store's results through links (they could point into "
            "another study or anywhere else). Replace each link with a copy of what it points "
            "to, or remove it (tables and reports are rewritten by `sbc report`, missing "
            "replicates refitted by `sbc run`), then run again")
