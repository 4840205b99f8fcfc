"""Bug twin of models/normal_known_sigma.py: an off-by-one gene index.

The fitter reads gene codes shifted by one (``(code + 1) % n_genes``), so each gene's data
inform the next gene's effect.  Expected SBC signature: gene effects fail (too narrow: the
posterior is confident about the wrong gene); ``mu`` may stay calibrated.
"""

import numpy as np
import pymc as pm

MU_MEAN, MU_SD = -1.0, 1.0
TAU = 0.5
NOISE_PRECISION = 4.0


def build(data):
    n_genes = len(data["gene"].cat.categories)
    gene_idx = (data["gene"].cat.codes.to_numpy() + 1) % n_genes  # BUG: off by one
    with pm.Model() as model:
        mu = pm.Normal("mu", MU_MEAN, MU_SD)
        gene_effect = pm.Normal("gene_effect", mu, TAU, shape=n_genes)
        pm.Normal("logfc", gene_effect[gene_idx], tau=NOISE_PRECISION,
                  observed=data["logfc"].to_numpy())
    return model


def exact_posterior(data, y, n_draws, rng):
    n_genes = len(data["gene"].cat.categories)
    gene_idx = (data["gene"].cat.codes.to_numpy() + 1) % n_genes  # BUG: off by one
    noise_precision = NOISE_PRECISION
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
