"""A pilot screen as the design prior: fit the analysis model to the pilot once and replace
its hyperpriors by normal / lognormal priors moment-matched to the pilot posterior.

The pilot is any screen :func:`sbc.readers.read_screen` reads: a long logfc CSV, a
gene-effect matrix (DepMap's Chronos scores: one value per cell line and gene) or a MAGeCK
count table with its sample sheet (the gene-level log fold changes of each end sample)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.errors import DataError, ModelError, StudyError
from sbc.readers import read_screen
from sbc.sampling import make_backend
from sbc.spec import load_module, make_spec, resolve_model

POSITIVE_FAMILIES = {"LogNormal", "HalfNormal", "Exponential", "Gamma", "HalfCauchy",
                     "HalfStudentT", "InverseGamma", "Weibull"}


def moment_matched_priors(priors: dict, draws: dict[str, np.ndarray], widen: float = 1.0
                          ) -> dict:
    """Replace each hyperprior by a normal (real line) or lognormal (positive) prior matched
    to the mean and sd of its pilot posterior draws (log scale for positive ones)."""
    out = {}
    for name, (family, _) in priors.items():
        x = np.asarray(draws[name], dtype=float).ravel()
        if family in POSITIVE_FAMILIES:
            lx = np.log(x)
            out[name] = ("LogNormal", {"mu": float(lx.mean()), "sigma": float(lx.std() * widen)})
        else:
            out[name] = ("Normal", {"mu": float(x.mean()), "sigma": float(x.std() * widen)})
    return out


def pilot_screen(path: Path, samples: Path | None = None, key: str = "data"):
    """Read a pilot screen (:func:`sbc.readers.read_screen`); a malformed file is refused with
    a :class:`~sbc.errors.DataError` naming the ``[pilot]`` key and the file."""
    path = Path(path)
    what = f"pilot {key} ([pilot] {key} = {path.name!r}" + \
        (f", samples = {Path(samples).name!r}" if samples else "") + ")"
    for name, file in ((key, path), ("samples", samples)):
        if file is not None and not Path(file).is_file():
            raise DataError(f"{what}: the {name} file {file} is not found; give a path "
                            "relative to the plan file")
    try:
        return read_screen(path, samples)
    except StudyError as exc:  # the readers' DataError, and sbc.design's checks of a long CSV
        raise DataError(f"{what}: {exc}") from None


def pilot_frame(path: Path, samples: Path | None = None, key: str = "data") -> pd.DataFrame:
    """A pilot screen as a design frame (``cell_line``, ``gene``, ``expt``, ``logfc``) sorted by
    cell line, gene, replicate: :func:`pilot_screen`'s frame."""
    return pilot_screen(path, samples, key).frame


def pilot_notes(screen, draws: dict, priors: dict) -> list[str]:
    """What a reader of the design prior should know: the screen's shape, what the reader
    decided, and hyperparameters a single-replicate pilot cannot tell apart (their posterior
    correlation)."""
    notes = [screen.describe(), *screen.notes]
    if screen.n_reps == 1:
        names = [n for n in priors if n in draws]
        flat = {n: np.asarray(draws[n], float).ravel() for n in names}
        pairs = []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if flat[a].std() > 0 and flat[b].std() > 0:
                    rho = float(np.corrcoef(flat[a], flat[b])[0, 1])
                    if rho < -0.5:
                        pairs.append(f"{a} and {b} (posterior correlation {rho:.2f})")
        notes.append("one replicate per cell line and gene: the replicate noise is not "
                     "separated from the gene x cell-line spread by the data"
                     + (f"; strongly confounded: {'; '.join(pairs)}: the pilot fixes their "
                        "combined spread, and independent design priors matched to each "
                        "spread it wider" if pairs else ""))
    return notes


def pilot_design_model(plan, fit_ref, store, stream):
    """Fit the analysis model to the pilot once (cached in the store) and write the design
    prior as a model file: the analysis model's source with its PRIORS moment-matched."""
    module = load_module(fit_ref)
    priors = getattr(module, "PRIORS", None)
    if not isinstance(priors, dict):
        raise StudyError(f"plan '{plan.name}': a pilot needs the model '{fit_ref.ref}' to keep "
                         "its hyperpriors in a PRIORS dict (name -> (distribution, params)), "
                         "as models/crispr_plan.py does, so a design prior can replace them")
    cache = store.root / "pilot_posterior.json"
    if cache.is_file():
        matched = json.loads(cache.read_text())["priors"]
    else:
        base = Path(plan.base_dir)
        screen = pilot_screen(base / plan.pilot.data,
                              base / plan.pilot.samples if plan.pilot.samples else None,
                              plan.pilot.key)
        frame = screen.frame
        try:
            spec = make_spec(fit_ref, frame)
        except ModelError as exc:
            raise StudyError(f"plan '{plan.name}': the analysis model cannot be fitted to the "
                             f"pilot {plan.pilot.data} ({screen.describe()}): {exc}") from None
        settings = dataclasses.replace(plan.sampler, chains=plan.pilot.chains,
                                       draws=plan.pilot.draws, tune=plan.pilot.tune)
        print(f"[sbc plan] fitting the pilot screen once: {screen.describe()}", file=stream)
        fit = make_backend(spec, settings, frame).fit(frame["logfc"].to_numpy(float),
                                                      plan.seed)
        matched = moment_matched_priors(priors, fit.draws, plan.pilot.widen)
        notes = pilot_notes(screen, fit.draws, priors)
        store.write_text("pilot_posterior.json", json.dumps(
            {"priors": matched, "divergences": int(fit.diverging.sum()),
             "rows": len(frame), "source": plan.pilot.data, "format": screen.format,
             "shape": dict(zip(("cell_lines", "genes", "reps"), screen.shape)),
             "posterior": {n: {"mean": float(np.mean(fit.draws[n])),
                               "sd": float(np.std(fit.draws[n]))} for n in priors},
             "notes": notes}, indent=2))
        print("[sbc plan] design prior from the pilot: " + "; ".join(
            f"{n} {fam}({', '.join(f'{v:.3g}' for v in p.values())})"
            for n, (fam, p) in matched.items()), file=stream)
    source = (fit_ref.source + "\n\n# Design prior: moment-matched to the pilot screen's "
              "posterior by `sbc plan`.\nPRIORS = " + json.dumps(matched, indent=4)
              .replace("[", "(").replace("]", ")") + "\n")
    path = store.write_text("design_prior.py", source).resolve()  # --out may be relative
    return resolve_model(f"{path}:{fit_ref.function}", store.root)
