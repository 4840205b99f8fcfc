"""Study files: parse and validate the TOML that describes a calibration study.

A study is plain data (frozen dataclasses).  Validation happens here, once, at the
boundary: every problem is reported with the key, the offending value and a fix.
This module is long because it is that one boundary: every key of a study file is checked
here, with its message (the sequential settings' own checks are in :mod:`sbc.stopping`).

Shared checks used by every input reader (study and plan files, model files, CSV data):

- :func:`read_text`: the one reader of text files (UTF-8; a bad byte is reported with the
  file, its byte offset, line and column).
- :func:`check_path_name`: names that become a path component (the study or plan name,
  model labels, design labels) must be letters, digits, ``.``, ``_`` or ``-``, not start
  with a dot and not be empty, so no result is ever written outside the output directory.
- :func:`parse_seed`: ``0 <= seed < 2**63`` (seeds are stored as 64-bit integers).
- Resource limits (:data:`LIMITS`): a study may ask for at most 100,000 simulations per
  model and design, 10,000,000 rows per design and 10,000 designs, so that a typo
  (``simulations = 1000000000``) is refused at once instead of running silently for
  minutes.  A study or plan file that really needs more raises the limit explicitly::

      [limits]
      simulations = 500000   # replicates per model and design (plans: per design)
      rows = 50000000        # rows (measurements) of the largest design
      designs = 20000        # designs in the study (plans: in the search space)
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbc import sequential, stopping
from sbc.config import (AUTO, LIMITS, check_limit, check_path_name, check_where_fits_run,
                        int_list, parse_limits,
                        parse_run, parse_seed, parse_thin, positive_int, read_toml, safe_name,
                        unknown_keys, where)
from sbc.design import Design
from sbc.errors import StudyError
from sbc.numerics import fingerprint
from sbc.posterior import posterior_design
from sbc.sampling import SamplerSettings, sampler_names


TOP_KEYS = {"name", "seed", "simulations", "max_simulations", "sequential", "model", "models",
            "simulate_model", "thin", "grid", "designs", "sampler", "run", "description",
            "cluster", "posterior_sbc", "parameter_map", "limits"}
SAMPLER_KEYS = {"name", "chains", "tune", "draws", "target_accept", "max_treedepth", "timeout",
                "adaptation", "rescue", "mass_matrix_gamma"}
ADAPTATIONS = ("diag", "low_rank", "draw_diag")  # nutpie's mass-matrix adaptation
MAX_TIMEOUT = 7 * 24 * 3600.0  # seconds; larger values overflow thread and sampler waits
RUN_KEYS = {"output", "batch_size", "scheduler", "workers", "threads"}
CLUSTER_KINDS = ("local", "slurm")
# dask_jobqueue.SLURMCluster settings accepted in [cluster] (plus kind and jobs).
SLURM_KEYS = {"queue", "account", "cores", "processes", "memory", "walltime",
              "job_extra_directives", "job_script_prologue", "local_directory",
              "log_directory", "python", "interface"}
GRID_KEYS = {"cell_lines", "genes", "reps"}
DESIGN_KEYS = {"cell_lines", "genes", "reps"}


@dataclass(frozen=True)
class ClusterSpec:
    """Where workers come from when no scheduler address is given.

    ``kind="slurm"`` starts ``dask_jobqueue.SLURMCluster(**options)`` and asks for ``jobs``
    batch jobs; each job runs ``processes`` single-threaded workers (processes = cores).
    """

    kind: str = "local"
    jobs: int = 1
    options: tuple[tuple[str, object], ...] = ()

    def slurm_kwargs(self) -> dict:
        kwargs = dict(self.options)
        kwargs.setdefault("cores", 1)
        kwargs.setdefault("processes", kwargs["cores"])  # one single-threaded worker per core
        kwargs.setdefault("memory", f"{4 * kwargs['cores']}GB")
        kwargs.setdefault("walltime", "04:00:00")
        return kwargs


@dataclass(frozen=True)
class Study:
    """A calibration study: which models, on which designs, how many replicates, how fitted.

    Validated on construction, from Python as from a study file (:meth:`from_toml`): a bad
    value raises :class:`~sbc.errors.StudyError` naming the field and how to fix it.
    Convenient forms are normalized: ``models`` may be one name or a list, ``designs`` a
    list of :class:`~sbc.design.Design`, ``(cell_lines, genes, reps)`` tuples or
    ``"10x3x3"`` labels, ``sampler`` a :class:`~sbc.sampling.SamplerSettings`, a sampler name
    or a dict of ``[sampler]`` keys.

    Parameters
    ----------
    name : names the default output directory (letters, digits, ``.``, ``_``, ``-``).
    models : model names (``crispr_screen``) or ``path/to/file.py[:function]``.
    designs : the designs to simulate and fit.
    simulations : replicates per model and design, or ``"auto"``: a sequential study that
        stops when its verdict is reached (:mod:`sbc.stopping`), at most ``max_simulations``
        (default 1000), with ``sequential`` settings (a dict of the ``[sequential]`` keys or
        :class:`sbc.stopping.Sequential`).
    seed : the study seed; every replicate's seed derives from it.
    sampler, thin, simulate_model, output, batch_size, scheduler, workers, cluster,
    parameter_map, description : as the study file's keys of the same names
        (docs/user_guide/studies.md).
    base_dir : the folder relative paths are read against (the study file's folder; from
        Python, the current directory at construction).

    Examples
    --------
    >>> import sbc
    >>> study = sbc.Study(name="demo", models="crispr_screen", designs=[(10, 3, 3)],
    ...                   simulations=100, seed=1)
    >>> study.designs[0].label
    '10x3x3'
    """

    name: str
    models: tuple[str, ...]
    designs: tuple[Design, ...]
    simulations: int | str
    seed: int
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    thin: int | str = "auto"
    simulate_model: str | None = None
    output: str | None = None
    batch_size: int | None = None
    scheduler: str | None = None
    workers: int | None = None
    threads: int | None = None  # fit in this many threads of this process instead of workers
    base_dir: str = "."  # directory of the study file; model paths are relative to it
    description: str = ""
    cluster: ClusterSpec | None = None
    # fitter parameter -> the simulate_model parameter it estimates ([parameter_map]);
    # parameters not listed pair by name
    parameter_map: tuple[tuple[str, str], ...] = ()
    max_simulations: int | None = None  # with simulations = "auto"
    sequential: Any = None  # sbc.stopping.Sequential after validation; None: fixed n

    def __post_init__(self):
        _validate(self)

    @classmethod
    def from_toml(cls, path: str | Path, *, simulations: int | str | None = None,
                  max_simulations: int | None = None) -> Study:
        """Read and validate a study file; ``simulations`` overrides its ``simulations`` (a
        count or "auto") and ``max_simulations`` its ``max_simulations``."""
        return load_study(path, sims=simulations, max_sims=max_simulations, cli=False)

    def fingerprint(self, model_sources: dict[str, str]) -> str:
        """Hash of everything that changes results (not the number of simulations,
        output, workers, scheduler or the per-fit timeout: those may change between
        resumes), the numerics included (:func:`sbc.numerics.numerics`)."""
        payload = {
            "models": list(self.models),
            "simulate_model": self.simulate_model,
            "designs": [d.label for d in self.designs],
            "observed_data": [d.digest for d in self.designs if hasattr(d, "digest")],
            "seed": self.seed,
            "sampler": self.sampler.fingerprint_dict(),
            "thin": self.thin,
            "model_sources": {k: hashlib.sha256(v.encode()).hexdigest()
                              for k, v in sorted(model_sources.items())},
        }
        if self.parameter_map:  # only when given: fingerprints of older studies stay valid
            payload["parameter_map"] = [list(p) for p in self.parameter_map]
        return fingerprint(payload)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["designs"] = [d.label for d in self.designs]
        out["models"] = list(self.models)
        if self.parameter_map:  # as JSON reads it back; absent when empty, as in older stores
            out["parameter_map"] = [list(p) for p in self.parameter_map]
        else:
            del out["parameter_map"]
        return out


_HERE = Path("Study")  # how messages name a study built in Python


def _validate(study: Study) -> None:
    """Check and normalize the fields of a :class:`Study` (frozen: set through object)."""
    def put(name, value):
        object.__setattr__(study, name, value)

    check_path_name(study.name, "Study name", f"use e.g. name={safe_name(str(study.name))!r}")
    models = (study.models,) if isinstance(study.models, str) else study.models
    if not isinstance(models, (list, tuple)) or not models or \
            not all(isinstance(m, str) and m for m in models):
        raise StudyError(f"Study models must be a model name or a list of names, got "
                         f"{study.models!r}; write e.g. models=[\"crispr_screen\"]")
    if len(set(models)) != len(models):
        raise StudyError(f"Study models lists a model twice: {list(models)}")
    put("models", tuple(models))
    if study.simulate_model is not None and (not isinstance(study.simulate_model, str)
                                             or not study.simulate_model):
        raise StudyError(f"Study simulate_model must be a model name, got "
                         f"{study.simulate_model!r}")
    designs = study.designs
    if isinstance(designs, (Design, str)) or (isinstance(designs, tuple) and designs
                                              and isinstance(designs[0], int)):
        designs = [designs]
    if not isinstance(designs, (list, tuple)) or not designs:
        raise StudyError(f"Study designs must be a non-empty list of designs, got {designs!r}; "
                         "write e.g. designs=[(10, 3, 3)] (cell lines, genes, replicates)")
    put("designs", tuple(_design(d) for d in designs))
    for key, value in zip(("simulations", "max_simulations", "sequential"), stopping.normalize(
            study.simulations, study.max_simulations, study.sequential)):
        put(key, value)
    put("seed", parse_seed(study.seed, _HERE))
    sampler = study.sampler
    if isinstance(sampler, str):
        sampler = {"name": sampler}
    if isinstance(sampler, dict):
        sampler = _parse_sampler(sampler, _HERE)
    if not isinstance(sampler, SamplerSettings):
        raise StudyError(f"Study sampler must be a sampler name, a dict of [sampler] keys or "
                         f"SamplerSettings, got {sampler!r}")
    put("sampler", sampler)
    put("thin", parse_thin(study.thin, _HERE, sampler.chains, sampler.draws))
    for key, minimum in (("batch_size", 1), ("workers", 0), ("threads", 1)):
        if getattr(study, key) is not None:
            positive_int(getattr(study, key), _HERE, key, minimum)
    mapping = study.parameter_map
    if isinstance(mapping, (list, tuple)):  # pairs, as stored: a dict for the one checker
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in mapping):
            raise StudyError(f"Study parameter_map must be a dict fitter name -> generator "
                             f"name, got {mapping!r}")
        mapping = dict(mapping) if mapping else None
    put("parameter_map", _parse_parameter_map(mapping, study.simulate_model, _HERE))
    if not isinstance(study.base_dir, (str, Path)):
        raise StudyError(f"Study base_dir must be a folder (str or Path), got {study.base_dir!r}")
    put("base_dir", str(Path(study.base_dir).resolve()))


def _design(value) -> Design:
    """A design from a Design, a (cell_lines, genes, reps) tuple or a "10x3x3" label."""
    if isinstance(value, Design) or hasattr(value, "csv_text"):  # posterior SBC designs too
        return value
    try:
        if isinstance(value, str):
            return Design.from_label(value)
        if isinstance(value, (list, tuple)) and len(value) == 3:
            return Design(*value)
    except ValueError as exc:
        raise StudyError(f"Study design {value!r}: {exc}") from None
    raise StudyError(f"Study design {value!r} is not a design; write (cell_lines, genes, reps), "
                     "e.g. (10, 3, 3), or \"10x3x3\"")


def load_study(path: str | Path, *, sims: int | str | None = None,
               max_sims: int | None = None, cli: bool = True) -> Study:
    """Read and validate a study file; ``sims`` overrides ``simulations`` (a count or
    "auto") and ``max_sims`` its ``max_simulations``.  ``cli``: messages about ``sims`` and
    ``max_sims`` name them as the options ``--sims`` and ``--max-sims`` (else as the Python
    arguments ``simulations=`` and ``max_simulations=``), never as keys of the file."""
    path = Path(path)
    raw = read_toml(path)
    return parse_study(raw, path, sims=sims, max_sims=max_sims, cli=cli)


def override_names(cli: bool) -> tuple[str, str]:
    """How messages name the overrides of simulations and max_simulations."""
    return ("--sims", "--max-sims") if cli else ("simulations=", "max_simulations=")


def shown(name: str, value) -> str:
    """``--max-sims 5`` (an option) or ``max_simulations=5`` (a Python argument)."""
    return f"{name}{value!r}" if name.endswith("=") else f"{name} {value}"


def _override(value, name: str, minimum: int, what: str, auto: bool = False, why: str = ""):
    """A count given on the command line or as an argument, refused naming it (not the
    study file): a whole number >= ``minimum`` (or "auto" where ``auto``)."""
    if auto and value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        also = ' or "auto" (stop when the verdict is reached)' if auto else ""
        raise StudyError(f"{shown(name, value)}: {what} must be a whole number >= {minimum}"
                         f"{also}{why}; give e.g. {shown(name, max(minimum, 100))}")
    return value


def check_overrides(sims, max_sims, cli: bool = True) -> tuple:
    """``sims`` (a count or "auto") and ``max_sims`` as given on the command line (``cli``)
    or to :func:`sbc.run`, checked; a bad one is refused naming the option or argument."""
    names = override_names(cli)
    if sims is not None:
        sims = _override(sims, names[0], 1, "the simulations per model and design", auto=True)
    if max_sims is not None:
        max_sims = _override(max_sims, names[1], sequential.SMALLEST,
                             "the most simulations per model and design of a sequential "
                             "study", why=" (fewer cannot reach a verdict)")
    return sims, max_sims


def parse_study(raw: dict, path: Path, *, sims: int | str | None = None,
                max_sims: int | None = None, cli: bool = True) -> Study:
    names = override_names(cli)
    sims, max_sims = check_overrides(sims, max_sims, cli)

    unknown_keys(raw, TOP_KEYS, path, "")
    limits = parse_limits(raw, path)
    name = parse_name(raw, path)

    if "model" in raw and "models" in raw:
        raise StudyError(f"{path}: give either 'model' or 'models', not both")
    models = raw.get("models", raw.get("model"))
    if models is None:
        raise StudyError(f"{path}: missing key 'model'; write e.g. model = \"crispr_screen\" "
                         "(a file in models/) or model = \"path/to/file.py:function\"")
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise StudyError(f"{where(path, 'models')} must be a model name or a list of names, got {models!r}")
    if len(set(models)) != len(models):
        raise StudyError(f"{where(path, 'models')} lists a model twice: {models}")
    simulate_model = raw.get("simulate_model")
    if simulate_model is not None and (not isinstance(simulate_model, str) or not simulate_model):
        raise StudyError(f"{where(path, 'simulate_model')} must be a model name, got {simulate_model!r}")

    seed = raw.get("seed")
    if seed is None:
        raise StudyError(f"{path}: missing key 'seed'; write e.g. seed = 103 "
                         "(results are reproducible from it)")
    seed = parse_seed(seed, path)

    n_sims = raw.get("simulations")
    if sims is not None:
        n_sims = sims
    if n_sims is None:
        raise StudyError(f"{path}: missing key 'simulations' (replicates per design); "
                         "write e.g. simulations = 100")
    settings = stopping.from_file(raw, path, n_sims, sims, max_sims, cli=cli)
    n_sims = positive_int(settings.max_simulations if settings else n_sims, path, "simulations")
    if settings is not None:  # the limit applies to max_simulations: name where it came from
        source = (f"{shown(names[1], n_sims)} (for {path})" if max_sims is not None
                  else f"{where(path, 'max_simulations')} = {n_sims}")
    else:
        source = (f"{where(path, 'simulations')} = {n_sims}" if sims is None else
                  f"{shown(names[0], n_sims)} (for {path})")
    check_limit(n_sims, limits, "simulations", source)

    designs = _parse_posterior(raw, path) if "posterior_sbc" in raw else \
        _parse_designs(raw, path, limits)
    for design in designs:
        check_limit(design.n_rows, limits, "rows",
                    f"{path}: design {design.label} has {design.n_rows:,} rows, which")
    sampler = _parse_sampler(raw.get("sampler", {}), path)
    thin = parse_thin(raw.get("thin", AUTO), path, sampler.chains, sampler.draws)

    run = parse_run(raw.get("run", {}), path, RUN_KEYS)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise StudyError(f"{where(path, 'description')} must be a string")

    cluster = _parse_cluster(raw["cluster"], path, run) if "cluster" in raw else None
    parameter_map = _parse_parameter_map(raw.get("parameter_map"), simulate_model, path)

    return Study(name=name.strip(), models=tuple(models), designs=tuple(designs),
                 simulations=n_sims, seed=seed, sampler=sampler, thin=thin,
                 simulate_model=simulate_model, output=run["output"],
                 batch_size=run["batch_size"], scheduler=run["scheduler"], workers=run["workers"],
                 threads=run["threads"],
                 base_dir=str(path.resolve().parent), description=description, cluster=cluster,
                 parameter_map=parameter_map, sequential=settings)


def parse_name(raw: dict, path: Path) -> str:
    """The ``name`` of a study or plan file (default: the file's stem): the default output
    directory reports/NAME, so it must be a safe path component (:func:`check_path_name`)."""
    if "name" not in raw:
        return check_path_name(path.stem, f"{path}: the name taken from the file name",
                               f"add e.g. name = \"{safe_name(path.stem)}\" to the file, "
                               "or rename the file")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise StudyError(f"{where(path, 'name')} must be a non-empty string, got {name!r}; "
                         f"write e.g. name = \"{safe_name(path.stem)}\"")
    name = name.strip()
    return check_path_name(name, f"{where(path, 'name')} =",
                           f"write e.g. name = \"{safe_name(name)}\" (choose where results "
                           "go with [run] output or --out)")


def _parse_parameter_map(table: Any, simulate_model: str | None,
                         path: Path) -> tuple[tuple[str, str], ...]:
    """[parameter_map] fitter_name = "generator_name": which simulate_model parameter a
    fitter parameter estimates.  Names are checked against the models when they are built
    (sbc.pipeline.check_models_build); here only the form."""
    if table is None:
        return ()
    example = '[parameter_map] "1|gene" = "gene_effect"  (fitter name = "generator name")'
    if not isinstance(table, dict):
        raise StudyError(f"{where(path, 'parameter_map')} must be a table: {example}")
    if simulate_model is None:
        raise StudyError(f"{where(path, 'parameter_map')}: a parameter map pairs the "
                         "parameters of a different generator (simulate_model) with the "
                         "fitter's; without simulate_model both are the same model, so "
                         "remove [parameter_map]")
    targets: dict[str, str] = {}
    for fit_name, gen_name in table.items():
        if not isinstance(gen_name, str) or not gen_name:
            raise StudyError(f"{where(path, 'parameter_map.' + fit_name)} must be the name "
                             f"of a simulate_model parameter (a string), got {gen_name!r}; "
                             f"write e.g. {example}")
        if gen_name in targets:
            raise StudyError(f"{path}: [parameter_map] maps both '{targets[gen_name]}' and "
                             f"'{fit_name}' to '{gen_name}'; each generator parameter is "
                             "estimated by one fitter parameter")
        targets[gen_name] = fit_name
    return tuple(sorted(table.items()))


def _parse_cluster(table: Any, path: Path, run: dict | None = None) -> ClusterSpec:
    """The [cluster] table; ``run``: the file's parsed [run], whose scheduler, workers and
    threads a SLURM cluster would silently override (refused)."""
    if not isinstance(table, dict):
        raise StudyError(f"{where(path, 'cluster')} must be a table: [cluster] kind = \"slurm\"")
    kind = table.get("kind", "local")
    if kind not in CLUSTER_KINDS:
        raise StudyError(f"{where(path, 'cluster.kind')}: unknown cluster kind {kind!r}; "
                         f"choose one of {', '.join(CLUSTER_KINDS)}")
    allowed = {"kind", "jobs"} | (SLURM_KEYS if kind == "slurm" else set())
    unknown_keys(table, allowed, path, "cluster.")
    if kind == "slurm" and run:
        check_where_fits_run(path, ['[cluster] kind = "slurm"'] + [
            f"run.{k}" for k in ("scheduler", "workers", "threads") if run.get(k) is not None])
    jobs = positive_int(table.get("jobs", 1), path, "cluster.jobs")
    options = {k: v for k, v in table.items() if k not in ("kind", "jobs")}
    for key in ("cores", "processes"):
        if key in options:
            positive_int(options[key], path, f"cluster.{key}")
    for key in ("queue", "account", "memory", "walltime", "python", "interface",
                "local_directory", "log_directory"):
        if key in options and not isinstance(options[key], str):
            raise StudyError(f"{where(path, 'cluster.' + key)} must be a string")
    if "walltime" in options and not re.fullmatch(r"(\d+-)?\d{1,2}:\d{2}(:\d{2})?", options["walltime"]):
        raise StudyError(f"{where(path, 'cluster.walltime')} = {options['walltime']!r} is not a "
                         "SLURM time; write e.g. \"04:00:00\" or \"1-00:00:00\"")
    if "memory" in options and not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", options["memory"]):
        raise StudyError(f"{where(path, 'cluster.memory')} = {options['memory']!r}; write e.g. \"16GB\"")
    for key in ("job_extra_directives", "job_script_prologue"):
        if key in options and not (isinstance(options[key], list)
                                   and all(isinstance(x, str) for x in options[key])):
            raise StudyError(f"{where(path, 'cluster.' + key)} must be a list of strings")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return ClusterSpec(kind=kind, jobs=jobs, options=tuple(sorted(options.items())))


def _parse_posterior(raw: dict, path: Path) -> list:
    """[posterior_sbc] data = "observed.csv" (any format ``sbc.read_screen`` recognises),
    optionally ``samples`` (a count table's sheet) and ``genes`` / ``cell_lines`` (the first
    N in sorted order): the design is the observed data set's."""
    table = raw["posterior_sbc"]
    if not isinstance(table, dict):
        raise StudyError(f"{where(path, 'posterior_sbc')} must be a table: "
                         "[posterior_sbc] data = \"observed.csv\"")
    unknown_keys(table, {"data", "samples", "genes", "cell_lines"}, path, "posterior_sbc.")
    if "grid" in raw or "designs" in raw:
        raise StudyError(f"{path}: [posterior_sbc] takes its design from the observed data; "
                         "remove [grid] / [[designs]]")
    data = table.get("data")
    if not isinstance(data, str) or not data:
        raise StudyError(f"{where(path, 'posterior_sbc.data')} must be the path of a data file: "
                         "a CSV with columns logfc, gene, cell_line, a gene-effect matrix or a "
                         "MAGeCK count table")
    base = path.resolve().parent
    csv = Path(data) if Path(data).is_absolute() else base / data
    samples = table.get("samples")
    if samples is not None and (not isinstance(samples, str) or not samples):
        raise StudyError(f"{where(path, 'posterior_sbc.samples')} must be the path of a sample "
                         "sheet")
    if samples is not None and not Path(samples).is_absolute():
        samples = base / samples
    subset = {k: positive_int(table[k], path, f"posterior_sbc.{k}")
              for k in ("genes", "cell_lines") if k in table}
    return [posterior_design(csv, samples=samples, **subset)]


def _parse_designs(raw: dict, path: Path, limits: dict[str, int] | None = None) -> list[Design]:
    limits = limits or LIMITS
    designs: list[Design] = []
    if "grid" in raw:
        grid = raw["grid"]
        if not isinstance(grid, dict):
            raise StudyError(f"{where(path, 'grid')} must be a table: "
                             "[grid] cell_lines = [10, 20] genes = [3] reps = [3]")
        unknown_keys(grid, GRID_KEYS, path, "grid.")
        missing = GRID_KEYS - set(grid)
        if missing:
            raise StudyError(f"{path}: [grid] lacks {', '.join(sorted(missing))}; "
                             "give all of cell_lines, genes and reps")
        lists = [int_list(grid[k], path, f"grid.{k}") for k in ("cell_lines", "genes", "reps")]
        check_limit(math.prod(len(set(v)) for v in lists), limits, "designs",
                    f"{path}: [grid] = {' x '.join(str(len(set(v))) for v in lists)} designs, "
                    "which")
        designs += [Design(c, g, r) for c in lists[0] for g in lists[1] for r in lists[2]]
    if "designs" in raw:
        entries = raw["designs"]
        if not isinstance(entries, list):
            raise StudyError(f"{where(path, 'designs')} must be an array of tables: "
                             "[[designs]] cell_lines = 10 genes = 3 reps = 3")
        for i, entry in enumerate(entries):
            key = f"designs[{i}]"
            if isinstance(entry, list) and len(entry) == 3:
                entry = dict(zip(("cell_lines", "genes", "reps"), entry))
            if not isinstance(entry, dict):
                raise StudyError(f"{where(path, key)} must be a table with cell_lines, genes, reps "
                                 f"or a list [cell_lines, genes, reps], got {entry!r}")
            unknown_keys(entry, DESIGN_KEYS, path, f"{key}.")
            missing = DESIGN_KEYS - set(entry)
            if missing:
                raise StudyError(f"{path}: {key} lacks {', '.join(sorted(missing))}")
            designs.append(Design(*(positive_int(entry[k], path, f"{key}.{k}")
                                    for k in ("cell_lines", "genes", "reps"))))
    if not designs:
        raise StudyError(f"{path}: the design grid is empty; add [grid] with cell_lines, genes "
                         "and reps lists, or [[designs]] entries")
    unique = list(dict.fromkeys(designs))
    check_limit(len(unique), limits, "designs", f"{path}: {len(unique):,} designs, which")
    return unique


def _parse_sampler(table: Any, path: Path) -> SamplerSettings:
    if not isinstance(table, dict):
        raise StudyError(f"{where(path, 'sampler')} must be a table ([sampler])")
    unknown_keys(table, SAMPLER_KEYS, path, "sampler.")
    name = table.get("name", "nutpie")
    if name not in sampler_names():
        guess = difflib.get_close_matches(str(name), sampler_names(), n=1)
        hint = f"did you mean '{guess[0]}'? " if guess else ""
        raise StudyError(f"{where(path, 'sampler.name')}: unknown sampler {name!r}; {hint}"
                         f"choose one of {', '.join(sampler_names())}")
    d = SamplerSettings()  # defaults in one place
    chains = positive_int(table.get("chains", d.chains), path, "sampler.chains")
    tune = positive_int(table.get("tune", d.tune), path, "sampler.tune", minimum=0)
    draws = positive_int(table.get("draws", d.draws), path, "sampler.draws", minimum=10)
    target = table.get("target_accept", d.target_accept)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise StudyError(f"{where(path, 'sampler.target_accept')} must be a number strictly "
                         f"between 0 and 1, got {target!r}; typical values are 0.8 to 0.99")
    depth = positive_int(table.get("max_treedepth", d.max_treedepth), path,
                          "sampler.max_treedepth")
    timeout = table.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout <= MAX_TIMEOUT):  # also refuses nan and inf
        raise StudyError(f"{where(path, 'sampler.timeout')} must be a positive number of "
                         f"seconds, at most {MAX_TIMEOUT:g} (a week), got {timeout!r}; leave it "
                         "out for no limit")
    adaptation = table.get("adaptation", d.adaptation)
    if adaptation not in ADAPTATIONS:
        raise StudyError(f"{where(path, 'sampler.adaptation')}: unknown adaptation "
                         f"{adaptation!r}; choose one of {', '.join(ADAPTATIONS)} (nutpie's "
                         "mass-matrix adaptation; low_rank also learns posterior correlations)")
    rescue = table.get("rescue", d.rescue)
    if not isinstance(rescue, bool):
        raise StudyError(f"{where(path, 'sampler.rescue')} must be true or false, got "
                         f"{rescue!r}")
    gamma = table.get("mass_matrix_gamma")
    gamma = "auto" if gamma is None else gamma  # None: how a stored study says "auto"
    if gamma != "auto" and (isinstance(gamma, bool) or not isinstance(gamma, (int, float))
                            or not 0 < gamma < 1):
        raise StudyError(f"{where(path, 'sampler.mass_matrix_gamma')} must be \"auto\" or a "
                         f"number strictly between 0 and 1, got {gamma!r} (the regularisation "
                         "of the low-rank mass matrix; auto: 1e-3 for models of 100 or more "
                         "dimensions, else nutpie's 1e-5)")
    return SamplerSettings(name=name, chains=chains, tune=tune, draws=draws,
                           target_accept=float(target), max_treedepth=depth,
                           timeout=float(timeout) if timeout is not None else None,
                           adaptation=adaptation, rescue=rescue,
                           mass_matrix_gamma=None if gamma == "auto" else float(gamma))
