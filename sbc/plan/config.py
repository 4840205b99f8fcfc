"""The plan file: its dataclasses (:class:`Plan`, :class:`Target`, :class:`CostModel`,
:class:`SearchSettings`, :class:`Pilot`; :class:`PlanBase` and :class:`CostParts`, which a
genome plan shares) and its parser, which validates every key the way study files are
validated (unknown keys with did-you-mean, ranges, limits), naming the file, the key and the
fix."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbc.design import Design
from sbc.errors import StudyError
from sbc.plan.criteria import CRITERIA, INTERVALS, Target, element_name, split_quantity
from sbc.config import (AUTO, check_limit, parse_limits, parse_run, parse_seed, parse_thin,
                        positive_int, read_toml, unknown_keys)
from sbc.sampling import SamplerSettings
from sbc.study import ClusterSpec, _parse_cluster, _parse_sampler, parse_name

DIMENSIONS = ("cell_lines", "genes", "reps")
TOP_KEYS = {"name", "description", "seed", "model", "design_model", "pilot", "space", "target",
            "targets", "probability", "cost", "search", "sampler", "thin", "run", "limits",
            "cluster"}
TARGET_KEYS = {"quantity", "criterion", "below", "above", "threshold", "side", "level", "over",
               "label"}
SPACE_KEYS = {"cell_lines", "genes", "reps", "monotone"}
COST_KEYS = {"fixed", "per_cell_line", "per_gene", "per_replicate", "per_screen",
             "per_measurement", "unit"}
SEARCH_KEYS = {"strategy", "batch", "max_simulations", "confidence", "runners_up",
               "calibration_simulations", "alpha", "max_minutes_per_design", "max_flagged"}
PILOT_KEYS = {"data", "csv", "samples", "draws", "tune", "chains", "widen"}
RUN_KEYS = {"output", "scheduler", "workers", "batch_size"}


@dataclass(frozen=True)
class CostParts:
    """The cost parts both kinds of plan share (keyword arguments only): fixed, per cell line,
    per screen (one cell line screened once), and the unit they are stated in."""

    fixed: float = 0.0
    per_cell_line: float = 0.0
    per_screen: float = 0.0
    unit: str = ""


@dataclass(frozen=True)
class CostModel(CostParts):
    """Cost of a design: fixed + per cell line + per gene + per replicate + per screen
    (one cell line screened once: cell lines x replicates) + per measurement (every row)."""

    per_gene: float = 0.0
    per_replicate: float = 0.0
    per_measurement: float = 0.0

    def __call__(self, d: Design) -> float:
        return (self.fixed + self.per_cell_line * d.n_cell_lines + self.per_gene * d.n_genes
                + self.per_replicate * d.n_reps + self.per_screen * d.n_cell_lines * d.n_reps
                + self.per_measurement * d.n_rows)


@dataclass(frozen=True)
class SearchSettings:
    strategy: str = "adaptive"  # or "grid": every design at max_simulations (for checking)
    batch: int = 20  # simulations per look at one design
    max_simulations: int = 100  # per design
    confidence: float = 0.95  # Wilson interval used for stopping and reported
    runners_up: int = 2  # designs evaluated after the recommendation is found
    calibration_simulations: int = 40  # analysis-prior fits per design (separate design prior)
    alpha: float = 0.01  # family-wise level of the calibration test, per design
    max_minutes_per_design: float = 20.0  # projected wall time above which a design is refused
    max_flagged: float = 0.1  # share of failed/flagged fits above which a design is unreliable


@dataclass(frozen=True)
class Pilot:
    """``[pilot]``: a pilot screen fitted once with the analysis model.  ``data``: any file
    :func:`sbc.readers.read_screen` reads (a long logfc CSV, a gene-effect matrix, a MAGeCK
    count table; ``csv`` is the older name of the key); ``samples``: a count table's sample
    sheet.  Paths relative to the plan file."""

    data: str
    samples: str | None = None
    draws: int = 1000
    tune: int = 1000
    chains: int = 2
    widen: float = 1.0  # design prior sd = widen x posterior sd (1 = the pilot's posterior)
    key: str = "data"  # the key the plan file used ("data" or its older name "csv")


@dataclass(frozen=True, kw_only=True)
class PlanBase:
    """What both kinds of plan (:class:`Plan`, :class:`sbc.plan.genome_config.GenomePlan`)
    hold besides their model, space, cost and search: name and seed, the targets (each
    kind's own) and the probability a design must meet them with, where the plan writes and
    runs ([run], [cluster]), the folder its paths are read against and its description.
    Keyword arguments only."""

    name: str
    seed: int
    targets: tuple
    probability: float
    output: str | None = None
    scheduler: str | None = None
    workers: int | None = None
    cluster: ClusterSpec | None = None
    base_dir: str = "."
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plan.json stores it and the plan's fingerprint hashes it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Plan(PlanBase):
    model: str
    cell_lines: tuple[int, ...]
    genes: tuple[int, ...]
    reps: tuple[int, ...]
    monotone: tuple[str, ...] = ("cell_lines", "reps")
    design_model: str | None = None
    pilot: Pilot | None = None
    cost: CostModel = field(default_factory=CostModel)
    search: SearchSettings = field(default_factory=SearchSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    thin: int | str = "auto"
    batch_size: int | None = None

    def designs(self) -> list[Design]:
        """Every design of the space, cheapest first (ties: fewer rows first)."""
        grid = [Design(c, g, r) for c in self.cell_lines for g in self.genes for r in self.reps]
        return sorted(grid, key=lambda d: (self.cost(d), d.n_rows, d.label))

    @classmethod
    def from_toml(cls, path: str | Path) -> Plan:
        """Read and validate a plan file (TOML)."""
        return load_plan(path)


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (TOML)."""
    path = Path(path)
    return parse_plan(read_toml(path, "plan file"), path)


def parse_plan_base(raw: dict, path: Path, run_keys: set[str]) -> dict[str, Any]:
    """The :class:`PlanBase` fields of a plan file but its targets and probability (which each
    kind of plan parses its own way): name, seed, [run] (``run_keys``: its keys, with
    ``batch_size`` where the kind of plan has one), [cluster], description and the folder
    its paths are read against, as keyword arguments for either kind of plan."""
    name = parse_name(raw, path)
    if "seed" not in raw:
        raise StudyError(f"{path}: missing key 'seed'; write e.g. seed = 2024 (the plan is "
                         "reproducible from it)")
    seed = parse_seed(raw["seed"], path)
    run = parse_run(raw.get("run", {}), path, run_keys)
    cluster = _parse_cluster(raw["cluster"], path, run) if "cluster" in raw else None
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise StudyError(f"{path}: key 'description' must be a string, got {description!r}")
    return {"name": name.strip(), "seed": seed, **run, "cluster": cluster,
            "base_dir": str(path.resolve().parent), "description": description}


def parse_search(raw: dict, path: Path, allowed: set[str], limits: dict[str, int], *,
                 batch: int = 20, max_simulations: int = 100) -> SearchSettings:
    """A plan file's [search] table, either kind: ``allowed`` its keys (a genome plan has no
    calibration fits, time limit or flagged share), ``batch`` and ``max_simulations`` the
    kind's defaults; the simulations per design within ``limits``."""
    s = _table(raw, "search", path, allowed)
    strategy = s.get("strategy", "adaptive")
    if strategy not in ("adaptive", "grid"):
        raise StudyError(f"{path}: key 'search.strategy' must be \"adaptive\" or \"grid\", "
                         f"got {strategy!r}")
    search = SearchSettings(
        strategy=strategy,
        batch=positive_int(s.get("batch", batch), path, "search.batch"),
        max_simulations=positive_int(s.get("max_simulations", max_simulations), path,
                                      "search.max_simulations"),
        confidence=_number(s.get("confidence", 0.95), path, "search.confidence", 0.5, 0.999),
        runners_up=positive_int(s.get("runners_up", 2), path, "search.runners_up", 0),
        calibration_simulations=positive_int(s.get("calibration_simulations", 40), path,
                                              "search.calibration_simulations", 0),
        alpha=_number(s.get("alpha", 0.01), path, "search.alpha", 0.001, 0.5),
        max_minutes_per_design=_number(s.get("max_minutes_per_design", 20.0), path,
                                       "search.max_minutes_per_design", 0.01),
        max_flagged=_number(s.get("max_flagged", 0.1), path, "search.max_flagged", 0.0, 1.0))
    for key in ("max_simulations", "calibration_simulations"):
        if key in allowed:
            check_limit(getattr(search, key), limits, "simulations",
                        f"{path}: key 'search.{key}' = {getattr(search, key)}")
    if search.batch > search.max_simulations:
        raise StudyError(f"{path}: search.batch ({search.batch}) exceeds search.max_simulations "
                         f"({search.max_simulations}); lower the batch")
    return search


def _table(raw: dict, key: str, path: Path, allowed: set[str]) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise StudyError(f"{path}: key '{key}' must be a table ([{key}])")
    unknown_keys(value, allowed, path, f"{key}.")
    return value


def _one_of(value: Any, choices: Sequence[str], path: Path, key: str) -> str:
    """``value`` if it is one of ``choices``; else the key, a did-you-mean and the choices."""
    if value not in choices:
        guess = difflib.get_close_matches(str(value), choices, n=1)
        raise StudyError(f"{path}: '{key}' = {value!r} is unknown; "
                         + (f"did you mean '{guess[0]}'? " if guess else "")
                         + f"choose one of {', '.join(choices)}")
    return value


def _number(value: Any, path: Path, key: str, lo: float = -math.inf, hi: float = math.inf,
            example: str = "0.5") -> float:
    """A finite number in [lo, hi]: nan, inf and -inf (TOML's nan and inf) are refused, as
    is an integer too large for a float, since the plan is stored as strict JSON, which
    has none of them (a stored plan that held one could not be read back)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and isinstance(value, int) and abs(value) > 2**53:
        number = False  # not exact as a float (nor as a JSON number other readers read)
    if not number or not math.isfinite(value) or not lo <= value <= hi:
        bounds = (f" between {lo:g} and {hi:g}" if math.isfinite(lo) and math.isfinite(hi)
                  else f" >= {lo:g}" if math.isfinite(lo) else f" <= {hi:g}"
                  if math.isfinite(hi) else "")
        why = " (nan and inf cannot be stored)" if number and not math.isfinite(value) else ""
        raise StudyError(f"{path}: key '{key}' must be a finite number{bounds}, got "
                         f"{value!r}{why}; write e.g. {key.split('.')[-1]} = {example}")
    return float(value)


def _int_tuple(value: Any, path: Path, key: str, limits: dict[str, int]) -> tuple[int, ...]:
    """A dimension of the space: a list of positive integers or a range table
    ``{from = 2, to = 12, by = 2}`` (``by`` >= 1, ``to`` >= ``from``); a range with more
    values than ``limits["designs"]`` is refused before it is expanded."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, dict):  # a range table
        example = "{from = 2, to = 12, by = 2}"
        unknown_keys(value, {"from", "to", "by"}, path, f"{key}.")
        if "from" not in value or "to" not in value:
            raise StudyError(f"{path}: key '{key}' as a range needs integer 'from' and 'to' "
                             f"(and optionally 'by'), e.g. {key.split('.')[-1]} = {example}")
        start = positive_int(value["from"], path, f"{key}.from")
        stop = positive_int(value["to"], path, f"{key}.to")
        step = value.get("by", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise StudyError(f"{path}: key '{key}.by' (the step between values) must be an "
                             f"integer >= 1, got {step!r}; write e.g. {example}")
        if stop < start:
            raise StudyError(f"{path}: key '{key}' runs from {start} to {stop}, which is "
                             f"empty; 'to' must be at least 'from', e.g. {example}")
        values = range(start, stop + 1, step)
        check_limit(len(values), limits, "designs",
                    f"{path}: key '{key}' = {{from = {start}, to = {stop}, by = {step}}} has "
                    f"{len(values):,} values, which")
        value = list(values)
    if not isinstance(value, list) or not value:
        raise StudyError(f"{path}: key '{key}' must be a non-empty list of positive integers, "
                         f"got {value!r}; write e.g. {key.split('.')[-1]} = [2, 3, 4]")
    return tuple(sorted({positive_int(v, path, key) for v in value}))


def parse_plan(raw: dict, path: Path) -> Plan:
    """Validate a plan file's contents; every problem names the key and a fix.

    Resource limits (``sbc.study.LIMITS``) apply as in study files: at most 10,000 designs
    in the space (a range is counted before it is expanded), 10,000,000 rows in its largest
    design and 100,000 simulations per design (search.max_simulations,
    search.calibration_simulations); a ``[limits]`` table raises them.
    """
    unknown_keys(raw, TOP_KEYS, path, "")
    limits = parse_limits(raw, path)
    common = parse_plan_base(raw, path, RUN_KEYS)
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise StudyError(f"{path}: missing key 'model' (the analysis model that is fitted); "
                         "write e.g. model = \"crispr_plan\"")
    design_model = raw.get("design_model")
    if design_model is not None and (not isinstance(design_model, str) or not design_model):
        raise StudyError(f"{path}: key 'design_model' must be a model name or "
                         "'path/to/file.py:function'")
    pilot = None
    if "pilot" in raw:
        if design_model:
            raise StudyError(f"{path}: give either 'design_model' or [pilot], not both: the "
                             "pilot's posterior becomes the design prior")
        table = _table(raw, "pilot", path, PILOT_KEYS)
        if "data" in table and "csv" in table:
            raise StudyError(f"{path}: [pilot] gives both data and csv (csv is the older name "
                             "of data); keep one")
        key = "csv" if "csv" in table else "data"
        if not isinstance(table.get(key), str) or not table[key]:
            raise StudyError(f"{path}: [pilot] needs data = \"pilot.csv\": a long logfc CSV "
                             "(columns logfc, gene, cell_line and optionally replicate), a "
                             "gene-effect matrix (e.g. DepMap's CRISPRGeneEffect.csv) or a "
                             "MAGeCK count table with samples = \"sheet.csv\"")
        samples = table.get("samples")
        if samples is not None and (not isinstance(samples, str) or not samples):
            raise StudyError(f"{path}: key 'pilot.samples' must be the path of the count "
                             f"table's sample sheet, got {samples!r}")
        pilot = Pilot(data=table[key], samples=samples,
                      draws=positive_int(table.get("draws", 1000), path, "pilot.draws"),
                      tune=positive_int(table.get("tune", 1000), path, "pilot.tune"),
                      chains=positive_int(table.get("chains", 2), path, "pilot.chains"),
                      widen=_number(table.get("widen", 1.0), path, "pilot.widen", 1.0, 10.0),
                      key=key)

    space = _table(raw, "space", path, SPACE_KEYS)
    missing = [k for k in DIMENSIONS if k not in space]
    if missing:
        raise StudyError(f"{path}: [space] lacks {', '.join(missing)}; give lists for "
                         "cell_lines, genes and reps, e.g. reps = [2, 3, 4]")
    dims = {k: _int_tuple(space[k], path, f"space.{k}", limits) for k in DIMENSIONS}
    check_limit(math.prod(len(v) for v in dims.values()), limits, "designs",
                f"{path}: [space] has {' x '.join(str(len(dims[k])) for k in DIMENSIONS)} = "
                f"{math.prod(len(v) for v in dims.values()):,} designs, which")
    largest = Design(*(max(dims[k]) for k in DIMENSIONS))
    check_limit(largest.n_rows, limits, "rows", f"{path}: the largest design of [space], "
                f"{largest.label}, has {largest.n_rows:,} rows, which")
    monotone = space.get("monotone", ["cell_lines", "reps"])
    if not isinstance(monotone, list) or any(m not in DIMENSIONS for m in monotone):
        raise StudyError(f"{path}: key 'space.monotone' must list dimensions among "
                         f"{', '.join(DIMENSIONS)} (those in which a larger design never "
                         f"lowers the chance of success), got {monotone!r}")

    if "target" in raw and "targets" in raw:
        raise StudyError(f"{path}: give either [target] or [[targets]], not both")
    entries = raw.get("targets", [raw["target"]] if "target" in raw else None)
    if not entries or not isinstance(entries, list):
        raise StudyError(f"{path}: missing [target]; write e.g. [target] quantity = \"beta_g\" "
                         "criterion = \"width\" below = 0.5")
    targets = tuple(_parse_target(e, path, f"targets[{i}]" if "targets" in raw else "target")
                    for i, e in enumerate(entries))
    probability = _number(raw.get("probability", 0.8), path, "probability", 0.01, 0.99, "0.8")

    cost_raw = _table(raw, "cost", path, COST_KEYS)
    unit = cost_raw.get("unit", "")
    if not isinstance(unit, str):
        raise StudyError(f"{path}: key 'cost.unit' must be a string, got {unit!r}; write e.g. "
                         "unit = \"kUSD\"")
    cost = CostModel(**{k: _number(v, path, f"cost.{k}", 0.0) for k, v in cost_raw.items()
                        if k != "unit"}, unit=str(unit))
    if cost == CostModel(unit=str(unit)):  # no cost given: measurements are the cost
        cost = CostModel(per_measurement=1.0, unit=str(unit))

    search = parse_search(raw, path, SEARCH_KEYS, limits)

    sampler = _parse_sampler(raw.get("sampler", {}), path)
    thin = parse_thin(raw.get("thin", AUTO), path, sampler.chains, sampler.draws)
    return Plan(model=model, design_model=design_model, pilot=pilot, **dims,
                monotone=tuple(monotone), targets=targets, probability=probability, cost=cost,
                search=search, sampler=sampler, thin=thin, **common)


def _parse_target(entry: Any, path: Path, key: str) -> Target:
    if not isinstance(entry, dict):
        raise StudyError(f"{path}: '{key}' must be a table with quantity and criterion")
    unknown_keys(entry, TARGET_KEYS, path, f"{key}.")
    quantity = entry.get("quantity")
    if not isinstance(quantity, str) or not quantity.strip():
        raise StudyError(f"{path}: '{key}.quantity' must name a parameter of the model, e.g. "
                         "quantity = \"beta_g\" (every gene) or \"beta_g[0]\"")
    try:
        base, index = split_quantity(quantity)
    except ValueError as exc:
        raise StudyError(f"{path}: '{key}.quantity' = {quantity!r}: {exc}") from None
    quantity = element_name(base, index)  # the form stored names take: "b[0,1]"
    criterion = _one_of(entry.get("criterion"), CRITERIA, path, f"{key}.criterion")
    value_key = {"sd": "below", "width": "below", "excludes": "threshold",
                 "contraction": "above"}[criterion]
    if criterion != "excludes" and value_key not in entry:
        raise StudyError(f"{path}: '{key}' with criterion '{criterion}' needs "
                         f"{value_key} = NUMBER, e.g. {value_key} = "
                         f"{'0.8' if value_key == 'above' else '0.5'}")
    value = _number(entry.get(value_key, 0.0), path, f"{key}.{value_key}")
    if criterion in ("sd", "width") and value <= 0:
        raise StudyError(f"{path}: '{key}.below' must be positive, got {value}")
    level = _number(entry.get("level", 0.95), path, f"{key}.level", 0.0, 1.0, "0.95")
    if level not in INTERVALS:
        raise StudyError(f"{path}: '{key}.level' = {level} has no stored quantiles; choose one "
                         f"of {', '.join(str(v) for v in INTERVALS)}")
    side = entry.get("side", "either")
    if side not in ("either", "below", "above"):
        raise StudyError(f"{path}: '{key}.side' must be \"either\", \"below\" or \"above\"")
    over = entry.get("over", "each")
    if over not in ("each", "all"):
        raise StudyError(f"{path}: '{key}.over' must be \"each\" (share of elements meeting "
                         "the criterion) or \"all\" (every element must meet it)")
    label = entry.get("label", "")
    if not isinstance(label, str):
        raise StudyError(f"{path}: '{key}.label' must be a string (the target's description "
                         f"in the report), got {label!r}")
    return Target(quantity=quantity, criterion=criterion, value=value, level=level, side=side,
                  over=over, label=label)
