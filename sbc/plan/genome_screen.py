"""One simulated genome screen, end to end: simulated as counts by the guide-level model
(:func:`simulate`; truths shared across designs, common random numbers), fitted by the
shortcut of :mod:`sbc.plan.genome_fit` on a seeded sub-library (:func:`fit_screen`), and
scored against the plan's targets and for calibration (:func:`target_scores`,
:func:`calibration_summary`); :func:`run_screen` is the record the genome planner stores.

The targets ask for quantiles and CDFs of each gene's posterior, a mixture of Gaussians
(:func:`mixture_quantile`, :func:`mixture_cdf`, :func:`interval_narrower`), and for the
Bayesian FDR rule (:func:`bayes_fdr_calls`); these are written here because no kept library
solves thousands of mixtures at once.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from scipy import special

from sbc import seeding
from sbc.plan.genome import GenomeSettings, ScreenDesign, guide_model
from sbc.plan.genome_fit import GenePosterior, fit_hyper, gene_posterior, observations
from sbc.verdicts import MIN_FITS


# --- the posterior mixtures: quantiles, CDFs, FDR calls ----------------------------------
def mixture_cdf(x, w, m, s) -> np.ndarray:
    """CDF at x (shape ``w.shape[:-1]``) of the Gaussian mixtures with weights ``w``,
    means ``m`` and sds ``s`` (components on the last axis)."""
    x = np.asarray(x, float)[..., None]
    return (w * special.ndtr((x - m) / s)).sum(axis=-1)


def mixture_quantile(q: float, w, m, s, iterations: int = 100) -> np.ndarray:
    """The q quantile of each mixture, to 1e-10 in probability: from the moment-matched
    normal quantile, safeguarded Newton steps (rtsafe, Numerical Recipes 9.4): a Newton step
    is taken when it stays inside the bracket and at least halves the step before it,
    otherwise the bracket is bisected.  Bimodal mixtures (an improbable class far away) have
    flat stretches where plain Newton stalls; the bisections get past them and Newton then
    converges quadratically.  Only the mixtures not yet converged are evaluated.  (Written
    here: scipy's root finders and distributions solve one mixture at a time, and the width
    target needs 18,000 of them per screen.)"""
    lo = np.min(m - 6 * s, axis=-1)
    hi = np.max(m + 6 * s, axis=-1)
    mean = (w * m).sum(axis=-1)
    sd = np.sqrt((w * (s**2 + (m - mean[..., None]) ** 2)).sum(axis=-1))
    x = np.clip(mean + sd * special.ndtri(q), lo, hi)
    step_before = hi - lo
    todo = np.arange(x.size)  # the mixtures not yet converged (flat indices)
    w2, m2, s2 = (a.reshape(-1, a.shape[-1]) for a in (w, m, s))
    x, lo, hi, step_before = (a.reshape(-1).copy() for a in (x, lo, hi, step_before))
    for _ in range(iterations):
        xi = x[todo]
        z = (xi[:, None] - m2[todo]) / s2[todo]
        err = (w2[todo] * special.ndtr(z)).sum(axis=-1) - q
        left = err < 0
        lo[todo] = np.where(left, xi, lo[todo])
        hi[todo] = np.where(left, hi[todo], xi)
        dens = (w2[todo] * np.exp(-0.5 * z * z) / (s2[todo] * math.sqrt(2 * math.pi))).sum(-1)
        newton = xi - err / np.maximum(dens, 1e-300)
        ok = (dens > 0) & (newton > lo[todo]) & (newton < hi[todo]) & \
            (np.abs(newton - xi) <= 0.5 * np.abs(step_before[todo]))
        moved = np.where(ok, newton, 0.5 * (lo[todo] + hi[todo]))
        converged = np.abs(err) <= 1e-10
        x[todo] = np.where(converged, xi, moved)
        step_before[todo] = moved - xi
        todo = todo[~converged]
        if todo.size == 0:
            break
    return x.reshape(mean.shape)


def interval_narrower(level: float, below: float, w, m, s) -> np.ndarray:
    """Whether each mixture's central ``level`` interval is narrower than ``below``: the
    upper end is below the lower end + ``below`` iff the CDF there exceeds the upper tail
    probability (the CDF is increasing), so one quantile and one CDF per mixture suffice."""
    tail = (1 - level) / 2
    lower = mixture_quantile(tail, w, m, s)
    return mixture_cdf(lower + below, w, m, s) > 1 - tail


def bayes_fdr_calls(lfdr: np.ndarray, q: float) -> np.ndarray:
    """The largest set of genes, by increasing local fdr, whose mean local fdr is at most
    ``q`` (the Bayesian FDR rule of Newton et al. 2004); boolean mask."""
    order = np.argsort(lfdr, kind="stable")
    running = np.cumsum(lfdr[order]) / np.arange(1, len(lfdr) + 1)
    k = int(np.nonzero(running <= q)[0].max() + 1) if np.any(running <= q) else 0
    calls = np.zeros(len(lfdr), bool)
    calls[order[:k]] = True
    return calls


# --- one simulated screen ----------------------------------------------------------------
def simulate(design: ScreenDesign, rep: int, settings: GenomeSettings):
    """(truth, t0, counts, marker lines) of replicate ``rep`` of ``design``: the truths
    depend on (seed, genes, rep) only, so designs share them (common random numbers)."""
    model = guide_model()
    truth_seed, data_seed = seeding.genome_screen(settings.seed, design.genes, design.label, rep)
    truth = model.draw_truth(np.random.default_rng(truth_seed), design.genes,
                             settings.max_cells, settings.max_guides, settings.truth_priors(),
                             settings.library_sd, settings.n_candidates,
                             settings.selective_effect)
    t0, counts = model.simulate_counts(np.random.default_rng(data_seed), truth,
                                       design.cell_lines, design.reps, design.guides,
                                       design.depth, settings.t0_depth, settings.fraction)
    return truth, t0, counts, model.marker_lines(design.cell_lines, settings.fraction)


AUTO_OBSERVATIONS = 100_000  # "auto" sub-library: about this many guide observations


def sublibrary_size(design: ScreenDesign, setting: int | str) -> int:
    """Genes in the sub-library: ``setting``, or for "auto" enough genes for about
    100,000 guide observations, between 200 and 1,000 genes (the variance hyperparameters
    are then known to about 2 %; the class hyperparameters are refitted on every gene)."""
    if setting != "auto":
        return int(setting)
    per_gene = design.cell_lines * design.reps * design.guides
    return int(min(1000, max(200, round(AUTO_OBSERVATIONS / per_gene))))


def hyper_genes(design: ScreenDesign, rep: int, settings: GenomeSettings) -> np.ndarray:
    """The sub-library the hyperparameters are fitted on: :func:`sublibrary_size`
    non-candidates drawn without replacement (fixed by seed, design and replicate)."""
    plain = design.genes - settings.n_candidates
    size = sublibrary_size(design, settings.hyper_genes)
    if plain <= size:
        return np.arange(plain)
    rng = np.random.default_rng(seeding.genome_fit(settings.seed, design.label, rep)[0])
    return np.sort(rng.choice(plain, size, replace=False))


def fit_screen(t0, counts, x, design: ScreenDesign, rep: int,
               settings: GenomeSettings) -> GenePosterior:
    """The shortcut: hyperparameters on a sub-library, then every gene's posterior."""
    obs = observations(t0, counts, x, settings.n_candidates)
    priors = settings.analysis_priors()
    x = fit_hyper(obs, hyper_genes(design, rep, settings), priors)
    return gene_posterior(obs, x, priors, settings.n_pit, settings.hyper_draws,
                          seeding.genome_fit(settings.seed, design.label, rep)[1])


def target_scores(post: GenePosterior, truth: dict, settings: GenomeSettings) -> dict:
    """Each target's metric and whether it is met, from a screen's posterior and truths."""
    essential = truth["essential"]
    n_c = settings.n_candidates
    plain = slice(0, len(essential) - n_c)
    out = {}
    for i, t in enumerate(settings.targets):
        tail = (1 - t.level) / 2
        if t.kind == "essential_power":
            calls = bayes_fdr_calls(1.0 - post.p_ess, t.fdr)
            value = calls[essential].sum() / max(1, essential.sum())
            out[f"fdp{i}"] = float((calls & ~essential).sum() / max(1, calls.sum()))
        elif t.kind == "selective_power":
            hi = mixture_quantile(1 - tail, post.gw, post.gm, post.gs)
            lo = mixture_quantile(tail, post.gw, post.gm, post.gs)
            hit = {"below": hi < 0, "above": lo > 0, "either": (hi < 0) | (lo > 0)}[t.side]
            value = float(hit.mean()) if n_c else math.nan
        elif t.kind == "width":
            value = float(interval_narrower(t.level, t.below, post.w[plain], post.m[plain],
                                            post.s[plain]).mean())
        else:
            mean = post.mean()[plain]
            ess_idx = np.nonzero(essential[plain])[0][:t.n_controls]
            non_idx = np.nonzero(~essential[plain])[0][:t.n_controls]
            value = float((mean[ess_idx].mean() - mean[non_idx].mean())
                          / mean[non_idx].std(ddof=1))
        met = value <= t.below if t.kind == "separation" else value >= t.at_least
        out[f"metric{i}"], out[f"met{i}"] = float(value), bool(met)
    out["success"] = bool(all(out[f"met{i}"] for i in range(len(settings.targets))))
    return out


def calibration_summary(post: GenePosterior, truth: dict, settings: GenomeSettings) -> dict:
    """PITs of the truths (the first ``n_pit`` genes' effects and their deviations in cell
    line 0; the candidates' selective effects), the 95 % interval coverage over all genes,
    the reliability of P(essential) (sum of class minus probability, and its variance),
    the realised false discovery proportion of the essential calls at 5 %, and the
    hyperparameters' truths and fits."""
    n = min(settings.n_pit, post.um.shape[0])
    beta = truth["beta_g"]
    cdf = mixture_cdf(beta, post.w, post.m, post.s)
    u_pit = mixture_cdf(truth["u"][0, :n], post.uw[:, 0], post.um[:, 0], post.us[:, 0])
    g_pit = mixture_cdf(truth["gamma"], post.gw, post.gm, post.gs) \
        if settings.n_candidates else np.empty(0)
    ess = truth["essential"]
    p = post.p_ess
    calls = bayes_fdr_calls(1.0 - p, 0.05)
    return {"pit_beta": cdf[:n].tolist(), "pit_u": u_pit.tolist(), "pit_gamma": g_pit.tolist(),
            "coverage95": float(np.mean((cdf > 0.025) & (cdf < 0.975))),
            "reliability": float((ess - p).sum()), "reliability_var": float((p * (1 - p)).sum()),
            "fdp05": float((calls & ~ess).sum() / max(1, calls.sum())),
            "rmse_beta": float(np.sqrt(np.mean((post.mean() - beta) ** 2))),
            "importance_ess": post.ess,
            "hyper_true": truth["hyper"], "hyper_fit": post.hyper}


def run_screen(design: ScreenDesign, rep: int, settings: GenomeSettings) -> dict:
    """Simulate replicate ``rep`` of ``design``, fit it by the shortcut and score it: the
    record the genome planner stores (JSON-able)."""
    start = time.perf_counter()
    truth, t0, counts, x = simulate(design, rep, settings)
    simulated = time.perf_counter()
    post = fit_screen(t0, counts, x, design, rep, settings)
    record = {"design": design.label, "rep": rep, **target_scores(post, truth, settings),
              **calibration_summary(post, truth, settings)}
    # P(essential) as a decision probability (sbc.plan.genome.essential_decisions): the PIT
    # gene's probability and class (one per screen, independent across screens), the
    # essential count against its posterior mean and variance, and every gene binned
    from sbc.decisions import binned_sums

    ess = truth["essential"]
    gene = rep % len(record["pit_beta"]) if record["pit_beta"] else 0
    count_mean, count_var = post.essential_count()
    record.update(p_ess_gene=float(post.p_ess[gene]), essential_gene=bool(ess[gene]),
                  n_essential=int(ess.sum()), p_ess_sum=count_mean, p_ess_count_var=count_var,
                  p_ess_bins=binned_sums(post.p_ess, ess).tolist())
    done = time.perf_counter()
    record.update(simulate_seconds=simulated - start, fit_seconds=done - simulated)
    return record


# --- stored screen records and a design's calibration from them -------------------------

RECORD_NUMBERS = ("coverage95", "reliability", "reliability_var", "fdp05", "rmse_beta",
                  "simulate_seconds", "fit_seconds")
PIT_GROUPS = ("pit_beta", "pit_u", "pit_gamma")


def screen_problem(record: dict, n_targets: int) -> str | None:
    """Why a stored screen record is not one this plan wrote, or None."""
    if not isinstance(record.get("success"), bool):
        return "its 'success' is not true/false"
    for i in range(n_targets):
        if not isinstance(record.get(f"met{i}"), bool):
            return f"its 'met{i}' is not true/false"
        value = record.get(f"metric{i}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"its 'metric{i}' is not a number"
    for key in RECORD_NUMBERS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"its '{key}' is not a number"
    for key in PIT_GROUPS:
        values = record.get(key)
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                for v in values):
            return f"its '{key}' is not a list of numbers in [0, 1]"
    return None


def screen_tables(records: list[dict], model: str, design: str,
                  gamma: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A design's screens as the calibration engine's tables (:func:`sbc.calibration.calibrate`,
    the one that judges every study and plan): one replicate per screen (the shortcut
    neither diverges nor stops early, so no sampler flags) and, per group, the screen's one
    PIT (gene ``rep mod n_pit``; see the module docstring) as its exact fractional rank ``u``.
    A group with fewer than MIN_FITS PITs is left out."""
    groups = {"beta_g": "pit_beta", "u": "pit_u"}
    if gamma:
        groups["gamma"] = "pit_gamma"
    reps = pd.DataFrame({
        "model": model, "design": design, "rep": [r["rep"] for r in records], "status": "ok",
        "n_divergent": 0, "n_treedepth": 0, "flag_rhat": False, "flag_low_ess": False,
        "n_ranked": math.nan,
        "wall_seconds": [r["simulate_seconds"] + r["fit_seconds"] for r in records]})
    rows = []
    for name, key in groups.items():
        pits = [(r["rep"], r[key][r["rep"] % len(r[key])]) for r in records if r[key]]
        if len(pits) >= MIN_FITS:
            rows += [{"model": model, "design": design, "rep": rep, "name": name,
                      "group": name, "kind": "parameter", "u": u, "rank": math.nan,
                      "n_ranked": math.nan, "truth": math.nan, "mean": math.nan,
                      "sd": math.nan} for rep, u in pits]
    return reps, pd.DataFrame(rows)
