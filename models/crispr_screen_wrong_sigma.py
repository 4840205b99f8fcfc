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
INTERCEPT_MU, INTERCEPT_SD = -1.0, math.sqrt(8.0)
GENE_SD_RATE = 0.5  # Exponential rates
CELL_SD_RATE = 0.5
SIGMA_RATE = 10.0  # crispr_screen uses 1.0: the deliberate error


def priors() -> dict:
    return {
        "Intercept": bmb.Prior("Normal", mu=INTERCEPT_MU, sigma=INTERCEPT_SD),
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=GENE_SD_RATE)),
        "1|cell_line": bmb.Prior("Normal", mu=0.0,
                                 sigma=bmb.Prior("Exponential", lam=CELL_SD_RATE)),
        "sigma": bmb.Prior("Exponential", lam=SIGMA_RATE),
    }


def screen_data(data):
    """The data as the model sees them."""
    return data


def build(data):
    """data: a design frame (``sbc.design_frame``) with categorical gene and cell_line."""
    return bmb.Model(FORMULA, screen_data(data), priors=priors(), family="gaussian",
                     noncentered=False)


# Other parametrizations of the same posterior, tried in this order when a fit has sampler
# warnings (sbc's recorded rescue).  With few genes the gene sd is often small and the
# centered gene effects form a funnel while the cell-line effects are still well informed:
# the mixed form suits exactly that case; the fully non-centered form comes second.
RESCUE = ("build_noncentered_genes", "build_noncentered")


def build_noncentered(data):
    """The same model with every group effect non-centered (Bambi)."""
    return bmb.Model(FORMULA, screen_data(data), priors=priors(), family="gaussian",
                     noncentered=True)


def build_noncentered_genes(data):
    """The same model with non-centered gene effects and centered cell-line effects.

    Bambi applies one parametrization to every group term, so this form is written in PyMC
    with Bambi's names, dims and priors (the same posterior over every parameter of
    ``build``).
    """
    import numpy as np
    import pandas as pd
    import pymc as pm

    data = screen_data(data)
    # Bambi orders a factor's levels sorted, whatever the categories' order: index the
    # effects the same way, so draws carry Bambi's labels (real data need not be sorted).
    genes, cells = (pd.Categorical(data[c].astype(str), categories=sorted(
        set(data[c].astype(str)))) for c in ("gene", "cell_line"))
    coords = {"gene__factor_dim": list(genes.categories),
              "cell_line__factor_dim": list(cells.categories)}
    with pm.Model(coords=coords) as model:
        sigma = pm.Exponential("sigma", SIGMA_RATE)
        intercept = pm.Normal("Intercept", INTERCEPT_MU, INTERCEPT_SD)
        gene_sigma = pm.Exponential("1|gene_sigma", GENE_SD_RATE)
        offset = pm.Normal("1|gene_offset", 0.0, 1.0, dims="gene__factor_dim")
        gene = pm.Deterministic("1|gene", offset * gene_sigma, dims="gene__factor_dim")
        cell_sigma = pm.Exponential("1|cell_line_sigma", CELL_SD_RATE)
        cell = pm.Normal("1|cell_line", 0.0, cell_sigma, dims="cell_line__factor_dim")
        mu = intercept + gene[np.asarray(genes.codes)] + cell[np.asarray(cells.codes)]
        pm.Normal("logfc", mu, sigma, observed=data["logfc"].to_numpy())
    return model
