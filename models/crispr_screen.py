"""CRISPR screen log fold changes with varying intercepts for gene and cell line (Bambi).

    logfc ~ 1 + (1 | gene) + (1 | cell_line)

This is the seed notebook's model in the form Bambi can express.  Bambi has one common
intercept; the seed's two hyper-means ``mu_alpha`` and ``mu_beta`` enter the likelihood only
through their sum, so they are not separately identified.  The identified form keeps one
intercept, and the priors below are chosen so every identified quantity has the seed's prior:

| Bambi parameter      | seed's name                     | prior                                  |
|----------------------|---------------------------------|----------------------------------------|
| ``Intercept``        | ``mu_alpha + mu_beta``          | Normal(-1, sqrt(2**2 + 2**2))          |
| ``1|gene_sigma``     | ``sigma_alpha``                 | Exponential(rate 0.5)                  |
| ``1|gene``           | ``alpha_g - mu_alpha``          | Normal(0, sigma_alpha)                 |
| ``1|cell_line_sigma``| ``sigma_beta``                  | Exponential(rate 0.5)                  |
| ``1|cell_line``      | ``beta_c - mu_beta``            | Normal(0, sigma_beta)                  |
| ``sigma``            | ``sigma``                       | Exponential(rate 1)                    |

The group effects are sampled centered (``noncentered=False``).  Which form samples better
depends on how much each group's data say about its effect: at the reference designs every
gene has 18-30 observations and every cell line 9-20, so the data pin each effect down and
the centered form has the simpler geometry, while the non-centered form turns the same data
into a funnel between ``1|gene_offset`` and ``1|gene_sigma``.  Measured with nutpie (one
chain, 1000 + 1000 draws, low-rank mass matrix; ``benchmarks/sampler_defaults.md``): fits
without any sampler warning rose from 5-7 % (non-centered, diagonal mass matrix) to 72-92 %.
A fit with sampler warnings is refitted in the forms named in ``RESCUE`` (the same
posterior in other parametrizations: non-centered gene effects, then every group effect
non-centered), which is what lifts the clean share above 90 % at every reference design.
All priors are explicit: Bambi's default priors are scaled by the data and would change
between replicates.
"""

import math

import bambi as bmb

FORMULA = "logfc ~ 1 + (1|gene) + (1|cell_line)"
INTERCEPT_MU, INTERCEPT_SD = -1.0, math.sqrt(8.0)
GENE_SD_RATE = 0.5  # Exponential rates
CELL_SD_RATE = 0.5
SIGMA_RATE = 1.0


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
