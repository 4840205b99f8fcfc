"""Ranks: where each true value falls among thinned posterior draws (Talts et al. 2018).

Pure functions on arrays.  Ties are broken at random (they occur with discrete or
constrained parameters and with stuck chains), so ranks stay uniform under correct inference.
"""

from __future__ import annotations

import math

import numpy as np


def rank_of_truth(draws: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of ``truth`` among ``draws``.

    draws: (n_draws, *shape); truth: shape.  Returns integers in 0..n_draws of ``shape``:
    the number of draws below the truth plus a uniform share of the draws equal to it.
    """
    draws = np.asarray(draws, dtype=float)
    truth = np.asarray(truth, dtype=float)
    below = (draws < truth).sum(axis=0)
    ties = (draws == truth).sum(axis=0)
    return below + rng.integers(0, ties + 1)


def thin_factor(ess: float, n_draws: int, thin: int | str = "auto") -> int:
    """Keep every k-th draw so that the kept draws are close to independent.

    With ``thin='auto'`` k = ceil(n_draws / ess), from the smallest effective sample size
    over the ranked parameters (bulk and tail); a fixed integer is used as given.
    """
    if thin != "auto":
        return int(thin)
    if not np.isfinite(ess) or ess <= 0:
        return max(1, n_draws // 10)
    return int(min(max(1, math.ceil(n_draws / ess)), max(1, n_draws // 10)))


def thin_draws(draws: np.ndarray, factor: int) -> np.ndarray:
    """(chain, draw, *shape) -> (kept, *shape): every ``factor``-th draw of each chain."""
    kept = draws[:, ::factor]
    return kept.reshape((-1,) + draws.shape[2:])
