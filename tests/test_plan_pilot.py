"""A pilot screen's posterior becomes the design prior, end to end through `sbc plan`."""

import json

import numpy as np
import pytest

from support import ROOT
from sbc.cli import main
from sbc.design import Design
from sbc.simulate import Simulator
from sbc.spec import make_spec, resolve_model

PLAN = f"""
name = "pilot_plan"
seed = 5
model = "{ROOT / 'models/crispr_plan.py'}"
probability = 0.8
[pilot]
csv = "pilot.csv"
draws = 500
tune = 500
[space]
cell_lines = [4, 8]
genes = [20]
reps = [2]
monotone = ["cell_lines", "reps"]
[target]
quantity = "beta_g"
criterion = "width"
below = 0.8
level = 0.95
over = "each"
[cost]
per_cell_line = 2.0
[search]
batch = 10
max_simulations = 20
calibration_simulations = 20
[sampler]
tune = 500
draws = 1000
"""


@pytest.mark.slow
def test_pilot_screen_posterior_becomes_the_design_prior(tmp_path):
    data = Design(4, 20, 2).frame()
    spec = make_spec(resolve_model("crispr_plan", ROOT / "studies"), data)
    truths, y = Simulator(spec).draw(np.random.SeedSequence(42))
    data["logfc"] = y
    data.rename(columns={"expt": "replicate"})[["cell_line", "gene", "replicate", "logfc"]] \
        .to_csv(tmp_path / "pilot.csv", index=False)
    (tmp_path / "plan.toml").write_text(PLAN)
    out = tmp_path / "out"
    assert main(["plan", str(tmp_path / "plan.toml"), "--out", str(out), "--workers", "2"]) == 0
    prior = json.loads((out / "pilot_posterior.json").read_text())["priors"]
    family, params = prior["mu_essential"]
    # The moment-matched design prior is centred near the pilot's true value (4 sd allows
    # for the pilot's own posterior uncertainty: a miss has probability < 1e-4).
    assert family == "Normal"
    assert abs(params["mu"] - truths["mu_essential"]) < 4 * params["sigma"]
    assert params["sigma"] < 0.2  # narrower than the analysis prior (sd 0.2)
    assert (out / "design_prior.py").is_file()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["recommended"] is not None
