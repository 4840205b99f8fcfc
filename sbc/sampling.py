"""Sampling: the samplers, their settings, and the backends that turn one simulated data set into
posterior draws.

A backend is compiled once per (model, design) on each worker and then fits replicate after
replicate by swapping only the response data.  The contract (after R's SBC package) is small:
``fit(y, seed) -> Fit`` with draws by parameter name and the sampler's own diagnostics, and
``with_settings(settings)`` for a rescue refit with stronger settings.

Samplers are found by name in a registry (:func:`samplers`): nutpie, PyMC and "exact" (a
model's own ``exact_posterior``) are built in; another package adds one through the entry
point group ``sbc.samplers``, whose entries load a :class:`Sampler`, without any change here
or in the pipeline.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cache
from importlib import metadata
from typing import Any

import numpy as np
import pyarrow as pa

from sbc.errors import ModelError
from sbc.spec import RESPONSE_DATA_NAME, ModelSpec, load_module

# nutpie and PyMC are imported by the backends that sample with them: SamplerSettings is part
# of every study (sbc.study, `sbc report`, sbc.open), which must not wait for them to load.


NUTPIE_GAMMA = 1e-5  # nutpie's own default of mass_matrix_gamma
# "auto": with many dimensions nutpie's low-rank adaptation at its own gamma costs most of a
# fit (crispr_screen at 100x30x3, 134 dimensions: 3.8 s per replicate, 2.9 s of it tuning),
# and a gamma of 1e-3 cuts that to 0.9 s with every fit clean; below 100 dimensions the
# adaptation is cheap and its default gamma keeps more fits clean (benchmarks/draw_rule.md)
AUTO_GAMMA, AUTO_GAMMA_DIMS = 1e-3, 100


def stored_sampler(table: dict) -> dict:
    """A sampler table as a store's study.json holds it, with the settings added since the
    store was written set to what its fits used: ``mass_matrix_gamma`` nutpie's 1e-5 (a
    table without it predates the setting; one with null says "auto")."""
    out = dict(table)
    out.setdefault("mass_matrix_gamma", NUTPIE_GAMMA)
    return out


def low_rank_gamma(gamma: float | None, n_dim: int) -> float:
    """The mass_matrix_gamma a low-rank fit uses: the setting, or for "auto" (None) the
    rule above, which reads only the model's dimension (fixed before any data are seen)."""
    if gamma is not None:
        return float(gamma)
    return AUTO_GAMMA if n_dim >= AUTO_GAMMA_DIMS else NUTPIE_GAMMA


@dataclass(frozen=True)
class SamplerSettings:
    """How each replicate is fitted.

    tune, draws: the first fit's, fixed before any data are seen.  The ranks need about
        ``sbc.diagnostics.ESS_MIN`` (100) effective draws of every ranked scalar; 500 draws
        after 300 tuning steps give crispr_screen about 170-230 (min bulk/tail ESS, median),
        and a fit that falls short is refitted with twice the draws (the rescue's draw rule,
        in its own form first: ``sbc.replicate.refit_forms``).  Measured against 500 + 1000:
        ``benchmarks/draw_rule.md``.
    adaptation: nutpie's mass-matrix adaptation ("diag", or "low_rank", which also learns
        the strongest posterior correlations; ignored by the other samplers).
    mass_matrix_gamma: the regularisation of the low-rank mass matrix's eigenvalues
        (nutpie's ``mass_matrix_gamma``; only with ``adaptation = "low_rank"``); None
        ("auto"): 1e-3 for models of 100 or more dimensions, else nutpie's 1e-5
        (:func:`low_rank_gamma`).
    rescue: refit a fit flagged by the sampler (divergences, low ESS, R-hat, tree depth)
        on the same data: in the model's ``RESCUE`` forms in order (at most two refits) or,
        without any, once in its own form, with :meth:`rescued` settings; every attempt is
        recorded and the last is ranked.  Given the data, each refit is a fresh posterior sample
        whatever prompted it, so ranks stay uniform (tested on a model with a known
        posterior, with rescues chosen by a data-dependent rule).
    """

    name: str = "nutpie"
    chains: int = 1
    tune: int = 300
    draws: int = 500
    target_accept: float = 0.9
    max_treedepth: int = 10
    timeout: float | None = None  # seconds per fit; None = no limit
    adaptation: str = "low_rank"
    rescue: bool = True
    mass_matrix_gamma: float | None = None  # None: "auto" (low_rank_gamma)

    def rescued(self, divergent: bool = True, low_ess: bool = True) -> SamplerSettings:
        """The stronger settings of a rescue fit, aimed at what went wrong.

        After divergences: twice the tuning and a smaller step size (target_accept 0.99, or
        halfway from the current value to 1 when it is already 0.99).  After a low ESS (or
        R-hat, tree depth): twice the draws, so that ranks thinned to the ESS keep
        their resolution.  More draws do not cure divergences (they add chances to
        diverge), so they are not added for those alone.
        """
        out = replace(self, rescue=False)
        if divergent:
            smaller_step = max(0.99, 1.0 - (1.0 - self.target_accept) / 2.0)
            out = replace(out, tune=2 * self.tune, target_accept=smaller_step)
        if low_ess:
            out = replace(out, draws=2 * self.draws)
        return out

    def nutpie_kwargs(self, n_dim: int) -> dict[str, Any]:
        """``nutpie.sample``'s sampler options for these settings on a compiled model of
        ``n_dim`` unconstrained dimensions (gamma "auto" resolved by
        ``sbc.sampling.low_rank_gamma``; nutpie takes a gamma only with low-rank adaptation):
        the one mapping that the library's nutpie fits and the benchmarks' bare-sampler paths
        share."""
        out: dict[str, Any] = dict(chains=self.chains, cores=1, tune=self.tune, draws=self.draws,
                                   target_accept=self.target_accept, maxdepth=self.max_treedepth,
                                   adaptation=self.adaptation)
        if self.adaptation == "low_rank":
            out["mass_matrix_gamma"] = low_rank_gamma(self.mass_matrix_gamma, n_dim)
        return out

    def fingerprint_dict(self) -> dict[str, Any]:
        """What changes results.  ``timeout`` is a run-time limit, not a property of results
        (a fit that finishes gives the same draws under any limit), so it is left out: raising
        it and `sbc run --retry-failed` repairs timed-out replicates in place."""
        out = asdict(self)
        out["timeout"] = None
        if out["mass_matrix_gamma"] == NUTPIE_GAMMA:  # what every fit used before the setting
            del out["mass_matrix_gamma"]
        return out


class FitTimeout(RuntimeError):
    """A fit ran past the study's ``sampler.timeout``; the replicate is recorded as failed."""


def call_stoppable(fn, timeout: float | None):
    """Run ``fn()``; with a ``timeout`` (seconds), run it in a forked child process that is
    killed (SIGKILL) when the time is up, so a timed-out fit stops using the CPU.

    Used for backends that cannot be cancelled from inside (PyMC, user ``exact_posterior``
    code); nutpie is cancelled through its own sampler handle instead.  A thread could not be
    stopped, only abandoned: it would keep a core busy until the worker exits.  ``fork`` (not
    ``spawn``) keeps the compiled model, and costs a few milliseconds per fit.  The child
    sends the result (or the exception it raised) back pickled over a pipe; it never
    touches the store.  A child that dies without answering (os.abort, a segfault) becomes a
    ``FitCrashed`` error of this replicate instead of killing the worker.
    """
    if timeout is None:
        return fn()
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # "process is multi-threaded": the child runs fn only
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_fd)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as exc:
                try:
                    payload = pickle.dumps((False, exc))
                except Exception:
                    payload = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise FitTimeout(f"fit did not finish within the per-fit timeout of {timeout:g} "
                                 "s (sampler.timeout in the study file); it was stopped")
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    if not chunks:
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        raise FitCrashed(f"the process running the fit died ({how}): a crash in the model or "
                         "sampler code, e.g. os.abort() or a segmentation fault")
    ok, value = pickle.loads(b"".join(chunks))  # from our own child, never from a file
    if not ok:
        raise value
    return value


class FitCrashed(RuntimeError):
    """The child process running a stoppable fit died without an answer."""


@dataclass
class Fit:
    draws: dict[str, np.ndarray]  # name -> (chain, draw, *shape), constrained space
    diverging: np.ndarray  # (chain, draw) bool
    treedepth_hits: int = 0
    step_size: float = float("nan")
    seconds: float = 0.0  # wall time of the sampler call alone
    # leapfrog steps (one gradient of the log density each), tuning included: the fit's
    # cost in a unit no machine or load changes (0 where no gradient is taken)
    gradient_evals: int = 0


class NutpieBackend:
    """nutpie's compiled NUTS (numba backend): the fastest per-replicate path measured here."""

    def __init__(self, spec: ModelSpec, settings: SamplerSettings, compiled=None):
        import nutpie

        self.settings = settings
        self.spec = spec
        # Store only what gets ranked (not per-observation deterministics: at 9,000 rows
        # storing `mu` would cost 72 MB per fit).  A rescue backend shares the compiled model.
        self.compiled = compiled if compiled is not None else nutpie.compile_pymc_model(
            spec.fit_model, var_names=list(spec.parameters))

    def with_settings(self, settings: SamplerSettings) -> NutpieBackend:
        return NutpieBackend(self.spec, settings, self.compiled)

    def fit(self, y: np.ndarray, seed: int) -> Fit:
        import nutpie

        s = self.settings
        # The raw Arrow trace, not the DataTree nutpie builds by default: the conversion
        # cost about a third of a fit at 90 rows (benchmarks/results.md), for draws that are
        # bit-for-bit the same.
        kwargs = dict(s.nutpie_kwargs(self.compiled.n_dim), seed=int(seed),
                      save_warmup=False, progress_bar=False, return_raw_trace=True)
        model = self.compiled.with_data(**{RESPONSE_DATA_NAME: np.ascontiguousarray(y, dtype=float)})
        start = time.perf_counter()
        if s.timeout is None:
            raw = nutpie.sample(model, **kwargs)
        else:  # sample in the background so a stuck fit can be cancelled, not abandoned
            sampler = nutpie.sample(model, blocking=False, **kwargs)
            try:
                # nutpie 0.16: wait(timeout) raises TimeoutError while sampling goes on (so
                # does reading is_finished), and returns the trace once it is done
                raw = sampler.wait(timeout=s.timeout)
            except TimeoutError:
                sampler.cancel()
                raise FitTimeout(f"nutpie did not finish within the per-fit timeout of "
                                 f"{s.timeout:g} s (sampler.timeout in the study file)") from None
        seconds = time.perf_counter() - start
        return fit_from_arrow(raw, self.spec.parameters, seconds)


def _arrow_column(batch, name: str, rows: np.ndarray) -> np.ndarray:
    """One Arrow column as (n_kept, *shape) for the rows ``rows`` (a boolean mask)."""
    col = batch.column(name)
    meta = col.field.metadata or {}
    shape = tuple(int(n) for n in meta.get(b"shape", b"").decode().split(",") if n)
    arr = pa.array(col)
    if hasattr(arr, "flatten"):
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    return values.reshape((batch.num_rows, *shape))[rows]


def fit_from_arrow(raw, names, seconds: float) -> Fit:
    """A ``Fit`` from nutpie's raw trace: posterior draws (tuning rows dropped) per chain,
    divergences, tree-depth hits, step size and leapfrog steps (tuning included)."""
    draw_batches, stat_batches = raw.get_arrow_trace()
    chains = []
    steps = 0
    for draw, stat in zip(draw_batches, stat_batches):
        steps += int(np.asarray(pa.array(stat.column("n_steps")).to_numpy(
            zero_copy_only=False)).sum())
        kept = ~np.asarray(pa.array(stat.column("tuning")).to_numpy(zero_copy_only=False), bool)
        chains.append(({n: np.asarray(_arrow_column(draw, n, kept), dtype=float) for n in names},
                       _arrow_column(stat, "diverging", kept).astype(bool),
                       _arrow_column(stat, "maxdepth_reached", kept).astype(bool),
                       _arrow_column(stat, "step_size", kept).astype(float)))
    return Fit(draws={n: np.stack([c[0][n] for c in chains]) for n in names},
               diverging=np.stack([c[1] for c in chains]),
               treedepth_hits=int(sum(c[2].sum() for c in chains)),
               step_size=float(np.mean([c[3].mean() for c in chains])), seconds=seconds,
               gradient_evals=steps)


class PymcBackend:
    """PyMC's own NUTS, compiled once; the response is swapped with ``set_value``.

    PyMC hands sampling to nutpie when it is installed unless ``nuts_sampler="pymc"`` is
    passed, so it is passed explicitly here.
    """

    def __init__(self, spec: ModelSpec, settings: SamplerSettings):
        logging.getLogger("pymc").setLevel(logging.WARNING)  # no per-fit progress chatter
        self.settings = settings
        self.spec = spec
        self._data = spec.response_data

    def with_settings(self, settings: SamplerSettings) -> PymcBackend:
        return PymcBackend(self.spec, settings)

    def fit(self, y: np.ndarray, seed: int) -> Fit:
        import pymc as pm

        s = self.settings
        self._data.set_value(np.asarray(y, dtype=self._data.dtype))
        start = time.perf_counter()

        def sample() -> Fit:
            with self.spec.fit_model:
                trace = pm.sample(draws=s.draws, tune=s.tune, chains=s.chains, cores=1,
                                  random_seed=int(seed), target_accept=s.target_accept,
                                  max_treedepth=s.max_treedepth, nuts_sampler="pymc",
                                  progressbar=False, compute_convergence_checks=False,
                                  discard_tuned_samples=False,
                                  var_names=list(self.spec.parameters))
            post, stats = trace["posterior"], trace["sample_stats"]
            steps = sum(int(np.asarray(trace[group]["n_steps"].values).sum())
                        for group in ("sample_stats", "warmup_sample_stats")
                        if group in trace.children and "n_steps" in trace[group])
            draws = {name: np.asarray(post[name].values, dtype=float)
                     for name in self.spec.parameters}
            return Fit(draws=draws, diverging=np.asarray(stats["diverging"].values, dtype=bool),
                       treedepth_hits=int(np.asarray(stats["reached_max_treedepth"].values).sum())
                       if "reached_max_treedepth" in stats else 0,
                       step_size=float(np.asarray(stats["step_size"].values).mean()),
                       gradient_evals=steps)
        fit = call_stoppable(sample, s.timeout)
        fit.seconds = time.perf_counter() - start
        return fit


class ExactBackend:
    """Exact posterior draws for models with a known posterior (no MCMC).

    The model file must define ``exact_posterior(data, y, n_draws, rng) -> dict`` returning
    arrays of shape ``(n_draws, *shape)`` per parameter.  Used to test the framework itself.
    """

    def __init__(self, spec: ModelSpec, settings: SamplerSettings, data):
        module = load_module(spec.model)
        self._posterior = getattr(module, "exact_posterior", None)
        if self._posterior is None:
            raise ModelError(f"model '{spec.model.ref}' has no exact_posterior(data, y, n_draws, "
                             "rng) function, so sampler 'exact' cannot fit it; use 'nutpie'")
        self.settings, self.spec, self.data = settings, spec, data

    def fit(self, y: np.ndarray, seed: int) -> Fit:
        start = time.perf_counter()
        rng = np.random.default_rng(seed)
        n = self.settings.draws * self.settings.chains
        raw = call_stoppable(lambda: self._posterior(self.data, np.asarray(y), n, rng),
                                self.settings.timeout)
        draws = {name: np.asarray(raw[name], dtype=float).reshape(
            (self.settings.chains, self.settings.draws) + np.shape(raw[name])[1:])
            for name in self.spec.parameters}
        return Fit(draws=draws, diverging=np.zeros((self.settings.chains, self.settings.draws), bool),
                   seconds=time.perf_counter() - start)


def _check_exact(spec: ModelSpec, settings: SamplerSettings) -> None:
    if not callable(getattr(load_module(spec.model), "exact_posterior", None)):
        raise ModelError(f"model '{spec.model.ref}' has no exact_posterior(data, y, n_draws, "
                         "rng) function, so sampler 'exact' cannot fit it; use sampler "
                         "'nutpie' or 'pymc', or add exact_posterior to the model file")


@dataclass(frozen=True)
class Sampler:
    """A sampler sbc can fit with.

    name: what ``[sampler] name`` says.  make(spec, settings, data): a backend (``fit(y,
    seed) -> Fit`` and ``with_settings(settings)``), compiled for the model on ``data``'s
    design.  check(spec, settings): what the sampler needs from a model, checked before any
    work is sent out (cheap: no compilation); raise ``ModelError`` with the fix.
    rescue: whether flagged fits are refitted with stronger settings (a sampler without
    sampler diagnostics has nothing to rescue).  threads: whether one compiled backend may
    fit in several threads of a process at once, side by side (the sampler releases the
    GIL and keeps no state between fits: nutpie's Rust sampler over a numba log density).
    """

    name: str
    make: Callable[[ModelSpec, SamplerSettings, object], object]
    check: Callable[[ModelSpec, SamplerSettings], None] | None = None
    rescue: bool = True
    threads: bool = False


BUILT_IN = (
    Sampler("nutpie", lambda spec, settings, data: NutpieBackend(spec, settings),
            threads=True),
    # PyMC's backend swaps the data of one compiled function with set_value: one fit at a time
    Sampler("pymc", lambda spec, settings, data: PymcBackend(spec, settings)),
    Sampler("exact", lambda spec, settings, data: ExactBackend(spec, settings, data),
            check=_check_exact, rescue=False, threads=True),
)
ENTRY_POINT_GROUP = "sbc.samplers"
_REGISTERED: dict[str, Sampler] = {}


def register(sampler: Sampler) -> Sampler:
    """Make ``sampler`` available by its name (in this process; workers import the module
    that registers it, or find it through the ``sbc.samplers`` entry point group)."""
    _REGISTERED[sampler.name] = sampler
    samplers.cache_clear()
    return sampler


@cache
def samplers() -> dict[str, Sampler]:
    """Every sampler by name: the built-in ones, those of installed packages (entry point
    group ``sbc.samplers``) and those registered in this process."""
    found = {s.name: s for s in BUILT_IN}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        sampler = entry.load()
        found[getattr(sampler, "name", entry.name)] = sampler
    return found | _REGISTERED


def sampler_names() -> tuple[str, ...]:
    return tuple(samplers())


def get_sampler(name: str) -> Sampler:
    try:
        return samplers()[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(samplers())}") from None


def check_backend(spec: ModelSpec, settings: SamplerSettings) -> None:
    """What the sampler needs from a model, checked before any work is sent out."""
    s = get_sampler(settings.name)
    if s.check is not None:
        s.check(spec, settings)


def make_backend(spec: ModelSpec, settings: SamplerSettings, data=None):
    return get_sampler(settings.name).make(spec, settings, data)
