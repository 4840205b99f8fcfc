"""Model checks against real data (``sbc check``, ``sbc.check``): does the model describe my
screen?

SBC checks the computation against the model's own prior; it cannot say whether the model
describes real data.  This module fits each model to the data with the procedure an SBC
study certified (:func:`sbc.datafit.fit_data`) and asks three things of each fit:

1. **Posterior predictive checks** with statistics that matter for screens (table
   :data:`STATISTICS`): how much single genes vary across cell lines (largest, 90th and 10th
   percentile of the per-gene sd), the tails and skew of all values, the share of strongly
   negative effects (below -1: essential on the Chronos scale), and how the cell-line means
   spread.  Each statistic's two-sided posterior predictive p-value
   ``2 min(P(T_rep >= T_obs), P(T_rep <= T_obs))`` over the replicated data sets.
2. **LOO-PIT**: the leave-one-out probability integral transform of every value
   (arviz-stats ``loo_pit``), tested for uniformity with sbc's ECDF test
   (:func:`sbc.stats.uniformity_test`).
3. **Which genes and cell lines misfit**: each gene's sd across cell lines and each cell
   line's mean against their replicated distributions (z of the observed value among the
   replicated ones, on the log scale for sds; two-sided normal p-value, Bonferroni over the
   genes or cell lines at ``alpha``).

**Verdict.** *misfit* when any check of the family (the statistics and LOO-PIT) has a
p-value below ``alpha / family size`` (Bonferroni), naming the statistics, genes and cell
lines that misfit; else *adequate*.  Posterior predictive p-values are conservative (under
the model they concentrate around 1/2 rather than being uniform), so the rate of false
*misfit* verdicts for a model that describes the data is below ``alpha`` (5 % by default).
Models are compared by PSIS-LOO (arviz-stats ``loo`` and ``compare``), which also reports the
Pareto k diagnostics that say where LOO itself is unreliable.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import arviz_stats as azs
import numpy as np
import pandas as pd
from scipy import sparse, stats

from sbc.datafit import REPLICATED, DataFit, fit_data, procedure_of
from sbc.plots import loo_pit_figure, ppc_statistics_figure
from sbc.readers import Screen, as_screen
from sbc.render import check_page
from sbc.spec import resolve_model
from sbc.stats import failure_shape, uniformity_test

__all__ = ["STATISTICS", "CheckResult", "ModelCheck", "check", "screen_statistics"]

ALPHA = 0.05
_LOO_LOCK = threading.Lock()
STRONG = -1.0  # "strongly negative": essential on the Chronos scale (median essential = -1)


@dataclass(frozen=True)
class Statistic:
    name: str
    description: str
    compute: Callable  # (pairs (S, G, C) with NaN, values (S, N)) -> (S,)


def _gene_sd(pairs):
    return np.nanstd(pairs, axis=2, ddof=1)


def _cell_means(pairs):
    return np.nanmean(pairs, axis=1)


STATISTICS = (
    Statistic("gene_sd_max", "largest spread of one gene across cell lines (sd)",
              lambda p, v: np.nanmax(_gene_sd(p), axis=1)),
    Statistic("gene_sd_q90", "90th percentile of the per-gene sd",
              lambda p, v: np.nanquantile(_gene_sd(p), 0.9, axis=1)),
    Statistic("gene_sd_q10", "10th percentile of the per-gene sd",
              lambda p, v: np.nanquantile(_gene_sd(p), 0.1, axis=1)),
    Statistic("skewness", "skewness of all values",
              lambda p, v: stats.skew(v, axis=1)),
    Statistic("share_below_-1", "share of values below -1 (strongly negative)",
              lambda p, v: (v < STRONG).mean(axis=1)),
    Statistic("q01", "1st percentile of all values (lower tail)",
              lambda p, v: np.quantile(v, 0.01, axis=1)),
    Statistic("q99", "99th percentile of all values (upper tail)",
              lambda p, v: np.quantile(v, 0.99, axis=1)),
    Statistic("cell_mean_sd", "sd of the cell-line means",
              lambda p, v: np.nanstd(_cell_means(p), axis=1, ddof=1)),
    Statistic("cell_mean_min", "lowest cell-line mean",
              lambda p, v: np.nanmin(_cell_means(p), axis=1)),
)


def _pair_operator(frame: pd.DataFrame):
    """A sparse (N, G*C) operator averaging each (gene, cell line)'s replicates, and which
    pairs were measured."""
    g = frame["gene"].cat.codes.to_numpy().astype(np.int64)
    c = frame["cell_line"].cat.codes.to_numpy().astype(np.int64)
    n_g, n_c = len(frame["gene"].cat.categories), len(frame["cell_line"].cat.categories)
    pair = g * n_c + c
    count = np.bincount(pair, minlength=n_g * n_c)
    op = sparse.csr_matrix((1.0 / count[pair], (np.arange(len(frame)), pair)),
                           shape=(len(frame), n_g * n_c))
    return op, count > 0, (n_g, n_c)


def screen_statistics(values: np.ndarray, frame: pd.DataFrame,
                      chunk: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Every statistic of :data:`STATISTICS` for each row of ``values`` (S, N) laid out as
    ``frame`` (its gene and cell_line codes), with each gene's sd across cell lines (S, G)
    and each cell line's mean (S, C)."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    op, measured, (n_g, n_c) = _pair_operator(frame)
    if chunk is None:  # about 160 MB of gene x cell-line means at a time
        chunk = max(1, min(200, 20_000_000 // (n_g * n_c)))
    out = {s.name: [] for s in STATISTICS}
    gene_sd, cell_mean = [], []
    for start in range(0, len(values), chunk):
        v = values[start:start + chunk]
        pairs = np.asarray((op.T @ v.T).T)
        pairs[:, ~measured] = np.nan
        pairs = pairs.reshape(len(v), n_g, n_c)
        for s in STATISTICS:
            out[s.name].append(s.compute(pairs, v))
        gene_sd.append(_gene_sd(pairs))
        cell_mean.append(_cell_means(pairs))
    return ({k: np.concatenate(x) for k, x in out.items()}, np.concatenate(gene_sd),
            np.concatenate(cell_mean))


def needed_replicates(alpha: float) -> int:
    """Replicated data sets a check needs: the smallest posterior predictive p-value is
    2 / (S + 1), which must fall below alpha / family for a statistic to be able to misfit;
    twice that, so a misfit is not decided at the resolution's edge."""
    family = len(STATISTICS) + 1
    return int(2 * math.ceil(2 * family / alpha))


def ppp(observed: float, replicated: np.ndarray) -> float:
    """Two-sided posterior predictive p-value, ``2 min(P(T_rep >= T_obs), P(T_rep <= T_obs))``
    with the +1 of a Monte Carlo p-value (it cannot be 0), capped at 1."""
    r = replicated[np.isfinite(replicated)]
    hi = (1 + np.sum(r >= observed)) / (len(r) + 1)
    lo = (1 + np.sum(r <= observed)) / (len(r) + 1)
    return float(min(1.0, 2 * min(hi, lo)))


def _outliers(observed: np.ndarray, replicated: np.ndarray, names, alpha: float,
              sd: bool) -> pd.DataFrame:
    """Units (genes, cell lines) whose observed value is far from its replicated values:
    two-sided normal p-value of z among the replicated values, Bonferroni over the units.

    The Bonferroni level (1e-4 for 500 genes) lies beyond what a thousand replicated values
    resolve, so the tail is a normal one, on a scale where the statistic is close to normal:
    a sample sd through the cube root of its variance (Wilson-Hilferty: a scaled chi-square
    is nearly normal there; on the log scale it is skewed and the lower tail is too long), a
    mean as it is."""
    transform = (lambda x: np.power(x, 2.0 / 3.0)) if sd else (lambda x: x)
    obs, rep = transform(observed), transform(replicated)
    z = (obs - rep.mean(axis=0)) / rep.std(axis=0, ddof=1)
    p = 2 * stats.norm.sf(np.abs(z))
    lo, hi = np.quantile(replicated, [0.025, 0.975], axis=0)
    table = pd.DataFrame({"name": list(names), "observed": observed, "replicated_2.5%": lo,
                          "replicated_97.5%": hi, "z": z, "p": p})
    table = table[table["p"] < alpha / len(table)]
    return table.sort_values("p", kind="stable").reset_index(drop=True)


@dataclass
class StatisticCheck:
    name: str
    description: str
    observed: float
    low: float  # 2.5 % of the replicated values
    high: float  # 97.5 %
    p: float
    misfit: bool = False

    def row(self) -> dict:
        return {"statistic": self.description, "observed": self.observed,
                "replicated 95%": f"{self.low:.3g} to {self.high:.3g}", "p": self.p,
                "misfit": "misfit" if self.misfit else ""}


@dataclass
class ModelCheck:
    """One model's checks against the data; ``verdict`` is "adequate" or "misfit"."""

    model: str
    fit: DataFit
    statistics: list[StatisticCheck]
    replicated: dict  # statistic name -> (S,) replicated values (for figures)
    loo: object  # arviz_stats ELPDData
    loo_pit: np.ndarray
    loo_pit_p: float
    genes: pd.DataFrame  # genes whose spread misfits
    cell_lines: pd.DataFrame  # cell lines whose mean misfits
    threshold: float
    verdict: str = "adequate"
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # where an adequate model misfits locally

    @property
    def loo_pit_deviation(self) -> float:
        """The largest |ECDF(LOO-PIT) - u|: how far the LOO-PIT is from uniform (the 95 %
        band of as many independent uniforms has about 1.36 / sqrt(n) at its widest)."""
        u = np.sort(self.loo_pit[np.isfinite(self.loo_pit)])
        i = np.arange(1, len(u) + 1) / len(u)
        return float(max(np.max(i - u), np.max(u - (i - 1.0 / len(u)))))

    @property
    def good_k(self) -> float:
        """PSIS-LOO's Pareto k threshold for this many draws (arviz-stats' ``good_k``)."""
        return float(getattr(self.loo, "good_k", 0.7))

    @property
    def pareto_k_high(self) -> int:
        k = np.asarray(self.loo.pareto_k).ravel()
        return int(np.sum(k > self.good_k))

    def table(self) -> pd.DataFrame:
        rows = [s.row() for s in self.statistics]
        rows.append({"statistic": "LOO-PIT uniformity (ECDF test): largest |ECDF - u|",
                     "observed": self.loo_pit_deviation,
                     "replicated 95%": "", "p": self.loo_pit_p,
                     "misfit": "misfit" if self.loo_pit_p < self.threshold else ""})
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        return {"model": self.model, "verdict": self.verdict, "reasons": self.reasons,
                "notes": self.notes,
                "threshold": self.threshold,
                "statistics": [{k: v for k, v in s.__dict__.items()} for s in self.statistics],
                "loo_pit_p": self.loo_pit_p, "loo_pit_deviation": self.loo_pit_deviation,
                "elpd_loo": float(self.loo.elpd), "se": float(self.loo.se),
                "p_loo": float(self.loo.p), "pareto_k_high": self.pareto_k_high,
                "genes_misfit": self.genes.to_dict("records"),
                "cell_lines_misfit": self.cell_lines.to_dict("records"),
                "fit": {"procedure": self.fit.procedure.describe(),
                        "warnings": self.fit.warnings, "seconds": self.fit.seconds,
                        "rescue_refits": max(0, len(self.fit.attempts) - 1)}}


@dataclass
class CheckResult:
    """The checks of every model against one real screen, and their LOO comparison."""

    screen: Screen
    checks: list[ModelCheck]
    comparison: pd.DataFrame | None
    alpha: float

    def __getitem__(self, model: str) -> ModelCheck:
        for c in self.checks:
            if c.model == model:
                return c
        raise KeyError(f"no check of model {model!r}; checked: "
                       f"{', '.join(c.model for c in self.checks)}")

    @property
    def best(self) -> str | None:
        """The model LOO ranks first among the adequate ones (else first overall)."""
        if self.comparison is None or self.comparison.empty:
            return self.checks[0].model if self.checks else None
        order = list(self.comparison.index)
        adequate = [m for m in order if self[m].verdict == "adequate"]
        return (adequate or order)[0]

    def __str__(self) -> str:
        lines = [f"Model check: {self.screen.describe()}"]
        for c in self.checks:
            lines.append(f"  {c.model}: {c.verdict.upper()}" + (
                f" ({'; '.join(c.reasons)})" if c.reasons else
                f" (every statistic and LOO-PIT within the replicated data, p >= "
                f"{c.threshold:.2g})"))
            lines += [f"    note: {w}" for w in c.notes + c.fit.warnings]
        if self.comparison is not None and len(self.checks) > 1:
            lines.append("  LOO comparison (elpd_loo, higher is better):")
            for name, row in self.comparison.iterrows():
                lines.append(f"    {name}: elpd {row['elpd']:.1f} (se {row['se']:.1f}), "
                             f"difference {row['elpd_diff']:.1f} (se {row['dse']:.1f})")
        if self.best:
            lines.append(f"  best: {self.best}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"CheckResult(data={self.screen.source!r}, verdicts="
                f"{ {c.model: c.verdict for c in self.checks} })")

    def plot_statistics(self):
        """The test statistics: replicated values of each model and the observed value
        (matplotlib ``Figure``)."""
        first = self.checks[0]
        return ppc_statistics_figure(
            [(s.name, s.observed) for s in first.statistics],
            {c.model: c.replicated for c in self.checks},
            {c.model: {s.name for s in c.statistics if s.misfit} for c in self.checks})

    def plot_loo_pit(self):
        """ECDF(LOO-PIT) - u of each model with its 95 % band (matplotlib ``Figure``)."""
        return loo_pit_figure({c.model: c.loo_pit for c in self.checks})

    def to_dict(self) -> dict:
        return {"data": self.screen.describe(), "notes": list(self.screen.notes),
                "alpha": self.alpha, "models": [c.summary() for c in self.checks],
                "comparison": None if self.comparison is None else
                json.loads(self.comparison.to_json(orient="index")),
                "best": self.best}

    def write(self, out: str | Path) -> Path:
        """Write check.json and check.html (tables and figures) to ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "check.json").write_text(json.dumps(_finite(self.to_dict()), indent=2,
                                                   default=_json, allow_nan=False))
        (out / "check.html").write_text(check_page(self))
        return out / "check.html"


def _finite(value):
    """NaN and infinities as None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _pit_shape(pit: np.ndarray) -> str:
    """Where LOO-PIT values pile up, in words (:func:`sbc.stats.failure_shape`)."""
    return {"too_narrow": "values pile up in both tails of their predictions: predictions "
                          "too narrow, or tails heavier than modelled",
            "too_wide": "values pile up in the middle of their predictions: predictions too "
                        "wide",
            "biased_low": "values mostly above their predictions",
            "biased_high": "values mostly below their predictions",
            "ok": "neither shifted nor too narrow or wide on the whole: the departure is in the "
                  "shape or the far tails (see the LOO-PIT figure)"}[
        failure_shape(pit[np.isfinite(pit)])]


def check_model(fit: DataFit, alpha: float = ALPHA) -> ModelCheck:
    """The posterior predictive, LOO-PIT and per-gene checks of one fitted model."""
    tree = fit.datatree
    frame = fit.screen.frame
    response = next(iter(tree["observed_data"].data_vars))
    y = tree["observed_data"][response].values
    group = REPLICATED if REPLICATED in tree.children else "posterior_predictive"
    yrep = tree[group][response].values.reshape(-1, len(y))
    family = len(STATISTICS) + 1
    threshold = alpha / family
    if len(yrep) < needed_replicates(alpha):
        raise ValueError(f"{len(yrep)} replicated data sets cannot resolve p-values below "
                         f"{threshold:.2g}; fit with predictive_draws >= "
                         f"{needed_replicates(alpha)}")
    obs_stats, obs_gene_sd, obs_cell = screen_statistics(y[None], frame)
    rep_stats, rep_gene_sd, rep_cell = screen_statistics(yrep, frame)
    checks = []
    for s in STATISTICS:
        o, r = float(obs_stats[s.name][0]), rep_stats[s.name]
        p = ppp(o, r)
        lo, hi = np.quantile(r, [0.025, 0.975])
        checks.append(StatisticCheck(s.name, s.description, o, float(lo), float(hi), p,
                                     p < threshold))
    # catch_warnings swaps the process's warning filters: one thread at a time
    with _LOO_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # high Pareto k: counted, reported
        loo = azs.loo(tree, var_name=response)
        pit = np.asarray(azs.loo_pit(tree, var_names=[response])[response]).ravel()
    pit_p = float(uniformity_test(np.clip(pit, 0.0, 1.0)).p_value)
    genes = _outliers(obs_gene_sd[0], rep_gene_sd, frame["gene"].cat.categories, alpha, True)
    cells = _outliers(obs_cell[0], rep_cell, frame["cell_line"].cat.categories, alpha, False)
    result = ModelCheck(fit.model, fit, checks, rep_stats, loo, pit, pit_p, genes, cells,
                        threshold)
    reasons = [f"{s.description}: observed {s.observed:.3g}, replicated 95% {s.low:.3g} to "
               f"{s.high:.3g} (p {s.p:.2g})" for s in checks if s.misfit]
    if pit_p < threshold:
        reasons.append(f"LOO-PIT not uniform (p {pit_p:.2g}; largest |ECDF - u| "
                       f"{result.loo_pit_deviation:.3f}, "
                       f"{_pit_shape(pit)})")
    notes = []
    if len(genes):
        notes.append(f"{len(genes)} gene(s) vary across cell lines unlike the model: "
                       + ", ".join(f"{n} (sd {o:.2f}, replicated {lo:.2f}-{hi:.2f})" for n, o, lo, hi
                                   in genes[["name", "observed", "replicated_2.5%",
                                             "replicated_97.5%"]].head(5).itertuples(index=False))
                       + (" ..." if len(genes) > 5 else ""))
    if len(cells):
        notes.append(f"{len(cells)} cell line(s) with a mean unlike the model: "
                       + ", ".join(map(str, cells["name"].head(5)))
                       + (" ..." if len(cells) > 5 else ""))
    result.verdict = "misfit" if (any(s.misfit for s in checks) or pit_p < threshold) \
        else "adequate"
    # Genes and cell lines that misfit say where; they are not part of the verdict's family
    # (each has its own Bonferroni over the genes or cell lines).
    result.reasons = reasons + notes if result.verdict == "misfit" else reasons
    result.notes = [] if result.verdict == "misfit" else notes
    return result


def check(data, models: str | Sequence[str] = ("crispr_screen", "crispr_gene_spread"), *,
          study=None, samples=None, seed: int = 0, alpha: float = ALPHA,
          out: str | Path | None = None, strict: bool = False, base_dir: str | Path = ".",
          threads: int | None = None, stream=None) -> CheckResult:
    """Check models against a real screen: posterior predictive checks, LOO-PIT, LOO.

    Parameters
    ----------
    data : a data file (long CSV, gene-effect matrix, MAGeCK count table), a long DataFrame
        or a :class:`sbc.readers.Screen`.
    models : one model or several (names or ``path.py[:function]``); several are compared
        by LOO.
    study : the SBC study whose procedure fits the data (see :func:`sbc.datafit.fit_data`).
    samples : a count table's sample sheet.  seed : seeds the fits and replicated data.
    alpha : the false-alarm rate of a *misfit* verdict per model (Bonferroni over the checks;
        conservative, see the module docstring).
    out : a folder to write check.json and check.html to.
    strict : refuse data outside the study's designs instead of warning.
    threads : models fitted at once (default: one per model, at most one per core).

    Returns
    -------
    CheckResult: ``str()`` reads as the verdicts; ``result[model]`` one model's checks.
    """
    stream = sys.stderr if stream is None else stream
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    screen = as_screen(data, samples)
    names = [models] if isinstance(models, str) else list(dict.fromkeys(models))
    if not names:
        raise ValueError("give at least one model to check")
    # every model and the study are resolved before any fit starts: a typo fails at once
    models = [resolve_model(m, base_dir) for m in names]
    procedure = procedure_of(study)
    draws = max(1000, needed_replicates(alpha))
    def one(model):
        fit = fit_data(screen, model, study=procedure, seed=seed, strict=strict,
                       predictive_draws=draws, stream=stream)
        result = check_model(fit, alpha)
        print(f"[sbc check] {fit.model}: {result.verdict}", file=stream)
        return result

    # The models are fitted side by side in threads (nutpie releases the GIL; building and
    # compiling take turns, sbc.datafit): the check takes about as long as its slowest fit.
    workers = max(1, min(len(models), threads or os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        checks = list(pool.map(one, models))
    comparison = None
    if len(checks) > 1:
        comparison = azs.compare({c.model: c.loo for c in checks}, round_to="none")
    result = CheckResult(screen, checks, comparison, alpha)
    if out is not None:
        path = result.write(out)
        print(f"[sbc check] wrote {path}", file=stream)
    return result
