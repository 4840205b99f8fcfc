"""One replicate: simulate -> fit -> ranks/diagnostics -> a plain record.

This is what a worker runs.  Compiled models are cached per process, keyed by model source,
design and sampler settings, so each worker compiles each (model, design) once and then
only swaps data.  A replicate never raises: a failed fit becomes a record with its error
(``error``, readable text) and a short machine-readable reason (``failure``, one of
``FAILURE_CODES``).  A fit that did not move (a scalar with zero or negligible posterior
variance, or ESS 0) after its rescue is ranked among all its draws, unthinned, and flagged
(``flag_degenerate``, the reason in ``degenerate``): its truth lies on one side of a point, so
its ranks are extreme and count against the design.  Leaving such fits out of the ranks (as
failures) would hide the miscalibration of the region of the prior where they happen.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from sbc import seeding
from sbc.decisions import threshold_columns
from sbc.record import RECORD_SCHEMA, Record
from sbc.design import Design
from sbc.diagnostics import ESS_MIN, RHAT_MAX, convergence, scalar_names, stack_scalars
from sbc.posterior import PosteriorDesign, PosteriorSimulator
from sbc.quantities import QUANTITIES, LoglikEvaluator, derived_quantities
from sbc.rank import rank_of_truth, thin_draws, thin_factor
from sbc.errors import ModelError
from sbc.simulate import Simulator
from sbc.spec import (ModelRef, is_noncentered, load_module, make_spec, model_thresholds,
                      pair_parameters, parameter_layouts, unpaired_text)
from sbc.sampling import FitCrashed, FitTimeout, SamplerSettings, get_sampler, make_backend

QUANTILES = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
# A ranked scalar whose posterior sd is at most this times max(1, |posterior mean|) has not
# been explored: the sampler sat at one point (e.g. ESS 0, sd ~1e-14).
DEGENERATE_SD = 1e-10


class ReplicateFailure(RuntimeError):
    """A replicate that cannot be ranked, with its ``failure`` code (see FAILURE_CODES)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


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
    # (fitter name, generator name) pairs from the study's [parameter_map]; others pair by name
    parameter_map: tuple[tuple[str, str], ...] = ()


@dataclass
class Prepared:
    fit_spec: object
    simulator: object
    backend: object
    loglik: LoglikEvaluator | None
    ranked: tuple[str, ...]  # fitter names, in record order
    truth_of: dict[str, str] | None = None  # fitter name -> generator name of its truth
    # generator input name -> fitter name whose draws feed the log-likelihood; None: skipped
    loglik_draws: dict[str, str] | None = None
    quantities_skipped: str | None = None  # why loglik quantities are not computed
    unranked: str | None = None  # parameters of either model without a rank (unpaired)
    rescue_specs: list = field(default_factory=list)  # (name, builder) of RESCUE forms
    thresholds: dict = field(default_factory=dict)  # group -> c of its decision theta < c
    _rescue_backends: dict = field(default_factory=dict)
    _rescue_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # compiled PyTensor functions (simulator, log-likelihood) keep their own input and output
    # storage, so threads of one process take turns with them; the fits run side by side
    turns: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rescue_forms(self) -> list[tuple[str, object]]:
        """(name, lazy backend getter) of the model's other parametrizations, in order."""
        def getter(name, build):
            def get():
                with self._rescue_lock:  # threads of one process share it: compile once
                    if name not in self._rescue_backends:
                        self._rescue_backends[name] = build()
                    return self._rescue_backends[name]
            return get
        return [(name, getter(name, build)) for name, build in self.rescue_specs]


MAX_RESCUES = 2  # RESCUE forms tried per replicate (after a draw top-up), bounding its cost
_CACHE: OrderedDict = OrderedDict()
_LOCK = threading.RLock()  # guards _CACHE and the rescue backends
_CACHE_SIZE = 8  # (model, design) pairs kept compiled per worker; bounds worker memory


def prepare(task: BatchTask) -> Prepared:
    """Build and compile everything for (model, design, sampler) once per process (threads
    fitting in one process wait for the first one's compile instead of compiling again)."""
    with _LOCK:
        return _prepare(task)


def _prepare(task: BatchTask) -> Prepared:
    key = (task.model.digest, task.simulate_model.digest if task.simulate_model else None,
           task.design, task.sampler, task.parameter_map,
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
    # Truths and draws are paired by name, or by the study's [parameter_map] when the
    # generator is another model; pairs of different shape or elements are refused (the
    # pipeline checks every design before any work; this guards every other caller).
    other_generator = task.simulate_model is not None and \
        not isinstance(task.design, PosteriorDesign)  # posterior SBC simulates with the fitter
    pairs = pair_parameters(fit_spec.parameters, simulator.names,
                            task.parameter_map if other_generator else ())
    if other_generator:
        _check_layouts(fit_spec, sim_spec, pairs, task.design.label)
    ranked = tuple(f for f, _ in pairs)
    truth_of = dict(pairs)
    backend = make_backend(fit_spec, task.sampler, data)
    loglik, loglik_draws, skipped = None, None, None
    try:
        # The log-likelihood of the simulated data under the model that generated them, so a
        # fitter that drops or ignores data (a different model) shows in its ranks.
        loglik = LoglikEvaluator(sim_spec)
    except Exception as exc:  # a likelihood PyMC cannot vectorize: ranks of parameters still work
        skipped = f"the log-likelihood cannot be vectorized: {type(exc).__name__}: {exc}"
    if loglik is not None:
        # Every free input of the generator's likelihood needs fitter draws of its layout.
        fit_of = {g: f for f, g in pairs}
        missing = [g for g, _ in loglik.inputs if g not in fit_of]
        if missing:
            skipped = ("the fitter has no parameter paired with the generator's "
                       f"{', '.join(missing)} (needed by its log-likelihood)")
            loglik = None
        else:
            loglik_draws = {g: fit_of[g] for g, _ in loglik.inputs}
    prepared = Prepared(fit_spec, simulator, backend, loglik, ranked, truth_of, loglik_draws,
                        skipped, unpaired_text(fit_spec.parameters, simulator.names, pairs),
                        _rescue_specs(task, data, ranked),
                        model_thresholds(task.model, ranked))
    _CACHE[key] = prepared
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prepared


def _check_layouts(fit_spec, sim_spec, pairs, where: str) -> None:
    """Refuse pairs whose truth and draws differ in shape or elements (dims/coords)."""
    fit = parameter_layouts(fit_spec.generative, [f for f, _ in pairs])
    gen = parameter_layouts(sim_spec.generative, [g for _, g in pairs])
    bad = [f"'{f}' (generator '{g}': {gen[g].describe()}; fitter: {fit[f].describe()})"
           for f, g in pairs if not gen[g].matches(fit[f])]
    if bad:
        raise ModelError(f"design {where}: truths and draws of {', '.join(bad)} are laid out "
                         "differently and would be compared element by element out of line; "
                         "rename the parameter or pair it with the right one in [parameter_map]")


def _rescue_specs(task: BatchTask, data, ranked) -> list:
    """Builders of the backends for the model's other parametrizations, in order.

    A model file may name them in ``RESCUE``, a tuple of builder function names: the same
    model in other parametrizations (e.g. non-centered group effects where ``build`` is
    centered), with the same posterior over every ranked parameter.  Which form samples
    better depends on the simulated truth (a small group sd favours the non-centered form,
    well-informed groups the centered one), so a fit that fails in one form is refitted in
    the next.  Each is compiled on first use.
    """
    if not task.sampler.rescue or not get_sampler(task.sampler.name).rescue or \
            task.model.function != "build":
        return []
    names = getattr(load_module(task.model), "RESCUE", ())
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ModelError(f"model '{task.model.ref}': RESCUE must be a tuple of builder "
                         f"function names, got {names!r}")

    def builder(function):
        def build():
            alt = make_spec(replace(task.model, function=function), data)
            missing = [n for n in ranked if n not in alt.parameters]
            if missing:
                raise ModelError(f"model '{task.model.ref}': {function}(data) lacks "
                                 f"{', '.join(missing)}; a RESCUE form must be the same model "
                                 "in another parametrization, with every parameter of build")
            return make_backend(alt, task.sampler, data)
        return build
    return [(n, builder(n)) for n in names]


def low_ess(ess_min: float, n_ranked: int, thin: int | str) -> bool:
    """Flag a fit whose smallest bulk/tail ESS is below ``ESS_MIN`` (100; Vehtari et al.
    2021): its quantiles and ranks rest on few effective draws.  With a fixed thinning
    factor, also flag fits ranking more draws than they have effective draws (the ranked
    draws are then autocorrelated); ``thin = "auto"`` thins to about the ESS instead."""
    return bool(ess_min < ESS_MIN or (thin != "auto" and ess_min < n_ranked))


def run_batch(task: BatchTask, note=None) -> list[Record]:
    """Run every replicate of a batch; never raises (errors become failed records).
    ``note``: an :class:`sbc.inflight.Guard` told which replicate is being fitted (runs in
    this process, where a crashing fit ends the run: the guard then says which one)."""
    where = f"model {task.model.label}, design {task.design.label}"
    if note is not None:
        note.start(f"{where} (building the model for replicates {task.reps[0]}-"
                   f"{task.reps[-1]})")
    try:
        prepared = prepare(task)
    except Exception as exc:  # the model cannot be built: every replicate fails with the reason
        error = f"{type(exc).__name__}: {exc}"
        # stage "prepare": the model could not be built here, not a property of the replicate;
        # a resumed run retries these instead of counting them as done.
        if note is not None:
            note.end()
        return [{**_failed_record(task, rep, error, 0.0, "prepare"), "stage": "prepare"}
                for rep in task.reps]
    if note is None:
        return [run_replicate(prepared, task, rep) for rep in task.reps]
    records = []
    for rep in task.reps:
        note.start(f"{where}, replicate {rep}")
        records.append(run_replicate(prepared, task, rep))
    note.end()
    return records


def _replicate_seed(task: BatchTask, rep: int) -> np.random.SeedSequence:
    return seeding.replicate(task.study_seed, task.model.label, task.design.label, rep)


def _base_record(task: BatchTask, rep: int, seed: np.random.SeedSequence | None = None) -> Record:
    seed = _replicate_seed(task, rep) if seed is None else seed
    return {"schema": RECORD_SCHEMA, "model": task.model.label, "design": task.design.label,
            "rep": int(rep), "seed_entropy": int(seed.entropy), "seed_key": list(seed.spawn_key)}


def worker_died_record(task: BatchTask, rep: int, reason: str) -> Record:
    """The record of a replicate whose fit killed the process running it, every time."""
    return _failed_record(task, rep, reason, float("nan"), "worker_died")


def _failed_record(task: BatchTask, rep: int, error: str, wall: float,
                   failure: str = "exception", seed: np.random.SeedSequence | None = None) -> Record:
    return {**_base_record(task, rep, seed), "status": "failed", "failure": failure,
            "error": error[-4000:], "wall_seconds": wall}


def run_replicate(prepared: Prepared, task: BatchTask, rep: int) -> Record:
    start = time.perf_counter()
    seed = _replicate_seed(task, rep)  # derived once; the record and every stream use it
    try:
        return _run_replicate(prepared, task, rep, seed, start)
    except ReplicateFailure as exc:
        return _failed_record(task, rep, str(exc), time.perf_counter() - start, exc.code, seed)
    except Exception as exc:
        text = "".join(traceback.format_exception(exc)[-3:])
        code = ("timeout" if isinstance(exc, FitTimeout)
                else "worker_died" if isinstance(exc, FitCrashed) else "exception")
        return _failed_record(task, rep, f"{type(exc).__name__}: {exc}\n{text}",
                              time.perf_counter() - start, code, seed)


def degenerate_reason(flat: np.ndarray, diag: dict, truth: np.ndarray,
                      labels: list[str]) -> str | None:
    """Why a fit's draws (n_draws, k) cannot be ranked, or None: some scalar has zero or
    negligible posterior variance (sd <= DEGENERATE_SD * max(1, |mean|)) or ESS 0.  A
    scalar that is constant in the model itself (every draw equal to its truth, e.g. a
    fixed deterministic) is not a degenerate fit."""
    sd, mean = flat.std(axis=0, ddof=1), flat.mean(axis=0)
    fixed = (np.ptp(flat, axis=0) == 0) & \
        (np.abs(flat[0] - truth) <= 1e-12 * np.maximum(1.0, np.abs(truth)))
    flat_sd = (sd <= DEGENERATE_SD * np.maximum(1.0, np.abs(mean))) & ~fixed
    no_ess = ((diag["ess_bulk"] <= 0) | (diag["ess_tail"] <= 0)) & ~fixed & ~flat_sd
    parts = []
    for mask, what in ((flat_sd, "zero or negligible posterior variance"), (no_ess, "ESS 0")):
        idx = np.flatnonzero(mask)
        if len(idx):
            shown = ", ".join(f"{labels[i]} (sd {sd[i]:.3g}, mean {mean[i]:.6g})" for i in idx[:5])
            parts.append(f"{what} in {shown}" + (f" and {len(idx) - 5} more" if len(idx) > 5 else ""))
    if not parts:
        return None
    return ("degenerate fit: " + "; ".join(parts) + ": the sampler did not explore the "
            "posterior, so its truth is ranked among all its draws and the fit is flagged "
            "(check the model's parametrization, priors and initial values)")


def _run_replicate(prepared: Prepared, task: BatchTask, rep: int,
                   seed: np.random.SeedSequence, start: float) -> Record:
    sim_seed, fit_seed, tie_seed = seeding.replicate_children(seed)
    with prepared.turns:
        truths, y = prepared.simulator.draw(sim_seed)
    if not np.all(np.isfinite(y)):
        raise ReplicateFailure("simulation", "FloatingPointError: simulated data contain "
                               "non-finite values; check the priors")
    fit = prepared.backend.fit(y, seeding.integer(fit_seed))
    names = list(prepared.ranked)
    checked = assess(fit, names, task.thin)
    attempts = []
    if task.sampler.rescue and get_sampler(task.sampler.name).rescue and \
            hasattr(prepared.backend, "with_settings"):
        fit, checked, attempts = rescue_fit(prepared, task, seed, y, fit, checked, names)
    truth_of = prepared.truth_of or {n: n for n in names}
    for n in names:  # never compare a truth with draws of another layout
        if np.shape(truths[truth_of[n]]) != fit.draws[n].shape[2:]:
            raise ReplicateFailure(
                "shape_mismatch", f"truth of '{truth_of[n]}' has shape "
                f"{np.shape(truths[truth_of[n]])} but the fitter's '{n}' has draws of shape "
                f"{fit.draws[n].shape[2:]}; rename one or pair them in [parameter_map]")
    matrix, diag = checked.matrix, checked.diag  # (chain, draw, k); per-scalar ESS, R-hat
    if diag is None:
        raise ReplicateFailure("nonfinite", "FloatingPointError: the sampler returned "
                               "non-finite draws")
    truth_vec = np.concatenate([np.ravel(truths[truth_of[n]]) for n in names])
    n_total = matrix.shape[0] * matrix.shape[1]
    flat = matrix.reshape(n_total, -1)
    labels = scalar_names(fit.draws, names)
    degenerate = degenerate_reason(flat, diag, truth_vec, labels)
    factor = 1 if degenerate else checked.factor  # a stuck fit: ranked among all its draws
    kept = thin_draws(matrix, factor)
    rng = np.random.default_rng(tie_seed)
    ranks = rank_of_truth(kept, truth_vec, rng)
    quantiles = np.quantile(flat, QUANTILES, axis=0)
    groups = [n for n in names for _ in range(int(np.prod(fit.draws[n].shape[2:], dtype=int)))]

    quantity_rows, skipped = {}, prepared.quantities_skipped
    if prepared.loglik is not None:
        # generator input -> draws of the fitter parameter paired with it (same layout)
        source = prepared.loglik_draws or {n: n for n, _ in prepared.loglik.inputs}
        free = list(source)
        odd = [g for g in free if source[g] not in fit.draws or g not in truths
               or fit.draws[source[g]].shape[2:] != np.shape(truths[g])]
        if odd:
            skipped = (f"no fitter draws of the generator's {', '.join(odd)} with the "
                       "shape of its truth (needed by its log-likelihood)")
        else:
            thinned = {g: thin_draws(fit.draws[source[g]], factor) for g in free}
            with prepared.turns:
                at_draws = derived_quantities(prepared.loglik.pointwise(thinned, y))
                at_truth = derived_quantities(prepared.loglik.pointwise(
                    {g: truths[g][None] for g in free}, y))
            for q in QUANTITIES:
                quantity_rows[q] = (float(at_truth[q][0]),
                                    int(rank_of_truth(at_draws[q], at_truth[q][0], rng)),
                                    float(at_draws[q].mean()), float(at_draws[q].std()))

    flags = checked.flags
    return {
        **_base_record(task, rep, seed),
        "status": "ok", "error": None, "failure": None,
        "wall_seconds": time.perf_counter() - start, "sampler_seconds": fit.seconds,
        "n_draws": int(n_total), "thin": int(factor), "n_ranked": int(kept.shape[0]),
        "n_divergent": flags["n_divergent"], "n_treedepth": flags["n_treedepth"],
        "ess_bulk_min": float(diag["ess_bulk"].min()), "ess_tail_min": float(diag["ess_tail"].min()),
        "rhat_max": math.nan if flags["rhat_max"] is None else flags["rhat_max"],
        "flag_divergent": flags["n_divergent"] > 0,
        "flag_low_ess": flags["low_ess"],
        "flag_rhat": flags["high_rhat"],
        "flag_degenerate": degenerate is not None, "degenerate": degenerate,
        "parameters": {
            "name": labels, "group": groups, "truth": truth_vec.tolist(),
            "rank": ranks.astype(int).tolist(),
            "mean": flat.mean(axis=0).tolist(), "sd": flat.std(axis=0, ddof=1).tolist(),
            **{f"q{q:g}": quantiles[i].tolist() for i, q in enumerate(QUANTILES)},
            # P(theta < 0): the probability of the sign decision, checked for calibration
            "p_below_zero": (flat < 0).mean(axis=0).tolist(),
            **threshold_columns(flat, groups, prepared.thresholds),  # P(theta < c), THRESHOLDS
            "ess_bulk": diag["ess_bulk"].tolist(), "ess_tail": diag["ess_tail"].tolist(),
            "rhat": [None if not np.isfinite(r) else float(r) for r in diag["rhat"]],
        },
        "quantities": {q: {"truth": v[0], "rank": v[1], "mean": v[2], "sd": v[3]}
                       for q, v in quantity_rows.items()},
        "quantities_skipped": skipped, "unranked": prepared.unranked,
        "rescued": bool(attempts), "attempts": attempts,
        # every attempt's leapfrog steps: what the replicate cost, whatever the machine
        "gradient_evals": int(sum(a["gradient_evals"] for a in attempts) if attempts
                              else fit.gradient_evals),
        # what the ranked fit ran with, so advice never repeats what is already in place
        "target_accept": attempts[-1]["target_accept"] if attempts
        else float(task.sampler.target_accept),
        "noncentered": attempts[-1]["noncentered"] if attempts
        else _noncentered(prepared.backend),
    }


def _noncentered(backend) -> bool | None:
    """Whether a backend fits a non-centered form (None when it has no PyMC graph)."""
    spec = getattr(backend, "spec", None)
    return is_noncentered(spec) if spec is not None else None


def short_of_draws(flags: dict) -> bool:
    """Whether a fit's only warning is a low ESS: it sampled its posterior without trouble
    (no divergence, tree-depth hit or high R-hat) but drew too few draws for the ranks."""
    return bool(flags["low_ess"] and flags["n_divergent"] == 0 and flags["n_treedepth"] == 0
                and not flags["high_rhat"])


def refit_forms(prepared: Prepared, flags: dict) -> list[tuple[str, object]]:
    """(name, backend getter) of the refits to try, in order: the model's ``RESCUE`` forms
    (at most ``MAX_RESCUES``), or its own form when it has none.  A first fit that is only
    short of draws (:func:`short_of_draws`) first draws more in its own form, whose geometry
    was fine: the draw rule, which lets the default first fit be short."""
    own = ("build", lambda: prepared.backend)
    forms = prepared.rescue_forms()[:MAX_RESCUES]
    if not forms:
        return [own]
    return [own, *forms] if short_of_draws(flags) else forms


def rescue_fit(prepared: Prepared, task: BatchTask, seed, y, fit, checked, names):
    """Refit a flagged fit on the same data, in the forms of :func:`refit_forms`.  Each
    refit has settings aimed at what went wrong (:meth:`SamplerSettings.rescued`) and a seed
    from a child of the replicate's seed beyond the first three, which stay as they were.
    Returns the fit to rank (the last one), its :class:`Assessment`, and every attempt's
    flags, settings and time.

    Why ranks stay uniform: whether to refit depends on the data (through the previous fit),
    and given the data each refit is a fresh posterior sample; ``tests/test_rescue.py`` checks
    it on a model with a known posterior.
    """
    flags = checked.flags
    forms = refit_forms(prepared, flags)
    attempts = [{**flags, "build": "build", "target_accept": task.sampler.target_accept,
                 "tune": task.sampler.tune, "draws": task.sampler.draws, "seconds": fit.seconds,
                 "gradient_evals": fit.gradient_evals,
                 "noncentered": _noncentered(prepared.backend)}]
    seeds = seeding.rescue_children(seed, len(forms))
    stronger = task.sampler
    for (form, backend_of), child in zip(forms, seeds):
        if not flags["flagged"]:
            break
        # settings only ever grow stronger; draws at most 4x the study's
        stronger = stronger.rescued(
            divergent=flags["n_divergent"] > 0,
            low_ess=flags["slow_mixing"] and stronger.draws < 4 * task.sampler.draws)
        backend = backend_of()
        fit = backend.with_settings(stronger).fit(y, seeding.integer(child))
        checked = assess(fit, names, task.thin)
        flags = checked.flags
        attempts.append({**flags, "build": form, "target_accept": stronger.target_accept,
                         "tune": stronger.tune, "draws": stronger.draws,
                         "seconds": fit.seconds, "gradient_evals": fit.gradient_evals,
                         "noncentered": _noncentered(backend)})
    return fit, checked, (attempts if len(attempts) > 1 else [])


@dataclass
class Assessment:
    """One fit's draws as ranked scalars and its diagnostics, computed once: the rescue
    decides on ``flags`` and the record stores the same values.

    matrix: (chain, draw, k); diag: per-scalar ESS and R-hat (None if a draw is not
    finite); factor: the thinning factor; flags: divergences, low ESS, R-hat, tree depth.
    """

    matrix: np.ndarray
    diag: dict | None
    factor: int
    flags: dict


def assess(fit, names: list[str], thin: int | str) -> Assessment:
    """Sampler warnings of one fit, as the record stores them (also to decide a rescue)."""
    matrix = stack_scalars(fit.draws, names)
    n_div, n_depth = int(fit.diverging.sum()), int(fit.treedepth_hits)
    if not np.all(np.isfinite(matrix)):
        return Assessment(matrix, None, 1, {
            "flagged": True, "slow_mixing": True, "low_ess": True, "high_rhat": False,
            "n_divergent": n_div, "ess_min": 0.0, "n_treedepth": n_depth, "rhat_max": None})
    diag = convergence(matrix)
    ess_min = float(min(diag["ess_bulk"].min(), diag["ess_tail"].min()))
    factor = thin_factor(ess_min / matrix.shape[0], matrix.shape[1], thin)
    n_kept = len(range(0, matrix.shape[1], factor)) * matrix.shape[0]
    rhat = float(np.nanmax(diag["rhat"])) if np.isfinite(diag["rhat"]).any() else math.nan
    flag_ess = low_ess(ess_min, n_kept, thin)
    high_rhat = bool(np.isfinite(rhat) and rhat > RHAT_MAX)
    slow = bool(flag_ess or n_depth > 0 or high_rhat)
    return Assessment(matrix, diag, factor, {
        "flagged": bool(n_div > 0 or slow), "slow_mixing": slow, "low_ess": flag_ess,
        "high_rhat": high_rhat, "n_divergent": n_div, "ess_min": ess_min,
        "n_treedepth": n_depth, "rhat_max": rhat if np.isfinite(rhat) else None})
