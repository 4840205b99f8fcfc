"""A deliberately miscalibrated fitter: ``crispr_screen`` with the wrong prior on ``sigma``.

    logfc ~ 1 + (1 | gene) + (1 | cell_line)

Identical to ``models/crispr_screen.py`` except that the residual scale gets the prior
Exponential(rate 10) (prior mean 0.1) instead of Exponential(rate 1) (prior mean 1).  Fitted to
data simulated from ``crispr_screen`` (``simulate_model = "crispr_screen"`` in
``studies/crispr_broken.toml``), the posterior of ``sigma`` is pulled towards small values,
so SBC must fail ``sigma`` (ranks piled up at the top: the truth lies above the draws).
This file is a known-bad control for the calibration report; do not use it for analysis.
It is self-contained (not importing crispr_screen) because model sources travel to workers
as text.
"""

import math

import bambi as bmb

FORMULA = "logfc ~ 1 + (1|gene) + (1|cell_line)"
WRONG_SIGMA_RATE = 10.0  # crispr_screen uses 1.0


def priors() -> dict:
    return {
        "Intercept": bmb.Prior("Normal", mu=-1.0, sigma=math.sqrt(8.0)),
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "1|cell_line": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "sigma": bmb.Prior("Exponential", lam=WRONG_SIGMA_RATE),
    }


def build(data):
    """data: a design frame (``sbc.design_frame``) with categorical gene and cell_line."""
    return bmb.Model(FORMULA, data, priors=priors(), family="gaussian", noncentered=True)
