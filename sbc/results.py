"""Studies from Python: :func:`run` and :func:`open` return a :class:`Results`.

The command line and :mod:`sbc.testing` run studies through the same pipeline
(:func:`sbc.pipeline.run_study`); this module is its Python face for notebooks and scripts.
A :class:`Results` reads a store (never writes to it unless asked: :meth:`Results.write_report`,
:meth:`Results.extend`) and offers the tidy tables, the calibration verdicts, the ArviZ
DataTree of fractional ranks and the report's figures as :class:`matplotlib.figure.Figure`
objects.  In Jupyter it shows its verdict table.

    >>> import sbc
    >>> study = sbc.Study(name="demo", models="normal_known_sigma", designs=[(3, 3, 2)],
    ...                   simulations=50, seed=1, sampler="exact")
    >>> results = sbc.run(study, "reports/demo", workers=0)   # doctest: +SKIP
    >>> results.verdict.status                                  # doctest: +SKIP
    'pass'
"""

from __future__ import annotations

import io
import sys
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from sbc import render
from sbc.calibration import Calibration, with_fractional_ranks
from sbc.config import output_dir
from sbc.design import Design
from sbc.errors import ArgumentError, StoreError, StudyError
from sbc.execution import check_how
from sbc.pipeline import run_study
from sbc.plan.results import PlanResults
from sbc.plots import (coverage_plot, ecdf_difference_grid, rank_histogram_grid,
                       truth_estimate_grid, zscore_contraction_grid)
from sbc.record import rank_tree
from sbc.sampling import stored_sampler
from sbc.report import coverage_rows, design_panels, write_report_with_calibration
from sbc.store import Store
from sbc.study import ClusterSpec, Study, check_overrides
from sbc.summarize import Badge, calibrate_store_tables, summary_frame
from sbc.verdicts import Verdict

__all__ = ["Results", "open", "run"]


def run(study: Study | str | Path, out: str | Path | None = None, *,
        simulations: int | str | None = None, max_simulations: int | None = None,
        workers: int | None = None,
        scheduler: str | None = None, report: bool = True, progress: bool = True,
        retry_failed: bool = False, tls=None, threads: int | None = None,
        on_verdict=None) -> Results:
    """Run (or resume) a calibration study and return its :class:`Results`.

    Parameters
    ----------
    study : Study, str or Path
        A :class:`~sbc.study.Study` or the path of a study file (TOML).
    out : str or Path, optional
        Output directory (relative to the current directory).  Default: the study's
        ``run.output`` (relative to the study file), else ``reports/NAME``.  A directory
        that already holds part of this study is resumed.
    simulations : int or "auto", optional
        Replicates per model and design, overriding the study's (raising it later extends
        the stored study; only new replicates are fitted); ``"auto"``: a sequential study
        that stops when its verdict is reached (:mod:`sbc.stopping`).
    max_simulations : int, optional
        The most replicates per model and design of a sequential study (default 1000).
    workers : int, optional
        Local Dask workers (default: one per core); 0 runs in this process without Dask.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    report : bool
        Also write ``report.html``, ``summary.csv`` and ``summary.md`` (the Parquet tables
        and ``ranks.nc`` are always written).
    progress : bool
        Show progress (replicates done, rate, ETA, failures) on standard error.
    retry_failed : bool
        Refit stored failed replicates with their own seeds.
    tls : sbc.dispatch.TLS, optional
        Certificates for a ``tls://`` scheduler.
    threads : int, optional
        Fit in this many threads of this process instead of worker processes: each model
        is compiled once and no workers start (samplers that allow it: nutpie, exact).
    on_verdict : callable, optional
        Called with the :class:`~sbc.calibration.Calibration` as soon as the verdicts are
        known, before the report's figures are drawn (a command line prints them then).

    Returns
    -------
    Results
        The whole store's results (earlier runs included).

    Raises
    ------
    sbc.errors.SbcError
        A bad study, model, store or scheduler, before anything is stored.

    Examples
    --------
    >>> results = sbc.run("studies/crispr_seed.toml", simulations=20)   # doctest: +SKIP
    >>> print(results.verdict.label)                                      # doctest: +SKIP
    """
    # arguments first, named as arguments, before any file is read or the store touched
    check_how(workers=workers, threads=threads, scheduler=scheduler)
    simulations, max_simulations = check_overrides(simulations, max_simulations, cli=False)
    if not isinstance(study, Study):
        study = Study.from_toml(study, simulations=simulations, max_simulations=max_simulations)
    elif simulations == "auto" or (simulations is None and max_simulations is not None):
        study = replace(study, simulations="auto", max_simulations=max_simulations,
                        sequential=study.sequential and replace(
                            study.sequential, max_simulations=max_simulations
                            or study.sequential.max_simulations))
    elif simulations is not None:  # a fixed number: no longer sequential
        study = replace(study, simulations=simulations, max_simulations=max_simulations,
                        sequential=None)
    directory = output_dir(out, study.output, study.base_dir, study.name)
    summary = run_study(study, directory, workers=workers, scheduler=scheduler, report=report,
                        retry_failed=retry_failed, tls=tls, threads=threads,
                        on_verdict=on_verdict,
                        progress_stream=sys.stderr if progress else io.StringIO())
    results = Results(directory, study=study)
    results.last_run = summary
    if summary.calibration is not None:  # computed for the report: not again
        results.__dict__["calibration"] = summary.calibration
    return results


def open(directory: str | Path) -> Results | PlanResults:  # sbc.open, as in xarray.open_*
    """The results stored in ``directory``: a :class:`Results` for the output directory of
    a study, a :class:`PlanResults` for that of a finished plan.

    Raises :class:`~sbc.errors.StoreError` when the directory holds neither."""
    if (Path(directory) / PlanResults.FILE).is_file():
        return PlanResults(directory)
    return Results(directory)


class Results:
    """The results of a calibration study, read from its output directory.

    Attributes
    ----------
    directory : Path
        The store.
    study : Study or None
        The study that wrote it (None for a store whose designs cannot be rebuilt from
        their labels, e.g. posterior SBC; pass the study file to :meth:`extend`).
    manifest : dict
        ``study.json``: the study, fingerprint, model sources' digests and library versions.
    last_run : sbc.pipeline.RunSummary or None
        What the :func:`run` that returned this object did (new, resumed and failed fits).

    Examples
    --------
    >>> r = sbc.open("reports/crispr_seed")               # doctest: +SKIP
    >>> r.summary().query("verdict == 'fail'")            # doctest: +SKIP
    >>> r.plot_ecdf("crispr_screen", "10x3x3")             # doctest: +SKIP
    """

    def __init__(self, directory: str | Path, study: Study | None = None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise StoreError(f"{self.directory} is not a directory; give the output directory "
                             "of `sbc run` (or of sbc.run)")
        self._store = Store(self.directory)
        self.manifest = self._store.read_manifest()
        self.study = study if study is not None else _stored_study(self.manifest)
        self.last_run = None

    def __repr__(self) -> str:
        v = self.verdict
        return (f"<sbc.Results {self.name!r}: {len(self.replicates)} replicates, "
                f"{v.label if v else 'no verdict'}; {self.directory}>")

    def __str__(self) -> str:
        """What the study found, in sentences: the overall verdict and each model x
        design's, with the fits they rest on."""
        reps = self.replicates
        ok = int((reps["status"] == "ok").sum()) if len(reps) else 0
        head = (f"Study {self.name!r} ({self.directory}): {len(reps)} replicates stored, "
                f"{ok} fitted.")
        if self.verdict is None:
            return f"{head} No verdict yet: no fit succeeded."
        lines = [head, f"Overall: {self.verdict}"]
        diag = self.calibration.diagnostics.set_index(["model", "design"]) \
            if len(self.calibration.diagnostics) else None
        for (model, design), verdict in sorted(self.verdicts.items()):
            fits = (f" ({int(diag.loc[(model, design), 'ok'])} fits)"
                    if diag is not None and (model, design) in diag.index else "")
            lines.append(f"  {model} at {design}{fits}: {verdict}")
        return "\n".join(lines)

    @property
    def name(self) -> str:
        return self.manifest["study"]["name"]

    # --- tables -------------------------------------------------------------------------
    @cached_property
    def _tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return self._store.tables()

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(replicates, parameters) exactly as the store's Parquet tables hold them (the
        parameters without the derived ``u`` and ``flagged``)."""
        return self._tables

    @property
    def replicates(self) -> pd.DataFrame:
        """One row per replicate: model, design, rep, status, failure, diagnostics, flags."""
        return self._tables[0]

    @property
    def parameters(self) -> pd.DataFrame:
        """One row per replicate x ranked scalar: truth, rank, n_ranked, posterior mean, sd,
        quantiles, ESS, R-hat; ``u`` (the randomised fractional rank the tests use) and
        ``flagged`` (the fit had a sampler warning)."""
        reps, params = self._tables
        return with_fractional_ranks(params, reps) if len(params) else params

    # --- verdicts -----------------------------------------------------------------------
    @cached_property
    def calibration(self) -> Calibration | None:
        """Every statistic and verdict (:class:`sbc.calibration.Calibration`), as in the
        report; None when no fit succeeded."""
        reps, params = self._tables
        if reps.empty or params.empty:
            return None
        return calibrate_store_tables(self.manifest, reps, params)

    @property
    def sequential(self) -> dict:
        """A sequential study's outcome per (model, design) (:class:`sbc.stopping.Outcome`:
        ``status``, ``stop_rep``, ``fits``, ``beyond``, ``rejected``, ``log_e``, ``point``);
        empty for a fixed-n study."""
        return self.calibration.sequential if self.calibration is not None else {}

    @property
    def verdict(self) -> Verdict | None:
        """The overall verdict (``.status`` pass / fail / inconclusive, ``.label``,
        ``.reason``, ``.cause``, ``.recommendation``); None when no fit succeeded."""
        return self.calibration.overall() if self.calibration is not None else None

    @property
    def verdicts(self) -> dict[tuple[str, str], Verdict]:
        """(model, design) -> :class:`~sbc.verdicts.Verdict`."""
        return dict(self.calibration.verdicts) if self.calibration is not None else {}

    def summary(self) -> pd.DataFrame:
        """One row per (model, design, scalar): every statistic, the group's pooled and Holm
        p-values and the verdict of its model x design (``summary.csv``)."""
        return summary_frame(self.calibration) if self.calibration is not None else \
            pd.DataFrame()

    def verdict_table(self) -> pd.DataFrame:
        """One row per (model, design): verdict, cause, reason, fits, clean share."""
        rows = []
        for (m, d), v in self.verdicts.items():
            diag = self.calibration.diagnostics.query("model == @m and design == @d").iloc[0]
            rows.append({"model": m, "design": d, "verdict": v.label,
                         "cause": v.cause.kind if v.cause else "", "reason": v.reason,
                         "fits ok": int(diag["ok"]), "fits": int(diag["fits"]),
                         "flagged share": float(diag["flagged"])})
        return pd.DataFrame(rows)

    def to_datatree(self):
        """The fractional ranks as an :class:`xarray.DataTree`: one ``prior_sbc`` (or
        ``posterior_sbc``) group per model and design, the layout ArviZ's
        ``arviz_plots.plot_ecdf_pit`` reads, plus ``sbc_ranks`` with the integer ranks."""
        return rank_tree(self._tables[1])

    # --- figures ------------------------------------------------------------------------
    def _cell(self, model: str | None, design: str | None):
        if self.calibration is None:
            raise StudyError(f"{self.directory} holds no successful fit: nothing to plot")
        cells = list(self.calibration.verdicts)
        models = list(dict.fromkeys(m for m, _ in cells))
        model = model or (models[0] if len(models) == 1 else None)
        designs = [d for m, d in cells if m == model]
        design = design or (designs[0] if len(designs) == 1 else None)
        if (model, design) not in self.calibration.verdicts:
            raise StudyError(f"choose one model and design of this study: model= one of "
                             f"{models}, design= one of "
                             f"{sorted({d for _, d in cells})}; got {model!r}, {design!r}")
        sel = "model == @model and design == @design"
        groups = self.calibration.groups.query(sel)
        scalars = self.calibration.scalars.query(sel)
        block = self.parameters.query(sel)
        return groups, scalars, design_panels(groups, block)

    def plot_ecdf(self, model: str | None = None, design: str | None = None) -> Figure:
        """ECDF difference of the fractional ranks of every parameter of one model x design,
        with the simultaneous 95 % band of the test (model / design may be left out when
        the study has only one)."""
        return ecdf_difference_grid(self._cell(model, design)[2])

    def plot_ranks(self, model: str | None = None, design: str | None = None) -> Figure:
        """Rank histograms of one model x design, with the 95 % range of a bin."""
        return rank_histogram_grid(self._cell(model, design)[2])

    def plot_coverage(self, model: str | None = None, design: str | None = None) -> Figure:
        """Coverage of central posterior intervals minus nominal, with Monte Carlo error."""
        groups, scalars, _ = self._cell(model, design)
        return coverage_plot(coverage_rows(groups, scalars))

    def plot_recovery(self, model: str | None = None, design: str | None = None) -> Figure:
        """Posterior mean and 90 % interval against the truth, per parameter."""
        return truth_estimate_grid(self._cell(model, design)[2])

    def plot_zscores(self, model: str | None = None, design: str | None = None) -> Figure:
        """Posterior z-score against posterior contraction, per parameter."""
        return zscore_contraction_grid(self._cell(model, design)[2])

    # --- writing --------------------------------------------------------------------------
    def write_report(self) -> Path:
        """(Re)write ``report.html``, ``summary.csv``, ``summary.md`` and the tables from the
        store; returns the report's path.  Never refits.

        The store is read and the report written under the store's lock
        (:meth:`sbc.store.Store.for_report`), so the report describes exactly what the store
        holds when it is written; while a run holds the lock this raises StoreError (the
        run writes its own report when it finishes).  A plan's store is refused."""
        with self._store.for_report():
            path, calibration = write_report_with_calibration(self._store)
        self.__dict__.pop("_tables", None)  # read again: the tables the report was made of
        self.__dict__["calibration"] = calibration  # the report's: not computed again
        return path

    def extend(self, simulations: int | str, *, max_simulations: int | None = None,
               workers: int | None = None, study: Study | str | Path | None = None,
               progress: bool = True) -> Results:
        """Raise the study to ``simulations`` replicates per model and design; only the new
        replicates are fitted (same seeds as if the study had asked for them at first).
        ``simulations="auto"``: go on sequentially, fitting only until each verdict is
        reached (at most ``max_simulations``, default 1000, per model and design; the
        stored replicates count first, in order).  ``study``: the study (or its file) when
        this object has none."""
        if simulations is None:
            raise ArgumentError("results.extend(simulations) needs the replicates per model "
                                "and design to reach (more than the store holds), or \"auto\"")
        simulations, max_simulations = check_overrides(simulations, max_simulations, cli=False)
        check_how(workers=workers)
        if simulations != "auto":
            reps = self.replicates
            held = int(reps.groupby(["model", "design"]).size().max()) if len(reps) else 0
            if simulations <= held:
                raise StudyError(f"the store already holds {held} simulations per model and "
                                 f"design; extend to more than {held}, not {simulations} (or "
                                 "to \"auto\": on until each verdict is reached)")
        study = study if study is not None else self.study
        if study is None:
            raise StudyError(f"the designs of {self.directory} cannot be rebuilt from the store; "
                             "pass the study file: results.extend(n, study='path/study.toml')")
        return run(study, self.directory, simulations=simulations,
                   max_simulations=max_simulations, workers=workers, progress=progress)

    def _repr_html_(self) -> str:
        table = self.verdict_table()
        if len(table):
            table["verdict"] = [Badge.of(v) for v in self.verdicts.values()]
        return render.results_html(self.name, str(self.directory), self.verdict, table,
                                   len(self.replicates))


def _stored_study(manifest: dict) -> Study | None:
    """The :class:`Study` a store was written by, rebuilt from its study.json (None when its
    designs are not plain ``CxGxR`` labels)."""
    raw = dict(manifest["study"])
    try:
        designs = tuple(Design.from_label(label) for label in raw["designs"])
    except (ValueError, TypeError, KeyError):
        return None
    cluster = raw.get("cluster")
    raw.update(designs=designs, models=tuple(raw["models"]),
               cluster=ClusterSpec(cluster["kind"], cluster["jobs"],
                                   tuple(map(tuple, cluster.get("options", ()))))
               if cluster else None,
               parameter_map=tuple(map(tuple, raw.get("parameter_map", ()))))
    if isinstance(raw.get("sampler"), dict):
        raw["sampler"] = stored_sampler(raw["sampler"])
    known = set(Study.__dataclass_fields__)
    try:
        return Study(**{k: v for k, v in raw.items() if k in known})
    except (StudyError, TypeError):
        return None
