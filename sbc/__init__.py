"""sbc: simulation-based calibration of Bayesian models and design-size planning for CRISPR screens.

The Python API (the command line and :mod:`sbc.testing` run on the same pipeline):

- :class:`Study` describes a study (validated on construction; :meth:`Study.from_toml`);
- :func:`run` runs or resumes it and returns :class:`Results` (tables, verdicts, figures,
  ArviZ DataTree, report); :func:`open` reads a stored one;
- ``sbc.plan("plan.toml")`` plans a screen's size and returns :class:`PlanResults`;
- :func:`read_screen`, :func:`read_gene_effects` and :func:`read_counts` read real screens;
  :func:`fit` fits one with the procedure a study certified and :func:`check` checks models
  against it (posterior predictive checks, LOO-PIT, LOO);
- :class:`Design` and :func:`design_frame` build designs; :func:`known_models` lists the
  models a study can name (the reference models ship with the package, :mod:`sbc.models`).

The pipeline reads as data flows: study -> designs -> replicates -> simulate -> fit ->
ranks/diagnostics -> store -> summaries -> report/plan (docs/contributing.md:
"How the code is organised").
"""

__version__ = "0.1.0"

import importlib

from sbc.design import Design, design_frame

__all__ = ["Design", "PlanResults", "Results", "SamplerSettings", "Study", "__version__",
           "check", "datasets", "design_frame", "fit", "known_models", "open", "plan", "read_counts",
           "read_gene_effects", "read_screen", "run"]

# Imported on first use: `import sbc` stays light (PyMC, Dask and matplotlib load only when
# a study runs or a result is read).
_LAZY = {"Study": "sbc.study", "SamplerSettings": "sbc.sampling", "known_models": "sbc.spec",
         "run": "sbc.results", "open": "sbc.results", "Results": "sbc.results",
         "PlanResults": "sbc.plan", "read_counts": "sbc.readers",
         "read_gene_effects": "sbc.readers", "read_screen": "sbc.readers",
         "check": "sbc.model_check", "fit": "sbc.datafit"}
_RENAMED = {"fit": "fit_data"}  # sbc.fit(data, model) is sbc.datafit.fit_data


def __getattr__(name):
    if name == "plan":
        return importlib.import_module("sbc.plan")  # a package that, called, plans a screen
    if name == "datasets":
        return importlib.import_module("sbc.datasets")  # the shipped real screens
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sbc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
