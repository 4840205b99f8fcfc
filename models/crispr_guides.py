"""A guide-level model of a pooled CRISPR knockout screen: sgRNA read counts.

Indices: gene g (G genes), guide k of a gene (K per gene), cell line c (C), replicate
screen r (R).  Effects are log2 fold changes between the library (T0) and the end of the
screen, on the Chronos scale (non-essential median 0, common-essential median -1).

    essential_g  ~ Bernoulli(pi_essential)                  is gene g a fitness gene?
    beta_g       ~ N(mu_essential, sigma_essential)  if essential_g, else N(0, sigma_gene)
    u_cg         ~ N(0, tau)                                gene x cell-line deviation
    d_gk         ~ N(0, sigma_guide)                        guide k's offset from its gene
    gamma_g      ~ N(0, selective_sd)  for the candidate genes, else 0    selective dependency
    lfc_cgk      = beta_g + gamma_g x_c + u_cg + d_gk       x_c = 1 in marker (biomarker+) lines
    log a_gk     ~ N(0, library_sd)                         library representation (natural log)
    t0_gk        ~ Poisson(t0_depth * G * K * a_gk / sum(a))           the library sequenced
    n_crgk       ~ NegBinomial(mean = N_cr * a_gk 2^lfc_cgk / sum_j a_j 2^lfc_cj,
                               var = mean + (sigma_rep * ln 2)^2 mean^2)
    N_cr         = depth * G * K                            reads of one screen (sample)

The candidate genes (the last ``n_candidates``) are those whose selective dependency a screen
is meant to test, e.g. genes expected to matter in KRAS-mutant lines: ``gamma_g`` is the
difference of the gene's effect between marker and other lines.  ``x_c`` marks the first
``round(fraction * C)`` cell lines (at least one, and at least one line without).

``sigma_rep`` is the replicate-to-replicate sd of a guide's log2 count beyond sampling
noise (the negative binomial's overdispersion, as in MAGeCK), so a guide's log2 fold change
has variance ``1 / (count ln(2)^2) + sigma_rep^2``.

Mapping to the logfc models (``crispr_plan``, ``crispr_screen``): averaging a gene's guides,
``logfc[c, g, r] = mean_k y_crgk`` with ``y = log2(n / N_cr) - log2(t0 / N_0)``, is

    logfc[c, g, r] = beta_g + u_cg + o_cr + (mean_k d_gk) + e_cgr,
    Var(e_cgr) = (sigma_rep^2 + mean_k 1 / (count ln(2)^2)) / K,

so ``crispr_plan``'s ``beta_g``, ``tau`` and ``sigma`` are this model's ``beta_g``, ``tau`` and
that per-gene noise (plus the guides' mean offset, shared by the replicates, which crispr_plan
folds into the gene effect).  Its cell-line shift ``beta_c`` is the per-sample normalisation
``o_cr``, which read counts cannot separate from a cell line's mean effect: this model
normalises each sample to its total reads instead.  The guide level adds what designers
choose: guides per gene (K), reads per guide (depth), and the library's skew.

Sources of the priors and constants (their numbers, where not quoted, are this module's
weakly informative choices around them):

- Fraction of fitness genes: 1,500-2,000 of ~18,000 genes per cell line (Hart et al. 2015,
  Cell 163:1515; DepMap common essentials ~2,000, Dempster et al. 2021, Genome Biol 22:343):
  ``pi_essential`` ~ Beta(22, 178), mean 0.11.
- Scale: Chronos fixes the median common-essential effect at -1 and the non-essential median
  at 0 (Dempster et al. 2021); the spread of essential effects is wide (sd ~0.3-0.4), that of
  non-essential genes narrow (~0.1-0.15).
- Guides: 4 guides per gene in Brunello (Doench et al. 2016, Nat Biotechnol 34:184), 3-5 in
  common libraries; guide efficacy varies widely (the reason for several guides per gene):
  ``sigma_guide`` ~ 0.3 log2 units.
- Read depth and library representation: 500 reads per guide recommended (Joung et al. 2017,
  Nat Protoc 12:828), with a library skew ratio (90th / 10th percentile of guide abundance)
  below 10; ``library_sd`` = 0.55 gives a skew ratio of 4.
- Counts are negative binomial (Li et al. 2014, Genome Biol 15:554, MAGeCK); replicate
  log fold changes correlate at 0.8-0.9 (``sigma_rep`` ~ 0.2).
- Gene x cell-line variation: selective dependencies are a minority of genes with large
  effects in some lines (Tsherniak et al. 2017, Cell 170:564); ``tau`` ~ 0.15 for the rest.

``PRIORS`` holds the hyperpriors as (distribution, parameters); a plan's design prior may
override them.  ``build`` is the full model in PyMC (every guide, cell line and count), for
NUTS at a scale where it runs; the planner's shortcut (:mod:`sbc.plan.genome_fit`) fits the same
model genome-wide and is certified against it.
"""

import math

import numpy as np

PRIORS = {
    "pi_essential": ("Beta", {"alpha": 22.0, "beta": 178.0}),
    "mu_essential": ("Normal", {"mu": -1.0, "sigma": 0.15}),
    "sigma_essential": ("LogNormal", {"mu": math.log(0.35), "sigma": 0.25}),
    "sigma_gene": ("LogNormal", {"mu": math.log(0.12), "sigma": 0.25}),
    "tau": ("LogNormal", {"mu": math.log(0.15), "sigma": 0.3}),
    "sigma_guide": ("LogNormal", {"mu": math.log(0.3), "sigma": 0.25}),
    "sigma_rep": ("LogNormal", {"mu": math.log(0.2), "sigma": 0.25}),
}
HYPER = tuple(PRIORS)
LIBRARY = {"library_sd": 0.55, "t0_depth": 500.0}
SELECTIVE_SD = 0.5  # prior sd of a candidate's selective effect (log2 units)
LN2 = math.log(2.0)


def draw_prior(rng: np.random.Generator, priors: dict = PRIORS) -> dict[str, float]:
    """One draw of the hyperparameters."""
    out = {}
    for name in HYPER:
        family, p = priors[name]
        if family == "Beta":
            out[name] = float(rng.beta(p["alpha"], p["beta"]))
        elif family == "Normal":
            out[name] = float(rng.normal(p["mu"], p["sigma"]))
        elif family == "LogNormal":
            out[name] = float(rng.lognormal(p["mu"], p["sigma"]))
        else:
            raise ValueError(f"prior of {name}: family {family!r} is not Beta, Normal or "
                             "LogNormal")
    return out


def marker_lines(n_cells: int, fraction: float) -> np.ndarray:
    """x_c: 1.0 for the first round(fraction * C) lines (at least 1, at most C - 1)."""
    m = min(max(1, round(fraction * n_cells)), n_cells - 1)
    return (np.arange(n_cells) < m).astype(float)


def draw_truth(rng: np.random.Generator, n_genes: int, max_cells: int, max_guides: int,
               priors: dict = PRIORS, library_sd: float = LIBRARY["library_sd"],
               n_candidates: int = 0, selective_effect: float | None = None) -> dict:
    """Truths of one simulated screen at the largest design of a plan: designs with fewer
    cell lines or guides take the first ones (common random numbers across designs).

    ``selective_effect``: every candidate's gamma fixed at this value (a design prior for
    power at one effect size); None draws them from the analysis prior."""
    hyper = draw_prior(rng, priors)
    essential = rng.random(n_genes) < hyper["pi_essential"]
    beta = np.where(essential, rng.normal(hyper["mu_essential"], hyper["sigma_essential"],
                                          n_genes),
                    rng.normal(0.0, hyper["sigma_gene"], n_genes))
    gamma = rng.normal(0.0, SELECTIVE_SD, n_candidates)
    if selective_effect is not None:
        gamma = np.full(n_candidates, float(selective_effect))
    return {"hyper": hyper, "essential": essential, "beta_g": beta, "gamma": gamma,
            "u": rng.normal(0.0, hyper["tau"], (max_cells, n_genes)),
            "d": rng.normal(0.0, hyper["sigma_guide"], (n_genes, max_guides)),
            "log_abundance": rng.normal(0.0, library_sd, (n_genes, max_guides))}


def simulate_counts(rng: np.random.Generator, truth: dict, n_cells: int, n_reps: int,
                    n_guides: int, depth: float, t0_depth: float = LIBRARY["t0_depth"],
                    fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(t0 (G, K), counts (C, R, G, K)) for one design, from ``draw_truth``'s truths;
    ``fraction``: the share of marker lines (:func:`marker_lines`)."""
    n_genes = truth["beta_g"].shape[0]
    log_a = truth["log_abundance"][:, :n_guides]
    share = np.exp(log_a - log_a.max())
    share /= share.sum()
    t0 = rng.poisson(t0_depth * n_genes * n_guides * share)
    lfc = truth["beta_g"][None, :, None] + truth["u"][:n_cells, :, None] \
        + truth["d"][None, :, :n_guides]
    gamma = truth["gamma"]
    if len(gamma):
        x = marker_lines(n_cells, fraction)
        lfc[:, n_genes - len(gamma):, :] += (x[:, None] * gamma[None, :])[:, :, None]
    logit = np.log(share)[None] + LN2 * lfc                     # (C, G, K)
    logit -= logit.max(axis=(1, 2), keepdims=True)
    p = np.exp(logit)
    p /= p.sum(axis=(1, 2), keepdims=True)
    mean = depth * n_genes * n_guides * p                       # (C, G, K)
    alpha = (truth["hyper"]["sigma_rep"] * LN2) ** 2
    # negative binomial as a gamma-Poisson mixture: var = mean + alpha mean^2
    mix = rng.gamma(1.0 / alpha, alpha, (n_cells, n_reps) + mean.shape[1:])
    counts = rng.poisson(mean[:, None] * mix)
    return t0, counts


def build(t0: np.ndarray, counts: np.ndarray, priors: dict = PRIORS,
          library_sd: float = LIBRARY["library_sd"], n_candidates: int = 0,
          fraction: float = 0.2):
    """The full model in PyMC: t0 (G, K) and counts (C, R, G, K) observed (data containers
    ``t0_data``, ``counts_data``); every gene, guide, gene x cell-line deviation and library
    abundance is sampled (NUTS; the gene's class is summed out by the mixture)."""
    import pymc as pm
    import pytensor.tensor as pt

    n_cells, n_reps, n_genes, n_guides = counts.shape
    def prior(name):
        family, params = priors[name]
        return getattr(pm, family)(name, **params)

    with pm.Model() as model:
        # data containers: one compiled model serves every screen of a design (with_data)
        t0_data = pm.Data("t0_data", np.asarray(t0, float))
        counts_data = pm.Data("counts_data", np.asarray(counts, float))
        h = {name: prior(name) for name in HYPER}
        pm.NormalMixture("beta_g", w=pt.stack([h["pi_essential"], 1 - h["pi_essential"]]),
                         mu=pt.stack([h["mu_essential"], pt.constant(0.0)]),
                         sigma=pt.stack([h["sigma_essential"], h["sigma_gene"]]),
                         shape=n_genes)
        beta = model["beta_g"]
        u = pm.Deterministic("u", h["tau"] * pm.Normal("u_z", 0.0, 1.0,
                                                       shape=(n_cells, n_genes)))
        d = pm.Deterministic("d", h["sigma_guide"] * pm.Normal("d_z", 0.0, 1.0,
                                                               shape=(n_genes, n_guides)))
        log_a = pm.Normal("log_a", 0.0, library_sd, shape=(n_genes, n_guides))
        log_share = log_a - pm.math.logsumexp(log_a)
        pm.Poisson("t0", t0_data.sum() * pt.exp(log_share), observed=t0_data)
        lfc = beta[None, :, None] + u[:, :, None] + d[None]
        if n_candidates:
            gamma = pm.Normal("gamma", 0.0, SELECTIVE_SD, shape=n_candidates)
            x = marker_lines(n_cells, fraction)
            shift = pt.concatenate([pt.zeros((n_cells, n_genes - n_candidates)),
                                    pt.as_tensor(x)[:, None] * gamma[None, :]], axis=1)
            lfc = lfc + shift[:, :, None]
        logit = log_share[None] + LN2 * lfc                    # (C, G, K)
        logp = logit - pm.math.logsumexp(logit, axis=(1, 2), keepdims=True)
        depth_cr = counts_data.sum(axis=(2, 3))                # (C, R) reads per screen
        mean = depth_cr[:, :, None, None] * pt.exp(logp)[:, None]
        pm.NegativeBinomial("counts", mu=mean, alpha=1.0 / (h["sigma_rep"] * LN2) ** 2,
                            observed=counts_data, shape=(n_cells, n_reps, n_genes, n_guides))
    return model
