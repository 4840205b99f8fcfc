"""Bug twin of models/normal_known_sigma.py: inference drops the last observation.

The model (and the log-likelihood quantities) are correct; the posterior ignores one data
point.  Parameter ranks stay uniform (a posterior given fewer data is still calibrated), and
``loglik``/``loglik_min`` see one point among many only when the data set is tiny.
"""

import numpy as np
import pymc as pm

MU_MEAN, MU_SD = -1.0, 1.0
TAU = 0.5
NOISE_PRECISION = 4.0


def build(data):
    gene_idx = data["gene"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    with pm.Model() as model:
        mu = pm.Normal("mu", MU_MEAN, MU_SD)
        gene_effect = pm.Normal("gene_effect", mu, TAU, shape=n_genes)
        pm.Normal("logfc", gene_effect[gene_idx], tau=NOISE_PRECISION,
                  observed=data["logfc"].to_numpy())
    return model


def exact_posterior(data, y, n_draws, rng):
    gene_idx = data["gene"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    noise_precision = NOISE_PRECISION
    gene_idx, y = gene_idx[:-1], np.asarray(y)[:-1]  # BUG: drops the last observation
    counts = np.bincount(gene_idx, minlength=n_genes)
    sums = np.bincount(gene_idx, weights=np.asarray(y, float), minlength=n_genes)
    q = np.zeros((n_genes + 1, n_genes + 1))
    q[0, 0] = 1 / MU_SD**2 + n_genes / TAU**2
    q[0, 1:] = q[1:, 0] = -1 / TAU**2
    q[1:, 1:] = np.diag(1 / TAU**2 + counts * noise_precision)
    mean = np.linalg.solve(q, np.concatenate([[MU_MEAN / MU_SD**2], sums * noise_precision]))
    z = rng.standard_normal((n_genes + 1, n_draws))
    draws = (mean[:, None] + np.linalg.solve(np.linalg.cholesky(q).T, z)).T
    return {"mu": draws[:, 0], "gene_effect": draws[:, 1:]}
