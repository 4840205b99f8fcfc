"""Conjugate normal test model for planning: one mean, known noise sd, exact posterior.

    mu ~ Normal(0, 1),  logfc_i ~ Normal(mu, 1),  i = 1..n (n = rows of the design)

The posterior is Normal(sum(y) / (1 + n), 1 / sqrt(1 + n)), so the posterior sd, the
interval width and the probability that the 95 % interval excludes 0 are known exactly:
under the prior (assurance) that probability is 2 (1 - Phi(1.96 / sqrt(n))).
``build_fixed`` is a design prior with the truth fixed near ``FIXED_MU`` (conditional power).
"""

import numpy as np
import pymc as pm

PRIOR_SD = 1.0
NOISE_SD = 1.0
FIXED_MU = 0.3


def build(data):
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, PRIOR_SD)
        pm.Normal("logfc", mu, NOISE_SD, observed=data["logfc"].to_numpy())
    return model


def build_fixed(data):
    with pm.Model() as model:
        mu = pm.Normal("mu", FIXED_MU, 1e-9)
        pm.Normal("logfc", mu, NOISE_SD, observed=data["logfc"].to_numpy())
    return model


def exact_posterior(data, y, n_draws, rng):
    n = len(y)
    precision = 1 / PRIOR_SD**2 + n / NOISE_SD**2
    mean = (np.sum(y) / NOISE_SD**2) / precision
    return {"mu": rng.normal(mean, 1 / np.sqrt(precision), size=(n_draws,))}
