"""The genome plan file (``kind = "genome"``): a guide-level screen planned genome-wide with
the shortcut of :mod:`sbc.plan.genome_fit`.  Every key is validated the way study and plan
files are (unknown keys with did-you-mean, ranges, limits), naming the file, the key and the
fix."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbc.config import check_limit, parse_limits, positive_int, read_toml, unknown_keys
from sbc.errors import StudyError
from sbc.plan.config import (CostParts, PlanBase, SearchSettings, _int_tuple, _number, _one_of,
                             _table, parse_plan_base, parse_search)
from sbc.plan.genome import GenomeSettings, GenomeTarget, ScreenDesign, guide_model
from sbc.plan.genome_pilot import USABLE

DIMENSIONS = ("cell_lines", "genes", "reps", "guides", "depth")
TOP_KEYS = {"kind", "name", "description", "seed", "model", "space", "targets", "probability",
            "cost", "search", "candidates", "priors", "library", "shortcut", "run", "limits",
            "cluster", "pilot"}
SPACE_KEYS = set(DIMENSIONS) | {"monotone"}
COST_KEYS = {"fixed", "per_cell_line", "per_screen", "culture_per_1000_guides",
             "per_million_reads", "unit"}
SEARCH_KEYS = {"strategy", "batch", "max_simulations", "confidence", "runners_up", "alpha"}
CANDIDATE_KEYS = {"genes", "fraction", "effect"}
LIBRARY_KEYS = {"sd", "t0_depth"}
SHORTCUT_KEYS = {"hyper_genes", "hyper_draws", "n_pit"}
PILOT_KEYS = {"data", "samples", "widen", "use"}
RUN_KEYS = {"output", "scheduler", "workers"}
KINDS = ("essential_power", "selective_power", "width", "separation")
TARGET_KEYS = {"kind", "at_least", "below", "fdr", "level", "side", "n_controls", "label"}
FAMILIES = {"Normal": ("mu", "sigma"), "LogNormal": ("mu", "sigma"), "Beta": ("alpha", "beta")}
MAX_COUNTS = 200_000_000  # guide counts in the largest design (memory: ~8 bytes each, x 6)


@dataclass(frozen=True)
class GenomeCost(CostParts):
    """Cost of a genome screen design: fixed + per cell line + per screen (a cell line
    screened once) + culture per screen per 1,000 guides (cells at fixed representation
    scale with the library) + sequencing per million reads (the screens' reads, and the
    library's T0 sample)."""

    culture_per_1000_guides: float = 0.0
    per_million_reads: float = 0.0

    def __call__(self, d: ScreenDesign, t0_depth: float = 500.0) -> float:
        screens = d.cell_lines * d.reps
        guides = d.genes * d.guides
        reads = d.million_reads + t0_depth * guides / 1e6
        return (self.fixed + self.per_cell_line * d.cell_lines + self.per_screen * screens
                + self.culture_per_1000_guides * screens * guides / 1000
                + self.per_million_reads * reads)


@dataclass(frozen=True)
class GenomePilot:
    """``[pilot]``: a pilot screen whose posterior replaces the plan's hyperpriors (design
    and analysis) where it informs them (:mod:`sbc.plan.genome_pilot`).  ``data``: a
    gene-effect matrix, long logfc CSV or MAGeCK count table; ``samples``: the count
    table's sample sheet; ``widen``: scales the matched sds; ``use``: the hyperparameters
    (and ``library_sd``) to take from it, default all it informs.  Paths relative to the
    plan file."""

    data: str
    samples: str | None = None
    widen: float = 1.0
    use: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class GenomePlan(PlanBase):
    dims: dict
    cost: GenomeCost
    search: SearchSettings
    monotone: tuple[str, ...] = ("cell_lines", "reps", "guides", "depth")
    model: str = "crispr_guides"
    n_candidates: int = 20
    fraction: float = 0.2
    selective_effect: float | None = None
    priors: dict = field(default_factory=dict)
    library_sd: float = 0.55
    t0_depth: float = 500.0
    hyper_genes: int | str = "auto"
    hyper_draws: int = 24
    n_pit: int = 10
    pilot: GenomePilot | None = None

    def designs(self) -> list[ScreenDesign]:
        """Every design of the space, cheapest first (ties: fewer counts first)."""
        grid = [ScreenDesign(*v) for v in itertools.product(*(self.dims[k] for k in DIMENSIONS))]
        return sorted(grid, key=lambda d: (self.cost_of(d), d.n_rows, d.label))

    def cost_of(self, d: ScreenDesign) -> float:
        return self.cost(d, self.t0_depth)

    def settings(self) -> GenomeSettings:
        return GenomeSettings(
            seed=self.seed, targets=self.targets, max_cells=max(self.dims["cell_lines"]),
            max_guides=max(self.dims["guides"]), priors=self.priors,
            n_candidates=self.n_candidates, fraction=self.fraction,
            selective_effect=self.selective_effect, hyper_genes=self.hyper_genes,
            hyper_draws=self.hyper_draws, n_pit=self.n_pit, t0_depth=self.t0_depth,
            library_sd=self.library_sd)


def is_genome_plan(path: str | Path) -> bool:
    """Does the plan file say ``kind = "genome"``?  (Read errors are left to the parser.)"""
    try:
        raw = read_toml(Path(path), "plan file")
    except StudyError:
        return False
    return raw.get("kind") == "genome"


def load_genome_plan(path: str | Path) -> GenomePlan:
    path = Path(path)
    return parse_genome_plan(read_toml(path, "plan file"), path)


def parse_genome_plan(raw: dict, path: Path) -> GenomePlan:
    """Validate a genome plan file; every problem names the key and a fix."""
    unknown_keys(raw, TOP_KEYS, path, "")
    if raw.get("kind") != "genome":
        raise StudyError(f"{path}: key 'kind' must be \"genome\" for a genome plan")
    limits = parse_limits(raw, path)
    common = parse_plan_base(raw, path, RUN_KEYS)
    model = raw.get("model", "crispr_guides")
    if model != "crispr_guides":
        raise StudyError(f"{path}: key 'model' = {model!r}: a genome plan fits the guide-level "
                         "model crispr_guides with its shortcut; change its priors with "
                         "[priors] and [library], or plan another model with a logfc plan")
    space = _table(raw, "space", path, SPACE_KEYS)
    missing = [k for k in DIMENSIONS if k not in space]
    if missing:
        raise StudyError(f"{path}: [space] lacks {', '.join(missing)}; give lists for "
                         f"{', '.join(DIMENSIONS)}, e.g. guides = [3, 4, 5]")
    dims = {k: _int_tuple(space[k], path, f"space.{k}", limits) for k in DIMENSIONS}
    n_designs = math.prod(len(v) for v in dims.values())
    check_limit(n_designs, limits, "designs", f"{path}: [space] has {n_designs:,} designs, which")
    largest = ScreenDesign(*(max(dims[k]) for k in DIMENSIONS))
    if largest.n_rows > MAX_COUNTS:
        raise StudyError(f"{path}: the largest design of [space], {largest.label}, has "
                         f"{largest.n_rows:,} guide counts per simulated screen, more than "
                         f"{MAX_COUNTS:,} (memory); plan fewer cell lines, replicates or genes "
                         "per machine, or split the space")
    if min(dims["cell_lines"]) < 2:
        raise StudyError(f"{path}: key 'space.cell_lines' must be at least 2 (a selective "
                         "dependency compares marker lines with the others)")
    monotone = space.get("monotone", ["cell_lines", "reps", "guides", "depth"])
    if not isinstance(monotone, list) or any(m not in DIMENSIONS for m in monotone):
        raise StudyError(f"{path}: key 'space.monotone' must list dimensions among "
                         f"{', '.join(DIMENSIONS)}, got {monotone!r}")

    entries = raw.get("targets")
    if not isinstance(entries, list) or not entries:
        raise StudyError(f"{path}: missing [[targets]]; write e.g. [[targets]] kind = "
                         "\"essential_power\" fdr = 0.05 at_least = 0.8")
    targets = tuple(_parse_target(e, path, f"targets[{i}]") for i, e in enumerate(entries))
    probability = _number(raw.get("probability", 0.8), path, "probability", 0.01, 0.99, "0.8")

    cost_raw = _table(raw, "cost", path, COST_KEYS)
    unit = cost_raw.get("unit", "")
    if not isinstance(unit, str):
        raise StudyError(f"{path}: key 'cost.unit' must be a string, got {unit!r}")
    cost = GenomeCost(**{k: _number(v, path, f"cost.{k}", 0.0) for k, v in cost_raw.items()
                         if k != "unit"}, unit=unit)
    if cost == GenomeCost(unit=unit):
        raise StudyError(f"{path}: [cost] gives no cost; write e.g. per_million_reads = 0.005 "
                         "and per_screen = 1.0 (the plan looks for the cheapest design)")

    search = parse_search(raw, path, SEARCH_KEYS, limits, batch=10, max_simulations=60)

    cand = _table(raw, "candidates", path, CANDIDATE_KEYS)
    n_candidates = positive_int(cand.get("genes", 20), path, "candidates.genes", 0)
    if n_candidates >= min(dims["genes"]):
        raise StudyError(f"{path}: candidates.genes ({n_candidates}) must be fewer than the "
                         f"smallest library ({min(dims['genes'])} genes)")
    fraction = _number(cand.get("fraction", 0.2), path, "candidates.fraction", 0.01, 0.99, "0.2")
    effect = cand.get("effect")
    if effect is not None:
        effect = _number(effect, path, "candidates.effect", -5.0, 5.0, "-1.0")
    if any(t.kind == "selective_power" for t in targets) and not n_candidates:
        raise StudyError(f"{path}: a selective_power target needs candidate genes: write "
                         "[candidates] genes = 20")
    priors = _parse_priors(_table(raw, "priors", path, set(guide_model().PRIORS)), path)
    library = _table(raw, "library", path, LIBRARY_KEYS)
    shortcut = _table(raw, "shortcut", path, SHORTCUT_KEYS)
    hyper_genes = shortcut.get("hyper_genes", "auto")
    if hyper_genes != "auto":
        hyper_genes = positive_int(hyper_genes, path, "shortcut.hyper_genes", 50)
    pilot = _parse_pilot(raw, path) if "pilot" in raw else None
    return GenomePlan(
        dims=dims, targets=targets, probability=probability, cost=cost, search=search,
        monotone=tuple(monotone), n_candidates=n_candidates, fraction=fraction,
        selective_effect=effect, priors=priors,
        library_sd=_number(library.get("sd", 0.55), path, "library.sd", 0.0, 3.0),
        t0_depth=_number(library.get("t0_depth", 500.0), path, "library.t0_depth", 10.0),
        hyper_genes=hyper_genes,
        hyper_draws=positive_int(shortcut.get("hyper_draws", 24), path, "shortcut.hyper_draws"),
        n_pit=positive_int(shortcut.get("n_pit", 10), path, "shortcut.n_pit"),
        pilot=pilot, **common)


def _parse_pilot(raw: dict, path: Path) -> GenomePilot:
    """``[pilot]``: the files must exist (relative to the plan file); they are read when the
    plan runs, before anything is simulated."""
    table = _table(raw, "pilot", path, PILOT_KEYS)
    files = {}
    for key in ("data", "samples"):
        value = table.get(key)
        if value is None and key == "samples":
            continue
        if not isinstance(value, str) or not value:
            raise StudyError(f"{path}: [pilot] needs data = \"pilot.csv\": a gene-effect "
                             "matrix (e.g. DepMap's CRISPRGeneEffect.csv), a long logfc CSV or "
                             "a MAGeCK count table (with samples = \"sheet.csv\")"
                             if key == "data" else
                             f"{path}: key 'pilot.samples' must be the path of the count "
                             f"table's sample sheet, got {value!r}")
        file = path.resolve().parent / value
        if not file.is_file():
            raise StudyError(f"{path}: key 'pilot.{key}' = {value!r}: file {file} not found; "
                             "give a path relative to the plan file")
        files[key] = value
    use = table.get("use")
    if use is not None:
        if not isinstance(use, list) or not use or any(u not in USABLE for u in use):
            raise StudyError(f"{path}: key 'pilot.use' must list names among "
                             f"{', '.join(USABLE)}, got {use!r}")
        use = tuple(use)
    return GenomePilot(data=files["data"], samples=files.get("samples"),
                       widen=_number(table.get("widen", 1.0), path, "pilot.widen", 1.0, 10.0,
                                     "1.5"), use=use)


def _parse_priors(table: dict, path: Path) -> dict:
    """[priors] overrides: ``tau = {family = "LogNormal", mu = -1.9, sigma = 0.3}``; the
    rest keep the model's priors.  Empty: the model's own (returned as {})."""
    if not table:
        return {}
    priors = dict(guide_model().PRIORS)
    for name, entry in table.items():
        key = f"priors.{name}"
        if not isinstance(entry, dict):
            raise StudyError(f"{path}: key '{key}' must be a table, e.g. {name} = "
                             "{family = \"LogNormal\", mu = -1.9, sigma = 0.3}")
        family = entry.get("family", priors[name][0])
        if family != priors[name][0]:
            raise StudyError(f"{path}: key '{key}.family' must be {priors[name][0]!r} (the "
                             f"shortcut's form of {name}), got {family!r}")
        unknown_keys(entry, {"family", *FAMILIES[family]}, path, f"{key}.")
        params = dict(priors[name][1])
        for p in FAMILIES[family]:
            if p in entry:
                lo = -math.inf if p == "mu" else 1e-6
                params[p] = _number(entry[p], path, f"{key}.{p}", lo)
        priors[name] = (family, params)
    return priors


def _parse_target(entry: Any, path: Path, key: str) -> GenomeTarget:
    if not isinstance(entry, dict):
        raise StudyError(f"{path}: '{key}' must be a table with kind, e.g. kind = "
                         "\"essential_power\"")
    unknown_keys(entry, TARGET_KEYS, path, f"{key}.")
    kind = _one_of(entry.get("kind"), KINDS, path, f"{key}.kind")
    if kind in ("width", "separation") and "below" not in entry:
        raise StudyError(f"{path}: '{key}' ({kind}) needs below = NUMBER, e.g. below = "
                         + ("0.6" if kind == "width" else "-3"))
    below = _number(entry.get("below", math.nan if kind not in ("width", "separation") else 0),
                    path, f"{key}.below") if "below" in entry else math.nan
    if kind == "width" and below <= 0:
        raise StudyError(f"{path}: '{key}.below' (an interval width) must be positive, got {below}")
    side = entry.get("side", "below")
    if side not in ("either", "below", "above"):
        raise StudyError(f"{path}: '{key}.side' must be \"either\", \"below\" or \"above\"")
    label = entry.get("label", "")
    if not isinstance(label, str):
        raise StudyError(f"{path}: '{key}.label' must be a string, got {label!r}")
    return GenomeTarget(
        kind=kind, at_least=_number(entry.get("at_least", 0.8), path, f"{key}.at_least", 0.0, 1.0),
        below=below, fdr=_number(entry.get("fdr", 0.05), path, f"{key}.fdr", 0.001, 0.5, "0.05"),
        level=_number(entry.get("level", 0.95), path, f"{key}.level", 0.5, 0.999, "0.95"),
        side=side, n_controls=positive_int(entry.get("n_controls", 500), path,
                                           f"{key}.n_controls", 2),
        label=label)
