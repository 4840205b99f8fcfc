"""A genome screen's record carries what the decision calibration of P(essential) needs
(sbc.plan.genome.essential_decisions), and a genome plan's summary shows it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from support import TINY_GENOME_PLAN

from sbc.plan import genome_screen as gm
from sbc.plan.genome import (ESSENTIAL_FIELDS, GenomeSettings, GenomeTarget, ScreenDesign,
                             essential_decisions)

DESIGN = ScreenDesign(2, 300, 2, 3, 250)
SETTINGS = GenomeSettings(seed=11, targets=(GenomeTarget("essential_power", at_least=0.3),),
                          max_cells=2, max_guides=3, n_candidates=6, fraction=0.5)


@pytest.fixture(scope="module")
def records():
    return [gm.run_screen(DESIGN, rep, SETTINGS) for rep in range(4)]


def test_the_screen_record_carries_the_decision_fields(records):
    for record in records:
        assert set(ESSENTIAL_FIELDS) <= set(record)
        json.dumps(record)  # stored as JSON
        bins = np.array(record["p_ess_bins"])
        assert bins.shape == (4, 10)
        assert bins[0].sum() == DESIGN.genes
        assert bins[2].sum() == record["n_essential"]
        assert bins[1].sum() == pytest.approx(record["p_ess_sum"])
        assert record["n_essential"] - record["p_ess_sum"] == pytest.approx(
            record["reliability"])
        assert record["p_ess_count_var"] > 0 and record["reliability_var"] > 0
        assert isinstance(record["essential_gene"], bool)
        assert 0 <= record["p_ess_gene"] <= 1


def test_the_decision_gene_is_the_pit_gene():
    rep = 3
    truth, t0, counts, x = gm.simulate(DESIGN, rep, SETTINGS)
    post = gm.fit_screen(t0, counts, x, DESIGN, rep, SETTINGS)
    record = gm.run_screen(DESIGN, rep, SETTINGS)
    gene = rep % len(record["pit_beta"])
    assert record["p_ess_gene"] == pytest.approx(post.p_ess[gene])
    assert record["essential_gene"] == bool(truth["essential"][gene])
    assert record["pit_beta"][gene] == pytest.approx(
        gm.mixture_cdf(truth["beta_g"][gene], post.w[gene], post.m[gene], post.s[gene]))


def test_the_count_variance_adds_the_hyperparameters_spread():
    _, t0, counts, x = gm.simulate(DESIGN, 0, SETTINGS)
    post = gm.fit_screen(t0, counts, x, DESIGN, 0, SETTINGS)
    mean, var = post.essential_count()
    assert mean == pytest.approx(post.p_ess.sum())
    om, sums, within = post.draw_weights, post.draw_counts[:, 0], post.draw_counts[:, 1]
    assert var == pytest.approx(om @ within + om @ (sums - mean) ** 2)
    # a posterior without draws (e.g. from NUTS) falls back to independent genes
    post.draw_counts = None
    assert post.essential_count()[1] == pytest.approx((post.p_ess * (1 - post.p_ess)).sum())


def test_essential_decisions_and_the_summary(records, tmp_path):
    from sbc.plan.genome_config import load_genome_plan
    from sbc.render import genome_plan_summary

    e = essential_decisions(records)
    assert e["screens"] == 4
    assert 0 <= e["brier"].score <= 1 and e["brier"].n == 4 * DESIGN.genes
    assert e["count"].n == 4 and math.isfinite(e["count"].sd)
    assert essential_decisions([{"rep": 0}]) is None  # records without the fields

    path = tmp_path / "plan.toml"
    path.write_text(TINY_GENOME_PLAN)
    plan = load_genome_plan(path)
    row = {"design": DESIGN.label, "cost": 1.0, "status": "pass", "simulations": 4,
           "p_success": 1.0, "p_lower": 0.5, "p_upper": 1.0, "metric0": 0.5, "metric1": 0.9,
           "fdp_at_0.05": 0.03, "calibration": "calibrated"}
    table = pd.DataFrame([row])
    fits = {"used": 4, "new": 4, "full_grid": 40}
    text = genome_plan_summary(plan, table, None, fits, 1.0,
                               screens={DESIGN.label: dict(enumerate(records))})
    assert "## P(essential) as a decision probability" in text
    assert f"Reliability of P(essential), `{DESIGN.label}`" in text
    assert "P(essential) as a decision" not in genome_plan_summary(plan, table, None, fits, 1.0)
