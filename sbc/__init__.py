"""sbc: simulation-based calibration of Bayesian models and design-size planning for CRISPR screens.

The pipeline reads as data flows: study -> designs -> replicates -> simulate -> fit ->
ranks/diagnostics -> store -> summaries -> report/plan.  Each stage is a module of that name.
"""

__version__ = "0.1.0"

from sbc.design import Design, design_frame

__all__ = ["Design", "__version__", "design_frame"]
