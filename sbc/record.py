"""The replicate record: what a worker writes for one replicate and every reader of a store
takes from it.

A record is a JSON object (one file per replicate).  This module owns its schema
(:data:`RECORD_SCHEMA`, :data:`FAILURE_CODES`, the typed fields), the check every record
passes before it is counted (:func:`record_problem`), its canonical bytes with their SHA-256
digest (:func:`record_bytes`), and its tidy tables: one row per replicate, one per replicate
x ranked scalar (:func:`records_to_tables`), and the ArviZ DataTree of fractional ranks
(:func:`rank_tree_bytes`).  Where records live on disk is :mod:`sbc.store`'s business.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterable
from typing import Literal, TypedDict

import numpy as np
import pandas as pd  # and xarray, in rank_tree only: reading records (sbc.open) needs none

from sbc.stats import table_fractional_ranks

RECORD_SCHEMA = 1
# record["failure"] of a failed replicate: the model could not be built on the worker ("prepare"), the
# simulated data were not finite ("simulation"), the sampler returned non-finite draws ("nonfinite"), truths
# and draws of a parameter differ in shape ("shape_mismatch"), the fit ran past sampler.timeout ("timeout"),
# the process fitting it died, again and again ("worker_died": os.abort, a segfault, out of memory),
# anything else raised ("exception").  None for ok records (and old records). A fit that did not move is not
# a failure: it is ranked and flagged ("flag_degenerate").
FAILURE_CODES = ("prepare", "simulation", "nonfinite", "shape_mismatch", "timeout",
                 "worker_died", "exception")

MAX_INT = 2**53  # counts and replicate numbers beyond this are not real (nor exact as floats)
# Columns of the parameters table that come from the record itself, not from "parameters".
RESERVED_COLUMNS = ("model", "design", "rep", "kind", "n_ranked", "seed_entropy")
# Fields of a record (either status), checked when present: numbers (finite) or null,
# counts (integers >= 0) or null, flags (true/false) or null, text or null.
NUMBER_FIELDS = ("wall_seconds", "sampler_seconds", "ess_bulk_min", "ess_tail_min", "rhat_max",
                 "target_accept")
COUNT_FIELDS = ("n_draws", "thin", "n_divergent", "n_treedepth", "gradient_evals")
FLAG_FIELDS = ("flag_divergent", "flag_low_ess", "flag_rhat", "flag_degenerate", "rescued",
               "noncentered")
TEXT_FIELDS = ("error", "quantities_skipped", "unranked", "degenerate", "stage", "fingerprint",
               "digest")


class Parameters(TypedDict, total=False):
    """The ranked scalars of an ok record, column-wise (one entry per scalar)."""
    name: list[str]        # scalar label, e.g. "1|gene[2]"
    group: list[str]       # its parameter, e.g. "1|gene"
    truth: list[float]
    rank: list[int]        # 0..n_ranked: kept draws below the truth
    mean: list[float]
    sd: list[float]
    ess_bulk: list[float]
    ess_tail: list[float]
    rhat: list[float | None]
    p_below_zero: list[float]  # share of draws below 0; absent in records written before it
    threshold: list[float | None]  # c of a declared decision theta < c (model THRESHOLDS)
    p_below_threshold: list[float | None]  # share of draws below it (None: no c declared)
    # and one list per posterior quantile, "q0.025" ... "q0.975"


class Quantity(TypedDict):
    """A derived quantity (loglik, loglik_min) of an ok record."""

    truth: float
    rank: int
    mean: float
    sd: float


class Record(TypedDict, total=False):
    """One replicate, as a worker writes it and the store reads it back (JSON, one file).

    Always present: ``schema``, ``model``, ``design``, ``rep``, ``status``, ``seed_entropy``
    (the study seed), ``seed_key`` (the replicate's spawn key).  A failed record adds
    ``failure`` (one of :data:`FAILURE_CODES`), ``error`` and ``wall_seconds``; an ok record
    adds the sampler's diagnostics, ``n_ranked``, ``parameters`` and ``quantities``.  The
    store adds ``fingerprint`` and ``digest``.  :func:`record_problem` checks all of it."""

    schema: int
    model: str
    design: str
    rep: int
    status: Literal["ok", "failed"]
    seed_entropy: int
    seed_key: list[int]
    failure: str | None
    error: str | None
    stage: str
    wall_seconds: float
    sampler_seconds: float
    n_draws: int
    thin: int
    n_ranked: int
    n_divergent: int
    n_treedepth: int
    ess_bulk_min: float
    ess_tail_min: float
    rhat_max: float | None
    flag_divergent: bool
    flag_low_ess: bool
    flag_rhat: bool
    flag_degenerate: bool  # did not move: ranked among all its draws (see sbc.replicate)
    degenerate: str | None  # why it counts as degenerate
    parameters: Parameters
    quantities: dict[str, Quantity]
    quantities_skipped: str | None
    unranked: str | None  # parameters of either model left without a rank, and why
    rescued: bool
    attempts: list[dict]
    gradient_evals: int  # leapfrog steps of every attempt, tuning included (0: no gradients)
    target_accept: float  # of the ranked fit (a rescue's when rescued)
    noncentered: bool | None  # the ranked fit's form had non-centered group effects
    fingerprint: str
    digest: str


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a record")


def _clean(v):
    # NaN is stored as null so the files are strict JSON.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def dumps(obj) -> bytes:
    return json.dumps(_clean(obj), default=_json_default, allow_nan=False).encode()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not strict JSON")


def loads(data: bytes):
    """Strict JSON (no NaN/Infinity, which the store never writes)."""
    return json.loads(data, parse_constant=_reject_constant)


def record_bytes(record: Record) -> bytes:
    """A record as the store writes it: its JSON (NaN as null, any ``digest`` field dropped)
    with ``"digest"``, the SHA-256 of every byte before it, appended as the last field.  A
    file changed after it was written, by even one byte, no longer matches
    (:func:`digest_problem`); hashing the bytes costs far less than reading the JSON."""
    content = dumps({k: v for k, v in record.items() if k != "digest"})[:-1]  # without "}"
    digest = hashlib.sha256(content).hexdigest()
    return content + (b", " if content != b"{" else b"") + _DIGEST_TAIL.format(digest).encode()


_DIGEST_TAIL = '"digest": "{}"}}'


def digest_problem(data: bytes, record) -> str | None:
    """Why the bytes ``data`` of a record file are not as :func:`record_bytes` wrote them, or
    None.  A record without a digest is accepted (written before digests existed) unless it
    has a ``fingerprint``, which is written together with one."""
    if not isinstance(record, dict):
        return None
    digest = record.get("digest")
    if digest is None:
        if "fingerprint" in record:
            return ("it has a fingerprint but no digest, which are written together (changed "
                    "after it was written)")
        return None
    tail = _DIGEST_TAIL.format(digest).encode() if isinstance(digest, str) else b""
    if not tail or not data.endswith(tail):
        return "its digest is not the last field, as written (changed after it was written)"
    content = data[:-len(tail)]
    content = content[:-2] if content.endswith(b", ") else content
    if hashlib.sha256(content).hexdigest() != digest:
        return ("its content differs from the digest written with it (changed after it was "
                "written)")
    return None


# --- values as the schema sees them -----------------------------------------------------
def show(value) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def is_int(v, lo: int = 0, hi: int = MAX_INT) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def is_number(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -MAX_INT <= v <= MAX_INT
    return isinstance(v, float) and math.isfinite(v)


def is_name(v) -> bool:
    """A parameter's or group's name as PyMC accepts it: non-empty text without '/' or NUL
    (any length, script, tab or line break; :func:`rank_tree` stores odd ones safely)."""
    return isinstance(v, str) and bool(v) and "/" not in v and "\x00" not in v


def is_label(v) -> bool:
    """A name the store can use as a column value and a NetCDF variable or group name."""
    return isinstance(v, str) and bool(v) and "/" not in v and v.isprintable()


# --- study.json ---------------------------------------------------------------------------
# --- records ------------------------------------------------------------------------------
def record_problem(record) -> str | None:
    """Why ``record`` (as read from JSON) is not a replicate record, or None.

    The one record schema: an object with ``schema`` == RECORD_SCHEMA; ``model`` and
    ``design`` names; ``rep`` an integer >= 0; ``status`` "ok" or "failed"; ``seed_entropy``
    and ``seed_key`` (3 integers); NUMBER_FIELDS finite numbers or null, COUNT_FIELDS
    integers >= 0 or null, FLAG_FIELDS true/false or null, TEXT_FIELDS strings or null,
    ``failure`` one of FAILURE_CODES or null.  An ok record also has ``n_ranked`` (an
    integer >= 1) and ``parameters``: an object of equal-length lists with ``name`` (unique
    names, each its ``group`` or an element ``group[...]``), ``group``, ``truth`` (finite
    numbers) and ``rank`` (integers in 0..n_ranked), every other list numbers or null, no
    column named like RESERVED_COLUMNS; and, if present, ``quantities``: an object of
    name -> {truth, rank, ...} with the same rules, names apart from the parameters'.
    Whether the record is this study's, and this path's, is :func:`sbc.storecheck.foreign_problem`'s."""
    if not isinstance(record, dict):
        return f"it holds {json_type(record)} instead of a record (a JSON object)"
    if not is_int(record.get("schema")) or record["schema"] != RECORD_SCHEMA:
        return f"'schema' is {show(record.get('schema'))}, not {RECORD_SCHEMA}"
    for key in ("model", "design"):
        if not is_label(record.get(key)):
            return f"'{key}' must be a name, got {show(record.get(key))}"
    if not is_int(record.get("rep")):
        return f"'rep' must be an integer >= 0, got {show(record.get('rep'))}"
    status = record.get("status")
    if not isinstance(status, str) or status not in ("ok", "failed"):
        return f"'status' is {show(status)}, neither \"ok\" nor \"failed\""
    if not is_int(record.get("seed_entropy"), 0, 2**128):
        return f"'seed_entropy' must be an integer >= 0, got {show(record.get('seed_entropy'))}"
    key = record.get("seed_key")
    if not isinstance(key, list) or len(key) != 3 or not all(is_int(k) for k in key):
        return f"'seed_key' must be a list of 3 integers, got {show(key)}"
    for fields, ok, what in ((NUMBER_FIELDS, is_number, "a finite number"),
                             (COUNT_FIELDS, is_int, "an integer >= 0"),
                             (FLAG_FIELDS, lambda v: isinstance(v, bool), "true or false"),
                             (TEXT_FIELDS, lambda v: isinstance(v, str), "a string")):
        for field in fields:
            value = record.get(field)
            if value is not None and not ok(value):
                return f"'{field}' must be {what} or null, got {show(value)}"
    failure = record.get("failure")
    if failure is not None and (not isinstance(failure, str) or failure not in FAILURE_CODES):
        return f"'failure' is {show(failure)}, none of {', '.join(FAILURE_CODES)}"
    if status != "ok":
        return None
    n_ranked = record.get("n_ranked")
    if not is_int(n_ranked, 1):
        return f"'n_ranked' must be an integer >= 1, got {show(n_ranked)}"
    return _parameters_problem(record.get("parameters"), n_ranked) or \
        _quantities_problem(record, n_ranked)


def _first_bad(values: list, ok) -> int | None:
    for i, v in enumerate(values):
        if not ok(v):
            return i
    return None


def _values_problem(where: str, field: str, values: list, n_ranked: int) -> str | None:
    """truth: finite numbers; rank: integers in 0..n_ranked; any other field numbers or null.
    Whole lists are checked at C speed first (types, sum, min, max); only a list that fails
    is walked to name its first bad value."""
    types = set(map(type, values))
    try:
        if field == "rank":
            if types <= {int} and (not values or (min(values) >= 0 and max(values) <= n_ranked)):
                return None
        elif types <= ({int, float} if field == "truth" else {int, float, type(None)}):
            numbers = [v for v in values if v is not None] if type(None) in types else values
            if math.isfinite(sum(numbers)) and (int not in types or not numbers or
                                                -MAX_INT <= min(numbers) <= max(numbers) <= MAX_INT):
                return None
    except OverflowError:  # an integer too large for a float: found below
        pass
    if field == "truth":
        ok, what = is_number, "is not a finite number"
    elif field == "rank":
        ok, what = (lambda v: is_int(v) and v <= n_ranked), f"is not an integer in 0..n_ranked ({n_ranked})"
    else:
        ok, what = (lambda v: v is None or is_number(v)), "is not a number or null"
    i = _first_bad(values, ok)
    return None if i is None else f"{where}[{i}] = {show(values[i])} {what}"


def _parameters_problem(p, n_ranked: int) -> str | None:
    if not isinstance(p, dict):
        return f"'parameters' must be an object of equal-length lists, got {json_type(p)}"
    missing = [k for k in ("name", "group", "truth", "rank") if k not in p]
    if missing:
        return f"'parameters' lacks {', '.join(missing)}"
    length = None
    for key, values in p.items():
        if key in RESERVED_COLUMNS:
            return f"'parameters' has a list '{key}', a name reserved for the record's own field"
        if not isinstance(values, list):
            return f"parameters.{key} must be a list, got {json_type(values)}"
        if length is None:
            length, first = len(values), key
        elif len(values) != length:
            return (f"parameters.{key} has {len(values)} value(s) but parameters.{first} has "
                    f"{length}")
    names, groups = p["name"], p["group"]
    for what, values in (("name", names), ("group", groups)):
        i = _first_bad(values, is_name)
        if i is not None:
            return f"parameters.{what}[{i}] = {show(values[i])} is not a name"
    for i, (n, g) in enumerate(zip(names, groups)):
        if n != g and not (n.startswith(f"{g}[") and n.endswith("]")):
            return f"parameters.name[{i}] = {show(n)} is no element of its group {show(g)}"
    if len(set(names)) != len(names):
        seen = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        return f"parameters.name lists {show(dup)} more than once"
    for key, values in p.items():
        if key not in ("name", "group"):
            problem = _values_problem(f"parameters.{key}", key, values, n_ranked)
            if problem:
                return problem
    return None


def _quantities_problem(record: dict, n_ranked: int) -> str | None:
    if "quantities" not in record:
        return None
    q = record["quantities"]
    if not isinstance(q, dict):
        return f"'quantities' must be an object, got {json_type(q)}"
    names = set(record["parameters"]["name"])
    for name, fields in q.items():
        if not is_label(name) or name in names or name in RESERVED_COLUMNS:
            return f"quantity name {show(name)} is not a name apart from the parameters'"
        if not isinstance(fields, dict) or "truth" not in fields or "rank" not in fields:
            return f"quantities.{name} must be an object with truth and rank, got {show(fields)}"
        for field, value in fields.items():
            problem = _values_problem(f"quantities.{name}.{field}", field, [value], n_ranked)
            if problem:
                return problem.replace("[0] =", " =")
    return None


# "failure": the short reason code of a failed replicate (sbc.replicate.FAILURE_CODES),
# None for ok records and for records written before it existed (read with .get).
# "rescued": the fit was flagged and refitted once with stronger settings (the record's
# "attempts" list has both); its flags are those of the refit.
REPLICATE_COLUMNS = ["model", "design", "rep", "status", "failure", "error", "wall_seconds",
                     "sampler_seconds", "n_draws", "thin", "n_ranked", "n_divergent",
                     "n_treedepth", "ess_bulk_min", "ess_tail_min", "rhat_max",
                     "flag_divergent", "flag_low_ess", "flag_rhat", "flag_degenerate",
                     "degenerate", "seed_entropy",
                     "quantities_skipped", "unranked", "rescued", "target_accept", "noncentered",
                     "gradient_evals"]


def _record_columns(r: Record) -> dict[str, list]:
    """One ok record as columns: its ranked scalars, then its derived quantities."""
    p, quantities = r["parameters"], r.get("quantities", {})
    q_names = list(quantities)
    cols = {field: list(values) + [quantities[q].get(field) for q in q_names]
            for field, values in p.items()}
    cols["name"] = list(p["name"]) + q_names
    cols["group"] = list(p["group"]) + q_names
    cols["kind"] = ["parameter"] * len(p["name"]) + ["quantity"] * len(q_names)
    n = len(cols["name"])
    for field in ("model", "design", "rep", "n_ranked", "seed_entropy"):
        cols[field] = [r[field]] * n
    return cols


def records_to_tables(records: Iterable[Record]) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def rank_tree_bytes(params: pd.DataFrame) -> bytes:
    """:func:`rank_tree` as netCDF bytes (``ranks.nc``)."""
    dt = rank_tree(params)
    try:  # in memory: the file is then written like every other (atomic_write_bytes)
        return bytes(dt.to_netcdf(engine="h5netcdf"))
    except TypeError:  # an xarray that needs a target
        buffer = io.BytesIO()
        dt.to_netcdf(buffer, engine="h5netcdf")
        return buffer.getvalue()


def _variable_names(groups: dict[str, bool]) -> dict[str, str]:
    """The ranks.nc variable of each group (``groups``: name -> has an element dimension),
    see :func:`rank_tree`."""
    taken = {"chain", "draw", "n_ranked", ".", ""}
    dims = {f"{g}_dim_0" for g, vector in groups.items() if vector}
    out: dict[str, str] = {}
    for group, vector in groups.items():
        var = group
        while var in taken or var in dims or (var != group and var in groups):
            var += "_"
        out[group] = var
        taken.add(var)
        if vector:
            taken.add(f"{var}_dim_0")
    return out


def rank_tree(params: pd.DataFrame):
    """Ranks as an xarray DataTree with one ``prior_sbc`` group per (model, design), the layout
    ``arviz_plots.plot_ecdf_pit`` reads: one variable per parameter (vector parameters keep
    an element dimension), dims (chain=1, draw=replicate, ...), holding fractional ranks
    (rank + V) / (n_ranked + 1) with V keyed by the row (``sbc.stats.table_fractional_ranks``,
    the values the report tests).  Randomized rather than midpoint values, because with few
    ranked draws midpoints are visibly discrete and fail continuous uniformity checks
    although the ranks are exactly uniform.  ``sbc_ranks`` holds
    the raw integer ranks and the number of ranked draws per replicate.

    A name that cannot be a variable there ("." or one the layout takes: chain, draw,
    n_ranked, X_dim_0) gets "_" appended until free; attribute ``sbc_name`` keeps the name."""
    import xarray as xr

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
        variables = _variable_names({g: not (len(n) == 1 and n[0] == g)
                                     for g, n in groups.items()})
        for group, names in groups.items():
            ranks = wide[names].to_numpy(float)  # (reps, elements)
            u = wide_u[names].to_numpy(float)
            coords = {"chain": [0], "draw": reps}
            var, attrs = variables[group], {"sbc_name": group}
            if len(names) == 1 and names[0] == group:
                dims, values_u, values_r = ("chain", "draw"), u[None, :, 0], ranks[None, :, 0]
            else:
                dim = f"{var}_dim_0"
                coords[dim] = [n[len(group) + 1:-1] for n in names]
                dims, values_u, values_r = ("chain", "draw", dim), u[None], ranks[None]
            frac[var] = xr.DataArray(values_u, dims=dims, coords=coords, attrs=attrs)
            raw[var] = xr.DataArray(np.nan_to_num(values_r, nan=-1).astype(int), dims=dims,
                                    coords=coords, attrs=attrs)
        kind = "posterior_sbc" if str(design).startswith("posterior-") else "prior_sbc"
        tree[f"/{model}/{design}/{kind}"] = xr.Dataset(frac)
        tree[f"/{model}/{design}/sbc_ranks"] = xr.Dataset(raw)
    return xr.DataTree.from_dict(tree) if tree else xr.DataTree()
