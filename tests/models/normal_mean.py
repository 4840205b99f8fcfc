"""Test model with a known posterior: one mean per gene, known noise sd (conjugate normal).

    mu_g ~ Normal(0, 1),  logfc ~ Normal(mu_g[gene], 0.5)

``exact_posterior`` returns exact posterior draws (sampler "exact"), so the framework can be
tested without MCMC.  Setting the environment variable SBC_TEST_FAULT makes the backend
misbehave on purpose for fault tests: "raise", "nan" or "hang" on about every third
replicate's data ("spin" busy-loops there forever); "slow" makes every fit take 50 ms (to
interrupt a run mid-study).
"abort", "exit" and "segfault" kill the fitting process on those replicates (``os.abort()``,
``os._exit(3)``, a real segmentation fault); "abort-once" does so only on the first attempt
at about every fifth replicate, remembered as a file in the directory SBC_TEST_FAULT_DIR (a
transient crash).
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


def _die(how):
    if how == "abort":
        os.abort()
    if how == "exit":
        os._exit(3)
    import ctypes
    ctypes.string_at(0)  # reads address 0: SIGSEGV


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
        if fault == "spin":  # a stuck computation that keeps a core busy
            while True:
                pass
        if fault in ("abort", "exit", "segfault"):
            _die(fault)
    if fault == "abort-once" and int(abs(y[0]) * 1e6) % 5 == 0:
        marker = os.path.join(os.environ["SBC_TEST_FAULT_DIR"], f"{abs(y[0]):.12f}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            _die("abort")
    counts = np.bincount(gene, minlength=n_genes)
    sums = np.bincount(gene, weights=y, minlength=n_genes)
    precision = 1 / PRIOR_SD**2 + counts / NOISE_SD**2
    mean = (sums / NOISE_SD**2) / precision
    return {"mu": rng.normal(mean, 1 / np.sqrt(precision), size=(n_draws, n_genes))}
