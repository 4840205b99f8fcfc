"""Sequential studies: when a study with ``simulations = "auto"`` stops, and its verdicts.

The statistics are in :mod:`sbc.sequential` (e-processes, the pass point).  This module
applies them to a store, one (model, design) *cell* at a time:

- the family's alpha is split evenly over the cells (Bonferroni), so the chance of any false
  "fail" anywhere in the study, at any look, is at most alpha;
- a cell's ranks are read in replicate order over the *contiguous prefix* of finished
  replicates (0, 1, 2, ... up to the first one missing), failed fits skipped; the decision is
  a function of that prefix alone, never of arrival order or worker count, so a study stops at
  the same replicate with 1, 2 or N workers and after an interruption;
- a cell stops at the first of: an e-value crossing its threshold, or an interim look at 25,
  50, 100, 200 fits (below the pass point) rejecting ("fail", there); the pass point ("look":
  the fixed-n test at the final share of alpha decides); ``max_simulations`` replicates
  ("limit": the same look, the power reached stated).  Replicates stored beyond the stop (in
  flight, or from an earlier, larger run) are counted as beyond it, never in the verdict.

:func:`judge` is the one function that turns a store's tables into the sequential outcome
and the verdicts; ``sbc run`` calls it while fitting (through :class:`Monitor`) and every
reader of the store afterwards, so the run and its report cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sbc import sequential, stats
from sbc.calibration import calibrate, with_fractional_ranks
from sbc.config import positive_int, where
from sbc.errors import StudyError
from sbc.verdicts import Cause, Verdict, attribute, recommendation

DEFAULT_MAX = 1000
SEQUENTIAL_KEYS = {"alpha", "power", "shift", "narrow"}


@dataclass(frozen=True)
class Sequential:
    """Settings of a sequential study (the study file's ``[sequential]`` table).

    max_simulations: stop here whatever the evidence; alpha: family-wise false-fail rate over
    every quantity, cell and look; power: the probability with which a pass must detect each
    departure; shift: a posterior mean off by this many posterior sds; narrow: a posterior
    this much too narrow (0.2: sd 20 % too small); 0 leaves a departure out.
    """

    max_simulations: int = DEFAULT_MAX
    alpha: float = 0.05
    power: float = 0.8
    shift: float = 0.5
    narrow: float = 0.2

    def __post_init__(self):
        table = Path("[sequential]")
        for key in ("alpha", "power"):
            _fraction(getattr(self, key), table, key)
        if not _number(self.shift) or not 0 <= self.shift <= 5:
            raise StudyError(f"[sequential] shift must be a number of posterior sds in [0, 5], "
                             f"got {self.shift!r}; write e.g. shift = 0.5")
        if not _number(self.narrow) or not 0 <= self.narrow < 1:
            raise StudyError(f"[sequential] narrow must be a fraction in [0, 1), got "
                             f"{self.narrow!r}; write e.g. narrow = 0.2 (sd 20 % too small)")
        if not self.shift and not self.narrow:
            raise StudyError("[sequential] shift and narrow are both 0: a pass would state "
                             "nothing; give at least one departure to detect")
        if isinstance(self.max_simulations, bool) or not isinstance(self.max_simulations, int) \
                or self.max_simulations < sequential.SMALLEST:
            raise StudyError(f"max_simulations must be an integer >= {sequential.SMALLEST}, "
                             f"got {self.max_simulations!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def departures_text(self) -> str:
        parts = []
        if self.shift:
            parts.append(f"a {self.shift:g}-sd shift")
        if self.narrow:
            parts.append(f"a {self.narrow:.0%} too narrow posterior")
        return " and ".join(parts)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fraction(v, path: Path, key: str) -> float:
    if not _number(v) or not 0 < v < 1:
        raise StudyError(f"{path} {key} must be a number strictly between 0 and 1, got {v!r}")
    return float(v)


def parse(raw: dict, path: Path, max_simulations) -> Sequential:
    """The settings of a study file with ``simulations = "auto"``: its ``max_simulations``
    (default 1000) and optional ``[sequential]`` table."""
    table = raw.get("sequential", {})
    if not isinstance(table, dict):
        raise StudyError(f"{path}: [sequential] must be a table, e.g.\n[sequential]\npower = 0.8")
    unknown = set(table) - SEQUENTIAL_KEYS
    if unknown:
        raise StudyError(f"{path}: unknown key(s) {sorted(unknown)} in [sequential]; allowed: "
                         f"{', '.join(sorted(SEQUENTIAL_KEYS))}")
    if max_simulations is None:
        max_simulations = DEFAULT_MAX
    try:
        return Sequential(max_simulations=max_simulations, **table)
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}") from None


def from_file(raw: dict, path: Path, n_sims, sims, max_sims,
              cli: bool = True) -> Sequential | None:
    """The sequential settings of a study file (None: a fixed number of simulations).
    ``n_sims``: its simulations after the command line's ``sims``; ``max_sims``: the command
    line's max_simulations (already checked); ``cli``: they came as the options --sims and
    --max-sims (else as the Python arguments simulations= and max_simulations=)."""
    if isinstance(n_sims, str) and n_sims != "auto":
        raise StudyError(f"{where(path, 'simulations')} must be an integer or \"auto\", got "
                         f"{n_sims!r}; write e.g. simulations = 250, or simulations = \"auto\" "
                         "to stop when the verdict is reached")
    if n_sims != "auto":
        if max_sims is not None:
            given, auto = (("--max-sims", "--sims auto") if cli else
                           ("max_simulations", 'simulations="auto"'))
            raise StudyError(f"{given} needs a sequential study: give {auto} or write "
                             f"simulations = \"auto\" in {path}")
        if "max_simulations" in raw and sims is None:
            raise StudyError(f"{where(path, 'max_simulations')} needs simulations = \"auto\" "
                             "(a sequential study); a fixed study runs exactly `simulations`")
        if "sequential" in raw and sims is None:
            raise StudyError(f"{path}: a [sequential] table needs simulations = \"auto\"")
        return None
    most = max_sims  # checked by the caller, which names it as given
    if most is None and raw.get("max_simulations") is not None:
        most = positive_int(raw["max_simulations"], path, "max_simulations",
                            minimum=sequential.SMALLEST)
    return parse(raw, path, most)


def normalize(sims, most, settings) -> tuple[int, int | None, Sequential | None]:
    """A Study's (simulations, max_simulations, sequential), normalized: a sequential study
    ("auto", or settings given) has settings and simulations = max_simulations."""
    here = Path("Study")
    if isinstance(sims, str) and sims != "auto":
        raise StudyError(f"Study simulations must be an integer or \"auto\", got {sims!r}")
    if sims == "auto" or settings is not None:
        settings = from_value(settings) or Sequential()
        if sims != "auto" and most is None:
            most = positive_int(sims, here, "simulations")
        if most is not None:
            most = positive_int(most, here, "max_simulations", minimum=sequential.SMALLEST)
            settings = replace(settings, max_simulations=most)
        return settings.max_simulations, settings.max_simulations, settings
    if most is not None:
        raise StudyError(f"Study max_simulations={most!r} needs simulations=\"auto\" (a "
                         "sequential study); a fixed study runs exactly `simulations`")
    return positive_int(sims, here, "simulations"), None, None


def from_value(value) -> Sequential | None:
    """Settings from a Sequential, a dict of its fields (as stored), or None."""
    if value is None or isinstance(value, Sequential):
        return value
    if isinstance(value, dict):
        unknown = set(value) - SEQUENTIAL_KEYS - {"max_simulations"}
        if unknown:
            raise StudyError(f"sequential settings have unknown key(s) {sorted(unknown)}")
        return Sequential(**value)
    raise StudyError(f"sequential settings must be a table of {sorted(SEQUENTIAL_KEYS)}, got "
                     f"{value!r}")


# --------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Where the sequential test of one (model, design) stands.

    status: "fail" (an e-value crossed, or an interim look rejected), "look" (the pass point
    was reached: the final look decides), "limit" (max_simulations reached first) or
    "running" (none yet).  stop_rep: the last replicate counted (None while running); fits:
    successful fits counted; beyond: replicates stored past the stop; rejected: groups whose
    e-value crossed (or that the interim look rejected); log_e: group -> log e-value after
    each counted fit; threshold: the e-value that rejects; point: the
    :class:`sbc.sequential.PassPoint`; alpha: this cell's share of the family's alpha;
    interim: the interim look that stopped it (:class:`sbc.sequential.LookResult`) or None.
    """

    model: str
    design: str
    status: str
    stop_rep: int | None
    fits: int
    beyond: int
    rejected: tuple[str, ...]
    log_e: dict = field(repr=False)
    threshold: float = math.inf
    point: sequential.PassPoint | None = field(default=None, repr=False)
    alpha: float = 0.05
    settings: Sequential = field(default_factory=Sequential, repr=False)
    interim: sequential.LookResult | None = field(default=None, repr=False)

    @property
    def decided(self) -> bool:
        return self.status != "running"

    @property
    def saved(self) -> int:
        """Replicates not fitted against a fixed study of max_simulations (stored ones past
        the stop count as fitted); only meaningful once the cell has stopped."""
        used = (self.stop_rep + 1 if self.stop_rep is not None else 0) + self.beyond
        return max(0, self.settings.max_simulations - used)

    def sentence(self) -> str:
        """What the sequential test did, in one or two sentences."""
        s = self.settings
        point = self.point
        pass_at = f"pass point {point.n} fits" if point and point.n else \
            f"no pass point within {s.max_simulations} replicates"
        beyond = f"; {self.beyond} replicate(s) stored beyond the stop are not counted" \
            if self.beyond else ""
        if self.status == "fail" and self.interim is not None:
            p = ", ".join(f"{g} {self.interim.p[g]:.3g}" for g in self.rejected)
            return (f"Sequential test: stopped after {self.fits} fits (replicate {self.stop_rep}): "
                    f"the interim look there rejected {', '.join(self.rejected)} (Holm p {p} <= "
                    f"{sequential.LOOK_SHARE * self.alpha:.3g}, {sequential.LOOK_SHARE:.0%} of "
                    f"the cell's alpha; {pass_at}){beyond}.")
        if self.status == "fail":
            top = max(self.rejected, key=lambda g: self.log_e[g][: self.fits].max())
            e = float(np.exp(self.log_e[top][: self.fits].max()))
            return (f"Sequential test: stopped after {self.fits} fits (replicate "
                    f"{self.stop_rep}): the e-value of {', '.join(self.rejected)} reached "
                    f"{e:.3g} >= {self.threshold:.3g}, valid under monitoring after every "
                    f"replicate ({pass_at}){beyond}.")
        power = ", ".join(f"{k} {v:.2f}" for k, v in point.power.items()) if point else ""
        if self.status == "look":
            return (f"Sequential test: no e-value crossed {self.threshold:.3g} in "
                    f"{self.fits} fits; stopped at the pass point (replicate {self.stop_rep}), "
                    f"where {s.departures_text()} would be detected with probability >= "
                    f"{s.power:.0%} (estimated: {power}){beyond}.")
        if self.status == "limit":
            return (f"Sequential test: no e-value crossed {self.threshold:.3g}; stopped at "
                    f"max_simulations = {s.max_simulations} before the pass point ({pass_at}); "
                    f"power reached: {power}{beyond}.")
        return (f"Sequential test running: {self.fits} fits counted, no e-value has crossed "
                f"{self.threshold:.3g} yet ({pass_at}).")


def _prefix(reps: pd.DataFrame, limit: int) -> tuple[np.ndarray, int]:
    """(the ok replicate ids of the contiguous prefix below ``limit``, in order; the prefix
    length)."""
    ids = np.sort(reps["rep"].to_numpy(int))
    ids = ids[ids < limit]
    gaps = np.flatnonzero(ids != np.arange(len(ids)))
    length = int(gaps[0]) if len(gaps) else len(ids)
    ok = reps.loc[(reps["rep"] < length) & (reps["status"] == "ok"), "rep"]
    return np.sort(ok.to_numpy(int)), length


def _group_ranks(params: pd.DataFrame, ok_ids: np.ndarray) -> dict[str, np.ndarray]:
    """group -> fractional ranks (fits, elements) in replicate order."""
    rows = params[params["rep"].isin(ok_ids)]
    wide = rows.pivot_table(index="rep", columns="name", values="u", aggfunc="first")
    wide = wide.reindex(ok_ids)
    names = rows.drop_duplicates("name")[["name", "group"]]
    return {group: wide[list(members)].to_numpy(float)
            for group, members in names.groupby("group", sort=True)["name"]}


def cell_outcome(model: str, design: str, reps: pd.DataFrame, params: pd.DataFrame,
                 settings: Sequential, cells: int) -> Outcome:
    """The sequential outcome of one cell from its replicates and its parameters table with
    fractional ranks ``u`` (:func:`sbc.calibration.with_fractional_ranks`)."""
    ok_ids, length = _prefix(reps, settings.max_simulations)
    groups = _group_ranks(params, ok_ids) if len(ok_ids) else {}
    return decide_cell(model, design, ok_ids, length, groups, reps["rep"].to_numpy(int),
                       settings, cells)


def decide_cell(model: str, design: str, ok_ids: np.ndarray, length: int, groups: dict,
                stored: np.ndarray, settings: Sequential, cells: int) -> Outcome:
    """The outcome of one cell from the ok replicates of its contiguous prefix (``ok_ids``,
    in order; ``length``: the prefix's length), their fractional ranks by group (rows in the
    order of ``ok_ids``; NaN: a scalar the fit lacks) and every stored replicate id."""
    alpha = settings.alpha / max(cells, 1)
    limit = settings.max_simulations
    stored_after = int((stored >= length).sum())
    base = dict(model=model, design=design, alpha=alpha, settings=settings)
    if len(ok_ids) == 0:
        status = "limit" if length >= limit else "running"
        return Outcome(status=status, stop_rep=limit - 1 if status == "limit" else None,
                       fits=0, beyond=stored_after, rejected=(), log_e={}, **base)
    complete = np.ones(len(ok_ids), bool)  # fits that have every scalar of every group
    for block in groups.values():
        complete &= ~np.isnan(block).any(axis=1)
    if not complete.all():
        ok_ids = ok_ids[complete]
        groups = {g: v[complete] for g, v in groups.items()}
        if len(ok_ids) == 0:
            return Outcome(status="running", stop_rep=None, fits=0, beyond=0, rejected=(),
                           log_e={}, **base)
    point = sequential.pass_point(len(groups), alpha, settings.power, settings.shift,
                                  settings.narrow, limit)
    test = sequential.sequential_test(groups, alpha=sequential.EARLY * alpha)
    n_ok = len(ok_ids)
    cap = min(n_ok, point.n) if point.n else n_ok
    base.update(log_e=test.log_e, threshold=test.threshold, point=point)
    crossed = test.stopped_at if test.stopped_at is not None and test.stopped_at <= cap else None
    look = sequential.interim_test(groups, alpha, point.n or limit)  # looks before the pass point
    if look is not None and crossed is not None and crossed <= look.n:
        look = None  # the e-value crossed first (or at the look itself)
    if look is not None or crossed is not None:
        fits = look.n if look else crossed
        stop = int(ok_ids[fits - 1])
        return Outcome(status="fail", stop_rep=stop, fits=fits, beyond=int((stored > stop).sum()),
                       rejected=look.rejected if look else test.rejected, interim=look, **base)
    if point.n and n_ok >= point.n:
        stop = int(ok_ids[point.n - 1])
        return Outcome(status="look", stop_rep=stop, fits=point.n,
                       beyond=int((stored > stop).sum()), rejected=(), **base)
    if length >= limit:
        return Outcome(status="limit", stop_rep=limit - 1, fits=n_ok, beyond=stored_after,
                       rejected=(), **base)
    return Outcome(status="running", stop_rep=None, fits=n_ok, beyond=0, rejected=(), **base)


def outcomes(reps: pd.DataFrame, params: pd.DataFrame, settings: Sequential,
             cells: list[tuple[str, str]]) -> dict[tuple[str, str], Outcome]:
    """The outcome of every cell; ``params`` with ``u`` (fractional ranks)."""
    out = {}
    for model, design in cells:
        r = reps[(reps["model"] == model) & (reps["design"] == design)]
        p = params[(params["model"] == model) & (params["design"] == design)] \
            if len(params) else params
        out[(model, design)] = cell_outcome(model, design, r, p, settings, len(cells))
    return out


def counted(reps: pd.DataFrame, params: pd.DataFrame, found: dict) -> tuple[pd.DataFrame,
                                                                           pd.DataFrame]:
    """The rows the verdicts rest on: each cell's replicates up to its stop (the contiguous
    prefix while running)."""
    keep = pd.Series(False, index=reps.index)
    keep_p = pd.Series(False, index=params.index)
    for (model, design), o in found.items():
        last = o.stop_rep if o.stop_rep is not None else _prefix(
            reps[(reps["model"] == model) & (reps["design"] == design)],
            o.settings.max_simulations)[1] - 1
        keep |= (reps["model"] == model) & (reps["design"] == design) & (reps["rep"] <= last)
        if len(params):
            keep_p |= (params["model"] == model) & (params["design"] == design) & \
                (params["rep"] <= last)
    return reps[keep].reset_index(drop=True), params[keep_p].reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------


def judge(reps: pd.DataFrame, params: pd.DataFrame, settings: Sequential, sampler=None):
    """The calibration (:class:`sbc.calibration.Calibration`) of a sequential study's tables:
    every statistic on the counted replicates, the look's verdicts at the rest of alpha, and
    the sequential outcome in ``Calibration.sequential``."""
    cells = list(dict.fromkeys(zip(reps["model"], reps["design"])))
    with_u = with_fractional_ranks(params, reps) if len(params) else params
    found = outcomes(reps, with_u, settings, cells)
    reps_c, params_c = counted(reps, params, found)
    look_alpha = sequential.FINAL * settings.alpha / max(len(cells), 1)
    cal = calibrate(reps_c, params_c, alpha=look_alpha, family="cell", sampler=sampler)
    verdicts = {key: _verdict(v, found[key], cal, sampler) for key, v in cal.verdicts.items()}
    return replace(cal, verdicts=verdicts, sequential=found)


def _verdict(v, o: Outcome, cal, sampler=None):
    """The look's verdict ``v`` of one cell, adjusted to its sequential outcome: a stop on a
    failure is attributed, and advised on, by the same engine as a fixed study's failure."""
    if o.status == "fail":
        def cell(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[(frame["model"] == o.model) & (frame["design"] == o.design)] \
                if len(frame) else frame

        groups = cell(cal.groups)
        rows = groups[groups["group"].isin(o.rejected)]
        diag = cell(cal.diagnostics).iloc[0].to_dict()
        cause = attribute(rows, cell(cal.groups_clean), cell(cal.scalars), diag, cal.alpha) \
            if len(rows) else Cause("undetermined", "stopped by the sequential test")
        tags = tuple(t for t in v.warnings if t != "low power")
        names = tuple(groups["group"]) if len(groups) else ()
        return Verdict("fail", f"{o.sentence()} Cause: {cause.kind} ({cause.evidence}).",
                       o.rejected, recommendation(diag, sampler, names, cause.kind), tags,
                       cause, v.power)
    if o.status == "running":
        return Verdict("inconclusive", o.sentence(), (), "", (), Cause(
            "undetermined", "the sequential study has not reached a stopping point"), v.power)
    power = o.point.power.get("shift", v.power) if o.point else v.power
    tags = tuple(t for t in v.warnings if t != "low power")
    if v.status == "pass" and o.point and any(p < o.settings.power
                                               for p in o.point.power.values()) \
            and (o.point.n is None or o.fits < o.point.n):
        tags += ("low power",)
    return replace(v, reason=f"{v.reason} {o.sentence()}", warnings=tags, power=power)


# --------------------------------------------------------------------------------------
# During a run
# --------------------------------------------------------------------------------------


def record_ranks(record) -> dict[str, tuple[str, float]]:
    """{scalar name: (group, fractional rank)} of one ok record: the values
    :func:`sbc.calibration.with_fractional_ranks` gives its rows of the parameters table
    (the same keyed offsets), without building the tables (a run calls this per record)."""
    p, quantities = record["parameters"], record.get("quantities") or {}
    names = list(p["name"]) + list(quantities)
    groups = list(p["group"]) + list(quantities)
    rank = np.array(list(p["rank"]) + [q["rank"] for q in quantities.values()], dtype=float)
    n = len(names)
    keys = pd.DataFrame({"rank": rank, "n_ranked": np.full(n, float(record["n_ranked"])),
                         "seed_entropy": np.full(n, record["seed_entropy"], dtype=np.int64),
                         "model": [record["model"]] * n, "design": [record["design"]] * n,
                         "rep": np.full(n, record["rep"], dtype=np.int64), "name": names})
    u = stats.table_fractional_ranks(keys)
    return {name: (group, float(x)) for name, group, x in zip(names, groups, u)}


class Monitor:
    """Watches the records of a running sequential study and says which cells are decided.

    ``add(records)`` after each batch (and once with the stored records when a run
    resumes); ``decided(model, design)``.  Each record's fractional ranks are computed once,
    when it arrives; decisions come from :func:`decide_cell`, as in :func:`judge` on the
    finished store.
    """

    def __init__(self, settings: Sequential, cells: list[tuple[str, str]]):
        self.settings = settings
        self.cells = list(cells)
        # cell -> rep -> None (a failed fit) or {scalar name: (group, u)}
        self._ranks: dict[tuple[str, str], dict[int, dict | None]] = {c: {} for c in cells}
        self._prefix = dict.fromkeys(self.cells, 0)
        self._ok: dict[tuple[str, str], list[int]] = {c: [] for c in self.cells}
        self._names: dict[tuple[str, str], dict[str, str]] = {c: {} for c in self.cells}
        self._rows: dict[tuple[str, str], list] = {c: [] for c in self.cells}  # u, in order
        self.found: dict[tuple[str, str], Outcome] = {}

    def add(self, records) -> None:
        touched = set()
        for r in records:
            cell = (r["model"], r["design"])
            if cell not in self._ranks:
                continue
            self._ranks[cell][int(r["rep"])] = record_ranks(r) if r["status"] == "ok" else None
            touched.add(cell)
        for cell in touched:
            self._check(cell)

    def _check(self, cell) -> None:
        if cell in self.found and self.found[cell].decided:
            return
        have = self._ranks[cell]
        length = self._prefix[cell]
        start = length
        limit = self.settings.max_simulations  # replicates from here on are never counted
        while length < limit and length in have:
            if have[length] is not None:
                self._ok[cell].append(length)
            length += 1
        if length == start and cell in self.found:
            return  # the prefix did not grow: nothing new to decide on
        self._prefix[cell] = length
        ok = self._ok[cell]
        names, rows = self._names[cell], self._rows[cell]
        new = {n: g for rep in ok[len(rows):] for n, (g, _) in have[rep].items()
               if n not in names}
        if new:  # a scalar not seen before: lay every row out again (rare)
            names.update(new)
            rows.clear()
        columns = sorted(names)
        rows.extend(np.array([have[rep].get(n, (None, np.nan))[1] for n in columns])
                    for rep in ok[len(rows):])
        block = np.array(rows, dtype=float).reshape(len(ok), len(columns))
        groups = {}
        for g in sorted(set(names.values())):
            groups[g] = block[:, [i for i, n in enumerate(columns) if names[n] == g]]
        self.found[cell] = decide_cell(*cell, np.asarray(ok, dtype=int), length, groups,
                                       np.fromiter(have, dtype=int), self.settings,
                                       len(self.cells))

    def decided(self, model: str, design: str) -> bool:
        o = self.found.get((model, design))
        return o is not None and o.decided
