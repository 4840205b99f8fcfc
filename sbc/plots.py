"""Figures of the calibration report and the plan page, each a :class:`matplotlib.figure.Figure`.

Every function takes plain arrays, tables or small dataclasses and returns a Figure built
without pyplot (no global figure registry, no backend switch), so a caller can show it, save
it or embed it; :mod:`sbc.render` encodes figures as PNG only when it writes a page.  Each
figure carries its resolution (``dpi``).  Panels of a failing parameter get a red title.

Every text that comes from the user (parameter, group, model and design names) goes through
:func:`plain`, so it is drawn literally: a parameter named like mathtext (``$\\x{y}$``)
cannot make a report fail to render.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.stats import binom

from sbc import seeding, stats

DPI = 80
PLAN_DPI = 90
PLAN_DIMENSIONS = ("cell_lines", "genes", "reps")  # design columns of a plan table
NCOLS = 5
FAIL_COLOR = "#cf222e"
FLAG_COLOR = "#e36209"
CLEAN_COLOR = "#0969da"
MAX_POINTS = 600  # per scatter panel; keeps figures small and fast


@dataclass(frozen=True)
class Panel:
    """One small plot: a scalar parameter or a group of exchangeable elements.

    u: fractional ranks, one 1-D array per element (NaN dropped by the plots).
    truth, mean, lo, hi, sd, contraction, z, flagged: per (replicate, element), flattened.
    """

    title: str
    failing: bool = False
    u: list = field(default_factory=list)
    truth: np.ndarray | None = None
    mean: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    contraction: np.ndarray | None = None
    z: np.ndarray | None = None
    flagged: np.ndarray | None = None


def plain(text) -> str:
    """``text`` as a matplotlib label drawn literally, never parsed as mathtext, and short.

    Matplotlib parses text between two ``$`` as mathtext, and a name it cannot parse
    (``$\\x{y}$``) raises when the figure is drawn; escaping every ``$`` keeps the label
    plain text.  A name longer than :data:`LABEL_CHARS` (PyMC accepts any length) is drawn
    as its start and its end around an ellipsis, so it cannot push a panel's margins past
    each other (the tables of the report show it whole).  Use it for every label that
    holds a name from the user's model or study.
    """
    return short(text).replace("$", r"\$")


LABEL_CHARS = 40  # the longest name drawn whole in a figure (a panel is ~40 wide)
_TAIL_CHARS = 14  # of a longer name: its last characters, after an ellipsis


def short(text) -> str:
    """``text`` (a name) at most :data:`LABEL_CHARS` characters long: a longer one as its
    start, an ellipsis and its last characters (names of elements differ at the end)."""
    text = str(text)
    if len(text) <= LABEL_CHARS:
        return text
    return text[:LABEL_CHARS - _TAIL_CHARS - 1] + "\u2026" + text[-_TAIL_CHARS:]


def _grid(n: int, ncols: int = NCOLS, width: float = 2.9, height: float = 2.2):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.5), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    # fixed margins: tight_layout would cost a full extra draw per figure
    total_height = height * nrows + 0.5
    fig.subplots_adjust(left=0.45 / (width * ncols) + 0.03, right=0.99,
                        bottom=0.5 / total_height + 0.02, top=1 - 0.3 / total_height,
                        wspace=0.3, hspace=0.45)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _title(ax, panel: Panel) -> None:
    ax.set_title(plain(panel.title), fontsize=9,
                 color=FAIL_COLOR if panel.failing else "black")
    ax.tick_params(labelsize=7)
    # few ticks: laying out tick labels is most of the drawing time
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4))


def _clean(a) -> np.ndarray:
    a = np.asarray(a, dtype=float).ravel()
    return a[~np.isnan(a)]


def _band_grid(panels: list[Panel], curve, prob: float, xlabel: str, ylabel: str) -> Figure:
    """One panel per parameter: ``curve(u, z)`` of each element (thin lines for a group) over
    the simultaneous ``prob`` band of :func:`sbc.stats.ecdf_band` for one element's number of
    fits (grey); a group's pooled curve in black with its own ``prob`` band (dashed,
    :func:`sbc.stats.pooled_band`: valid whatever the dependence of the elements)."""
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes, panels):
        elements = [_clean(u) for u in panel.u if len(_clean(u)) >= 2]
        _title(ax, panel)
        if not elements:
            continue
        band = stats.ecdf_band(int(np.median([len(e) for e in elements])), prob)
        ax.fill_between(band.z, band.lower, band.upper, step="post", color="0.85", lw=0)
        color = FAIL_COLOR if panel.failing else CLEAN_COLOR
        thin = len(elements) > 1
        curves = [curve(e, band.z) for e in elements]
        for c in curves:
            ax.plot(band.z, c, color=color, lw=0.6 if thin else 1.4, alpha=0.35 if thin else 1.0,
                    drawstyle="steps-post")
        limits = [band.lower, band.upper, *curves]
        if thin:
            pooled = stats.pooled_band(band.n, len(elements), prob)
            for edge in (pooled.lower, pooled.upper):
                ax.plot(pooled.z, edge, color="black", lw=0.8, ls="--", drawstyle="steps-post")
            ax.plot(band.z, curve(stats.pooled_fractional_ranks(elements), band.z),
                    color="black", lw=1.4, drawstyle="steps-post")
            limits += [pooled.lower, pooled.upper]
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_xlim(0, 1)
        _fit_ylim(ax, limits)
    fig.supxlabel(xlabel, fontsize=9)
    fig.supylabel(ylabel, fontsize=9)
    return fig


def ecdf_difference_grid(panels: list[Panel], prob: float = 0.95) -> Figure:
    """ECDF(u) - u per panel with the simultaneous `prob` band for one element's sample size.

    A group panel overlays one thin line per element (each should stay inside the band) and
    the pooled ECDF as a thick line with its band (:func:`sbc.stats.pooled_band`, dashed).
    """
    return _band_grid(panels, stats.ecdf_difference, prob, "fractional rank u", "ECDF(u) - u")


def coverage_difference_grid(panels: list[Panel], prob: float = 0.95) -> Figure:
    """Coverage of the central posterior interval of every width minus the width
    (:func:`sbc.stats.coverage_difference`), with the simultaneous `prob` band that a
    calibrated parameter's curve stays inside (grey).  Groups: a thin line per element and
    the pooled curve in black with its band (dashed)."""
    return _band_grid(panels, stats.coverage_difference, prob,
                      "central interval width (nominal coverage)", "coverage - width")


def _fit_ylim(ax, arrays, pad: float = 0.08) -> None:
    """Fit the y axis to the data (and band) it shows, with a little room."""
    values = np.concatenate([np.ravel(np.asarray(a, float)) for a in arrays])
    values = values[np.isfinite(values)]
    if len(values):
        lo, hi = float(values.min()), float(values.max())
        room = pad * max(hi - lo, 1e-9)
        ax.set_ylim(lo - room, hi + room)


def rank_histogram_grid(panels: list[Panel]) -> Figure:
    """Histogram of fractional ranks per panel (average over elements for a group), with the
    pointwise 95 % range of a bin count for one element under uniformity (grey)."""
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes, panels):
        elements = [_clean(u) for u in panel.u if len(_clean(u))]
        _title(ax, panel)
        if not elements:
            continue
        n = int(np.median([len(e) for e in elements]))
        bins = int(np.clip(n // 8, 5, 20))
        edges = np.linspace(0, 1, bins + 1)
        counts = np.mean([np.histogram(e, edges)[0] * (n / len(e)) for e in elements], axis=0)
        lo, hi = binom.ppf(0.025, n, 1 / bins), binom.ppf(0.975, n, 1 / bins)
        ax.axhspan(lo, hi, color="0.85", lw=0)
        ax.axhline(n / bins, color="0.5", lw=0.6)
        ax.bar(edges[:-1], counts, width=1 / bins, align="edge",
               color=FAIL_COLOR if panel.failing else CLEAN_COLOR, alpha=0.75, edgecolor="white")
        ax.set_xlim(0, 1)
    fig.supxlabel("fractional rank u", fontsize=9)
    fig.supylabel("count per bin", fontsize=9)
    return fig


@dataclass(frozen=True)
class CoverageRow:
    """Coverage of one parameter or group: per level the element coverages (one for a scalar)
    and, for a scalar, its Wilson interval."""

    label: str
    n: int
    coverage: np.ndarray  # (k elements, m levels)
    lower: np.ndarray | None = None  # (m,) Wilson, scalars only
    upper: np.ndarray | None = None
    failing: bool = False


def coverage_plot(rows: list[CoverageRow], levels=(0.5, 0.8, 0.9, 0.95)) -> Figure:
    """Empirical minus nominal coverage of central intervals, one column per level.

    Grey: where a calibrated parameter's coverage falls with 95 % probability (binomial,
    n fits).  Scalars: point with Wilson 95 % bar.  Groups: one small dot per element and a
    diamond at their mean.
    """
    m = len(levels)
    width, height = 3.0 * m + 1.5, 1.0 + 0.32 * len(rows)
    fig = Figure(figsize=(width, height), dpi=DPI)
    axes = fig.subplots(1, m, sharey=True, squeeze=False)
    label_inches = 0.07 * max((len(short(r.label)) for r in rows), default=4) + 0.2
    fig.subplots_adjust(left=label_inches / width, right=0.98, bottom=0.55 / height,
                        top=1 - 0.3 / height, wspace=0.12)
    y = np.arange(len(rows))[::-1]
    for j, (ax, level) in enumerate(zip(axes.flat, levels)):
        for yi, row in zip(y, rows):
            lo = binom.ppf(0.025, row.n, level) / row.n - level
            hi = binom.ppf(0.975, row.n, level) / row.n - level
            ax.plot([lo, hi], [yi, yi], color="0.82", lw=7, solid_capstyle="butt")
            color = FAIL_COLOR if row.failing else CLEAN_COLOR
            cov = row.coverage[:, j] - level
            if row.coverage.shape[0] == 1 and row.lower is not None:
                ax.errorbar(cov[0], yi, xerr=[[cov[0] + level - row.lower[j]],
                                              [row.upper[j] - cov[0] - level]],
                            fmt="o", color=color, ms=4, lw=1.2, capsize=2)
            else:
                jitter = np.linspace(-0.2, 0.2, len(cov)) if len(cov) > 1 else np.zeros(1)
                ax.plot(cov, yi + jitter, ".", color=color, ms=2.5, alpha=0.6)
                ax.plot(np.nanmean(cov), yi, "D", color=color, ms=5)
        ax.axvline(0, color="0.4", lw=0.7)
        ax.set_title(f"{level:.0%} interval", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("coverage - nominal", fontsize=8)
    axes.flat[0].set_yticks(y, [plain(r.label) for r in rows], fontsize=8)
    for tick, row in zip(axes.flat[0].get_yticklabels(), rows):
        tick.set_color(FAIL_COLOR if row.failing else "black")
    return fig


def _subsample(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.sort(rng.choice(n, MAX_POINTS, replace=False))


def zscore_contraction_grid(panels: list[Panel]) -> Figure:
    """Posterior z-score (mean - truth) / sd against contraction 1 - sd^2 / prior_sd^2
    (Betancourt's diagnostic plot); orange: fits with sampler warnings.  |z| > 2 often:
    overconfident or biased; contraction near 0: the data say little."""
    fig, axes = _grid(len(panels))
    rng = np.random.default_rng(seeding.PLOT_SEED)
    for ax, panel in zip(axes, panels):
        _title(ax, panel)
        x = np.clip(np.asarray(panel.contraction, float), -1, 1)
        y = np.asarray(panel.z, float)
        f = np.asarray(panel.flagged, bool)
        (x0, x1), (y0, y1) = _robust_limits(x, min_span=0.02), _robust_limits(y, (-2.5, 2.5))
        # points beyond the fitted axes are drawn on its edge, not dropped
        x, y = np.clip(x, x0, x1), np.clip(y, y0, y1)
        idx = _subsample(len(x), rng)
        for mask, color in ((~f[idx], CLEAN_COLOR), (f[idx], FLAG_COLOR)):
            ax.plot(x[idx][mask], y[idx][mask], ".", color=color, ms=2.5, alpha=0.6)
        for h in (-2, 2):
            ax.axhline(h, color="0.6", lw=0.6, ls="--")
        pad_x, pad_y = 0.04 * (x1 - x0), 0.04 * (y1 - y0)
        ax.set_xlim(x0 - pad_x, x1 + pad_x)
        ax.set_ylim(y0 - pad_y, y1 + pad_y)
    fig.supxlabel("posterior contraction (blue: clean fit, orange: sampler warning)", fontsize=9)
    fig.supylabel("posterior z-score", fontsize=9)
    return fig


def _robust_limits(values: np.ndarray, floor: tuple[float, float] | None = None,
                   min_span: float = 0.0) -> tuple[float, float]:
    """Axis limits from the 0.5 % and 99.5 % quantiles of ``values``, widened to include
    ``floor`` (e.g. the +-2 lines of a z-score) and to at least ``min_span``: one extreme
    fit cannot squeeze the rest against an edge, and no point is hidden (callers clip to
    the limits)."""
    v = values[np.isfinite(values)]
    if not len(v):
        return floor or (0.0, 1.0)
    lo, hi = (float(q) for q in np.quantile(v, [0.005, 0.995]))
    if floor is not None:
        lo, hi = min(lo, floor[0]), max(hi, floor[1])
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return lo, hi


def truth_estimate_grid(panels: list[Panel]) -> Figure:
    """Posterior mean with its central 90 % interval against the simulated truth; the line
    is y = x.  Orange: fits with sampler warnings."""
    fig, axes = _grid(len(panels))
    rng = np.random.default_rng(seeding.PLOT_SEED)
    for ax, panel in zip(axes, panels):
        _title(ax, panel)
        t, m = np.asarray(panel.truth, float), np.asarray(panel.mean, float)
        lo, hi = np.asarray(panel.lo, float), np.asarray(panel.hi, float)
        f = np.asarray(panel.flagged, bool)
        idx = _subsample(len(t), rng)
        for mask, color in ((~f[idx], CLEAN_COLOR), (f[idx], FLAG_COLOR)):
            i = idx[mask]
            ax.vlines(t[i], lo[i], hi[i], color=color, lw=0.4, alpha=0.4)
            ax.plot(t[i], m[i], ".", ms=2.5, color=color, alpha=0.7)
        finite = np.concatenate([t[np.isfinite(t)], m[np.isfinite(m)]])
        if len(finite):
            a, b = np.quantile(finite, [0.005, 0.995])
            ax.plot([a, b], [a, b], color="0.3", lw=0.8)
    fig.supxlabel("truth (simulated)", fontsize=9)
    fig.supylabel("posterior mean, 90 % interval", fontsize=9)
    return fig


def design_trend(groups: list[str], designs: list[str], n_rows: list[int],
                 values: dict[str, np.ndarray], failing: set[str] = frozenset(),
                 nominal: dict[str, tuple[float, np.ndarray]] | None = None) -> Figure:
    """Statistics against design size (number of observations), one line per group.

    values: panel title -> (len(groups), len(designs)) array.  nominal: panel title ->
    (level, fits per design) for coverage panels: the nominal level is drawn with the 95 %
    range of a calibrated scalar's coverage over that many fits (grey), and the axis takes
    in that range, so Monte Carlo noise is not read as a trend.
    """
    nominal = nominal or {}
    titles = list(values)
    fig = Figure(figsize=(3.6 * len(titles) + 2.0, 3.2), dpi=DPI)
    axes = fig.subplots(1, len(titles), squeeze=False)
    fig.subplots_adjust(left=0.05, right=0.84, bottom=0.25, top=0.9, wspace=0.3)
    order = np.argsort(n_rows)
    x = np.asarray(n_rows)[order]
    cmap = matplotlib.colormaps["tab20"]
    for ax, title in zip(axes.flat, titles):
        arr = np.asarray(values[title], float)[:, order]
        if title in nominal:
            level, n_fits = nominal[title]
            n_fits = np.maximum(np.asarray(n_fits, float)[order], 1)
            lo, hi = binom.ppf(0.025, n_fits, level) / n_fits, binom.ppf(0.975, n_fits, level) / n_fits
            ax.fill_between(x, lo, hi, color="0.87", lw=0, label="95 % range if calibrated")
            ax.axhline(level, color="0.4", lw=0.8)
            _fit_ylim(ax, [lo, hi, arr])
        for i, g in enumerate(groups):
            ax.plot(x, arr[i], marker="o", ms=3, lw=1.2, color=cmap(i % 20),
                    label=plain(g), ls="--" if g in failing else "-")
        ax.set_xscale("log")
        ax.set_xticks(x, [plain(f"{designs[k]}\n({n_rows[k]})") for k in order], fontsize=7)
        ax.minorticks_off()
        ax.set_title(plain(title), fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.supxlabel("design (observations)", fontsize=9)
    return fig


def plan_curves_figure(table: pd.DataFrame, probability: float,
                       dimensions: Sequence[str] = PLAN_DIMENSIONS) -> Figure:
    """P(target met) with its Monte Carlo interval against each design dimension the plan
    varies, one line per combination of the other dimensions; dashed: ``probability``.

    table: the plan table (one row per design) with ``simulations``, ``p_success``,
    ``p_lower``, ``p_upper`` and the ``dimensions`` columns; designs without simulations are
    left out.
    """
    dimensions = list(dimensions)
    done = table[table["simulations"] > 0]
    dims = [d for d in dimensions if done[d].nunique() > 1] or dimensions[:1]
    fig = Figure(figsize=(5 * len(dims), 3.6), dpi=PLAN_DPI, layout="tight")
    axes = fig.subplots(1, len(dims), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        others = [d for d in dimensions if d != dim]
        for key, block in done.groupby(others):
            block = block.sort_values(dim)
            label = ", ".join(f"{o}={v}" for o, v in zip(others, key))
            x, p = block[dim].to_numpy(), block["p_success"].to_numpy()
            err = np.vstack([p - block["p_lower"], block["p_upper"] - p])
            ax.errorbar(x, p, yerr=err, marker="o", capsize=3, label=plain(label))
        ax.axhline(probability, color="grey", ls="--", lw=1)
        ax.set_xlabel(dim.replace("_", " "))
        ax.set_ylabel("P(target met)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    return fig


def plan_cost_figure(table: pd.DataFrame, probability: float, unit: str = "",
                     recommended: str | None = None) -> Figure:
    """P(success) with its Monte Carlo interval against cost, one point per evaluated
    design (colour: cell lines); dashed: the required probability; the recommended design
    circled."""
    done = table[table["simulations"] > 0].sort_values("cost")
    fig = Figure(figsize=(7, 4.2), dpi=PLAN_DPI, layout="tight")
    ax = fig.subplots()
    p = done["p_success"].to_numpy()
    err = np.vstack([p - done["p_lower"].to_numpy(), done["p_upper"].to_numpy() - p])
    ax.errorbar(done["cost"], p, yerr=err, fmt="none", ecolor="0.6", lw=0.8, capsize=2)
    points = ax.scatter(done["cost"], p, c=done["cell_lines"], cmap="viridis", s=28, zorder=3)
    fig.colorbar(points, ax=ax, label="cell lines")
    if recommended is not None and recommended in set(done["design"]):
        row = done[done["design"] == recommended].iloc[0]
        ax.scatter([row["cost"]], [row["p_success"]], s=160, facecolors="none",
                   edgecolors="red", lw=1.5, zorder=4, label=f"recommended: {plain(recommended)}")
        ax.legend(fontsize=8, loc="lower right")
    ax.axhline(probability, color="grey", ls="--", lw=1)
    ax.set_xlabel(f"cost ({unit})" if unit else "cost")
    ax.set_ylabel("P(all targets met)")
    ax.set_ylim(-0.02, 1.02)
    return fig


def sequential_path(log_e: dict, threshold: float, stop: int | None, pass_point: int | None,
                    failing: Sequence[str] = ()) -> Figure:
    """log10 e-value of each group after every counted fit (``log_e``: group -> natural-log
    series), with the rejection boundary (``threshold``), the stop and the pass point."""
    fig = Figure(figsize=(7.6, 3.0), dpi=DPI)
    ax = fig.add_subplot()
    ten = math.log(10.0)
    calm = [c for i, c in enumerate(matplotlib.colormaps["tab10"].colors) if i != 3]  # no red
    for i, (group, series) in enumerate(sorted(log_e.items())):
        series = np.asarray(series, float)
        t = np.arange(1, len(series) + 1)
        bad = group in failing
        ax.plot(t, series / ten, lw=1.8 if bad else 0.9,
                color=FAIL_COLOR if bad else calm[i % len(calm)], label=plain(group))
    ax.axhline(math.log10(threshold), color="black", ls="--", lw=1,
               label=f"reject at {threshold:.3g}")
    ax.axhline(0.0, color="grey", lw=0.5)
    if pass_point:
        ax.axvline(pass_point, color="grey", ls=":", lw=1, label=f"pass point ({pass_point})")
    if stop:
        ax.axvline(stop, color="black", lw=1, label=f"stop ({stop} fits)")
    ax.set_xlabel("successful fits, in replicate order")
    ax.set_ylabel("log10 e-value")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


MODEL_COLORS = ("#0969da", "#e36209", "#1a7f37", "#8250df")


def ppc_statistics_figure(statistics: Sequence[tuple[str, float]],
                          replicated: dict[str, dict[str, np.ndarray]],
                          misfit: dict[str, set]) -> Figure:
    """One panel per test statistic of a posterior predictive check: the replicated values
    of each model (histograms, one colour per model) and the observed value (black line).

    statistics: (name, observed value) pairs; replicated: model -> name -> (S,) values;
    misfit: model -> names of the statistics that misfit (red title if any model misfits).
    """
    fig, axes = _grid(len(statistics), ncols=3, width=3.4, height=2.3)
    for ax, (name, observed) in zip(axes, statistics):
        failing = any(name in m for m in misfit.values())
        _title(ax, Panel(name, failing=failing))
        values = [_clean(replicated[m][name]) for m in replicated]
        pooled = np.concatenate([*values, [observed]])
        bins = np.linspace(pooled.min(), pooled.max(), 40)
        if bins[0] == bins[-1]:
            bins = 40
        for i, (model, v) in enumerate(zip(replicated, values)):
            ax.hist(v, bins=bins, color=MODEL_COLORS[i % len(MODEL_COLORS)], alpha=0.55,
                    label=plain(model))
        ax.axvline(observed, color="black", lw=1.6)
        ax.set_yticks([])
    axes[0].legend(fontsize=7, frameon=False)
    fig.supxlabel("statistic of replicated data (histograms) and of the observed data (line)",
                  fontsize=9)
    return fig


def loo_pit_figure(pits: dict[str, np.ndarray], prob: float = 0.95) -> Figure:
    """ECDF(LOO-PIT) - u per model, with the simultaneous ``prob`` band of as many
    independent uniforms (grey; :func:`sbc.stats.ecdf_band`)."""
    fig, axes = _grid(len(pits), ncols=len(pits), width=3.6, height=2.6)
    for i, (ax, (model, pit)) in enumerate(zip(axes, pits.items())):
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        u = _clean(pit)
        band = stats.ecdf_band(len(u), prob)
        _title(ax, Panel(model))
        ax.fill_between(band.z, band.lower, band.upper, step="post", color="0.85", lw=0)
        curve = stats.ecdf_difference(u, band.z)
        ax.plot(band.z, curve, color=color, lw=1.4, drawstyle="steps-post")
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_xlim(0, 1)
        _fit_ylim(ax, [band.lower, band.upper, curve])
    fig.supxlabel("LOO-PIT value", fontsize=9)
    fig.supylabel("ECDF - uniform", fontsize=9)
    return fig
