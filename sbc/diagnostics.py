"""Diagnostics of one fit: divergences, tree depth, effective sample size and R-hat.

Thresholds follow R's SBC package and Vehtari et al. (2021): R-hat > 1.01 and a bulk or tail
ESS below 100 (or, with a fixed thinning factor, below the number of ranked draws) flag a
fit.  Flagged fits are kept and counted, never dropped silently: dropping them can itself
bias SBC.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len
from scipy.special import ndtri

# arviz_stats is imported where the ESS is computed (on the workers): this module is part of
# every run's import graph (sbc.replicate), also where no fit is made (`sbc report`, sbc.open).

RHAT_MAX = 1.01
ESS_MIN = 100


def stack_scalars(draws: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """name -> (chain, draw, *shape) into one (chain, draw, n_scalars) array."""
    parts = [draws[n].reshape(draws[n].shape[:2] + (-1,)) for n in names]
    return np.concatenate(parts, axis=2)


def scalar_names(draws: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """Element names in ``stack_scalars`` order: ``x`` for scalars, ``x[i]``/``x[i,j]`` otherwise."""
    out = []
    for n in names:
        shape = draws[n].shape[2:]
        if not shape:
            out.append(n)
        else:
            out += [f"{n}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]
    return out


def convergence(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-scalar bulk/tail ESS and (with several chains) rank-normalized R-hat.

    matrix: (chain, draw, n_scalars).  A constant draw vector (a stuck chain) gives ESS 0.
    The ESS values are those of ``arviz_stats`` (bulk, and tail at the 5 % and 95 %
    quantiles), computed for all scalars at once: arviz_stats loops over scalars in Python,
    which cost more than the sampler itself on small designs.
    """
    from arviz_stats.base import array_stats

    with np.errstate(all="ignore"):
        if np.all(np.isfinite(matrix)) and matrix.shape[1] >= 4:
            bulk, tail = ess_bulk(matrix), ess_tail(matrix)
        else:  # rare inputs (NaN, very short chains): arviz_stats' own checks apply
            bulk = np.asarray(array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="bulk"))
            tail = np.asarray(array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="tail",
                                              prob=(0.05, 0.95)))
        if matrix.shape[0] > 1:
            rhat = np.asarray(array_stats.rhat(matrix, chain_axis=0, draw_axis=1))
        else:
            rhat = np.full(matrix.shape[2], np.nan)
    constant = np.ptp(matrix, axis=(0, 1)) == 0
    bulk = np.where(constant | ~np.isfinite(bulk), 0.0, bulk)
    tail = np.where(constant | ~np.isfinite(tail), 0.0, tail)
    return {"ess_bulk": bulk, "ess_tail": tail, "rhat": rhat}


def ess_bulk(matrix: np.ndarray) -> np.ndarray:
    """Bulk ESS (rank-normalized split chains) of each scalar of a finite (chain, draw, k) array."""
    return _ess(_z_scale(_split_chains(matrix)))


def ess_tail(matrix: np.ndarray, probs: tuple[float, float] = (0.05, 0.95)) -> np.ndarray:
    """Tail ESS: the smaller ESS of the indicators ``x <= q`` at the two quantiles ``probs``."""
    q = np.quantile(matrix, probs, axis=(0, 1))  # (2, k)
    below = np.concatenate([matrix <= q[0], matrix <= q[1]], axis=2).astype(float)
    ess = _ess(_split_chains(below))
    return np.minimum(ess[:matrix.shape[2]], ess[matrix.shape[2]:])


def _split_chains(matrix: np.ndarray) -> np.ndarray:
    """(chain, draw, k) -> (k, 2 * chain, draw // 2): first and last halves as separate chains."""
    half = matrix.shape[1] // 2
    split = np.concatenate([matrix[:, :half], matrix[:, matrix.shape[1] - half:]], axis=0)
    return np.ascontiguousarray(np.moveaxis(split, 2, 0))


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalize each scalar over all its chains and draws (Blom offset 3/8)."""
    k, m, n = x.shape
    rank = _average_ranks(x.reshape(k, m * n))
    return ndtri((rank - 3 / 8) / (m * n - 2 * 3 / 8 + 1)).reshape(x.shape)


def _average_ranks(rows: np.ndarray) -> np.ndarray:
    """Ranks 1..n within each row, ties given their average rank (scipy's ``rankdata``).

    One sort for all rows; NUTS repeats a draw now and then, so ties are handled in the
    same pass: each run of equal values gets the mean of the positions it occupies.
    """
    k, n = rows.shape
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    starts = np.ones((k, n), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = np.cumsum(starts.ravel()) - 1
    position = np.tile(np.arange(1.0, n + 1), k)
    mean_position = np.bincount(group, position) / np.bincount(group)
    ranks = np.empty((k, n))
    np.put_along_axis(ranks, order, mean_position[group].reshape(k, n), axis=1)
    return ranks


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each row of ``x`` (k, chain, draw): Geyer's initial monotone sequence estimator
    of Vehtari et al. (2021), as in arviz_stats, with the sequential loops turned into
    array operations (a running minimum over pairs of autocorrelations)."""
    k, m, n = x.shape
    centred = x - x.mean(axis=2, keepdims=True)
    size = next_fast_len(2 * n)
    spec = np.fft.rfft(centred, n=size, axis=2)
    spec *= np.conjugate(spec)
    acov = np.fft.irfft(spec, n=size, axis=2)[..., :n] / n
    mean_var = acov[:, :, 0].mean(axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + np.var(x.mean(axis=2), axis=1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]  # (k, n)
    rho[:, 0] = 1.0

    # Pairs (rho[2j], rho[2j+1]); Geyer's initial positive sequence keeps pairs while the
    # previous pair sum is positive (and the lag stays below n - 3).
    n_pairs = (n - 2 + 1) // 2  # pairs j with 2j - 1 < n - 3, plus pair 0
    pair = rho[:, 0:2 * n_pairs:2] + rho[:, 1:2 * n_pairs:2]  # (k, n_pairs)
    nonpos = pair <= 0
    first_nonpos = np.where(nonpos.any(axis=1), nonpos.argmax(axis=1), n_pairs)
    last = np.minimum(first_nonpos, n_pairs - 1)  # J: the last pair looked at
    # Initial monotone sequence: pairs 0..J-1 replaced by their running minimum.
    monotone = np.minimum.accumulate(pair, axis=1)
    before = np.arange(n_pairs)[None, :] < last[:, None]
    rows = np.arange(k)
    even_last = rho[rows, 2 * last]
    tail_term = np.where(last == 0, 1.0,
                         np.where((pair[rows, last] >= 0) | (even_last > 0), even_last, 0.0))
    tau = -1.0 + 2.0 * np.where(before, monotone, 0.0).sum(axis=1) + tail_term
    total = m * n
    tau = np.maximum(tau, 1 / np.log10(total))
    ess = total / tau
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    ess = np.where(constant, float(total), ess)
    return np.where(np.isnan(rho).any(axis=1) & ~constant, np.nan, ess)
