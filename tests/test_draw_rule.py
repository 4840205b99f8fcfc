"""The draw rule: a first fit short of effective draws is refitted with twice the draws, the
rule is fixed before the data are seen (it reads the fit's own ESS, never the truth), the
record states the draws of the ranked fit, and ranks stay uniform.

The uniformity check fits a model whose posterior is known (normal_known_sigma) with nutpie
at 200 draws, where the real low-ESS flag (min bulk/tail ESS < 100) sends about a third of
the fits to a refit; no flag is patched.  With a correct rule the check passes except with
probability <= 5 % (family-wise alpha, Holm) for a random seed; the seed is fixed.  That
this check can fail on the same model is shown by tests/test_rescue.py's negative control.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from sbc.replicate import Prepared, refit_forms, short_of_draws
from sbc.store import Store
from sbc.study import SamplerSettings
from sbc.testing import check_calibration

SHORT = SamplerSettings(tune=300, draws=200)
FLAGS = {"low_ess": True, "n_divergent": 0, "n_treedepth": 0, "high_rhat": False}


def test_a_fit_only_short_of_draws_draws_more_in_its_own_form_first():
    prepared = Prepared(None, None, "own backend", None, ("mu",),
                        rescue_specs=[("alt1", lambda: "b1"), ("alt2", lambda: "b2"),
                                      ("alt3", lambda: "b3")])
    assert short_of_draws(FLAGS)
    assert [n for n, _ in refit_forms(prepared, FLAGS)] == ["build", "alt1", "alt2"]
    assert refit_forms(prepared, FLAGS)[0][1]() == "own backend"
    for worse in ({"n_divergent": 2}, {"n_treedepth": 1}, {"high_rhat": True}):
        flags = {**FLAGS, **worse}
        assert not short_of_draws(flags)
        assert [n for n, _ in refit_forms(prepared, flags)] == ["alt1", "alt2"]
    bare = replace(prepared, rescue_specs=[])
    assert [n for n, _ in refit_forms(bare, {**FLAGS, "n_divergent": 1})] == ["build"]


def test_ranks_stay_uniform_when_fits_short_of_draws_draw_more(tmp_path):
    result = check_calibration("normal_known_sigma", (5, 3, 2), n_sims=100, seed=31,
                               sampler=SHORT, cache_dir=tmp_path, report=False)
    assert result.passed, result.message()
    reps = Store(result.out).tables()[0]
    rescued = reps["rescued"].astype(bool)
    assert 0.1 < rescued.mean() < 0.7  # the real ESS flag chose a share of the fits
    # the record states the draws of the fit it ranks: the refit's when there was one
    assert set(reps.loc[~rescued, "n_draws"]) == {200}
    assert set(reps.loc[rescued, "n_draws"]) == {400}
    assert (reps["n_ranked"] <= reps["n_draws"]).all()
    record = pd.read_json(next(p for p in (result.out / "replicates").rglob("r*.json")
                               if pd.read_json(p, typ="series")["rescued"]), typ="series")
    first, second = record["attempts"]
    assert first["low_ess"] and (first["draws"], second["draws"]) == (200, 400)
    assert record["gradient_evals"] == first["gradient_evals"] + second["gradient_evals"] > 0



def test_the_low_rank_gamma_rule_reads_only_the_models_dimension():
    """mass_matrix_gamma "auto": nutpie's 1e-5 below 100 dimensions, 1e-3 from 100 on (the
    adaptation's cost grows with the dimension; benchmarks/draw_rule.md); a stated value
    is used as it is; the fingerprint of a study that states nutpie's own value is that of
    the stores written before the setting existed."""
    from sbc.sampling import NUTPIE_GAMMA, SamplerSettings, low_rank_gamma

    assert low_rank_gamma(None, 16) == NUTPIE_GAMMA
    assert low_rank_gamma(None, 99) == NUTPIE_GAMMA
    assert low_rank_gamma(None, 100) == 1e-3
    assert low_rank_gamma(None, 134) == 1e-3
    assert low_rank_gamma(0.02, 134) == 0.02 and low_rank_gamma(0.02, 5) == 0.02
    assert "mass_matrix_gamma" not in SamplerSettings(mass_matrix_gamma=NUTPIE_GAMMA)\
        .fingerprint_dict()
    assert SamplerSettings().fingerprint_dict()["mass_matrix_gamma"] is None
    assert SamplerSettings().fingerprint_dict() != \
        SamplerSettings(mass_matrix_gamma=1e-3).fingerprint_dict()


def test_nutpie_kwargs_map_every_setting_and_resolve_the_gamma_rule():
    """The one mapping from settings to nutpie.sample's options (the library's fits and the
    benchmarks' bare sampler both use it): every setting that changes draws reaches nutpie,
    and a gamma only with low-rank adaptation."""
    from sbc.sampling import NUTPIE_GAMMA, SamplerSettings

    s = SamplerSettings(chains=2, tune=123, draws=45, target_accept=0.9, max_treedepth=7)
    kw = s.nutpie_kwargs(134)
    assert kw == dict(chains=2, cores=1, tune=123, draws=45, target_accept=0.9, maxdepth=7,
                      adaptation="low_rank", mass_matrix_gamma=1e-3)
    assert s.nutpie_kwargs(16)["mass_matrix_gamma"] == NUTPIE_GAMMA
    assert SamplerSettings(mass_matrix_gamma=0.02).nutpie_kwargs(16)["mass_matrix_gamma"] == 0.02
    assert "mass_matrix_gamma" not in SamplerSettings(adaptation="diag").nutpie_kwargs(134)
