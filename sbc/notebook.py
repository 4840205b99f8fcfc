"""Reproduce the seed notebook's single analysis: simulate with its true values, fit, compare.

The data are simulated exactly as the notebook does (legacy ``np.random.seed(103)``, then
alpha_g, beta_c and one normal draw per row), so the data set is the notebook's own.
"""

from __future__ import annotations

import numpy as np
import nutpie
import pandas as pd
from arviz_stats import summary

from sbc.design import design_frame
from sbc.spec import build_pymc_model, resolve_model

TRUE_VALUES = {"mu_alpha": -1.0, "sigma_alpha": 0.5, "mu_beta": 0.0, "sigma_beta": 0.5,
               "sigma": 0.05}
SEED = 103


def seed_data(n_cell_lines: int = 10, n_genes: int = 3, n_reps: int = 3) -> tuple[pd.DataFrame, dict]:
    """The notebook's synthetic data and the true values it used (alpha_g, beta_c included)."""
    legacy = np.random.RandomState(SEED)
    truth = dict(TRUE_VALUES)
    truth["alpha_g"] = legacy.normal(truth["mu_alpha"], truth["sigma_alpha"], n_genes)
    truth["beta_c"] = legacy.normal(truth["mu_beta"], truth["sigma_beta"], n_cell_lines)
    data = design_frame(n_cell_lines, n_genes, n_reps)
    g = data["gene"].cat.codes.to_numpy()
    c = data["cell_line"].cat.codes.to_numpy()
    data["logfc"] = [legacy.normal(truth["alpha_g"][gi] + truth["beta_c"][ci], truth["sigma"])
                     for gi, ci in zip(g, c)]
    return data, truth


def seed_posterior(model: str = "crispr_seed", draws: int = 2000, tune: int = 1000,
                   chains: int = 4):
    """nutpie's posterior (a DataTree) of the seed's data under ``model``, seeded with 103."""
    data, _ = seed_data()
    compiled = nutpie.compile_pymc_model(build_pymc_model(resolve_model(model), data))
    return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=1, seed=SEED,
                         progress_bar=False)


RHAT_WARN = 1.01  # R-hat above this: the chains disagree; the summary is not to be trusted
SUMMARY_COLUMNS = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]


def seed_summary(trace, names: list[str], real: dict) -> pd.DataFrame:
    """The seed notebook's summary (ArviZ's: mean, sd, 94 % HDI as hdi_3% / hdi_97%, MCSE,
    ESS bulk and tail, R-hat) with the true value beside each scalar, rounded to 3 decimals
    (not to the Monte Carlo error, so values line up with the notebook's)."""
    table = summary(trace, var_names=names, kind="all", ci_prob=0.94, ci_kind="hdi",
                    round_to="none")
    table = table.rename(columns={"hdi94_lb": "hdi_3%", "hdi94_ub": "hdi_97%"})[SUMMARY_COLUMNS]
    flat = []
    for name in names:
        flat += list(np.ravel(real[name]))
    table["true_value"] = flat
    return table.astype(float).round(3)


def fit_seed(model: str = "crispr_seed", draws: int = 2000, tune: int = 1000, chains: int = 4) -> str:
    """Fit the seed's data and return the notebook's summary table beside the truth, with a
    warning line for any R-hat above 1.01."""
    _, truth = seed_data()
    trace = seed_posterior(model, draws, tune, chains)
    if model == "crispr_seed":
        names = ["mu_alpha", "sigma_alpha", "mu_beta", "sigma_beta", "sigma", "alpha_g", "beta_c"]
        real = {**truth}
    else:
        names = ["Intercept", "1|gene_sigma", "1|cell_line_sigma", "sigma", "1|gene", "1|cell_line"]
        real = {"Intercept": truth["mu_alpha"] + truth["mu_beta"],
                "1|gene_sigma": truth["sigma_alpha"], "1|cell_line_sigma": truth["sigma_beta"],
                "sigma": truth["sigma"], "1|gene": truth["alpha_g"] - truth["mu_alpha"],
                "1|cell_line": truth["beta_c"] - truth["mu_beta"]}
    table = seed_summary(trace, names, real)
    n_div = int(trace["sample_stats"]["diverging"].values.sum())
    header = (f"Seed analysis: model {model}, 10 cell lines x 3 genes x 3 experiments, seed {SEED}, "
              f"{chains} chains x ({tune} tune + {draws} draws), {n_div} divergent transitions\n")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        text = header + table.to_string()
    return text + rhat_warning(table)


def rhat_warning(table: pd.DataFrame) -> str:
    """A warning line naming every scalar with R-hat above :data:`RHAT_WARN` ("" if none)."""
    high = table[table["r_hat"] > RHAT_WARN]
    if high.empty:
        return ""
    shown = ", ".join(f"{name} ({r:.3f})" for name, r in high["r_hat"].items())
    return (f"\nWARNING: R-hat above {RHAT_WARN} for {shown}: the chains disagree, so these "
            "summaries are not reliable; run longer chains (--tune, --draws) or use the "
            "non-centered model (--model crispr_screen)")
