"""Designs: how many cell lines, genes and replicate experiments a screen has."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True, order=True)
class Design:
    """A screen design: every gene knocked out in every cell line, ``n_reps`` times."""

    n_cell_lines: int
    n_genes: int
    n_reps: int

    def __post_init__(self):
        for field in ("n_cell_lines", "n_genes", "n_reps"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")

    @property
    def label(self) -> str:
        """Short name used in the store and reports: ``cell_lines x genes x reps``."""
        return f"{self.n_cell_lines}x{self.n_genes}x{self.n_reps}"

    @property
    def n_rows(self) -> int:
        return self.n_cell_lines * self.n_genes * self.n_reps

    def frame(self) -> pd.DataFrame:
        return design_frame(self.n_cell_lines, self.n_genes, self.n_reps)

    @classmethod
    def from_label(cls, label: str) -> Design:
        parts = label.split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"design label must look like '10x3x3', got {label!r}")
        return cls(*(int(p) for p in parts))


def design_frame(n_cell_lines: int, n_genes: int, n_reps: int) -> pd.DataFrame:
    """One row per (cell line, gene, experiment), as in the seed notebook.

    Returns a DataFrame with categorical ``cell_line``, ``gene`` and ``expt`` columns
    (categories ``c00..``, ``g00..``, ``e0..``, ordered as created) and a placeholder
    ``logfc`` column of zeros, because Bambi needs the response column to build a model;
    the pipeline replaces it with simulated values.
    """
    Design(n_cell_lines, n_genes, n_reps)  # validates
    width_c, width_g = len(str(n_cell_lines - 1)), len(str(n_genes - 1))
    cells = [f"c{i:0{width_c}d}" for i in range(n_cell_lines)]
    genes = [f"g{i:0{width_g}d}" for i in range(n_genes)]
    expts = [f"e{i}" for i in range(n_reps)]
    rows = list(itertools.product(cells, genes, expts))
    frame = pd.DataFrame(rows, columns=["cell_line", "gene", "expt"])
    for column, categories in (("cell_line", cells), ("gene", genes), ("expt", expts)):
        frame[column] = pd.Categorical(frame[column], categories=categories)
    frame["logfc"] = 0.0
    return frame


def screen_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """A measured screen (a pilot, or observed data for posterior SBC) as a design frame.

    Needs columns ``logfc``, ``gene`` and ``cell_line``; the replicate column may be called
    ``expt`` or ``replicate`` (numbered within each cell line x gene when absent).  Rows are
    sorted by cell line, gene, replicate (the order ``design_frame`` uses, which models may
    rely on) and the factors become categorical in that order.
    """
    from sbc.errors import StudyError

    missing = [c for c in ("logfc", "gene", "cell_line") if c not in frame.columns]
    if missing:
        raise StudyError(f"{where} lacks column(s) {', '.join(missing)}; it needs logfc, gene, "
                         "cell_line (and optionally expt or replicate), one row per measurement")
    frame = frame.rename(columns={"replicate": "expt"}) if "expt" not in frame else frame.copy()
    if "expt" not in frame:
        frame["expt"] = frame.groupby(["cell_line", "gene"]).cumcount()
    logfc = pd.to_numeric(frame["logfc"], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(logfc))
    if len(bad):
        raise StudyError(f"{where}: logfc in data row {bad[0] + 1} is missing or not a finite "
                         "number; remove or fix that row")
    frame["logfc"] = logfc
    frame = frame.sort_values(["cell_line", "gene", "expt"], ignore_index=True)
    for col in ("cell_line", "gene", "expt"):
        values = frame[col].astype(str)
        frame[col] = pd.Categorical(values, categories=list(dict.fromkeys(values)))
    return frame[["cell_line", "gene", "expt", "logfc"]]
