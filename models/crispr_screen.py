"""CRISPR screen log fold changes with varying intercepts for gene and cell line (Bambi).

    logfc ~ 1 + (1 | gene) + (1 | cell_line)

This is the seed notebook's model in the form Bambi can express.  Bambi has one common
intercept; the seed's two hyper-means ``mu_alpha`` and ``mu_beta`` enter the likelihood only
through their sum, so they are not separately identified.  The identified form keeps one
intercept, and the priors below are chosen so every identified quantity has the seed's prior:

| Bambi parameter      | seed's name                     | prior                                  |
|----------------------|---------------------------------|----------------------------------------|
| ``Intercept``        | ``mu_alpha + mu_beta``          | Normal(-1, sqrt(2**2 + 2**2))          |
| ``1|gene_sigma``     | ``sigma_alpha``                 | Exponential(rate 0.5)                  |
| ``1|gene``           | ``alpha_g - mu_alpha``          | Normal(0, sigma_alpha)                 |
| ``1|cell_line_sigma``| ``sigma_beta``                  | Exponential(rate 0.5)                  |
| ``1|cell_line``      | ``beta_c - mu_beta``            | Normal(0, sigma_beta)                  |
| ``sigma``            | ``sigma``                       | Exponential(rate 1)                    |

Bambi samples the group effects non-centered (``1|gene_offset`` times ``1|gene_sigma``),
which removes the funnel that makes the seed's centered form diverge.  All priors are
explicit: Bambi's default priors are scaled by the data and would change between replicates.
"""

import math

import bambi as bmb

FORMULA = "logfc ~ 1 + (1|gene) + (1|cell_line)"


def priors() -> dict:
    return {
        "Intercept": bmb.Prior("Normal", mu=-1.0, sigma=math.sqrt(8.0)),
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "1|cell_line": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "sigma": bmb.Prior("Exponential", lam=1.0),
    }


def build(data):
    """data: a design frame (``sbc.design_frame``) with categorical gene and cell_line."""
    return bmb.Model(FORMULA, data, priors=priors(), family="gaussian", noncentered=True)
