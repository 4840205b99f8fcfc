"""The seed notebook's model exactly as written (plain PyMC: centered, both hyper-means).

    alpha_g ~ Normal(mu_alpha, sigma_alpha)       mu_alpha ~ Normal(-1, 2), sigma_alpha ~ Exp(0.5)
    beta_c  ~ Normal(mu_beta, sigma_beta)         mu_beta  ~ Normal(0, 2),  sigma_beta  ~ Exp(0.5)
    logfc   ~ Normal(alpha_g[gene] + beta_c[cell_line], sigma)             sigma ~ Exp(1)

Exponential priors use PyMC's rate parametrization.  ``mu_alpha`` and ``mu_beta`` are
identified only through their sum, and the centered group effects form a funnel: with one
chain of 1000 + 1000 NUTS draws most fits diverge.  SBC shows both; ``crispr_screen`` is
the identified, non-centered form of the same model.
"""

import pymc as pm


def build(data):
    gene_idx = data["gene"].cat.codes.to_numpy()
    cell_idx = data["cell_line"].cat.codes.to_numpy()
    n_genes = len(data["gene"].cat.categories)
    n_cells = len(data["cell_line"].cat.categories)
    with pm.Model() as model:
        mu_alpha = pm.Normal("mu_alpha", -1.0, 2.0)
        sigma_alpha = pm.Exponential("sigma_alpha", 0.5)
        mu_beta = pm.Normal("mu_beta", 0.0, 2.0)
        sigma_beta = pm.Exponential("sigma_beta", 0.5)
        alpha_g = pm.Normal("alpha_g", mu_alpha, sigma_alpha, shape=n_genes)
        beta_c = pm.Normal("beta_c", mu_beta, sigma_beta, shape=n_cells)
        mu_gc = pm.Deterministic("mu_gc", alpha_g[gene_idx] + beta_c[cell_idx])
        sigma = pm.Exponential("sigma", 1.0)
        pm.Normal("logfc", mu_gc, sigma, observed=data["logfc"].to_numpy())
    return model
