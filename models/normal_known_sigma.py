"""Gene effects with known noise: a hierarchical normal model whose posterior is exact.

    mu          ~ Normal(MU_MEAN, MU_SD)                  screen-wide mean effect
    gene_effect ~ Normal(mu, TAU), one per gene           known spread between genes
    logfc       ~ Normal(gene_effect[gene], sd = 1 / sqrt(NOISE_PRECISION))

Only ``mu`` and ``gene_effect`` are unknown, so the joint posterior is Gaussian and
``exact_posterior`` draws from it directly (sampler "exact"): SBC of this model tests the
framework itself, with no MCMC error.  The noise is given as a precision (4, i.e. sd 0.5),
as in many conjugate-model texts; ``tests/validation`` has a twin that passes it as an sd.
"""

import numpy as np
import pymc as pm

MU_MEAN, MU_SD = -1.0, 1.0
TAU = 0.5
NOISE_PRECISION = 4.0


def build(data):
    """data: a design frame (``sbc.design_frame``) with a categorical ``gene`` column."""
    gene_idx = data["gene"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    with pm.Model() as model:
        mu = pm.Normal("mu", MU_MEAN, MU_SD)
        gene_effect = pm.Normal("gene_effect", mu, TAU, shape=n_genes)
        pm.Normal("logfc", gene_effect[gene_idx], tau=NOISE_PRECISION,
                  observed=data["logfc"].to_numpy())
    return model


def gaussian_posterior(gene_idx, n_genes, y, noise_precision=NOISE_PRECISION):
    """Mean (1 + G,) and precision matrix (1 + G, 1 + G) of (mu, gene_effect) given y."""
    counts = np.bincount(gene_idx, minlength=n_genes)
    sums = np.bincount(gene_idx, weights=y, minlength=n_genes)
    q = np.zeros((n_genes + 1, n_genes + 1))
    q[0, 0] = 1 / MU_SD**2 + n_genes / TAU**2
    q[0, 1:] = q[1:, 0] = -1 / TAU**2
    q[1:, 1:] = np.diag(1 / TAU**2 + counts * noise_precision)
    b = np.concatenate([[MU_MEAN / MU_SD**2], sums * noise_precision])
    return np.linalg.solve(q, b), q


def draw_gaussian(mean, precision, n_draws, rng):
    """(n_draws, len(mean)) draws from Normal(mean, precision^-1), via the precision's Cholesky."""
    chol = np.linalg.cholesky(precision)
    z = rng.standard_normal((len(mean), n_draws))
    return (mean[:, None] + np.linalg.solve(chol.T, z)).T


def exact_posterior(data, y, n_draws, rng):
    """Independent draws from the exact joint posterior of ``mu`` and ``gene_effect``."""
    gene_idx = data["gene"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    mean, precision = gaussian_posterior(gene_idx, n_genes, np.asarray(y, dtype=float))
    draws = draw_gaussian(mean, precision, n_draws, rng)
    return {"mu": draws[:, 0], "gene_effect": draws[:, 1:]}
