"""Designs: how many cell lines, genes and replicate experiments a screen has."""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from sbc.errors import StudyError


@dataclass(frozen=True, order=True)
class Design:
    """A screen design: every gene knocked out in every cell line, ``n_reps`` times."""

    n_cell_lines: int
    n_genes: int
    n_reps: int

    def __post_init__(self):
        check_dimensions(self)

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


def check_dimensions(design) -> None:
    """Every field of a design dataclass (this :class:`Design`, a genome plan's
    :class:`~sbc.plan.genome.ScreenDesign`) must be a positive integer: ValueError naming the
    first that is not."""
    for field in fields(design):
        value = getattr(design, field.name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field.name} must be a positive integer, got {value!r}")


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


def text_lines(text: str):
    """The lines of ``text`` (each with its ``\\n``), one at a time: ``csv.reader`` reads them
    without a copy of the whole text (``io.StringIO`` holds four bytes per character)."""
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", start)
        if stop < 0:
            yield text[start:]
            return
        yield text[start:stop + 1]
        start = stop + 1


def read_screen_csv(text: str, where: str) -> pd.DataFrame:
    """Parse the text of a measured screen's CSV (a pilot, or observed data for posterior
    SBC) and validate it as a design frame (:func:`screen_frame`).

    The one parser of such files, so that a file is read the same way when it is checked and
    when a worker reads it.  Refused with ``StudyError`` (naming ``where``, and the row or
    column): an empty file, a header without data rows, a column name that appears twice
    (pandas would rename the second to ``name.1`` and silently use the first), and empty
    cells (see :func:`screen_frame`).  Only an empty cell is missing: a gene or cell line
    named ``NA`` or ``null`` is a name, not a missing value.

    Memory stays a small multiple of the file's size: the header is read lazily, pandas
    parses the UTF-8 bytes (not an ``io.StringIO``, which holds four bytes per character)
    and validation works on categories (:func:`screen_frame`), never one Python object
    per cell.

    Parameters
    ----------
    text : the file's text (read with :func:`sbc.study.read_text`).
    where : what the file is, for messages, e.g. "observed data data/screen.csv".
    """
    header = next((row for row in csv.reader(text_lines(text)) if row), None)
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
        # factor columns are names: a gene called 007 stays "007", not the number 7 (read
        # as text, not as a categorical: pandas turns numeric-looking categories into
        # numbers); in chunks, each factor kept as integer codes of its names
        frame = _factor_codes(pd.read_csv(
            io.BytesIO(text.encode("utf-8")), keep_default_na=False, na_values=[""],
            dtype={c: str for c in FACTOR_COLUMNS}, encoding="utf-8", chunksize=CHUNK_ROWS))
    except (ValueError, pd.errors.ParserError) as exc:
        raise StudyError(f"{where} cannot be read as CSV: {exc}; fix that line (fields "
                         "separated by commas, one row per measurement)") from None
    if frame.empty:
        raise StudyError(f"{where} has a header but no data rows; add one row per "
                         "measurement (logfc, gene, cell_line)")
    return screen_frame(frame, where)


CHUNK_ROWS = 200_000  # rows of a screen's CSV parsed at a time (tens of MB of text)


def _factor_codes(chunks) -> pd.DataFrame:
    """The chunks of ``pandas.read_csv(..., chunksize=...)`` as one frame, column names
    stripped, each factor column (FACTOR_COLUMNS) a categorical of its names (categories
    sorted as strings, missing cells missing): a chunk's text is dropped once coded, so a
    file of millions of rows never holds one string per cell."""
    parts, names = [], {}
    for chunk in chunks:
        chunk.columns = [str(c).strip() for c in chunk.columns]
        for col in (c for c in FACTOR_COLUMNS if c in chunk.columns):
            known = names.setdefault(col, {})
            cat = chunk[col].astype("category")
            local = np.array([known.setdefault(str(v), len(known))
                              for v in cat.cat.categories] + [-1], dtype=np.int64)
            chunk[col] = local[cat.cat.codes.to_numpy().astype(np.int64)].astype(np.int32)
        parts.append(chunk)
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    for col, known in names.items():
        texts = sorted(known)
        order = np.array([known[t] for t in texts] + [-1], dtype=np.int64)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        rank[-1] = -1
        frame[col] = pd.Categorical.from_codes(rank[frame[col].to_numpy()], categories=texts)
    return frame


def screen_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """A measured screen (a pilot, or observed data for posterior SBC) as a design frame.

    Needs columns ``logfc``, ``gene`` and ``cell_line``; the replicate column may be called
    ``expt`` or ``replicate`` (numbered within each cell line x gene when absent).  Rows are
    sorted by cell line, gene, replicate (the order ``design_frame`` uses, which models may
    rely on) and the factors become categorical in that order.

    Every step works on the categories and their integer codes (a factor has few distinct
    values and many rows), so validating millions of rows makes no Python object per cell.
    """
    missing = [c for c in ("logfc", "gene", "cell_line") if c not in frame.columns]
    if missing:
        raise StudyError(f"{where} lacks column(s) {', '.join(missing)}; it needs logfc, gene, "
                         "cell_line (and optionally expt or replicate), one row per measurement")
    factors = {}
    for col in (c for c in FACTOR_COLUMNS if c in frame.columns):
        factors[col] = _factor(frame[col])
        codes, texts, _ = factors[col]
        blank = np.array([not t.strip() for t in texts] + [True], dtype=bool)  # -1: missing
        empty = blank[codes]
        if empty.any():
            rows = np.flatnonzero(empty)
            more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
            raise StudyError(f"{where}: the {col!r} cell of data row {rows[0] + 1}{more} is "
                             "empty; fill it in or remove the row (every measurement needs "
                             "its gene, cell line and replicate)")
    if "expt" not in factors and "replicate" in factors:
        factors["expt"] = factors["replicate"]
    if "expt" not in factors:  # numbered within each cell line x gene, in row order
        (cell, n_cells), (gene, _) = ((factors[c][0], len(factors[c][1]))
                                      for c in ("cell_line", "gene"))
        key = pd.Series(gene.astype(np.int64) * max(n_cells, 1) + cell)
        number = key.groupby(key.to_numpy(), sort=False).cumcount().to_numpy()
        factors["expt"] = _factor(pd.Series(number))
    logfc = pd.to_numeric(frame["logfc"], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(logfc))
    if len(bad):
        raise StudyError(f"{where}: logfc in data row {bad[0] + 1} is missing or not a finite "
                         "number; remove or fix that row")
    order = ("cell_line", "gene", "expt")
    # sorted as the values sort (text: as strings; numbered replicates: as numbers; a
    # categorical: in its categories' order), ties in row order (np.lexsort is stable, as
    # pandas' multi-column sort is)
    rows = np.lexsort([factors[c][2][factors[c][0]] for c in reversed(order)])
    out = {}
    for col in order:
        codes, texts, _ = factors[col]
        codes = codes[rows]
        seen = pd.unique(codes)  # categories in order of first appearance in sorted rows
        remap = np.empty(len(texts), dtype=np.int64)
        remap[seen] = np.arange(len(seen))
        out[col] = pd.Categorical.from_codes(remap[codes], categories=[texts[i] for i in seen])
    out["logfc"] = logfc[rows]
    return pd.DataFrame(out)


def _factor(values: pd.Series) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A column as (codes, texts, ranks): ``codes`` (-1 where missing) index ``texts``, each
    distinct value as text (``str(value)``; values that read alike, such as 1 and "1", share
    one) and ``ranks``: each text's place in sort order, indexed by code (-1 last).  The
    sort order is the categories' order: a column of values becomes a categorical with
    its values sorted (text as strings, numbers as numbers); a categorical keeps its own.

    Computed once per distinct value, never per row."""
    cat = values if isinstance(values.dtype, pd.CategoricalDtype) else \
        values.astype("category")
    codes = cat.cat.codes.to_numpy().astype(np.int32 if len(cat.cat.categories) < 2**31
                                            else np.int64)
    texts = [str(v) for v in cat.cat.categories]
    if len(set(texts)) < len(texts):  # values that read alike: one name, at the first's place
        unique = list(dict.fromkeys(texts))
        index = {t: i for i, t in enumerate(unique)}
        codes = np.array([index[t] for t in texts] + [-1])[codes]
        texts = unique
    return codes, texts, np.arange(len(texts) + 1)
