"""A pilot screen as the genome plan's prior, and simulated screens written as MAGeCK files.

This module is long because a pilot's two formats (a gene-effect matrix, a count table) each
need their own posterior of the hyperparameters, and the MAGeCK writer that makes a count
pilot testable belongs with them.

A genome plan's ``[pilot]`` replaces the literature hyperpriors of ``models/crispr_guides.py``
(those its truths are drawn from, and those the shortcut fits with) by the posterior of the
hyperparameters given the pilot, under the plan's own priors, moment-matched into the
families the ``[priors]`` parser accepts (Beta for ``pi_essential``, Normal for
``mu_essential``, LogNormal for the sds).  What a pilot informs depends on what it measured:

* **A gene-effect matrix** (DepMap's Chronos scores, or any long logfc file): one value per
  cell line and gene, no guides and no read counts.  It is the guide model with one guide and
  one replicate whose noise is folded into the deviations, so the model's own collapsed
  likelihood is closed form per gene: the mean over a gene's ``C_g`` lines is
  ``pi N(o + mu_essential, sigma_essential^2 + tau^2 / C_g) + (1 - pi) N(o, sigma_gene^2 +
  tau^2 / C_g)`` and the spread around it is ``tau^2 chi^2(C_g - 1)``.  (That is the marginal
  likelihood the shortcut integrates for every gene, at K = R = 1; an EM of the means alone
  would find the same classes but not ``tau``, nor the posterior's spread.)  Its mode and a
  Laplace proposal, importance-weighted by the exact posterior (as
  :func:`sbc.plan.genome_fit.class_hyper_draws` does), give ``pi_essential``, ``mu_essential``,
  ``sigma_essential``, ``sigma_gene`` and ``tau``.  Chronos scores carry their own
  estimation noise, which this ``tau`` includes: an upper bound, and conservative for a plan
  (a larger ``tau`` widens every gene's interval).  The replicate and guide noise and the
  library keep the plan's priors.
* **A MAGeCK count table** with its sample sheet: the shortcut's own fit
  (:func:`sbc.plan.genome_fit.fit_hyper`, :func:`sbc.plan.genome_fit.class_hyper_draws`) on the
  pilot's guide-level log fold changes, that is the model's own posterior: stage 1's mode
  with a Laplace approximation for ``tau`` and ``sigma_guide``, ``sigma_rep`` from the
  replicates (its standard error by the delta method over genes), stage 2's importance
  draws for the class hyperparameters; the library's sd from the reference (T0) counts.
  The reads per guide and the negative binomial dispersion the counts show are recorded.

:func:`write_mageck` writes a screen simulated by the guide model as a MAGeCK count table
and sample sheet (what :func:`sbc.readers.read_counts` reads), so a count pilot's round trip
is testable.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import special

from sbc import seeding
from sbc.errors import DataError, StudyError
from sbc.plan import genome_fit as gm
from sbc.plan.genome import HYPER, GenomeSettings, ScreenDesign, guide_model
from sbc.plan.genome_screen import simulate
from sbc.readers import Screen, read_screen

LIBRARY_SD = "library_sd"
USABLE = (*HYPER, LIBRARY_SD)
MATRIX_INFORMS = ("pi_essential", "mu_essential", "sigma_essential", "sigma_gene", "tau")
CONTROL_GENE = re.compile(r"(non.?target|^control|^ctrl|intergenic|safe.?harbou?r|^nt\d*$|"
                          r"^luciferase|^egfp|^lacz)", re.IGNORECASE)
MIN_GENES = 50       # a two-class mixture needs some genes of each class
SHAPE_NAMES = ("cell lines", "genes", "replicates per cell line", "guides per gene")
MATRIX_DRAWS = 2000  # importance draws of the matrix posterior (each costs vector work per gene)
COUNT_DRAWS = 400    # stage-2 draws of a count pilot
SUBLIBRARY = 1000    # genes of a count pilot's stage 1 (as the shortcut's "auto" at most)


@dataclass(frozen=True)
class PilotPriors:
    """What a pilot says about the guide model's hyperparameters.

    priors: the moment-matched priors of the hyperparameters the plan takes from the pilot
        (name -> (family, params)).  base: the plan's priors they replace.  posterior: the
        pilot posterior of every hyperparameter it informs (mean, sd, 5 % and 95 % points on
        the natural scale).  library: ``library_sd`` (when informed) and what the counts say
        about depth and dispersion.  informed: what the pilot informs; used: what the plan
        takes (``[pilot] use``).
    """

    source: str
    format: str
    sha256: str
    shape: dict
    priors: dict
    base: dict
    posterior: dict
    library: dict
    informed: tuple[str, ...]
    used: tuple[str, ...]
    importance_ess: float
    widen: float = 1.0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "sha256": self.sha256,
                "shape": self.shape, "widen": self.widen, "informed": list(self.informed),
                "used": list(self.used), "priors": self.priors, "replaced": {
                    k: self.base[k] for k in self.priors if k in self.base},
                "posterior": self.posterior, "library": self.library,
                "importance_ess": self.importance_ess, "notes": list(self.notes)}

    def summary(self) -> str:
        """One line: what came from the pilot, and what did not."""
        what = {"gene_effect": "gene-effect matrix", "long": "logfc table",
                "counts": "count table"}[self.format]
        dims = ", ".join(f"{v:,} {k}" for k, v in self.shape.items())
        parts = [f"{k} {describe_prior(self.priors[k])}" for k in HYPER if k in self.priors]
        if LIBRARY_SD in self.used:
            parts.append(f"library sd {self.library[LIBRARY_SD]:.2f}")
        kept = [k for k in USABLE if k not in self.used]
        return (f"priors from the pilot {Path(self.source).name} ({what}: {dims}): "
                + "; ".join(parts)
                + (f"; kept from the plan: {', '.join(kept)}" if kept else ""))


def describe_prior(prior) -> str:
    """``Beta(a, b)`` / ``N(mu, sd)`` / ``LogNormal`` as median x/÷ spread, for people."""
    family, p = prior
    if family == "Beta":
        mean = p["alpha"] / (p["alpha"] + p["beta"])
        return f"Beta({p['alpha']:.3g}, {p['beta']:.3g}) (mean {mean:.3f})"
    if family == "Normal":
        return f"N({p['mu']:.3f}, {p['sigma']:.3f})"
    return f"LogNormal(log {math.exp(p['mu']):.3f}, {p['sigma']:.3f})"


# --- moment matching ---------------------------------------------------------------------
def _weighted(values: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    mean = float((w * values).sum())
    return mean, float(math.sqrt(max((w * (values - mean) ** 2).sum(), 0.0)))


def _weighted_quantile(values: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(w[order])
    return float(values[order][min(np.searchsorted(cum, q), len(values) - 1)])


def matched_prior(name: str, draws: np.ndarray, w: np.ndarray, widen: float) -> tuple:
    """The prior of ``name`` in its ``[priors]`` family moment-matched to weighted draws on
    the unconstrained scale (logit pi, mu, log sd); ``widen`` scales the sd."""
    family = guide_model().PRIORS[name][0]
    if family == "Beta":
        p = special.expit(draws)
        mean, sd = _weighted(p, w)
        var = (sd * widen) ** 2
        # a Beta with this mean and variance; the variance capped below mean (1 - mean)
        var = min(max(var, 1e-10), 0.99 * mean * (1 - mean))
        k = mean * (1 - mean) / var - 1
        return "Beta", {"alpha": float(mean * k), "beta": float((1 - mean) * k)}
    mean, sd = _weighted(draws, w)
    return family, {"mu": float(mean), "sigma": float(max(sd * widen, 1e-6))}


def _posterior_row(name: str, draws: np.ndarray, w: np.ndarray) -> dict:
    natural = special.expit(draws) if name == "pi_essential" else \
        draws if name == "mu_essential" else np.exp(draws)
    mean, sd = _weighted(natural, w)
    return {"mean": mean, "sd": sd, "q05": _weighted_quantile(natural, w, 0.05),
            "q95": _weighted_quantile(natural, w, 0.95)}


def _unconstrained(name: str, value: float) -> float:
    return float(special.logit(value)) if name == "pi_essential" else \
        float(value) if name == "mu_essential" else float(math.log(value))


def _log_prior(names: tuple[str, ...], x: np.ndarray, priors: dict) -> float:
    """Log hyperprior of ``names`` on the unconstrained scale (as genome._log_prior)."""
    total = 0.0
    for name, value in zip(names, x):
        family, p = priors[name]
        if family == "Beta":
            total += p["alpha"] * -np.logaddexp(0, -value) + p["beta"] * -np.logaddexp(0, value)
        else:
            total += -0.5 * ((value - p["mu"]) / p["sigma"]) ** 2
    return float(total)


def laplace_draws(f, x0: np.ndarray, n_draws: int, seed: np.random.SeedSequence,
                  scale: float = 1.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws of the posterior ``exp(-f)``: its mode, a Gaussian proposal from the Hessian there
    (sds scaled by ``scale`` so the tails are covered), importance weights from the exact
    ``f``.  Returns (draws (n, d), normalised weights, mode, Laplace covariance)."""
    mode = gm._minimize(f, x0)
    H = gm._hessian(f, mode)
    vals, vecs = np.linalg.eigh(H)
    cov = (vecs / np.maximum(vals, 1e-8)) @ vecs.T
    L = np.linalg.cholesky(cov + 1e-12 * np.eye(len(mode)))
    z = np.random.default_rng(seed).standard_normal((n_draws, len(mode)))
    ys = mode + scale * z @ L.T
    logw = -np.array([f(y) for y in ys]) + 0.5 * (z**2).sum(axis=1)
    logw = np.where(np.isfinite(logw), logw, -np.inf)
    w = np.exp(logw - logw.max())
    return ys, w / w.sum(), mode, cov


def _normal_points(mean: float, sd: float, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Equally weighted points at the normal quantiles (i + 1/2) / n: "draws" of a Gaussian
    marginal whose moments are exact up to O(1/n)."""
    z = special.ndtri((np.arange(n) + 0.5) / n)
    return mean + sd * z / z.std(), np.full(n, 1.0 / n)


def _ess(w: np.ndarray) -> float:
    return float(1.0 / (w**2).sum())


# --- gene-effect matrices ----------------------------------------------------------------
MATRIX_NAMES = ("pi_essential", "mu_essential", "sigma_essential", "sigma_gene", "tau")


def matrix_objective(matrix: np.ndarray, priors: dict):
    """Minus the log posterior of (logit pi, mu_essential, log sigma_essential, log
    sigma_gene, log tau, offset) from a genes x cell lines matrix (NaN: not measured), under
    ``priors`` (the offset flat): the guide model's collapsed likelihood at one guide and
    one replicate (module docstring)."""
    present = np.isfinite(matrix)
    n = present.sum(axis=1).astype(float)
    keep = n >= 1
    y = np.where(present, matrix, 0.0)[keep]
    n = n[keep]
    m = y.sum(axis=1) / n
    ss = (np.where(present[keep], (y - m[:, None]) ** 2, 0.0)).sum(axis=1)
    df = float((n - 1).sum())
    ss_total = float(ss.sum())

    def f(x):
        pi = special.expit(x[0])
        tau2 = math.exp(2 * min(x[4], 5.0))
        ve = math.exp(2 * min(x[2], 5.0)) + tau2 / n
        vn = math.exp(2 * min(x[3], 5.0)) + tau2 / n
        le = math.log(pi) - 0.5 * (np.log(2 * math.pi * ve) + (m - x[5] - x[1]) ** 2 / ve)
        ln = math.log1p(-pi) - 0.5 * (np.log(2 * math.pi * vn) + (m - x[5]) ** 2 / vn)
        ll = float(np.logaddexp(le, ln).sum()) \
            - 0.5 * (df * math.log(2 * math.pi * tau2) + ss_total / tau2)
        return -(ll + _log_prior(MATRIX_NAMES, x[:5], priors))

    return f, m


def matrix_posterior(matrix: np.ndarray, priors: dict, seed: np.random.SeedSequence,
                     n_draws: int = MATRIX_DRAWS) -> tuple[dict, np.ndarray, float]:
    """Weighted posterior draws (name -> unconstrained draws), their weights and the
    offset's posterior mean, from a genes x cell lines matrix."""
    f, m = matrix_objective(matrix, priors)
    x0 = np.array([_unconstrained(k, _prior_centre(priors[k])) for k in MATRIX_NAMES]
                  + [float(np.median(m))])
    ys, w, _, _ = laplace_draws(f, x0, n_draws, seed)
    draws = {k: ys[:, i] for i, k in enumerate(MATRIX_NAMES)}
    return draws, w, float((w * ys[:, 5]).sum())


def _prior_centre(prior) -> float:
    family, p = prior
    if family == "Beta":
        return p["alpha"] / (p["alpha"] + p["beta"])
    return p["mu"] if family == "Normal" else math.exp(p["mu"])


# --- count tables ------------------------------------------------------------------------
@dataclass
class CountArrays:
    """A count pilot as the shortcut's arrays: t0 (G, K) (the reference samples summed),
    counts (C, R, G, K), and what was left out to make the layout balanced."""

    t0: np.ndarray
    counts: np.ndarray
    genes: list[str]
    cell_lines: list[str]
    n_references: int
    notes: list[str] = field(default_factory=list)


def count_arrays(screen) -> CountArrays:
    """A :class:`sbc.readers.CountScreen` as balanced arrays: K = the usual number of guides
    per gene (genes with fewer are left out, those with more keep their first K), R = the
    fewest replicates of any cell line (the others keep their first R), control "genes"
    (non-targeting, intergenic, safe-harbour, ...) left out; every choice is noted."""
    where = f"pilot count table {screen.source}"
    notes = []
    gene_of = screen.guide_gene
    controls = sorted({g for g in gene_of.unique() if CONTROL_GENE.search(str(g))})
    if controls:
        notes.append(f"{int(gene_of.isin(controls).sum())} control guides left out "
                     f"({', '.join(controls[:3])}{', ...' if len(controls) > 3 else ''})")
    targeting = gene_of[~gene_of.isin(controls)]
    per_gene = targeting.groupby(targeting, sort=False).size()
    if per_gene.empty:
        raise DataError(f"{where}: no targeting guides (every Gene looks like a control)")
    K = int(per_gene.mode().max())
    genes = [g for g, n in per_gene.items() if n >= K]
    dropped = len(per_gene) - len(genes)
    if dropped:
        notes.append(f"{dropped} genes with fewer than {K} guides left out")
    if (per_gene > K).any():
        notes.append(f"{int((per_gene > K).sum())} genes with more than {K} guides keep their "
                     f"first {K}")
    if len(genes) < MIN_GENES:
        raise DataError(f"{where}: only {len(genes)} genes with {K} guides each; a pilot "
                        f"needs at least {MIN_GENES} genes to inform a two-class mixture of "
                        "gene effects")
    guides = targeting[targeting.isin(genes)]
    first = guides.groupby(guides, sort=False).head(K)  # the first K guides of each gene
    order = first.map({g: i for i, g in enumerate(genes)}).to_numpy()
    rows = first.index[np.argsort(order, kind="stable")]  # gene-major, file order within
    table = screen.counts.loc[rows]
    sheet = screen.samples
    refs = list(sheet.loc[sheet["role"] == "reference", "sample"])
    ends = sheet[sheet["role"] == "end"].copy()
    ends["_rep"] = ends.groupby("cell_line", sort=False).cumcount()
    per_line = ends.groupby("cell_line", sort=False).size()
    R = int(per_line.min())
    if (per_line > R).any():
        notes.append(f"cell lines with more than {R} replicates keep their first {R}")
    lines = list(per_line.index)
    G = len(genes)
    t0 = table[refs].to_numpy().sum(axis=1).reshape(G, K)
    counts = np.zeros((len(lines), R, G, K), dtype=np.int64)
    for c, line in enumerate(lines):
        samples = list(ends.loc[ends["cell_line"] == line, "sample"])[:R]
        for r, sample in enumerate(samples):
            counts[c, r] = table[sample].to_numpy().reshape(G, K)
    if len(refs) > 1:
        notes.append(f"the {len(refs)} reference samples summed as the library's T0 counts")
    return CountArrays(t0, counts, genes, lines, len(refs), notes)


def library_sd(t0: np.ndarray) -> float:
    """The sd of the library's log abundance (natural log) from the T0 counts: their log
    variance less the Poisson part, ``Var log(t0 + 1/2) - mean 1 / (t0 + 1/2)``."""
    x = np.asarray(t0, float).ravel() + 0.5
    return float(math.sqrt(max(np.log(x).var() - (1.0 / x).mean(), 1e-6)))


def replicate_sd_se(obs: gm.Observations) -> float:
    """Standard error of ``log sigma_rep`` from :func:`sbc.plan.genome_fit.replicate_sd`: the
    mean excess variance averaged per gene, its standard error over genes, by the delta
    method (sd of log sigma = se of sigma^2 / (2 sigma^2))."""
    R = obs.y.shape[2]
    ss = ((obs.y - obs.y.mean(axis=2, keepdims=True)) ** 2).sum(axis=2)
    excess = ((ss / (1 - 1 / R) - obs.vcount.sum(axis=2)) / R).mean(axis=(1, 2))
    mean = max(float(excess.mean()), 1e-8)
    return float(excess.std(ddof=1) / math.sqrt(len(excess)) / (2 * mean))


def count_posterior(arrays: CountArrays, priors: dict, seed: np.random.SeedSequence,
                    notes: list[str]) -> tuple[dict, dict, float]:
    """(name -> (unconstrained draws, weights)) of every hyperparameter the counts inform,
    the library's numbers, and the importance ESS of the class draws."""
    C, R, G, K = arrays.counts.shape
    obs = gm.observations(arrays.t0, arrays.counts, np.zeros(C), 0)
    s_sub, s_draw = seed.spawn(2)
    sub = np.arange(G) if G <= SUBLIBRARY else np.sort(
        np.random.default_rng(s_sub).choice(G, SUBLIBRARY, replace=False))
    fixed_rep = None
    if R < 2:
        fixed_rep = math.exp(priors["sigma_rep"][1]["mu"])
        notes.append("one replicate per cell line: sigma_rep is not informed (kept from the "
                     "plan)")
    objective, start, sigma_rep = gm.hyper_objective(obs, sub, priors, fixed_rep)
    mode = gm._minimize(objective, start)
    H = gm._hessian(objective, mode)
    vals, vecs = np.linalg.eigh(H)
    cov = (vecs / np.maximum(vals, 1e-8)) @ vecs.T
    x = np.insert(mode, 6, math.log(sigma_rep))
    # stage 2: the class hyperparameters on every gene, the variance ones at stage 1's mode
    h0, _ = gm._unpack(x)
    affine = gm._reduce(gm._sums(obs, np.arange(G), sigma_rep), obs.v0, np.ones((C, 1)), h0)
    draws, omega = gm.class_hyper_draws(x, affine, priors, COUNT_DRAWS, s_draw)
    ys = np.array(draws)
    out = {}
    for i, name in enumerate(HYPER):
        if i in gm.MIXTURE:
            out[name] = (ys[:, i], omega)
    # the variance hyperparameters: stage 1's Laplace marginals (free coordinates 4 and 5
    # are log tau and log sigma_guide: only log sigma_rep, index 6, is left out before them)
    for i, name in ((4, "tau"), (5, "sigma_guide")):
        out[name] = _normal_points(x[i], math.sqrt(max(cov[i, i], 1e-12)))
    if R >= 2:
        out["sigma_rep"] = _normal_points(x[6], replicate_sd_se(obs))
    reads = arrays.counts.sum(axis=(2, 3)) / (G * K)
    library = {LIBRARY_SD: library_sd(arrays.t0),
               "t0_reads_per_guide": float(arrays.t0.sum() / (G * K) / arrays.n_references),
               "reads_per_guide": float(reads.mean()),
               "reads_per_guide_range": [float(reads.min()), float(reads.max())],
               "nb_dispersion": float((sigma_rep * gm.LN2) ** 2),
               "guides_per_gene": K, "sublibrary_genes": len(sub)}
    return out, library, _ess(omega)


# --- from a file to priors ---------------------------------------------------------------
def file_digest(*paths) -> str:
    """sha256 of the files' contents (the pilot and its sample sheet), for the fingerprint."""
    h = hashlib.sha256()
    for p in paths:
        if p is not None:
            h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def derive_pilot_priors(data, samples=None, priors: dict | None = None, *, widen: float = 1.0,
                        use=None, seed: int = 0) -> PilotPriors:
    """The guide model's hyperpriors given a pilot screen (module docstring).

    Parameters
    ----------
    data : path of a gene-effect matrix, long logfc CSV or MAGeCK count table (``.gz`` too),
        or an :class:`sbc.readers.Screen` already read.
    samples : the count table's sample sheet (see :func:`sbc.readers.read_counts`).
    priors : the plan's priors (the pilot posterior is taken under them); default the model's.
    widen : scales the matched sds (1: the pilot's posterior).
    use : names among the hyperparameters and ``library_sd`` to take from the pilot
        (default: all it informs).
    seed : the plan's seed (the importance draws).
    """
    base = dict(priors or guide_model().PRIORS)
    if isinstance(data, Screen):
        screen, digest = data, "in memory"
    else:
        screen = read_screen(data, samples)
        digest = file_digest(data, samples)
    root = seeding.genome_pilot(seed)
    notes = list(screen.notes)
    if screen.format == "counts":
        arrays = count_arrays(screen)
        notes += arrays.notes
        draws, library, ess = count_posterior(arrays, base, root, notes)
        C, R, G, K = arrays.counts.shape
        shape = dict(zip(SHAPE_NAMES, (C, G, R, K)))
    else:
        matrix = screen.matrix().to_numpy(float)
        G, C = matrix.shape
        if G < MIN_GENES or C < 2:
            raise DataError(f"pilot {screen.source}: {G} genes x {C} cell lines; a pilot needs "
                            f"at least {MIN_GENES} genes and 2 cell lines to inform the mixture "
                            "of gene effects and their spread across cell lines")
        if screen.n_reps > 1:
            notes.append(f"{screen.n_reps} replicates per cell line and gene averaged; tau "
                         "includes their noise")
        notes.append("tau from a matrix includes the pilot's own measurement noise (an upper "
                     "bound); sigma_guide, sigma_rep and the library are not informed")
        u, w, offset = matrix_posterior(matrix, base, root)
        draws = {k: (u[k], w) for k in MATRIX_NAMES}
        ess = _ess(w)
        library = {"offset": offset}
        shape = {"cell lines": C, "genes": G}
        if ess < 50:
            notes.append(f"importance ESS only {ess:.0f} of {len(w)}: the Laplace proposal "
                         "fits the posterior poorly; the matched sds are approximate")
    informed = tuple(k for k in HYPER if k in draws) + \
        ((LIBRARY_SD,) if LIBRARY_SD in library else ())
    used = informed if use is None else tuple(k for k in informed if k in use)
    matched = {k: matched_prior(k, *draws[k], widen) for k in HYPER if k in draws and k in used}
    posterior = {k: _posterior_row(k, *draws[k]) for k in HYPER if k in draws}
    return PilotPriors(source=str(screen.source), format=screen.format, sha256=digest,
                       shape=shape, priors=matched, base=base, posterior=posterior,
                       library=library, informed=informed, used=used,
                       importance_ess=float(ess), widen=float(widen), notes=tuple(notes))


def apply_pilot(plan):
    """A genome plan with its ``[pilot]`` applied: (the plan with the pilot's priors, and
    library sd where informed, as both its design and analysis priors; the
    :class:`PilotPriors`).  A plan without a pilot is returned as is, with None."""
    pilot = plan.pilot
    if pilot is None:
        return plan, None
    base_dir = Path(plan.base_dir)
    data = base_dir / pilot.data
    samples = base_dir / pilot.samples if pilot.samples else None
    try:
        info = derive_pilot_priors(data, samples, plan.priors or None, widen=pilot.widen,
                                   use=pilot.use, seed=plan.seed)
    except DataError as exc:
        raise DataError(f"plan '{plan.name}': [pilot] data = {pilot.data!r}"
                        + (f", samples = {pilot.samples!r}" if pilot.samples else "")
                        + f": {exc}") from None
    if pilot.use is not None:
        unused = [k for k in pilot.use if k not in info.informed]
        if unused:
            raise StudyError(f"plan '{plan.name}': [pilot] use lists {', '.join(unused)}, which "
                             f"a {info.format.replace('_', '-')} pilot does not inform (it "
                             f"informs {', '.join(info.informed)}); remove them")
    priors = {**info.base, **info.priors}
    changes = {"priors": priors}
    if LIBRARY_SD in info.used:
        changes["library_sd"] = round(float(info.library[LIBRARY_SD]), 6)
        info = replace(info, library={**info.library, "replaced_library_sd": plan.library_sd})
    return replace(plan, **changes), info


# --- simulated screens as MAGeCK files ---------------------------------------------------
@dataclass(frozen=True)
class MageckFiles:
    """A simulated screen written as MAGeCK files: the count table, the sample sheet and the
    truths it was simulated from (``hyper``: the hyperparameters; ``essential``, ``beta_g``
    per gene, in the table's gene order)."""

    counts: Path
    samples: Path
    truth: dict


def write_mageck(design: ScreenDesign, settings: GenomeSettings, path, rep: int = 0,
                 samples=None) -> MageckFiles:
    """Write replicate ``rep`` of ``design`` (simulated by the guide model, exactly as the
    genome planner simulates it: :func:`sbc.plan.genome_screen.simulate`) as a MAGeCK count table
    (tab-separated: ``sgRNA``, ``Gene``, ``T0`` (the library), then ``CL01_rep1`` ... one
    column per cell line and replicate screen; gzipped when ``path`` ends in ``.gz``) and a
    sample sheet (``sample``, ``role``, ``cell_line``, ``replicate``; default path: the
    table's name up to its first dot, with ``_samples.csv``).
    Genes are ``G00001`` ...; guides ``G00001_1`` ...; the candidates (if the settings
    have any) are the last genes.  Returns the paths and the truths."""
    path = Path(path)
    samples = Path(samples) if samples else path.with_name(
        path.name.split(".")[0] + "_samples.csv")
    truth, t0, counts, _ = simulate(design, rep, settings)
    C, R, G, K = counts.shape
    width = max(5, len(str(G)))
    genes = [f"G{g + 1:0{width}d}" for g in range(G)]
    lines = [f"CL{c + 1:02d}" for c in range(C)]
    names = [f"{lines[c]}_rep{r + 1}" for c in range(C) for r in range(R)]
    columns = [t0.reshape(-1)] + [counts[c, r].reshape(-1) for c in range(C) for r in range(R)]
    body = np.stack(columns, axis=1)
    out = ["\t".join(["sgRNA", "Gene", "T0", *names])]
    for i in range(G * K):
        g, k = divmod(i, K)
        out.append(f"{genes[g]}_{k + 1}\t{genes[g]}\t" + "\t".join(map(str, body[i])))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("\n".join(out) + "\n").encode()
    # gzip without a time stamp: the same screen gives the same bytes (and file hash)
    path.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)
    sheet = ["sample,role,cell_line,replicate", "T0,reference,,"]
    sheet += [f"{lines[c]}_rep{r + 1},end,{lines[c]},{r + 1}" for c in range(C) for r in range(R)]
    samples.write_text("\n".join(sheet) + "\n")
    return MageckFiles(path, samples, {
        "hyper": truth["hyper"], "essential": truth["essential"].tolist(),
        "beta_g": truth["beta_g"].tolist(), "genes": genes, "library_sd": settings.library_sd,
        "depth": design.depth, "t0_depth": settings.t0_depth})
