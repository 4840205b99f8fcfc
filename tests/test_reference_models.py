"""The reference model's RESCUE forms are the same posterior in other parametrizations.

For every form, the log density at corresponding points differs exactly by the Jacobian of
the change of variables (gene = offset x gene sd: log p_centered = log p_noncentered -
n_genes log(gene sd), likewise for cell lines), and the ranked parameters are the same.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sbc.design import Design
from sbc.spec import build_pymc_model, ranked_parameters, resolve_model


def _forms(design):
    ref = resolve_model("crispr_screen")
    from dataclasses import replace

    from sbc.spec import load_module
    names = ("build", *load_module(ref).RESCUE)
    data = design.frame()
    data["logfc"] = np.random.default_rng(0).normal(-1.0, 2.0, len(data))
    return {n: build_pymc_model(replace(ref, function=n), data) for n in names}


@pytest.mark.parametrize("design", [Design(10, 3, 3), Design(4, 5, 2)], ids=lambda d: d.label)
def test_rescue_forms_have_the_same_log_density_up_to_the_jacobian(design):
    forms = _forms(design)
    rng = np.random.default_rng(1)
    n_genes, n_cells = design.n_genes, design.n_cell_lines
    ranked = set(ranked_parameters(forms["build"]))
    for name, model in forms.items():
        assert ranked <= set(ranked_parameters(model)), name
    for _ in range(3):
        s_gene, s_cell, sigma = rng.exponential(1.0, 3) + 0.1
        gene, cell = rng.normal(0, s_gene, n_genes), rng.normal(0, s_cell, n_cells)
        common = {"sigma_log__": math.log(sigma), "Intercept": rng.normal(-1, 2),
                  "1|gene_sigma_log__": math.log(s_gene),
                  "1|cell_line_sigma_log__": math.log(s_cell)}
        centered = forms["build"].compile_logp()({**common, "1|gene": gene, "1|cell_line": cell})
        mixed = forms["build_noncentered_genes"].compile_logp()(
            {**common, "1|gene_offset": gene / s_gene, "1|cell_line": cell})
        nc = forms["build_noncentered"].compile_logp()(
            {**common, "1|gene_offset": gene / s_gene, "1|cell_line_offset": cell / s_cell})
        np.testing.assert_allclose(centered, mixed - n_genes * math.log(s_gene), rtol=1e-9)
        np.testing.assert_allclose(centered, nc - n_genes * math.log(s_gene)
                                   - n_cells * math.log(s_cell), rtol=1e-9)
