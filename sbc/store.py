"""The on-disk layout of a study's results; the only module that knows it.

    OUT/study.json                        the validated study, its fingerprint, versions
    OUT/replicates/MODEL/DESIGN/r000042.json  one record per finished replicate
    OUT/replicates.parquet                one row per replicate (diagnostics, status, error)
    OUT/parameters.parquet                one row per replicate x ranked scalar (tidy)
    OUT/ranks.nc                          DataTree: /MODEL/DESIGN/prior_sbc (fractional ranks;
                                          posterior_sbc for posterior SBC)
    OUT/report.html, summary.csv, summary.md
    OUT/screens/DESIGN/r000042.json       a genome plan's simulated screens (scores, PITs)

Every file is written atomically (a fresh temporary file from ``tempfile.mkstemp`` in the same
directory, created with O_EXCL so nothing planted there is followed, then fsync and rename), so
killing the process at any moment loses at most the replicates in flight.  Only data formats
are used (JSON, Parquet, NetCDF); nothing stored is ever unpickled.

The store trusts no file it reads:

- study.json is checked field by field (:func:`check_manifest`); a damaged one is a
  ``StoreError`` naming the file and the field, never a KeyError further on.
- Every record is checked against one schema (:func:`record_problem`) and must be this
  study's own (model and design of the study, path = its model/design/replicate, the seed
  the study derives for it, the study's fingerprint) and, when it carries one (records
  written since digests exist), match the SHA-256 of its bytes written as its last field
  (:func:`record_bytes`), so a file changed by even one byte shows.  A file that fails is
  named on stderr in one line with its reason and never counted; a resumed run renames it
  aside (``NAME.corrupt-TIME``: unreadable, not JSON, or changed since written;
  ``NAME.invalid-TIME``: not a regular file, e.g. a symbolic link, or not a record;
  ``NAME.foreign-TIME``: another study's or another replicate's record) and refits the
  replicate.  What is written is checked the same way first (:meth:`Store.write_record`).
- Nothing is read or written through a symbolic link: a store whose own files or
  directories (OWN_FILES, replicates/ and its model/design directories) are links is
  refused; a record file that is a link is set aside unread.
- A run holds an flock on the store directory itself (:meth:`Store.exclusive`), and probes
  that it can write there before fitting anything; ``sbc report`` holds the same lock while
  it reads the store and writes the report (:meth:`Store.for_report`), so a report always
  describes what the store holds when it is written.
- Every directory the store creates goes through :func:`make_dirs`: a file where one
  belongs (or a directory where a file is written) is named, with how to clear the way
  (:func:`in_the_way`), never reported as a permission or disk problem.

This module is long because every rule of trusting the disk lives here and nowhere
else: atomic writes, the lock, quarantine of files that fail their checks, and the
manifest's field-by-field check; the record's own schema is :mod:`sbc.record`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sbc import seeding
from sbc.errors import StoreError, StudyMismatchError
from sbc.numerics import describe_change
from sbc.record import (MAX_INT, digest_problem, dumps, is_int, is_label, is_number, json_type,
                        loads, rank_tree_bytes, record_bytes, record_problem, records_to_tables,
                        show, Record)

STUDY_FILE = "study.json"
REPLICATES = "replicates"
SCREENS = "screens"
# Files the store (and `sbc plan`, through Store.write_text) keeps at its top level: none may
# be a symbolic link, and the temporary files of their atomic writes are `.NAME.*.tmp`.
OWN_FILES = (STUDY_FILE, "replicates.parquet", "parameters.parquet", "ranks.nc", "report.html",
             "summary.csv", "summary.md", "plan.csv", "plan.json", "pilot_posterior.json",
             "design_prior.py", "plan_cost.png")
# a plan's store (study.json "kind") -> the files `sbc plan` writes there, and its report
PLAN_FILES = {"plan": ("plan.csv, plan.json and report.html", "report.html"),
              "genome-plan": ("plan.csv, plan.json, summary.md and plan_cost.png", "summary.md")}
PROBE = ".sbc-write-probe"  # prefix of the file that tests whether a directory is writable
MAX_RECORD_BYTES = 256 * 2**20  # far above any real record (a few kB per ranked scalar)
MAX_STUDY_BYTES = 16 * 2**20
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


def _kind_of(path: Path) -> str:
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
    what, needed = (_kind_of(path), "a directory of that name") if file is None else \
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


def _non_finite(value, where: str = "") -> str | None:
    """The dotted key of the first NaN or infinity in a JSON-like ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}[{key}]" if isinstance(key, int) else
                            f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _study_json(manifest: dict) -> bytes:
    """study.json's bytes: strict JSON (no NaN or infinity), as :meth:`Store.read_manifest`
    reads it back."""
    return json.dumps(manifest, indent=2, allow_nan=False).encode()


class _Unreadable(Exception):
    """A file the store will not read: ``kind`` ("corrupt" or "invalid") and why."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, opened with O_NOFOLLOW (a
    symbolic link is never followed) and O_NONBLOCK (a FIFO or device never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise _Unreadable("invalid", "it is a symbolic link (never followed)") from None
        raise _Unreadable("corrupt", f"it cannot be read ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "a special file"
            raise _Unreadable("invalid", f"it is {what}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise _Unreadable("corrupt", f"it cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _Unreadable("invalid", f"it is larger than {limit} bytes, more than any such file")
    return data


def check_manifest(manifest, path: Path) -> dict:
    """``manifest`` (study.json as read) if it has every field the store and the report use,
    with its type; else a StoreError naming the file and the field."""
    problem = _manifest_problem(manifest)
    if problem:
        raise StoreError(f"{path} is damaged: {problem}. It is written by `sbc run` and must not "
                         "be edited: restore it (from a backup or version control), or move "
                         f"{path.parent} away and run the study again to start afresh")
    return manifest


def _manifest_problem(m) -> str | None:
    if not isinstance(m, dict):
        return f"it holds {json_type(m)} instead of a JSON object"
    if not isinstance(m.get("fingerprint"), str) or not m["fingerprint"]:
        return f"'fingerprint' must be a non-empty string, got {show(m.get('fingerprint'))}"
    study = m.get("study")
    if not isinstance(study, dict):
        return f"'study' must be an object, got {show(study)}"
    if not isinstance(study.get("name"), str):
        return f"'study.name' must be a string, got {show(study.get('name'))}"
    for key, ok in (("models", lambda v: isinstance(v, str) and v), ("designs", is_label)):
        value = study.get(key)  # models: as the study file gives them (names or paths)
        if not isinstance(value, list) or not value or not all(ok(v) for v in value):
            return f"'study.{key}' must be a non-empty list of names, got {show(value)}"
    if not is_int(study.get("seed"), 0, 2**64):
        return f"'study.seed' must be a non-negative integer, got {show(study.get('seed'))}"
    if study.get("simulate_model") is not None and not isinstance(study["simulate_model"], str):
        return f"'study.simulate_model' must be a string or null, got {show(study['simulate_model'])}"
    sampler = study.get("sampler")
    if sampler is not None:
        if not isinstance(sampler, dict):
            return f"'study.sampler' must be an object, got {show(sampler)}"
        for key in ("chains", "tune", "draws", "max_treedepth"):
            if key in sampler and not is_int(sampler[key]):
                return f"'study.sampler.{key}' must be an integer, got {show(sampler[key])}"
        if "target_accept" in sampler and not is_number(sampler["target_accept"]):
            return f"'study.sampler.target_accept' must be a number, got {show(sampler['target_accept'])}"
        if "rescue" in sampler and not isinstance(sampler["rescue"], bool):
            return f"'study.sampler.rescue' must be true or false, got {show(sampler['rescue'])}"
        if "name" in sampler and not isinstance(sampler["name"], str):
            return f"'study.sampler.name' must be a string, got {show(sampler['name'])}"
    if m.get("sequential") is not None and not isinstance(m["sequential"], dict):
        return f"'sequential' must be an object or null, got {show(m['sequential'])}"
    refs = m.get("model_refs")
    if refs is not None and not (isinstance(refs, dict) and refs and all(
            is_label(k) and isinstance(v, str) for k, v in refs.items())):
        return f"'model_refs' must map model labels to references, got {show(refs)}"
    digests = m.get("model_digests")
    if digests is not None and not (isinstance(digests, dict) and all(
            v is None or isinstance(v, str) for v in digests.values())):
        return f"'model_digests' must map models to digests, got {show(digests)}"
    return None


@dataclass(frozen=True)
class _Expected:
    """What this study's records must say, from its study.json: the model labels
    (``model_refs``, else ``study.models`` for stores written before model_refs), the design
    labels, the seed and the fingerprint.  A plan store (``kind = "plan"``) also holds the
    power streams ``LABEL~DESIGN_MODEL`` and designs of a grid that may grow between
    resumes, so there any design of the form CxGxR counts."""

    fingerprint: str
    seed: int
    models: tuple[str, ...]
    designs: tuple[str, ...]
    plan: bool

    @classmethod
    def of(cls, manifest: dict) -> _Expected:
        study = manifest["study"]
        models = tuple(manifest["model_refs"]) if manifest.get("model_refs") else tuple(study["models"])
        return cls(manifest["fingerprint"], study["seed"], models, tuple(study["designs"]),
                   manifest.get("kind") == "plan")

    def model_problem(self, model: str) -> str | None:
        if model in self.models or (self.plan and any(model.startswith(f"{m}~") for m in self.models)):
            return None
        return f"model {show(model)} is no model of this study (its models: {', '.join(self.models)})"

    def design_problem(self, design: str) -> str | None:
        if design in self.designs:
            return None
        if self.plan:
            from sbc.design import Design

            try:
                Design.from_label(design)
                return None
            except ValueError:
                pass
        return f"design {show(design)} is no design of this study (its designs: {', '.join(self.designs)})"


def _foreign_problem(record: dict, path: Path | None, expected: _Expected) -> str | None:
    """Why a well-formed record is not this study's record of the replicate ``path`` names
    (MODEL/DESIGN/rNNNNNN.json), or None.  Its model and design must be the study's, its
    path its own, its seed the one this study derives for that replicate
    (``sbc.seeding.replicate``: entropy = study seed, spawn key = (crc32 of the
    model label, crc32 of the design label, replicate)) and, when it carries one (records
    written since it was added), its fingerprint the study's.  A record copied from a study
    with another seed or fingerprint, or from another replicate, fails this check."""
    model, design, rep = record["model"], record["design"], record["rep"]
    problem = expected.model_problem(model) or expected.design_problem(design)
    if problem:
        return problem
    if path is not None and (path.parent.parent.name, path.parent.name, path.name) != \
            (model, design, f"r{rep:06d}.json"):
        return (f"it holds replicate {rep} of {model}/{design}, not the replicate its path "
                "names (copied or renamed)")
    key = seeding.replicate_key(model, design, rep)
    if record["seed_entropy"] != expected.seed or record["seed_key"] != key:
        return "its seed is not the one this study derives for that replicate (another study's)"
    fingerprint = record.get("fingerprint")
    if fingerprint is not None and fingerprint != expected.fingerprint:
        return (f"it was written by another study (fingerprint {show(fingerprint)}, this "
                f"study's {expected.fingerprint})")
    return None


def _load_record(path: Path, expected: _Expected) -> tuple[dict | None, str, str]:
    """(record, "", "") for a valid record of this study at ``path``, else (None, kind,
    reason) with kind "corrupt", "invalid" or "foreign" (the suffix it is set aside with)."""
    try:
        data = _read_regular(path, MAX_RECORD_BYTES)
    except _Unreadable as exc:
        return None, exc.kind, exc.reason
    try:
        record = loads(data)
    except (ValueError, RecursionError) as exc:
        return None, "corrupt", f"it is not valid JSON ({exc})"
    problem = digest_problem(data, record)
    if problem:
        return None, "corrupt", problem
    problem = record_problem(record)
    if problem:
        return None, "invalid", problem
    problem = _foreign_problem(record, path, expected)
    if problem:
        return None, "foreign", problem
    return record, "", ""


def _printable(text: str) -> str:
    """``text`` with control characters escaped, for one-line messages about file names."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _aside_name(path: Path, kind: str) -> Path:
    base = f"{path.name}.{kind}-{int(time.time())}"
    target, n = path.with_name(base), 1
    while os.path.lexists(target):
        target, n = path.with_name(f"{base}.{n}"), n + 1
    return target


def _link_message(links: list[Path]) -> str:
    shown = ", ".join(map(str, links[:5])) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
    return (f"{shown} {'is a symbolic link' if len(links) == 1 else 'are symbolic links'}; sbc "
            "never reads or writes a store's results through links (they could point into "
            "another study or anywhere else). Replace each link with a copy of what it points "
            "to, or remove it (tables and reports are rewritten by `sbc report`, missing "
            "replicates refitted by `sbc run`), then run again")


def _check_writable(directory: Path, probe: bool = True) -> None:
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


def counts_as_done(record: Record, retry_failed: bool = False) -> bool:
    """Whether a resumed run skips this stored record's replicate (see :meth:`Store.done`)."""
    return record.get("stage") != "prepare" and not (
        retry_failed and record.get("status") != "ok")


class Store:
    """A study's output directory.  ``stream``: where files that are not counted are named
    (default: stderr)."""

    def __init__(self, root: str | Path, stream=None):
        self.root = Path(root)
        self.stream = stream
        self._expected: _Expected | None = None  # of study.json, read once for writing
        self._opened_fingerprint: str | None = None

    # --- opening -----------------------------------------------------------------------
    @classmethod
    def open_for_run(cls, root: str | Path, manifest: dict) -> Store:
        """Create the store, or reopen it for resuming when it holds the same study.

        Refuses (without touching anything) a path that is a file, a directory holding
        something else, a store of a different study, a damaged study.json, a store whose
        own files are symbolic links, and a directory that cannot be created or written.
        """
        store = cls(root)
        root = store.root
        bad = _non_finite(manifest)
        if bad:  # never write a study.json that the next run would refuse as damaged
            raise StoreError(f"cannot store this study in {root}: '{bad}' is not a finite "
                             "number (nan or inf), and study.json holds strict JSON, which has "
                             "neither; nothing was written. Give that key a finite value in the "
                             "study or plan file, then run again")
        problem = _manifest_problem(manifest)
        if problem:
            raise StoreError(f"cannot store this study in {root}: its study.json would be "
                             f"refused when read back ({problem}); nothing was written. Check "
                             "that setting in the study or plan file")
        try:
            if root.exists() and not root.is_dir():
                raise StoreError(f"output path {root} is {_kind_of(root)}, not a directory; "
                                 "choose another path with --out, or move it away")
            has_study = os.path.lexists(root / STUDY_FILE)
            foreign = not has_study and root.is_dir() and \
                any(p.name != ".gitkeep" for p in root.iterdir())
        except OSError as exc:
            raise StoreError(f"cannot use output directory {root}: {exc.strerror}; check its "
                             "permissions or choose another --out") from exc
        if has_study:
            existing = store.read_manifest()
            if existing["fingerprint"] != manifest["fingerprint"]:
                changed = _diff_manifests(existing, manifest)
                raise StudyMismatchError(
                    f"{root} holds results of a different study ({changed}); results of "
                    "different studies are never mixed. Run with --out NEW_DIR to start "
                    f"fresh, or move {root} away first")
            store._opened_fingerprint = existing["fingerprint"]
            return store
        if foreign:
            raise StoreError(f"output directory {root} is not empty and holds no sbc study "
                             f"({STUDY_FILE} missing); choose an empty or new directory with --out")
        try:
            make_dirs(root)
            atomic_write_bytes(root / STUDY_FILE, _study_json(manifest))
        except OSError as exc:
            raise StoreError(f"cannot write to output directory {root}: {exc.strerror}; "
                             "check permissions and free disk space, or choose another --out") from exc
        store._opened_fingerprint = manifest["fingerprint"]
        return store

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Store]:
        """Hold the store's lock for a run: a second ``sbc run`` on the same directory is
        refused instead of interleaving with this one.

        The lock is an ``flock`` on the store directory itself, opened O_RDONLY|O_DIRECTORY.
        Unlike a lock file it cannot be deleted or replaced away while held (removing,
        renaming or planting entries inside the directory does not touch the directory's
        own inode), it needs no write permission and no file of its own, and the kernel
        drops it when the process dies, even by SIGKILL.  (Renaming the whole directory
        away and creating a new one at its path makes a new store, with a lock of its own.)

        Once the lock is held: study.json is checked again against the study the store was
        opened for (two runs creating one store at once: the second is refused), every
        directory the run writes to is probed (a read-only store is refused before any
        fit, nothing changed), a file where one of the study's record directories belongs
        is refused, naming it, and the temporary files that a killed run left behind
        (``.NAME.*.tmp``) are removed."""
        busy = (f"another sbc process is writing to {self.root}; wait for it to finish (or "
                "stop it), then run the same command to resume")
        with self._flock(busy):
            if self._opened_fingerprint is not None:
                found = self.read_manifest()["fingerprint"]
                if found != self._opened_fingerprint:
                    raise StudyMismatchError(
                        f"{self.root} was taken over by another study (fingerprint {found}) "
                        "while this run started; results of different studies are never "
                        "mixed: run with --out NEW_DIR")
            self.check_layout()
            self._check_nothing_in_the_way()
            dirs = [self.root, *self._record_dirs(all_levels=True)]
            for i, directory in enumerate(dirs):
                _check_writable(directory, probe=i == 0)
            for directory in dirs:
                for pattern in (".r*.json.*.tmp", f"{PROBE}.*.tmp", *(f".{n}.*.tmp" for n in OWN_FILES)):
                    for stale in directory.glob(pattern):
                        with contextlib.suppress(OSError):
                            stale.unlink()
            yield self

    @contextlib.contextmanager
    def for_report(self) -> Iterator[Store]:
        """Hold the store's lock (the one a run holds, :meth:`exclusive`) while a report is
        read and written, so that the report describes exactly what the store holds when it
        is written: no run can add records between reading the store and writing
        report.html, and a report never replaces the report a finishing run writes.  While
        a run holds the lock the report is refused: the run writes its own report when it
        finishes."""
        busy = (f"another sbc process (a run, or a report) is writing to {self.root} now; a "
                "run writes report.html itself when it finishes. Wait for it (or stop it), "
                "then run `sbc report` again: a report written now could describe fewer "
                "replicates than the store holds when the run ends")
        self.study_manifest()  # a plan's store: refused before anything else
        with self._flock(busy):
            self.check_layout()
            yield self

    @contextlib.contextmanager
    def _flock(self, busy: str) -> Iterator[None]:
        """An exclusive, non-blocking flock on the store directory (see :meth:`exclusive`);
        StoreError ``busy`` when another process holds it."""
        import fcntl

        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"cannot open output directory {self.root} to lock it "
                             f"({exc.strerror}); check that it exists and is readable") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(busy) from exc
            except OSError as exc:
                raise StoreError(f"cannot lock output directory {self.root} ({exc.strerror}); "
                                 "its file system does not support flock on directories: "
                                 "use an output directory on a local disk") from exc
            yield
        finally:
            os.close(fd)

    def _check_nothing_in_the_way(self) -> None:
        """Refuse (StoreError, before anything is fitted) a file where a directory the run
        writes into belongs: replicates/MODEL and replicates/MODEL/DESIGN of the study's
        models and designs, and screens/DESIGN of a genome plan."""
        manifest = self.read_manifest()
        expected = _Expected.of(manifest)
        wanted = [self.root / REPLICATES / m / d for m in expected.models for d in expected.designs]
        if manifest.get("kind") == "genome-plan":
            wanted += [self.root / SCREENS / d for d in expected.designs]
        seen: set[Path] = set()
        for path in wanted:
            parts = path.relative_to(self.root).parts
            for candidate in (self.root.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)):
                if candidate in seen:
                    continue
                seen.add(candidate)
                if os.path.lexists(candidate) and not candidate.is_dir():
                    raise StoreError(in_the_way(candidate))

    def check_layout(self) -> None:
        """Refuse (StoreError) a store whose own files (OWN_FILES), replicates/ or its
        model/design directories are symbolic links, or whose replicates/ is no directory."""
        base = self.root / REPLICATES
        try:
            links = [p for p in (self.root / n for n in (*OWN_FILES, REPLICATES)) if p.is_symlink()]
            if not links and os.path.lexists(base) and not base.is_dir():
                raise StoreError(in_the_way(base))  # the replicate records' directory
            if not links and base.is_dir():
                for model in os.scandir(base):
                    if model.is_symlink():
                        links.append(Path(model.path))
                    elif model.is_dir(follow_symlinks=False):
                        links += [Path(d.path) for d in os.scandir(model.path) if d.is_symlink()]
        except OSError as exc:
            raise StoreError(f"cannot read {self.root}: {exc.strerror}; check its permissions") from exc
        if links:
            raise StoreError(_link_message(sorted(links)))

    def _record_dirs(self, all_levels: bool = False) -> list[Path]:
        """The MODEL/DESIGN directories under replicates/ (with ``all_levels``, also
        replicates/ and the MODEL directories), sorted; never entered through links."""
        base = self.root / REPLICATES
        if base.is_symlink() or not base.is_dir():
            return []
        out = [base] if all_levels else []
        try:
            for model in sorted(os.scandir(base), key=lambda e: e.name):
                if model.is_dir(follow_symlinks=False):
                    out += [Path(model.path)] if all_levels else []
                    out += [Path(d.path) for d in sorted(os.scandir(model.path), key=lambda e: e.name)
                            if d.is_dir(follow_symlinks=False)]
        except OSError as exc:
            raise StoreError(f"cannot read {base}: {exc.strerror}; check its permissions") from exc
        return out

    def read_manifest(self) -> dict:
        """study.json, checked (:func:`check_manifest`); StoreError when it is missing,
        unreadable, not JSON, damaged, or when the store's own files are links."""
        path = self.root / STUDY_FILE
        self.check_layout()
        if not os.path.lexists(path):
            raise StoreError(f"{self.root} holds no sbc study ({STUDY_FILE} missing); "
                             "give the output directory of `sbc run`")
        try:
            manifest = loads(_read_regular(path, MAX_STUDY_BYTES))
        except _Unreadable as exc:
            raise StoreError(f"{path} is unusable: {exc.reason}; it is written by `sbc run`: "
                             "restore it, or move the directory away and start afresh") from None
        except (ValueError, RecursionError) as exc:
            if str(exc).endswith("is not strict JSON"):  # NaN, Infinity: from an older sbc
                constant = str(exc).split()[0]
                raise StoreError(
                    f"{path} holds {constant}, which is not strict JSON: an older sbc stored a "
                    "non-finite number (nan or inf) from the study or plan file there. The "
                    "stored replicates are intact: give that key a finite value in the study "
                    f"or plan file, write the same value in place of {constant} in {path}, "
                    "then run again") from None
            raise StoreError(f"{path} is unreadable or corrupt ({exc}); it was written by "
                             "`sbc run` and should not be edited") from exc
        return check_manifest(manifest, path)

    def study_manifest(self) -> dict:
        """study.json of a calibration study (:meth:`read_manifest`); a plan's store
        (``sbc plan``: kind "plan" or "genome-plan") is a StoreError that names the command
        rebuilding the plan's own files, so that a study report never replaces them."""
        manifest = self.read_manifest()
        if manifest.get("kind") in PLAN_FILES:
            files, page = PLAN_FILES[manifest["kind"]]
            raise StoreError(
                f"{self.root} holds the design plan '{manifest['study']['name']}' (written by "
                f"`sbc plan`), not a calibration study, so `sbc report` leaves it as it is "
                f"(its {page} is the plan's report). To rebuild the plan's {files}, run "
                f"`sbc plan PLAN_FILE --out {self.root}` with the plan's file: it resumes from "
                "the stored fits and refits nothing stored; in Python, "
                f"sbc.open('{self.root}') reads a finished plan")
        return manifest

    def _expect(self, fresh: bool = False) -> _Expected:
        if fresh or self._expected is None:
            self._expected = _Expected.of(self.read_manifest())
        return self._expected

    # --- replicates --------------------------------------------------------------------
    def set_manifest_key(self, key: str, value) -> None:
        """Set one top-level key of study.json (atomically; unchanged files are not
        rewritten).  Used for how the store is judged (``sequential``), never for what
        identifies the study."""
        manifest = self.read_manifest()
        if manifest.get(key) == value:
            return
        manifest[key] = value
        self._write(STUDY_FILE, _study_json(manifest))

    def replicate_path(self, model: str, design: str, rep: int) -> Path:
        return self.root / REPLICATES / model / design / f"r{rep:06d}.json"

    def write_record(self, record: Record) -> None:
        """Store one replicate's record atomically, with the study's ``fingerprint`` and a
        ``digest`` of its bytes (:func:`record_bytes`).  The record is checked as it will
        be read back (:func:`record_problem`): one that fails (e.g. a non-finite truth) is
        stored as a failed replicate ("exception") that says why, never as a file the next
        run would set aside and refit forever."""
        expected = self._expect()
        stored = json.loads(dumps({**record, "fingerprint": expected.fingerprint}))
        stored.pop("digest", None)
        problem = record_problem(stored)
        if problem:
            keep = ("schema", "model", "design", "rep", "seed_entropy", "seed_key", "fingerprint")
            wall = stored.get("wall_seconds")
            stored = {**{k: stored[k] for k in keep if k in stored}, "status": "failed",
                      "failure": "exception", "error": f"the fit's record cannot be stored: {problem}",
                      "wall_seconds": wall if is_number(wall) else None}
        problem = record_problem(stored) or _foreign_problem(stored, None, expected)
        if problem:
            raise StoreError(f"refusing to store a record in {self.root}: {problem}; this is a bug "
                             "in the caller (records are made by sbc.replicate)")
        path = self.replicate_path(stored["model"], stored["design"], stored["rep"])
        _write_under(path, 3, record_bytes(stored))

    def iter_records(self, quarantine: bool = False) -> Iterator[Record]:
        """Every valid record of this study (see the module docstring and
        :func:`record_problem`, :func:`_foreign_problem`).  A file that is not one is named
        on ``stream`` in one line with its reason and never counted; with ``quarantine`` (a
        resumed run) it is also renamed aside (NAME.KIND-TIME) so the replicate is
        recomputed; nothing else is touched."""
        expected = self._expect(fresh=True)
        for path in self._record_paths():
            record, kind, reason = _load_record(path, expected)
            if record is None:
                self._not_counted(path, kind, reason, quarantine)
                continue
            yield record

    def _record_paths(self) -> list[Path]:
        """MODEL/DESIGN/r*.json under replicates/, sorted; directories are never entered
        through links (a linked file is listed: it is set aside unread)."""
        out = []
        for directory in self._record_dirs():
            try:
                names = sorted(e.name for e in os.scandir(directory))
            except OSError as exc:
                raise StoreError(f"cannot read {directory}: {exc.strerror}; check its permissions") from exc
            out += [directory / n for n in names if n.startswith("r") and n.endswith(".json")]
        return out

    def _not_counted(self, path: Path, kind: str, reason: str, quarantine: bool) -> None:
        stream = self.stream or sys.stderr
        reason, name = _printable(" ".join(reason.split())), _printable(str(path))
        if not quarantine:
            print(f"[sbc] skipped {name}: {kind}: {reason}; not counted (`sbc run` sets it "
                  "aside and refits the replicate)", file=stream)
            return
        target = _aside_name(path, kind)
        try:
            os.rename(path, target)
        except OSError as exc:
            raise StoreError(f"cannot set aside {name} ({kind}: {reason}): {exc.strerror}; make "
                             f"{path.parent} writable, or move the file away yourself, and run "
                             "again") from exc
        print(f"[sbc] set aside {name} as {_printable(target.name)}: {kind}: {reason}; not "
              "counted (the replicate is refitted if the study has it)", file=stream)

    def done(self, quarantine: bool = True, retry_failed: bool = False) -> set[tuple[str, str, int]]:
        """Replicates a resumed run skips: every stored record except failures of the
        ``prepare`` stage (model not buildable on a worker), which are retried, and, with
        ``retry_failed``, every failed record (refitted with its own seeds; the new record
        replaces it atomically)."""
        return {(r["model"], r["design"], r["rep"]) for r in self.iter_records(quarantine)
                if counts_as_done(r, retry_failed)}

    # --- genome plans: one small record per simulated screen ----------------------------
    def screen_path(self, design: str, rep: int) -> Path:
        return self.root / SCREENS / design / f"r{rep:06d}.json"

    def write_screen(self, record: dict) -> None:
        """Store one simulated screen's record (``design``, ``rep``, scores) atomically,
        with the study's fingerprint and the digest of its bytes."""
        expected = self._expect()
        stored = {**record, "fingerprint": expected.fingerprint}
        stored.pop("digest", None)
        design, rep = stored.get("design"), stored.get("rep")
        if not (is_label(design) and is_int(rep, 0, MAX_INT)):
            raise StoreError(f"refusing to store a screen record with design {show(design)} "
                             f"and rep {show(rep)}; this is a bug in the caller")
        _write_under(self.screen_path(design, rep), 2, record_bytes(stored))

    def iter_screens(self, problem: Callable[[dict], str | None],
                     quarantine: bool = False) -> Iterator[dict]:
        """Every valid screen record: a regular file, strict JSON, unchanged since written
        (digest), this study's (fingerprint, the design and replicate its path names) and
        passing ``problem`` (the caller's schema).  Others are named on ``stream`` and never
        counted; with ``quarantine`` they are renamed aside so the screen is simulated
        again."""
        expected = self._expect(fresh=True)
        base = self.root / SCREENS
        if base.is_symlink():
            raise StoreError(_link_message([base]))
        if not base.is_dir():
            return
        for directory in sorted(base.iterdir()):
            if directory.is_symlink():
                raise StoreError(_link_message([directory]))
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("r*.json")):
                try:
                    data = _read_regular(path, MAX_RECORD_BYTES)
                    record = loads(data)
                except _Unreadable as exc:
                    self._not_counted(path, exc.kind, exc.reason, quarantine)
                    continue
                except ValueError as exc:
                    self._not_counted(path, "corrupt", f"it is not strict JSON ({exc})", quarantine)
                    continue
                reason = digest_problem(data, record) if isinstance(record, dict) else \
                    f"it holds {json_type(record)} instead of a JSON object"
                kind = "corrupt" if reason else "foreign"
                if not reason:
                    if record.get("fingerprint") != expected.fingerprint:
                        reason = "it was written by another study (fingerprint)"
                    elif (record.get("design"), record.get("rep")) != \
                            (directory.name, _rep_of(path.name)):
                        reason = "it holds another screen than its path names (copied or renamed)"
                    else:
                        kind, reason = "invalid", problem(record)
                if reason:
                    self._not_counted(path, kind, reason, quarantine)
                    continue
                yield record

    # --- consolidated tables -----------------------------------------------------------
    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(replicates, parameters) tables from the stored records."""
        return records_to_tables(self.iter_records())

    def write_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        reps, params = self.tables()
        self._write("replicates.parquet", reps.to_parquet(index=False))
        self._write("parameters.parquet", params.to_parquet(index=False))
        self._write("ranks.nc", rank_tree_bytes(params))
        return reps, params

    def write_text(self, name: str, text: str) -> Path:
        return self._write(name, text.encode())

    def write_bytes(self, name: str, payload: bytes) -> Path:
        """Write one of the store's top-level files (a figure, a table) atomically."""
        return self._write(name, payload)

    def _write(self, name: str, payload: bytes) -> Path:
        """Write one of the store's top-level files atomically; StoreError with a fix if the
        directory is not writable or the disk is full."""
        path = self.root / name
        if name == STUDY_FILE:
            self._expected = None
        if path.is_dir() and not path.is_symlink():
            raise StoreError(in_the_way(path, f"its file {name}"))
        try:
            atomic_write_bytes(path, payload)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}; the stored replicates are "
                             f"intact: free disk space or make {self.root} writable, then run the "
                             "same command again") from exc
        return path


def _write_under(path: Path, levels: int, payload: bytes) -> None:
    """Write a record file atomically; refused when any of the ``levels`` directories above
    it (inside the store) is a symbolic link."""
    links = [p for p in list(path.parents)[:levels][::-1] if p.is_symlink()]
    if links:
        raise StoreError(_link_message(links))
    if path.is_dir():
        raise StoreError(in_the_way(path, f"the record file {path.name}"))
    try:
        atomic_write_bytes(path, payload)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}; results stored so far are "
                         "intact; free disk space or fix permissions and run again to resume") from exc


def _rep_of(name: str) -> int | None:
    digits = name[1:-len(".json")]
    return int(digits) if digits.isdigit() else None


def _diff_manifests(old_manifest: dict, new_manifest: dict) -> str:
    old, new = old_manifest["study"], new_manifest["study"]
    old_digests = old_manifest.get("model_digests") or {}
    new_digests = new_manifest.get("model_digests") or {}
    changed = [k for k in sorted(set(old) | set(new))
               if k not in ("simulations", "output", "scheduler", "workers", "batch_size",
                            "base_dir", "description", "name")
               and old.get(k) != new.get(k)]
    changed += [f"source of model '{k}'" for k in sorted(set(old_digests) | set(new_digests))
                if old_digests.get(k) != new_digests.get(k)]
    if old_manifest.get("numerics") != new_manifest.get("numerics"):
        changed.append("numerics: " + describe_change(old_manifest.get("numerics"),
                                                      new_manifest.get("numerics") or {}))
    return "changed: " + ", ".join(changed) if changed else "different fingerprint"


