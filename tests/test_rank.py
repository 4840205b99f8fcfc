"""Ranks of truths among posterior draws: uniform for exact posteriors, not for wrong ones."""

import numpy as np
import pytest

from sbc.rank import rank_of_truth, thin_draws, thin_factor
from sbc.stats import fractional_ranks, uniformity_test

N_SIMS, N_DRAWS = 300, 99


def conjugate_ranks(seed, shift=0.0, scale=1.0):
    """truth ~ N(0,1), y ~ N(truth, 0.5) x 4; draws from the exact posterior, optionally
    shifted by ``shift`` posterior sds or scaled by ``scale``."""
    rng = np.random.default_rng(seed)
    ranks = []
    for _ in range(N_SIMS):
        truth = rng.normal()
        y = rng.normal(truth, 0.5, size=4)
        precision = 1 + 4 / 0.25
        mean, sd = (y.sum() / 0.25) / precision, precision ** -0.5
        draws = rng.normal(mean + shift * sd, scale * sd, size=(N_DRAWS, 1))
        ranks.append(rank_of_truth(draws, np.array([truth]), rng)[0])
    return fractional_ranks(np.array(ranks), np.full(N_SIMS, N_DRAWS))


def test_ranks_uniform_for_exact_posterior():
    # False-alarm rate of this check: 1 % (fixed seed, so the outcome is deterministic).
    assert uniformity_test(conjugate_ranks(1)).p_value > 0.01


@pytest.mark.parametrize("shift,scale,shape", [(0.7, 1.0, "biased"), (0.0, 0.5, "too_narrow"),
                                               (0.0, 2.0, "too_wide")])
def test_ranks_not_uniform_for_wrong_posterior(shift, scale, shape):
    result = uniformity_test(conjugate_ranks(2, shift, scale))
    assert result.p_value < 0.001
    assert result.shape.startswith(shape)


def test_ranks_lie_in_zero_to_number_of_draws_and_ties_are_split():
    rng = np.random.default_rng(0)
    draws = np.zeros((10, 1))  # every draw ties with the truth
    ranks = [rank_of_truth(draws, np.zeros(1), rng)[0] for _ in range(2000)]
    assert min(ranks) == 0 and max(ranks) == 10
    # Random tie-breaking spreads ties uniformly over 0..10: mean 5 (sd of mean ~0.07).
    assert abs(np.mean(ranks) - 5) < 0.3


def test_thin_factor_from_effective_sample_size():
    assert thin_factor(1000.0, 1000) == 1
    assert thin_factor(100.0, 1000) == 10
    assert thin_factor(5.0, 1000) == 100  # never fewer than 10 ranked draws
    assert thin_factor(float("nan"), 1000) == 100
    assert thin_factor(100.0, 1000, thin=3) == 3
    draws = np.arange(2 * 10).reshape(2, 10, 1).astype(float)
    assert thin_draws(draws, 5).ravel().tolist() == [0, 5, 10, 15]
