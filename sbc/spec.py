"""Model specs: find a model file, build its PyMC model for a design, and derive from that one
model both the generator (prior predictive) and the fitter (observed response swapped per replicate).

A model file defines ``build(data: pandas.DataFrame)`` (or any function named in
``path.py:function``) returning a Bambi model or a plain PyMC model built from the design.
Because simulate and fit come from the same graph, generator and fitter cannot drift apart.

Model sources travel to workers as text and are executed there, so a remote Dask worker
needs no copy of the project, and the fingerprint of a study covers exactly the code run.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import math
import sys
import traceback
import types
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.config import check_path_name, read_text, safe_name
from sbc.errors import ModelError
from sbc.numerics import pin_numerics

# PyMC and PyTensor are imported where a model is built: resolving and reading models (every
# study file, `sbc report`, sbc.open) does not load them.

RESPONSE_DATA_NAME = "sbc_observed"


@dataclass(frozen=True)
class ModelRef:
    """A model named in a study: where its source is, which function builds it, and the source."""

    ref: str
    label: str
    path: str
    function: str
    source: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.function}\n{self.source}".encode()).hexdigest()[:16]


MODEL_ENTRY_POINTS = "sbc.models"  # entry-point group: name = "package.module[:function]"


def _search_dirs(base_dir: Path) -> list[Path]:
    """Folders a bare model name is looked up in, in order: ``models/`` beside the study
    file, ``models/`` in the folder above it (a project's ``studies/`` next to its
    ``models/``), then the reference models shipped with sbc (:mod:`sbc.models`)."""
    dirs = [base_dir / "models", base_dir.parent / "models", *shipped_model_dirs()]
    return list(dict.fromkeys(d.resolve() for d in dirs))  # each folder once


def shipped_model_dirs() -> list[Path]:
    """The folder(s) of :mod:`sbc.models`, the reference models installed with sbc."""
    try:
        spec = importlib.util.find_spec("sbc.models")
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def _entry_points() -> dict:
    return {ep.name: ep for ep in metadata.entry_points(group=MODEL_ENTRY_POINTS)}


def _entry_point_model(ref: str, entry) -> tuple[Path, str]:
    """(file, function) of a model that a package declares in the ``sbc.models`` group."""
    module, _, function = entry.value.partition(":")
    try:
        spec = importlib.util.find_spec(module.strip())
    except (ImportError, ValueError) as exc:
        raise ModelError(f"model '{ref}': entry point {entry.value!r} (group "
                         f"{MODEL_ENTRY_POINTS}) names module {module!r}, which cannot be "
                         f"found: {exc}") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ModelError(f"model '{ref}': entry point {entry.value!r} (group "
                         f"{MODEL_ENTRY_POINTS}) must name a Python source module")
    return Path(spec.origin), (function.strip() or "build")


def known_models(base_dir: str | Path = ".") -> dict[str, str]:
    """Every model a bare name can refer to from ``base_dir``: name -> where it is (first
    match wins, in the lookup order of :func:`resolve_model`)."""
    found: dict[str, str] = {}
    for d in _search_dirs(Path(base_dir)):
        if d.is_dir():
            for p in sorted(d.glob("*.py")):
                if not p.stem.startswith("_"):
                    found.setdefault(p.stem, str(p))
    for name, entry in _entry_points().items():
        found.setdefault(name, f"entry point {entry.value}")
    return found


def resolve_model(ref: str, base_dir: str | Path = ".") -> ModelRef:
    """Find a model: a name or ``path/to/file.py[:function]``.

    One rule for relative paths: a file path is relative to ``base_dir`` (the study or
    plan file's folder; from Python, the current directory).  A bare name ``NAME`` is
    ``NAME.py`` in the first of ``base_dir/models``, ``base_dir/../models`` and the models
    shipped with sbc that has it, else a model that an installed package declares in the
    entry-point group ``sbc.models`` (``NAME = "package.module[:function]"``)."""
    base_dir = Path(base_dir)
    if ":" in ref or ref.endswith(".py"):
        file_part, _, function = ref.partition(":")
        function = function or "build"
        path = Path(file_part) if Path(file_part).is_absolute() else base_dir / file_part
        if not path.is_file():
            raise ModelError(f"model '{ref}': file {file_part} not found in {path.parent}; "
                             "a relative path is read from the study file's folder")
        if not function.isidentifier():
            raise ModelError(f"model '{ref}': {function!r} is not a function name; write "
                             "'path/to/file.py:function' with the name of a function defined "
                             "in the file (or leave ':function' out for build)")
        label = f"{path.stem}.{function}" if function != "build" else path.stem
        check_path_name(label, f"model '{ref}': its label (the file name without .py"
                        + (", then '.' and the function" if function != "build" else "") + ")",
                        f"rename the file to e.g. {safe_name(path.stem, 'model')}.py",
                        ModelError)
    else:
        if not ref.isidentifier():
            raise ModelError(f"model '{ref}' is neither a model name (a file in models/) nor "
                             "'path/to/file.py:function'")
        function = "build"
        dirs = _search_dirs(base_dir)
        path = next((d / f"{ref}.py" for d in dirs if (d / f"{ref}.py").is_file()), None)
        if path is None:
            entry = _entry_points().get(ref)
            if entry is None:
                known = sorted(known_models(base_dir))
                guess = difflib.get_close_matches(ref, known, n=1)
                hint = f"did you mean '{guess[0]}'? " if guess else ""
                raise ModelError(f"unknown model '{ref}': no file {ref}.py in "
                                 f"{', '.join(str(d) for d in dirs)} and no entry point "
                                 f"'{ref}' in group {MODEL_ENTRY_POINTS}; {hint}known models: "
                                 f"{', '.join(known) or 'none'}")
            path, function = _entry_point_model(ref, entry)
        label = check_path_name(ref, "model name", f"rename models/{ref}.py to e.g. "
                                f"models/{safe_name(ref, 'model')}.py and use that name",
                                ModelError)
    source = read_text(path, f"model '{ref}': model file", ModelError)
    return ModelRef(ref=ref, label=label, path=str(path.resolve()), function=function, source=source)


_MODULES: dict[str, types.ModuleType] = {}


def model_thresholds(model: ModelRef, groups) -> dict[str, float]:
    """The decision thresholds a model file declares: ``THRESHOLDS = {"1|gene": -0.5}``
    says that the model's users decide "theta < c" for each element of that parameter (a
    gene is essential when its effect is below -0.5), so the probability of that event,
    the share of a fit's draws below c, is recorded and checked for calibration beside the
    sign decision "theta < 0".  ``groups``: the fitter's ranked parameters; every key must
    be one of them and every value a finite number (ModelError otherwise)."""
    declared = getattr(load_module(model), "THRESHOLDS", None)
    if declared is None:
        return {}
    where = f"model '{model.ref}': THRESHOLDS"
    if not isinstance(declared, dict):
        raise ModelError(f"{where} must be a dict of parameter name -> threshold, e.g. "
                         f'{{"1|gene": -0.5}}; got {type(declared).__name__}')
    groups = list(groups)
    out = {}
    for name, value in declared.items():
        if name not in groups:
            raise ModelError(f"{where} names {name!r}, which is no ranked parameter of the "
                             f"model (those are: {', '.join(groups)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(float(value) if abs(value) < 1e308 else math.inf):
            raise ModelError(f"{where}[{name!r}] = {value!r} is not a finite number; give "
                             "the value c of the decision theta < c")
        out[name] = float(value)
    return out


def load_module(model: ModelRef) -> types.ModuleType:
    """Execute the model source once per process (cached by content digest)."""
    if model.digest in _MODULES:
        return _MODULES[model.digest]
    module = types.ModuleType(f"sbc_model_{model.label.replace('.', '_')}")
    module.__file__ = model.path
    try:
        code = compile(model.source, model.path, "exec")
        sys.modules[module.__name__] = module  # dataclasses and pickling look modules up
        exec(code, module.__dict__)
    except Exception as exc:
        raise ModelError(f"model '{model.ref}': importing {model.path} failed with "
                         f"{type(exc).__name__}: {exc}\n{_short_traceback(exc, model.path)}") from exc
    if not callable(getattr(module, model.function, None)):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
        raise ModelError(f"model '{model.ref}': {model.path} defines no function "
                         f"'{model.function}'; functions there: {', '.join(names) or 'none'}")
    _MODULES[model.digest] = module
    return module


def _short_traceback(exc: BaseException, path: str | None = None) -> str:
    """Where in the user's model file the error arose (frames in other files are left out)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if path is None or f.filename == path]
    return "\n".join(f"  at {f.filename}:{f.lineno}: {(f.line or '').strip()}" for f in frames[-3:])


def build_pymc_model(model: ModelRef, data: pd.DataFrame):
    """Call the model's builder on a design frame and return the PyMC model it describes."""
    import pymc as pm

    pin_numerics()  # every model sbc compiles is built here first (sbc.numerics says why)

    builder = getattr(load_module(model), model.function)
    try:
        built = builder(data.copy())
    except Exception as exc:
        raise ModelError(f"model '{model.ref}': {model.function}(data) raised "
                         f"{type(exc).__name__}: {exc}\n{_short_traceback(exc, model.path)}") from exc
    if isinstance(built, pm.Model):
        return built
    if hasattr(built, "build") and hasattr(built, "backend"):  # a bambi.Model
        _check_explicit_priors(model, built)
        try:
            built.build()
        except Exception as exc:
            raise ModelError(f"model '{model.ref}': Bambi could not build the model: "
                             f"{type(exc).__name__}: {exc}") from exc
        return built.backend.model
    raise ModelError(f"model '{model.ref}': {model.function}(data) must return a bambi.Model "
                     f"or a pymc.Model, got {type(built).__name__}")


@dataclass
class ModelSpec:
    """One model built for one design: the graph that simulates and the graph that fits."""

    model: ModelRef
    generative: object  # pymc.Model: the model as written, observed response included
    fit_model: object  # pymc.Model: same graph, response observed against a shared variable
    response: str
    parameters: tuple[str, ...]  # what gets ranked: free RVs and small deterministics
    n_obs: int
    response_data: object = None  # the fit model's shared variable holding the response


# Names of the derived quantities ranked beside the parameters (sbc.quantities computes them).
DERIVED_QUANTITIES = ("loglik", "loglik_min")


def make_spec(model: ModelRef, data: pd.DataFrame) -> ModelSpec:
    """Build ``model`` for a design and derive generator and fitter from the same graph."""
    import pytensor
    from pymc.model.transform.conditioning import observe

    pm_model = build_pymc_model(model, data)
    observed = pm_model.observed_RVs
    if len(observed) != 1:
        raise ModelError(f"model '{model.ref}' must have exactly one observed variable (the "
                         f"response), found {len(observed)}: {[v.name for v in observed]}")
    _check_proper_priors(model, pm_model)
    response = observed[0]
    obs_shape = tuple(int(n) for n in response.shape.eval())
    parameters = ranked_parameters(pm_model)
    _check_reserved_names(model, parameters)
    shared = pytensor.shared(np.zeros(obs_shape, dtype=response.dtype), name=RESPONSE_DATA_NAME)
    fit_model = observe(pm_model, {response.name: shared})
    # observe() copies shared variables into the new graph: find the copy by name.
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import ancestors

    data = next(v for v in ancestors(list(fit_model.rvs_to_values.values()))
                if isinstance(v, SharedVariable) and v.name == RESPONSE_DATA_NAME)
    return ModelSpec(model=model, generative=pm_model, fit_model=fit_model,
                     response=response.name, parameters=tuple(parameters),
                     n_obs=int(np.prod(obs_shape)), response_data=data)


def ranked_parameters(pm_model) -> list[str]:
    """What gets ranked: every free RV and every deterministic that is not per-observation
    (same dims or same shape as the response, e.g. the linear predictor)."""
    return list(ranked_layouts(pm_model))


def ranked_layouts(pm_model) -> dict[str, Layout]:
    """``ranked_parameters`` with each one's layout (shape, dims, coordinate labels)."""
    response = pm_model.observed_RVs[0]
    free = [v.name for v in pm_model.free_RVs]
    dets = [v.name for v in pm_model.deterministics]
    layouts = parameter_layouts(pm_model, free + dets + [response.name])
    obs = layouts[response.name]
    out = {n: layouts[n] for n in free}
    for name in dets:
        det = layouts[name]
        if (det.dims and obs.dims and det.dims == obs.dims) or det.shape == obs.shape:
            continue
        out[name] = det
    return out


@dataclass(frozen=True)
class Layout:
    """How a parameter is laid out: its shape and, per axis, the dim name and coordinate
    labels where the PyMC model declares them (None where it does not)."""

    shape: tuple[int, ...]
    dims: tuple[str | None, ...] | None = None
    coords: tuple[tuple[str, ...] | None, ...] | None = None

    def matches(self, other: Layout) -> bool:
        """Same shape and, on every axis both label, the same elements in the same order:
        equal coordinate labels where both have them, else equal dim names."""
        if self.shape != other.shape:
            return False
        if self.dims is None or other.dims is None:
            return True
        for axis in range(len(self.shape)):
            mine, theirs = self.coords[axis], other.coords[axis]
            if mine is not None and theirs is not None:
                if mine != theirs:
                    return False
            elif self.dims[axis] is not None and other.dims[axis] is not None \
                    and self.dims[axis] != other.dims[axis]:
                return False
        return True

    def describe(self) -> str:
        text = f"shape {self.shape}"
        if self.dims is not None and any(d is not None for d in self.dims):
            parts = []
            for dim, labels in zip(self.dims, self.coords):
                if labels is None:
                    parts.append(str(dim))
                else:
                    shown = ", ".join(labels[:4]) + (", ..." if len(labels) > 4 else "")
                    parts.append(f"{dim}: [{shown}]")
            text += f" dims ({'; '.join(parts)})"
        return text


def parameter_layouts(pm_model, names) -> dict[str, Layout]:
    """Shape, dims and coordinate labels of the named variables of a PyMC model, from one
    cheaply compiled function of their shapes (no sampling, no C compilation)."""
    import pytensor

    names = list(names)
    if not names:
        return {}
    fn = pytensor.function([], [pm_model[n].shape for n in names], mode="FAST_COMPILE",
                           on_unused_input="ignore")
    out = {}
    for name, shape in zip(names, fn()):
        shape = tuple(int(n) for n in shape)
        dims = pm_model.named_vars_to_dims.get(name)
        if dims is None or len(dims) != len(shape):
            out[name] = Layout(shape)
            continue
        coords = []
        for dim in dims:
            labels = pm_model.coords.get(dim) if dim is not None else None
            coords.append(tuple(str(v) for v in labels) if labels is not None else None)
        out[name] = Layout(shape, tuple(dims), tuple(coords))
    return out


def pair_parameters(fit_names, gen_names, mapping=None) -> list[tuple[str, str]]:
    """(fitter name, generator name) pairs: a fitter parameter estimates the generator
    parameter that ``mapping`` (fitter name -> generator name) names, else the one of the
    same name.  Each generator parameter is estimated by at most one fitter parameter."""
    mapping = dict(mapping or {})
    gen = set(gen_names)
    pairs = [(f, mapping.get(f, f)) for f in fit_names if mapping.get(f, f) in gen]
    seen: dict[str, str] = {}
    for f, g in pairs:
        if g in seen:
            raise ModelError(f"fitter parameters '{seen[g]}' and '{f}' would both be ranked "
                             f"against the generator's '{g}'; map only one of them to it in "
                             "[parameter_map], or rename the other")
        seen[g] = f
    return pairs


def is_noncentered(spec: ModelSpec) -> bool:
    """Whether the model's group effects are non-centered (Bambi's ``*_offset`` free
    parameters), read from the fitted graph itself, ranked or not."""
    return any(rv.name.endswith("_offset") for rv in spec.fit_model.free_RVs)


def unpaired_text(fit_names, gen_names, pairs) -> str | None:
    """What goes unranked when the generator is another model, in words (None: nothing):
    fitter parameters no generator parameter is paired with, and generator parameters no
    fitter parameter estimates.  Shown with every verdict that rests on fewer tests."""
    fit_paired, gen_paired = {f for f, _ in pairs}, {g for _, g in pairs}
    fit_only = [f for f in fit_names if f not in fit_paired]
    gen_only = [g for g in gen_names if g not in gen_paired]
    parts = []
    if fit_only:
        parts.append(f"fitter parameter(s) {', '.join(fit_only)} not ranked (no generator "
                     "parameter of that name; pair them in [parameter_map])")
    if gen_only:
        parts.append(f"generator parameter(s) {', '.join(gen_only)} estimated by no fitter "
                     "parameter")
    return "; ".join(parts) or None


def _check_reserved_names(model: ModelRef, parameters) -> None:
    """Refuse parameter names that are the derived quantities' (their rows would collide)."""
    taken = [n for n in parameters if n in DERIVED_QUANTITIES]
    if taken:
        raise ModelError(f"model '{model.ref}': parameter name(s) {', '.join(taken)} are "
                         f"reserved for sbc's derived quantities ({', '.join(DERIVED_QUANTITIES)}: "
                         "log-likelihoods ranked beside the parameters); rename the "
                         "parameter(s) in the model file")


def _check_proper_priors(model: ModelRef, pm_model) -> None:
    """Reject improper priors (Flat, HalfFlat): nothing can be simulated from them."""
    for rv in pm_model.free_RVs:
        op_name = type(rv.owner.op).__name__
        if "Flat" in op_name:
            raise ModelError(f"model '{model.ref}': parameter '{rv.name}' has an improper "
                             f"prior ({op_name}); SBC draws truths from the prior, so give it a "
                             "proper prior (e.g. Normal(0, 10) or HalfNormal(1))")


def bambi_default_priors(bambi_model) -> list[str]:
    """Terms and parameters of a Bambi model that use Bambi's default priors.

    Bambi marks every prior it chose itself (``auto_scale`` true) and clears the mark on the
    priors given in ``priors=`` (constants count as given).  Names are as ``priors=`` takes
    them: ``Intercept``, ``1|gene``, ``sigma``; terms of a further distributional parameter
    (``sigma ~ x``) as ``sigma.x``.
    """
    components = getattr(bambi_model, "_components", None)
    parent = getattr(getattr(getattr(bambi_model, "family", None), "likelihood", None),
                     "parent", None)
    if not isinstance(components, dict):  # another Bambi version: nothing to check by
        return []
    out = []
    for cname, component in components.items():
        terms = getattr(component, "terms", None)
        if terms is None:  # a constant parameter such as sigma
            items = [(cname, getattr(component, "prior", None))]
        else:
            items = [(tname if cname == parent else f"{cname}.{tname}",
                      getattr(term, "prior", None)) for tname, term in terms.items()
                     if getattr(term, "kind", None) != "offset"]
        out += [name for name, prior in items if getattr(prior, "auto_scale", False) is True]
    return out


def _check_explicit_priors(model: ModelRef, bambi_model) -> None:
    """Refuse a Bambi model that relies on Bambi's default priors (docs/user_guide/models.md).

    Bambi scales its default priors by the data: on a design frame the placeholder
    response is all zeros (so e.g. ``sigma`` gets ``HalfStudentT(sigma=0)`` and every fit
    fails), and on simulated data they would change from replicate to replicate.
    """
    names = bambi_default_priors(bambi_model)
    if not names:
        return
    example = ", ".join(f'"{n}": bmb.Prior(...)' for n in names[:3])
    raise ModelError(
        f"model '{model.ref}': the Bambi model relies on Bambi's default priors for "
        f"{', '.join(names)}; Bambi scales those by the data, which in SBC differ from "
        "replicate to replicate (and are all zeros when the model is built), so every fit "
        "would fail or be miscalibrated. Give each of them an explicit, proper prior: "
        f"bmb.Model(formula, data, priors={{{example}}}) (see models/crispr_screen.py)")
