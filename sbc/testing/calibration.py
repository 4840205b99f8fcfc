"""Calibration as a test assertion: run a small SBC study and fail with a readable message.

``assert_calibrated(model, design, n_sims=...)`` runs the same pipeline and sampler as
``sbc run`` (a :class:`~sbc.study.Study` through :func:`sbc.pipeline.run_study`) and judges
the stored fits with the same engine as the report (:func:`sbc.calibration.calibrate`): ranks
of every parameter and derived quantity tested for uniformity, elements of a vector pooled per
group, Holm over the groups at family-wise level ``alpha``.  It raises
:class:`CalibrationFailure`, an ``AssertionError``, naming each failing quantity, its
statistic, p-value and failure shape, the cause (model or code / computation), and where the
report and stored fits are.

By default (``n_sims="auto"``) the check is sequential (:mod:`sbc.stopping`): it stops as
soon as an anytime-valid test rejects calibration, so a broken model fails after a few
replicates, and a calibrated one passes at the pass point, the fewest fits at which a
``shift``-sd shift and a ``narrow`` too narrow posterior of one scalar would have been
detected with probability ``power`` (at most ``max_sims``).  An integer ``n_sims`` runs a
fixed number of replicates, as before.

Fits are cached: the output directory is keyed by a hash of the model source(s), design,
seed, sampler settings and thinning (not the number of simulations), so re-running an
unchanged check only reads stored fits, and raising ``n_sims`` fits only the new replicates;
fixed and sequential checks of the same model share them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.calibration import calibrate, flagged_mask, scalar_adjusted
from sbc.verdicts import SHAPE_TEXT as _ENGINE_SHAPES
from sbc.verdicts import Verdict
from sbc.design import Design
from sbc.errors import StudyError
from sbc.execution import check_how
from sbc.sampling import SamplerSettings, sampler_names
from sbc.stopping import Sequential, judge
from sbc.study import Study

# sbc.pipeline and sbc.results (with matplotlib and Jinja2 behind them) are imported where a
# check runs: the pytest plugin imports this module in every pytest session.

DEFAULT_CACHE_DIR = ".sbc_cache"

SHAPE_TEXT = _ENGINE_SHAPES


@dataclass(frozen=True)
class ParameterCheck:
    """Uniformity test of one scalar parameter or derived quantity (e.g. ``gene_effect[2]``)."""

    name: str
    group: str
    kind: str  # "parameter" or "quantity"
    n: int  # replicates with a rank
    statistic: float  # ECDF gamma statistic (small = far from uniform)
    p_value: float
    p_adjusted: float  # Bonferroni within its group, Holm across the groups (the engine's)
    shape: str  # sbc.stats.failure_shape of the ranks; "ok" when the check passes
    failed: bool


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`check_calibration`: per-quantity checks, fit counts and locations."""

    model: str
    simulate_model: str | None
    design: Design
    n_sims: int
    alpha: float
    checks: tuple[ParameterCheck, ...]
    n_ok: int
    n_failed_fits: int
    n_divergent: int
    max_failed: float
    new_fits: int
    out: Path
    report: Path | None
    fit_errors: tuple[str, ...] = ()
    verdict: Verdict | None = None  # the engine's verdict (same as the report's)
    n_flagged: int = 0  # successful fits with a sampler warning (divergence, low ESS, R-hat)

    @property
    def failures(self) -> tuple[ParameterCheck, ...]:
        return tuple(c for c in self.checks if c.failed)

    @property
    def too_many_failed_fits(self) -> bool:
        return self.n_failed_fits > self.max_failed * self.n_sims

    @property
    def passed(self) -> bool:
        """The engine's verdict is pass (warnings allowed) and not too many fits failed."""
        ok = self.verdict.status == "pass" if self.verdict is not None else not self.failures
        return ok and not self.too_many_failed_fits

    def table(self) -> pd.DataFrame:
        """One row per check, as a DataFrame."""
        return pd.DataFrame([c.__dict__ for c in self.checks])

    def message(self) -> str:
        """A readable verdict: what failed, how, and where the evidence is."""
        who = f"model '{self.model}'"
        if self.simulate_model:
            who += f" (data simulated by '{self.simulate_model}')"
        where = f"design {self.design.label}, {self.n_sims} simulations"
        fits = (f"{self.n_ok} fits ok, {self.n_failed_fits} failed, "
                f"{self.n_divergent} with divergences")
        lines = []
        label = self.verdict.label if self.verdict is not None else ""
        if self.passed:
            lines.append(f"{who} is calibrated at {where} ({label}): all {len(self.checks)} "
                         f"rank checks pass at family-wise alpha {self.alpha:g} (Holm); {fits}.")
        else:
            lines.append(f"{who} is NOT calibrated at {where} ({label}; {fits}).")
        if self.verdict is not None and (self.verdict.warnings or not self.passed):
            lines.append(f"  {self.verdict.reason}")
            if self.verdict.recommendation:
                lines.append(f"  Try: {self.verdict.recommendation}.")
        if self.too_many_failed_fits:
            lines.append(f"  {self.n_failed_fits} of {self.n_sims} fits failed (more than "
                         f"{self.max_failed:.0%}); first error: {self.fit_errors[0][:300]}")
        if self.failures:
            lines.append(f"  {len(self.failures)} of {len(self.checks)} rank checks fail "
                         f"(Holm-adjusted p <= {self.alpha:g}):")
            width = max(len(c.name) for c in self.failures)
            for c in sorted(self.failures, key=lambda c: c.p_value):
                lines.append(f"    {c.name:<{width}}  {c.kind:<9}  ECDF statistic "
                             f"{c.statistic:.3g}, p = {c.p_value:.3g} (adjusted "
                             f"{c.p_adjusted:.3g}), {SHAPE_TEXT[c.shape]}")
            if all(c.kind == "quantity" for c in self.failures):
                lines.append("  Only log-likelihood quantities fail: the posterior ignores "
                             "part or all of the data (dropped observations, prior only).")
        if self.report is not None:
            lines.append(f"  Report: {self.report}")
        lines.append(f"  Stored fits: {self.out} (an unchanged rerun reuses them)")
        return "\n".join(lines)


class CalibrationFailure(AssertionError):
    """Raised by :func:`assert_calibrated`; ``.result`` holds the :class:`CalibrationResult`."""

    def __init__(self, result: CalibrationResult):
        super().__init__(result.message())
        self.result = result


# --------------------------------------------------------------------------------------
# Pure statistics on the stored parameters table
# --------------------------------------------------------------------------------------


def calibration_checks(params: pd.DataFrame, alpha: float = 0.05, quantities: bool = True,
                       reps: pd.DataFrame | None = None) -> tuple[ParameterCheck, ...]:
    """Per-scalar view of the engine's tests on a parameters table (``Store.tables()[1]``).

    params: one row per replicate x scalar with columns model, design, rep, name, group,
    kind, rank, n_ranked (truth, mean and sd when present).  ``p_adjusted`` is the engine's:
    Bonferroni within the scalar's group, Holm over the groups, so ``alpha`` is the
    family-wise false-alarm rate.  Checks come back sorted by name.
    """
    return _checks(_calibrate(params, reps, alpha, quantities, None)[0], alpha)


def _calibrate(params, reps, alpha, quantities, sampler):
    if not quantities:
        params = params[params["kind"] != "quantity"]
    params = params.copy()
    for col, default in (("model", "model"), ("design", "design")):
        if col not in params:
            params[col] = default
    for col in ("truth", "mean", "sd"):
        if col not in params:
            params[col] = np.nan
    if reps is None:
        reps = params.drop_duplicates(["model", "design", "rep"])[["model", "design", "rep"]]
        reps = reps.assign(status="ok", n_divergent=0, n_treedepth=0, flag_divergent=False,
                           flag_low_ess=False, flag_rhat=False, wall_seconds=np.nan,
                           n_ranked=np.nan)
    cal = calibrate(reps, params, alpha=alpha, family="cell", sampler=sampler)
    return cal, reps


def _checks(cal, alpha: float, rejected: tuple[str, ...] = ()) -> tuple[ParameterCheck, ...]:
    """Per-scalar checks: failed when the adjusted p is at most ``alpha``, or the scalar's
    group was ``rejected`` by the sequential test."""
    s = cal.scalars
    if s.empty:
        return ()
    adjusted = scalar_adjusted(s, cal.groups)
    checks = []
    for r, p in zip(s.itertuples(), adjusted):
        failed = bool(p <= alpha) or str(r.group) in rejected
        checks.append(ParameterCheck(
            name=str(r.name), group=str(r.group), kind=str(r.kind), n=int(r.n_used),
            statistic=float(r.statistic), p_value=float(r.p_value), p_adjusted=float(p),
            shape=str(r.shape) if failed else "ok", failed=failed))
    return tuple(sorted(checks, key=lambda c: c.name))


# --------------------------------------------------------------------------------------
# Building the study
# --------------------------------------------------------------------------------------


def model_ref(model: str | Path | Callable) -> str:
    """A model reference the study understands, from a name, a path or a build function.

    A function must be defined at the top level of a file (its source file is executed on
    the workers, and the cache key covers that file).
    """
    if isinstance(model, Path):
        return str(model.resolve())
    if isinstance(model, str):
        return model
    if callable(model):
        if "<locals>" in getattr(model, "__qualname__", "<locals>"):
            raise StudyError(f"model function {model!r} is defined inside another function; "
                             "define it at the top level of a .py file, or pass the path "
                             "'file.py:function'")
        source = inspect.getsourcefile(model)
        if source is None:
            raise StudyError(f"cannot find the source file of model function {model!r}; pass "
                             "a model name or 'path/to/file.py:function' instead")
        return f"{Path(source).resolve()}:{model.__name__}"
    raise StudyError(f"model must be a model name, a path 'file.py:function' or a build "
                     f"function, got {type(model).__name__}")


def as_design(design: Design | Sequence[int] | str) -> Design:
    """A :class:`Design` from a Design, a (cell_lines, genes, reps) triple or a label."""
    try:
        if isinstance(design, Design):
            return design
        if isinstance(design, str):
            return Design.from_label(design)
        return Design(*design)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"design {design!r} is not valid ({exc}); give a Design, a "
                         "(cell_lines, genes, reps) triple such as (10, 3, 3), or '10x3x3'") from exc


def as_sampler(sampler: str | SamplerSettings, **overrides) -> SamplerSettings:
    if isinstance(sampler, SamplerSettings):
        return sampler
    if sampler not in sampler_names():
        raise StudyError(f"unknown sampler {sampler!r}; choose one of {', '.join(sampler_names())} "
                         "or pass a sbc.study.SamplerSettings")
    return SamplerSettings(name=sampler, **overrides)


def calibration_study(model, design, *, n_sims: int | str, seed: int = 0,
                      sampler: str | SamplerSettings = "nutpie", simulate_model=None,
                      thin: int | str = "auto", base_dir: str | Path = ".",
                      sequential=None) -> Study:
    """The one-model, one-design :class:`Study` that :func:`check_calibration` runs;
    ``n_sims="auto"`` with ``sequential`` settings (:class:`sbc.stopping.Sequential`) for a
    sequential check."""
    if n_sims != "auto" and (isinstance(n_sims, bool) or not isinstance(n_sims, int)
                             or n_sims < 2):
        raise StudyError(f"n_sims must be \"auto\" (sequential) or an integer >= 2, got "
                         f"{n_sims!r}; uniformity needs several ranks (typically 50 to 500)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise StudyError(f"seed must be a non-negative integer, got {seed!r}")
    ref = model_ref(model)
    sim_ref = model_ref(simulate_model) if simulate_model is not None else None
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(ref.partition(":")[0]).stem)
    return Study(name=f"check-{label}", models=(ref,), designs=(as_design(design),),
                 simulations=n_sims, seed=seed, sampler=as_sampler(sampler), thin=thin,
                 simulate_model=sim_ref, base_dir=str(Path(base_dir).resolve()),
                 sequential=sequential if n_sims == "auto" else None)


def cache_path(study: Study, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> Path:
    """Output directory of a check: keyed by the study fingerprint (model sources, design,
    seed, sampler, thinning; not the number of simulations), so unchanged checks reuse fits."""
    from sbc.pipeline import manifest_for, resolve_models

    models, sim = resolve_models(study)
    fingerprint = manifest_for(study, models, sim)["fingerprint"]
    sim_part = f"-from-{sim.label}" if sim else ""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{models[0].label}{sim_part}")
    return Path(cache_dir) / f"{name}-{study.designs[0].label}-{fingerprint}"


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


def check_calibration(model, design=(10, 3, 3), *, n_sims: int | str = "auto",
                      alpha: float = 0.05, sampler: str | SamplerSettings = "nutpie",
                      simulate_model=None, seed: int = 0, thin: int | str = "auto",
                      quantities: bool = True, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                      out: str | Path | None = None, workers: int = 0, report: bool = True,
                      max_failed: float = 0.05, base_dir: str | Path = ".",
                      verbose: bool = False, max_sims: int = 1000, power: float = 0.8,
                      shift: float = 0.5, narrow: float = 0.2) -> CalibrationResult:
    """Run (or reuse) SBC replicates of ``model`` at ``design`` and test the ranks.

    n_sims: "auto" (sequential: stop at the verdict, at most ``max_sims``; a pass states
        that a ``shift``-sd shift and a ``narrow`` too narrow posterior would have been
        detected with probability ``power``), or a fixed number of replicates.

    model / simulate_model: a model name (``models/NAME.py``), ``'path.py:function'``, a
        Path, or a top-level build function.  ``simulate_model`` simulates the data the
        ``model`` is fitted to (default: the model itself).
    design: a :class:`Design`, (cell_lines, genes, reps) or ``'10x3x3'``.
    alpha: family-wise false-alarm rate over all checked quantities (Holm).
    sampler: "nutpie", "pymc", "exact" or a :class:`SamplerSettings`.
    quantities: also test the log-likelihood quantities (``loglik``, ``loglik_min``), which
        see bugs parameter ranks cannot (dropped data, a posterior that ignores the data).
    out: output directory; default ``cache_dir/<model>-<design>-<fingerprint>``.
    workers: 0 runs in this process; N > 0 uses N local Dask workers.
    max_failed: share of failed fits tolerated before the check fails.
    Returns a :class:`CalibrationResult` (never raises for miscalibration).
    """
    from sbc.results import run
    check_how(workers=workers)  # before any model is resolved or a cache directory made
    if not 0 < alpha < 1:
        raise StudyError(f"alpha must lie in (0, 1), got {alpha!r}; 0.05 is usual")
    settings = Sequential(max_simulations=max_sims, alpha=alpha, power=power, shift=shift,
                          narrow=narrow) if n_sims == "auto" else None
    study = calibration_study(model, design, n_sims=n_sims, seed=seed, sampler=sampler,
                              simulate_model=simulate_model, thin=thin, base_dir=base_dir,
                              sequential=settings)
    out = Path(out) if out is not None else cache_path(study, cache_dir)
    results = run(study, out, workers=workers, report=report, progress=verbose)
    summary = results.last_run
    reps, params = results.tables()
    if not quantities:
        params = params[params["kind"] != "quantity"]
    if settings is None:  # a cached directory may hold more replicates of a larger check
        reps = reps[reps["rep"] < n_sims]
        params = params[params["rep"] < n_sims]
    report_path = out / "report.html"
    if params.empty:
        verdict = Verdict("inconclusive", f"no successful fits of {len(reps)}")
        checks = ()
    elif settings is None:
        cal, _ = _calibrate(params, reps, alpha, quantities, study.sampler)
        verdict = next(iter(cal.verdicts.values()))
        checks = _checks(cal, alpha)
    else:
        cal = judge(reps, params, settings, sampler=study.sampler)
        reps, params = cal.reps, cal.params  # the replicates the verdict rests on
        verdict = next(iter(cal.verdicts.values()))
        checks = _checks(cal, cal.alpha, next(iter(cal.sequential.values())).rejected)
    ok = reps[reps["status"] == "ok"]
    errors = tuple(str(e) for e in reps.loc[reps["status"] != "ok", "error"])
    return CalibrationResult(
        model=study.models[0], simulate_model=study.simulate_model, design=study.designs[0],
        n_sims=len(reps), alpha=alpha, checks=checks,
        n_ok=len(ok), n_failed_fits=len(reps) - len(ok),
        n_divergent=int(ok["flag_divergent"].astype(bool).sum()), max_failed=max_failed,
        new_fits=summary.new, out=out, report=report_path if report_path.exists() else None,
        fit_errors=errors, verdict=verdict, n_flagged=int(flagged_mask(ok).sum()))


def assert_calibrated(model, design=(10, 3, 3), **options) -> CalibrationResult:
    """:func:`check_calibration` (same arguments and signature), raising
    :class:`CalibrationFailure` (an AssertionError) with a readable message when any check
    fails, too many fits fail, or nothing could be ranked.  Returns the result when the
    model passes.

    Examples
    --------
    >>> from sbc.testing import assert_calibrated
    >>> def test_my_model_is_calibrated():                       # doctest: +SKIP
    ...     assert_calibrated("my_model", (10, 3, 3), sampler="nutpie")  # sequential
    """
    result = check_calibration(model, design, **options)
    if not result.passed:
        raise CalibrationFailure(result)
    return result


# One list of options, shown by help(), IDEs and inspect for both functions.
assert_calibrated.__signature__ = inspect.signature(check_calibration)
