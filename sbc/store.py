"""The on-disk layout of a study's results; the only module that knows it.

    OUT/study.json                        the validated study, its fingerprint, versions
    OUT/replicates/MODEL/DESIGN/r000042.json  one record per finished replicate
    OUT/replicates.parquet                one row per replicate (diagnostics, status, error)
    OUT/parameters.parquet                one row per replicate x ranked scalar (tidy)
    OUT/ranks.nc                          DataTree: /MODEL/DESIGN/prior_sbc (fractional ranks;
                                          posterior_sbc for posterior SBC)
    OUT/report.html, summary.csv, summary.md
    OUT/screens/DESIGN/r000042.json       a genome plan's simulated screens (scores, PITs)

Every file is written atomically (:func:`sbc.storefiles.atomic_write_bytes`: a fresh
temporary file in the same directory, created with O_EXCL so nothing planted there is
followed, then fsync and rename), so killing the process at any moment loses at most the
replicates in flight.  Only data formats are used (JSON, Parquet, NetCDF); nothing stored is
ever unpickled.  How a file is safely read, written, locked or set aside is
:mod:`sbc.storefiles`; what a file must hold to be accepted is :mod:`sbc.storecheck`; this
module decides which files those are and applies both.

The store trusts no file it reads:

- study.json is checked field by field (:func:`sbc.storecheck.check_manifest`); a damaged
  one is a ``StoreError`` naming the file and the field, never a KeyError further on.
- Every record is checked against one schema (:func:`sbc.record.record_problem`) and must be
  this study's own (model and design of the study, path = its model/design/replicate, the
  seed the study derives for it, the study's fingerprint) and, when it carries one (records
  written since digests exist), match the SHA-256 of its bytes written as its last field
  (:func:`sbc.record.record_bytes`), so a file changed by even one byte shows.  A file that
  fails is named on stderr in one line with its reason and never counted; a resumed run
  renames it aside (``NAME.corrupt-TIME``: unreadable, not JSON, or changed since written;
  ``NAME.invalid-TIME``: not a regular file, e.g. a symbolic link, or not a record;
  ``NAME.foreign-TIME``: another study's or another replicate's record) and refits the
  replicate.  What is written is checked the same way first (:meth:`Store.write_record`).
  A genome plan's screen records are checked alike (:meth:`Store.iter_screens`).
- Nothing is read or written through a symbolic link: a store whose own files or
  directories (OWN_FILES, replicates/ and its model/design directories) are links is
  refused; a record file that is a link is set aside unread.
- A run holds an flock on the store directory itself (:meth:`Store.exclusive`), and probes
  that it can write there before fitting anything; ``sbc report`` holds the same lock while
  it reads the store and writes the report (:meth:`Store.for_report`), so a report always
  describes what the store holds when it is written.
- Every directory the store creates goes through :func:`sbc.storefiles.make_dirs`: a file
  where one belongs (or a directory where a file is written) is named, with how to clear
  the way (:func:`sbc.storefiles.in_the_way`), never reported as a permission or disk
  problem.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pandas as pd

from sbc.errors import StoreError, StudyMismatchError
from sbc.record import (MAX_INT, dumps, is_int, is_label, is_number, loads, rank_tree_bytes, record_bytes,
                        record_problem, records_to_tables, show, Record)
from sbc.storecheck import (Expected, check_manifest, diff_manifests, foreign_problem, load_record,
                            load_screen, manifest_problem, non_finite)
from sbc.storefiles import (PROBE, Unreadable, atomic_write_bytes, check_writable, flock, in_the_way,
                            kind_of, link_message, make_dirs, not_counted, read_regular)

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
MAX_STUDY_BYTES = 16 * 2**20


def record_path(model: str, design: str, rep: int) -> PurePosixPath:
    """Where a replicate's record lies, relative to the store's root (a report links it)."""
    return PurePosixPath(REPLICATES, model, design, f"r{rep:06d}.json")


def _study_json(manifest: dict) -> bytes:
    """study.json's bytes: strict JSON (no NaN or infinity), as :meth:`Store.read_manifest`
    reads it back."""
    return json.dumps(manifest, indent=2, allow_nan=False).encode()


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
        self._expected: Expected | None = None  # of study.json, read once for writing
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
        bad = non_finite(manifest)
        if bad:  # never write a study.json that the next run would refuse as damaged
            raise StoreError(f"cannot store this study in {root}: '{bad}' is not a finite "
                             "number (nan or inf), and study.json holds strict JSON, which has "
                             "neither; nothing was written. Give that key a finite value in the "
                             "study or plan file, then run again")
        problem = manifest_problem(manifest)
        if problem:
            raise StoreError(f"cannot store this study in {root}: its study.json would be "
                             f"refused when read back ({problem}); nothing was written. Check "
                             "that setting in the study or plan file")
        try:
            if root.exists() and not root.is_dir():
                raise StoreError(f"output path {root} is {kind_of(root)}, not a directory; "
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
                changed = diff_manifests(existing, manifest)
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
        with flock(self.root, busy):
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
                check_writable(directory, probe=i == 0)
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
        with flock(self.root, busy):
            self.check_layout()
            yield self

    def _check_nothing_in_the_way(self) -> None:
        """Refuse (StoreError, before anything is fitted) a file where a directory the run
        writes into belongs: replicates/MODEL and replicates/MODEL/DESIGN of the study's
        models and designs, and screens/DESIGN of a genome plan."""
        manifest = self.read_manifest()
        expected = Expected.of(manifest)
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
            raise StoreError(link_message(sorted(links)))

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
            manifest = loads(read_regular(path, MAX_STUDY_BYTES))
        except Unreadable as exc:
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

    def _expect(self, fresh: bool = False) -> Expected:
        if fresh or self._expected is None:
            self._expected = Expected.of(self.read_manifest())
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
        return self.root / record_path(model, design, rep)

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
        problem = record_problem(stored) or foreign_problem(stored, None, expected)
        if problem:
            raise StoreError(f"refusing to store a record in {self.root}: {problem}; this is a bug "
                             "in the caller (records are made by sbc.replicate)")
        path = self.replicate_path(stored["model"], stored["design"], stored["rep"])
        _write_under(path, 3, record_bytes(stored))

    def iter_records(self, quarantine: bool = False) -> Iterator[Record]:
        """Every valid record of this study (see the module docstring and
        :func:`record_problem`, :func:`foreign_problem`).  A file that is not one is named
        on ``stream`` in one line with its reason and never counted; with ``quarantine`` (a
        resumed run) it is also renamed aside (NAME.KIND-TIME) so the replicate is
        recomputed; nothing else is touched."""
        expected = self._expect(fresh=True)
        for path in self._record_paths():
            record, kind, reason = load_record(path, expected)
            if record is None:
                not_counted(path, kind, reason, quarantine, self.stream)
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
            raise StoreError(link_message([base]))
        if not base.is_dir():
            return
        for directory in sorted(base.iterdir()):
            if directory.is_symlink():
                raise StoreError(link_message([directory]))
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("r*.json")):
                record, kind, reason = load_screen(path, expected.fingerprint, problem)
                if record is None:
                    not_counted(path, kind, reason, quarantine, self.stream)
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
        raise StoreError(link_message(links))
    if path.is_dir():
        raise StoreError(in_the_way(path, f"the record file {path.name}"))
    try:
        atomic_write_bytes(path, payload)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}; results stored so far are "
                         "intact; free disk space or fix permissions and run again to resume") from exc
