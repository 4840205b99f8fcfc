"""A plan's outcome for Python and notebooks: ``sbc.plan("plan.toml")`` runs
:func:`plan_screen` and returns a :class:`PlanResults`; ``sbc.open(directory)`` reads one."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from sbc.config import output_dir
from sbc.errors import StoreError
from sbc.plan.config import Plan
from sbc.plan.planner import run_plan
from sbc.plan.genome_config import GenomePlan, is_genome_plan, load_genome_plan

__all__ = ["PlanResults", "plan_screen"]


def plan_screen(plan: str | Path | Plan, out: str | Path | None = None, *,
                workers: int | None = None, scheduler: str | None = None,
                progress: bool = True) -> PlanResults:
    """Plan a screen: the cheapest design that meets the plan's targets (``sbc plan``).

    Parameters
    ----------
    plan : str, Path, sbc.plan.Plan or sbc.plan.genome_config.GenomePlan
        A plan file (TOML; ``kind = "genome"`` for a genome-wide guide-level plan) or a
        parsed plan.
    out : str or Path, optional
        Output directory (relative to the current directory); default the plan's
        ``run.output`` (relative to the plan file), else ``reports/NAME``.  Resumable.
    workers, scheduler : as for :func:`sbc.run`.
    progress : bool
        Show progress on standard error.

    Returns
    -------
    PlanResults

    Examples
    --------
    >>> p = sbc.plan("studies/plan_screen.toml")   # doctest: +SKIP
    >>> p.recommended["design"]                     # doctest: +SKIP
    '12x100x3'
    """
    from sbc.execution import check_how

    check_how(workers=workers, scheduler=scheduler)  # before the plan file is read
    stream = sys.stderr if progress else io.StringIO()
    plan = load_any_plan(plan)
    directory = output_dir(out, plan.output, plan.base_dir, plan.name)
    run_plan(plan, directory, workers=workers, scheduler=scheduler, stream=stream)
    return PlanResults(directory)


def load_any_plan(plan):
    """A plan file of either kind (``kind = "genome"``: a genome-wide guide-level plan) read
    and validated; a ``Plan`` or ``GenomePlan`` is returned as it is."""
    if isinstance(plan, (Plan, GenomePlan)):
        return plan
    return load_genome_plan(plan) if is_genome_plan(plan) else Plan.from_toml(plan)


class PlanResults:
    """The outcome of a design plan, read from its output directory (``plan.json``,
    ``plan.csv``).

    Attributes
    ----------
    directory : Path
    recommended : dict or None
        The recommended design's row (design, cost, P(target met) with its interval,
        simulations, precision, SBC verdict), None when no design meets the target.
    table : pandas.DataFrame
        One row per evaluated design, cheapest first.
    fits : dict
        Fits used, new, for the full grid, share saved.
    plan : dict
        The plan as run (targets, probability, cost, search settings).
    """

    FILE = "plan.json"

    def __init__(self, directory: str | Path):
        import json

        self.directory = Path(directory)
        try:
            data = json.loads((self.directory / self.FILE).read_text())
            self.table = pd.read_csv(self.directory / "plan.csv")
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.directory} holds no finished plan ({self.FILE} and "
                             f"plan.csv): {exc}; run `sbc plan` (or sbc.plan) into it") from None
        self.plan, self.recommended = data["plan"], data["recommended"]
        self.fits, self.seconds = data["fits"], data["seconds"]
        self.targets = data.get("targets", [])
        self.kind = data.get("kind", "logfc")

    @property
    def name(self) -> str:
        return self.plan["name"]

    def __repr__(self) -> str:
        r = self.recommended
        what = f"recommended {r['design']}" if r else "no design meets the target"
        return f"<sbc.PlanResults {self.name!r}: {what}; {self.directory}>"

    def plot(self) -> Figure:
        """P(target met) with its interval against each design dimension (a genome plan:
        against cost, every evaluated design)."""
        from sbc.plots import plan_cost_figure, plan_curves_figure

        if self.kind == "genome":
            r = self.recommended
            return plan_cost_figure(self.table, self.plan["probability"],
                                    self.plan["cost"].get("unit", ""), r["design"] if r else None)
        return plan_curves_figure(self.table, self.plan["probability"])

    def _repr_html_(self) -> str:
        from sbc import render

        r = self.recommended
        shape = "cell lines x genes x replicates x guides, reads per guide" \
            if self.kind == "genome" else "cell lines x genes x replicates"
        text = (f"{r['design']} ({shape}), cost {r['cost']:g}: "
                f"P(target met) = {r['p_success']:.2f} [{r['p_lower']:.2f}, {r['p_upper']:.2f}]"
                f", SBC {r['calibration']}" if r else "no design meets the target with the "
                "stated confidence")
        return render.plan_results_html(self.name, str(self.directory), text, self.table)

