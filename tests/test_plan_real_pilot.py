"""Real screens as pilots: DepMap's liver gene-effect matrix and a MAGeCK count table simulated
by the guide model, as the design prior of the small logfc planner and of the genome planner
(sbc.plan.pilot, sbc.plan.genome_pilot)."""

from __future__ import annotations

import gzip
import json
import math
import shutil

import numpy as np
import pytest

from support import ROOT
from sbc.cli import main
from sbc.datasets import depmap
from sbc.errors import DataError, StudyError
from sbc.plan import load_plan, pilot_frame
from sbc.plan.genome import HYPER, GenomeSettings, GenomeTarget, ScreenDesign, guide_model
from sbc.plan.genome_config import load_genome_plan
from sbc.plan.genome_pilot import (apply_pilot, count_arrays, derive_pilot_priors,
                                   write_mageck)
from sbc.plan.genome_screen import simulate
from sbc.readers import read_counts, read_gene_effects

LIVER = depmap("liver")
LITERATURE = guide_model().PRIORS

SMALL_PLAN = f"""
name = "liver_pilot_plan"
seed = 7
model = "{ROOT / 'models/crispr_plan.py'}"
probability = 0.8
[pilot]
data = "{LIVER}"
chains = 1
draws = 200
tune = 200
[space]
cell_lines = [4]
genes = [20]
reps = [2]
[target]
quantity = "beta_g"
criterion = "width"
below = 1.5
[cost]
per_cell_line = 2.0
[search]
batch = 10
max_simulations = 10
calibration_simulations = 0
[sampler]
chains = 1
tune = 200
draws = 300
"""

GENOME_PLAN = """
kind = "genome"
name = "pilot_genome"
seed = 11
probability = 0.8
{pilot}
[space]
cell_lines = [4]
genes = [300]
reps = [2]
guides = [3]
depth = [300]
[candidates]
genes = 0
[[targets]]
kind = "essential_power"
fdr = 0.05
at_least = 0.5
[cost]
per_screen = 1.0
per_million_reads = 0.004
[search]
batch = 10
max_simulations = 10
"""


def genome_plan(tmp_path, pilot: str, name: str = "plan.toml"):
    path = tmp_path / name
    path.write_text(GENOME_PLAN.format(pilot=pilot))
    return path


def settings(seed=3, priors=None, library_sd=0.55, cells=4, guides=4):
    return GenomeSettings(seed=seed, targets=(GenomeTarget("essential_power"),),
                          max_cells=cells, max_guides=guides, n_candidates=0,
                          priors=priors or {}, library_sd=library_sd)


@pytest.fixture(scope="module")
def simulated_counts(tmp_path_factory):
    """A 4-line x 800-gene x 2-replicate x 4-guide pilot at 300 reads per guide, simulated by
    the guide model from the literature prior (count table, sample sheet, truths)."""
    where = tmp_path_factory.mktemp("counts")
    return write_mageck(ScreenDesign(4, 800, 2, 4, 300), settings(), where / "pilot.count.txt")


# --- the small logfc planner -------------------------------------------------------------
def test_small_plan_with_the_liver_gene_effect_matrix_as_pilot(tmp_path, capsys):
    """A gene-effect matrix (one value per cell line and gene) is a pilot: the analysis model
    is fitted to its 12,000 values once and the design prior is written; the replicate noise
    and the gene x cell-line spread are confounded, which the notes say, while their sum is
    what the matrix shows."""
    (tmp_path / "plan.toml").write_text(SMALL_PLAN)
    out = tmp_path / "out"
    assert main(["plan", str(tmp_path / "plan.toml"), "--out", str(out), "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert "gene-effect matrix" in err and "design prior from the pilot" in err
    pilot = json.loads((out / "pilot_posterior.json").read_text())
    assert pilot["format"] == "gene_effect"
    assert pilot["shape"] == {"cell_lines": 24, "genes": 500, "reps": 1}
    assert any("tau and sigma" in n for n in pilot["notes"])
    # the spread of a gene across cell lines, tau^2 + sigma^2, as the matrix shows it
    matrix = read_gene_effects(LIVER).matrix().to_numpy()
    within = float(matrix.var(axis=1, ddof=1).mean())
    post = pilot["posterior"]
    total = post["tau"]["mean"] ** 2 + post["sigma"]["mean"] ** 2
    assert total == pytest.approx(within, rel=0.25)
    for family, params in pilot["priors"].values():
        assert family in ("Normal", "LogNormal")
        assert all(math.isfinite(v) for v in params.values()) and params["sigma"] > 0
    assert (out / "design_prior.py").is_file()
    assert json.loads((out / "plan.json").read_text())["designs"][0]["simulations"] == 10


def test_pilot_data_key_reads_every_format_and_csv_stays_an_alias(tmp_path, simulated_counts):
    base = SMALL_PLAN.replace(f'data = "{LIVER}"', 'csv = "pilot.csv"')
    (tmp_path / "plan.toml").write_text(base)
    assert load_plan(tmp_path / "plan.toml").pilot.data == "pilot.csv"
    (tmp_path / "both.toml").write_text(base.replace('csv = "pilot.csv"',
                                                     'csv = "a.csv"\ndata = "b.csv"'))
    with pytest.raises(StudyError, match="both data and csv"):
        load_plan(tmp_path / "both.toml")
    # a matrix, and a count table with its sheet: the one long frame the models fit
    frame = pilot_frame(LIVER)
    assert len(frame) == 24 * 500 and set(frame["expt"]) == {"e0"}
    counts = pilot_frame(simulated_counts.counts, simulated_counts.samples)
    assert len(counts) == 4 * 800 * 2 and counts["expt"].nunique() == 2
    assert list(counts.columns) == ["cell_line", "gene", "expt", "logfc"]


@pytest.mark.parametrize("case, pilot, message", [
    ("missing file", 'data = "nowhere.csv"', "the data file"),
    ("sheet for a matrix", f'data = "{LIVER}"\nsamples = "sheet.csv"', "not a MAGeCK count"),
    ("not numbers", 'data = "bad.csv"', "line 3"),
])
def test_a_bad_small_pilot_is_refused_naming_the_key_and_file(tmp_path, capsys, case, pilot,
                                                             message):
    (tmp_path / "sheet.csv").write_text("sample,role,cell_line\nT0,reference,\n")
    (tmp_path / "bad.csv").write_text("gene,A,B\ng1,0.1,0.2\ng2,x,0.3\n")
    (tmp_path / "plan.toml").write_text(SMALL_PLAN.replace(f'data = "{LIVER}"', pilot))
    out = tmp_path / "out"
    assert main(["plan", str(tmp_path / "plan.toml"), "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "[pilot] data" in err and message in err and "Traceback" not in err
    assert not (out / "replicates").exists()


# --- the genome planner ------------------------------------------------------------------
def test_genome_priors_from_the_liver_matrix_are_what_the_matrix_says():
    """The liver matrix moves the literature priors where its numbers differ: Chronos' scale
    keeps the essential mean near -1, but essential effects spread far wider (sd ~0.6, not
    0.35), genes vary more across cell lines, and this 500-gene subset holds far more
    essential genes than a genome (its genes were not drawn at random)."""
    info = derive_pilot_priors(LIVER, seed=1)
    assert info.format == "gene_effect" and info.shape == {"cell lines": 24, "genes": 500}
    assert set(info.priors) == {"pi_essential", "mu_essential", "sigma_essential",
                                "sigma_gene", "tau"}
    post = info.posterior
    matrix = read_gene_effects(LIVER).matrix().to_numpy()
    means = matrix.mean(axis=1)
    assert abs(post["mu_essential"]["mean"] + 1.0) < 0.15
    assert post["sigma_essential"]["q05"] > 0.45 > math.exp(LITERATURE["sigma_essential"][1]["mu"])
    assert abs(post["pi_essential"]["mean"] - np.mean(means < -0.5)) < 0.05
    assert post["pi_essential"]["q05"] > 0.2  # literature: 0.11 genome-wide
    # tau: the pooled within-gene sd (the matrix's own noise included)
    assert post["tau"]["mean"] == pytest.approx(math.sqrt(matrix.var(axis=1, ddof=1).mean()),
                                                rel=0.03)
    assert post["tau"]["mean"] > math.exp(LITERATURE["tau"][1]["mu"])
    # the non-essential genes' spread: about the sd of the near-zero gene means
    assert 0.1 < post["sigma_gene"]["mean"] < 0.2
    # matched priors carry the posterior: Beta mean and Normal / LogNormal centres
    alpha, beta = info.priors["pi_essential"][1].values()
    assert alpha / (alpha + beta) == pytest.approx(post["pi_essential"]["mean"], rel=1e-6)
    assert info.priors["mu_essential"][1]["mu"] == pytest.approx(post["mu_essential"]["mean"])
    assert info.importance_ess > 500
    assert "sigma_guide" not in info.priors and "library_sd" not in info.used


def test_genome_plan_with_a_matrix_pilot_records_resumes_and_fingerprints_the_file(tmp_path,
                                                                                   capsys):
    shutil.copy(LIVER, tmp_path / "liver.csv.gz")
    path = genome_plan(tmp_path, '[pilot]\ndata = "liver.csv.gz"\nwiden = 2.0')
    out = tmp_path / "out"
    assert main(["plan", str(path), "--out", str(out), "--workers", "0"]) == 0
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "priors from the pilot" in ln]
    assert len(line) == 1 and "kept from the plan: sigma_guide, sigma_rep, library_sd" in line[0]
    recorded = json.loads((out / "pilot_posterior.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    assert plan["pilot"]["priors"] == recorded["priors"]
    # the plan's priors are the pilot's where it informs them, the literature's elsewhere
    assert plan["plan"]["priors"]["tau"] == recorded["priors"]["tau"]
    assert plan["plan"]["priors"]["sigma_guide"] == list(
        (LITERATURE["sigma_guide"][0], LITERATURE["sigma_guide"][1]))
    assert "from the pilot" in (out / "summary.md").read_text()
    # widen = 2 doubles the matched sds
    one = derive_pilot_priors(LIVER, seed=11)
    assert recorded["priors"]["mu_essential"][1]["sigma"] == pytest.approx(
        2 * one.priors["mu_essential"][1]["sigma"])
    # resumed: nothing new; another pilot file's content: another study
    assert main(["plan", str(path), "--out", str(out), "--workers", "0"]) == 0
    assert "(0 new)" in capsys.readouterr().out
    text = gzip.decompress((tmp_path / "liver.csv.gz").read_bytes()).decode()
    (tmp_path / "liver.csv.gz").write_bytes(gzip.compress(text.replace("-0.2458", "-0.3458",
                                                                       1).encode()))
    assert main(["plan", str(path), "--out", str(out), "--workers", "0"]) == 2
    assert "different study" in capsys.readouterr().err


def test_write_mageck_round_trips_through_read_counts(simulated_counts):
    files = simulated_counts
    screen = read_counts(files.counts, files.samples)
    assert screen.counts.shape == (800 * 4, 1 + 4 * 2)
    assert screen.n_genes == 800 and screen.n_cell_lines == 4 and screen.n_reps == 2
    assert list(screen.guide_gene.unique()) == files.truth["genes"]
    assert screen.samples.set_index("sample").loc["T0", "role"] == "reference"
    # the counts are the guide model's own simulation of that screen
    design = ScreenDesign(4, 800, 2, 4, 300)
    _, t0, counts, _ = simulate(design, 0, settings())
    arrays = count_arrays(screen)
    assert np.array_equal(arrays.t0, t0) and np.array_equal(arrays.counts, counts)
    # without the sheet, the names alone say the same
    assert read_counts(files.counts).frame.equals(screen.frame)


def test_a_count_pilot_recovers_the_hyperparameters_it_was_simulated_with(simulated_counts):
    truth = simulated_counts.truth["hyper"]
    info = derive_pilot_priors(simulated_counts.counts, simulated_counts.samples, seed=2)
    assert set(info.priors) == set(HYPER) and "library_sd" in info.used
    for name in HYPER:
        post = info.posterior[name]
        # within 4 posterior sds, or 10 % for the variance hyperparameters, whose
        # uncertainty is that of the shortcut's plug-in (about 2 %)
        assert abs(post["mean"] - truth[name]) < max(4 * post["sd"], 0.1 * truth[name]), name
    assert info.library["library_sd"] == pytest.approx(0.55, rel=0.1)
    assert info.library["reads_per_guide"] == pytest.approx(300, rel=0.02)
    assert info.library["t0_reads_per_guide"] == pytest.approx(500, rel=0.02)
    assert info.shape == {"cell lines": 4, "genes": 800, "replicates per cell line": 2, "guides per gene": 4}


def test_a_count_pilot_from_a_noisier_lab_moves_the_genome_plan_priors(tmp_path):
    """Simulated with noisier guides and replicates and a skewed library, the pilot moves
    the guide, replicate and library priors of the plan away from the literature."""
    tight = {k: (f, dict(p)) for k, (f, p) in LITERATURE.items()}
    tight["sigma_guide"] = ("LogNormal", {"mu": math.log(0.5), "sigma": 0.01})
    tight["sigma_rep"] = ("LogNormal", {"mu": math.log(0.35), "sigma": 0.01})
    files = write_mageck(ScreenDesign(3, 600, 2, 4, 300),
                         settings(seed=8, priors=tight, library_sd=0.9, cells=3),
                         tmp_path / "data" / "noisy.count.txt.gz")
    path = genome_plan(tmp_path, '[pilot]\ndata = "data/noisy.count.txt.gz"\n'
                                 'samples = "data/noisy_samples.csv"')
    plan, info = apply_pilot(load_genome_plan(path))
    assert plan.library_sd == pytest.approx(0.9, rel=0.1)
    for name, value in (("sigma_guide", 0.5), ("sigma_rep", 0.35)):
        family, params = plan.priors[name]
        assert family == "LogNormal"
        assert math.exp(params["mu"]) == pytest.approx(value, rel=0.1)
        assert math.exp(params["mu"]) > 1.1 * math.exp(LITERATURE[name][1]["mu"])
    assert info.library["nb_dispersion"] == pytest.approx((0.35 * math.log(2)) ** 2, rel=0.2)
    # `use` keeps the rest of the plan's priors
    (tmp_path / "use.toml").write_text(path.read_text().replace(
        "[pilot]", '[pilot]\nuse = ["sigma_guide", "library_sd"]'))
    kept, info = apply_pilot(load_genome_plan(tmp_path / "use.toml"))
    assert set(info.priors) == {"sigma_guide"} and kept.library_sd == plan.library_sd
    assert kept.priors["sigma_rep"] == LITERATURE["sigma_rep"]
    assert files.truth["library_sd"] == 0.9


@pytest.mark.parametrize("pilot, files, error, message", [
    ('[pilot]\ndata = "none.csv"', {}, StudyError, "'pilot.data' = 'none.csv': file"),
    ('[pilot]\nsamples = "s.csv"', {"s.csv": "x"}, StudyError, "[pilot] needs data"),
    ('[pilot]\ndata = "m.csv"\nwidth = 2', {"m.csv": "x"}, StudyError, "widen"),
    ('[pilot]\ndata = "m.csv"\nuse = ["sigma"]', {"m.csv": "x"}, StudyError, "pilot.use"),
    ('[pilot]\ndata = "m.csv"', {"m.csv": "gene,A,B\ng1,0.1,0.2\ng2,0.3\n"}, DataError,
     "line 3 has 2 fields"),
    ('[pilot]\ndata = "m.csv"', {"m.csv": "gene,A,B\n" + "".join(
        f"g{i},0.1,0.2\n" for i in range(10))}, DataError, "at least 50 genes"),
    ('[pilot]\ndata = "c.txt"\nsamples = "s.csv"', {
        "c.txt": "sgRNA\tGene\tT0\tA_1\ng1_1\tg1\t5\t6\n",
        "s.csv": "sample,role,cell_line\nT0,reference,\nB_1,end,B\n"}, DataError,
     "'B_1' are not columns"),
    ('[pilot]\ndata = "m.csv"\nuse = ["sigma_rep"]', {"m.csv": "gene,A,B\n" + "".join(
        f"g{i},{-i / 30},0.2\n" for i in range(60))}, StudyError, "does not inform"),
])
def test_a_bad_genome_pilot_is_refused_naming_the_key_and_file(tmp_path, pilot, files, error,
                                                              message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = genome_plan(tmp_path, pilot)
    with pytest.raises(error) as info:
        apply_pilot(load_genome_plan(path))
    assert message in str(info.value)
    if error is DataError:
        assert "[pilot] data" in str(info.value)


@pytest.mark.parametrize("name, informed", [
    ("plan_genome_liver_pilot", 5), ("plan_genome_count_pilot", 8)])
def test_the_shipped_pilot_plans_are_valid_and_read_their_pilots(name, informed):
    """studies/plan_genome_*_pilot.toml: the worked genome plan with a pilot's priors; the
    count pilot (studies/data/pilot, written by benchmarks/pilot_plans.py) gives back the
    guide and replicate noise and the library skew it was simulated with."""
    plan, info = apply_pilot(load_genome_plan(ROOT / "studies" / f"{name}.toml"))
    assert plan.dims["genes"] == (18000,) and len(info.used) == informed
    if info.format == "counts":
        truth = json.loads((ROOT / "studies/data/pilot/noisy_lab_truth.json").read_text())
        for k in ("sigma_guide", "sigma_rep", "tau"):
            assert info.posterior[k]["mean"] == pytest.approx(truth["hyper"][k], rel=0.05)
        assert plan.library_sd == pytest.approx(truth["library_sd"], rel=0.05)
