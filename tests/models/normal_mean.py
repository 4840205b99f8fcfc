"""Test model with a known posterior: one mean per gene, known noise sd (conjugate normal).

    mu_g ~ Normal(0, 1),  logfc ~ Normal(mu_g[gene], 0.5)

``exact_posterior`` returns exact posterior draws (sampler "exact"), so the framework can be
tested without MCMC.  Setting the environment variable SBC_TEST_FAULT makes the backend
misbehave on purpose for fault tests: "raise", "nan" or "hang" on about every third
replicate's data; "slow" makes every fit take 50 ms (to interrupt a run mid-study).
"""

import os
import time

import numpy as np
import pymc as pm

PRIOR_SD = 1.0
NOISE_SD = 0.5


def build(data):
    gene = data["gene"].cat.codes.to_numpy()
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, PRIOR_SD, shape=len(data["gene"].cat.categories))
        pm.Normal("logfc", mu[gene], NOISE_SD, observed=data["logfc"].to_numpy())
    return model


def exact_posterior(data, y, n_draws, rng):
    gene = data["gene"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    fault = os.environ.get("SBC_TEST_FAULT")
    if fault == "slow":
        time.sleep(0.05)
    if fault and int(abs(y[0]) * 1e6) % 3 == 0:
        if fault == "raise":
            raise RuntimeError("injected fault: the fit raised")
        if fault == "nan":
            return {"mu": np.full((n_draws, n_genes), np.nan)}
        if fault == "hang":
            time.sleep(3600)
    counts = np.bincount(gene, minlength=n_genes)
    sums = np.bincount(gene, weights=y, minlength=n_genes)
    precision = 1 / PRIOR_SD**2 + counts / NOISE_SD**2
    mean = (sums / NOISE_SD**2) / precision
    return {"mu": rng.normal(mean, 1 / np.sqrt(precision), size=(n_draws, n_genes))}
