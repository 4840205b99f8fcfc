"""Fitting a real screen with the procedure an SBC study certified (``sbc.fit``, ``sbc fit``).

SBC certifies a *procedure*: a model, a sampler with its settings, and the rescue of flagged
fits, at the designs the study simulated.  A fit of real data earns that certificate only if
it runs exactly that procedure on data of a checked size, so this module takes the sampler
settings, thinning and rescue from the study (a study file, a :class:`~sbc.study.Study` or a
study's output directory), runs the same backend and the same rescue as a replicate
(:func:`sbc.replicate.assess`, :func:`sbc.replicate.rescue_fit`), says which study it
follows, and warns (or, ``strict``, refuses) when the data's design lies outside the designs
the study checked.

The result is an ArviZ DataTree (``posterior``, ``posterior_predictive``,
``log_likelihood``, ``observed_data``, ``constant_data`` with each value's gene, cell line and
replicate, ``sample_stats``; and ``replicated_data`` where a short fit gives each posterior draw
several replicated data sets), so users continue in ArviZ; the posterior predictive and
pointwise log likelihood come from PyMC (``sample_posterior_predictive``,
``compute_log_likelihood``) on the model as built for the data.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import arviz_base as azb
import numpy as np
import pymc as pm
import xarray as xr

from sbc import seeding
from sbc.errors import DataError, StudyError
from sbc.readers import Screen, as_screen
from sbc.replicate import BatchTask, Prepared, _rescue_specs, assess, rescue_fit
from sbc.results import Results
from sbc.sampling import SamplerSettings, make_backend
from sbc.spec import ModelRef, make_spec, resolve_model
from sbc.study import Study

__all__ = ["DataFit", "Procedure", "fit_data", "procedure_of"]

REPLICATED = "replicated_data"  # all replicated data sets, where more than the draws
DIMENSIONS = ("cell lines", "genes", "replicates per cell line and gene")

# Models are built and compiled, and predictive functions compiled, one at a time; the
# samplers (nutpie releases the GIL) then run side by side when several fits share a process
# (``sbc.check`` fits its models in threads).
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Procedure:
    """What a fit of real data runs: sampler settings, thinning, and where they come from.

    study: the study that certified them (None: sbc's defaults, not certified by a study).
    designs: (cell lines, genes, reps) of every design that study checked.
    verdict: the study's stored overall verdict, where a study's output directory was given.
    """

    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    thin: int | str = "auto"
    study: str | None = None
    models: tuple[str, ...] = ()
    designs: tuple[tuple[int, int, int], ...] = ()
    verdict: str | None = None
    base_dir: str | None = None  # where the study's model names are looked up

    def describe(self) -> str:
        s = self.sampler
        how = (f"{s.name}, {s.chains} chain(s), tune {s.tune}, draws {s.draws}, target_accept "
               f"{s.target_accept:g}, {s.adaptation} mass matrix, rescue "
               f"{'on' if s.rescue else 'off'}")
        if self.study is None:
            return f"sbc's default sampler settings ({how}); no SBC study named, so not certified"
        verdict = (f", SBC verdict {self.verdict}" if self.verdict else
                   "; its verdict is not read here: give the study's output directory to "
                   "cite it")
        return f"the procedure of study '{self.study}' ({how}{verdict})"

    def outside(self, shape: tuple[int, int, int]) -> list[str]:
        """The dimensions of ``shape`` outside the range of the study's designs."""
        if not self.designs:
            return []
        out = []
        for i, name in enumerate(DIMENSIONS):
            lo = min(d[i] for d in self.designs)
            hi = max(d[i] for d in self.designs)
            if not lo <= shape[i] <= hi:
                out.append(f"{name} {shape[i]} (checked {lo}-{hi})")
        return out


def procedure_of(study=None) -> Procedure:
    """The :class:`Procedure` of ``study``: a study file, a :class:`~sbc.study.Study`, a
    study's output directory (its stored verdict is read too), or None (defaults)."""
    if study is None:
        return Procedure()
    if isinstance(study, Procedure):
        return study
    verdict = None
    if isinstance(study, str | Path):
        path = Path(study)
        if path.is_dir():
            results = Results(path)
            if results.study is None:
                raise StudyError(f"{path} holds no study whose settings can be read; give the "
                                 "study file instead")
            verdict = results.verdict.label if results.verdict is not None else "none yet"
            study = results.study
        elif path.is_file():
            study = Study.from_toml(path)
        else:
            raise StudyError(f"study {path} not found; give a study file (.toml) or a study's "
                             "output directory")
    if not isinstance(study, Study):
        raise TypeError(f"study must be a path, an sbc.Study or None, got {type(study).__name__}")
    designs = tuple(_shape_of(d) for d in study.designs)
    return Procedure(study.sampler, study.thin, study.name, tuple(study.models), designs, verdict,
                     str(getattr(study, "base_dir", "") or "") or None)


def _shape_of(design) -> tuple[int, int, int]:
    """(cell lines, genes, reps) of a design; a posterior-SBC design's is its data's."""
    if hasattr(design, "n_cell_lines"):
        return (design.n_cell_lines, design.n_genes, design.n_reps)
    frame = design.observed
    reps = int(frame.groupby(["cell_line", "gene"], observed=True).size().max())
    return (frame["cell_line"].nunique(), frame["gene"].nunique(), reps)


@dataclass
class DataFit:
    """A real screen fitted by a model: the DataTree and how it was obtained.

    datatree: ArviZ DataTree (posterior, posterior_predictive, log_likelihood,
        observed_data, constant_data, sample_stats).
    attempts: every fit attempt's flags and settings (one entry when no rescue ran).
    flags: the ranked fit's sampler warnings (divergences, low ESS, R-hat, tree depth).
    warnings: what the user must know (design outside the study's, sampler warnings).
    """

    model: str
    screen: Screen
    procedure: Procedure
    datatree: object
    attempts: list = field(default_factory=list)
    flags: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    seconds: float = 0.0

    def __repr__(self) -> str:
        return (f"DataFit(model={self.model!r}, data={self.screen.describe()!r}, "
                f"warnings={len(self.warnings)})")

    def __str__(self) -> str:
        lines = [f"{self.model} fitted to {self.screen.describe()}",
                 f"  with {self.procedure.describe()}"]
        if len(self.attempts) > 1:
            lines.append(f"  rescued: {len(self.attempts) - 1} refit(s), last form "
                         f"{self.attempts[-1]['build']}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def fit_data(data, model: str | ModelRef | None = None, *, study=None, samples=None,
             seed: int = 0, strict: bool = False, predictive_draws: int = 1000,
             base_dir: str | Path = ".", stream=None) -> DataFit:
    """Fit a real screen with the procedure an SBC study certified.

    Parameters
    ----------
    data : a data file (long CSV, gene-effect matrix, MAGeCK count table; see
        :func:`sbc.read_screen`), a long DataFrame or an :class:`sbc.readers.Screen`.
    model : a model name or ``path.py[:function]`` (as in a study file); default: the
        study's first model, else ``crispr_screen``.
    study : the study whose procedure to run (study file, :class:`sbc.Study` or output
        directory); None runs sbc's defaults and says they are not certified.
    samples : the sample sheet of a count table.
    seed : seeds the fit, its rescues and the posterior predictive draws.
    strict : refuse (``DataError``) data whose design lies outside the study's designs,
        instead of warning.
    predictive_draws : posterior draws (evenly thinned) that get a replicated data set and
        pointwise log likelihood (all draws when there are fewer).
    base_dir : the folder a relative model path is read from.
    stream : where progress lines go (default: standard error).

    Returns
    -------
    DataFit, whose ``datatree`` continues in ArviZ.
    """
    stream = sys.stderr if stream is None else stream
    if isinstance(predictive_draws, bool) or not isinstance(predictive_draws, int) or \
            predictive_draws < 1:
        raise ValueError(f"predictive_draws must be a positive integer, got {predictive_draws!r}")
    screen = as_screen(data, samples)
    procedure = procedure_of(study)
    if model is None:
        model = procedure.models[0] if procedure.models else "crispr_screen"
        base_dir = procedure.base_dir or base_dir
    ref = model if isinstance(model, ModelRef) else resolve_model(model, base_dir)
    warnings = []
    outside = procedure.outside(screen.shape)
    if outside:
        text = (f"the data's design ({screen.n_cell_lines} cell lines x {screen.n_genes} genes "
                f"x {screen.n_reps} replicate(s)) lies outside the designs study "
                f"'{procedure.study}' checked: {', '.join(outside)}; its calibration there is "
                "not established: run posterior SBC on these data ([posterior_sbc] data = ...) "
                "or add such a design to the study")
        if strict:
            raise DataError(text)
        warnings.append(text)
    if procedure.verdict is not None and procedure.verdict != "pass":
        warnings.append(f"study '{procedure.study}' has verdict '{procedure.verdict}', not "
                        "pass: its procedure is not certified")
    if procedure.models and ref.label not in procedure.models and \
            ref.ref not in procedure.models:
        warnings.append(f"model '{ref.label}' is not one of the study's models "
                        f"({', '.join(procedure.models)}): the study did not check it")
    start = time.perf_counter()
    print(f"[sbc fit] {ref.label} on {screen.describe()} with {procedure.describe()}",
          file=stream)
    frame = screen.frame
    with _BUILD_LOCK:
        spec = make_spec(ref, frame)
    y = frame["logfc"].to_numpy(float)
    fit, flags, attempts = _fit_with_rescue(spec, ref, procedure, frame, y, seed)
    if flags.get("flagged"):
        warnings.append(_flag_text(flags))
    with _BUILD_LOCK:
        datatree = _datatree(spec, frame, fit, seed, predictive_draws, procedure, ref,
                             attempts, screen)
    seconds = time.perf_counter() - start
    print(f"[sbc fit] {ref.label}: done in {seconds:.0f} s"
          + (f" ({len(attempts) - 1} rescue refit(s))" if len(attempts) > 1 else ""),
          file=stream)
    return DataFit(ref.label, screen, procedure, datatree, attempts, flags, warnings, seconds)


def _flag_text(flags: dict) -> str:
    parts = []
    if flags["n_divergent"]:
        parts.append(f"{flags['n_divergent']} divergent transitions")
    if flags["low_ess"]:
        parts.append(f"smallest ESS {flags['ess_min']:.0f}")
    if flags["high_rhat"]:
        parts.append(f"R-hat {flags['rhat_max']:.3f}")
    if flags["n_treedepth"]:
        parts.append(f"{flags['n_treedepth']} draws at the maximum tree depth")
    return ("the fit still has sampler warnings after its rescue (" + ", ".join(parts)
            + "); its posterior may be unreliable: treat what follows from it with care")


def _fit_with_rescue(spec, ref: ModelRef, procedure: Procedure, frame, y, seed: int):
    """The replicate's fit and rescue (:mod:`sbc.replicate`) on observed data."""
    settings = procedure.sampler
    fit_seed, _, root = seeding.data_fit(seed)
    with _BUILD_LOCK:
        backend = make_backend(spec, settings, frame)
    names = list(spec.parameters)
    fit = backend.fit(y, seeding.integer(fit_seed))
    checked = assess(fit, names, procedure.thin)
    task = BatchTask(model=ref, simulate_model=None, design=None, sampler=settings,
                     thin=procedure.thin, study_seed=int(seed), reps=(0,))
    with _BUILD_LOCK:
        forms = _rescue_specs(task, frame, tuple(names))
    prepared = Prepared(spec, None, backend, None, tuple(names),
                        rescue_specs=[(name, _locked(build)) for name, build in forms])
    fit, checked, attempts = rescue_fit(prepared, task, root, y, fit, checked, names)
    if not attempts:
        attempts = [{**checked.flags, "build": ref.function, "target_accept":
                     settings.target_accept, "tune": settings.tune, "draws": settings.draws,
                     "seconds": fit.seconds}]
    return fit, checked.flags, attempts


def _locked(build):
    """A rescue form's builder that compiles under the build lock (it runs in the fit's
    thread, when the first fit is flagged)."""
    def locked():
        with _BUILD_LOCK:
            return build()
    return locked


def _dims_and_coords(pm_model, names):
    dims = {n: list(pm_model.named_vars_to_dims.get(n, ())) for n in names}
    dims = {n: d for n, d in dims.items() if d}
    used = {d for ds in dims.values() for d in ds}
    coords = {d: list(v) for d, v in pm_model.coords.items() if d in used and v is not None}
    return dims, coords


def _datatree(spec, frame, fit, seed, predictive_draws, procedure, ref, attempts, screen):
    model = spec.generative
    free = {v.name for v in model.free_RVs}
    names = [n for n in spec.parameters if n in fit.draws]
    dims, coords = _dims_and_coords(model, names)
    chains, draws = fit.diverging.shape
    keep = np.unique(np.linspace(0, draws - 1, max(1, min(draws,
                     -(-predictive_draws // chains)))).round().astype(int))
    posterior = {n: fit.draws[n] for n in names}
    idata = azb.from_dict({"posterior": posterior,
                           "sample_stats": {"diverging": fit.diverging}},
                          dims=dims, coords=coords)
    # The predictive and the log likelihood need only the free variables, at kept draws.
    # Where the fit has fewer draws than replicated data sets are asked for, each kept draw
    # gives several (a replicated data set is any draw of p(y_rep | theta) at a posterior
    # theta); the log likelihood stays one per draw, as LOO needs.
    thinned = azb.from_dict({"posterior": {n: fit.draws[n][:, keep] for n in names
                                           if n in free}}, dims=dims, coords=coords)
    copies = -(-predictive_draws // (chains * len(keep)))
    replicated = thinned if copies == 1 else azb.from_dict(
        {"posterior": {n: np.tile(fit.draws[n][:, keep], (1, copies) + (1,) * (
            fit.draws[n].ndim - 2)) for n in names if n in free}}, dims=dims, coords=coords)
    _, predictive_seed, _ = seeding.data_fit(seed)
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)  # no "Sampling: [logfc]" line
    try:
        pp = pm.sample_posterior_predictive(replicated, model=model, progressbar=False,
                                            random_seed=seeding.integer(predictive_seed))
    finally:
        logger.setLevel(level)
    ll = pm.compute_log_likelihood(thinned, model=model, progressbar=False,
                                   extend_inferencedata=False)
    response = spec.response
    pp_ds = pp["posterior_predictive"].to_dataset()
    obs_dim = next(d for d in pp_ds[response].dims if d not in ("chain", "draw"))
    observed = xr.Dataset({response: ((obs_dim,), frame["logfc"].to_numpy(float))})
    constant = xr.Dataset({c: ((obs_dim,), frame[c].astype(str).to_numpy()) for c in
                           ("gene", "cell_line", "expt")})
    ll_ds = ll.to_dataset() if hasattr(ll, "to_dataset") else ll
    ll_ds = ll_ds.rename({d: obs_dim for d in ll_ds[response].dims
                          if d not in ("chain", "draw") and d != obs_dim})
    tree = idata.copy()
    # posterior_predictive pairs with log_likelihood draw by draw (LOO-PIT needs that); the
    # further replicated data sets of a short fit go to their own group
    tree["posterior_predictive"] = xr.DataTree(pp_ds.isel(draw=slice(0, len(keep))))
    if copies > 1:
        tree[REPLICATED] = xr.DataTree(pp_ds)
    tree["log_likelihood"] = xr.DataTree(ll_ds)
    tree["observed_data"] = xr.DataTree(observed)
    tree["constant_data"] = xr.DataTree(constant)
    tree.attrs.update({
        "sbc_model": ref.label, "sbc_model_digest": ref.digest, "sbc_data": screen.source,
        "sbc_procedure": json.dumps({**asdict(procedure.sampler), "thin": procedure.thin,
                                     "study": procedure.study, "verdict": procedure.verdict}),
        "sbc_attempts": json.dumps(attempts, default=float),
        "sbc_predictive_draws": int(len(keep) * chains * copies)})
    return tree
