"""Bug twin of models/crispr_screen.py: the fitter's prior on the intercept has the wrong mean.

The generator draws ``Intercept ~ Normal(-1, sqrt(8))``; this fitter says ``Normal(+1,
sqrt(8))``, as a sign slip in a prior would.  With three genes the data inform the intercept
only through three gene means, so its prior matters.  Expected SBC signature: the intercept
is biased high (ranks pile up low).
"""

import math

import bambi as bmb

FORMULA = "logfc ~ 1 + (1|gene) + (1|cell_line)"


def build(data):
    priors = {
        "Intercept": bmb.Prior("Normal", mu=1.0, sigma=math.sqrt(8.0)),  # BUG: mu is -1
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "1|cell_line": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "sigma": bmb.Prior("Exponential", lam=1.0),
    }
    return bmb.Model(FORMULA, data, priors=priors, family="gaussian", noncentered=True)
