"""Running a plan of either kind: one :class:`Planner` on the replicate runner
(:class:`sbc.runner.Runner`: the store, its lock, batching and the Dask session), the
sequential looks at each design, the search (:class:`sbc.plan.search.Search`) and the files
every plan writes (:func:`sbc.plan.output.write_plan_files`).

A plan kind is a subclass that says what a replicate of one design is and how it is judged
(the protocol below): :class:`sbc.plan.model_plan.ModelPlanner` (a Bambi/PyMC model, one
MCMC fit per replicate, ``sbc plan`` on an ordinary plan file) and
:class:`sbc.plan.genome_plan.GenomePlanner` (a genome-wide guide-level screen through the
shortcut, ``kind = "genome"``).  ``Planner(plan, out, ...)`` returns the planner of the
plan's kind; :func:`run_plan` runs either.

The protocol, in the order the planner calls it:

- ``manifest()``: what identifies the plan's results (its fingerprint, for the store);
- ``prepare()``: once the store is open (read stored screens, fit a pilot);
- ``new_result(design)``: the empty :class:`~sbc.plan.search.DesignResult` of a design;
- ``admit(design)``: ``None``, or why the design is not run (too large);
- ``simulate(design, n)``: replicates 0..n-1 of a design stored (only missing ones run);
- ``measure(design, n)``: P(success) with its interval and the precision columns from them;
- ``calibrate(design, n)``: the design's SBC verdict;
- ``fits()``: the replicates used, new and saved; ``write_pages(...)``: the kind's pages.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import ClassVar

import pandas as pd

from sbc.calibration import calibrate
from sbc.plan.criteria import plan_decision
from sbc.plan.output import result_table, write_plan_files
from sbc.plan.search import DesignResult, PlanResult, Search, where_to_run
from sbc.runner import Runner


def calibration_verdict(reps: pd.DataFrame, params: pd.DataFrame, alpha: float,
                        sampler=None) -> tuple[str, float, str]:
    """SBC verdict of one design from its stored fits: (verdict, smallest Holm-adjusted p,
    failing groups), from the one engine (:func:`sbc.calibration.calibrate`, family "cell":
    each design is judged on its own at level ``alpha``).  "calibrated" / "miscalibrated" /
    "not checked" are the engine's pass / fail / inconclusive."""
    if params.empty or reps.empty:
        return "not checked", math.nan, ""
    cal = calibrate(reps, params, alpha=alpha, family="cell", sampler=sampler)
    (verdict,) = cal.verdicts.values()
    word = {"pass": "calibrated", "fail": "miscalibrated"}.get(verdict.status, "not checked")
    p = float(cal.groups["p_holm"].min()) if len(cal.groups) else math.nan
    return word, p, ", ".join(verdict.failing)


class Planner:
    """Runs a plan: the store (through :class:`sbc.runner.Runner`), the evaluation of each
    design and the search.  ``Planner(plan, ...)`` makes the planner of the plan's kind; use
    it as a context manager (or call :meth:`open` and :meth:`close`), or call :meth:`run`."""

    #: the plan type (config class) each kind runs, filled by the subclasses
    kinds: ClassVar[dict[type, type[Planner]]] = {}
    #: the plan type a subclass runs; the word for one replicate; plan.json's ``kind``
    plan_type: ClassVar[type | None] = None
    unit: ClassVar[str] = "simulations"
    kind: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.plan_type is not None:
            Planner.kinds[cls.plan_type] = cls

    def __new__(cls, plan, *args, **kwargs):
        if cls is Planner:
            cls = planner_class(plan)
        return super().__new__(cls)

    def __init__(self, plan, out: Path, workers: int | None, scheduler: str | None,
                 stream=None, tls=None):
        self.plan, self.out = plan, Path(out)
        self.workers, self.scheduler, self.tls = workers, scheduler, tls
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.runner: Runner | None = None
        self.results = {d: self.new_result(d) for d in plan.designs()}

    # --- the kind's part (see the module docstring) -------------------------------------
    def manifest(self) -> dict:
        raise NotImplementedError

    def runner_options(self) -> dict:
        return {}

    def prepare(self) -> None:
        """Once the store is open: read or fit what the designs share."""

    def new_result(self, design) -> DesignResult:
        return DesignResult(design, self.plan.cost(design))

    def admit(self, design) -> str | None:
        return None

    def simulate(self, design, n: int) -> None:
        raise NotImplementedError

    def measure(self, design, n: int) -> None:
        raise NotImplementedError

    def calibrate(self, design, n: int) -> None:
        raise NotImplementedError

    def fits(self) -> dict:
        raise NotImplementedError

    def plan_json(self) -> dict:
        """Fields of plan.json beyond the ones every plan writes."""
        return {}

    def write_pages(self, table, recommended, fits: dict, seconds: float) -> None:
        raise NotImplementedError

    # --- the store ----------------------------------------------------------------------
    def open(self) -> None:
        plan = self.plan
        self.runner = Runner(self.out, self.manifest(), workers=self.workers,
                             scheduler=self.scheduler, cluster=plan.cluster, tls=self.tls,
                             stream=self.stream, **self.runner_options())
        self.runner.__enter__()
        try:
            self.prepare()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.runner is not None:
            self.runner.__exit__(None, None, None)
            self.runner = None

    def __enter__(self) -> Planner:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def store(self):
        return self.runner.store

    @property
    def records(self) -> dict[tuple[str, str, int], dict]:
        return self.runner.records if self.runner is not None else {}

    @property
    def new_fits(self) -> int:
        return self.runner.new_fits if self.runner is not None else 0

    def log(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[sbc plan {elapsed:5.0f}s] {text}", file=self.stream, flush=True)

    # --- evaluation and search ----------------------------------------------------------
    def evaluate(self, design) -> DesignResult:
        """Sequential looks at one design (batches of ``search.batch`` replicates) until the
        Wilson interval of P(success) clears the required probability or
        ``search.max_simulations`` is reached (grid: all of them at once); then its SBC
        verdict."""
        plan, s = self.plan, self.plan.search
        res = self.results[design]
        res.note = ""  # a runner-up may have been inferred meanwhile: it is measured now
        refused = self.admit(design)
        if refused:
            res.status, res.note = "too large", refused
            self.log(f"{design.label}: skipped, {refused}")
            return res
        n = 0
        while True:
            n = min(n + s.batch, s.max_simulations) if s.strategy == "adaptive" \
                else s.max_simulations
            self.simulate(design, n)
            self.measure(design, n)
            verdict = plan_decision(res.lower, res.upper, plan.probability)
            if s.strategy == "adaptive" and verdict is not None:
                res.status = verdict
                break
            if n >= s.max_simulations:
                res.status = verdict or "inconclusive"
                break
        self.calibrate(design, n)
        self.log(f"{design.label} (cost {res.cost:.4g}): P(success) = {res.probability:.2f} "
                 f"[{res.lower:.2f}, {res.upper:.2f}] from {res.n} {self.unit} -> "
                 f"{res.status}; SBC {res.calibration}")
        return res

    def search(self) -> DesignResult | None:
        """The cheapest passing, calibrated design (None if there is none)."""
        s = self.plan.search
        return Search(self.results, self.plan.monotone, self.evaluate, strategy=s.strategy,
                      runners_up=s.runners_up).run()

    def run(self) -> PlanResult:
        """Run (or resume) the plan: search, then plan.csv, plan.json and the kind's pages,
        written under the store's lock."""
        with self:
            self.log(f"{self.plan.name}: {len(self.results)} candidate designs, "
                     f"{self.stored()} {self.unit} already stored, {self.runner.where()}")
            recommended = self.search()
            self.runner.close_session()
            table = result_table(list(self.results.values()))
            fits = self.fits()
            seconds = time.monotonic() - self.started
            write_plan_files(self.store, self.plan, table, recommended, fits, seconds,
                             kind=self.kind, **self.plan_json())
            self.write_pages(table, recommended, fits, seconds)
        return PlanResult(recommended, table, fits, seconds, self.out)

    def stored(self) -> int:
        return len(self.records)


def planner_class(plan) -> type[Planner]:
    """The planner of a plan's kind (the one place that tells plan kinds apart by type)."""
    # the kinds register themselves when their modules load: sbc/plan/__init__.py imports
    # both, and any import of this module runs the package's __init__ first
    for plan_type, cls in Planner.kinds.items():
        if isinstance(plan, plan_type):
            return cls
    raise TypeError(f"not a plan: {type(plan).__name__} (expected one of "
                    f"{', '.join(t.__name__ for t in Planner.kinds)})")


def run_plan(plan, out: str | Path, *, workers: int | None = None,
             scheduler: str | None = None, stream=None, tls=None) -> PlanResult:
    """Run (or resume) a plan of either kind into ``out``: plan.csv, plan.json and the
    kind's pages (report.html; a genome plan's summary.md and plan_cost.png).  ``workers``
    beat the plan file's scheduler and cluster; ``tls``: certificates
    (:class:`sbc.dispatch.TLS`) for a ``tls://`` scheduler."""
    plan, workers, scheduler = where_to_run(plan, workers, scheduler, tls)
    return Planner(plan, Path(out), workers, scheduler, stream, tls).run()
