"""A planning model for a CRISPR knockout screen with Chronos-like gene effects.

    logfc[c, g, r] = beta_g[g] + beta_c[c] + u[c, g] + e[c, g, r]

    beta_g[g] = mu_essential * essential[g] + sigma_gene * z_g     gene effect (Chronos scale)
    beta_c[c] = sigma_beta * z_c                                   cell-line shift
    u[c, g]   ~ Normal(0, tau)      how much a gene's effect differs between cell lines
    e[c,g,r]  ~ Normal(0, sigma)    replicate noise

The first half of the genes are known common-essential controls (prior median effect -1),
the rest non-essential (effect near 0): the Chronos scaling fixes the non-essential median
at 0 and the common-essential median at -1.  ``essential_gap`` is the mean effect of the
essential genes minus that of the non-essential genes, the usual screen-quality contrast.

The gene x cell-line deviations ``u`` are integrated out analytically: the replicates of one
(cell line, gene) pair are exchangeable normal draws, so their mean and within-pair sum of
squares carry all the information.  This keeps the number of sampled parameters at
genes + cell lines + 5 instead of genes x cell lines, which is what makes 100 x 100 x 4
(40,000 rows) fit in seconds with NUTS.  It needs the design frame's row order (cell line,
gene, replicate, replicate fastest), which ``sbc.design_frame`` guarantees and ``build``
checks.

``PRIORS`` holds the hyperpriors as (distribution, parameters); a design prior (for example
one moment-matched to a pilot screen) is this file with ``PRIORS`` overridden.
"""

import math

import numpy as np
import pymc as pm
import pytensor.tensor as pt

PRIORS = {
    "mu_essential": ("Normal", {"mu": -1.0, "sigma": 0.2}),
    "sigma_gene": ("LogNormal", {"mu": math.log(0.25), "sigma": 0.3}),
    "sigma_beta": ("LogNormal", {"mu": math.log(0.2), "sigma": 0.4}),
    "tau": ("LogNormal", {"mu": math.log(0.2), "sigma": 0.3}),
    "sigma": ("LogNormal", {"mu": math.log(0.3), "sigma": 0.3}),
}


def _prior(name):
    family, params = PRIORS[name]
    return getattr(pm, family)(name, **params)


def _check_layout(data, n_cells, n_genes, n_reps):
    cell = data["cell_line"].cat.codes.to_numpy()
    gene = data["gene"].cat.codes.to_numpy()
    expected_cell = np.repeat(np.arange(n_cells), n_genes * n_reps)
    expected_gene = np.tile(np.repeat(np.arange(n_genes), n_reps), n_cells)
    if len(data) != n_cells * n_genes * n_reps or not (
            np.array_equal(cell, expected_cell) and np.array_equal(gene, expected_gene)):
        raise ValueError("crispr_plan needs a complete design sorted by cell_line, gene, "
                         "replicate (as sbc.design_frame makes); sort the data that way and "
                         "give every (cell line, gene) pair the same number of replicates")


def build(data):
    """data: design frame with categorical cell_line, gene, expt, sorted by them."""
    n_cells = len(data["cell_line"].cat.categories)
    n_genes = len(data["gene"].cat.categories)
    expt_col = "expt" if "expt" in data else "replicate"
    n_reps = len(data[expt_col].cat.categories) if hasattr(data[expt_col], "cat") \
        else int(data[expt_col].nunique())
    _check_layout(data, n_cells, n_genes, n_reps)
    n_pairs = n_cells * n_genes
    essential = (np.arange(n_genes) < max(1, n_genes // 2)).astype(float)
    pair_gene = np.tile(np.arange(n_genes), n_cells)
    pair_cell = np.repeat(np.arange(n_cells), n_genes)

    def marginal_logp(value, mu_pair, tau, sigma):
        # value: (n_pairs * n_reps,) rows; exact log density of exchangeable replicates
        y = value.reshape((n_pairs, n_reps))
        ybar = y.mean(axis=1)
        ss = ((y - ybar[:, None]) ** 2).sum(axis=1)
        v = tau**2 + sigma**2 / n_reps
        lp = (-0.5 * (pt.log(2 * np.pi * v) + (ybar - mu_pair) ** 2 / v)
              - 0.5 * (n_reps - 1) * pt.log(2 * np.pi * sigma**2) - ss / (2 * sigma**2)
              - 0.5 * np.log(n_reps))
        # spread each pair's log density over its rows so pointwise sums stay exact
        return pt.repeat(lp / n_reps, n_reps)

    def marginal_random(mu_pair, tau, sigma, size):
        u = pm.Normal.dist(0.0, tau, shape=(n_pairs,))
        e = pm.Normal.dist(0.0, sigma, shape=(n_pairs * n_reps,))
        return pt.repeat(mu_pair + u, n_reps) + e

    with pm.Model() as model:
        mu_essential = _prior("mu_essential")
        sigma_gene = _prior("sigma_gene")
        sigma_beta = _prior("sigma_beta")
        tau = _prior("tau")
        sigma = _prior("sigma")
        z_g = pm.Normal("z_g", 0.0, 1.0, shape=n_genes)
        z_c = pm.Normal("z_c", 0.0, 1.0, shape=n_cells)
        beta_g = pm.Deterministic("beta_g", mu_essential * essential + sigma_gene * z_g)
        beta_c = pm.Deterministic("beta_c", sigma_beta * z_c)
        pm.Deterministic("essential_gap",
                         (beta_g * essential).sum() / essential.sum()
                         - (beta_g * (1 - essential)).sum() / max(1.0, (1 - essential).sum()))
        mu_pair = beta_g[pair_gene] + beta_c[pair_cell]
        pm.CustomDist("logfc", mu_pair, tau, sigma, logp=marginal_logp, dist=marginal_random,
                      shape=(n_pairs * n_reps,), observed=data["logfc"].to_numpy())
    return model
