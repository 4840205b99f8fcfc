"""Designs: how many cell lines, genes and replicate experiments a screen has."""

from __future__ import annotations

import io
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

    @property
    def dimensions(self) -> dict[str, int]:
        """The planner's names of the dimensions (``sbc.plan.criteria.dominated``)."""
        return {"cell_lines": self.n_cell_lines, "genes": self.n_genes, "reps": self.n_reps}

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


FACTOR_COLUMNS = ("cell_line", "gene", "expt", "replicate")


def read_screen_csv(text: str, where: str) -> pd.DataFrame:
    """Parse the text of a measured screen's CSV (a pilot, or observed data for posterior
    SBC) and validate it as a design frame (:func:`screen_frame`).

    The one parser of such files, so that a file is read the same way when it is checked and
    when a worker reads it.  Refused with ``StudyError`` (naming ``where``, and the row or
    column): an empty file, a header without data rows, a column name that appears twice
    (pandas would rename the second to ``name.1`` and silently use the first), and empty
    cells (see :func:`screen_frame`).  Only an empty cell is missing: a gene or cell line
    named ``NA`` or ``null`` is a name, not a missing value.

    Parameters
    ----------
    text : the file's text (read with :func:`sbc.study.read_text`).
    where : what the file is, for messages, e.g. "observed data data/screen.csv".
    """
    import csv

    from sbc.errors import StudyError

    header = next((row for row in csv.reader(io.StringIO(text)) if row), None)
    if header is None:
        raise StudyError(f"{where} is empty; it needs a header line (logfc,gene,cell_line) "
                         "and one row per measurement")
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        key = name.strip()
        if key in seen:
            raise StudyError(f"{where}: column name {key!r} appears twice in the header "
                             f"(columns {seen[key]} and {i}); rename or remove one of them "
                             "(otherwise only the first would be read)")
        seen[key] = i
    try:
        # factor columns are names: a gene called 007 stays "007", not the number 7
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""],
                            dtype={c: str for c in FACTOR_COLUMNS})
    except (ValueError, pd.errors.ParserError) as exc:
        raise StudyError(f"{where} cannot be read as CSV: {exc}; fix that line (fields "
                         "separated by commas, one row per measurement)") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise StudyError(f"{where} has a header but no data rows; add one row per "
                         "measurement (logfc, gene, cell_line)")
    return screen_frame(frame, where)


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
    for col in (c for c in FACTOR_COLUMNS if c in frame.columns):
        values = frame[col]
        empty = values.isna().to_numpy() | values.astype(str).str.strip().eq("").to_numpy()
        if empty.any():
            rows = np.flatnonzero(empty)
            more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
            raise StudyError(f"{where}: the {col!r} cell of data row {rows[0] + 1}{more} is "
                             "empty; fill it in or remove the row (every measurement needs "
                             "its gene, cell line and replicate)")
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
