"""Fit: the backends that turn one simulated data set into posterior draws.

A backend is compiled once per (model, design) on each worker and then fits replicate after
replicate by swapping only the response data.  The contract (after R's SBC package) is small:
``fit(y, seed) -> Fit`` with draws by parameter name and the sampler's own diagnostics.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from sbc.spec import RESPONSE_DATA_NAME, ModelSpec, load_module
from sbc.study import SamplerSettings


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
    import pickle
    import select
    import signal
    import warnings

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
        kwargs = dict(chains=s.chains, cores=1, tune=s.tune, draws=s.draws, seed=int(seed),
                      target_accept=s.target_accept, maxdepth=s.max_treedepth,
                      adaptation=s.adaptation,
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
    import pyarrow as pa

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
    divergences, tree-depth hits and step size."""
    import pyarrow as pa

    draw_batches, stat_batches = raw.get_arrow_trace()
    chains = []
    for draw, stat in zip(draw_batches, stat_batches):
        kept = ~np.asarray(pa.array(stat.column("tuning")).to_numpy(zero_copy_only=False), bool)
        chains.append(({n: np.asarray(_arrow_column(draw, n, kept), dtype=float) for n in names},
                       _arrow_column(stat, "diverging", kept).astype(bool),
                       _arrow_column(stat, "maxdepth_reached", kept).astype(bool),
                       _arrow_column(stat, "step_size", kept).astype(float)))
    return Fit(draws={n: np.stack([c[0][n] for c in chains]) for n in names},
               diverging=np.stack([c[1] for c in chains]),
               treedepth_hits=int(sum(c[2].sum() for c in chains)),
               step_size=float(np.mean([c[3].mean() for c in chains])), seconds=seconds)


class PymcBackend:
    """PyMC's own NUTS, compiled once; the response is swapped with ``set_value``.

    PyMC hands sampling to nutpie when it is installed unless ``nuts_sampler="pymc"`` is
    passed, so it is passed explicitly here.
    """

    def __init__(self, spec: ModelSpec, settings: SamplerSettings):
        import logging

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
                                  var_names=list(self.spec.parameters))
            post, stats = trace["posterior"], trace["sample_stats"]
            draws = {name: np.asarray(post[name].values, dtype=float)
                     for name in self.spec.parameters}
            return Fit(draws=draws, diverging=np.asarray(stats["diverging"].values, dtype=bool),
                       treedepth_hits=int(np.asarray(stats["reached_max_treedepth"].values).sum())
                       if "reached_max_treedepth" in stats else 0,
                       step_size=float(np.asarray(stats["step_size"].values).mean()))
        fit = call_stoppable(sample, s.timeout)
        fit.seconds = time.perf_counter() - start
        return fit


class ExactBackend:
    """Exact posterior draws for models with a known posterior (no MCMC).

    The model file must define ``exact_posterior(data, y, n_draws, rng) -> dict`` returning
    arrays of shape ``(n_draws, *shape)`` per parameter.  Used to test the framework itself.
    """

    def __init__(self, spec: ModelSpec, settings: SamplerSettings, data):
        from sbc.errors import ModelError

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


def check_backend(spec: ModelSpec, settings: SamplerSettings) -> None:
    """What a backend needs from a model, checked before any work is sent out (cheap: no
    compilation), so a wrong sampler choice fails at once with a message."""
    from sbc.errors import ModelError

    if settings.name == "exact" and not callable(getattr(load_module(spec.model),
                                                         "exact_posterior", None)):
        raise ModelError(f"model '{spec.model.ref}' has no exact_posterior(data, y, n_draws, "
                         "rng) function, so sampler 'exact' cannot fit it; use sampler "
                         "'nutpie' or 'pymc', or add exact_posterior to the model file")


def make_backend(spec: ModelSpec, settings: SamplerSettings, data=None):
    if settings.name == "nutpie":
        return NutpieBackend(spec, settings)
    if settings.name == "pymc":
        return PymcBackend(spec, settings)
    if settings.name == "exact":
        return ExactBackend(spec, settings, data)
    raise ValueError(f"unknown sampler {settings.name!r}")
