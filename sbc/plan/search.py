"""The search over a plan's design space, written against an ``evaluate`` callback (design ->
its :class:`DesignResult` with a status and a calibration verdict), so that it can be tested
without fitting anything.

Adaptive: probe the undecided design cheaper than the best pass so far that splits the rest
most evenly (a pass rules out everything costlier, a fail everything it dominates), until
nothing cheaper is undecided; then evaluate the runners-up.  Grid: evaluate every design.
A design is recommendable only when it passes and its SBC verdict is "calibrated".

An inconclusive design (its interval still straddles the required probability after
``max_simulations``) also settles the designs it dominates, as "inferred inconclusive": their
probability of success is no higher, so the same number of simulations is no more likely to
show them passing.  Where success levels off near the required probability (targets that
the prior, not the design, limits) each of them would otherwise cost ``max_simulations``
simulations and decide nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sbc.design import Design
from sbc.plan.criteria import dominated


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
    extra: dict = field(default_factory=dict)  # a plan kind's own columns, after the rest

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
        out.update(self.extra)
        return out


@dataclass
class PlanResult:
    """What a plan run returns (both kinds): the recommended design (None when no design
    meets the targets), the table of evaluated designs, the fits or screens used, the
    seconds it took and the output directory."""

    recommended: DesignResult | None
    table: pd.DataFrame
    fits: dict
    seconds: float
    out: Path


def where_to_run(plan, workers, scheduler, tls):
    """A plan of either kind, the local workers and the checked scheduler address it runs
    with: the caller's ``workers`` beat the file's scheduler and SLURM table; certificates
    without a ``tls://`` address, and a ``tls://`` address without certificates, are refused
    before any store opens."""
    from sbc.dispatch import TLS, check_how

    check_how(workers=workers, scheduler=scheduler)  # counts; one of the two at most
    if workers is not None:
        plan = dataclasses.replace(plan, scheduler=None, cluster=None)
    workers = workers if workers is not None else plan.workers
    return plan, workers, (tls or TLS()).check_address(scheduler or plan.scheduler)


class Search:
    """The search state: one :class:`DesignResult` per design of the space.

    ``results``: design -> result (status "not evaluated" until decided); ``monotone``: the
    dimensions in which success can only grow; ``evaluate(design)`` measures one design and
    returns its result (the same object as ``results[design]``).
    """

    def __init__(self, results: dict[Design, DesignResult], monotone: tuple[str, ...],
                 evaluate: Callable[[Design], DesignResult], *, strategy: str = "adaptive",
                 runners_up: int = 0):
        self.results, self.monotone, self.evaluate = results, monotone, evaluate
        self.strategy, self.runners_up = strategy, runners_up

    def run(self) -> DesignResult | None:
        """Find the cheapest passing, calibrated design; returns it (None if there is none)."""
        if self.strategy == "grid":
            for design in sorted(self.results, key=lambda d: (self.results[d].cost, d)):
                self.evaluate(design)
            return self.best()
        while True:
            best = self.best()
            open_ = [r for r in self.results.values() if r.status == "not evaluated"
                     and (best is None or r.cost < best.cost)]
            if not open_:
                break
            probe = max(open_, key=lambda r: (self.split(r, open_), -r.cost))
            self.evaluate(probe.design)
            self.infer(probe)
        best = self.best()
        if best is not None:
            later = [r for r in sorted(self.results.values(), key=lambda r: (r.cost, r.design))
                     if r.status == "not evaluated"][:self.runners_up]
            for r in later:
                self.evaluate(r.design)
                self.infer(r)
        for r in self.results.values():
            if r.status == "not evaluated":
                r.note = "not needed: costlier than the recommendation" if best else \
                    "not reached"
        return self.best()

    def split(self, probe: DesignResult, open_: list[DesignResult]) -> int:
        """How many open designs a probe decides in the worse case (pass or fail)."""
        if_fail = sum(dominated(r.design, probe.design, self.monotone) for r in open_)
        if_pass = sum(r.cost >= probe.cost for r in open_)
        return min(if_fail, if_pass)

    def infer(self, res: DesignResult) -> None:
        """Monotone inference from an evaluated design to the designs it (is) dominated by."""
        for other, r in self.results.items():
            if r.status != "not evaluated" or other == res.design:
                continue
            if res.status == "fail" and dominated(other, res.design, self.monotone):
                r.status, r.note = "inferred fail", f"no larger than {res.design.label}"
            elif res.status == "inconclusive" and dominated(other, res.design, self.monotone):
                r.status = "inferred inconclusive"
                r.note = f"no larger than {res.design.label} (inconclusive)"
            elif res.status == "pass" and recommendable(res) and \
                    dominated(res.design, other, self.monotone):
                r.status, r.note = "inferred pass", f"at least {res.design.label}"

    def best(self) -> DesignResult | None:
        ok = [r for r in self.results.values() if recommendable(r)]
        return min(ok, key=lambda r: (r.cost, r.design.n_rows)) if ok else None


def recommendable(res: DesignResult) -> bool:
    return res.status == "pass" and res.calibration == "calibrated"
