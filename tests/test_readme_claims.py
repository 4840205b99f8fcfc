"""Claims of the README and the documentation pages (docs/) backed by tests: each test reads
the number the text states and checks it against the code, a study file or another test's
constants, so that it fails when the claim becomes false (or when the text is edited away
from what the code does).  The README's detailed sections moved to docs/, so "README" below
means the README and those pages together.

Each test is fast (well under 5 s): synthetic tables, stubs and tiny exact-backend models,
never MCMC.  Names that other modules may move (sbc.study.SamplerSettings,
sbc.plan.SearchSettings, ...) are imported inside the tests.
"""

from __future__ import annotations

import inspect
import json
import re
import tomllib
from collections import OrderedDict
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from support import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def documentation() -> str:
    """The README and every documentation page, one after the other."""
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    return "\n\n".join(p.read_text(encoding="utf-8") for p in pages
                       if "build" not in p.relative_to(ROOT).parts)


def readme() -> str:
    """README and documentation text with every run of whitespace (line breaks included)
    made one space."""
    return " ".join(documentation().split())


def stated(pattern: str, text: str | None = None) -> tuple[str, ...]:
    """The groups of ``pattern`` in the (whitespace-normalized) README; fails when the
    sentence is gone, so a reworded claim is noticed instead of silently untested."""
    match = re.search(pattern, readme() if text is None else text)
    assert match, f"README no longer states the claim matched by {pattern!r}"
    return match.groups()


def readme_toml_block(after: str) -> dict:
    """The first ```toml block of the documentation after the heading ``after``, parsed."""
    text = documentation()
    assert after in text, after
    block = re.search(r"```toml\n(.*?)```", text.split(after, 1)[1], re.S)
    assert block, f"no toml block after {after!r}"
    return tomllib.loads(block.group(1))


# --------------------------------------------------------------------------------------
# 1. the engine's false-alarm test
# --------------------------------------------------------------------------------------


def test_readme_false_alarm_study_count_is_the_tests():
    """README: "A fast test runs 600 calibrated synthetic studies through the engine and
    checks that the false-fail rate sits at the stated 5 %" (tests/test_calibration.py)."""
    import test_calibration

    n, alpha = stated(r"A fast test runs (\d+) calibrated synthetic studies through the engine "
                      r"and checks that the false-fail rate sits at the stated (\d+) %")
    assert int(n) == test_calibration.N_STUDIES
    from sbc.verdicts import ALPHA

    assert float(alpha) / 100 == ALPHA


# --------------------------------------------------------------------------------------
# 2. the validation suite's flagship bugs
# --------------------------------------------------------------------------------------

# README phrase -> name of the Bug in tests/validation/test_validation.py
FLAGSHIP_PROSE = {
    "a fitter that mislabels two cell lines": "fitter mislabels two cell lines",
    "a fitter whose gene-sd prior has another scale": "gene sd prior rate 2 instead of 0.5",
    "a wrong prior mean on the intercept": "intercept prior mean +1 instead of -1",
}


def test_readme_flagship_bug_detection_bounds_are_what_the_validation_suite_asserts(
        monkeypatch):
    """README: "on the flagship `crispr_screen`, fitted by nutpie at the default settings, a
    fitter that mislabels two cell lines and a fitter whose gene-sd prior has another scale
    (each must fail within 50 simulations) and a wrong prior mean on the intercept (a weak
    bug: it must fail somewhere in its 25-400 schedule, see the table)"."""
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "validation"))
    from test_validation import BUGS

    within, limit, weak, lo, hi = stated(
        r"on the flagship `crispr_screen`, fitted by nutpie at the default settings, (.*?) "
        r"\(each must fail within (\d+) simulations\) and (.*?) \(a weak bug: it must fail "
        r"somewhere in its (\d+)-(\d+) schedule, see the table\)")
    bugs = {b.name: b for b in BUGS}
    strict = [FLAGSHIP_PROSE[p] for p in re.split(r", | and ", within)]
    weak_bug = bugs[FLAGSHIP_PROSE[weak]]
    # the prose names every flagship (nutpie) bug of the suite, each once
    flagship = {b.name for b in BUGS if b.sampler == "nutpie"}
    assert sorted([*strict, weak_bug.name]) == sorted(flagship)
    for name in strict:
        tolerance = bugs[name].tolerance
        assert None not in tolerance and all(25 <= n <= int(limit) for n in tolerance), \
            (name, tolerance)
        assert max(tolerance) == int(limit), (name, tolerance)
    # "anywhere in its 25-400 schedule": every n of the schedule is accepted
    assert weak_bug.tolerance == weak_bug.schedule
    assert (weak_bug.schedule[0], weak_bug.schedule[-1]) == (int(lo), int(hi))


# --------------------------------------------------------------------------------------
# 3. verdict thresholds, at and just past each boundary
# --------------------------------------------------------------------------------------

TWO = {"a": (1, 1.0, 0.0), "b": (1, 1.0, 0.0)}  # two exact scalars (synthetic_tables spec)


def _verdict(n_reps: int, seed: int = 2, **kwargs):
    from test_calibration import synthetic_tables

    from sbc.calibration import calibrate

    reps, params = synthetic_tables(n_reps, TWO, seed=seed, **kwargs)
    verdicts = calibrate(reps, params).verdicts
    assert len(verdicts) == 1
    return next(iter(verdicts.values()))


@pytest.mark.parametrize("past", [False, True], ids=["at", "past"])
def test_readme_flagged_share_above_which_a_pass_has_warnings(past):
    """README: "A pass is qualified ... when more than 10 % of fits were flagged by the
    sampler ... (**pass, with warnings**)"."""
    from sbc.verdicts import MAX_FLAGGED

    pct, _ = stated(r"more than (\d+) % of fits were flagged by the sampler or more than "
                    r"(\d+) % failed \(\*\*pass, with warnings\*\*\)")
    assert MAX_FLAGGED == int(pct) / 100
    n = 200
    flagged = np.arange(n) < n * int(pct) // 100 + past  # exactly 10 % of the fits, or one more
    verdict = _verdict(n, flagged=flagged)
    assert verdict.status == "pass", verdict.reason
    assert ("flagged fits" in verdict.warnings) is past, verdict.warnings
    assert verdict.label == ("pass, with warnings" if past else "pass")


@pytest.mark.parametrize("past", [False, True], ids=["at", "past"])
def test_readme_failed_share_above_which_a_pass_has_warnings(past):
    """README: "... or more than 5 % failed (**pass, with warnings**)"."""
    from sbc.verdicts import MAX_FAILED

    _, pct = stated(r"more than (\d+) % of fits were flagged by the sampler or more than "
                    r"(\d+) % failed \(\*\*pass, with warnings\*\*\)")
    assert MAX_FAILED == int(pct) / 100
    n = 200
    failed = set(range(n * int(pct) // 100 + past))  # exactly 5 % of the fits, or one more
    verdict = _verdict(n, failed=failed)
    assert verdict.status == "pass", verdict.reason
    assert ("failed fits" in verdict.warnings) is past, verdict.warnings
    assert verdict.label == ("pass, with warnings" if past else "pass")


@pytest.mark.parametrize("n_ranked,low", [
    (50, False),   # every fit ranks 50 draws: at the boundary
    (49, True),    # one fewer
    # the median decides, not the minimum: 50 fits with 10 draws, 51 with 50
    (np.where(np.arange(101) < 50, 10, 50), False),
    (np.where(np.arange(101) < 51, 10, 50), True),
], ids=["at", "past", "median-at", "median-past"])
def test_readme_ranked_draws_below_which_a_pass_is_low_resolution(n_ranked, low):
    """README: "fewer than 50 near-independent draws were ranked per fit (median; *low
    resolution*: coarse ranks can hide a miscalibrated sampler)"."""
    from sbc.verdicts import MIN_RANKED

    (limit,) = stated(r"fewer than (\d+) near-independent draws were ranked per fit "
                      r"\(median; \*low resolution\*")
    assert MIN_RANKED == int(limit)
    n = len(n_ranked) if np.ndim(n_ranked) else 200
    verdict = _verdict(n, n_ranked=n_ranked)
    assert verdict.status == "pass", verdict.reason
    assert ("low resolution" in verdict.warnings) is low, verdict.warnings


@pytest.mark.parametrize("past", [False, True], ids=["at", "past"])
def test_readme_power_below_which_a_pass_has_low_power(past, monkeypatch):
    """README: "the probability of detecting a shift of one scalar by half a posterior sd
    (computed for this number of fits and this family) is below 0.8 (**pass, low power**;
    the power is stated in every pass)"."""
    import sbc.stats
    from sbc.verdicts import MIN_POWER, POWER_SHIFT

    (limit,) = stated(r"the probability of detecting a shift of one scalar by half a posterior "
                      r"sd \(computed for this number of fits and this family\) is below "
                      r"([\d.]+) \(\*\*pass, low power\*\*; the power is stated in every pass\)")
    assert (MIN_POWER, POWER_SHIFT) == (float(limit), 0.5)
    power = np.nextafter(MIN_POWER, 0.0) if past else MIN_POWER
    shifts = []

    def stated_power(n, shift, *args, **kwargs):
        shifts.append(shift)
        return power
    monkeypatch.setattr(sbc.stats, "shift_power", stated_power)
    verdict = _verdict(200)
    assert shifts == [0.5]  # half a posterior sd
    assert verdict.status == "pass", verdict.reason
    assert ("low power" in verdict.warnings) is past, verdict.warnings
    assert verdict.label == ("pass, low power" if past else "pass")
    assert verdict.power == power and f"{power:.2f}" in verdict.reason  # stated in every pass


@pytest.mark.parametrize("n_fits,n_failed,inconclusive", [
    (10, 0, False), (9, 0, True),   # ten successful fits are tested, nine are not
    (12, 2, False), (12, 3, True),  # successful fits count, not fits
], ids=["at", "past", "failed-at", "failed-past"])
def test_readme_successful_fits_below_which_a_verdict_is_inconclusive(n_fits, n_failed,
                                                                      inconclusive):
    """README: "**inconclusive**: fewer than 10 successful fits, nothing to test"."""
    from sbc.verdicts import MIN_FITS

    (limit,) = stated(r"\*\*inconclusive\*\*: fewer than (\d+) successful fits, nothing to test")
    assert MIN_FITS == int(limit)
    verdict = _verdict(n_fits, failed=set(range(n_failed)))
    assert (verdict.status == "inconclusive") is inconclusive, verdict.reason


# --------------------------------------------------------------------------------------
# 4. fit flags
# --------------------------------------------------------------------------------------

FLAG_CLAIM = r"\(divergences, ESS below (\d+), R-hat above ([\d.]+), tree depth reached\)"


def _assess(monkeypatch, *, ess=500.0, rhat=1.0, treedepth_hits=0, n_divergent=0):
    """sbc.replicate.assess of a 2-chain fit whose ESS and R-hat are ``ess`` and ``rhat``."""
    import sbc.replicate
    from sbc.sampling import Fit

    monkeypatch.setattr(sbc.replicate, "convergence", lambda matrix: {
        "ess_bulk": np.full(matrix.shape[2], ess), "ess_tail": np.full(matrix.shape[2], ess),
        "rhat": np.full(matrix.shape[2], rhat)})
    diverging = np.zeros((2, 400), bool)
    diverging[0, :n_divergent] = True
    fit = Fit(draws={"x": np.random.default_rng(0).normal(size=(2, 400))}, diverging=diverging,
              treedepth_hits=treedepth_hits)
    return sbc.replicate.assess(fit, ["x"], "auto").flags


@pytest.mark.parametrize("ess,low", [(100.0, False), (99.0, True)])
def test_readme_ess_below_which_a_fit_is_flagged(ess, low, monkeypatch):
    """README: a fit with sampler warnings ("(divergences, ESS below 100, R-hat above 1.01,
    tree depth reached)") is rescued: ESS 100 is not flagged, 99 is."""
    from sbc.diagnostics import ESS_MIN
    from sbc.replicate import low_ess

    limit, _ = stated(FLAG_CLAIM)
    assert ESS_MIN == int(limit)
    assert low_ess(ess, 1, "auto") is low
    flags = _assess(monkeypatch, ess=ess)
    assert flags["low_ess"] is low and flags["flagged"] is low and flags["slow_mixing"] is low


@pytest.mark.parametrize("rhat,high", [(1.009, False), (1.01, False), (1.011, True)])
def test_readme_rhat_above_which_a_fit_is_flagged(rhat, high, monkeypatch):
    """README: "(divergences, ESS below 100, R-hat above 1.01, tree depth reached)"."""
    from sbc.diagnostics import RHAT_MAX

    _, limit = stated(FLAG_CLAIM)
    assert RHAT_MAX == float(limit)
    flags = _assess(monkeypatch, rhat=rhat)
    assert flags["high_rhat"] is high and flags["flagged"] is high


@pytest.mark.parametrize("hits,flagged", [(0, False), (1, True)])
def test_readme_tree_depth_reached_flags_a_fit(hits, flagged, monkeypatch):
    """README: "(divergences, ESS below 100, R-hat above 1.01, tree depth reached)"."""
    stated(FLAG_CLAIM)
    flags = _assess(monkeypatch, treedepth_hits=hits)
    assert flags["flagged"] is flagged and flags["n_treedepth"] == hits
    # and a divergence alone flags a fit too
    assert _assess(monkeypatch, n_divergent=1)["flagged"]


# --------------------------------------------------------------------------------------
# 5. the rescue: at most twice, in the RESCUE forms in order, or once in its own form
# --------------------------------------------------------------------------------------

RESCUE_MODEL = '''
import numpy as np
import pymc as pm

{rescue}


def build(data):
    gene = data["gene"].cat.codes.to_numpy()
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0, shape=len(data["gene"].cat.categories))
        pm.Normal("logfc", mu[gene], 0.5, observed=data["logfc"].to_numpy())
    return model


build_b = build_c = build_d = build  # the same model under other names


def exact_posterior(data, y, n_draws, rng):
    gene = data["gene"].cat.codes.to_numpy()
    n = len(data["gene"].cat.categories)
    precision = 1.0 + np.bincount(gene, minlength=n) / 0.25
    mean = np.bincount(gene, weights=y, minlength=n) / 0.25 / precision
    return {{"mu": rng.normal(mean, precision ** -0.5, size=(n_draws, n))}}
'''


def _rescued_records(tmp_path, monkeypatch, rescue: str, flag_attempts: int | None):
    """Records of one replicate run in this process (what ``workers=0`` runs), with every
    backend an exact posterior sampler that notes which builder form it fits, and the first
    ``flag_attempts`` assessments (None: all) forced to report divergences."""
    import sbc.replicate
    from sbc.design import Design
    from sbc.sampling import ExactBackend
    from sbc.replicate import BatchTask, run_batch
    from sbc.spec import resolve_model
    from sbc.study import SamplerSettings

    forms = []

    class NotingBackend:  # stands in for nutpie: exact draws, settings kept, form noted
        def __init__(self, spec, settings, data=None):
            self.spec, self.settings, self.data = spec, settings, data
            self.exact = ExactBackend(spec, replace(settings, name="exact"), data)

        def with_settings(self, settings):
            return NotingBackend(self.spec, settings, self.data)

        def fit(self, y, seed):
            forms.append(self.spec.model.function)
            return self.exact.fit(y, seed)

    real = sbc.replicate.assess
    seen = {"n": 0}

    def flagged(fit, names, thin):
        checked = real(fit, names, thin)
        seen["n"] += 1
        if flag_attempts is None or seen["n"] <= flag_attempts:
            return replace(checked, flags={**checked.flags, "flagged": True,
                                           "slow_mixing": True, "n_divergent": 1})
        return checked

    monkeypatch.setattr(sbc.replicate, "make_backend", NotingBackend)
    monkeypatch.setattr(sbc.replicate, "assess", flagged)
    monkeypatch.setattr(sbc.replicate, "_CACHE", OrderedDict())

    def no_loglik(spec):  # the log-likelihood quantities play no part in the rescue
        raise RuntimeError("not needed here")
    monkeypatch.setattr(sbc.replicate, "LoglikEvaluator", no_loglik)
    path = tmp_path / "forms.py"
    path.write_text(RESCUE_MODEL.format(rescue=rescue))
    settings = SamplerSettings(name="nutpie", tune=100, draws=100)
    task = BatchTask(resolve_model(str(path)), None, Design(2, 2, 1), settings, "auto", 3, (0,))
    (record,) = run_batch(task)
    assert record["status"] == "ok", record.get("error")
    return record, forms


def test_readme_rescue_refits_at_most_twice_in_the_rescue_forms_in_order(tmp_path, monkeypatch):
    """README: "the same data are refitted, at most twice, in the model's `RESCUE` forms (or,
    without any, once in its own form), with settings that only grow stronger ... (after
    divergences twice the tuning and target_accept 0.99 ...)" and "Every attempt is kept in
    the record (`attempts`, with its flags, settings and time); the last is ranked"."""
    from sbc.replicate import MAX_RESCUES

    most, _ = stated(r"the same data are refitted, at most (\w+), in the model's `RESCUE` forms "
                     r"\(or, without any, (\w+) in its own form\)")
    assert MAX_RESCUES == {"once": 1, "twice": 2}[most]
    # three RESCUE forms and a fit flagged on every attempt: only the first two are used
    record, forms = _rescued_records(tmp_path, monkeypatch,
                                     'RESCUE = ("build_b", "build_c", "build_d")', None)
    assert forms == ["build", "build_b", "build_c"]
    attempts = record["attempts"]
    assert [a["build"] for a in attempts] == forms
    assert all(a["flagged"] and a["n_divergent"] == 1 for a in attempts)
    assert [a["tune"] for a in attempts] == [100, 200, 400]  # twice the tuning, each time
    assert attempts[1]["target_accept"] == 0.99
    ta = [a["target_accept"] for a in attempts]
    assert ta == sorted(ta) and ta[0] == 0.9  # settings only grow stronger
    assert record["rescued"] and record["n_draws"] == attempts[-1]["draws"]  # the last is ranked


def test_readme_rescue_stops_at_the_first_clean_refit(tmp_path, monkeypatch):
    """README: "at most twice": a refit without warnings ends the rescue."""
    record, forms = _rescued_records(tmp_path, monkeypatch, 'RESCUE = ("build_b", "build_c")', 1)
    assert forms == ["build", "build_b"]
    assert [a["flagged"] for a in record["attempts"]] == [True, False]


def test_readme_rescue_without_rescue_forms_refits_once_in_its_own_form(tmp_path, monkeypatch):
    """README: "(or, without any, once in its own form)"."""
    _, once = stated(r"the same data are refitted, at most (\w+), in the model's `RESCUE` forms "
                     r"\(or, without any, (\w+) in its own form\)")
    record, forms = _rescued_records(tmp_path, monkeypatch, "", None)
    assert forms == ["build"] * (1 + {"once": 1, "twice": 2}[once])
    assert [a["build"] for a in record["attempts"]] == forms


# --------------------------------------------------------------------------------------
# 6. documented defaults
# --------------------------------------------------------------------------------------


def test_readme_study_file_sampler_and_limits_defaults_are_the_codes():
    """README study file: "[sampler]  # defaults shown" (name "nutpie", chains 1, tune 300,
    draws 500, target_accept 0.9, max_treedepth 10, adaptation "low_rank", rescue true;
    timeout "optional") and "[limits]  # ... (defaults shown)"."""
    from sbc.study import LIMITS, SamplerSettings

    text = documentation()
    assert re.search(r"^\[sampler\] +# defaults shown", text, re.M)
    assert re.search(r"^\[limits\] .*\(defaults shown\)", text, re.M)
    study = readme_toml_block("# Writing a study file\n")
    sampler = dict(study["sampler"])
    assert re.search(r"^timeout = \d+ +# optional", text, re.M)
    sampler.pop("timeout")  # an example value: the default is no limit
    if sampler.get("mass_matrix_gamma") == "auto":  # the study file's "auto" is the code's None
        sampler["mass_matrix_gamma"] = None
    defaults = SamplerSettings()
    assert defaults.timeout is None
    assert sampler == {k: getattr(defaults, k) for k in sampler}
    assert set(sampler) | {"timeout"} == set(vars(defaults))  # every setting documented
    assert study["limits"] == LIMITS


def test_readme_default_sampler_settings_in_prose_are_the_codes():
    """README: "Default sampler settings (nutpie, one chain, 300 tuning + 500 draws,
    target_accept 0.9, low-rank mass matrix)"."""
    from sbc.study import SamplerSettings

    name, chains, tune, draws, ta, adaptation = stated(
        r"Default sampler settings \((\w+), (\w+) chain, (\d+) tuning \+ (\d+) draws, "
        r"target_accept ([\d.]+), ([\w-]+) mass matrix\)")
    d = SamplerSettings()
    assert (d.name, d.chains, d.tune, d.draws, d.target_accept, d.adaptation) == (
        name, {"one": 1}[chains], int(tune), int(draws), float(ta), adaptation.replace("-", "_"))


def test_readme_plan_search_defaults_are_the_codes():
    """README plan file: "[search]  # defaults shown" (strategy "adaptive", batch 20,
    max_simulations 100, confidence 0.95, runners_up 2, calibration_simulations 40, alpha
    0.01, max_minutes_per_design 20, max_flagged 0.1)."""
    from sbc.plan import SearchSettings

    assert re.search(r"^\[search\] +# defaults shown", documentation(), re.M)
    search = readme_toml_block("## The plan file\n")["search"]
    defaults = SearchSettings()
    assert search == {k: getattr(defaults, k) for k in search}
    assert set(search) == set(vars(defaults))  # every setting documented


# --------------------------------------------------------------------------------------
# 7. bad input cases
# --------------------------------------------------------------------------------------


def test_readme_bad_input_case_count():
    """README: "a bad study, plan, model or data file | one message ... nothing written:
    `tests/test_bad_input.py` holds over 90 such cases" (its parametrized bad study and
    bad plan files)."""
    import test_bad_input

    (n,) = stated(r"`tests/test_bad_input.py` holds over (\d+) such cases")
    assert len(test_bad_input.CASES) + len(test_bad_input.PLAN_CASES) > int(n)


# --------------------------------------------------------------------------------------
# 8. the reference studies
# --------------------------------------------------------------------------------------

REFERENCE = (r"The reference study \(`make study`: both model forms, (\w+) designs, (\d+) "
             r"simulations each")


def test_readme_reference_study_is_studies_crispr_seed():
    """README: "The reference study (`make study`: both model forms, three designs, 250
    simulations each, ...)" and "0 of its 750 fits" (the seed form's)."""
    from sbc.study import load_study

    designs, sims = stated(REFERENCE)
    study = load_study(ROOT / "studies" / "crispr_seed.toml")
    assert study.models == ("crispr_screen", "crispr_seed")  # both model forms
    assert len(study.designs) == {"three": 3}[designs]
    assert study.simulations == int(sims)
    assert [d.label for d in study.designs] == ["10x3x3", "20x5x3", "30x10x2"]
    (fits,) = stated(r"\d+ of its (\d+) fits got stuck")
    assert int(fits) == len(study.designs) * study.simulations
    assert "make study" in readme() and "studies/crispr_seed.toml" in \
        (ROOT / "Makefile").read_text(encoding="utf-8")


def test_readme_strong_reference_study_settings():
    """README: "`studies/crispr_seed_strong.toml` reruns the study with the settings the report
    recommends for the seed form (tune 2000, draws 3000, target_accept 0.95, max_treedepth
    12)"."""
    from sbc.study import load_study

    tune, draws, ta, depth = stated(
        r"`studies/crispr_seed_strong.toml` reruns the study with the settings the report "
        r"recommends for the seed form \(tune (\d+), draws (\d+), target_accept ([\d.]+), "
        r"max_treedepth (\d+)\)")
    strong = load_study(ROOT / "studies" / "crispr_seed_strong.toml")
    s = strong.sampler
    assert (s.tune, s.draws, s.target_accept, s.max_treedepth) == (
        int(tune), int(draws), float(ta), int(depth))
    base = load_study(ROOT / "studies" / "crispr_seed.toml")
    assert (strong.models, strong.designs) == (base.models, base.designs)  # the same study


# The reference study's store as committed: tests/reference/crispr_seed holds the manifest,
# the replicates table and the gzipped report of the `make study` run the README quotes
# (about 1 MB; tools/reference_store.py copies them from reports/crispr_seed), so these
# claims are checked on a fresh clone and in CI, where no study has run.
REFERENCE_STORE = ROOT / "tests" / "reference" / "crispr_seed"
REFRESH = ("run `make study`, then `python tools/reference_store.py`, and update the README's "
           "numbers and their measurement date")


def reference_manifest() -> dict:
    """study.json of the committed reference store, checked to be a store of the current
    studies/crispr_seed.toml with the current model files."""
    from sbc.sampling import stored_sampler
    from sbc.spec import resolve_model
    from sbc.study import load_study

    manifest = json.loads((REFERENCE_STORE / "study.json").read_text(encoding="utf-8"))
    study = load_study(ROOT / "studies" / "crispr_seed.toml")
    stored, current = dict(manifest["study"]), study.to_dict()
    stored["sampler"] = stored_sampler(stored["sampler"])  # settings added since: as used
    differ = [k for k in ("models", "designs", "simulations", "seed", "sampler", "thin",
                          "simulate_model") if stored.get(k) != current[k]]
    differ += [f"model {m}" for m in study.models
               if manifest["model_digests"].get(m) != resolve_model(m, study.base_dir).digest]
    assert not differ, (f"{REFERENCE_STORE.relative_to(ROOT)} is not a store of the current "
                        f"studies/crispr_seed.toml (changed since it was written: "
                        f"{', '.join(differ)}): {REFRESH}")
    return manifest


def test_readme_reference_study_percentages_match_the_reference_store():
    """README (measured on 2026-12-05 with `make study`): "the first attempt is flagged in
    42 / 22 / 15 % of `crispr_screen` fits ..., and 93 / 98 / 97 % of fits end clean", the
    seed form "ends 73 / 82 / 88 % clean", "0 of its 750 fits got stuck at a point".
    Counted in the committed reference store's replicates table, by sbc's own flag rule."""
    from sbc.calibration import flagged_mask

    text = readme()
    manifest = reference_manifest()
    (when,) = stated(r"measured on (\d{4}-\d{2}-\d{2}) with `make study`", text)
    assert manifest["created"][:10] == when, \
        f"the README's percentages were measured on {when}, the reference store " \
        f"on {manifest['created'][:10]}: {REFRESH}"
    reps = pd.read_parquet(REFERENCE_STORE / "replicates.parquet")
    designs = manifest["study"]["designs"]

    def pcts(pattern):
        return [int(x) for x in stated(pattern, text)]
    first = pcts(r"the first attempt is flagged in (\d+) / (\d+) / (\d+) % of `crispr_screen`")
    clean = pcts(r"and (\d+) / (\d+) / (\d+) % of fits end clean")
    seed_clean = pcts(r"ends (\d+) / (\d+) / (\d+) % clean")
    for model, rescued, ended in (("crispr_screen", first, clean),
                                  ("crispr_seed", None, seed_clean)):
        for j, design in enumerate(designs):
            block = reps[(reps["model"] == model) & (reps["design"] == design)]
            assert len(block) == manifest["study"]["simulations"], (model, design)
            ok = block[block["status"] == "ok"]
            if rescued is not None:
                assert round(100 * block["rescued"].astype(bool).mean()) == rescued[j], \
                    (model, design, "first attempt flagged")
            assert round(100 * (~flagged_mask(ok)).mean()) == ended[j], (model, design, "clean")
    seed = reps[reps["model"] == "crispr_seed"]
    (stuck,) = stated(r"(\d+) of its \d+ fits got stuck at a point after the rescue", text)
    assert seed["flag_degenerate"].astype(bool).sum() == int(stuck)
    assert len(seed) == int(stated(r"\d+ of its (\d+) fits got stuck", text)[0])


def test_readme_reference_report_size_matches_the_reference_store():
    """README: "the reference study's report (6 model x design sections, 46 figures) is about
    1.4 MB" (within 0.1 MB): the committed reference store's report, one section per model
    and design of its replicates table."""
    import gzip

    sections, figures, size = stated(r"report \((\d+) model x design sections, (\d+) figures\) "
                                     r"is about ([0-9.]+) MB", readme())
    manifest = reference_manifest()
    html = gzip.decompress((REFERENCE_STORE / "report.html.gz").read_bytes())
    text = html.decode("utf-8")
    reps = pd.read_parquet(REFERENCE_STORE / "replicates.parquet", columns=["model", "design"])
    cells = set(reps.itertuples(index=False, name=None))
    shown = re.findall(r"<h3[^>]*>([\w.-]+) &middot; design (\w+)</h3>", text)
    assert len(shown) == len(set(shown)) == int(sections)
    assert set(shown) == cells
    assert len(cells) == len(manifest["study"]["models"]) * len(manifest["study"]["designs"])
    assert text.count("<img ") == int(figures)
    assert abs(len(html) / 1e6 - float(size)) <= 0.1, f"the report is {len(html) / 1e6:.2f} MB"


def test_a_local_make_study_store_still_writes_a_report_of_the_stated_size(tmp_path):
    """The report this code writes from a copy of reports/crispr_seed has the figure count
    and size (within 0.1 MB) the README states.  The 25 MB store is not committed: this runs
    where `make study` has written it (the claim itself is checked in CI, above, on the
    committed reference report)."""
    import shutil

    from sbc.results import Results

    sections, figures, size = stated(r"report \((\d+) model x design sections, (\d+) figures\) "
                                     r"is about ([0-9.]+) MB", readme())
    store = ROOT / "reports" / "crispr_seed"
    if not (store / "study.json").exists() or not (store / "replicates").is_dir():
        pytest.skip("reports/crispr_seed (written by `make study`, ignored by git) is absent; "
                    "the README's report size is checked on tests/reference/crispr_seed")
    copy = tmp_path / "store"
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns("*.lock"))
    results = Results(copy)
    if len(results.verdicts) != int(sections):
        pytest.skip("reports/crispr_seed was written by another version of the study")
    html = results.write_report().read_text(encoding="utf-8")
    assert html.count("<img ") == int(figures)
    assert abs(len(html.encode()) / 1e6 - float(size)) <= 0.1


# --------------------------------------------------------------------------------------
# 9. the compiled-model cache
# --------------------------------------------------------------------------------------


def test_readme_each_worker_keeps_at_most_8_compiled_models_lru(monkeypatch):
    """README: "Each worker compiles each (model, design) once and keeps at most 8 compiled
    models (least recently used dropped)"."""
    import sbc.replicate as replicate
    from sbc.design import Design
    from sbc.replicate import BatchTask, prepare
    from sbc.spec import resolve_model
    from sbc.study import SamplerSettings

    (n,) = stated(r"keeps at most (\d+) compiled models \(least recently used dropped\)")
    n = int(n)
    assert replicate._CACHE_SIZE == n
    builds = []

    def no_loglik(spec):
        raise RuntimeError("not needed here")
    monkeypatch.setattr(replicate, "_CACHE", OrderedDict())
    monkeypatch.setattr(replicate, "make_spec", lambda model, data: SimpleNamespace(
        parameters=("mu",), generative=None))
    monkeypatch.setattr(replicate, "Simulator", lambda spec: SimpleNamespace(names=("mu",)))
    monkeypatch.setattr(replicate, "make_backend", lambda spec, settings, data: builds.append(
        len(data)) or object())
    monkeypatch.setattr(replicate, "LoglikEvaluator", no_loglik)
    monkeypatch.setattr(replicate, "_rescue_specs", lambda task, data, ranked: [])
    model = resolve_model(str(ROOT / "tests" / "models" / "normal_mean.py"))

    def task(cells):
        return BatchTask(model, None, Design(cells, 1, 1), SamplerSettings(name="exact"), 1, 0,
                         (0,))

    def cached():
        return [key[2].n_cell_lines for key in replicate._CACHE]

    first = {c: prepare(task(c)) for c in range(1, n + 1)}
    assert builds == list(range(1, n + 1)) and cached() == list(range(1, n + 1))
    assert prepare(task(1)) is first[1] and len(builds) == n  # compiled once, reused
    prepare(task(n + 1))  # one more: the least recently used (2, not 1) is dropped
    assert len(replicate._CACHE) == n and cached() == [*range(3, n + 1), 1, n + 1]
    assert prepare(task(1)) is first[1] and len(builds) == n + 1
    prepare(task(2))  # dropped before, so compiled again; now 3 goes
    assert builds[-1] == 2 and len(builds) == n + 2
    assert len(replicate._CACHE) == n and cached() == [*range(4, n + 1), n + 1, 1, 2]


# --------------------------------------------------------------------------------------
# 10. hypothesis profiles
# --------------------------------------------------------------------------------------


def test_readme_hypothesis_profiles():
    """README: "profiles `dev` (10 examples) and `ci` (25, derandomized)"."""
    from hypothesis import settings

    import sbc.testing.strategies  # noqa: F401  (registers the profiles)

    dev, ci = stated(r"profiles `dev` \((\d+) examples\) and `ci` \((\d+), derandomized\)")
    assert settings.get_profile("dev").max_examples == int(dev)
    assert not settings.get_profile("dev").derandomize
    assert settings.get_profile("ci").max_examples == int(ci)
    assert settings.get_profile("ci").derandomize


# --------------------------------------------------------------------------------------
# 11. failure codes
# --------------------------------------------------------------------------------------

FAILING_MODEL = '''
import numpy as np
import pymc as pm


def build(data):
    gene = data["gene"].cat.codes.to_numpy()
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0, shape=len(data["gene"].cat.categories))
        pm.Normal("logfc", mu[gene] + {offset}, 0.5, observed=data["logfc"].to_numpy())
    return model


def exact_posterior(data, y, n_draws, rng):
    n = len(data["gene"].cat.categories) + {extra}
    return {{"mu": rng.normal(size=(n_draws, n))}}
'''


def test_readme_failure_codes_are_the_records():
    """README: failed fits carry "a short reason code `failure`: `nonfinite`,
    `timeout`, `worker_died`, `exception`, `simulation`, `shape_mismatch` or `prepare`"."""
    from sbc.record import FAILURE_CODES

    (codes,) = stated(r"a short reason code `failure`: ((?:`\w+`,? )+or `\w+`)\)")
    assert sorted(re.findall(r"`(\w+)`", codes)) == sorted(FAILURE_CODES)


@pytest.mark.parametrize("offset,extra,code,error", [
    ("np.inf", 0, "simulation", "simulated data contain non-finite values"),
    ("0.0", 1, "shape_mismatch", "truth of 'mu' has shape (2,) but the fitter's 'mu' has draws "
                                 "of shape (3,)"),
])
def test_readme_failure_codes_simulation_and_shape_mismatch(tmp_path, offset, extra, code, error):
    """README: failed fits are kept as data with `failure` ... `simulation` (the simulated
    data are not finite), `shape_mismatch` (truths and draws of a parameter differ in shape),
    and never stop the study (every replicate of the batch gets its record)."""
    from sbc.design import Design
    from sbc.replicate import BatchTask, run_batch
    from sbc.spec import resolve_model
    from sbc.study import SamplerSettings

    assert f"`{code}`" in readme()
    path = tmp_path / f"{code}.py"
    path.write_text(FAILING_MODEL.format(offset=offset, extra=extra))
    task = BatchTask(resolve_model(str(path)), None, Design(2, 2, 1),
                     SamplerSettings(name="exact", draws=50), 1, 5, (0, 1))
    records = run_batch(task)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert all(r["failure"] == code and error in r["error"] for r in records), records


# --------------------------------------------------------------------------------------
# 12. the seed fit
# --------------------------------------------------------------------------------------


def test_readme_seed_fit_is_4_chains_with_seed_103():
    """README: "`sbc fit-seed` reproduces the seed notebook's single analysis (its data,
    simulated with seed 103 and the notebook's true values, then a 4-chain fit)"."""
    from sbc.cli import build_parser
    from sbc.notebook import SEED, fit_seed, seed_posterior

    seed, chains = stated(r"simulated with seed (\d+) and the notebook's true values, then a "
                          r"(\d+)-chain fit")
    assert SEED == int(seed)
    for function in (seed_posterior, fit_seed):
        assert inspect.signature(function).parameters["chains"].default == int(chains)
    assert build_parser().parse_args(["fit-seed"]).chains == int(chains)


# --------------------------------------------------------------------------------------
# 13. plan_screen.toml's comment agrees with the README
# --------------------------------------------------------------------------------------


def test_plan_screen_comment_states_the_readmes_scalars_per_fit():
    """studies/plan_screen.toml: "with ~230 scalars per fit"; README: "with about 230 ranked
    scalars per fit" (the README number is checked against the model by
    tests/test_plan_claims.py::test_readme_scalars_per_fit_of_plan_screen)."""
    (readme_n,) = stated(r"with about (\d+) ranked scalars per fit")
    toml = (ROOT / "studies" / "plan_screen.toml").read_text(encoding="utf-8")
    (comment_n,) = stated(r"with ~(\d+) scalars per fit", toml)
    assert comment_n == readme_n


# --------------------------------------------------------------------------------------
# 14. the plan's gene classes
# --------------------------------------------------------------------------------------


def test_readme_plan_screen_gene_classes():
    """README: "a focused library of 100 genes (50 common-essential controls with Chronos
    effects near -1, 50 non-essential near 0)" (models/crispr_plan.py)."""
    import pymc as pm

    from sbc.design import design_frame
    from sbc.plan import load_plan
    from sbc.spec import load_module, resolve_model

    n_genes, n_ess, ess_mean, n_non, non_mean = stated(
        r"a focused library of (\d+) genes \((\d+) common-essential controls with Chronos "
        r"effects near (-?\d+), (\d+) non-essential near (-?\d+)\)")
    plan = load_plan(ROOT / "studies" / "plan_screen.toml")
    assert plan.model == "crispr_plan" and plan.genes == (int(n_genes),)
    module = load_module(resolve_model("crispr_plan", base_dir=ROOT))
    data = design_frame(2, int(n_genes), 2)
    model = module.build(data)
    beta_g = pm.draw(model["beta_g"], draws=400, random_seed=1)  # prior draws, (400, genes)
    means = beta_g.mean(axis=0)
    essential = means < (float(ess_mean) + float(non_mean)) / 2
    assert essential.sum() == int(n_ess) and (~essential).sum() == int(n_non)
    assert essential[: int(n_ess)].all()  # the first half, as the model's docstring says
    assert abs(means[essential].mean() - float(ess_mean)) < 0.05
    assert abs(means[~essential].mean() - float(non_mean)) < 0.05
    # and every gene's prior mean is near its class's ("effects near -1 ... near 0")
    assert np.all(np.abs(means[essential] - float(ess_mean)) < 0.1)
    assert np.all(np.abs(means[~essential] - float(non_mean)) < 0.1)



def test_readme_real_screen_table_is_the_stored_check():
    """The README's table of `sbc check` on DepMap's neuroblastoma lines is the one
    benchmarks/real_check.py generated from its stored results (real_check.json)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("real_check", ROOT / "benchmarks" / "real_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = json.loads((ROOT / "benchmarks" / "real_check.json").read_text())
    assert " ".join(module.readme_block(results).split()) in readme()
    verdicts = {m: r["verdict"] for m, r in results[0]["models"].items()}
    assert verdicts["crispr_screen"] == "misfit"
