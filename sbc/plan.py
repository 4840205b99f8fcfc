"""Design-size planning: the cheapest screen that meets a precision or decision target.

    plan file -> candidate designs (cost order) -> sequential simulations per design
    -> target success per replicate (from stored posterior quantiles) -> Wilson interval
    -> stop when it clears the required probability -> SBC verdict -> recommendation

Every fit is an ordinary replicate record in a ``Store`` (OUT/replicates/...), written by the
same machinery as ``sbc run``; criteria are evaluated from the stored quantiles, so a
resumed plan walks the same path and refits nothing.  Two streams of replicates exist when
the design prior differs from the analysis prior: design-prior fits (for the probability of
success) and analysis-prior fits (for the calibration verdict, because ranks are uniform
only when truths come from the prior used to fit).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sbc import stats
from sbc.calibration import MIN_FITS
from sbc.design import Design
from sbc.errors import ModelError, StudyError
from sbc.study import (SamplerSettings, _parse_sampler, _positive_int, _unknown_keys,
                       check_limit, parse_limits, parse_name, parse_run, parse_seed, read_text,
                       read_toml)

CRITERIA = ("sd", "width", "excludes", "contraction")
LEVELS = {0.95: ("q0.025", "q0.975"), 0.9: ("q0.05", "q0.95"), 0.8: ("q0.1", "q0.9"),
          0.5: ("q0.25", "q0.75")}
DIMENSIONS = ("cell_lines", "genes", "reps")
TOP_KEYS = {"name", "description", "seed", "model", "design_model", "pilot", "space", "target",
            "targets", "probability", "cost", "search", "sampler", "thin", "run", "limits"}
TARGET_KEYS = {"quantity", "criterion", "below", "above", "threshold", "side", "level", "over",
               "label"}
SPACE_KEYS = {"cell_lines", "genes", "reps", "monotone"}
COST_KEYS = {"fixed", "per_cell_line", "per_gene", "per_replicate", "per_screen",
             "per_measurement", "unit"}
SEARCH_KEYS = {"strategy", "batch", "max_simulations", "confidence", "runners_up",
               "calibration_simulations", "alpha", "max_minutes_per_design", "max_flagged"}
PILOT_KEYS = {"csv", "draws", "tune", "chains", "widen"}
RUN_KEYS = {"output", "scheduler", "workers"}


# ---------------------------------------------------------------------------------------
# The plan file
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One criterion on one posterior quantity, evaluated per simulated screen.

    quantity: a parameter or deterministic of the analysis model (``beta_g``: every element;
    ``beta_g[3]``: one element).  criterion: ``sd`` / ``width`` (posterior sd or central
    interval width below ``value``), ``excludes`` (interval excludes ``value`` on ``side``),
    ``contraction`` (1 - posterior var / prior var above ``value``).  over: for vector
    quantities, ``each`` scores the fraction of elements meeting it, ``all`` needs every one.
    """

    quantity: str
    criterion: str
    value: float
    level: float = 0.95
    side: str = "either"
    over: str = "each"
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        q = self.quantity
        if self.criterion == "sd":
            text = f"posterior sd of {q} < {self.value:g}"
        elif self.criterion == "width":
            text = f"{self.level:.0%} interval width of {q} < {self.value:g}"
        elif self.criterion == "excludes":
            where = {"either": "excludes", "below": "lies below", "above": "lies above"}[self.side]
            text = f"{self.level:.0%} interval of {q} {where} {self.value:g}"
        else:
            text = f"contraction of {q} > {self.value:g}"
        return text + (f" ({self.over} element)" if "[" not in q else "")


@dataclass(frozen=True)
class CostModel:
    """Cost of a design: fixed + per cell line + per gene + per replicate + per screen
    (one cell line screened once: cell lines x replicates) + per measurement (every row)."""

    fixed: float = 0.0
    per_cell_line: float = 0.0
    per_gene: float = 0.0
    per_replicate: float = 0.0
    per_screen: float = 0.0
    per_measurement: float = 0.0
    unit: str = ""

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
    csv: str
    draws: int = 1000
    tune: int = 1000
    chains: int = 2
    widen: float = 1.0  # design prior sd = widen x posterior sd (1 = the pilot's posterior)


@dataclass(frozen=True)
class Plan:
    name: str
    seed: int
    model: str
    cell_lines: tuple[int, ...]
    genes: tuple[int, ...]
    reps: tuple[int, ...]
    targets: tuple[Target, ...]
    probability: float
    monotone: tuple[str, ...] = ("cell_lines", "reps")
    design_model: str | None = None
    pilot: Pilot | None = None
    cost: CostModel = field(default_factory=CostModel)
    search: SearchSettings = field(default_factory=SearchSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    thin: int | str = "auto"
    output: str | None = None
    scheduler: str | None = None
    workers: int | None = None
    base_dir: str = "."
    description: str = ""

    def designs(self) -> list[Design]:
        """Every design of the space, cheapest first (ties: fewer rows first)."""
        grid = [Design(c, g, r) for c in self.cell_lines for g in self.genes for r in self.reps]
        return sorted(grid, key=lambda d: (self.cost(d), d.n_rows, d.label))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (TOML)."""
    path = Path(path)
    return parse_plan(read_toml(path, "plan file"), path)


def _table(raw: dict, key: str, path: Path, allowed: set[str]) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise StudyError(f"{path}: key '{key}' must be a table ([{key}])")
    _unknown_keys(value, allowed, path, f"{key}.")
    return value


def _number(value: Any, path: Path, key: str, lo: float = -math.inf, hi: float = math.inf,
            example: str = "0.5") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        bounds = f" between {lo:g} and {hi:g}" if math.isfinite(lo) or math.isfinite(hi) else ""
        raise StudyError(f"{path}: key '{key}' must be a number{bounds}, got {value!r}; "
                         f"write e.g. {key.split('.')[-1]} = {example}")
    return float(value)


def _int_tuple(value: Any, path: Path, key: str, limits: dict[str, int]) -> tuple[int, ...]:
    """A dimension of the space: a list of positive integers or a range table
    ``{from = 2, to = 12, by = 2}`` (``by`` >= 1, ``to`` >= ``from``); a range with more
    values than ``limits["designs"]`` is refused before it is expanded."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, dict):  # a range table
        example = "{from = 2, to = 12, by = 2}"
        _unknown_keys(value, {"from", "to", "by"}, path, f"{key}.")
        if "from" not in value or "to" not in value:
            raise StudyError(f"{path}: key '{key}' as a range needs integer 'from' and 'to' "
                             f"(and optionally 'by'), e.g. {key.split('.')[-1]} = {example}")
        start = _positive_int(value["from"], path, f"{key}.from")
        stop = _positive_int(value["to"], path, f"{key}.to")
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
    return tuple(sorted({_positive_int(v, path, key) for v in value}))


def parse_plan(raw: dict, path: Path) -> Plan:
    """Validate a plan file's contents; every problem names the key and a fix.

    Resource limits (``sbc.study.LIMITS``) apply as in study files: at most 10,000 designs
    in the space (a range is counted before it is expanded), 10,000,000 rows in its largest
    design and 100,000 simulations per design (search.max_simulations,
    search.calibration_simulations); a ``[limits]`` table raises them.
    """
    _unknown_keys(raw, TOP_KEYS, path, "")
    limits = parse_limits(raw, path)
    name = parse_name(raw, path)
    if "seed" not in raw:
        raise StudyError(f"{path}: missing key 'seed'; write e.g. seed = 2024 (the plan is "
                         "reproducible from it)")
    seed = parse_seed(raw["seed"], path)
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
        if not isinstance(table.get("csv"), str):
            raise StudyError(f"{path}: [pilot] needs csv = \"pilot.csv\" (columns logfc, gene, "
                             "cell_line and optionally replicate)")
        pilot = Pilot(csv=table["csv"],
                      draws=_positive_int(table.get("draws", 1000), path, "pilot.draws"),
                      tune=_positive_int(table.get("tune", 1000), path, "pilot.tune"),
                      chains=_positive_int(table.get("chains", 2), path, "pilot.chains"),
                      widen=_number(table.get("widen", 1.0), path, "pilot.widen", 1.0, 10.0))

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

    s = _table(raw, "search", path, SEARCH_KEYS)
    strategy = s.get("strategy", "adaptive")
    if strategy not in ("adaptive", "grid"):
        raise StudyError(f"{path}: key 'search.strategy' must be \"adaptive\" or \"grid\", "
                         f"got {strategy!r}")
    search = SearchSettings(
        strategy=strategy,
        batch=_positive_int(s.get("batch", 20), path, "search.batch"),
        max_simulations=_positive_int(s.get("max_simulations", 100), path,
                                      "search.max_simulations"),
        confidence=_number(s.get("confidence", 0.95), path, "search.confidence", 0.5, 0.999),
        runners_up=_positive_int(s.get("runners_up", 2), path, "search.runners_up", 0),
        calibration_simulations=_positive_int(s.get("calibration_simulations", 40), path,
                                              "search.calibration_simulations", 0),
        alpha=_number(s.get("alpha", 0.01), path, "search.alpha", 0.001, 0.5),
        max_minutes_per_design=_number(s.get("max_minutes_per_design", 20.0), path,
                                       "search.max_minutes_per_design", 0.01),
        max_flagged=_number(s.get("max_flagged", 0.1), path, "search.max_flagged", 0.0, 1.0))
    for key in ("max_simulations", "calibration_simulations"):
        check_limit(getattr(search, key), limits, "simulations",
                    f"{path}: key 'search.{key}' = {getattr(search, key)}")
    if search.batch > search.max_simulations:
        raise StudyError(f"{path}: search.batch ({search.batch}) exceeds search.max_simulations "
                         f"({search.max_simulations}); lower the batch")

    sampler = _parse_sampler(raw.get("sampler", {}), path)
    thin = raw.get("thin", "auto")
    if thin != "auto":
        thin = _positive_int(thin, path, "thin")
    run = parse_run(raw.get("run", {}), path, RUN_KEYS)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise StudyError(f"{path}: key 'description' must be a string, got {description!r}")
    return Plan(name=name.strip(), seed=seed, model=model, design_model=design_model,
                pilot=pilot, **dims, monotone=tuple(monotone), targets=targets,
                probability=probability, cost=cost, search=search, sampler=sampler, thin=thin,
                output=run["output"], scheduler=run["scheduler"], workers=run["workers"],
                base_dir=str(path.resolve().parent), description=description)


def _parse_target(entry: Any, path: Path, key: str) -> Target:
    if not isinstance(entry, dict):
        raise StudyError(f"{path}: '{key}' must be a table with quantity and criterion")
    _unknown_keys(entry, TARGET_KEYS, path, f"{key}.")
    quantity = entry.get("quantity")
    if not isinstance(quantity, str) or not quantity.strip():
        raise StudyError(f"{path}: '{key}.quantity' must name a parameter of the model, e.g. "
                         "quantity = \"beta_g\" (every gene) or \"beta_g[0]\"")
    try:
        base, index = split_quantity(quantity)
    except ValueError as exc:
        raise StudyError(f"{path}: '{key}.quantity' = {quantity!r}: {exc}") from None
    quantity = element_name(base, index)  # the form stored names take: "b[0,1]"
    criterion = entry.get("criterion")
    if criterion not in CRITERIA:
        guess = difflib.get_close_matches(str(criterion), CRITERIA, n=1)
        raise StudyError(f"{path}: '{key}.criterion' = {criterion!r} is unknown; "
                         + (f"did you mean '{guess[0]}'? " if guess else "")
                         + f"choose one of {', '.join(CRITERIA)}")
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
    if level not in LEVELS:
        raise StudyError(f"{path}: '{key}.level' = {level} has no stored quantiles; choose one "
                         f"of {', '.join(str(v) for v in LEVELS)}")
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


def split_quantity(quantity: str) -> tuple[str, tuple[int, ...] | None]:
    """``"beta_g"`` -> ("beta_g", None); ``"beta_g[3]"`` -> ("beta_g", (3,));
    ``"b[1, 2]"`` -> ("b", (1, 2)).  ValueError (with the fix) for anything else."""
    text = quantity.strip()
    if "[" not in text and "]" not in text:
        return text, None
    match = re.fullmatch(r"([^\[\]]+?)\s*\[([^\[\]]*)\]", text)
    if match is None:
        raise ValueError("write a parameter name, or one element as name[i] (name[i,j] for a "
                         "matrix), e.g. \"beta_g[3]\"")
    parts = [p.strip() for p in match.group(2).split(",")]
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"the index [{match.group(2)}] must be non-negative integers "
                         "(0-based, e.g. \"beta_g[0]\" for the first element)")
    return match.group(1).strip(), tuple(int(p) for p in parts)


def element_name(base: str, index: tuple[int, ...] | None) -> str:
    """The stored name of a quantity: ``base`` or ``base[i,j]`` (``scalar_names`` form)."""
    return base if index is None else f"{base}[{','.join(map(str, index))}]"


# ---------------------------------------------------------------------------------------
# Criteria: from stored posterior summaries to success per replicate (pure functions)
# ---------------------------------------------------------------------------------------


def select_quantity(params: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """Rows of a parameters table that belong to ``quantity`` (a name or a whole group)."""
    if "[" in quantity:
        return params[params["name"] == quantity]
    return params[(params["group"] == quantity) & (params["kind"] == "parameter")]


def element_success(rows: pd.DataFrame, target: Target,
                    prior_sd: dict[str, float] | None = None) -> np.ndarray:
    """Per row (replicate x element): does the posterior meet the target?  Boolean array."""
    lo_col, hi_col = LEVELS[target.level]
    if target.criterion == "sd":
        return rows["sd"].to_numpy(float) < target.value
    if target.criterion == "width":
        return (rows[hi_col].to_numpy(float) - rows[lo_col].to_numpy(float)) < target.value
    if target.criterion == "excludes":
        below = rows[hi_col].to_numpy(float) < target.value
        above = rows[lo_col].to_numpy(float) > target.value
        return {"either": below | above, "below": below, "above": above}[target.side]
    return contraction(rows, prior_sd or {}) > target.value


def contraction(rows: pd.DataFrame, prior_sd: dict[str, float]) -> np.ndarray:
    """1 - posterior variance / prior variance per row; prior sd looked up by element name."""
    sd0 = rows["name"].map(prior_sd).to_numpy(float)
    return 1.0 - rows["sd"].to_numpy(float) ** 2 / sd0**2


def replicate_success(params: pd.DataFrame, reps: pd.DataFrame, targets: tuple[Target, ...],
                      prior_sd: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per replicate: score in [0, 1] per target and jointly.

    A vector target scored ``each`` gives the share of elements meeting it, ``all`` gives 0/1.
    The joint score is the product (each target must be met).  Failed fits score 0: a screen
    whose analysis fails has not met its target, and the count is reported next to it.
    """
    index = reps["rep"].to_numpy()
    out = pd.DataFrame({"rep": index, "ok": (reps["status"] == "ok").to_numpy()})
    joint = np.ones(len(out))
    for i, target in enumerate(targets):
        rows = select_quantity(params, target.quantity)
        hit = pd.Series(element_success(rows, target, prior_sd), index=rows.index)
        agg = hit.groupby(rows["rep"]).mean() if target.over == "each" else \
            hit.groupby(rows["rep"]).min().astype(float)
        score = out["rep"].map(agg).fillna(0.0).to_numpy(float)
        out[f"target{i}"] = score
        joint = joint * score
    out["success"] = joint
    return out


def success_interval(scores: np.ndarray, conf: float) -> tuple[float, float, float]:
    """(estimate, lower, upper) of the probability of success from per-replicate scores.

    Scores are 0/1 (or shares in [0, 1] for ``each`` targets, whose sum is treated as the
    success count: the elements of one screen are strongly dependent, so this is closer to
    the truth than counting each element as an independent trial).
    """
    n = len(scores)
    if n == 0:
        return math.nan, 0.0, 1.0
    k = float(np.sum(scores))
    lo, hi = stats.wilson_interval(k, n, conf)
    return k / n, float(lo), float(hi)


def decide(lower: float, upper: float, probability: float) -> str | None:
    """'pass' when the whole interval lies at or above the required probability, 'fail' when
    below it, None while it straddles it (simulate more)."""
    if lower >= probability:
        return "pass"
    if upper < probability:
        return "fail"
    return None


def dominated(a: Design, b: Design, monotone: tuple[str, ...]) -> bool:
    """Is ``a`` no larger than ``b`` in every monotone dimension and equal in the others?"""
    fields = {"cell_lines": "n_cell_lines", "genes": "n_genes", "reps": "n_reps"}
    for dim, attr in fields.items():
        x, y = getattr(a, attr), getattr(b, attr)
        if (dim in monotone and x > y) or (dim not in monotone and x != y):
            return False
    return True


def calibration_verdict(reps: pd.DataFrame, params: pd.DataFrame, alpha: float,
                        sampler=None) -> tuple[str, float, str]:
    """SBC verdict of one design from its stored fits: (verdict, smallest Holm-adjusted p,
    failing groups), from the one engine (:func:`sbc.calibration.calibrate`, family "cell":
    each design is judged on its own at level ``alpha``).  "calibrated" / "miscalibrated" /
    "not checked" are the engine's pass / fail / inconclusive."""
    from sbc.calibration import calibrate

    if params.empty or reps.empty:
        return "not checked", math.nan, ""
    cal = calibrate(reps, params, alpha=alpha, family="cell", sampler=sampler)
    (verdict,) = cal.verdicts.values()
    word = {"pass": "calibrated", "fail": "miscalibrated"}.get(verdict.status, "not checked")
    p = float(cal.groups["p_holm"].min()) if len(cal.groups) else math.nan
    return word, p, ", ".join(verdict.failing)


# ---------------------------------------------------------------------------------------
# Running: streams of replicates in a store
# ---------------------------------------------------------------------------------------


@dataclass
class DesignResult:
    """Everything known about one design of the space."""

    design: Design
    cost: float
    status: str = "not evaluated"  # pass | fail | inconclusive | inferred pass/fail | ...
    n: int = 0
    probability: float = math.nan
    lower: float = math.nan
    upper: float = math.nan
    per_target: list[float] = field(default_factory=list)
    posterior_sd: float = math.nan
    width: float = math.nan
    contraction: float = math.nan
    bias: float = math.nan
    rmse: float = math.nan
    failed: int = 0
    flagged: int = 0
    fit_seconds: float = math.nan
    calibration: str = "not checked"
    calibration_p: float = math.nan
    calibration_failing: str = ""
    calibration_n: int = 0
    note: str = ""

    def row(self) -> dict:
        d = self.design
        out = {"design": d.label, "cell_lines": d.n_cell_lines, "genes": d.n_genes,
               "reps": d.n_reps, "rows": d.n_rows, "cost": self.cost, "status": self.status,
               "simulations": self.n, "p_success": self.probability,
               "p_lower": self.lower, "p_upper": self.upper}
        for i, p in enumerate(self.per_target):
            out[f"p_target{i}"] = p
        out.update({"posterior_sd": self.posterior_sd, "width": self.width,
                    "contraction": self.contraction, "bias": self.bias, "rmse": self.rmse,
                    "failed_fits": self.failed, "flagged_fits": self.flagged,
                    "median_fit_seconds": self.fit_seconds, "calibration": self.calibration,
                    "calibration_p_holm": self.calibration_p,
                    "calibration_failing": self.calibration_failing,
                    "calibration_simulations": self.calibration_n, "note": self.note})
        return out


class Planner:
    """Runs the search; holds the store, the model references and the records in memory."""

    def __init__(self, plan: Plan, out: Path, workers: int | None, scheduler: str | None,
                 stream=None):
        self.plan, self.out = plan, Path(out)
        self.workers, self.scheduler = workers, scheduler
        self.stream = stream or sys.stderr
        self.records: dict[tuple[str, str, int], dict] = {}
        self.results = {d: DesignResult(d, plan.cost(d)) for d in plan.designs()}
        self.prior_sd: dict[Design, dict[str, float]] = {}
        self.new_fits = 0
        self.started = time.monotonic()

    # --- setup --------------------------------------------------------------------------
    def open(self) -> None:
        from sbc.pipeline import _versions
        from sbc.spec import resolve_model
        from sbc.store import Store

        plan = self.plan
        try:
            self.fit_ref = resolve_model(plan.model, plan.base_dir)
        except ModelError as exc:
            raise StudyError(f"plan '{plan.name}': {exc}") from exc
        design_ref = None
        pilot_digest = None
        if plan.design_model:
            design_ref = resolve_model(plan.design_model, plan.base_dir)
        elif plan.pilot:
            csv = Path(plan.base_dir) / plan.pilot.csv
            if not csv.is_file():
                raise StudyError(f"plan '{plan.name}': pilot csv {csv} not found; give a path "
                                 "relative to the plan file")
            pilot_frame(csv)  # a malformed pilot is refused before the store is touched
            pilot_digest = hashlib.sha256(csv.read_bytes()).hexdigest()[:16]
        self.check_targets(design_ref)
        sources = {"model": self.fit_ref.source,
                   "design_model": design_ref.source if design_ref else None,
                   "pilot": pilot_digest}
        plan_dict = plan.to_dict()
        for key in ("output", "scheduler", "workers", "description", "name", "base_dir"):
            plan_dict.pop(key, None)
        # The search settings change which replicates exist, not what any replicate is, so
        # they may change between resumes; the seed, models, sampler and thinning may not.
        fixed = {k: plan_dict[k] for k in ("seed", "model", "design_model", "pilot", "sampler",
                                            "thin")}
        fingerprint = hashlib.sha256(json.dumps({"plan": fixed, "sources": sources},
                                                sort_keys=True, default=str).encode()
                                     ).hexdigest()[:16]
        manifest = {"fingerprint": fingerprint, "kind": "plan",
                    "study": {**fixed, "name": plan.name, "models": [self.fit_ref.label],
                              "designs": [d.label for d in plan.designs()]},
                    "plan": plan.to_dict(),
                    "model_digests": {"model": self.fit_ref.digest,
                                      "design_model": design_ref.digest if design_ref else None,
                                      "pilot": pilot_digest},
                    "model_refs": {self.fit_ref.label: self.fit_ref.ref},
                    "versions": _versions(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.store = Store.open_for_run(self.out, manifest)
        if plan.pilot:
            design_ref = pilot_design_model(plan, self.fit_ref, self.store, self.stream)
        self.design_ref = design_ref
        # Label of the stream whose truths come from the design prior (= the analysis
        # stream when no separate design prior is given).
        if design_ref is None:
            self.power_ref = self.fit_ref
        else:
            self.power_ref = dataclasses.replace(
                self.fit_ref, label=f"{self.fit_ref.label}~{design_ref.label}")
        for record in self.store.iter_records(quarantine=True):
            self.records[(record["model"], record["design"], record["rep"])] = record

    def check_targets(self, design_ref) -> None:
        """Every target quantity must exist in the analysis model (and the design model),
        and an element (``beta_g[3]``) must exist on every design of the space.

        Checked on the smallest design (the space is a full grid, so it is smallest in every
        dimension and has the fewest elements) before anything is fitted: a target naming
        no stored scalar would otherwise score 0 on every design ("no design meets the
        target") instead of being refused.
        """
        from sbc.spec import make_spec, parameter_layouts

        smallest = min(self.plan.designs(), key=lambda d: d.n_rows)
        data = smallest.frame()
        specs = [("model", make_spec(self.fit_ref, data))]
        if design_ref is not None:
            specs.append(("design_model", make_spec(design_ref, data)))
        for target in self.plan.targets:
            base, index = split_quantity(target.quantity)
            for role, spec in specs:
                if base in spec.parameters and index is not None:
                    shape = parameter_layouts(spec.generative, [base])[base].shape
                    self._check_index(target, base, index, shape, role, spec, smallest)
                if base not in spec.parameters:
                    guess = difflib.get_close_matches(base, spec.parameters, n=1)
                    raise StudyError(
                        f"plan '{self.plan.name}': target quantity '{target.quantity}' is not a "
                        f"parameter of the {role} '{spec.model.ref}'; "
                        + (f"did you mean '{guess[0]}'? " if guess else "")
                        + f"its parameters are: {', '.join(spec.parameters)}. A contrast "
                        "(e.g. the difference of two genes) must be a pm.Deterministic in "
                        "the model, because stored quantiles are per scalar")

    def _check_index(self, target: Target, base: str, index: tuple[int, ...],
                     shape: tuple[int, ...], role: str, spec, design: Design) -> None:
        """Refuse an element index that ``base`` (of ``shape`` on ``design``) lacks, listing
        the valid ones."""
        where = (f"plan '{self.plan.name}': target quantity '{target.quantity}' names an "
                 f"element of '{base}' of the {role} '{spec.model.ref}'")
        if not shape:
            raise StudyError(f"{where}, but '{base}' is a scalar (no elements); write "
                             f"quantity = \"{base}\"")
        if len(index) != len(shape) or any(i >= n for i, n in zip(index, shape)):
            names = [element_name(base, idx) for idx in np.ndindex(*shape)]
            valid = ", ".join(names) if len(names) <= 12 else \
                f"{', '.join(names[:3])}, ..., {names[-1]}"
            raise StudyError(
                f"{where}, which does not exist on design {design.label} (the smallest of "
                f"the space): '{base}' has shape {shape} there; valid elements: {valid} "
                f"(0-based), or quantity = \"{base}\" for every element")

    # --- fitting ------------------------------------------------------------------------
    def ensure(self, ref, simulate_ref, design: Design, n: int, client) -> None:
        """Make sure replicates 0..n-1 of (ref, design) are stored; fit only missing ones."""
        from sbc.dispatch import auto_batch_size, run_tasks
        from sbc.replicate import BatchTask

        missing = [r for r in range(n) if (ref.label, design.label, r) not in self.records]
        if not missing:
            return
        n_workers = max(1, self.workers or 1)
        size = auto_batch_size(len(missing), n_workers, design.n_rows)
        tasks = [BatchTask(ref, simulate_ref, design, self.plan.sampler, self.plan.thin,
                           self.plan.seed, tuple(missing[i:i + size]))
                 for i in range(0, len(missing), size)]

        def write(records):
            for record in records:
                self.store.write_record(record)
                self.records[(record["model"], record["design"], record["rep"])] = record
            self.new_fits += len(records)

        lost = run_tasks(tasks, write, client=client)
        if lost:
            raise StudyError(f"{lost} batches of design {design.label} could not run; the "
                             "stored fits are kept: run the same command again to resume")

    def tables(self, label: str, design: Design, n: int | None = None):
        from sbc.store import records_to_tables

        recs = [r for (m, d, rep), r in sorted(self.records.items())
                if m == label and d == design.label and (n is None or rep < n)]
        return records_to_tables(recs)

    # --- evaluation ---------------------------------------------------------------------
    def evaluate(self, design: Design, client) -> DesignResult:
        """Sequential looks at one design until its interval clears the target probability."""
        plan, s = self.plan, self.plan.search
        res = self.results[design]
        res.note = ""  # a runner-up may have been inferred meanwhile: it is measured now
        n = 0
        # A design with fits already stored was admitted by the run that stored them: a
        # resume (perhaps with fewer workers) continues it rather than refusing it, so it
        # walks the same path and refits nothing.
        started = any((self.power_ref.label, design.label, rep) in self.records
                      for rep in range(s.max_simulations))
        estimate = None if started else self.projected_minutes(design)
        if estimate is not None and estimate > s.max_minutes_per_design:
            res.status = "too large"
            res.note = (f"projected {estimate:.0f} min for {s.max_simulations} full-MCMC fits "
                        f"exceeds search.max_minutes_per_design = {s.max_minutes_per_design:g}; "
                        "raise it, add workers (--scheduler), or lower sampler.draws/tune (ESS "
                        "is still checked per fit and low-ESS fits count as flagged)")
            self.log(f"{design.label}: skipped, {res.note}")
            return res
        while True:
            n = min(n + s.batch, s.max_simulations) if s.strategy == "adaptive" \
                else s.max_simulations
            self.ensure(self.power_ref, self.design_ref, design, n, client)
            self.summarize(design, n)
            verdict = decide(res.lower, res.upper, plan.probability)
            if s.strategy == "adaptive" and verdict is not None:
                res.status = verdict
                break
            if n >= s.max_simulations:
                res.status = verdict or "inconclusive"
                break
        if res.status == "pass" or s.strategy == "grid":
            # the calibration verdict uses analysis-prior fits: the same stream when the
            # design prior is the analysis prior, else a separate one
            n_cal = max(s.calibration_simulations, n if self.design_ref is None else 0)
            self.ensure(self.fit_ref, None, design, n_cal, client)
        self.calibrate(design)
        self.log(f"{design.label} (cost {res.cost:g}): P(success) = {res.probability:.2f} "
                 f"[{res.lower:.2f}, {res.upper:.2f}] from {res.n} simulations -> {res.status}; "
                 f"SBC {res.calibration}")
        return res

    def summarize(self, design: Design, n: int) -> None:
        res = self.results[design]
        reps, params = self.tables(self.power_ref.label, design, n)
        prior_sd = self.prior_sds(design) if any(
            t.criterion == "contraction" for t in self.plan.targets) else None
        scores = replicate_success(params, reps, self.plan.targets, prior_sd)
        res.n = len(scores)
        res.probability, res.lower, res.upper = success_interval(
            scores["success"].to_numpy(), self.plan.search.confidence)
        res.per_target = [float(scores[f"target{i}"].mean())
                          for i in range(len(self.plan.targets))]
        res.failed = int((reps["status"] != "ok").sum())
        ok = reps[reps["status"] == "ok"]
        res.flagged = int((ok["flag_divergent"].astype(bool) | ok["flag_low_ess"].astype(bool)
                           | ok["flag_rhat"].astype(bool)).sum()) if len(ok) else 0
        res.fit_seconds = float(ok["sampler_seconds"].median()) if len(ok) else math.nan
        rows = select_quantity(params, self.plan.targets[0].quantity)
        if len(rows):
            lo, hi = LEVELS[self.plan.targets[0].level]
            res.posterior_sd = float(rows["sd"].mean())
            res.width = float((rows[hi] - rows[lo]).mean())
            res.bias = float((rows["mean"] - rows["truth"]).mean())
            res.rmse = float(np.sqrt(((rows["mean"] - rows["truth"]) ** 2).mean()))
            if prior_sd is None and self.design_ref is None:
                # truths are analysis-prior draws here: their spread is the prior sd,
                # which saves compiling a prior simulator just for a descriptive column
                prior_sd = rows.groupby("name")["truth"].std().to_dict()
            res.contraction = float(np.nanmean(contraction(rows, prior_sd or
                                                           self.prior_sds(design))))

    def calibrate(self, design: Design) -> None:
        res = self.results[design]
        reps, params = self.tables(self.fit_ref.label, design)
        res.calibration_n = int((reps["status"] == "ok").sum()) if len(reps) else 0
        if res.calibration_n < MIN_FITS:
            res.calibration = "not checked"
            return
        res.calibration, res.calibration_p, res.calibration_failing = calibration_verdict(
            reps, params, self.plan.search.alpha, self.plan.sampler)
        n_bad = res.failed + res.flagged
        if res.n and n_bad / res.n > self.plan.search.max_flagged:
            res.calibration = "unreliable fits"
            res.calibration_failing = (f"{res.failed} failed and {res.flagged} flagged "
                                       f"(divergences, low ESS or R-hat) of {res.n} fits")

    def prior_sds(self, design: Design) -> dict[str, float]:
        """Analysis-prior sd of every ranked scalar (400 prior draws), for contraction."""
        if design not in self.prior_sd:
            from sbc.diagnostics import scalar_names
            from sbc.simulate import Simulator
            from sbc.spec import make_spec

            sim = Simulator(make_spec(self.fit_ref, design.frame()))
            base = np.random.SeedSequence(self.plan.seed, spawn_key=(7, 7))
            draws = [sim.draw(s)[0] for s in base.spawn(400)]
            out = {}
            for name in sim.names:
                arr = np.stack([d[name] for d in draws])
                sd = arr.reshape(len(draws), -1).std(axis=0, ddof=1)
                labels = scalar_names({name: arr[None]}, [name])
                out.update(dict(zip(labels, sd)))
            self.prior_sd[design] = out
        return self.prior_sd[design]

    def projected_minutes(self, design: Design) -> float | None:
        """Wall minutes for max_simulations fits, scaled by rows from designs already fitted."""
        rates = [r.fit_seconds / r.design.n_rows for r in self.results.values()
                 if r.n and np.isfinite(r.fit_seconds)]
        if not rates:
            return None
        per_fit = float(np.median(rates)) * design.n_rows
        return per_fit * self.plan.search.max_simulations / max(1, self.workers or 1) / 60

    # --- the search ---------------------------------------------------------------------
    def search(self, client) -> DesignResult | None:
        """Find the cheapest passing, calibrated design; returns it (None if there is none).

        Adaptive: probe the undecided design cheaper than the best pass so far that splits
        the rest most evenly (a pass rules out everything costlier, a fail everything it
        dominates), until nothing cheaper is undecided; then evaluate the runners-up.
        """
        plan = self.plan
        if plan.search.strategy == "grid":
            for design in plan.designs():
                self.evaluate(design, client)
            return self.best()
        while True:
            best = self.best()
            open_ = [r for r in self.results.values() if r.status == "not evaluated"
                     and (best is None or r.cost < best.cost)]
            if not open_:
                break
            probe = max(open_, key=lambda r: (self.split(r, open_), -r.cost))
            self.evaluate(probe.design, client)
            self.infer(probe)
        best = self.best()
        if best is not None:
            later = [r for r in sorted(self.results.values(), key=lambda r: (r.cost, r.design))
                     if r.status == "not evaluated"][:plan.search.runners_up]
            for r in later:
                self.evaluate(r.design, client)
                self.infer(r)
        for r in self.results.values():
            if r.status == "not evaluated":
                r.note = "not needed: costlier than the recommendation" if best else \
                    "not reached"
        return self.best()

    def split(self, probe: DesignResult, open_: list[DesignResult]) -> int:
        """How many open designs a probe decides in the worse case (pass or fail)."""
        if_fail = sum(dominated(r.design, probe.design, self.plan.monotone) for r in open_)
        if_pass = sum(r.cost >= probe.cost for r in open_)
        return min(if_fail, if_pass)

    def infer(self, res: DesignResult) -> None:
        """Monotone inference from an evaluated design to the designs it (is) dominated by."""
        for other, r in self.results.items():
            if r.status != "not evaluated" or other == res.design:
                continue
            if res.status == "fail" and dominated(other, res.design, self.plan.monotone):
                r.status, r.note = "inferred fail", f"no larger than {res.design.label}"
            elif res.status == "pass" and self.recommendable(res) and \
                    dominated(res.design, other, self.plan.monotone):
                r.status, r.note = "inferred pass", f"at least {res.design.label}"

    def recommendable(self, res: DesignResult) -> bool:
        return res.status == "pass" and res.calibration == "calibrated"

    def best(self) -> DesignResult | None:
        ok = [r for r in self.results.values() if self.recommendable(r)]
        return min(ok, key=lambda r: (r.cost, r.design.n_rows)) if ok else None

    def log(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[sbc plan {elapsed:5.0f}s] {text}", file=self.stream, flush=True)


# ---------------------------------------------------------------------------------------
# Pilot screen -> design prior
# ---------------------------------------------------------------------------------------

POSITIVE_FAMILIES = {"LogNormal", "HalfNormal", "Exponential", "Gamma", "HalfCauchy",
                     "HalfStudentT", "InverseGamma", "Weibull"}


def moment_matched_priors(priors: dict, draws: dict[str, np.ndarray], widen: float = 1.0
                          ) -> dict:
    """Replace each hyperprior by a normal (real line) or lognormal (positive) prior matched
    to the mean and sd of its pilot posterior draws (log scale for positive ones)."""
    out = {}
    for name, (family, _) in priors.items():
        x = np.asarray(draws[name], dtype=float).ravel()
        if family in POSITIVE_FAMILIES:
            lx = np.log(x)
            out[name] = ("LogNormal", {"mu": float(lx.mean()), "sigma": float(lx.std() * widen)})
        else:
            out[name] = ("Normal", {"mu": float(x.mean()), "sigma": float(x.std() * widen)})
    return out


def pilot_frame(csv: Path) -> pd.DataFrame:
    """Read a pilot screen (columns logfc, gene, cell_line, optionally replicate/expt) as a
    design frame sorted by cell line, gene, replicate (``sbc.design.read_screen_csv``)."""
    from sbc.design import read_screen_csv

    return read_screen_csv(read_text(csv, "pilot csv"), f"pilot csv {csv}")


def pilot_design_model(plan: Plan, fit_ref, store, stream):
    """Fit the analysis model to the pilot once (cached in the store) and write the design
    prior as a model file: the analysis model's source with its PRIORS moment-matched."""
    from sbc.fit import make_backend
    from sbc.spec import load_module, make_spec, resolve_model

    module = load_module(fit_ref)
    priors = getattr(module, "PRIORS", None)
    if not isinstance(priors, dict):
        raise StudyError(f"plan '{plan.name}': a pilot needs the model '{fit_ref.ref}' to keep "
                         "its hyperpriors in a PRIORS dict (name -> (distribution, params)), "
                         "as models/crispr_plan.py does, so a design prior can replace them")
    cache = store.root / "pilot_posterior.json"
    if cache.is_file():
        matched = json.loads(cache.read_text())["priors"]
    else:
        frame = pilot_frame(Path(plan.base_dir) / plan.pilot.csv)
        spec = make_spec(fit_ref, frame)
        settings = dataclasses.replace(plan.sampler, chains=plan.pilot.chains,
                                       draws=plan.pilot.draws, tune=plan.pilot.tune)
        print(f"[sbc plan] fitting the pilot screen ({len(frame)} rows) once", file=stream)
        fit = make_backend(spec, settings, frame).fit(frame["logfc"].to_numpy(float),
                                                      plan.seed)
        matched = moment_matched_priors(priors, fit.draws, plan.pilot.widen)
        store.write_text("pilot_posterior.json", json.dumps(
            {"priors": matched, "divergences": int(fit.diverging.sum()),
             "rows": len(frame)}, indent=2))
    source = (fit_ref.source + "\n\n# Design prior: moment-matched to the pilot screen's "
              "posterior by `sbc plan`.\nPRIORS = " + json.dumps(matched, indent=4)
              .replace("[", "(").replace("]", ")") + "\n")
    path = store.write_text("design_prior.py", source)
    return resolve_model(f"{path}:{fit_ref.function}", store.root)


# ---------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------


def result_table(results: list[DesignResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in sorted(results, key=lambda r: (r.cost, r.design))])


def curves_png(table: pd.DataFrame, probability: float) -> str:
    """P(success) with its MC interval against each varied dimension (base64 PNG)."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table["simulations"] > 0]
    dims = [d for d in DIMENSIONS if done[d].nunique() > 1] or ["cell_lines"]
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 3.6), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        others = [d for d in DIMENSIONS if d != dim]
        for key, block in done.groupby(others):
            block = block.sort_values(dim)
            label = ", ".join(f"{o}={v}" for o, v in zip(others, key))
            x, p = block[dim].to_numpy(), block["p_success"].to_numpy()
            err = np.vstack([p - block["p_lower"], block["p_upper"] - p])
            ax.errorbar(x, p, yerr=err, marker="o", capsize=3, label=label)
        ax.axhline(probability, color="grey", ls="--", lw=1)
        ax.set_xlabel(dim.replace("_", " "))
        ax.set_ylabel("P(target met)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def report_html(plan: Plan, table: pd.DataFrame, recommended: DesignResult | None,
                fits: dict) -> str:
    from sbc import report as R

    s = plan.search
    targets = "".join(f"<li>{R.esc(t.describe())}</li>" for t in plan.targets)
    parts = [f"<h1>Design plan: {R.esc(plan.name)}</h1>",
             f"<p>{R.esc(plan.description)}</p>" if plan.description else "",
             f"<p>Analysis model <b>{R.esc(plan.model)}</b>; truths simulated from "
             f"<b>{R.esc(fits['design_prior'])}</b>. Target, with probability at least "
             f"<b>{plan.probability:.0%}</b>:</p><ul>{targets}</ul>"]
    if recommended is not None:
        r = recommended
        parts.append(
            f"<p class='note'>Recommended: <b>{r.design.n_cell_lines} cell lines x "
            f"{r.design.n_genes} genes x {r.design.n_reps} replicates</b> (cost {r.cost:g} "
            f"{R.esc(plan.cost.unit)}): P(target met) = {r.probability:.2f}, "
            f"{s.confidence:.0%} Wilson interval [{r.lower:.2f}, {r.upper:.2f}] from {r.n} "
            f"simulated screens; SBC calibration: <span class='pass'>{R.esc(r.calibration)}"
            f"</span> ({r.calibration_n} analysis-prior fits).</p>")
    else:
        parts.append("<p class='note'><span class='fail'>No design of the space meets the "
                     "target with the stated confidence</span> (see the table: widen the "
                     "space or raise search.max_simulations for inconclusive designs).</p>")
    parts.append(
        f"<p>Fits used: <b>{fits['used']}</b> (this run: {fits['new']}) against "
        f"<b>{fits['full_grid']}</b> for the full grid of {fits['designs']} designs at "
        f"{s.max_simulations} simulations each"
        + (f" plus {s.calibration_simulations} calibration fits" if fits['separate'] else "")
        + f". Saved: {fits['saved_share']:.0%}.</p>")
    parts.append("<h2>Probability of success by design dimension</h2>"
                 + R.img_html(curves_png(table, plan.probability),
                              "probability of success against design dimensions")
                 + f"<p>Bars: {s.confidence:.0%} Wilson intervals (Monte Carlo error). "
                   "Dashed line: required probability.</p>")
    shown = table.drop(columns=[c for c in ("rows",) if c in table])
    parts.append("<h2>All designs</h2>" + R.table_html(shown))
    parts.append(
        "<h2>How this was computed</h2><ul>"
        f"<li>Designs are visited cheapest first; each gets batches of {s.batch} simulated "
        f"screens until the {s.confidence:.0%} Wilson interval of P(target met) lies wholly "
        f"above or below {plan.probability:.0%}, or {s.max_simulations} are reached "
        "(inconclusive). Repeated looks make the stated confidence approximate.</li>"
        f"<li>Monotone in {', '.join(plan.monotone) or 'no dimension'}: a design no larger "
        "than a failing one is inferred to fail, one at least as large as a passing one to "
        "pass; these are marked 'inferred' and were not fitted.</li>"
        "<li>Failed fits count as not meeting the target. A design with more than "
        f"{s.max_flagged:.0%} failed or flagged fits, or whose SBC ranks are not uniform "
        f"(ECDF test per parameter, Holm over parameter groups at {s.alpha:g}), is flagged "
        "and never recommended.</li>"
        "<li>Posterior sd, width, contraction, bias and RMSE are for the first target's "
        "quantity, averaged over simulations and elements.</li></ul>")
    return R.page(f"Design plan: {plan.name}", "".join(parts))


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------


@dataclass
class PlanResult:
    recommended: DesignResult | None
    table: pd.DataFrame
    fits: dict
    seconds: float
    out: Path


def run_plan(plan: Plan, out: str | Path, *, workers: int | None = None,
             scheduler: str | None = None, stream=None, tls=None) -> PlanResult:
    """Run (or resume) a plan into ``out``; writes plan.csv, plan.json and report.html.
    ``tls``: certificates (sbc.dispatch.TLS) for a ``tls://`` scheduler."""
    from sbc.dispatch import TLS, check_scheduler_address, default_workers

    workers = workers if workers is not None else (plan.workers if plan.workers is not None
                                                   else default_workers())
    scheduler = check_scheduler_address(scheduler or plan.scheduler)
    if scheduler and scheduler.startswith("tls://"):
        (tls or TLS()).security()  # missing certificates: refused before the store opens
    planner = Planner(plan, Path(out), workers, scheduler, stream)
    planner.open()
    planner.log(f"{plan.name}: {len(planner.results)} candidate designs, "
                f"{len(planner.records)} fits already stored, "
                f"{'scheduler ' + scheduler if scheduler else f'{workers} worker(s)'}")
    from sbc.dispatch import session

    with session(workers=workers, scheduler=scheduler, tls=tls) as client:
        recommended = planner.search(client)
    table = result_table(list(planner.results.values()))
    separate = planner.design_ref is not None
    per_design = plan.search.max_simulations + (plan.search.calibration_simulations
                                                if separate else 0)
    labels = {planner.power_ref.label, planner.fit_ref.label}
    used = sum(1 for (m, d, _) in planner.records if m in labels)
    full = per_design * len(planner.results)
    fits = {"used": used, "new": planner.new_fits, "full_grid": full,
            "designs": len(planner.results), "separate": separate,
            "saved_share": 1 - used / full if full else 0.0,
            "design_prior": planner.design_ref.ref if separate else f"{plan.model} (its prior)"}
    seconds = time.monotonic() - planner.started
    store = planner.store
    store.write_text("plan.csv", table.to_csv(index=False))
    store.write_text("plan.json", json.dumps(_jsonable({
        "plan": plan.to_dict(), "targets": [t.describe() for t in plan.targets],
        "recommended": recommended.row() if recommended else None,
        "fits": fits, "seconds": seconds, "designs": table.to_dict(orient="records")}),
        indent=2))
    store.write_text("report.html", report_html(plan, table, recommended, fits))
    return PlanResult(recommended, table, fits, seconds, Path(out))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def cli_plan(args) -> int:
    """``sbc plan PLAN [--out DIR] [--workers N] [--scheduler ADDR]``."""
    plan = load_plan(args.plan)
    out = Path(args.out or plan.output or Path("reports") / plan.name)
    from sbc.cli import tls_of

    result = run_plan(plan, out, workers=args.workers, scheduler=args.scheduler,
                      tls=tls_of(args))
    r = result.recommended
    if r is None:
        print(f"[sbc plan] no design meets the target with the stated confidence; see "
              f"{out / 'report.html'}")
    else:
        print(f"[sbc plan] recommended {r.design.label} (cell lines x genes x replicates), "
              f"cost {r.cost:g} {plan.cost.unit}: P(target met) = {r.probability:.2f} "
              f"[{r.lower:.2f}, {r.upper:.2f}], n = {r.n}; SBC {r.calibration}")
    f = result.fits
    print(f"[sbc plan] fits used {f['used']} ({f['new']} new) vs {f['full_grid']} for the full "
          f"grid ({f['saved_share']:.0%} saved); {result.seconds:.0f} s; report: "
          f"{out / 'report.html'}")
    return 0
