"""One replicate: simulate -> fit -> ranks/diagnostics -> a plain record.

This is what a worker runs.  Compiled models are cached per process, keyed by model source,
design and sampler settings, so each worker compiles each (model, design) once and then
only swaps data.  A replicate never raises: a failed fit becomes a record with its error.
"""

from __future__ import annotations

import math
import time
import traceback
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from sbc.design import Design
from sbc.diagnostics import ESS_MIN, RHAT_MAX, convergence, scalar_names, stack_scalars
from sbc.posterior import PosteriorDesign, PosteriorSimulator
from sbc.quantities import QUANTITIES, LoglikEvaluator, derived_quantities
from sbc.rank import rank_of_truth, thin_draws, thin_factor
from sbc.spec import ModelRef, make_spec
from sbc.study import SamplerSettings

RECORD_SCHEMA = 1
QUANTILES = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


@dataclass(frozen=True)
class BatchTask:
    """A batch of replicates of one (model, design): the unit of work sent to a worker."""

    model: ModelRef
    simulate_model: ModelRef | None
    design: Design
    sampler: SamplerSettings
    thin: int | str
    study_seed: int
    reps: tuple[int, ...]


def replicate_seed(study_seed: int, model_label: str, design: Design, rep: int) -> np.random.SeedSequence:
    """The seed of one replicate, fixed by (study seed, model, design, replicate number) alone.

    Derived with a spawn key rather than by spawning in order, so results do not depend on
    worker count, scheduling, interruptions, or which other designs the study has.
    """
    key = (zlib.crc32(model_label.encode()), zlib.crc32(design.label.encode()), rep)
    return np.random.SeedSequence(study_seed, spawn_key=key)


@dataclass
class Prepared:
    fit_spec: object
    simulator: object
    backend: object
    loglik: LoglikEvaluator | None
    ranked: tuple[str, ...]


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8  # (model, design) pairs kept compiled per worker; bounds worker memory


def prepare(task: BatchTask) -> Prepared:
    """Build and compile everything for (model, design, sampler) once per process."""
    from sbc.fit import make_backend
    from sbc.simulate import Simulator

    key = (task.model.digest, task.simulate_model.digest if task.simulate_model else None,
           task.design, task.sampler,
           # posterior SBC fits the observed data with a seed derived from the study's
           task.study_seed if isinstance(task.design, PosteriorDesign) else None)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    data = task.design.frame()
    fit_spec = make_spec(task.model, data)
    sim_spec = make_spec(task.simulate_model, data) if task.simulate_model else fit_spec
    if isinstance(task.design, PosteriorDesign):  # posterior SBC: truths from p(theta | y_obs)
        simulator = PosteriorSimulator(task.model, task.design, task.sampler, task.study_seed)
    else:
        simulator = Simulator(sim_spec)
    ranked = tuple(n for n in fit_spec.parameters if n in simulator.names)
    backend = make_backend(fit_spec, task.sampler, data)
    try:
        # The log-likelihood of the simulated data under the model that generated them, so a
        # fitter that drops or ignores data (a different model) shows in its ranks.
        loglik = LoglikEvaluator(sim_spec)
    except Exception:  # a likelihood PyMC cannot vectorize: ranks of parameters still work
        loglik = None
    prepared = Prepared(fit_spec, simulator, backend, loglik, ranked)
    _CACHE[key] = prepared
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prepared


def low_ess(ess_min: float, n_ranked: int, thin: int | str) -> bool:
    """Flag a fit whose smallest bulk/tail ESS is below ``ESS_MIN`` (100; Vehtari et al.
    2021): its quantiles and ranks rest on few effective draws.  With a fixed thinning
    factor, also flag fits ranking more draws than they have effective draws (the ranked
    draws are then autocorrelated); ``thin = "auto"`` thins to about the ESS instead."""
    return bool(ess_min < ESS_MIN or (thin != "auto" and ess_min < n_ranked))


def run_batch(task: BatchTask) -> list[dict]:
    """Run every replicate of a batch; never raises (errors become failed records)."""
    try:
        prepared = prepare(task)
    except Exception as exc:  # the model cannot be built: every replicate fails with the reason
        error = f"{type(exc).__name__}: {exc}"
        # stage "prepare": the model could not be built here, not a property of the replicate;
        # a resumed run retries these instead of counting them as done.
        return [{**_failed_record(task, rep, error, 0.0), "stage": "prepare"} for rep in task.reps]
    return [run_replicate(prepared, task, rep) for rep in task.reps]


def _base_record(task: BatchTask, rep: int) -> dict:
    seed = replicate_seed(task.study_seed, task.model.label, task.design, rep)
    return {"schema": RECORD_SCHEMA, "model": task.model.label, "design": task.design.label,
            "rep": int(rep), "seed_entropy": int(seed.entropy), "seed_key": list(seed.spawn_key)}


def _failed_record(task: BatchTask, rep: int, error: str, wall: float) -> dict:
    return {**_base_record(task, rep), "status": "failed", "error": error[-4000:],
            "wall_seconds": wall}


def run_replicate(prepared: Prepared, task: BatchTask, rep: int) -> dict:
    start = time.perf_counter()
    try:
        return _run_replicate(prepared, task, rep, start)
    except Exception as exc:
        text = "".join(traceback.format_exception(exc)[-3:])
        return _failed_record(task, rep, f"{type(exc).__name__}: {exc}\n{text}",
                              time.perf_counter() - start)


def _run_replicate(prepared: Prepared, task: BatchTask, rep: int, start: float) -> dict:
    seed = replicate_seed(task.study_seed, task.model.label, task.design, rep)
    sim_seed, fit_seed, tie_seed = seed.spawn(3)
    truths, y = prepared.simulator.draw(sim_seed)
    if not np.all(np.isfinite(y)):
        raise FloatingPointError("simulated data contain non-finite values; check the priors")
    fit = prepared.backend.fit(y, int(fit_seed.generate_state(1)[0]))
    names = list(prepared.ranked)
    matrix = stack_scalars(fit.draws, names)  # (chain, draw, k)
    if not np.all(np.isfinite(matrix)):
        raise FloatingPointError("the sampler returned non-finite draws")
    truth_vec = np.concatenate([np.ravel(truths[n]) for n in names])
    diag = convergence(matrix)
    n_total = matrix.shape[0] * matrix.shape[1]
    ess_min = float(min(diag["ess_bulk"].min(), diag["ess_tail"].min()))
    factor = thin_factor(ess_min / matrix.shape[0], matrix.shape[1], task.thin)
    kept = thin_draws(matrix, factor)
    rng = np.random.default_rng(tie_seed)
    ranks = rank_of_truth(kept, truth_vec, rng)
    flat = matrix.reshape(n_total, -1)
    quantiles = np.quantile(flat, QUANTILES, axis=0)
    labels = scalar_names(fit.draws, names)
    groups = [n for n in names for _ in range(int(np.prod(fit.draws[n].shape[2:], dtype=int)))]

    quantity_rows = {}
    if prepared.loglik is not None:
        free = [n for n, _ in prepared.loglik.inputs]
        if all(n in fit.draws and n in truths for n in free):
            thinned = {n: thin_draws(fit.draws[n], factor) for n in free}
            at_draws = derived_quantities(prepared.loglik.pointwise(thinned, y))
            at_truth = derived_quantities(prepared.loglik.pointwise(
                {n: truths[n][None] for n in free}, y))
            for q in QUANTITIES:
                quantity_rows[q] = (float(at_truth[q][0]),
                                    int(rank_of_truth(at_draws[q], at_truth[q][0], rng)),
                                    float(at_draws[q].mean()), float(at_draws[q].std()))

    n_div = int(fit.diverging.sum())
    return {
        **_base_record(task, rep),
        "status": "ok", "error": None,
        "wall_seconds": time.perf_counter() - start, "sampler_seconds": fit.seconds,
        "n_draws": int(n_total), "thin": int(factor), "n_ranked": int(kept.shape[0]),
        "n_divergent": n_div, "n_treedepth": int(fit.treedepth_hits),
        "ess_bulk_min": float(diag["ess_bulk"].min()), "ess_tail_min": float(diag["ess_tail"].min()),
        "rhat_max": float(np.nanmax(diag["rhat"])) if np.isfinite(diag["rhat"]).any() else math.nan,
        "flag_divergent": n_div > 0,
        "flag_low_ess": low_ess(ess_min, kept.shape[0], task.thin),
        "flag_rhat": bool(np.nanmax(diag["rhat"]) > RHAT_MAX) if np.isfinite(diag["rhat"]).any() else False,
        "parameters": {
            "name": labels, "group": groups, "truth": truth_vec.tolist(),
            "rank": ranks.astype(int).tolist(),
            "mean": flat.mean(axis=0).tolist(), "sd": flat.std(axis=0, ddof=1).tolist(),
            **{f"q{q:g}": quantiles[i].tolist() for i, q in enumerate(QUANTILES)},
            "ess_bulk": diag["ess_bulk"].tolist(), "ess_tail": diag["ess_tail"].tolist(),
            "rhat": [None if not np.isfinite(r) else float(r) for r in diag["rhat"]],
        },
        "quantities": {q: {"truth": v[0], "rank": v[1], "mean": v[2], "sd": v[3]}
                       for q, v in quantity_rows.items()},
    }
