"""Design-size planning: the cheapest screen that meets a precision or decision target.

    plan file (config) -> candidate designs (cost order) -> search (adaptive or grid)
    -> per design: simulated screens through the replicate runner (planner)
    -> target success per replicate from stored posterior quantiles (criteria)
    -> Wilson interval -> pass / fail / more simulations -> SBC verdict -> recommendation
    -> plan.csv, plan.json, report.html (output)

Modules: :mod:`~sbc.plan.config` (the plan file), :mod:`~sbc.plan.criteria` (pure success
criteria), :mod:`~sbc.plan.search` (the search, against an ``evaluate`` callback),
:mod:`~sbc.plan.pilot` (a pilot screen as the design prior), :mod:`~sbc.plan.planner`
(running a plan of either kind: one ``Planner`` on the replicate runner),
:mod:`~sbc.plan.model_plan` and :mod:`~sbc.plan.genome_plan` (the two kinds),
:mod:`~sbc.plan.output` (what it writes).

Called, the package plans a screen: ``sbc.plan("plan.toml")`` is
:func:`~sbc.plan.results.plan_screen`, which returns a :class:`~sbc.plan.results.PlanResults`.
(A package and a function cannot share a name otherwise; the package keeps its modules.)
"""

import sys
import types

from sbc.plan.config import CostModel, Pilot, Plan, SearchSettings, Target, load_plan, parse_plan
from sbc.plan.criteria import (INTERVALS, dominated, element_success, plan_decision,
                               replicate_success, success_interval)
from sbc.plan.pilot import moment_matched_priors, pilot_frame
from sbc.plan.genome_plan import GenomePlanner
from sbc.plan.model_plan import ModelPlanner
from sbc.plan.planner import Planner, calibration_verdict, run_plan
from sbc.plan.results import PlanResults, plan_screen
from sbc.plan.search import DesignResult, PlanResult, Search

__all__ = [
    "INTERVALS",
    "CostModel",
    "DesignResult",
    "GenomePlanner",
    "ModelPlanner",
    "Pilot",
    "Plan",
    "PlanResult",
    "PlanResults",
    "Planner",
    "Search",
    "SearchSettings",
    "Target",
    "calibration_verdict",
    "dominated",
    "element_success",
    "load_plan",
    "moment_matched_priors",
    "parse_plan",
    "pilot_frame",
    "plan_decision",
    "plan_screen",
    "replicate_success",
    "run_plan",
    "success_interval",
]


class _CallablePackage(types.ModuleType):
    def __call__(self, plan, out=None, **kwargs):
        """Plan a screen (:func:`sbc.plan.results.plan_screen`)."""
        return plan_screen(plan, out, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

