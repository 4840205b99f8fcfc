"""`sbc check` on a real screen (DepMap's 37 neuroblastoma lines x 500 genes, shipped with
sbc): the seed model's single residual sd misfits the spread of single genes across cell
lines, and the gene-spread model fixes it and wins LOO.  Slow (two fits of 18,500 values;
a few minutes on 2 cores); its numbers are benchmarks/real_check.md's."""

from __future__ import annotations

import io

import pytest

import sbc
from support import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def neuroblastoma():
    return sbc.check(sbc.datasets.depmap("neuroblastoma"), ["crispr_screen", "crispr_gene_spread"],
                     study=ROOT / "studies" / "crispr_seed.toml", seed=0, stream=io.StringIO())


def test_the_seed_model_misfits_the_spread_of_genes_across_cell_lines(neuroblastoma):
    bad = neuroblastoma["crispr_screen"]
    assert bad.verdict == "misfit"
    misfit = {s.name for s in bad.statistics if s.misfit}
    assert {"gene_sd_max", "gene_sd_q90", "gene_sd_q10"} <= misfit
    observed = {s.name: s for s in bad.statistics}
    # the quietest genes vary less, the most variable more, than one sd allows
    assert observed["gene_sd_q10"].observed < observed["gene_sd_q10"].low
    assert observed["gene_sd_max"].observed > observed["gene_sd_max"].high
    assert len(bad.genes) > 50  # genes named, not just counted


def test_the_gene_spread_model_fixes_the_spread_and_wins_loo(neuroblastoma):
    good = neuroblastoma["crispr_gene_spread"]
    fixed = {s.name for s in good.statistics if not s.misfit}
    assert {"gene_sd_max", "gene_sd_q90", "gene_sd_q10", "skewness"} <= fixed
    assert neuroblastoma.comparison.index[0] == "crispr_gene_spread"
    diff = neuroblastoma.comparison.loc["crispr_screen"]
    assert -diff["elpd_diff"] > 10 * diff["dse"]  # the difference is many standard errors
