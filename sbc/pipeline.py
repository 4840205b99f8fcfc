"""Run a study end to end: study -> designs -> replicates -> dispatch -> store -> report."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sbc.dispatch import TLS
from sbc.execution import check_how
from sbc.errors import ModelError, StudyError
from sbc.posterior import PosteriorDesign
from sbc.report import write_report_with_calibration
from sbc.sampling import check_backend, get_sampler, samplers
from sbc.runner import Job, Runner, manifest
from sbc.spec import (DERIVED_QUANTITIES, ModelRef, build_pymc_model, make_spec,
                      model_thresholds, pair_parameters, ranked_layouts, resolve_model,
                      unpaired_text)
from sbc.stopping import Monitor
from sbc.study import Study


@dataclass
class RunSummary:
    out: Path
    total: int
    already_done: int
    new: int
    failed: int
    lost_batches: int
    seconds: float
    calibration: object = None  # sbc.calibration.Calibration of the whole store, if judged
    stored: int = 0  # replicates the store holds after the run (earlier, larger runs included)
    # failed fits of this run by failure code: (count, the first one's error)
    failures: dict = field(default_factory=dict)

    def failure_lines(self) -> list[str]:
        """The failures of this run, grouped by reason, with one error text each."""
        lines = []
        for code, (n, error) in sorted(self.failures.items(), key=lambda kv: -kv[1][0]):
            first = error.strip().splitlines()[0] if error.strip() else "no message"
            lines.append(f"{n} x {code}: {first[:300]}")
        return lines


def resolve_models(study: Study) -> tuple[list[ModelRef], ModelRef | None]:
    models = [resolve_model(m, study.base_dir) for m in study.models]
    sim = resolve_model(study.simulate_model, study.base_dir) if study.simulate_model else None
    labels: dict[str, str] = {}
    for m in models:
        if m.label in labels:
            raise ModelError(f"models '{labels[m.label]}' and '{m.ref}' would both be stored "
                             f"as '{m.label}'; results of different models are never mixed: "
                             "rename one of the files (or list each model once)")
        labels[m.label] = m.ref
    return models, sim


def _sources(models: list[ModelRef], sim: ModelRef | None) -> dict[str, str]:
    sources = {m.label: m.source for m in models}
    if sim:
        sources[f"simulate:{sim.label}"] = sim.source
    return sources


def manifest_for(study: Study, models: list[ModelRef], sim: ModelRef | None) -> dict:
    return manifest(
        fingerprint=study.fingerprint(_sources(models, sim)), study=study.to_dict(),
        model_refs={m.label: m.ref for m in models},
        model_digests={m.label: m.digest for m in models}
        | ({f"simulate:{sim.label}": sim.digest} if sim else {}),
        simulate_model=sim.label if sim else None)


def check_models_build(study: Study, models: list[ModelRef], sim: ModelRef | None) -> list[str]:
    """Build every model on the smallest design before any work is sent out, so a broken
    model file fails fast with its own message instead of as hundreds of failed replicates.
    With a simulate_model, also check on every design that each fitter parameter is paired
    with a generator parameter of the same layout (see ``check_parameter_pairing``).

    Returns what will not be tested, one line per model (empty when everything is): the
    verdicts say it again, but a run without a report should say it before it starts."""
    smallest = min(study.designs, key=lambda d: d.n_rows)
    data = smallest.frame()
    specs = {m.label: make_spec(m, data) for m in models}
    for m in models:
        check_backend(specs[m.label], study.sampler)
        model_thresholds(m, specs[m.label].parameters)
    if not sim:
        return []
    sim_spec = make_spec(sim, data)
    check_parameter_pairing(study, models, sim, specs, sim_spec)
    return untested_notes(study, sim_spec, specs)


def untested_notes(study: Study, sim_spec, specs: dict) -> list[str]:
    """Per fitted model, what goes untested with this generator: unpaired parameters, and
    the log-likelihood quantities when a free parameter of the generator has no partner
    (sbc.replicate skips them for the same reason)."""
    notes = []
    free = [rv.name for rv in sim_spec.generative.free_RVs]
    for label, spec in specs.items():
        pairs = pair_parameters(spec.parameters, sim_spec.parameters, study.parameter_map)
        parts = [unpaired_text(spec.parameters, sim_spec.parameters, pairs)]
        missing = [g for g in free if g not in {g for _, g in pairs}]
        if missing:
            parts.append(f"log-likelihood quantities ({', '.join(DERIVED_QUANTITIES)}) not ranked: "
                         f"the generator's likelihood needs {', '.join(missing)}, which no "
                         "fitter parameter estimates")
        parts = [p for p in parts if p]
        if parts:
            notes.append(f"model '{label}': " + "; ".join(parts))
    return notes


def check_parameter_pairing(study: Study, models: list[ModelRef], sim: ModelRef,
                            specs: dict, sim_spec) -> None:
    """Truths of the generator (simulate_model) are ranked among draws of the fitter
    parameter of the same name, or of the one [parameter_map] names.  Refuse (ModelError)
    names in the map that neither model has, and pairs whose shape, dims or coordinate
    labels differ on any design (shapes depend on the design): their elements would be
    compared out of line, silently."""
    mapping = dict(study.parameter_map)
    fit_names = {n for spec in specs.values() for n in spec.parameters}
    for fit_name, gen_name in mapping.items():
        if fit_name not in fit_names:
            raise ModelError(
                f"[parameter_map] names '{fit_name}', which is no parameter of "
                + "; ".join(f"model '{label}' (its parameters: {', '.join(spec.parameters)})"
                            for label, spec in specs.items())
                + "; use the fitter's parameter name as the key")
        if gen_name not in sim_spec.parameters:
            raise ModelError(
                f"[parameter_map] pairs '{fit_name}' with '{gen_name}', which is no parameter "
                f"of simulate_model '{sim.ref}' (its parameters: "
                f"{', '.join(sim_spec.parameters)}); give the generator's parameter name as "
                "the value")
    for label, spec in specs.items():
        try:
            pairs = pair_parameters(spec.parameters, sim_spec.parameters, mapping)
        except ModelError as exc:
            raise ModelError(f"model '{label}' and simulate_model '{sim.ref}': {exc}") from None
        if not pairs:
            raise ModelError(f"simulate_model '{sim.ref}' and model '{label}' share no "
                             "parameter names, so no rank can be computed; give the "
                             "generator the fitter's parameter names, or pair them in "
                             "[parameter_map] (fitter_name = \"generator_name\")")

    mismatches: dict[tuple, list[str]] = {}
    for design in study.designs:
        if isinstance(design, PosteriorDesign):  # posterior SBC draws truths from the fitter
            continue
        data = design.frame()
        gen = ranked_layouts(build_pymc_model(sim, data))
        for model in models:
            fit = ranked_layouts(build_pymc_model(model, data))
            for f, g in pair_parameters(list(fit), list(gen), mapping):
                if not gen[g].matches(fit[f]):
                    key = (model.label, f, g, gen[g].describe(), fit[f].describe())
                    mismatches.setdefault(key, []).append(design.label)
    if mismatches:
        lines = []
        for (label, f, g, gen_text, fit_text), designs in mismatches.items():
            pair = f"'{f}'" if f == g else f"'{f}' (paired with generator '{g}')"
            lines.append(f"  model '{label}', {pair}: generator {gen_text}, fitter {fit_text}"
                         f"; design(s) {', '.join(designs)}")
        raise ModelError(
            f"simulate_model '{sim.ref}' and the fitted model(s) share parameter names whose "
            "shapes or indices differ, so truths and draws would be compared element by "
            "element out of line:\n" + "\n".join(lines) + "\nFix: rename the parameter in one "
            "of the models so that unrelated parameters do not share a name, or declare which "
            "generator parameter each fitter parameter estimates in the study file: "
            "[parameter_map] fitter_name = \"generator_name\" (their shapes must match)")


def check_threads(study: Study) -> None:
    """Fitting in threads needs a sampler that fits side by side in one process."""
    if not get_sampler(study.sampler.name).threads:
        able = ", ".join(name for name, s in samplers().items() if s.threads)
        raise StudyError(f"sampler '{study.sampler.name}' cannot fit in threads of one "
                         f"process (it holds the interpreter lock or keeps state between "
                         f"fits); leave threads out to use worker processes (--workers), or "
                         f"use a sampler that can: {able}")


def jobs_of(study: Study, models: list[ModelRef], sim: ModelRef | None) -> list[Job]:
    """Every (model, design) of the study as a runner job of ``study.simulations``."""
    return [Job(model, design, study.simulations, study.sampler, study.thin, study.seed,
                simulate=sim, parameter_map=study.parameter_map if sim else ())
            for model in models for design in study.designs]


@dataclass(frozen=True)
class Preflight:
    """What a run checked before the store is created or touched: the models (built once),
    the manifest, what is not tested, and where the fits run."""

    models: list[ModelRef]
    sim: ModelRef | None
    manifest: dict
    untested: list[str]
    workers: int | None
    threads: int | None
    scheduler: str | None
    local: bool


def preflight(study: Study, *, workers: int | None = None, threads: int | None = None,
              scheduler: str | None = None, tls: TLS | None = None) -> Preflight:
    """Every check of a run that needs no fit, in one place, before the store is touched:
    where fits run (the caller's workers / threads / scheduler, at most one of them, beat
    the study's [run] settings and [cluster]; counts and conflicts refused), the scheduler
    address and certificates, the models (resolved, built, parameters paired) and the
    thread-safety of the sampler."""
    check_how(workers=workers, threads=threads, scheduler=scheduler)
    local = workers is not None or threads is not None
    if not local and scheduler is None:
        check_how(workers=study.workers, threads=study.threads, scheduler=study.scheduler)
    scheduler = (tls or TLS()).check_address(scheduler or (None if local else study.scheduler))
    models, sim = resolve_models(study)
    manifest = manifest_for(study, models, sim)
    untested = check_models_build(study, models, sim)
    if workers is None:
        workers = study.workers
    if threads is None and workers is None:
        threads = study.threads
    if threads:
        check_threads(study)
    return Preflight(models, sim, manifest, untested, workers, threads, scheduler, local)


def run_study(study: Study, out: str | Path, *, workers: int | None = None,
              scheduler: str | None = None, report: bool = True,
              progress_stream=None, retry_failed: bool = False,
              tls: TLS | None = None, threads: int | None = None,
              on_verdict=None) -> RunSummary:
    """Run (or resume) ``study`` into ``out`` and write its tables and report.

    ``tls``: certificates for a ``tls://`` scheduler; ``threads``: fit in threads of this
    process (:class:`sbc.execution.Threads`); ``on_verdict(cal)``: called with the verdicts
    before the report's figures are drawn.  Everything that can be checked without running
    (models, scheduler address, certificates) is checked before the store is created or
    touched."""
    start = time.monotonic()
    go = preflight(study, workers=workers, threads=threads, scheduler=scheduler, tls=tls)
    models, sim, manifest, untested = go.models, go.sim, go.manifest, go.untested
    workers, threads, scheduler, local = go.workers, go.threads, go.scheduler, go.local
    runner = Runner(out, manifest, workers=workers, scheduler=scheduler,
                    cluster=None if local else study.cluster,
                    tls=tls, batch_size=study.batch_size, stream=progress_stream,
                    retry_failed=retry_failed, keep_records=study.sequential is not None,
                    threads=threads)
    for note in untested:  # said before the run starts; every verdict says it again
        print(f"[sbc] not tested: {note}", file=progress_stream or sys.stderr, flush=True)
    with runner:
        settings = study.sequential
        # the store says how it is judged: by the sequential rule of this run, or fixed-n
        runner.store.set_manifest_key("sequential", settings.to_dict() if settings else None)
        monitor = None
        if settings is not None:
            monitor = Monitor(settings, [(m.label, d.label) for m in models
                                         for d in study.designs])
        counts = runner.ensure(jobs_of(study, models, sim), announce=study.name,
                               monitor=monitor)
        runner.close_session()
        calibration = None
        if report:
            _, calibration = write_report_with_calibration(runner.store, on_verdict)
        else:  # the tables are data, not the report: always keep them current
            runner.store.write_tables()
    return RunSummary(out=runner.store.root, total=counts.total, already_done=counts.already,
                      new=counts.new, failed=counts.failed, lost_batches=counts.lost_batches,
                      seconds=time.monotonic() - start, calibration=calibration,
                      stored=len(runner.finished),
                      failures={k: (n, e) for k, (n, e) in counts.failures.items()})
