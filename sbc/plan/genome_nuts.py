"""Full NUTS on the guide-level count model (``models/crispr_guides.py:build``), as the
reference the genome shortcut is certified against: the same simulated screen, fitted with
every gene, guide, deviation and library abundance sampled, summarised in the shortcut's
form (:class:`sbc.plan.genome_fit.GenePosterior`) so the same targets and PITs apply.

A posterior draw is a point mass; it enters the shortcut's mixture form as a Gaussian of
sd ``POINT_SD`` (1e-4 log2 units, negligible against posterior sds of 0.05 and more), so
quantiles and PITs are those of the draws.  P(essential) is Rao-Blackwellised: the class
probability of each draw's gene effect given that draw's hyperparameters, averaged.
"""

from __future__ import annotations

import time

import numpy as np
import nutpie
from scipy import special, stats

from sbc.diagnostics import convergence
from sbc.numerics import pin_numerics
from sbc.sampling import fit_from_arrow
from sbc.plan.genome import HYPER, GenomeSettings, guide_model
from sbc.plan.genome_fit import GenePosterior

POINT_SD = 1e-4


def compile_full_model(t0: np.ndarray, counts: np.ndarray, settings: GenomeSettings):
    """nutpie's compiled full model for screens of this shape (reused with new data)."""
    pin_numerics()
    model = guide_model().build(t0, counts, settings.analysis_priors(), settings.library_sd,
                                settings.n_candidates, settings.fraction)
    return nutpie.compile_pymc_model(model, var_names=_names(settings))


def _names(settings: GenomeSettings) -> list[str]:
    return [*HYPER, "beta_g", "u"] + (["gamma"] if settings.n_candidates else [])


def nuts_posterior(t0: np.ndarray, counts: np.ndarray, settings: GenomeSettings, seed: int,
                   *, draws: int = 500, tune: int = 500, chains: int = 2, compiled=None,
                   cores: int | None = None) -> tuple[GenePosterior, dict]:
    """Fit one simulated screen by NUTS (nutpie, its defaults otherwise; ``compiled`` from
    :func:`compile_full_model` for a screen of the same shape saves the compile; ``cores``:
    chains run side by side, all of them by default); returns the posterior in the
    shortcut's form and diagnostics (seconds, divergences, and over the gene effects and
    hyperparameters the worst rank-normalised R-hat (NaN with one chain) and the smallest
    bulk and tail ESS, from :func:`sbc.diagnostics.convergence`)."""
    names = _names(settings)
    start = time.perf_counter()
    if compiled is None:
        compiled = compile_full_model(t0, counts, settings)
    compiled_at = time.perf_counter()
    model = compiled.with_data(t0_data=np.asarray(t0, float),
                               counts_data=np.asarray(counts, float))
    raw = nutpie.sample(model, chains=chains, cores=cores or chains, tune=tune, draws=draws,
                        seed=int(seed), progress_bar=False, return_raw_trace=True)
    fit = fit_from_arrow(raw, names, time.perf_counter() - compiled_at)
    d = {k: v.reshape((-1,) + v.shape[2:]) for k, v in fit.draws.items()}   # (S, ...)
    S = d["beta_g"].shape[0]
    beta = d["beta_g"]                                                      # (S, G)
    le = np.log(d["pi_essential"])[:, None] + stats.norm.logpdf(
        beta, d["mu_essential"][:, None], d["sigma_essential"][:, None])
    ln = np.log1p(-d["pi_essential"])[:, None] + stats.norm.logpdf(
        beta, 0.0, d["sigma_gene"][:, None])
    p_ess = special.expit(le - ln).mean(axis=0)
    n = min(settings.n_pit, beta.shape[1] - settings.n_candidates)
    G = beta.shape[1]

    def point(values):  # (S, ...) draws -> mixture (..., S)
        m = np.moveaxis(values, 0, -1)
        return np.full(m.shape, 1.0 / S), m, np.full(m.shape, POINT_SD)

    w, m, s = point(beta)
    gamma = d.get("gamma", np.empty((S, 0)))
    gw, gm, gs = point(gamma)
    uw, um, us = point(d["u"][:, :, :n].transpose(0, 2, 1))                  # (n, C, S)
    hyper = {k: float(d[k].mean()) for k in HYPER}
    watched = np.concatenate([fit.draws["beta_g"].reshape(*fit.draws["beta_g"].shape[:2], -1),
                              *(fit.draws[k].reshape(*fit.draws[k].shape[:2], -1)
                                for k in HYPER)], axis=2)                   # (chain, draw, k)
    conv = convergence(watched)
    rhat = float(np.nanmax(conv["rhat"])) if chains > 1 else float("nan")
    diagnostics = {"seconds": time.perf_counter() - start, "compile_seconds": compiled_at - start,
                   "divergences": int(fit.diverging.sum()), "rhat_max": rhat, "genes": G,
                   "chains": chains, "ess_bulk_min": float(conv["ess_bulk"].min()),
                   "ess_tail_min": float(conv["ess_tail"].min())}
    return GenePosterior(p_ess, w, m, s, gw, gm, gs, uw, um, us, hyper, 0.0, float(S)), diagnostics

