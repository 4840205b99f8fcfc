"""Genome-scale fits of the guide-level screen model (``models/crispr_guides.py``), in
seconds per simulated screen, and what a screen designer asks of them: the vocabulary the
genome planner, its plan file and its pilot share.

A :class:`ScreenDesign` is one candidate screen (cell lines x genes x replicates, guides per
gene, reads per guide); a :class:`GenomeTarget` one genome-wide criterion per simulated
screen; :class:`GenomeSettings` what a plan's simulated screens are (priors, candidates, the
shortcut's settings); ``HYPER`` names the model's hyperparameters.

The shortcut that fits a screen in seconds, and why it is exact given the hyperparameters,
is :mod:`sbc.plan.genome_fit`; simulating, fitting and scoring one screen is
:mod:`sbc.plan.genome_screen`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sbc import decisions
from sbc.design import check_dimensions
from sbc.models import crispr_guides

HYPER = ("pi_essential", "mu_essential", "sigma_essential", "sigma_gene", "tau",
         "sigma_guide", "sigma_rep")


def guide_model():
    """The guide-level model module (shipped as ``sbc.models.crispr_guides``)."""
    return crispr_guides


@dataclass(frozen=True, order=True)
class ScreenDesign:
    """A genome-scale screen: cell lines x genes x replicate screens, guides per gene and
    reads per guide (``depth``)."""

    cell_lines: int
    genes: int
    reps: int
    guides: int
    depth: int

    def __post_init__(self):
        check_dimensions(self)

    @property
    def label(self) -> str:
        return f"{self.cell_lines}x{self.genes}x{self.reps}x{self.guides}g{self.depth}r"

    @property
    def dimensions(self) -> dict[str, int]:
        return {"cell_lines": self.cell_lines, "genes": self.genes, "reps": self.reps,
                "guides": self.guides, "depth": self.depth}

    @property
    def n_rows(self) -> int:
        """Counts observed: every guide in every screen."""
        return self.cell_lines * self.reps * self.genes * self.guides

    @property
    def million_reads(self) -> float:
        """Reads sequenced for the screens (the library's T0 sample is in the cost model)."""
        return self.cell_lines * self.reps * self.genes * self.guides * self.depth / 1e6

    # the names the planner's tables and plots use for the logfc designs
    n_cell_lines = property(lambda self: self.cell_lines)
    n_genes = property(lambda self: self.genes)
    n_reps = property(lambda self: self.reps)


@dataclass(frozen=True)
class GenomeTarget:
    """One genome-wide criterion per simulated screen.

    kind ``essential_power``: the share of essential genes called at Bayesian FDR ``fdr``
    is at least ``at_least``.  ``selective_power``: the share of candidate genes whose
    ``level`` interval of the selective effect lies on ``side`` of 0 is at least
    ``at_least``.  ``width``: the share of genes whose ``level`` interval of the gene effect
    is narrower than ``below`` is at least ``at_least``.  ``separation``: the null-normalised
    mean difference of ``n_controls`` essential and non-essential control genes (posterior
    means) is below ``below``."""

    kind: str
    at_least: float = 0.8
    below: float = math.nan
    fdr: float = 0.05
    level: float = 0.95
    side: str = "below"
    n_controls: int = 500
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.kind == "essential_power":
            return f"{self.at_least:.0%} of essential genes called at FDR {self.fdr:g}"
        if self.kind == "selective_power":
            return (f"{self.at_least:.0%} of candidates' selective effects detected "
                    f"({self.level:.0%} interval {self.side} 0)")
        if self.kind == "width":
            return (f"{self.at_least:.0%} of genes with a {self.level:.0%} interval narrower "
                    f"than {self.below:g}")
        return f"control separation (NNMD) below {self.below:g}"


@dataclass(frozen=True)
class GenomeSettings:
    """What a genome plan's simulated screens are: priors, candidates, the shortcut's
    settings and the largest design (for common random numbers)."""

    seed: int
    targets: tuple[GenomeTarget, ...]
    max_cells: int
    max_guides: int
    priors: dict = field(default_factory=dict)          # analysis prior (model's PRIORS)
    design_priors: dict = field(default_factory=dict)   # truths drawn from (default: priors)
    n_candidates: int = 20
    fraction: float = 0.2
    selective_effect: float | None = None
    hyper_genes: int | str = "auto"
    hyper_draws: int = 24
    n_pit: int = 10
    t0_depth: float = 500.0
    library_sd: float = 0.55

    def analysis_priors(self) -> dict:
        return self.priors or guide_model().PRIORS

    def truth_priors(self) -> dict:
        return self.design_priors or self.analysis_priors()

    @property
    def calibrated_stream(self) -> bool:
        """Truths come from the analysis prior, so every PIT is a valid SBC rank."""
        return not self.design_priors and self.selective_effect is None


# the screen record's fields that essential_decisions reads (written by run_screen)
ESSENTIAL_FIELDS = ("p_ess_gene", "essential_gene", "n_essential", "p_ess_sum",
                    "p_ess_count_var", "reliability_var", "p_ess_bins")


def essential_decisions(records: list[dict]) -> dict | None:
    """A design's P(essential) as a decision probability, from its screen records
    (:mod:`sbc.decisions`); None when no record carries the fields.

    - ``brier``: the Brier score of every gene of every screen and its decomposition
      (10 bins); ``table``: the reliability table pooled over screens, its intervals
      cluster-robust with screens as units (genes of one screen share hyperparameters).
    - ``per_gene``: Spiegelhalter's test on one gene per screen (the PIT gene, ``rep mod
      n_pit``), so the outcomes are independent.
    - ``count``: per screen, z = (essential count - sum of P(essential)) / sd, with the
      count's posterior variance (law of total variance over the hyperparameter draws),
      tested for mean 0 and sd 1 across screens; ``count_independent`` the same with
      ``sum p (1 - p)``, the variance if the genes' classes were independent given their
      probabilities, which they are not (its sd is above 1 for a calibrated posterior)."""
    recs = [r for r in records if all(k in r for k in ESSENTIAL_FIELDS)]
    if not recs:
        return None
    bins = [r["p_ess_bins"] for r in recs]
    return {
        "screens": len(recs),
        "brier": decisions.brier_from_sums(bins),
        "table": decisions.pooled_reliability_table(bins),
        "per_gene": decisions.spiegelhalter_test([r["p_ess_gene"] for r in recs],
                                                 [float(r["essential_gene"]) for r in recs]),
        "count": decisions.count_z_test([decisions.count_z(r["n_essential"], r["p_ess_sum"],
                                                           r["p_ess_count_var"])
                                         for r in recs]),
        "count_independent": decisions.count_z_test(
            [decisions.count_z(r["n_essential"], r["p_ess_sum"], r["reliability_var"])
             for r in recs])}
