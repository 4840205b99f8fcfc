"""Knockout hit counts per gene: a beta-binomial model whose posterior is exact.

    hit_rate[gene] ~ Beta(A, B)
    hits           ~ Binomial(N_GUIDES, hit_rate[gene])     one count per design row

Each row of the design frame (cell line x gene x experiment) counts how many of N_GUIDES
guides against the gene depleted the cell line.  The Beta prior is conjugate, so
``exact_posterior`` draws hit_rate[g] ~ Beta(A + hits_g, B + misses_g) directly (sampler
"exact"), which makes this model a fast, exact check of the framework on a discrete response.
"""

import numpy as np
import pymc as pm

A, B = 2.0, 3.0
N_GUIDES = 4


def build(data):
    """data: a design frame; its ``logfc`` placeholder column stands in for the counts."""
    gene_idx = data["gene"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    with pm.Model() as model:
        hit_rate = pm.Beta("hit_rate", A, B, shape=n_genes)
        pm.Binomial("hits", n=N_GUIDES, p=hit_rate[gene_idx],
                    observed=data["logfc"].to_numpy().astype("int64"))
    return model


def exact_posterior(data, y, n_draws, rng):
    """Independent draws of ``hit_rate`` from its conjugate Beta posterior."""
    gene_idx = data["gene"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    y = np.asarray(y, dtype=float)
    hits = np.bincount(gene_idx, weights=y, minlength=n_genes)
    trials = np.bincount(gene_idx, minlength=n_genes) * N_GUIDES
    return {"hit_rate": rng.beta(A + hits, B + trials - hits, size=(n_draws, n_genes))}
