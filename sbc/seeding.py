"""Every random stream of sbc, derived here and nowhere else.

A result must depend only on what names it, never on worker count, scheduling, resumes or
which other designs a study has; so streams are derived from keys (``SeedSequence`` spawn
keys, or hashes of a row's keys), not drawn in order.

==================  ===========================================  ==================================
stream              entropy; spawn key                           used by
==================  ===========================================  ==================================
replicate           the study's seed; (crc32(model label),       one replicate (``sbc.replicate``);
                    crc32(design label), replicate number)       children in order: 0 simulation,
                                                                 1 fit, 2 rank ties, 3-4 rescues
posterior truth     the replicate's simulation child; its        posterior SBC (``sbc.posterior``)
                    children 0 (which draw), 1 (the data)
observed posterior  the study's seed; (crc32("observed-          posterior SBC: the one fit to the
                    posterior"),)                                observed data
plan prior draws    the plan's seed; (7, 7)                      ``sbc plan``: 400 prior draws per
                                                                 design (contraction)
PIT offsets V       none: a hash of the row's (study seed,       the randomised PIT of every reader
                    model, design, replicate, scalar name)       of a store (``sbc.stats``)
null simulations    NULL_SEED (or the caller's seed)             the ECDF test's null distribution
                                                                 and power (``sbc.stats``)
exact fit           the fit child's first 32-bit word            ``exact_posterior`` backends
sequential power    SEQUENTIAL_POWER_SEED; (seed, 0 shift / 1     ``sbc.sequential``: the pass point
                    narrow) as the generator's entropy
genome screen       the plan's seed; (crc32("genome"), genes,       ``sbc.plan.genome_screen``: one simulated
                    rep) for truths, (.., crc32(design label),   screen's truths (shared by designs
                    rep) for its counts and sub-library          with as many genes) and data
data fit            the fit's seed; (crc32("data-fit"),)          ``sbc.fit`` / ``sbc check``: children
                                                                 0 fit, 1 posterior predictive,
                                                                 2-3 rescues
genome pilot        the plan's seed; (crc32("genome-pilot"),)    ``sbc.plan.genome_pilot``: the
                                                                 pilot posterior's importance draws
plot subsampling    PLOT_SEED                                    ``sbc.plots``: which points to draw
==================  ===========================================  ==================================
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

NULL_SEED = 20220332  # the null simulations of the uniformity test (fixed: p-values reproduce)
PLOT_SEED = 0
SEQUENTIAL_POWER_SEED = 20260511  # departures simulated for the pass point (fixed)
OBSERVED_POSTERIOR_KEY = (zlib.crc32(b"observed-posterior"),)
PLAN_PRIOR_KEY = (7, 7)
DATA_FIT_KEY = (zlib.crc32(b"data-fit"),)


def replicate_key(model_label: str, design_label: str, rep: int) -> list[int]:
    """The spawn key of one replicate (also what its record stores as ``seed_key``)."""
    return [zlib.crc32(model_label.encode()), zlib.crc32(design_label.encode()), int(rep)]


def replicate(study_seed: int, model_label: str, design_label: str,
              rep: int) -> np.random.SeedSequence:
    """The seed of one replicate, fixed by (study seed, model, design, replicate number)."""
    return np.random.SeedSequence(study_seed,
                                  spawn_key=tuple(replicate_key(model_label, design_label, rep)))


def replicate_children(seed: np.random.SeedSequence) -> tuple[np.random.SeedSequence, ...]:
    """(simulation, fit, rank ties): the first three children of a fresh replicate seed."""
    return tuple(seed.spawn(3))


def rescue_children(seed: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The seeds of ``n`` rescue refits: the replicate seed's next children (3, 4, ...),
    after :func:`replicate_children`; the first three streams are unchanged by a rescue."""
    return seed.spawn(n)


def posterior_truth_children(seed: np.random.SeedSequence) -> tuple[np.random.SeedSequence, ...]:
    """(which posterior draw, the data simulated from it) for posterior SBC."""
    return tuple(seed.spawn(2))


def observed_posterior(study_seed: int) -> np.random.SeedSequence:
    """The one fit of posterior SBC to the observed data."""
    return np.random.SeedSequence(study_seed, spawn_key=OBSERVED_POSTERIOR_KEY)


def plan_prior_draws(plan_seed: int, n: int) -> list[np.random.SeedSequence]:
    """Seeds of ``n`` prior draws per design, for the planner's contraction."""
    return np.random.SeedSequence(plan_seed, spawn_key=PLAN_PRIOR_KEY).spawn(n)


GENOME_KEY = zlib.crc32(b"genome")


def genome_screen(plan_seed: int, genes: int, design_label: str,
                  rep: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """(truths, counts) of one simulated genome screen: the truths depend on the number of
    genes and the replicate only, so designs of a plan share them (common random numbers);
    the counts on the design too."""
    truth = np.random.SeedSequence(plan_seed, spawn_key=(GENOME_KEY, int(genes), int(rep)))
    data = np.random.SeedSequence(plan_seed, spawn_key=(GENOME_KEY, zlib.crc32(
        design_label.encode()), int(rep), 0))
    return truth, data


def genome_fit(plan_seed: int, design_label: str,
               rep: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """(which genes one simulated genome screen fits its hyperparameters on, its
    hyperparameter draws)."""
    root = np.random.SeedSequence(plan_seed, spawn_key=(GENOME_KEY, zlib.crc32(
        design_label.encode()), int(rep), 1))
    return tuple(root.spawn(2))


def integer(seed: np.random.SeedSequence) -> int:
    """A seed's first 32-bit word, for samplers that take an integer seed."""
    return int(seed.generate_state(1)[0])


def pit_offsets(*keys) -> np.ndarray:
    """One U(0, 1) value per row, a fixed function of the row's keys (study seed,
    model, design, replicate, parameter name): the V of the randomised PIT.  Keyed rather than
    drawn in table order, so a replicate's value never changes when others are added
    (resume, more designs) and every reader of the store (report, ranks.nc, tests, planner)
    agrees."""
    frame = pd.DataFrame({f"k{i}": np.asarray(k) for i, k in enumerate(keys)})
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def data_fit(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence,
                                 np.random.SeedSequence]:
    """(fit, posterior predictive, root of the rescues) of one fit to real data."""
    root = np.random.SeedSequence(int(seed), spawn_key=DATA_FIT_KEY)
    fit, predictive = root.spawn(2)
    return fit, predictive, root


def genome_pilot(plan_seed: int) -> np.random.SeedSequence:
    """The root of a genome plan's pilot posterior (its importance draws)."""
    return np.random.SeedSequence(int(plan_seed), spawn_key=(zlib.crc32(b"genome-pilot"),))
