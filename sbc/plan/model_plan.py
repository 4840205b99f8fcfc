"""A plan of a Bambi/PyMC model (the ordinary ``sbc plan``): the kind's part of
:class:`sbc.plan.planner.Planner`: each design's simulated screens as replicate records in
the store, their evaluation against the targets, the SBC verdict of each design from the
calibration engine, and the time projection.

Every fit is an ordinary replicate record in the store (OUT/replicates/...), written by the
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
import math
from pathlib import Path

import numpy as np

from sbc import seeding
from sbc.verdicts import MIN_FITS
from sbc.design import Design
from sbc.errors import ModelError, StudyError
from sbc.numerics import fingerprint
from sbc.plan.config import Plan, Target
from sbc.plan.criteria import (INTERVALS, contraction, element_name, replicate_success,
                               select_quantity, split_quantity, success_interval)
from sbc.plan.pilot import pilot_design_model, pilot_frame
from sbc.plan.planner import Planner, calibration_verdict
from sbc.render import plan_page
from sbc.runner import Job
from sbc.runner import manifest as make_manifest
from sbc.spec import resolve_model


class ModelPlanner(Planner):
    """A plan of a Bambi/PyMC model (``sbc plan`` on an ordinary plan file): model
    references, each design's replicates as ordinary records in the store (the runner keeps
    them), their success, the time projection and the SBC verdict from the calibration
    engine.  ``Planner(plan, ...)`` with a :class:`~sbc.plan.config.Plan` makes one."""

    plan_type = Plan

    def __init__(self, plan: Plan, out: Path, workers: int | None, scheduler: str | None,
                 stream=None, tls=None):
        super().__init__(plan, out, workers, scheduler, stream, tls)
        self.prior_sd: dict[Design, dict[str, float]] = {}

    # --- setup --------------------------------------------------------------------------
    def manifest(self) -> dict:
        """The models resolved and the targets checked (before the store is touched), and
        what identifies the plan's fits."""
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
            base = Path(plan.base_dir)
            files = [base / plan.pilot.data] + \
                ([base / plan.pilot.samples] if plan.pilot.samples else [])
            try:  # a malformed pilot is refused before the store is touched
                pilot_frame(*files, key=plan.pilot.key)
            except StudyError as exc:
                raise StudyError(f"plan '{plan.name}': {exc}") from None
            digest = hashlib.sha256()
            for file in files:
                digest.update(file.read_bytes())
            pilot_digest = digest.hexdigest()[:16]
        self.check_targets(design_ref)
        self.design_ref = design_ref
        sources = {"model": self.fit_ref.source,
                   "design_model": design_ref.source if design_ref else None,
                   "pilot": pilot_digest}
        plan_dict = plan.to_dict()
        # The search settings change which replicates exist, not what any replicate is, so
        # they may change between resumes; the seed, models, sampler and thinning may not.
        fixed = {k: plan_dict[k] for k in ("seed", "model", "design_model", "pilot", "sampler",
                                            "thin")}
        return make_manifest(
            fingerprint=fingerprint({"plan": fixed, "sources": sources}), kind="plan",
            study={**fixed, "name": plan.name, "models": [self.fit_ref.label],
                   "designs": [d.label for d in plan.designs()]},
            plan=plan_dict,
            model_digests={"model": self.fit_ref.digest,
                           "design_model": design_ref.digest if design_ref else None,
                           "pilot": pilot_digest},
            model_refs={self.fit_ref.label: self.fit_ref.ref})

    def runner_options(self) -> dict:
        return {"batch_size": self.plan.batch_size, "keep_records": True}

    def prepare(self) -> None:
        if self.plan.pilot:
            self.design_ref = pilot_design_model(self.plan, self.fit_ref, self.store,
                                                 self.stream)
        # Label of the stream whose truths come from the design prior (= the analysis
        # stream when no separate design prior is given).
        if self.design_ref is None:
            self.power_ref = self.fit_ref
        else:
            self.power_ref = dataclasses.replace(
                self.fit_ref, label=f"{self.fit_ref.label}~{self.design_ref.label}")

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
    def ensure(self, ref, simulate_ref, design: Design, n: int) -> None:
        """Make sure replicates 0..n-1 of (ref, design) are stored; fit only missing ones."""
        plan = self.plan
        counts = self.runner.ensure([Job(ref, design, n, plan.sampler, plan.thin, plan.seed,
                                         simulate=simulate_ref)], progress=False)
        if counts.lost_batches:
            raise StudyError(f"{counts.lost_batches} batches of design {design.label} could not "
                             "run; the stored fits are kept: run the same command again to "
                             "resume")

    def tables(self, label: str, design: Design, n: int | None = None):
        from sbc.record import records_to_tables

        recs = [r for (m, d, rep), r in sorted(self.records.items())
                if m == label and d == design.label and (n is None or rep < n)]
        return records_to_tables(recs)

    # --- the kind's part of the evaluation ----------------------------------------------
    def admit(self, design: Design) -> str | None:
        """Refuse a design whose projected wall time exceeds the limit.  A design with fits
        already stored was admitted by the run that stored them: a resume (perhaps with
        fewer workers) continues it rather than refusing it, so it walks the same path and
        refits nothing."""
        s = self.plan.search
        started = any((self.power_ref.label, design.label, rep) in self.records
                      for rep in range(s.max_simulations))
        estimate = None if started else self.projected_minutes(design)
        if estimate is None or estimate <= s.max_minutes_per_design:
            return None
        return (f"projected {estimate:.0f} min for {s.max_simulations} full-MCMC fits "
                f"exceeds search.max_minutes_per_design = {s.max_minutes_per_design:g}; "
                "raise it, add workers (--scheduler), or lower sampler.draws/tune (ESS "
                "is still checked per fit and low-ESS fits count as flagged)")

    def simulate(self, design: Design, n: int) -> None:
        self.ensure(self.power_ref, self.design_ref, design, n)

    def measure(self, design: Design, n: int) -> None:
        """P(target met) with its interval and the precision columns of ``design`` from its
        first ``n`` design-prior fits."""
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
            lo, hi = INTERVALS[self.plan.targets[0].level]
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

    def calibrate(self, design: Design, n: int) -> None:
        """The SBC verdict from analysis-prior fits (the design-prior stream when it is the
        analysis prior, else a separate one of ``search.calibration_simulations`` fits),
        fitted for a passing design (every design in a grid search)."""
        res, s = self.results[design], self.plan.search
        if res.status == "pass" or s.strategy == "grid":
            n_cal = max(s.calibration_simulations, n if self.design_ref is None else 0)
            self.ensure(self.fit_ref, None, design, n_cal)
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
            draws = [sim.draw(s)[0] for s in seeding.plan_prior_draws(self.plan.seed, 400)]
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
        workers = self.runner.n_workers() if self.runner is not None else \
            max(1, self.workers or 1)
        return per_fit * self.plan.search.max_simulations / workers / 60

    def fits(self) -> dict:
        plan = self.plan
        separate = self.design_ref is not None
        per_design = plan.search.max_simulations + (plan.search.calibration_simulations
                                                    if separate else 0)
        labels = {self.power_ref.label, self.fit_ref.label}
        used = sum(1 for (m, d, _) in self.records if m in labels)
        full = per_design * len(self.results)
        return {"used": used, "new": self.new_fits, "full_grid": full,
                "designs": len(self.results), "separate": separate,
                "saved_share": 1 - used / full if full else 0.0,
                "design_prior": self.design_ref.ref if separate else
                f"{plan.model} (its prior)"}

    def write_pages(self, table, recommended, fits: dict, seconds: float) -> None:
        self.store.write_text("report.html", plan_page(self.plan, table, recommended, fits))
