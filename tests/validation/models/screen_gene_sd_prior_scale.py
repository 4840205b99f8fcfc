"""Bug twin of models/crispr_screen.py: the fitter's prior on the gene sd has another scale.

The generator draws the gene-effect sd from ``Exponential(rate 0.5)`` (mean 2); this fitter
uses rate 2 (mean 0.5), as a rate/scale mix-up would.  With three genes the data say little
about that sd, so its prior dominates.  Expected SBC signature: ``1|gene_sigma`` biased low.
"""

import math

import bambi as bmb

FORMULA = "logfc ~ 1 + (1|gene) + (1|cell_line)"


def build(data):
    priors = {
        "Intercept": bmb.Prior("Normal", mu=-1.0, sigma=math.sqrt(8.0)),
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=2.0)),  # BUG
        "1|cell_line": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "sigma": bmb.Prior("Exponential", lam=1.0),
    }
    return bmb.Model(FORMULA, data, priors=priors, family="gaussian", noncentered=True)
