"""Generator and fitter parameters are paired by name and layout (or by [parameter_map]),
never element-misaligned; fits that did not move are ranked at their point and flagged."""

import json

import numpy as np
import pytest

from support import ROOT
from sbc.cli import main
from sbc.store import Store

FITTER = ROOT / "tests/models/normal_mean.py"  # mu: one mean per gene, exact posterior

# A generator like normal_mean, with dims; its per-gene mean is called NAME.
GENERATOR = """
import pymc as pm

def build(data):
    gene = data["gene"].cat.codes.to_numpy()
    with pm.Model(coords={{"gene": list(data["gene"].cat.categories)}}) as model:
        mu = pm.Normal("{name}", 0.0, 1.0, dims="gene")
        pm.Normal("logfc", mu[gene], 0.5, observed=data["logfc"].to_numpy())
    return model
"""

# A fitter whose "mu" is indexed by cell line, not gene: same name, other elements.
BY_CELL_LINE = """
import pymc as pm

def build(data):
    cell = data["cell_line"].cat.codes.to_numpy()
    with pm.Model(coords={"cell_line": list(data["cell_line"].cat.categories)}) as model:
        mu = pm.Normal("mu", 0.0, 1.0, dims="cell_line")
        pm.Normal("logfc", mu[cell], 0.5, observed=data["logfc"].to_numpy())
    return model


def exact_posterior(data, y, n_draws, rng):  # never reached: the study is refused first
    raise AssertionError("fitted despite the mismatch")
"""

STUDY = """
name = "pairing"
model = "{model}"
simulate_model = "{sim}"
seed = 11
simulations = {sims}
thin = 1
{designs}
[sampler]
name = "exact"
draws = 99
{extra}
"""

ONE_DESIGN = "[[designs]]\ncell_lines = 3\ngenes = 2\nreps = 2\n"


def study_file(tmp_path, *, model, sim, sims=6, designs=ONE_DESIGN, extra=""):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(model=model, sim=sim, sims=sims, designs=designs, extra=extra))
    return path


def write_model(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def run(path, out):
    return main(["run", str(path), "--out", str(out), "--workers", "0", "--no-report"])


def test_shape_mismatch_on_any_design_exits_2_listing_it_and_creates_no_store(tmp_path, capsys):
    sim = write_model(tmp_path, "gen.py", GENERATOR.format(name="mu"))
    fit = write_model(tmp_path, "by_cell.py", BY_CELL_LINE)
    # 3x2x2: shapes (2,) vs (3,); 2x2x2: same shape, but genes vs cell lines
    designs = ONE_DESIGN + "[[designs]]\ncell_lines = 2\ngenes = 2\nreps = 2\n"
    out = tmp_path / "out"
    rc = run(study_file(tmp_path, model=fit, sim=sim, designs=designs), out)
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    assert "'mu'" in err and "shape (2,)" in err and "shape (3,)" in err
    assert "3x2x2" in err and "2x2x2" in err  # every design is checked
    assert "g0" in err and "c0" in err  # the indices that differ
    assert "[parameter_map]" in err and "rename" in err
    assert not out.exists()


def test_declared_parameter_map_pairs_truths_with_draws_end_to_end(tmp_path, capsys):
    sim = write_model(tmp_path, "gen.py", GENERATOR.format(name="gene_effect"))
    out = tmp_path / "out"
    # without a map the two models share no parameter
    assert run(study_file(tmp_path, model=FITTER, sim=sim), out) == 2
    assert "share no parameter names" in capsys.readouterr().err
    assert not out.exists()

    path = study_file(tmp_path, model=FITTER, sim=sim,
                      extra='[parameter_map]\nmu = "gene_effect"\n')
    assert run(path, out) == 0
    reps, params = Store(out).tables()
    assert len(reps) == 6 and (reps["status"] == "ok").all()
    assert reps["failure"].isna().all()
    assert sorted(params.loc[params.kind == "parameter", "name"].unique()) == ["mu[0]", "mu[1]"]
    assert set(params.loc[params.kind == "quantity", "name"]) == {"loglik", "loglik_min"}
    record = json.loads(next(out.glob("replicates/*/*/r000000.json")).read_text())
    assert record["quantities_skipped"] is None
    # the truths are the generator's draws: re-simulate replicate 0 and compare
    from sbc.design import Design
    from sbc.seeding import replicate
    from sbc.simulate import Simulator
    from sbc.spec import make_spec, resolve_model

    design = Design(3, 2, 2)
    seed = replicate(11, "normal_mean", design.label, 0)
    truths, _ = Simulator(make_spec(resolve_model(str(sim)), design.frame())).draw(seed.spawn(3)[0])
    np.testing.assert_allclose(record["parameters"]["truth"], truths["gene_effect"])

    # the map is part of the stored study (and of its fingerprint, see below)
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["study"]["parameter_map"] == [["mu", "gene_effect"]]


@pytest.mark.parametrize("entry,expected", [
    ('mu = "nope"', ["'nope'", "no parameter of simulate_model", "gene_effect"]),
    ('nope = "gene_effect"', ["'nope'", "no parameter of model 'normal_mean'", "mu"]),
    ('mu = 3', ["parameter_map.mu", "must be the name"]),
])
def test_parameter_map_with_unknown_names_exits_2(tmp_path, capsys, entry, expected):
    sim = write_model(tmp_path, "gen.py", GENERATOR.format(name="gene_effect"))
    out = tmp_path / "out"
    rc = run(study_file(tmp_path, model=FITTER, sim=sim, extra=f"[parameter_map]\n{entry}\n"), out)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    for text in expected:
        assert text in err
    assert not out.exists()


def test_parameter_map_needs_a_simulate_model(tmp_path, capsys):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(model=FITTER, sim=FITTER, sims=2, designs=ONE_DESIGN,
                                 extra='[parameter_map]\nmu = "mu"\n')
                    .replace(f'simulate_model = "{FITTER}"\n', ""))
    assert run(path, tmp_path / "out") == 2
    assert "without simulate_model" in capsys.readouterr().err


def test_parameter_map_changes_the_fingerprint_only_when_given():
    from sbc.design import Design
    from sbc.study import Study

    base = Study(name="s", models=("a",), designs=(Design(2, 2, 2),), simulations=2, seed=1,
                 simulate_model="b")
    mapped = Study(name="s", models=("a",), designs=(Design(2, 2, 2),), simulations=2, seed=1,
                   simulate_model="b", parameter_map=(("mu", "gene_effect"),))
    assert base.fingerprint({}) != mapped.fingerprint({})
    assert "parameter_map" not in json.dumps(base.fingerprint({}))


def test_prepare_refuses_pairs_of_different_shape(tmp_path):
    """Defensive: callers that skip the pipeline's check (e.g. sbc plan) still never pair
    truths with draws of another layout: every replicate fails with the reason."""
    from sbc.design import Design
    from sbc.replicate import BatchTask, run_batch
    from sbc.spec import resolve_model
    from sbc.study import SamplerSettings

    sim = resolve_model(str(write_model(tmp_path, "gen.py", GENERATOR.format(name="mu"))))
    fit = resolve_model(str(write_model(tmp_path, "by_cell.py", BY_CELL_LINE)))
    task = BatchTask(fit, sim, Design(3, 2, 2), SamplerSettings(name="pymc"), 1, 5, (0, 1))
    records = run_batch(task)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert all(r["failure"] == "prepare" and "'mu'" in r["error"] for r in records)


DEGENERATE = """
import numpy as np
import pymc as pm


def build(data):
    gene = data["gene"].cat.codes.to_numpy()
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0, shape=len(data["gene"].cat.categories))
        pm.Normal("logfc", mu[gene], 0.5, observed=data["logfc"].to_numpy())
    return model


def exact_posterior(data, y, n_draws, rng):
    n_genes = len(data["gene"].cat.categories)
    draws = rng.normal(0.0, 0.3, size=(n_draws, n_genes))
    if y[0] > 0:  # stuck at one point: posterior sd ~1e-14 (ESS 0 for a constant)
        draws[:, -1] = 0.25 + (1e-14 * rng.normal(size=n_draws) if y[1] > 0 else 0.0)
    return {"mu": draws}
"""


def test_degenerate_fits_are_ranked_at_their_point_flagged_and_can_fail_the_design(tmp_path):
    model = write_model(tmp_path, "stuck.py", DEGENERATE)
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(model=model, sim=model, sims=30, designs=ONE_DESIGN, extra="")
                    .replace(f'simulate_model = "{model}"\n', ""))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "0"]) == 0
    reps, params = Store(out).tables()
    assert (reps.status == "ok").all()  # none is left out of the ranks
    stuck = reps[reps["flag_degenerate"].astype(bool)]
    assert 5 <= len(stuck) < len(reps)
    assert stuck["degenerate"].str.contains(r"zero or negligible posterior variance in mu\[1\]").all()
    assert reps.loc[~reps["flag_degenerate"].astype(bool), "degenerate"].isna().all()
    # ranked among all 99 draws, unthinned: the truth lies on one side of the point
    ranked = params[(params["name"] == "mu[1]") & params["rep"].isin(stuck["rep"])]
    assert (ranked["n_ranked"] == 99).all()
    assert ranked["rank"].isin([0, 99]).all()
    from sbc.calibration import calibrate

    verdict = calibrate(reps, params).verdicts[("stuck", "3x2x2")]
    assert verdict.status == "fail" and "mu" in verdict.failing
    assert "degenerate fits" in verdict.warnings and "did not move" in verdict.reason
    html = (out / "report.html").read_text()
    assert "Fits that did not move" in html and "mu (percentile of truth)" not in html
    assert "mu[0] (percentile of truth)" in html  # no one-element group: the first scalars


def test_degenerate_reason_spares_constants_of_the_model():
    from sbc.replicate import degenerate_reason

    rng = np.random.default_rng(0)
    flat = np.column_stack([rng.normal(size=200), np.full(200, 2.0), np.full(200, 5.0),
                            1e6 + 1e-6 * rng.normal(size=200)])
    diag = {"ess_bulk": np.array([150.0, 0.0, 0.0, 150.0]),
            "ess_tail": np.array([150.0, 0.0, 0.0, 150.0])}
    labels = ["a", "fixed", "stuck", "huge"]
    reason = degenerate_reason(flat, diag, np.array([0.1, 2.0, 1.0, 1e6]), labels)
    assert "stuck" in reason and "fixed" not in reason and "'a'" not in reason
    assert "huge" in reason  # sd 1e-6 at mean 1e6: below 1e-10 relative
    assert degenerate_reason(flat[:, :2], {k: v[:2] for k, v in diag.items()},
                             np.array([0.1, 2.0]), labels[:2]) is None


@pytest.mark.parametrize("fault,code", [("raise", "exception"), ("nan", "nonfinite"),
                                        ("hang", "timeout")])
def test_failed_records_carry_a_failure_code(exact_study, tmp_path, monkeypatch, fault, code):
    monkeypatch.setenv("SBC_TEST_FAULT", fault)
    path = exact_study(sims=6, extra="timeout = 0.5")
    assert run(path, tmp_path / "out") == 0
    reps, _ = Store(tmp_path / "out").tables()
    failed = reps[reps.status == "failed"]
    assert len(failed) and (failed["failure"] == code).all()
    assert reps.loc[reps.status == "ok", "failure"].isna().all()


# A generator with the fitter's mu (no dims, as normal_mean has it) and a noise sd the fitter
# does not estimate: sigma has no partner, and the log-likelihood needs it.
WITH_NOISE = """
import pymc as pm

def build(data):
    gene = data["gene"].cat.codes.to_numpy()
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0, shape=len(data["gene"].cat.categories))
        sigma = pm.LogNormal("sigma", -0.7, 0.01)
        pm.Normal("logfc", mu[gene], sigma, observed=data["logfc"].to_numpy())
    return model
"""


def test_what_goes_untested_is_said_before_the_run_in_every_verdict_and_in_summary(tmp_path,
                                                                                   capsys):
    sim = write_model(tmp_path, "gen.py", WITH_NOISE)
    out = tmp_path / "out"
    rc = main(["run", str(study_file(tmp_path, model=FITTER, sim=sim, sims=20)), "--out",
               str(out), "--workers", "0"])
    printed = capsys.readouterr()
    err = printed.err
    assert rc == 0, err
    before = err[:err.index("replicates done")]
    assert "not tested: model 'normal_mean'" in before
    assert "generator parameter(s) sigma estimated by no fitter parameter" in before
    assert "loglik, loglik_min) not ranked" in before and "needs sigma" in before
    from sbc.calibration import calibrate

    reps, params = Store(out).tables()
    assert set(params["name"]) == {"mu[0]", "mu[1]"}  # no quantity rows
    verdict = calibrate(reps, params).verdicts[("normal_mean", "3x2x2")]
    assert "untested quantities" in verdict.warnings and verdict.label != "pass"
    assert "fewer tests than the model has" in verdict.reason and "sigma" in verdict.reason
    summary = (out / "summary.md").read_text()
    assert "pass, with warnings" in summary and "estimated by no fitter parameter" in summary
    assert "estimated by no fitter parameter" in (out / "report.html").read_text()
    assert "estimated by no fitter parameter" in printed.out  # the verdict lines


def test_a_parameter_named_like_a_derived_quantity_is_refused_at_load(tmp_path, capsys):
    clash = write_model(tmp_path, "clash.py", (ROOT / "tests/models/normal_mean.py").read_text()
                        .replace('pm.Normal("mu"', 'pm.Normal("loglik"'))
    out = tmp_path / "out"
    path = tmp_path / "clash.toml"
    path.write_text(STUDY.format(model=clash, sim=clash, sims=4, designs=ONE_DESIGN, extra="")
                    .replace(f'simulate_model = "{clash}"\n', ""))
    assert run(path, out) == 2
    err = capsys.readouterr().err
    assert "'loglik'" not in err or "reserved" in err
    assert "loglik are reserved for sbc's derived quantities" in err and "rename" in err
    assert not out.exists()
