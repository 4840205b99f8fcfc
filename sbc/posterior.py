"""Posterior SBC (Säilynoja et al. 2025): calibration where a user's data actually lie.

Prior SBC checks calibration averaged over the whole prior.  Posterior SBC starts from an
observed data set y_obs: it fits the model to y_obs once, and for each replicate draws
parameters theta* from that posterior, simulates new data y_new ~ p(y | theta*) on the same
design, fits the model to y_obs and y_new together, and ranks theta* among the draws.  Under
correct inference theta* is a draw from p(theta | y_obs, y_new), so ranks are uniform.

The observed CSV needs columns ``logfc``, ``gene`` and ``cell_line`` (``expt`` optional).
Its text travels with the task (so remote workers need no copy) and its hash is part of the
study fingerprint.  Replicates use the same store, report and verdicts as prior SBC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from sbc import seeding
from sbc.design import read_screen_csv
from sbc.errors import StudyError
from sbc.config import check_path_name, read_text, safe_name
from sbc.readers import read_screen
from sbc.sampling import make_backend
from sbc.simulate import _is_rng
from sbc.spec import make_spec

# PyMC and PyTensor are imported where a simulator is built: a study with posterior SBC is
# validated (sbc.study imports this module) without loading them.


def read_observed(path: Path) -> pd.DataFrame:
    """Read and validate an observed data set (see ``sbc.design.read_screen_csv``)."""
    return read_screen_csv(_observed_text(path), f"observed data {path}")


def _observed_text(path: Path) -> str:
    if not Path(path).exists():
        raise StudyError(f"observed data file not found: {path}; give a CSV path relative to "
                         "the study file")
    return read_text(path, "observed data file")


@dataclass(frozen=True)
class PosteriorDesign:
    """The design of a posterior-SBC study: the observed rows plus as many new rows.

    Duck-types ``sbc.design.Design`` (``label``, ``n_rows``, ``frame()``) so replicates,
    store and report treat it like any other design.
    """

    name: str
    csv_text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.csv_text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"posterior-{self.name}"

    @cached_property
    def observed(self) -> pd.DataFrame:
        return read_screen_csv(self.csv_text, f"observed data {self.name}")

    @property
    def n_rows(self) -> int:
        return 2 * len(self.observed)

    def new_frame(self) -> pd.DataFrame:
        """The rows new data are simulated for: the observed design again."""
        return self.observed.assign(logfc=0.0)

    def frame(self) -> pd.DataFrame:
        """Observed rows then new rows (response of the new rows is a placeholder)."""
        return pd.concat([self.observed, self.new_frame()], ignore_index=True)


def posterior_design(path: Path, samples: Path | None = None, genes: int | None = None,
                     cell_lines: int | None = None) -> PosteriorDesign:
    """The design of a posterior-SBC study from its observed data file, validated with the
    file name in messages; its label ``posterior-STEM`` names a store directory, so the file
    name must be a safe path component (``sbc.study.check_path_name``).

    A long CSV travels as it is.  Any other format :func:`sbc.readers.read_screen` reads (a
    gene-effect matrix, a count table and its sheet), and a subset of the first ``genes`` /
    ``cell_lines``, travels as the long CSV it becomes, so workers parse one format and the
    fingerprint covers exactly the values fitted."""
    path = Path(path)
    stem = path.name.split(".")[0]
    suffix = "".join(f"-{n}{k[0]}" for k, n in (("genes", genes), ("cells", cell_lines)) if n)
    plain = genes is None and cell_lines is None and samples is None and path.suffix == ".csv"
    text = _observed_text(path) if plain else ""  # read once (a large file: once in memory)
    end = text.find("\n")
    if plain and "logfc" in text[:end if end >= 0 else len(text)]:  # the header line
        read_screen_csv(text, f"observed data {path}")
    else:
        text = ""  # not kept while the file is read again as any format
        screen = read_screen(path, samples)
        if genes is not None or cell_lines is not None:
            screen = screen.subset(genes=genes, cell_lines=cell_lines)
        text = screen.frame[["logfc", "gene", "cell_line", "expt"]].to_csv(index=False)
    name = stem + suffix
    check_path_name(f"posterior-{name}", f"observed data {path}: the design label",
                    f"rename the file to e.g. {safe_name(stem, 'observed')}.csv")
    return PosteriorDesign(name=name, csv_text=text)


class PosteriorSimulator:
    """theta* from the observed-data posterior, then y_new ~ p(y | theta*); returns the
    truths and the response of observed + new rows (the data the replicate is fitted to)."""

    def __init__(self, model, design: PosteriorDesign, sampler, study_seed: int):
        import pymc as pm
        import pytensor
        from pymc.model.transform.conditioning import do

        observed = design.observed
        self.y_obs = observed["logfc"].to_numpy(float)
        obs_spec = make_spec(model, observed)
        backend = make_backend(obs_spec, sampler, observed)
        fit = backend.fit(self.y_obs, seeding.integer(seeding.observed_posterior(study_seed)))
        self.observed_fit_divergences = int(fit.diverging.sum())
        free = [rv.name for rv in obs_spec.generative.free_RVs]
        self.draws = {n: fit.draws[n].reshape((-1,) + fit.draws[n].shape[2:]) for n in free}
        self.n_draws = len(next(iter(self.draws.values())))

        new_spec = make_spec(model, design.new_frame())
        self._fixed = {n: pytensor.shared(self.draws[n][0], name=f"sbc_fixed_{n}") for n in free}
        intervened = do(new_spec.generative, self._fixed)
        self.names = tuple(new_spec.parameters)
        outputs = [intervened[n] for n in self.names] + [intervened[new_spec.response]]
        self._fn = pm.pytensorf.compile([], outputs, random_seed=0)
        self._rngs = [v for v in self._fn.get_shared() if _is_rng(v)]

    def draw(self, seed: np.random.SeedSequence) -> tuple[dict[str, np.ndarray], np.ndarray]:
        import pymc as pm

        pick_seed, data_seed = seeding.posterior_truth_children(seed)
        index = int(np.random.default_rng(pick_seed).integers(self.n_draws))
        for name, shared in self._fixed.items():
            shared.set_value(self.draws[name][index])
        pm.pytensorf.reseed_rngs(self._rngs, data_seed.generate_state(4).tolist())
        values = self._fn()
        truths = {n: np.asarray(v, dtype=float) for n, v in zip(self.names, values[:-1])}
        return truths, np.concatenate([self.y_obs, np.asarray(values[-1], dtype=float)])
