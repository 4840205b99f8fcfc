"""Diagnostics of one fit: divergences, tree depth, effective sample size and R-hat.

Thresholds follow R's SBC package and Vehtari et al. (2021): R-hat > 1.01 and a bulk or tail
ESS below 100 (or below the number of ranked draws) flag a fit.  Flagged fits are kept and
counted, never dropped silently: dropping them can itself bias SBC.
"""

from __future__ import annotations

import numpy as np

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
    """
    from arviz_stats.base import array_stats

    with np.errstate(all="ignore"):
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
