"""Bug twin of models/crispr_screen.py: the fitter mislabels two cell lines.

The fitter's data swap the labels of the first two cell lines (as a wrong join of a sample
sheet would), so its ``1|cell_line[0]`` is estimated from cell line 1's observations and
vice versa.  Everything else is the reference model.  Expected SBC signature: the two
swapped cell-line effects are too narrow around the wrong value (extreme ranks).
"""

import math

import bambi as bmb

FORMULA = "logfc ~ 1 + (1|gene) + (1|cell_line)"


def build(data):
    priors = {
        "Intercept": bmb.Prior("Normal", mu=-1.0, sigma=math.sqrt(8.0)),
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "1|cell_line": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=0.5)),
        "sigma": bmb.Prior("Exponential", lam=1.0),
    }
    first, second = data["cell_line"].cat.categories[:2]
    swapped = data.copy()
    is_first, is_second = data["cell_line"] == first, data["cell_line"] == second
    swapped.loc[is_first, "cell_line"] = second  # BUG: the two labels are swapped
    swapped.loc[is_second, "cell_line"] = first
    return bmb.Model(FORMULA, swapped, priors=priors, family="gaussian", noncentered=True)
