"""The genome shortcut's mathematics: a screen's guide counts to every gene's posterior under
the guide-level screen model (``models/crispr_guides.py``), in seconds per genome-scale
screen.  The types it works for are :mod:`sbc.plan.genome`; simulating, fitting and
scoring one screen with it is :mod:`sbc.plan.genome_screen`.

The shortcut, and why it is exact given the hyperparameters:

1. **Counts to log fold changes.**  Each guide's log2 fold change
   ``y = log2((n + 1/2) / N_cr) - log2((t0 + 1/2) / N_0)`` has, by the delta method, variance
   ``1 / (n ln(2)^2) + sigma_rep^2`` (negative binomial counts), and shares its library
   count's noise ``1 / (t0 ln(2)^2)`` across every sample, so that noise joins the guide's
   offset ``d_gk``.  Each sample's normalisation is its median ``y`` (relative to the others)
   plus one global offset fitted with the hyperparameters.  This Gaussian approximation is
   what SBC checks below: the data are simulated as counts.
2. **Genes are independent given the hyperparameters.**  Given (pi, mu_essential,
   sigma_essential, sigma_gene, tau, sigma_guide, sigma_rep), a gene's data depend only on
   its own effect, its selective effect (candidates), its C cell-line deviations and its K
   guide offsets: a linear Gaussian model with known variances, for each of its two classes
   (essential or not).  Its posterior and marginal likelihood are closed form.  The C
   deviations have a diagonal prior precision plus a diagonal data block, so they are
   eliminated by a Schur complement: what is left is a (1 + K)-dimensional system per gene
   and class (2 + K for candidates), solved for all genes at once (vectorised numpy).  The
   posterior of the gene effect is then a mixture of two Gaussians, weighted by the class
   marginal likelihoods: P(essential | data) is exact given the hyperparameters.
3. **Hyperparameters from a sub-library.**  The hyperparameters are set to their posterior
   mode under the model's hyperpriors, from the collapsed likelihood of step 2 summed over a
   random sub-library (200-1,000 genes, about 100,000 guide observations; no candidates);
   ``sigma_rep`` first, from the replicates (:func:`replicate_sd`).  Then the class
   hyperparameters (pi, mu_essential, sigma_essential, sigma_gene) and the offset are
   refitted on every gene, which costs scalar work per gene (the classes differ by a
   rank-one change, Sherman-Morrison), and their uncertainty is kept: a Laplace
   approximation proposes draws, importance-weighted by the exact posterior, and each gene's
   posterior is the mixture over the draws.  The variance hyperparameters (tau, sigma_guide,
   sigma_rep), known to about 2 % from the sub-library, are plugged in.  That this leaves
   the gene-level posteriors calibrated is the claim SBC tests
   (``tests/validation/test_genome_validation.py``), against full NUTS on the count model.

The Schur complement and the mixture over classes and hyperparameter draws are written here
because no kept library offers batched conditional-Gaussian posteriors for crossed effects;
the optimiser is SciPy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from sbc.plan.genome import HYPER, guide_model

LN2 = math.log(2.0)
LOG2PI = math.log(2.0 * math.pi)


# --- counts to observations --------------------------------------------------------------
@dataclass
class Observations:
    """A screen's guide log2 fold changes, gene-major: ``y`` and ``vcount`` (G, C, R, K),
    ``v0`` (G, K) the library count's variance, ``x`` (C,) the marker lines."""

    y: np.ndarray
    vcount: np.ndarray
    v0: np.ndarray
    x: np.ndarray
    n_candidates: int


def observations(t0: np.ndarray, counts: np.ndarray, x: np.ndarray,
                 n_candidates: int) -> Observations:
    n_cr = counts.sum(axis=(2, 3), dtype=float)
    y = np.log2(counts + 0.5) - np.log2(n_cr)[:, :, None, None] \
        - (np.log2(t0 + 0.5) - math.log2(t0.sum()))[None, None]
    med = np.median(y.reshape(y.shape[0], y.shape[1], -1), axis=2)
    y -= (med - med.mean())[:, :, None, None]
    vcount = 1.0 / ((counts + 0.5) * LN2**2)
    return Observations(np.ascontiguousarray(y.transpose(2, 0, 1, 3)),
                        np.ascontiguousarray(vcount.transpose(2, 0, 1, 3)),
                        1.0 / ((t0 + 0.5) * LN2**2), x, n_candidates)


# --- the collapsed gene model ------------------------------------------------------------
@dataclass
class _Sums:
    """A screen's per-gene weighted sums at one ``sigma_rep`` (the only hyperparameter that
    changes observation weights), so the global offset enters in closed form:
    ``S = Sy - offset W`` and ``Q = Qyy - 2 offset Sy + offset^2 W``, summed."""

    W: np.ndarray       # (G, C, K) summed weights over replicates
    Sy: np.ndarray      # (G, C, K) summed weighted y
    Qyy: np.ndarray     # (G,)
    logv: np.ndarray    # (G,)
    n_obs: int


def _sums(obs: Observations, genes, sigma_rep: float) -> _Sums:
    v = obs.vcount[genes] + sigma_rep**2
    w = 1.0 / v
    wy = w * obs.y[genes]
    return _Sums(w.sum(axis=2), wy.sum(axis=2), (wy * obs.y[genes]).sum(axis=(1, 2, 3)),
                 np.log(v).sum(axis=(1, 2, 3)), v.shape[1] * v.shape[2] * v.shape[3])


@dataclass
class _Reduced:
    """Per gene, after the cell-line deviations are eliminated (Schur complement) and the
    class-free priors added: the fixed block's (gene effect, [selective effect], guide
    offsets) precision ``P0`` without the gene effect's prior, its inverse, the shift ``b0``
    and the pieces to recover the deviations.  The two classes differ only in the gene
    effect's prior, a rank-one change of ``P0`` (``_class``)."""

    Pinv: np.ndarray     # (G, E, E) inverse of P0
    q: np.ndarray        # (G, E) Pinv b0
    logdet: np.ndarray   # (G,) log det P0
    kappa: np.ndarray    # (G,) b0' Pinv b0
    Du: np.ndarray       # (G, C)
    B: np.ndarray        # (G, C, E)
    Sc: np.ndarray       # (G, C)
    const: np.ndarray    # (G,) the class-free part of -2 log marginal likelihood


@dataclass
class _Affine:
    """:class:`_Reduced` as a function of the global offset o: the data enter as
    ``z = y - o``, so the shift is affine in o and the quadratic terms quadratic; ``at(o)``
    costs vector work per gene, no factorisation (the offset is refitted on every gene)."""

    Pinv: np.ndarray
    logdet: np.ndarray
    Du: np.ndarray
    B: np.ndarray
    q: tuple[np.ndarray, np.ndarray]       # Pinv b0 = q[0] - o q[1]
    kappa: tuple[np.ndarray, ...]          # b0' Pinv b0 = k0 - 2 o k1 + o^2 k2
    Sc: tuple[np.ndarray, np.ndarray]      # Sc = Sc[0] - o Sc[1]
    quad: tuple[np.ndarray, ...]           # Q - sum Sc^2 / Du = t0 - 2 o t1 + o^2 t2
    const: np.ndarray                      # the rest of the class-free part

    def at(self, offset: float) -> _Reduced:
        k0, k1, k2 = self.kappa
        t0, t1, t2 = self.quad
        return _Reduced(self.Pinv, self.q[0] - offset * self.q[1], self.logdet,
                        k0 - 2 * offset * k1 + offset**2 * k2, self.Du, self.B,
                        self.Sc[0] - offset * self.Sc[1],
                        self.const + t0 - 2 * offset * t1 + offset**2 * t2)


def _reduce(sums: _Sums, v0: np.ndarray, F: np.ndarray, h: dict,
            extra_prec: float = 0.0) -> _Affine:
    """``F`` (C, nf): the fixed covariates per cell line (1, and the marker for candidates,
    whose selective effect has prior precision ``extra_prec``)."""
    W, Sy = sums.W, sums.Sy
    gvar = h["sigma_guide"] ** 2 + v0                                # (G, K)
    Wc, Wk = W.sum(axis=2), W.sum(axis=1)
    nf, K = F.shape[1], W.shape[2]
    E = nf + K
    A = np.zeros((W.shape[0], E, E))
    A[:, :nf, :nf] = np.einsum("gc,cf,ch->gfh", Wc, F, F)
    A[:, :nf, nf:] = np.einsum("gck,cf->gfk", W, F)
    A[:, nf:, :nf] = A[:, :nf, nf:].transpose(0, 2, 1)
    idx = np.arange(nf, E)
    A[:, idx, idx] = Wk + 1.0 / gvar
    A[:, np.arange(1, nf), np.arange(1, nf)] += extra_prec
    B = np.concatenate([Wc[:, :, None] * F[None], W], axis=2)       # (G, C, E)
    Du = Wc + 1.0 / h["tau"] ** 2
    BD = B / Du[:, :, None]
    P0 = A - BD.transpose(0, 2, 1) @ B
    Pinv = np.linalg.inv(P0)

    def shift(S):  # b0 for data sums S (G, C, K); linear in S
        return np.concatenate([np.einsum("gck,cf->gf", S, F), S.sum(axis=1)], axis=1) \
            - np.einsum("gce,gc->ge", BD, S.sum(axis=2))

    by, bw = shift(Sy), shift(W)
    qy, qw = (Pinv @ by[:, :, None])[:, :, 0], (Pinv @ bw[:, :, None])[:, :, 0]
    Syc = Sy.sum(axis=2)
    quad = (sums.Qyy - (Syc**2 / Du).sum(axis=1),
            Sy.sum(axis=(1, 2)) - (Syc * Wc / Du).sum(axis=1),
            W.sum(axis=(1, 2)) - (Wc**2 / Du).sum(axis=1))
    C = W.shape[1]
    const = (sums.n_obs * LOG2PI + sums.logv + C * math.log(h["tau"] ** 2)
             + np.log(gvar).sum(axis=1) + np.log(Du).sum(axis=1)
             - (nf - 1) * math.log(extra_prec or 1.0))
    return _Affine(Pinv, np.linalg.slogdet(P0)[1], Du, B, (qy, qw),
                   ((by * qy).sum(axis=1), (by * qw).sum(axis=1), (bw * qw).sum(axis=1)),
                   (Syc, Wc), quad, const)


@dataclass
class _Class:
    """One class (essential or not) of every gene: the log marginal likelihood, and the
    posterior mean and variance of the gene effect; ``c``, ``m``: the class prior's
    precision and mean (for :meth:`fixed_block`)."""

    logml: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    c: float
    m: float

    def fixed_block(self, red: _Reduced, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (G, E) and covariance (G, E, E) of the whole fixed block, for the
        first ``n`` genes (all by default)."""
        Pinv, q = red.Pinv[:n], red.q[:n]
        col = Pinv[:, :, 0]
        a = Pinv[:, 0, 0]
        mean = q + col * (self.c * self.m - self.c * (q[:, 0] + self.c * self.m * a)
                          / (1 + self.c * a))[:, None]
        cov = Pinv - self.c * col[:, :, None] * col[:, None, :] / (1 + self.c * a)[:, None, None]
        return mean, cov


def _class(red: _Reduced, m: float, sd: float) -> _Class:
    """The gene effect's prior N(m, sd) added to P0 as a rank-one update (Sherman-Morrison):
    every quantity is a scalar per gene."""
    c = 1.0 / sd**2
    a, g = red.Pinv[:, 0, 0], red.q[:, 0]
    one = 1.0 + c * a
    quad = red.kappa + 2 * c * m * g + c**2 * m**2 * a - c * (g + c * m * a) ** 2 / one
    logml = -0.5 * (red.const + math.log(sd**2) + red.logdet + np.log(one) + c * m**2 - quad)
    return _Class(logml, (g + c * m * a) / one, a / one, c, m)


def _classes(red: _Reduced, h: dict) -> tuple[_Class, _Class]:
    """(essential, non-essential)."""
    return (_class(red, h["mu_essential"], h["sigma_essential"]),
            _class(red, 0.0, h["sigma_gene"]))


def _weights(ess: _Class, non: _Class, pi: float) -> np.ndarray:
    """P(essential | data) per gene."""
    return special.expit(math.log(pi) - math.log1p(-pi) + ess.logml - non.logml)


def _mixture_loglik(ess: _Class, non: _Class, pi: float) -> float:
    return float(np.logaddexp(math.log(pi) + ess.logml, math.log1p(-pi) + non.logml).sum())


# --- hyperparameters ---------------------------------------------------------------------
MIXTURE = (0, 1, 2, 3, 7)   # logit pi, mu_essential, log sigma_essential, log sigma_gene, offset
VARIANCE = (4, 5, 6)        # log tau, log sigma_guide, log sigma_rep


def _unpack(x: np.ndarray) -> tuple[dict, float]:
    h = {"pi_essential": float(special.expit(x[0])), "mu_essential": float(x[1])}
    for i, name in enumerate(HYPER[2:], start=2):
        h[name] = float(math.exp(min(x[i], 5.0)))
    return h, float(x[7])


def _log_prior(x: np.ndarray, priors: dict) -> float:
    """Log hyperprior on the unconstrained scale (logit pi, mu, log sds; the offset flat)."""
    total = 0.0
    for i, name in enumerate(HYPER):
        family, p = priors[name]
        value = x[i]
        if family == "Beta":
            total += (p["alpha"] * -np.logaddexp(0, -value) + p["beta"] * -np.logaddexp(0, value))
        else:
            total += -0.5 * ((value - p["mu"]) / p["sigma"]) ** 2
    return float(total)


def _start(priors: dict, offset: float) -> np.ndarray:
    x = np.zeros(8)
    for i, name in enumerate(HYPER):
        family, p = priors[name]
        x[i] = math.log(p["alpha"] / p["beta"]) if family == "Beta" else p["mu"]
    x[7] = offset
    return x


def _minimize(objective, x0: np.ndarray) -> np.ndarray:
    res = optimize.minimize(lambda x: (lambda v: v if np.isfinite(v) else 1e300)(objective(x)),
                            x0, method="L-BFGS-B",
                            options={"maxiter": 300, "ftol": 1e-10, "gtol": 1e-5})
    return res.x


def replicate_sd(obs: Observations) -> float:
    """``sigma_rep`` from the replicates of every guide in every cell line (a moment
    estimate that none of the gene, guide, deviation or library terms enter): with R
    replicates of variances ``vcount_r + sigma_rep^2``, the expected within-guide sum of
    squares is ``(1 - 1/R) (sum_r vcount_r + R sigma_rep^2)``.  From millions of guide
    observations it is known far more precisely than any other hyperparameter, so stage 1
    holds it fixed (which spares recomputing every weight at each step)."""
    R = obs.y.shape[2]
    ss = ((obs.y - obs.y.mean(axis=2, keepdims=True)) ** 2).sum(axis=2)
    excess = (ss / (1 - 1 / R) - obs.vcount.sum(axis=2)) / R
    return float(math.sqrt(max(float(excess.mean()), 1e-8)))


def hyper_objective(obs: Observations, genes: np.ndarray, priors: dict,
                    sigma_rep: float | None = None):
    """Stage 1's objective: minus the log posterior of the hyperparameters and the global
    offset from the collapsed likelihood of the sub-library ``genes``, ``sigma_rep`` held
    at the replicates' estimate (:func:`replicate_sd`) unless given.  Returns (objective of
    the 7 free coordinates, the starting point, sigma_rep); the free coordinates are the
    unconstrained vector without its ``log sigma_rep`` entry (index 6)."""
    F = np.ones((obs.y.shape[1], 1))
    v0 = obs.v0[genes]
    sigma_rep = replicate_sd(obs) if sigma_rep is None else float(sigma_rep)
    sums = _sums(obs, genes, sigma_rep)
    free = [i for i in range(8) if i != 6]
    reduced: dict[tuple, _Affine] = {}

    def objective(y):
        x = np.insert(y, 6, math.log(sigma_rep))
        h, offset = _unpack(x)
        key = tuple(x[list(VARIANCE)])
        if key not in reduced:  # a step in the class hyperparameters or offset reuses it
            reduced.clear()
            reduced[key] = _reduce(sums, v0, F, h)
        red = reduced[key].at(offset)
        return -(_mixture_loglik(*_classes(red, h), h["pi_essential"]) + _log_prior(x, priors))

    start = _start(priors, float(np.median(obs.y[genes])))
    return objective, start[free], sigma_rep


def fit_hyper(obs: Observations, genes: np.ndarray, priors: dict,
              sigma_rep: float | None = None) -> np.ndarray:
    """Stage 1: ``sigma_rep`` from the replicates (:func:`replicate_sd`; or as given, e.g.
    for a pilot screen without replicates), then the posterior mode of the other
    hyperparameters and the global offset, from the collapsed likelihood of the
    sub-library ``genes`` (non-candidates).  Returns the unconstrained vector."""
    objective, start, sigma_rep = hyper_objective(obs, genes, priors, sigma_rep)
    return np.insert(_minimize(objective, start), 6, math.log(sigma_rep))


def _mixture_objective(x: np.ndarray, red: _Affine, priors: dict):
    """Minus the log posterior of the class hyperparameters (unconstrained) and the
    offset, the variance hyperparameters held at ``x``."""
    def objective(y):
        full = x.copy()
        full[list(MIXTURE)] = y
        h, offset = _unpack(full)
        return -(_mixture_loglik(*_classes(red.at(offset), h), h["pi_essential"])
                 + _log_prior(full, priors))

    return objective


def _hessian(f, y: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian of a cheap scalar function."""
    n = len(y)
    H = np.empty((n, n))
    eye = np.eye(n) * step
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (f(y + eye[i] + eye[j]) - f(y + eye[i] - eye[j])
                                 - f(y - eye[i] + eye[j]) + f(y - eye[i] - eye[j])) / (4 * step**2)
    return H


def class_hyper_draws(x: np.ndarray, red: _Affine, priors: dict, n_draws: int,
                      seed: np.random.SeedSequence) -> tuple[list[np.ndarray], np.ndarray]:
    """Stage 2: the posterior of the class hyperparameters and the offset from every
    non-candidate gene, the variance hyperparameters held at stage 1's mode.  Its mode and
    a Laplace approximation propose ``n_draws`` draws, importance-weighted by the exact
    posterior (each evaluation is scalar work per gene).  Returns (full hyperparameter vectors, weights)."""
    f = _mixture_objective(x, red, priors)
    mode = _minimize(f, x[list(MIXTURE)])
    H = _hessian(f, mode)
    vals, vecs = np.linalg.eigh(H)
    cov = (vecs / np.maximum(vals, 1e-8)) @ vecs.T
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(cov)
    z = rng.standard_normal((n_draws, len(mode)))
    ys = mode + z @ L.T
    logq = -0.5 * (z**2).sum(axis=1)
    logp = -np.array([f(y) for y in ys])
    logw = logp - logq
    w = np.exp(logw - logw.max())
    draws = []
    for y in ys:
        full = x.copy()
        full[list(MIXTURE)] = y
        draws.append(full)
    return draws, w / w.sum()


# --- gene posteriors ---------------------------------------------------------------------
@dataclass
class GenePosterior:
    """Every gene's posterior, a mixture over hyperparameter draws and the gene's two
    classes: P(essential), and the gene effect's Gaussian components (weights ``w``, means
    ``m``, sds ``s``: (G, M)); for candidates the same of the selective effect (``gw``,
    ``gm``, ``gs``); for the first ``n_pit`` genes of the cell-line deviations (``uw``,
    ``um``, ``us``: (n_pit, C, M)).  ``hyper``: the hyperparameters' posterior mean.
    Per hyperparameter draw, its weight and the sums of P and P (1 - P) over genes:
    ``draw_weights`` (D,), ``draw_counts`` (D, 2) (:meth:`essential_count`)."""

    p_ess: np.ndarray
    w: np.ndarray
    m: np.ndarray
    s: np.ndarray
    gw: np.ndarray
    gm: np.ndarray
    gs: np.ndarray
    uw: np.ndarray
    um: np.ndarray
    us: np.ndarray
    hyper: dict
    offset: float
    ess: float   # effective sample size of the importance weights
    draw_weights: np.ndarray | None = None   # None: a posterior from elsewhere (NUTS)
    draw_counts: np.ndarray | None = None

    def mean(self) -> np.ndarray:
        return (self.w * self.m).sum(axis=1)

    def essential_count(self) -> tuple[float, float]:
        """Posterior mean and variance of the number of essential genes: independent
        Bernoullis given the hyperparameters, so over their draws (law of total variance)
        ``Var N = E[sum p (1 - p) | h] + Var(sum p | h)``; the second term, the genes'
        shared dependence on the hyperparameters, is why ``sum p (1 - p)`` alone (the
        answer without draws) understates it."""
        if self.draw_counts is None or self.draw_weights is None:
            return float(self.p_ess.sum()), float((self.p_ess * (1 - self.p_ess)).sum())
        om, (sums, within) = self.draw_weights, self.draw_counts.T
        mean = float(om @ sums)
        return mean, float(om @ within + om @ (sums - mean) ** 2)


def _u_moments(red: _Reduced, cls: _Class, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and sd of the first n genes' cell-line deviations in one class."""
    mean_f, cov_f = cls.fixed_block(red, n)  # only the genes asked for, not the library
    mean = (red.Sc[:n] - np.einsum("gce,ge->gc", red.B[:n], mean_f)) / red.Du[:n]
    BD = red.B[:n] / red.Du[:n, :, None]
    var = 1.0 / red.Du[:n] + np.einsum("gce,gef,gcf->gc", BD, cov_f, BD)
    return mean, np.sqrt(var)


def gene_posterior(obs: Observations, x: np.ndarray, priors: dict, n_pit: int,
                   n_draws: int, seed: np.random.SeedSequence) -> GenePosterior:
    """Every gene's posterior: stage 2 (:func:`class_hyper_draws`), then the conditional
    Gaussian classes of each gene for each draw, mixed with the importance weights."""
    G = obs.y.shape[0]
    n_c = obs.n_candidates
    plain = np.arange(G - n_c)
    h0, _ = _unpack(x)
    affine = _reduce(_sums(obs, plain, h0["sigma_rep"]), obs.v0[plain],
                     np.ones((len(obs.x), 1)), h0)
    affine_c = None
    if n_c:
        cand = np.arange(G - n_c, G)
        affine_c = _reduce(_sums(obs, cand, h0["sigma_rep"]), obs.v0[cand],
                           np.stack([np.ones_like(obs.x), obs.x], axis=1), h0,
                           extra_prec=1.0 / guide_model().SELECTIVE_SD**2)
    draws, omega = class_hyper_draws(x, affine, priors, n_draws, seed)
    n = min(n_pit, len(plain))
    W, M, S = [], [], []
    GW, GM, GS, UW, UM, US, counts = [], [], [], [], [], [], []
    hyper = {k: 0.0 for k in HYPER}
    mean_offset = 0.0
    for full, om in zip(draws, omega):
        h, offset = _unpack(full)
        for k in HYPER:
            hyper[k] += om * h[k]
        mean_offset += om * offset
        red = affine.at(offset)
        ess, non = _classes(red, h)
        p = _weights(ess, non, h["pi_essential"])
        if affine_c is not None:
            red_c = affine_c.at(offset)
            ess_c, non_c = _classes(red_c, h)
            p_c = _weights(ess_c, non_c, h["pi_essential"])
            p = np.concatenate([p, p_c])
            ess_m = np.concatenate([ess.mean, ess_c.mean])
            non_m = np.concatenate([non.mean, non_c.mean])
            ess_v = np.concatenate([ess.var, ess_c.var])
            non_v = np.concatenate([non.var, non_c.var])
            for cls, pw in ((ess_c, p_c), (non_c, 1 - p_c)):
                mean_f, cov_f = cls.fixed_block(red_c)
                GW.append(om * pw)
                GM.append(mean_f[:, 1])
                GS.append(np.sqrt(cov_f[:, 1, 1]))
        else:
            ess_m, non_m, ess_v, non_v = ess.mean, non.mean, ess.var, non.var
        counts.append((p.sum(), (p * (1 - p)).sum()))
        W += [om * p, om * (1 - p)]
        M += [ess_m, non_m]
        S += [np.sqrt(ess_v), np.sqrt(non_v)]
        for cls, pw in ((ess, p[:n]), (non, 1 - p[:n])):
            mu, sd = _u_moments(red, cls, n)
            UW.append(np.broadcast_to((om * pw)[:, None], mu.shape))
            UM.append(mu)
            US.append(sd)

    def stack(parts, shape):
        return np.stack(parts, axis=-1) if parts else np.empty(shape + (0,))

    w = stack(W, (G,))
    return GenePosterior(w[:, ::2].sum(axis=1), w, stack(M, (G,)), stack(S, (G,)),
                         stack(GW, (0,)), stack(GM, (0,)), stack(GS, (0,)),
                         stack(UW, (n, 0)), stack(UM, (n, 0)), stack(US, (n, 0)),
                         hyper, mean_offset, float(1.0 / (omega**2).sum()),
                         np.asarray(omega, float), np.array(counts, float).reshape(-1, 2))

