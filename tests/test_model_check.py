"""Fitting real data with a study's procedure (``sbc.fit``) and checking models against it
(``sbc.check``): a known-bad control (one residual sd for genes whose spread differs) is
called a misfit naming the per-gene spread, a known-good one (the model that generated the
data) is adequate, and the output is an ArviZ DataTree users continue with."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

import sbc
from sbc.errors import DataError

N_GENES, N_CELLS = 24, 16


def spread_screen(path, seed: int = 7):
    """A gene-effect matrix (genes as rows) whose genes differ in their spread across cell
    lines (log sd ~ Normal(-1.6, 0.8)), as real screens do."""
    rng = np.random.default_rng(seed)
    alpha = rng.normal(-0.4, 0.6, N_GENES)
    beta = rng.normal(0.0, 0.05, N_CELLS)
    sigma = np.exp(rng.normal(-1.6, 0.8, N_GENES))
    values = alpha[:, None] + beta[None, :] + sigma[:, None] * rng.normal(size=(N_GENES, N_CELLS))
    frame = pd.DataFrame(values, index=[f"G{i}" for i in range(N_GENES)],
                         columns=[f"ACH-{i:06d}" for i in range(N_CELLS)])
    frame.index.name = "gene"
    frame.to_csv(path)
    return path


def quick_study(designs=((N_CELLS, N_GENES, 1),)):
    return sbc.Study(name="quick", models=["crispr_screen", "crispr_gene_spread"],
                     designs=list(designs), simulations=10, seed=1,
                     sampler={"tune": 400, "draws": 500})


def quick_study_file(folder, tune: int, draws: int):
    """A study file of crispr_screen at the design of :func:`spread_screen`."""
    study = folder / "quick.toml"
    study.write_text('name = "quick"\nmodels = ["crispr_screen"]\nseed = 1\nsimulations = 10\n'
                     f'[[designs]]\ncell_lines = {N_CELLS}\ngenes = {N_GENES}\nreps = 1\n'
                     f'[sampler]\ntune = {tune}\ndraws = {draws}\n')
    return study


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    path = spread_screen(tmp_path_factory.mktemp("data") / "spread.csv")
    out = tmp_path_factory.mktemp("check")
    return sbc.check(path, ["crispr_screen", "crispr_gene_spread"], study=quick_study(),
                     seed=3, out=out, stream=io.StringIO()), out


def test_one_residual_sd_is_a_misfit_for_genes_of_different_spread(checked):
    result, _ = checked
    bad = result["crispr_screen"]
    assert bad.verdict == "misfit"
    misfit = {s.name for s in bad.statistics if s.misfit}
    assert misfit & {"gene_sd_max", "gene_sd_q90", "gene_sd_q10"}, misfit
    assert any("spread" in r or "sd" in r for r in bad.reasons)


def test_the_model_that_generated_the_data_is_adequate_and_wins_loo(checked):
    result, _ = checked
    good = result["crispr_gene_spread"]
    assert good.verdict == "adequate", good.reasons
    assert result.best == "crispr_gene_spread"
    assert result.comparison.index[0] == "crispr_gene_spread"
    assert "crispr_gene_spread: ADEQUATE" in str(result)


def test_check_writes_a_page_with_figures_and_a_json_summary(checked):
    import json

    _, out = checked
    page = (out / "check.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "crispr_gene_spread" in page and "misfit" in page
    summary = json.loads((out / "check.json").read_text())
    assert {m["model"]: m["verdict"] for m in summary["models"]} == {
        "crispr_screen": "misfit", "crispr_gene_spread": "adequate"}


def test_fit_returns_a_datatree_with_posterior_predictive_and_log_likelihood(checked):
    result, _ = checked
    fit = result["crispr_gene_spread"].fit
    tree = fit.datatree
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data",
                  "constant_data", "sample_stats"):
        assert group in tree.children, group
    n = N_GENES * N_CELLS
    assert tree["observed_data"]["logfc"].shape == (n,)
    assert tree["log_likelihood"]["logfc"].shape[-1] == n
    assert "quick" in tree.attrs["sbc_procedure"]
    assert "sigma_1|gene" in tree["posterior"].data_vars


def test_fit_refuses_or_warns_when_the_data_lie_outside_the_studied_designs(tmp_path):
    path = spread_screen(tmp_path / "spread.csv")
    study = quick_study(designs=[(10, 3, 3)])
    with pytest.raises(DataError, match=r"outside the designs study 'quick' checked: cell lines 16"):
        sbc.fit(path, "crispr_screen", study=study, strict=True, stream=io.StringIO())


def test_cli_check_exit_status_with_fail_on_misfit(tmp_path):
    from sbc.cli import main

    path = spread_screen(tmp_path / "spread.csv")
    study = quick_study_file(tmp_path, tune=400, draws=500)
    code = main(["check", str(path), "--model", "crispr_screen", "--study", str(study),
                 "--out", str(tmp_path / "out"), "--fail-on-misfit"])
    assert code == 1
    assert (tmp_path / "out" / "check.html").is_file()


def test_cli_check_names_a_malformed_data_file(tmp_path, capsys):
    from sbc.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("gene,ACH-000001,ACH-000002\nA,0.1,0.2\nA,0.3,x\n")
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "appears twice" in err


def test_posterior_sbc_reads_a_gene_effect_matrix_and_a_subset_of_it(tmp_path):
    study = tmp_path / "post.toml"
    study.write_text('name = "post"\nmodel = "crispr_screen"\nseed = 1\nsimulations = 10\n'
                     f'[posterior_sbc]\ndata = "{sbc.datasets.depmap("liver")}"\n'
                     'genes = 5\ncell_lines = 7\n')
    design = sbc.Study.from_toml(study).designs[0]
    assert design.label == "posterior-liver_500_genes-5g-7c"
    observed = design.observed
    assert observed["gene"].nunique() == 5 and observed["cell_line"].nunique() == 7
    assert design.n_rows == 2 * 35
    # the same values as the reader gives
    full = sbc.read_gene_effects(sbc.datasets.depmap("liver")).matrix()
    for row in observed.itertuples():
        assert row.logfc == pytest.approx(full.loc[row.gene, row.cell_line])


def test_posterior_sbc_refuses_a_bad_subset_key(tmp_path):
    from sbc.errors import StudyError

    study = tmp_path / "post.toml"
    study.write_text('name = "post"\nmodel = "crispr_screen"\nseed = 1\nsimulations = 10\n'
                     f'[posterior_sbc]\ndata = "{sbc.datasets.depmap("liver")}"\ngenes = 0\n')
    with pytest.raises(StudyError, match=r"posterior_sbc\.genes"):
        sbc.Study.from_toml(study)


def test_cli_fit_writes_the_datatree_as_netcdf(tmp_path):
    import xarray as xr

    from sbc.cli import main

    path = spread_screen(tmp_path / "spread.csv")
    study = quick_study_file(tmp_path, tune=300, draws=300)
    assert main(["fit", str(path), "--study", str(study), "--out", str(tmp_path / "fit")]) == 0
    tree = xr.open_datatree(tmp_path / "fit" / "crispr_screen.nc", engine="h5netcdf")
    assert {"posterior", "posterior_predictive", "log_likelihood"} <= set(tree.children)
