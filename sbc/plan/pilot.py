"""A pilot screen as the design prior: fit the analysis model to the pilot once and replace
its hyperpriors by normal / lognormal priors moment-matched to the pilot posterior."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.errors import StudyError
from sbc.config import read_text

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


def pilot_frame(csv: Path) -> pd.DataFrame:
    """Read a pilot screen (columns logfc, gene, cell_line, optionally replicate/expt) as a
    design frame sorted by cell line, gene, replicate (``sbc.design.read_screen_csv``)."""
    from sbc.design import read_screen_csv

    return read_screen_csv(read_text(csv, "pilot csv"), f"pilot csv {csv}")


def pilot_design_model(plan, fit_ref, store, stream):
    """Fit the analysis model to the pilot once (cached in the store) and write the design
    prior as a model file: the analysis model's source with its PRIORS moment-matched."""
    from sbc.fit import make_backend
    from sbc.spec import load_module, make_spec, resolve_model

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
        frame = pilot_frame(Path(plan.base_dir) / plan.pilot.csv)
        spec = make_spec(fit_ref, frame)
        settings = dataclasses.replace(plan.sampler, chains=plan.pilot.chains,
                                       draws=plan.pilot.draws, tune=plan.pilot.tune)
        print(f"[sbc plan] fitting the pilot screen ({len(frame)} rows) once", file=stream)
        fit = make_backend(spec, settings, frame).fit(frame["logfc"].to_numpy(float),
                                                      plan.seed)
        matched = moment_matched_priors(priors, fit.draws, plan.pilot.widen)
        store.write_text("pilot_posterior.json", json.dumps(
            {"priors": matched, "divergences": int(fit.diverging.sum()),
             "rows": len(frame)}, indent=2))
    source = (fit_ref.source + "\n\n# Design prior: moment-matched to the pilot screen's "
              "posterior by `sbc plan`.\nPRIORS = " + json.dumps(matched, indent=4)
              .replace("[", "(").replace("]", ")") + "\n")
    path = store.write_text("design_prior.py", source)
    return resolve_model(f"{path}:{fit_ref.function}", store.root)
