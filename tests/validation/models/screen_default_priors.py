"""Bug twin of models/crispr_screen.py: the fitter keeps Bambi's default priors.

The generator (crispr_screen) has explicit priors; this fitter has the same formula with
Bambi's defaults, which Bambi scales by the response it is given.  The design frame's
placeholder response is all zeros (zero-width priors), so, as a user fitting a pilot screen
would, the defaults are scaled by a fixed pilot data set (mean -1, sd 2).  Generator and
fitter then disagree on every prior.  sbc refuses such a model when a study is checked,
before any simulation (sbc.spec: Bambi default priors are refused at load), so the
validation suite asserts that ModelError instead of a detection n.
"""

import bambi as bmb
import numpy as np

FORMULA = "logfc ~ 1 + (1|gene) + (1|cell_line)"


def build(data):
    pilot = data.assign(logfc=np.random.default_rng(0).normal(-1.0, 2.0, len(data)))
    return bmb.Model(FORMULA, pilot, family="gaussian", noncentered=False)  # BUG: default priors
