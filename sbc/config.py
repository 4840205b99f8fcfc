"""The configuration toolkit: how study and plan files (and the files they name) are read
and validated, so both report problems the same way.

Every reader names the file, the key (as a dotted path), what was wrong and how to fix it,
and raises :class:`~sbc.errors.StudyError` (or the error class it is given): unknown keys
with a did-you-mean, typed values with ranges, seeds, resource limits, safe path names,
UTF-8 text and TOML.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from sbc.errors import StudyError

# integers stored in study.json and the tables must be exact as float64 (JSON readers, the
# store's own checks of study.json): every integer setting is at most this
MAX_INTEGER = 2**53
SEED_END = 2**63  # seeds are stored as signed 64-bit integers (JSON, Parquet): 0 <= seed < 2**63
# Resource limits, raised per file with a [limits] table (see the module docstring).
LIMITS = {"simulations": 100_000, "rows": 10_000_000, "designs": 10_000}
LIMIT_WHAT = {"simulations": "simulations per model and design", "rows": "rows per design",
              "designs": "designs"}
# A name that becomes a path component: letters, digits, '.', '_', '-'; no leading dot.
PATH_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def where(path: Path, key: str) -> str:
    return f"{path}: key '{key}'"


def unknown_keys(table: dict, allowed: set[str], path: Path, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            guess = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"did you mean '{prefix}{guess[0]}'?" if guess else \
                f"valid keys are: {', '.join(sorted(allowed))}"
            raise StudyError(f"{path}: unknown key '{prefix}{key}'; {hint}")


def positive_int(value: Any, path: Path, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StudyError(f"{where(path, key)} must be an integer, got {value!r}; "
                         f"write e.g. {key.split('.')[-1]} = {max(minimum, 10)}")
    if value < minimum:
        raise StudyError(f"{where(path, key)} must be >= {minimum}, got {value}")
    if value > MAX_INTEGER:
        raise StudyError(f"{where(path, key)} must be at most {MAX_INTEGER} (2**53), got "
                         f"{value}; larger integers are not exact in the stored results (JSON, "
                         "Parquet), so the store could not be read back")
    return value


def int_list(value: Any, path: Path, key: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise StudyError(f"{where(path, key)} must be a non-empty list of positive integers, "
                         f"got {value!r}; write e.g. {key.split('.')[-1]} = [10, 20]")
    return [positive_int(v, path, key) for v in value]


def read_text(path: Path, what: str, error: type[Exception] = StudyError) -> str:
    """The text of a file the user gave (study, plan, model or data file), read as UTF-8.

    The one reader of such files, so every one reports the same way: a file that is not
    UTF-8 raises ``error`` naming the file, the byte offset, line and column of the first
    bad byte and how to fix it (never a ``UnicodeDecodeError`` traceback).  A leading
    byte-order mark is dropped and line endings are normalized to ``\\n``, as Python's
    text mode does.

    Parameters
    ----------
    path : the file.
    what : what the file is, for messages ("study file", "model file", ...).
    error : the ``SbcError`` subclass to raise.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise error(f"{what} not found: {path}; check the path") from exc
    except IsADirectoryError as exc:
        raise error(f"{what} {path} is a directory; give the path of a file") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}; check its permissions") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start:exc.end].hex(" ")
        raise error(f"{what} {path} is not valid UTF-8: byte 0x{bad} at byte offset "
                    f"{exc.start} (line {line}, column {column}) ({exc.reason}); save the "
                    "file as UTF-8, or remove or retype that character (comments count "
                    "too)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_path_name(value: str, what: str, fix: str, error: type[Exception] = StudyError) -> str:
    """Refuse a name that becomes a path component unless it is safe as one.

    Study and plan names (the default output directory), model labels (from model file
    names and functions) and design labels name directories of the store and the report.
    They must consist of letters, digits, ``.``, ``_`` and ``-``, must not start with a
    dot (``.``, ``..`` and hidden names) and must not be empty: a name like ``../../x`` or
    ``/tmp/x`` would otherwise write outside the output directory.

    Parameters
    ----------
    value : the name.
    what : where it comes from, for the message (e.g. "path/study.toml: key 'name'").
    fix : how to fix it (e.g. "write e.g. name = \"my_study\"").
    error : the ``SbcError`` subclass to raise.
    """
    if isinstance(value, str) and PATH_NAME.fullmatch(value):
        return value
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {value!r}; {fix}")
    bad = sorted({c for c in str(value) if not re.fullmatch(r"[A-Za-z0-9._-]", c)})
    if not value:
        problem = "is empty"
    elif bad:
        problem = "contains " + ", ".join(repr(c) for c in bad)
    else:
        problem = "starts with a dot"
    raise error(f"{what} {value!r} {problem}; it becomes a directory name of the results, "
                "so it may hold only letters, digits, '.', '_' and '-' and must not start "
                f"with a dot; {fix}")


def safe_name(value: str, default: str = "study") -> str:
    """A suggestion for :func:`check_path_name` messages: ``value`` with every run of
    unsafe characters replaced by ``_`` and leading dots and underscores removed."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).lstrip("._") or default


def parse_seed(value: Any, path: Path, key: str = "seed") -> int:
    """A seed: an integer with 0 <= seed < 2**63 (stored as a signed 64-bit integer)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_END:
        raise StudyError(f"{where(path, key)} must be an integer with 0 <= seed < 2**63 "
                         f"(at most {SEED_END - 1}), got {value!r}; write e.g. "
                         f"{key.split('.')[-1]} = 103")
    return value


def parse_limits(raw: dict, path: Path) -> dict[str, int]:
    """The resource limits of a study or plan file: :data:`LIMITS`, raised by [limits]."""
    table = raw.get("limits", {})
    if not isinstance(table, dict):
        raise StudyError(f"{where(path, 'limits')} must be a table: [limits] simulations = "
                         "500000 (see the keys simulations, rows, designs)")
    unknown_keys(table, set(LIMITS), path, "limits.")
    return {k: positive_int(table.get(k, v), path, f"limits.{k}") for k, v in LIMITS.items()}


def check_limit(value: int, limits: dict[str, int], kind: str, where: str) -> None:
    """Refuse ``value`` above ``limits[kind]`` with the limit and how to raise it.

    where: what is too large, e.g. "path: key 'simulations' = 1000000000".
    """
    if value > limits[kind]:
        raise StudyError(
            f"{where} exceeds the limit of {limits[kind]:,} {LIMIT_WHAT[kind]} (a guard "
            "against typos: it would run for hours or exhaust memory); lower it, or if you "
            f"mean it, raise the limit in the same file: [limits] {kind} = {value}")


def parse_run(table: Any, path: Path, allowed: set[str]) -> dict[str, Any]:
    """The [run] table (how to run; not part of the results): every value type-checked.

    Returns output (str | None), scheduler (str | None), workers (int | None) and, where
    ``allowed`` has it, batch_size (int | None).
    """
    if not isinstance(table, dict):
        raise StudyError(f"{where(path, 'run')} must be a table ([run]), got {table!r}")
    unknown_keys(table, allowed, path, "run.")
    out: dict[str, Any] = {}
    output = table.get("output")
    if output is not None and (not isinstance(output, str) or not output.strip()):
        raise StudyError(f"{where(path, 'run.output')} must be a directory path (a string), "
                         f"got {output!r}; write e.g. output = \"reports/my_study\"")
    out["output"] = output
    scheduler = table.get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise StudyError(f"{where(path, 'run.scheduler')} must be an address like "
                         f"'tcp://host:8786' (a string), got {scheduler!r}; leave it out to "
                         "start local workers")
    out["scheduler"] = scheduler.strip() if scheduler else None
    workers = table.get("workers")
    if workers is not None:  # 0 runs in this process, as --workers 0
        workers = positive_int(workers, path, "run.workers", minimum=0)
    out["workers"] = workers
    if "threads" in allowed:  # fit in N threads of this process (samplers that allow it)
        threads = table.get("threads")
        out["threads"] = None if threads is None else \
            positive_int(threads, path, "run.threads")
    if "batch_size" in allowed:
        batch = table.get("batch_size")
        out["batch_size"] = None if batch is None else \
            positive_int(batch, path, "run.batch_size")
    check_where_fits_run(path, [f"run.{k}" for k in ("scheduler", "workers", "threads")
                                if out.get(k) is not None])
    return out


def check_where_fits_run(path: Path, keys: list[str]) -> None:
    """Refuse a file that sets more than one of the settings that choose where fits run
    (``run.scheduler``, ``run.workers``, ``run.threads``, a SLURM ``[cluster]``): all but
    one would be ignored without a word."""
    if len(keys) > 1:
        raise StudyError(
            f"{path}: {' and '.join(k if k.startswith('[') else repr(k) for k in keys)} are "
            f"{'both' if len(keys) == 2 else 'all'} set, but each chooses "
            "where fits run (run.scheduler: that scheduler's workers; run.workers: local "
            "worker processes; run.threads: threads of this process; [cluster] kind = "
            "\"slurm\": SLURM jobs), so all but one would be ignored; keep one of them (the "
            "command line's --workers, --threads or --scheduler overrides it for one run)")


def read_toml(path: Path, what: str = "study file") -> dict:
    if not path.exists():
        example = "studies/crispr_seed.toml" if what == "study file" else "studies/plan_screen.toml"
        raise StudyError(f"{what} not found: {path}; check the path (an example: {example})")
    if path.is_dir():
        raise StudyError(f"{what} {path} is a directory; give the path of a .toml file")
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path} is not valid TOML: {exc}; fix the syntax at that line") from exc


AUTO = "auto"  # thin by the effective sample size


def parse_thin(value: Any, path: Path, chains: int, draws: int, key: str = "thin") -> int | str:
    """``thin``: :data:`AUTO` (thin to about the effective sample size) or a positive
    integer that leaves at least 10 of ``chains`` x ``draws`` to rank from."""
    if value == AUTO:
        return AUTO
    thin = positive_int(value, path, key)
    if thin > draws * chains // 10:
        raise StudyError(
            f"{where(path, key)} = {thin} leaves fewer than 10 draws to rank from "
            f"{chains} chain(s) x {draws} draws; lower 'thin', raise 'sampler.draws', or "
            f"write thin = \"{AUTO}\" (thin by effective sample size)")
    return thin


def output_dir(out: str | Path | None, output: str | None, base_dir: str, name: str) -> Path:
    """Where a study or plan writes: ``out`` (a command-line or Python argument, relative
    to the current directory) or else the file's ``run.output`` (relative to the file's
    folder, like every path inside a study or plan file) or else ``reports/NAME`` in the
    current directory."""
    if out is not None:
        return Path(out)
    if output:
        return Path(os.path.normpath(Path(base_dir) / output))  # "studies/../reports" -> "reports"
    return Path("reports") / name

