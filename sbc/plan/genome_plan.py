"""A genome plan (``kind = "genome"``): the kind's part of :class:`sbc.plan.planner.Planner`.
A replicate is a simulated screen fitted by the shortcut
(:func:`sbc.plan.genome_screen.run_screen`), one small record per screen in the store
(OUT/screens/DESIGN/rNNNNNN.json, resumable); besides plan.csv and plan.json (every plan's),
it writes summary.md (:func:`sbc.render.genome_plan_summary`) and plan_cost.png (P(success)
against cost).

Each design's SBC verdict comes from the calibration engine, as every plan's does
(:func:`sbc.plan.genome_screen.screen_tables`), on its own screens: per screen, the PIT of one gene's
effect and of one gene x cell-line deviation (gene ``rep mod n_pit``, never a candidate, so
the ranks are independent across screens), and of one candidate's selective effect when the
candidates' effects come from the analysis prior.  The non-candidates' posteriors do not
depend on the candidates' truths (the hyperparameters are fitted without candidates), so
their ranks are valid SBC ranks even when the plan fixes the candidates' effect.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from pathlib import Path

import numpy as np

from sbc.numerics import fingerprint
from sbc.plan.criteria import success_interval
from sbc.plan.genome import ScreenDesign
from sbc.plan.genome_config import GenomePlan
from sbc.plan.genome_pilot import apply_pilot
from sbc.plan.genome_screen import run_screen, screen_problem, screen_tables
from sbc.plan.output import jsonable
from sbc.plan.planner import Planner, calibration_verdict
from sbc.plan.search import DesignResult
from sbc.plots import plan_cost_figure
from sbc.render import genome_plan_summary
from sbc.runner import manifest as make_manifest

# the modules whose code decides a screen's record (with the model's): a change in any of
# them changes the plan's fingerprint, so old and new results are never mixed
SHORTCUT_SOURCES = ("genome.py", "genome_fit.py", "genome_screen.py")


class GenomePlanner(Planner):
    """A genome plan (``kind = "genome"``): the kind's part of
    :class:`sbc.plan.planner.Planner`.  A replicate is a simulated screen fitted by the
    shortcut (:func:`sbc.plan.genome_screen.run_screen`), stored as one small record."""

    plan_type = GenomePlan
    unit = "screens"
    kind = "genome"

    def __init__(self, plan: GenomePlan, out: Path, workers: int | None,
                 scheduler: str | None, stream=None, tls=None):
        # a [pilot] replaces the priors it informs (design and analysis) before anything runs
        plan, self.pilot = apply_pilot(plan)
        super().__init__(plan, out, workers, scheduler, stream, tls)
        self.settings = plan.settings()
        self.screens: dict[str, dict[int, dict]] = {}
        self.new = 0

    def new_result(self, design: ScreenDesign) -> DesignResult:
        """A design's result; its own columns: the guides, depth and reads, the targets'
        metrics (mean and Monte Carlo standard error over its screens), the realised false
        discovery proportion and the coverage of 95 % intervals."""
        return DesignResult(design, self.plan.cost_of(design), extra={
            "guides": design.guides, "depth": design.depth,
            "million_reads": design.million_reads, "fdp_at_0.05": math.nan,
            "coverage95": math.nan})

    def manifest(self) -> dict:
        from sbc.models import crispr_guides

        plan = jsonable(self.plan.to_dict())
        fixed = {k: plan[k] for k in ("seed", "model", "targets", "n_candidates", "fraction",
                                      "selective_effect", "priors", "library_sd", "t0_depth",
                                      "hyper_genes", "hyper_draws", "n_pit")}
        if self.pilot is not None:  # the priors above are the pilot's; the file's content too
            fixed.update(pilot=plan["pilot"], pilot_sha256=self.pilot.sha256)
        source = Path(crispr_guides.__file__).read_bytes() + b"".join(
            Path(__file__).with_name(name).read_bytes() for name in SHORTCUT_SOURCES)
        digest = hashlib.sha256(source).hexdigest()[:16]
        return make_manifest(
            fingerprint=fingerprint({"plan": fixed, "source": digest}), kind="genome-plan",
            study={**fixed, "name": self.plan.name, "models": [self.plan.model],
                   "designs": [d.label for d in self.plan.designs()]},
            plan=plan, model_digests={"model": digest},
            model_refs={self.plan.model: self.plan.model})

    def prepare(self) -> None:
        """The screens already stored (a damaged record is quarantined and simulated again),
        and the pilot's posterior beside them."""
        n_targets = len(self.plan.targets)
        for record in self.store.iter_screens(lambda r: screen_problem(r, n_targets),
                                              quarantine=True):
            self.screens.setdefault(record["design"], {})[record["rep"]] = record
        if self.pilot is not None:
            self.store.write_text("pilot_posterior.json",
                                  json.dumps(jsonable(self.pilot.to_dict()), indent=2))
            self.log(self.pilot.summary())

    def stored(self) -> int:
        return sum(len(v) for v in self.screens.values())

    def simulate(self, design: ScreenDesign, n: int) -> None:
        """Screens 0..n-1 of ``design`` stored (only the missing ones simulated)."""
        have = self.screens.setdefault(design.label, {})
        todo = [r for r in range(n) if r not in have]
        if not todo:
            return
        start = time.monotonic()

        def keep(record: dict) -> None:
            self.store.write_screen(record)
            have[record["rep"]] = record
            self.new += 1

        self.runner.map(run_screen, [(design, r, self.settings) for r in todo], keep)
        rate = (time.monotonic() - start) / len(todo)
        self.log(f"{design.label}: {len(todo)} screens in {time.monotonic() - start:.0f} s "
                 f"({rate:.1f} s per screen with the workers), {self.new} new in all")

    def measure(self, design: ScreenDesign, n: int) -> None:
        """P(success) with its interval, the targets' metrics (mean and Monte Carlo standard
        error), the realised FDP, coverage and RMSE from the first ``n`` screens."""
        res = self.results[design]
        records = [self.screens[design.label][r] for r in range(n)]
        success = np.array([r["success"] for r in records], float)
        res.n = len(records)
        res.probability, res.lower, res.upper = success_interval(success,
                                                                 self.plan.search.confidence)
        res.per_target = [float(np.mean([r[f"met{i}"] for r in records]))
                          for i in range(len(self.plan.targets))]
        design_columns = {k: res.extra[k] for k in ("guides", "depth", "million_reads")}
        metrics = {}
        for i in range(len(self.plan.targets)):
            values = np.array([r[f"metric{i}"] for r in records
                               if r[f"metric{i}"] is not None], float)
            se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            metrics[f"metric{i}"] = float(values.mean()) if len(values) else math.nan
            metrics[f"metric{i}_se"] = float(se)
        res.extra = {**design_columns, **metrics,
                     "fdp_at_0.05": float(np.mean([r["fdp05"] for r in records])),
                     "coverage95": float(np.mean([r["coverage95"] for r in records]))}
        res.rmse = float(np.mean([r["rmse_beta"] for r in records]))
        res.fit_seconds = float(np.median([r["simulate_seconds"] + r["fit_seconds"]
                                           for r in records]))

    def calibrate(self, design: ScreenDesign, n: int) -> None:
        res = self.results[design]
        records = [self.screens[design.label][r] for r in range(n)]
        reps, params = screen_tables(records, self.plan.model, design.label,
                                     self.settings.calibrated_stream)
        res.calibration_n = len(records)
        res.calibration, res.calibration_p, res.calibration_failing = calibration_verdict(
            reps, params, self.plan.search.alpha)

    def fits(self) -> dict:
        plan = self.plan
        used = sum(r.n for r in self.results.values())
        full = plan.search.max_simulations * len(self.results)
        return {
            "used": used, "new": self.new, "full_grid": full, "designs": len(self.results),
            "saved_share": 1 - used / full if full else 0.0,
            "design_prior": ("crispr_guides with the pilot's priors "
                             f"({', '.join(self.pilot.used)} from {plan.pilot.data})"
                             if self.pilot else "crispr_guides (its prior)") + (
                f", candidates' selective effect fixed at {plan.selective_effect:g}"
                if plan.selective_effect is not None else "")}

    def plan_json(self) -> dict:
        return {"pilot": self.pilot.to_dict() if self.pilot else None}

    def write_pages(self, table, recommended, fits: dict, seconds: float) -> None:
        """plan_cost.png (P(success) against cost) and summary.md."""
        plan = self.plan
        fig = plan_cost_figure(table, plan.probability, plan.cost.unit,
                               recommended.design.label if recommended else None)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self.store.write_bytes("plan_cost.png", buf.getvalue())
        self.store.write_text("summary.md", genome_plan_summary(plan, table, recommended, fits,
                                                                seconds, self.pilot,
                                                                screens=self.screens))

