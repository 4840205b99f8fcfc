"""Running a genome plan: simulated screens of each design through the shortcut
(:mod:`sbc.plan.genome_screen`) on the Dask session of :mod:`sbc.dispatch`, one small record per
screen in the store (OUT/screens/DESIGN/rNNNNNN.json, resumable), the same search as
``sbc plan`` (:class:`sbc.plan.search.Search`), and the outputs: plan.csv, plan.json,
summary.md and plan_cost.png (P(success) against cost).

Each design's SBC verdict comes from its own screens: per screen, the PIT of one gene's
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
import pandas as pd

from sbc import stats
from sbc.verdicts import MIN_FITS
from sbc.numerics import fingerprint
from sbc.plan.criteria import plan_decision, success_interval
from sbc.plan.genome import ScreenDesign
from sbc.plan.genome_config import GenomePlan
from sbc.plan.genome_pilot import apply_pilot
from sbc.plan.genome_screen import run_screen
from sbc.plan.output import jsonable, result_table, write_plan_files
from sbc.plan.search import DesignResult, PlanResult, Search, where_to_run
from sbc.plots import plan_cost_figure
from sbc.runner import Runner
from sbc.runner import manifest as make_manifest

# the modules whose code decides a screen's record (with the model's): a change in any of
# them changes the plan's fingerprint, so old and new results are never mixed
SHORTCUT_SOURCES = ("genome.py", "genome_fit.py", "genome_screen.py")
RECORD_NUMBERS = ("coverage95", "reliability", "reliability_var", "fdp05", "rmse_beta",
                  "simulate_seconds", "fit_seconds")
PIT_GROUPS = ("pit_beta", "pit_u", "pit_gamma")


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


def screen_problem(record: dict, n_targets: int) -> str | None:
    """Why a stored screen record is not one this plan wrote, or None."""
    if not isinstance(record.get("success"), bool):
        return "its 'success' is not true/false"
    for i in range(n_targets):
        if not isinstance(record.get(f"met{i}"), bool):
            return f"its 'met{i}' is not true/false"
        value = record.get(f"metric{i}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"its 'metric{i}' is not a number"
    for key in RECORD_NUMBERS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"its '{key}' is not a number"
    for key in PIT_GROUPS:
        values = record.get(key)
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                for v in values):
            return f"its '{key}' is not a list of numbers in [0, 1]"
    return None


def design_verdict(records: list[dict], alpha: float, gamma: bool) -> tuple[str, float, str, int]:
    """(calibrated / miscalibrated / not checked, smallest Holm-adjusted p, failing groups,
    screens) from one PIT per screen and group (see the module docstring)."""
    groups = {"beta_g": "pit_beta", "u": "pit_u"}
    if gamma:
        groups["gamma"] = "pit_gamma"
    pits = {}
    for name, key in groups.items():
        values = [r[key][r["rep"] % len(r[key])] for r in records if r[key]]
        if len(values) >= MIN_FITS:
            pits[name] = np.asarray(values)
    if not pits:
        return "not checked", math.nan, "", len(records)
    p = np.array([stats.uniformity_test(u).p_value for u in pits.values()])
    adjusted = stats.holm(p)
    failing = [name for name, q in zip(pits, adjusted) if q < alpha]
    return ("miscalibrated" if failing else "calibrated", float(adjusted.min()),
            ", ".join(failing), len(records))


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
        store.write_text("summary.md", summary_text(plan, table, recommended, fits, seconds,
                                                    self.pilot))

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


def summary_text(plan: GenomePlan, table: pd.DataFrame, recommended, fits: dict,
                 seconds: float, pilot=None) -> str:
    """The plan's outcome as Markdown: the recommendation, the targets, the priors a pilot
    gave, the evaluated designs."""
    unit = plan.cost.unit
    lines = [f"# {plan.name}", "", plan.description, ""]
    if recommended is None:
        lines.append("No design meets the targets with the stated confidence.")
    else:
        r = recommended
        d = r.design
        lines.append(f"Recommended: **{d.cell_lines} cell lines x {d.reps} replicates, "
                     f"{d.guides} guides per gene, {d.depth} reads per guide, {d.genes:,} "
                     f"genes**; cost {r.cost:.4g} {unit}; P(success) = {r.probability:.2f} "
                     f"[{r.lower:.2f}, {r.upper:.2f}] from {r.n} simulated screens; SBC "
                     f"{r.calibration}.")
    lines += ["", "Targets (all must be met in a screen):", ""]
    lines += [f"{i}. {t.describe()}" for i, t in enumerate(plan.targets)]
    if pilot is not None:
        from sbc.plan.genome_pilot import describe_prior

        lines += ["", f"Priors (design and analysis) from the pilot `{plan.pilot.data}` "
                  f"({pilot.format}); the rest are the plan's:", "",
                  "| hyperparameter | plan's prior | pilot's prior | pilot posterior mean "
                  "[5 %, 95 %] |", "|---|---|---|---|"]
        for name, post in pilot.posterior.items():
            lines.append(f"| {name} | {describe_prior(pilot.base[name])} | "
                         + (describe_prior(pilot.priors[name]) if name in pilot.priors
                            else "(not used)")
                         + f" | {post['mean']:.3g} [{post['q05']:.3g}, {post['q95']:.3g}] |")
        if "library_sd" in pilot.used:
            lines.append(f"| library sd | {pilot.library['replaced_library_sd']:.3g} | "
                         f"{plan.library_sd:.3g} | |")
        lines += [f"- {n}" for n in pilot.notes]
    lines += ["", f"Screens simulated: {fits['used']} ({fits['new']} new) of "
              f"{fits['full_grid']} for the full grid; {seconds:.0f} s.", ""]
    done = table[table["simulations"] > 0]
    cols = ["design", "cost", "status", "simulations", "p_success", "p_lower", "p_upper",
            *[f"metric{i}" for i in range(len(plan.targets))], "fdp_at_0.05", "calibration"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in done[cols].itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                       for v in row) + " |")
    return "\n".join(lines) + "\n"
