"""Running a genome plan: simulated screens of each design through the shortcut
(:func:`sbc.plan.genome_screen.run_screen`) on a :class:`sbc.runner.Runner` (its store, lock
and Dask session), one small record per screen in the store (OUT/screens/DESIGN/rNNNNNN.json,
resumable), the same search as ``sbc plan`` (:class:`sbc.plan.search.Search`), and the
outputs: plan.csv and plan.json (:mod:`sbc.plan.output`), summary.md
(:func:`sbc.render.genome_plan_summary`) and plan_cost.png (P(success) against cost).

Each design's SBC verdict (:func:`sbc.plan.genome_screen.design_verdict`) comes from its own
screens: per screen, the PIT of one gene's
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sbc.numerics import fingerprint
from sbc.plan.criteria import plan_decision, success_interval
from sbc.plan.genome import ScreenDesign
from sbc.plan.genome_config import GenomePlan
from sbc.plan.genome_pilot import apply_pilot
from sbc.plan.genome_screen import design_verdict, run_screen, screen_problem
from sbc.plan.output import jsonable, result_table, write_plan_files
from sbc.plan.search import DesignResult, PlanResult, Search, where_to_run
from sbc.plots import plan_cost_figure
from sbc.runner import Runner
from sbc.render import genome_plan_summary
from sbc.runner import manifest as make_manifest

# the modules whose code decides a screen's record (with the model's): a change in any of
# them changes the plan's fingerprint, so old and new results are never mixed
SHORTCUT_SOURCES = ("genome.py", "genome_fit.py", "genome_screen.py")


@dataclass
class GenomeDesignResult(DesignResult):
    """A design's result with the genome targets' metrics (mean and Monte Carlo standard
    error over its screens), the realised false discovery proportion and the cost parts."""

    metrics: list[tuple[float, float]] = field(default_factory=list)
    fdp: float = math.nan
    coverage: float = math.nan
    million_reads: float = math.nan

    def row(self) -> dict:
        out = super().row()
        d = self.design
        out.update({"guides": d.guides, "depth": d.depth, "million_reads": self.million_reads})
        for i, (mean, se) in enumerate(self.metrics):
            out[f"metric{i}"], out[f"metric{i}_se"] = mean, se
        out.update({"fdp_at_0.05": self.fdp, "coverage95": self.coverage})
        return out


class GenomePlanner:
    """A genome plan's evaluation of designs and search, on a :class:`sbc.runner.Runner`
    (the store, its lock and the Dask session every run uses)."""

    def __init__(self, plan: GenomePlan, out: Path, workers: int | None,
                 scheduler: str | None, stream=None, tls=None):
        # a [pilot] replaces the priors it informs (design and analysis) before anything runs
        plan, self.pilot = apply_pilot(plan)
        self.plan, self.out = plan, Path(out)
        self.runner = Runner(out, self.manifest(), workers=workers, scheduler=scheduler,
                             cluster=plan.cluster, tls=tls, stream=stream)
        self.stream = self.runner.stream
        self.settings = plan.settings()
        self.results = {d: GenomeDesignResult(d, plan.cost_of(d), million_reads=d.million_reads)
                        for d in plan.designs()}
        self.screens: dict[str, dict[int, dict]] = {}
        self.new = 0
        self.started = time.monotonic()

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

    def log(self, text: str) -> None:
        print(f"[sbc plan] {text}", file=self.stream, flush=True)

    def run(self) -> GenomeDesignResult | None:
        plan = self.plan
        with self.runner as runner:
            self.store = store = runner.store
            n_targets = len(plan.targets)
            for record in store.iter_screens(lambda r: screen_problem(r, n_targets),
                                             quarantine=True):
                self.screens.setdefault(record["design"], {})[record["rep"]] = record
            stored = sum(len(v) for v in self.screens.values())
            self.log(f"{plan.name}: {len(self.results)} candidate designs, {stored} simulated "
                     f"screens already stored")
            if self.pilot is not None:
                store.write_text("pilot_posterior.json",
                                 json.dumps(jsonable(self.pilot.to_dict()), indent=2))
                self.log(self.pilot.summary())
            search = Search(self.results, plan.monotone, self.evaluate,
                            strategy=plan.search.strategy, runners_up=plan.search.runners_up)
            recommended = search.run()
            runner.close_session()
            self.write_outputs(recommended)
            return recommended

    def write_outputs(self, recommended) -> None:
        """plan.csv, plan.json, plan_cost.png and summary.md, under the store's lock."""
        plan, store = self.plan, self.store
        self.table = table = result_table(list(self.results.values()))
        used = sum(r.n for r in self.results.values())
        full = plan.search.max_simulations * len(self.results)
        self.fits = fits = {
            "used": used, "new": self.new, "full_grid": full, "designs": len(self.results),
            "saved_share": 1 - used / full if full else 0.0,
            "design_prior": ("crispr_guides with the pilot's priors "
                             f"({', '.join(self.pilot.used)} from {plan.pilot.data})"
                             if self.pilot else "crispr_guides (its prior)") + (
                f", candidates' selective effect fixed at {plan.selective_effect:g}"
                if plan.selective_effect is not None else "")}
        self.seconds = seconds = time.monotonic() - self.started
        write_plan_files(store, plan, table, recommended, fits, seconds, kind="genome",
                         pilot=self.pilot.to_dict() if self.pilot else None)
        fig = plan_cost_figure(table, plan.probability, plan.cost.unit,
                               recommended.design.label if recommended else None)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        store.write_bytes("plan_cost.png", buf.getvalue())
        store.write_text("summary.md", genome_plan_summary(plan, table, recommended, fits,
                                                            seconds, self.pilot))

    def _simulate(self, design: ScreenDesign, reps: range) -> None:
        have = self.screens.setdefault(design.label, {})
        todo = [r for r in reps if r not in have]
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
                 f"({rate:.1f} s per screen with the workers), {self.new} new in all, "
                 f"{time.monotonic() - self.started:.0f} s elapsed")

    def evaluate(self, design: ScreenDesign) -> GenomeDesignResult:
        """Simulate batches of screens until the probability of success is decided (its
        Wilson interval clear of the required probability) or max_simulations is reached."""
        res = self.results[design]
        s = self.plan.search
        n = 0
        while True:
            n = min(n + s.batch, s.max_simulations)
            self._simulate(design, range(n))
            records = [self.screens[design.label][r] for r in range(n)]
            self.summarize(res, records)
            decision = plan_decision(res.lower, res.upper, self.plan.probability)
            if decision or n >= s.max_simulations:
                res.status = decision or "inconclusive"
                break
        verdict, p, failing, n_cal = design_verdict(records, s.alpha,
                                                    self.settings.calibrated_stream)
        res.calibration, res.calibration_p = verdict, p
        res.calibration_failing, res.calibration_n = failing, n_cal
        self.log(f"{design.label} (cost {res.cost:.4g}): P(success) = {res.probability:.2f} "
                 f"[{res.lower:.2f}, {res.upper:.2f}] from {res.n} screens -> {res.status}; "
                 f"SBC {verdict}")
        return res

    def summarize(self, res: GenomeDesignResult, records: list[dict]) -> None:
        success = np.array([r["success"] for r in records], float)
        res.n = len(records)
        res.probability, res.lower, res.upper = success_interval(success,
                                                                 self.plan.search.confidence)
        res.per_target = [float(np.mean([r[f"met{i}"] for r in records]))
                          for i in range(len(self.plan.targets))]
        res.metrics = []
        for i in range(len(self.plan.targets)):
            values = np.array([r[f"metric{i}"] for r in records
                               if r[f"metric{i}"] is not None], float)
            se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            res.metrics.append((float(values.mean()) if len(values) else math.nan, float(se)))
        res.fdp = float(np.mean([r["fdp05"] for r in records]))
        res.coverage = float(np.mean([r["coverage95"] for r in records]))
        res.rmse = float(np.mean([r["rmse_beta"] for r in records]))
        res.fit_seconds = float(np.median([r["simulate_seconds"] + r["fit_seconds"]
                                           for r in records]))


def run_genome_plan(plan: GenomePlan, out: str | Path, *, workers: int | None = None,
                    scheduler: str | None = None, stream=None, tls=None) -> PlanResult:
    """Run (or resume) a genome plan into ``out``: plan.csv, plan.json, summary.md and
    plan_cost.png."""
    plan, workers, scheduler = where_to_run(plan, workers, scheduler, tls)
    planner = GenomePlanner(plan, Path(out), workers, scheduler, stream, tls)
    recommended = planner.run()
    return PlanResult(recommended, planner.table, planner.fits, planner.seconds, Path(out))
