"""Bug twin of models/normal_known_sigma.py: inference uses only the first half of the rows.

The model (and so the log-likelihood quantity) is correct; the posterior computation loops
over half of the observations, as a hand-written sampler with a wrong loop bound would.
The posterior is then a valid posterior given half the data, so parameter ranks stay
uniform: only the ``loglik`` quantity (the full data's log-likelihood) can see this bug.
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
    half = len(gene_idx) // 2
    gene_idx, y = gene_idx[:half], np.asarray(y)[:half]  # BUG: drops half the data
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
