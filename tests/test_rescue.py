"""The recorded rescue: a flagged fit is refitted once with stronger settings, both attempts
are kept in the record, and ranks stay uniform.

The validity checks use a model whose posterior is known (normal_known_sigma, Gaussian)
fitted by nutpie, and rescue (a) every fit, (b) the fits selected by a rule that depends on
the data, as real sampler flags do (here: the posterior mean of ``mu`` above its prior
mean).  If choosing and refitting bent the ranks, the calibration check would fail.  With a
correct rescue each passes except with probability <= 5 % (family-wise alpha) for a random
seed; the seeds are fixed.  A negative control shows the check can fail: a rescue that picks
which attempt to rank by what it shows (the lower posterior mean) is caught, on a design with
enough sampler noise to tell the two apart.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

import sbc.replicate
from sbc.store import Store
from sbc.study import SamplerSettings
from sbc.testing import check_calibration


def test_rescue_settings_aim_at_what_went_wrong():
    s = SamplerSettings(tune=1000, draws=1000, target_accept=0.9)
    div = s.rescued(divergent=True, low_ess=False)
    assert (div.tune, div.draws, div.target_accept, div.rescue) == (2000, 1000, 0.99, False)
    slow = s.rescued(divergent=False, low_ess=True)
    assert (slow.tune, slow.draws, slow.target_accept) == (1000, 2000, 0.9)


@pytest.mark.parametrize("n_sims", [80])
def test_forced_rescue_keeps_ranks_uniform_on_a_known_posterior(tmp_path, monkeypatch, n_sims):
    real = sbc.replicate.assess
    calls = {"n": 0}

    def always_flagged(fit, names, thin):
        calls["n"] += 1
        checked = real(fit, names, thin)
        return replace(checked, flags={**checked.flags, "flagged": True, "slow_mixing": True,
                                       "n_divergent": 1})

    monkeypatch.setattr(sbc.replicate, "assess", always_flagged)
    settings = SamplerSettings(draws=250, tune=300)  # rescue: 500 draws, 600 tune, ta 0.99
    result = check_calibration("normal_known_sigma", (5, 3, 2), n_sims=n_sims, seed=11,
                               sampler=settings, cache_dir=tmp_path, report=False)
    assert result.passed, result.message()
    reps = Store(result.out).tables()[0]
    assert reps["rescued"].astype(bool).all() and calls["n"] == 2 * n_sims
    record = pd.read_json(next((result.out / "replicates").rglob("r*.json")), typ="series")
    first, second = record["attempts"]
    assert (first["draws"], second["draws"]) == (250, 500)
    assert second["target_accept"] == 0.99 and record["n_draws"] == 500


def test_data_dependent_rescue_keeps_ranks_uniform_on_a_known_posterior(tmp_path, monkeypatch):
    real = sbc.replicate.assess

    def flag_high_mu(fit, names, thin):  # depends on the data, like a real sampler flag
        checked = real(fit, names, thin)
        high = bool(fit.draws["mu"].mean() > -1.0)
        return replace(checked, flags={**checked.flags, "flagged": high, "slow_mixing": high,
                                       "n_divergent": 0})

    monkeypatch.setattr(sbc.replicate, "assess", flag_high_mu)
    settings = SamplerSettings(draws=250, tune=300)
    # Seed 13.  Seed 12, used before the default rank test became the combined test, is a
    # false alarm of the fits themselves under that test: with no rescue at all its
    # gene_effect[0] fails (Holm p 0.015), so it cannot tell a rescue's effect.  With the rescue
    # rule, seeds 13 to 16 pass (smallest Holm p 0.20 to 1).
    result = check_calibration("normal_known_sigma", (5, 3, 2), n_sims=100, seed=13,
                               sampler=settings, cache_dir=tmp_path, report=False)
    assert result.passed, result.message()
    share = Store(result.out).tables()[0]["rescued"].astype(bool).mean()
    assert 0.3 < share < 0.7  # the rule selected about half the fits


def _outcome_rescue(monkeypatch, choose_first):
    """Every fit is flagged and refitted; ``choose_first(fit, refit)`` picks which attempt
    is ranked (the correct rescue always ranks the refit, whatever it shows)."""
    real_assess, real_rescue = sbc.replicate.assess, sbc.replicate.rescue_fit

    def always_flagged(fit, names, thin):
        checked = real_assess(fit, names, thin)
        return replace(checked, flags={**checked.flags, "flagged": True, "slow_mixing": True,
                                       "n_divergent": 0})

    def rescue(prepared, task, seed, y, fit, checked, names):
        refit, rechecked, attempts = real_rescue(prepared, task, seed, y, fit, checked, names)
        return (fit, checked, attempts) if choose_first(fit, refit) else \
            (refit, rechecked, attempts)

    monkeypatch.setattr(sbc.replicate, "assess", always_flagged)
    monkeypatch.setattr(sbc.replicate, "rescue_fit", rescue)


# Enough sampler noise to tell a rescue that chooses by outcome from one that does not: 10
# draws per fit, ranked unthinned, so two fits of the same data differ visibly, and 1,000
# replicates.  Measured (seed 1): the correct rescue passes (smallest Holm p 0.13); keeping
# the attempt with the lower posterior mean of mu fails (p 0.00075).
NOISY = SamplerSettings(draws=10, tune=200)


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("rule,should_pass", [
    ("the refit, whatever it shows", True),
    ("the attempt with the lower posterior mean of mu", False),
])
def test_a_rescue_that_chooses_by_outcome_fails_and_the_recorded_rescue_passes(
        tmp_path, monkeypatch, rule, should_pass):
    choose = {"the refit, whatever it shows": lambda fit, refit: False,
              "the attempt with the lower posterior mean of mu":
              lambda fit, refit: fit.draws["mu"].mean() < refit.draws["mu"].mean()}[rule]
    _outcome_rescue(monkeypatch, choose)
    result = check_calibration("normal_known_sigma", (5, 3, 2), n_sims=1000, seed=1, thin=1,
                               sampler=NOISY, cache_dir=tmp_path, report=False)
    assert Store(result.out).tables()[0]["rescued"].astype(bool).all()
    assert result.passed == should_pass, (rule, result.message())
