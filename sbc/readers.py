"""Real screens in: a long log-fold-change CSV, a wide gene-effect matrix (DepMap's
``CRISPRGeneEffect.csv`` in either orientation) or a MAGeCK count table with its sample
sheet, each read into the one long frame the models fit (columns ``cell_line``, ``gene``,
``expt``, ``logfc``; see :func:`sbc.design.screen_frame`).

:func:`read_screen` recognises the format from the header; :func:`read_gene_effects` and
:func:`read_counts` read one format.  Every reader refuses a malformed file whole with a
:class:`~sbc.errors.DataError` naming the file, the line (the header is line 1) or column,
and the fix; nothing is half-read.  What a reader decided for the user (missing cells
dropped, the reference samples found by name, the pseudo-count) is kept in ``notes``.

The readers check their files line by line so that every refusal names the line, the
column or the sample: the shared text reading and :class:`Screen` are :mod:`sbc.screen`, the
MAGeCK count table and its sample sheet :mod:`sbc.counts` (:func:`read_counts` and
:class:`CountScreen` are importable from here too); this module recognises the format and
reads long CSVs and gene-effect matrices.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.counts import CountScreen, _counts_from_text, read_counts
from sbc.design import read_screen_csv
from sbc.errors import DataError
from sbc.screen import (MISSING, Screen, _check_header, _check_width, _file_text, _header,
                        _row_stream, _sorted_frame)

__all__ = ["CountScreen", "Screen", "as_screen", "detect_format", "read_counts",
           "read_gene_effects", "read_screen"]

FORMATS = {
    "long": "a long CSV with columns logfc, gene, cell_line (and optionally expt or replicate)",
    "gene_effect": "a gene-effect matrix (genes x cell lines or cell lines x genes, e.g. "
                   "DepMap's CRISPRGeneEffect.csv): a first column of labels, one numeric "
                   "column per cell line or gene",
    "counts": "a MAGeCK count table (columns sgRNA, Gene, then one read-count column per "
              "sample), tab- or comma-separated",
}
# DepMap's cell-line (model) ids, and its gene headers "SYMBOL (ENTREZ)"
DEPMAP_ID = re.compile(r"^ACH-\d+$")
ENTREZ_GENE = re.compile(r"^(?P<symbol>\S+) \((?P<entrez>\d+)\)$")
GENE_HEADERS = {"gene", "genes", "gene_symbol", "symbol", "hugo_symbol", "gene_id", "id"}
CELL_HEADERS = {"modelid", "model_id", "depmap_id", "cell_line", "cellline", "cell_lines",
                "model", "ach_id", "sample"}


def detect_format(header: list[str]) -> str | None:
    """The format a header line announces, or None (``long``, ``counts``, ``gene_effect``
    are told by their column names; a matrix by elimination, see :func:`read_screen`)."""
    low = {h.strip().lower() for h in header}
    if {"sgrna", "gene"} <= low:
        return "counts"
    if {"logfc", "gene", "cell_line"} <= low:
        return "long"
    return None


def read_screen(path: str | Path, samples: str | Path | None = None, *,
                genes_as: str | None = None) -> Screen:
    """Read a real screen from ``path``, recognising its format from the header.

    Parameters
    ----------
    path : a long logfc CSV, a gene-effect matrix or a MAGeCK count table (``.gz`` too).
    samples : the sample sheet of a count table (see :func:`read_counts`).
    genes_as : for a matrix whose orientation cannot be told, ``"rows"`` or ``"columns"``.

    Returns
    -------
    Screen (a :class:`CountScreen` for a count table).
    """
    path = Path(path)
    where = f"data file {path}"
    text = _file_text(path, "data file")
    delimiter, header = _header(text, where)  # the rest is read by the format's reader
    fmt = detect_format(header)
    if fmt == "counts":
        return _counts_from_text(text, path, samples)
    if samples is not None:
        raise DataError(f"{where}: a sample sheet was given but the file is not a MAGeCK count "
                        "table (its header lacks sgRNA and Gene); drop the sample sheet or "
                        "give the count table")
    if fmt == "long":
        if delimiter != ",":  # read_screen_csv reads commas; a tab-separated file is re-written
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            for _, row in _row_stream(text, where)[1]():
                writer.writerow(row)
            text = out.getvalue()
        frame = _sorted_frame(read_screen_csv(text, where), where)
        return Screen(frame, str(path), "long")
    if len(header) < 2:  # (a header without data lines is told by the matrix reader)
        raise DataError(f"{where}: format not recognised; it must be one of: "
                        + "; ".join(FORMATS.values()))
    return _matrix_from_rows(path, text, genes_as)


def as_screen(data, samples=None) -> Screen:
    """``data`` as a :class:`Screen`: a Screen, a path, or a long DataFrame."""
    if isinstance(data, Screen):
        return data
    if isinstance(data, pd.DataFrame):
        return Screen(_sorted_frame(data, "data frame"), "data frame", "long")
    if isinstance(data, str | Path):
        return read_screen(data, samples)
    raise TypeError(f"data must be a file path, a pandas DataFrame (logfc, gene, cell_line) "
                    f"or an sbc Screen, got {type(data).__name__}")


# ---------------------------------------------------------------------- gene-effect matrix

def read_gene_effects(path: str | Path, *, genes_as: str | None = None) -> Screen:
    """Read a gene-effect matrix (e.g. DepMap's ``CRISPRGeneEffect.csv``, Chronos scale).

    Either orientation: genes as rows and cell lines as columns, or the reverse (DepMap's own
    layout, whose gene headers read ``SYMBOL (ENTREZ)``; the symbol is kept).  The
    orientation is told by DepMap cell-line ids (``ACH-000001``), ``SYMBOL (ENTREZ)`` gene
    labels, or the first header cell (``gene`` / ``ModelID``); else pass ``genes_as``.
    Missing cells (empty, ``NA``, ``NaN``) are dropped from the long frame and counted in
    ``notes``.  Refused: duplicated genes or cell lines, a value that is not a number or not
    finite, a ragged line, a file without any value.

    Parameters
    ----------
    path : the file (CSV or tab-separated; ``.gz`` too).
    genes_as : ``"rows"`` or ``"columns"`` where the orientation cannot be told.
    """
    path = Path(path)
    return _matrix_from_rows(path, _file_text(path, "gene-effect file"), genes_as)


def _orientation(header: list[str], labels: list[str], genes_as: str | None,
                 where: str) -> str:
    if genes_as is not None:
        if genes_as not in ("rows", "columns"):
            raise DataError(f"{where}: genes_as must be 'rows' or 'columns', got {genes_as!r}")
        return genes_as

    def share(values, pattern):
        return np.mean([bool(pattern.match(v)) for v in values]) if values else 0.0

    columns, corner = header[1:], header[0].strip().lower()
    if share(columns, DEPMAP_ID) > 0.5 or share(labels, ENTREZ_GENE) > 0.5 \
            or corner in GENE_HEADERS:
        return "rows"
    if share(labels, DEPMAP_ID) > 0.5 or share(columns, ENTREZ_GENE) > 0.5 \
            or corner in CELL_HEADERS:
        return "columns"
    raise DataError(f"{where}: cannot tell whether the rows or the columns are genes (no "
                    "DepMap ids ACH-..., no 'SYMBOL (ENTREZ)' gene labels, and the first "
                    f"header cell is {header[0]!r}); write 'gene' as the first header cell "
                    "when genes are rows, or 'cell_line' when cell lines are rows (in Python: "
                    "read_gene_effects(path, genes_as='rows'))")


def _matrix_from_rows(path: Path, text: str, genes_as: str | None) -> Screen:
    where = f"gene-effect file {path}"
    _, stream = _row_stream(text, where)
    rows = stream()  # pass 1: header, widths, labels; pass 2 (below): the values
    header_line, header = next(rows)
    numbers = [header_line]
    if len(header) < 2:
        raise DataError(f"{where}: the header (line {numbers[0]}) has one column; a matrix "
                        "needs a label column and one column per cell line or gene. The format "
                        "is not recognised; it must be one of: " + "; ".join(FORMATS.values()))
    _check_header(header, where, numbers[0], "value")
    labels, lines, width = [], [], len(header)
    for line, row in rows:  # one row at a time: only the labels are kept
        if len(row) != width:
            _check_width([row], [line], width, where)
        labels.append(row[0])
        lines.append(line)
    if not labels:
        raise DataError(f"{where} has a header (line {numbers[0]}) but no data lines; add one "
                        "line per gene or cell line")
    first_line: dict[str, int] = {}
    for label, line in zip(labels, lines):
        if not label:
            raise DataError(f"{where}: line {line} has an empty label in the first column; "
                            "name its gene or cell line, or remove the line")
        if label in first_line:
            raise DataError(f"{where}: label {label!r} appears twice (lines {first_line[label]} "
                            f"and {line}); remove or merge one of them (each gene and cell "
                            "line once)")
        first_line[label] = line
    values = np.full((len(labels), len(header) - 1), np.nan)
    body = stream()
    next(body)  # the header
    for i, (line, row) in enumerate(body):
        for j, cell in enumerate(row[1:]):
            if cell.lower() in MISSING:
                continue
            try:
                x = float(cell)
            except ValueError:
                raise DataError(f"{where}: line {line}, column {j + 2} ({header[j + 1]!r}) "
                                f"holds {cell[:40]!r}, not a number; fix the value or leave the "
                                "cell empty for a missing measurement") from None
            if not math.isfinite(x):
                raise DataError(f"{where}: line {line}, column {j + 2} ({header[j + 1]!r}) "
                                f"holds {cell!r}, not a finite number; leave the cell empty "
                                "for a missing measurement")
            values[i, j] = x
    orientation = _orientation(header, labels, genes_as, where)
    columns = header[1:]
    genes, cells = (labels, columns) if orientation == "rows" else (columns, labels)
    matrix = values if orientation == "rows" else values.T  # genes x cell lines
    genes = _gene_symbols(genes)
    notes = [f"genes as {orientation}: {len(genes)} genes x {len(cells)} cell lines"]
    present = np.isfinite(matrix)
    if not present.any():
        raise DataError(f"{where} holds no values (every cell is empty or NA); give a matrix "
                        "with measurements")
    if not present.all():
        notes.append(f"{int((~present).sum()):,} missing cells dropped")
    for axis, names, what in ((1, genes, "genes"), (0, cells, "cell lines")):
        empty = [n for n, ok in zip(names, present.any(axis=axis)) if not ok]
        if empty:
            notes.append(f"{len(empty)} {what} without any value left out "
                         f"({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''})")
    gi, ci = np.nonzero(present)
    # factors as codes into the (distinct) labels, never one string per value
    long = pd.DataFrame({"cell_line": _labelled(cells, ci), "gene": _labelled(genes, gi),
                         "expt": pd.Categorical.from_codes(np.zeros(len(gi), np.int8), ["e0"]),
                         "logfc": matrix[gi, ci]})
    frame = _sorted_frame(long, where)
    return Screen(frame, str(path), "gene_effect", tuple(notes))


def _labelled(names: list[str], index: np.ndarray) -> pd.Categorical:
    """``names[index]`` as a categorical whose categories (the distinct ``names``) are
    sorted, as a column of the names would be."""
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int32)
    rank[order] = np.arange(len(names), dtype=np.int32)
    return pd.Categorical.from_codes(rank[index], categories=[names[i] for i in order])


def _gene_symbols(labels: list[str]) -> list[str]:
    """DepMap's ``SYMBOL (ENTREZ)`` labels as symbols, unless two would then collide."""
    symbols = [m["symbol"] if (m := ENTREZ_GENE.match(g)) else g for g in labels]
    return symbols if len(set(symbols)) == len(symbols) else list(labels)
