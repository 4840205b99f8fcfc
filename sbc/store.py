"""The on-disk layout of a study's results; the only module that knows it.

    OUT/study.json                        the validated study, its fingerprint, versions
    OUT/replicates/MODEL/DESIGN/r000042.json  one record per finished replicate
    OUT/replicates.parquet                one row per replicate (diagnostics, status, error)
    OUT/parameters.parquet                one row per replicate x ranked scalar (tidy)
    OUT/ranks.nc                          DataTree: /MODEL/DESIGN/prior_sbc (fractional ranks;
                                          posterior_sbc for posterior SBC)
    OUT/report.html, summary.csv, summary.md

Each replicate file is written atomically (temporary file, fsync, rename), so killing the
process at any moment loses at most the replicates in flight.  Only data formats are used
(JSON, Parquet, NetCDF); nothing stored is ever unpickled.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.errors import StoreError, StudyMismatchError
from sbc.replicate import RECORD_SCHEMA

STUDY_FILE = "study.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
REQUIRED_KEYS = {"schema", "model", "design", "rep", "status"}


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
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


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a record")


def _dumps(obj) -> bytes:
    # NaN is stored as null so the files are strict JSON.
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(obj), default=_json_default, allow_nan=False).encode()


class Store:
    """A study's output directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- opening -----------------------------------------------------------------------
    @classmethod
    def open_for_run(cls, root: str | Path, manifest: dict) -> Store:
        """Create the store, or reopen it for resuming when it holds the same study.

        Refuses (without touching anything) a path that is a file, a directory holding
        something else, or a store of a different study.
        """
        store = cls(root)
        root = store.root
        if root.exists() and not root.is_dir():
            raise StoreError(f"output path {root} is a file, not a directory; choose another "
                             "path with --out")
        existing = store.read_manifest() if (root / STUDY_FILE).exists() else None
        if existing is not None:
            if existing.get("fingerprint") != manifest["fingerprint"]:
                changed = _diff_manifests(existing.get("study", {}), manifest["study"],
                                          existing.get("model_digests", {}),
                                          manifest["model_digests"])
                raise StudyMismatchError(
                    f"{root} holds results of a different study ({changed}); results of "
                    "different studies are never mixed. Run with --out NEW_DIR to start "
                    f"fresh, or move {root} away first")
            return store
        if root.is_dir() and any(p.name != ".gitkeep" for p in root.iterdir()):
            raise StoreError(f"output directory {root} is not empty and holds no sbc study "
                             f"({STUDY_FILE} missing); choose an empty or new directory with --out")
        try:
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(root / STUDY_FILE, json.dumps(manifest, indent=2).encode())
        except OSError as exc:
            raise StoreError(f"cannot write to output directory {root}: {exc.strerror}; "
                             "check permissions and free disk space, or choose another --out") from exc
        return store

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Store]:
        """Hold the store's lock for a run: a second ``sbc run`` on the same directory is
        refused instead of interleaving with this one.  The lock is an ``flock`` on
        OUT/.lock, so the kernel drops it when the process dies, even by SIGKILL.  Temporary
        files that a killed run left behind (its own ``.*.tmp``) are removed once the lock is held."""
        import fcntl

        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(f"another sbc process is writing to {self.root}; wait for it to "
                                 "finish (or stop it), then run the same command to resume") from exc
            for stale in self.root.glob("replicates/*/*/.r*.json.*.tmp"):
                stale.unlink(missing_ok=True)
            yield self
        finally:
            os.close(fd)

    def read_manifest(self) -> dict:
        path = self.root / STUDY_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise StoreError(f"{self.root} holds no sbc study ({STUDY_FILE} missing); "
                             "give the output directory of `sbc run`") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path} is unreadable or corrupt ({exc}); it was written by "
                             "`sbc run` and should not be edited") from exc

    # --- replicates --------------------------------------------------------------------
    def replicate_path(self, model: str, design: str, rep: int) -> Path:
        return self.root / "replicates" / model / design / f"r{rep:06d}.json"

    def write_record(self, record: dict) -> None:
        path = self.replicate_path(record["model"], record["design"], record["rep"])
        try:
            atomic_write_bytes(path, _dumps(record))
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}; results stored so far are "
                             "intact; free disk space or fix permissions and run again to resume") from exc

    def iter_records(self, quarantine: bool = False) -> Iterator[dict]:
        """Every valid stored record.  A corrupt file (e.g. a truncated write from a crash
        outside the atomic path) is skipped, and with ``quarantine`` renamed aside so the
        replicate is recomputed; nothing else is touched."""
        base = self.root / "replicates"
        if not base.is_dir():
            return
        seed = self._study_seed()
        for path in sorted(base.glob("*/*/r*.json")):
            record = _load_record(path)
            if record is None:
                if quarantine:
                    path.rename(path.with_name(f"{path.name}.corrupt-{int(time.time())}"))
                continue
            if not _belongs_here(record, path, seed):
                # a record of another study or another replicate (copied, moved, renamed):
                # never counted; set aside on a resume so the replicate is recomputed here
                if quarantine:
                    path.rename(path.with_name(f"{path.name}.foreign-{int(time.time())}"))
                continue
            yield record

    def _study_seed(self) -> int | None:
        try:
            return int(self.read_manifest()["study"]["seed"])
        except (StoreError, KeyError, TypeError, ValueError):
            return None

    def done(self, quarantine: bool = True, retry_failed: bool = False) -> set[tuple[str, str, int]]:
        """Replicates a resumed run skips: every stored record except failures of the
        ``prepare`` stage (model not buildable on a worker), which are retried, and, with
        ``retry_failed``, every failed record (refitted with its own seeds; the new record
        replaces it atomically)."""
        return {(r["model"], r["design"], r["rep"]) for r in self.iter_records(quarantine)
                if r.get("stage") != "prepare"
                and not (retry_failed and r.get("status") != "ok")}

    # --- consolidated tables -----------------------------------------------------------
    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(replicates, parameters) tables from the stored records."""
        return records_to_tables(self.iter_records())

    def write_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        reps, params = self.tables()
        for name, frame in (("replicates.parquet", reps), ("parameters.parquet", params)):
            tmp = self.root / f".{name}.tmp"
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, self.root / name)
        write_rank_tree(params, self.root / "ranks.nc")
        return reps, params

    def write_text(self, name: str, text: str) -> Path:
        path = self.root / name
        atomic_write_bytes(path, text.encode())
        return path


def _belongs_here(record: dict, path: Path, seed: int | None) -> bool:
    """Is this the record of the replicate its path names, drawn from this study's seed?

    The path (MODEL/DESIGN/rNNNNNN.json) must match the record's own model, design and
    replicate, and the record's seed must be the one this study derives for that replicate
    (``sbc.replicate.replicate_seed``: entropy = study seed, spawn key = (crc32 of the model
    label, crc32 of the design label, replicate)).  A record copied from a study with another
    seed, or from another replicate, fails this check.
    """
    import zlib

    model, design, rep = record.get("model"), record.get("design"), record.get("rep")
    if not isinstance(model, str) or not isinstance(design, str) or not isinstance(rep, int):
        return False
    if (path.parent.parent.name, path.parent.name, path.name) != (model, design, f"r{rep:06d}.json"):
        return False
    if seed is None:
        return True
    key = [zlib.crc32(model.encode()), zlib.crc32(design.encode()), rep]
    return record.get("seed_entropy") == seed and list(record.get("seed_key", [])) == key


def _load_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not REQUIRED_KEYS <= record.keys() \
            or record["schema"] != RECORD_SCHEMA:
        return None
    if record["status"] == "ok" and "parameters" not in record:
        return None
    return record


def _diff_manifests(old: dict, new: dict, old_digests: dict, new_digests: dict) -> str:
    changed = [k for k in sorted(set(old) | set(new))
               if k not in ("simulations", "output", "scheduler", "workers", "batch_size",
                            "base_dir", "description", "name")
               and old.get(k) != new.get(k)]
    changed += [f"source of model '{k}'" for k in sorted(set(old_digests) | set(new_digests))
                if old_digests.get(k) != new_digests.get(k)]
    return "changed: " + ", ".join(changed) if changed else "different fingerprint"


# "failure": the short reason code of a failed replicate (sbc.replicate.FAILURE_CODES),
# None for ok records and for records written before it existed (read with .get).
# "rescued": the fit was flagged and refitted once with stronger settings (the record's
# "attempts" list has both); its flags are those of the refit.
REPLICATE_COLUMNS = ["model", "design", "rep", "status", "failure", "error", "wall_seconds",
                     "sampler_seconds", "n_draws", "thin", "n_ranked", "n_divergent",
                     "n_treedepth", "ess_bulk_min", "ess_tail_min", "rhat_max",
                     "flag_divergent", "flag_low_ess", "flag_rhat", "seed_entropy",
                     "quantities_skipped", "rescued"]


def _record_columns(r: dict) -> dict[str, list]:
    """One ok record as columns: its ranked scalars, then its derived quantities."""
    p, quantities = r["parameters"], r.get("quantities", {})
    q_names = list(quantities)
    cols = {field: list(values) + [quantities[q].get(field) for q in q_names]
            for field, values in p.items()}
    cols["name"] = list(p["name"]) + q_names
    cols["group"] = list(p["group"]) + q_names
    cols["kind"] = ["parameter"] * len(p["name"]) + ["quantity"] * len(q_names)
    n = len(cols["name"])
    for field in ("model", "design", "rep", "n_ranked"):
        cols[field] = [r[field]] * n
    return cols


def records_to_tables(records: Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(replicates, parameters) DataFrames from records.  Columns are gathered as lists and
    turned into one frame at the end: a frame per record costs seconds on large studies."""
    rep_rows, columns, n_rows = [], {}, 0
    for r in records:
        rep_rows.append({k: r.get(k) for k in REPLICATE_COLUMNS})
        if r["status"] != "ok":
            continue
        cols = _record_columns(r)
        n = len(cols["name"])
        for field in columns.keys() | cols.keys():
            columns.setdefault(field, [None] * n_rows).extend(cols.get(field, [None] * n))
        n_rows += n
    reps = pd.DataFrame(rep_rows, columns=REPLICATE_COLUMNS)
    if len(reps):
        reps = reps.sort_values(["model", "design", "rep"], ignore_index=True)
    lead = ["model", "design", "rep", "name", "group", "kind"]
    if not n_rows:
        return reps, pd.DataFrame(columns=[*lead, "truth", "rank", "n_ranked", "mean", "sd"])
    params = pd.DataFrame({c: columns[c] for c in lead + sorted(set(columns) - set(lead))})
    for col in params.columns.difference(["model", "design", "name", "group", "kind"]):
        params[col] = pd.to_numeric(params[col], errors="coerce")
    params = params.astype({"rep": "int64", "rank": "int64", "n_ranked": "int64"})
    params = params.sort_values(["model", "design", "rep"], kind="stable", ignore_index=True)
    return reps, params


def write_rank_tree(params: pd.DataFrame, path: Path) -> None:
    """Ranks as an xarray DataTree with one ``prior_sbc`` group per (model, design), the layout
    ``arviz_plots.plot_ecdf_pit`` reads: one variable per parameter (vector parameters keep
    an element dimension), dims (chain=1, draw=replicate, ...), holding fractional ranks
    (rank + V) / (n_ranked + 1) with V keyed by the row (``sbc.stats.table_fractional_ranks``,
    the values the report tests).  Randomized rather than midpoint values, because with few
    ranked draws midpoints are visibly discrete and fail continuous uniformity checks
    although the ranks are exactly uniform.  ``sbc_ranks`` holds
    the raw integer ranks and the number of ranked draws per replicate."""
    import xarray as xr

    from sbc.stats import table_fractional_ranks

    tree = {}
    params = params.assign(u=table_fractional_ranks(params))
    for (model, design), block in params.groupby(["model", "design"], sort=True):
        wide = block.pivot(index="rep", columns="name", values="rank")
        wide_u = block.pivot(index="rep", columns="name", values="u")
        n_ranked = block.groupby("rep")["n_ranked"].first().reindex(wide.index).to_numpy(float)
        reps = wide.index.to_numpy()
        groups = block.drop_duplicates("name").groupby("group", sort=False)["name"].apply(list)
        frac, raw = {}, {"n_ranked": xr.DataArray(n_ranked[None].astype(int), dims=("chain", "draw"),
                                                  coords={"chain": [0], "draw": reps})}
        for group, names in groups.items():
            ranks = wide[names].to_numpy(float)  # (reps, elements)
            u = wide_u[names].to_numpy(float)
            coords = {"chain": [0], "draw": reps}
            if len(names) == 1 and names[0] == group:
                dims, values_u, values_r = ("chain", "draw"), u[None, :, 0], ranks[None, :, 0]
            else:
                dim = f"{group}_dim_0"
                coords[dim] = [n[len(group) + 1:-1] for n in names]
                dims, values_u, values_r = ("chain", "draw", dim), u[None], ranks[None]
            frac[group] = xr.DataArray(values_u, dims=dims, coords=coords)
            raw[group] = xr.DataArray(np.nan_to_num(values_r, nan=-1).astype(int), dims=dims,
                                      coords=coords)
        kind = "posterior_sbc" if str(design).startswith("posterior-") else "prior_sbc"
        tree[f"/{model}/{design}/{kind}"] = xr.Dataset(frac)
        tree[f"/{model}/{design}/sbc_ranks"] = xr.Dataset(raw)
    dt = xr.DataTree.from_dict(tree) if tree else xr.DataTree()
    tmp = path.with_name(f".{path.name}.tmp")
    dt.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)
