"""Real screens in: a long log-fold-change CSV, a wide gene-effect matrix (DepMap's
``CRISPRGeneEffect.csv`` in either orientation) or a MAGeCK count table with its sample
sheet, each read into the one long frame the models fit (columns ``cell_line``, ``gene``,
``expt``, ``logfc``; see :func:`sbc.design.screen_frame`).

:func:`read_screen` recognises the format from the header; :func:`read_gene_effects` and
:func:`read_counts` read one format.  Every reader refuses a malformed file whole with a
:class:`~sbc.errors.DataError` naming the file, the line (the header is line 1) or column,
and the fix; nothing is half-read.  What a reader decided for the user (missing cells
dropped, the reference samples found by name, the pseudo-count) is kept in ``notes``.

The text parsing is written here, not left to ``pandas.read_csv``, because pandas turns a
duplicated column into ``name.1``, a stray word into a string column and a ragged row into
NaNs without saying on which line; a reader that must name the line has to see the lines.

This module is long because each format's reader checks its file line by line so that every
refusal names the line, the column or the sample, and the three readers share those helpers.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.config import read_text
from sbc.design import read_screen_csv, screen_frame, text_lines
from sbc.errors import DataError

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
MISSING = {"", "na", "nan", "null", "none", "n/a"}
# DepMap's cell-line (model) ids, and its gene headers "SYMBOL (ENTREZ)"
DEPMAP_ID = re.compile(r"^ACH-\d+$")
ENTREZ_GENE = re.compile(r"^(?P<symbol>\S+) \((?P<entrez>\d+)\)$")
GENE_HEADERS = {"gene", "genes", "gene_symbol", "symbol", "hugo_symbol", "gene_id", "id"}
CELL_HEADERS = {"modelid", "model_id", "depmap_id", "cell_line", "cellline", "cell_lines",
                "model", "ach_id", "sample"}
REFERENCE_NAME = re.compile(r"(plasmid|pdna|\bt0\b|day_?0|\bd0\b|reference|\bref\b|library)",
                            re.IGNORECASE)
# CELL_LINE_rep2, CELL_LINE.2, CELL_LINE-r2, CELL_LINErep2; a bare trailing number (A549,
# HUH7, MDA-MB-231, ACH-000001) is part of the name, not a replicate
REPLICATE_SUFFIX = re.compile(r"^(?P<line>.+?)(?:[_.\- ](?:rep|replicate|r)[_ ]?|[_.]"
                              r"|(?:rep|replicate)[_ ]?)(?P<rep>\d+)$", re.IGNORECASE)
REFERENCE_ROLES = {"reference", "plasmid", "pdna", "t0", "library", "ref"}
END_ROLES = {"end", "endpoint", "end_point", "treatment", "sample", "screen"}
SKIP_ROLES = {"skip", "ignore", "exclude"}
PSEUDO_COUNT = 0.5  # as the genome model's counts -> log fold change step (sbc.plan.genome)


@dataclass(frozen=True)
class Screen:
    """A real screen as the models see it.

    frame: one row per measurement, columns ``cell_line``, ``gene``, ``expt`` (categorical,
        categories sorted as Bambi orders levels; rows sorted like
        :func:`sbc.design.design_frame`) and ``logfc`` (float).
    source: the file it came from.  format: ``long``, ``gene_effect`` or ``counts``.
    notes: what the reader decided for the user (missing cells dropped, ...).
    """

    frame: pd.DataFrame
    source: str
    format: str
    notes: tuple[str, ...] = ()

    @property
    def n_cell_lines(self) -> int:
        return int(self.frame["cell_line"].nunique())

    @property
    def n_genes(self) -> int:
        return int(self.frame["gene"].nunique())

    @property
    def n_reps(self) -> int:
        """Replicates per cell line and gene (the most any pair has)."""
        return int(self.frame.groupby(["cell_line", "gene"], observed=True).size().max())

    @property
    def shape(self) -> tuple[int, int, int]:
        """(cell lines, genes, replicates): the design size a study checks."""
        return (self.n_cell_lines, self.n_genes, self.n_reps)

    def matrix(self) -> pd.DataFrame:
        """Genes x cell lines of the mean logfc (NaN where a pair was not measured)."""
        return self.frame.pivot_table(index="gene", columns="cell_line", values="logfc",
                                      aggfunc="mean", observed=True)

    def describe(self) -> str:
        c, g, r = self.shape
        what = {"long": "long CSV", "gene_effect": "gene-effect matrix",
                "counts": "count table"}[self.format]
        return (f"{self.source} ({what}): {len(self.frame):,} values, {c} cell lines x "
                f"{g} genes" + (f" x up to {r} replicates" if r > 1 else ""))

    def subset(self, genes: int | None = None, cell_lines: int | None = None) -> Screen:
        """The first ``genes`` genes and ``cell_lines`` cell lines (in sorted order)."""
        frame = self.frame
        for col, n in (("gene", genes), ("cell_line", cell_lines)):
            if n is not None:
                keep = sorted(map(str, frame[col].cat.categories))[:n]
                frame = frame[frame[col].isin(keep)]
        frame = _sorted_frame(frame.reset_index(drop=True), self.source)
        return Screen(frame, self.source, self.format,
                      self.notes + (f"subset: first {genes} genes, {cell_lines} cell lines",))


@dataclass(frozen=True)
class CountScreen(Screen):
    """A screen read from guide counts: the gene-level ``frame`` (mean of the guides' log2
    fold changes, each sample centred on its median guide) and what a planner needs.

    counts: guides x samples read counts (int64, index ``sgRNA``).  guide_gene: the gene of
    each guide.  samples: the sample sheet (``sample``, ``role``, ``cell_line``,
    ``replicate``).  guide_logfc: one row per guide and end sample (``sgRNA``, ``gene``,
    ``cell_line``, ``expt``, ``logfc``), before centring.
    """

    counts: pd.DataFrame = field(default=None, repr=False)
    guide_gene: pd.Series = field(default=None, repr=False)
    samples: pd.DataFrame = field(default=None, repr=False)
    guide_logfc: pd.DataFrame = field(default=None, repr=False)


# ---------------------------------------------------------------------------- text and rows

def _file_text(path: Path, what: str) -> str:
    """A data file's text; ``.gz`` files are decompressed first (same errors as read_text)."""
    path = Path(path)
    if path.suffix.lower() != ".gz":
        return read_text(path, what, DataError)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{what} {path} is a directory; give the path of a file") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror}; check its "
                        "permissions") from None
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # a corrupt stream raises zlib.error
        raise DataError(f"{what} {path} is not a readable gzip file ({exc}); decompress it "
                        "and give the plain file, or compress it again") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{what} {path} is not valid UTF-8 after decompression: byte "
                        f"0x{data[exc.start:exc.end].hex(' ')} at byte offset {exc.start} "
                        f"(line {line}, column {column}); save it as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _rows(text: str, where: str) -> tuple[str, list[list[str]], list[int]]:
    """(delimiter, rows, file line of each row); blank lines are skipped, '#' lines too.
    For small files (a sample sheet); a data file is read row by row (:func:`_row_stream`)."""
    delimiter, stream = _row_stream(text, where)
    numbered = list(stream())
    return delimiter, [r for _, r in numbered], [n for n, _ in numbered]


def _row_stream(text: str, where: str):
    """(delimiter, rows): ``rows()`` yields (file line, row) one at a time, each cell
    stripped; blank lines, lines of delimiters only and '#' lines are skipped.  Each call
    reads the text again, so a reader may pass over a large file twice while holding only
    what it keeps (one Python string per cell of a 100 MB file is gigabytes).  DataError
    when the text holds no row, or a line cannot be parsed."""
    # the first line with content (not only delimiters, which the rows below skip too)
    first = next((ln for ln in text_lines(text) if ln.strip(" \t,\n") and
                  not ln.startswith("#")), None)
    empty = f"{where} is empty; it needs a header line and one line per row"
    if first is None:
        raise DataError(empty)
    delimiter = "\t" if "\t" in first else ","

    def rows():
        reader = csv.reader(text_lines(text), delimiter=delimiter)
        start = 1  # the file line a row starts on (a quoted field may span lines)
        found = False
        try:
            for row in reader:
                number, start = start, reader.line_num + 1
                if not row or all(not c.strip() for c in row) or row[0].startswith("#"):
                    continue
                found = True
                yield number, [c.strip() for c in row]
        except csv.Error as exc:
            raise DataError(f"{where}: line {start} cannot be parsed as delimited text "
                            f"({exc}); check the quotes on that line") from None
        if not found:
            raise DataError(empty)

    return delimiter, rows


def _header(text: str, where: str) -> tuple[str, list[str]]:
    """(delimiter, the header row), read without reading the rest of the text."""
    delimiter, rows = _row_stream(text, where)
    stream = rows()
    _, header = next(stream)
    stream.close()
    return delimiter, header


def _check_header(header: list[str], where: str, line: int, what: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if i > 1 and not name:
            raise DataError(f"{where}: column {i} of the header (line {line}) has no name; "
                            f"every {what} column needs one")
        if name in seen:
            raise DataError(f"{where}: column name {name!r} appears twice in the header (line "
                            f"{line}, columns {seen[name]} and {i}); rename or remove one of "
                            "them (each column must be read once)")
        seen[name] = i


def _check_width(rows, numbers, width: int, where: str) -> None:
    for row, number in zip(rows, numbers):
        if len(row) != width:
            raise DataError(f"{where}: line {number} has {len(row)} fields but the header has "
                            f"{width}; fix that line (a missing or extra delimiter)")


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


def _sorted_frame(long: pd.DataFrame, where: str) -> pd.DataFrame:
    """A long frame validated by ``screen_frame``, its factors' categories sorted.

    Sorted, not in file order, because Bambi orders a factor's levels sorted whatever the
    categories' order: a model that indexes effects by ``cat.codes`` (a hand-written PyMC
    form, such as a rescue parametrization) then labels them as Bambi does."""
    frame = screen_frame(long, where)
    for col in ("cell_line", "gene"):  # every category is used (screen_frame keeps no other)
        frame[col] = frame[col].cat.reorder_categories(sorted(frame[col].cat.categories))
    return frame.sort_values(["cell_line", "gene", "expt"], ignore_index=True)


# ----------------------------------------------------------------------- MAGeCK counts

def read_counts(path: str | Path, samples: str | Path | pd.DataFrame | None = None) -> CountScreen:
    """Read a MAGeCK count table (``mageck count``'s ``.count.txt``) and its sample sheet.

    The table has columns ``sgRNA``, ``Gene``, then one column of raw read counts per
    sample (non-negative integers; normalised counts are refused, give the raw table).  The
    sample sheet (CSV or tab-separated, or a DataFrame) has one row per sample: ``sample``
    (a column of the table), ``role`` (``reference`` for the plasmid / T0 library,
    ``end`` for an end point, ``skip`` to leave a column out), ``cell_line`` and optionally
    ``replicate`` (numbered per cell line when absent).  Without a sheet, the columns named
    like a reference (plasmid, pDNA, T0, day0, reference, library) are the reference and
    every other column is an end point whose cell line is its name without a replicate
    suffix (``HUH7_rep2`` -> cell line ``HUH7``, replicate 2); the notes say so.

    Each guide's log2 fold change is ``log2((n + 1/2) / N) - log2((r + 1/2) / R)`` (``N``, ``R``:
    library sizes of the end sample and of the reference, the mean of the reference samples'
    proportions where there are several); a gene's value in a sample is the mean over its
    guides after centring the sample on its median guide (the usual normalisation: the
    typical guide does not change).

    Refused, naming the file, line and column: duplicated guides or sample columns, empty
    guide or gene names, negative, non-integer or missing counts, a sample without reads
    (zero library size), a sheet naming samples the table lacks or missing samples it has,
    no reference or no end sample, unknown roles.
    """
    path = Path(path)
    return _counts_from_text(_file_text(path, "count table"), path, samples)


def _counts_from_text(text: str, path: Path, samples) -> CountScreen:
    where = f"count table {path}"
    _, stream = _row_stream(text, where)
    rows = stream()  # pass 1: header and widths; pass 2 (below): guides and counts
    header_line, header = next(rows)
    numbers = [header_line]
    _check_header(header, where, numbers[0], "sample")
    low = [h.lower() for h in header]
    if "sgrna" not in low or "gene" not in low:
        raise DataError(f"{where}: the header (line {numbers[0]}) lacks "
                        f"{' and '.join(c for c in ('sgRNA', 'Gene') if c.lower() not in low)}; "
                        "a MAGeCK count table starts with columns sgRNA, Gene, then one count "
                        "column per sample")
    i_guide, i_gene = low.index("sgrna"), low.index("gene")
    sample_cols = [i for i in range(len(header)) if i not in (i_guide, i_gene)]
    if not sample_cols:
        raise DataError(f"{where}: no sample columns after sgRNA and Gene; add one column of "
                        "read counts per sample")
    n_rows, width = 0, len(header)
    for line, row in rows:  # one row at a time, nothing kept
        if len(row) != width:
            _check_width([row], [line], width, where)
        n_rows += 1
    if not n_rows:
        raise DataError(f"{where} has a header (line {numbers[0]}) but no guide lines; add one "
                        "line per sgRNA")
    seen: dict[str, int] = {}
    counts = np.zeros((n_rows, len(sample_cols)), dtype=np.int64)
    guides, genes = [], []
    body = stream()
    next(body)  # the header
    for r, (line, row) in enumerate(body):
        guide, gene = row[i_guide], row[i_gene]
        if not guide or not gene:
            raise DataError(f"{where}: line {line} has an empty {'sgRNA' if not guide else 'Gene'}"
                            " name; fill it in or remove the line")
        if guide in seen:
            raise DataError(f"{where}: guide {guide!r} appears twice (lines {seen[guide]} and "
                            f"{line}); each sgRNA once (sum its counts or rename one)")
        seen[guide] = line
        guides.append(guide)
        genes.append(gene)
        for k, i in enumerate(sample_cols):
            counts[r, k] = _count(row[i], where, line, i + 1, header[i])
    names = [header[i] for i in sample_cols]
    sheet, notes = _sample_sheet(samples, names, where, path)
    used = set(sheet.loc[sheet["role"] != "skip", "sample"])  # a skipped column may be empty
    sizes = counts.sum(axis=0)
    for name, size, i in zip(names, sizes, sample_cols):
        if size == 0 and name in used:
            raise DataError(f"{where}: sample {name!r} (column {i + 1}) has no reads in any "
                            "guide (library size 0), so no fold change can be computed; "
                            "remove the column, or mark it role 'skip' in the sample sheet")
    table = pd.DataFrame(counts, index=pd.Index(guides, name="sgRNA"), columns=names)
    guide_gene = pd.Series(genes, index=table.index, name="gene")
    return _count_screen(table, guide_gene, sheet, str(path), notes)


def _count(cell: str, where: str, line: int, column: int, name: str) -> int:
    fix = "read counts are non-negative whole numbers (give MAGeCK's raw count.txt, not the " \
          "normalized table)"
    if cell.lower() in MISSING:
        raise DataError(f"{where}: line {line}, column {column} ({name!r}) is empty; {fix}; "
                        "write 0 for a guide without reads")
    try:
        x = float(cell)
    except ValueError:
        raise DataError(f"{where}: line {line}, column {column} ({name!r}) holds "
                        f"{cell[:40]!r}, not a count; {fix}") from None
    if not math.isfinite(x) or x < 0 or x != int(x):
        what = ("not a finite number" if not math.isfinite(x) else "negative" if x < 0
                else "not a whole number")
        raise DataError(f"{where}: line {line}, column {column} ({name!r}) holds {cell!r}, "
                        f"{what}; {fix}")
    if x > 2**62:
        raise DataError(f"{where}: line {line}, column {column} ({name!r}) holds {cell!r}, "
                        "beyond any read count; fix the value")
    return int(x)


def _sample_sheet(samples, names: list[str], where: str, path: Path):
    """The sample sheet as a frame (sample, role, cell_line, replicate, reference) and notes."""
    notes: list[str] = []
    if samples is None:
        refs = [n for n in names if REFERENCE_NAME.search(n)]
        if not refs:
            raise DataError(f"{where}: no sample sheet was given and no column is named like a "
                            f"reference (plasmid, pDNA, T0, day0, reference, library) among "
                            f"{', '.join(names)}; give a sample sheet (columns sample, role, "
                            "cell_line, replicate) that marks the reference")
        rows = []
        for n in names:
            if n in refs:
                rows.append((n, "reference", "", 0))
                continue
            m = REPLICATE_SUFFIX.match(n)
            line, rep = (m["line"], int(m["rep"])) if m else (n, 1)
            rows.append((n, "end", line, rep))
        named: dict[tuple[str, int], str] = {}
        for n, role, line, rep in rows:
            if role == "end" and (line, rep) in named:
                raise DataError(f"{where}: no sample sheet was given and sample columns "
                                f"{named[line, rep]!r} and {n!r} both read as cell line {line!r} "
                                f"replicate {rep} (names CELL_LINE[_repN]); rename one, or give "
                                "a sample sheet (columns sample, role, cell_line, replicate)")
            named[line, rep] = n
        sheet = pd.DataFrame(rows, columns=["sample", "role", "cell_line", "replicate"])
        notes.append(f"no sample sheet: reference {', '.join(refs)} (by name); end points "
                     "named CELL_LINE[_repN]")
        if not (sheet["role"] == "end").any():
            raise DataError(f"{where}: every sample column looks like a reference "
                            f"({', '.join(refs)}); give a sample sheet marking the end points")
    else:
        sheet = _read_sheet(samples, path)
    swhere = "sample sheet" + (f" {samples}" if isinstance(samples, str | Path) else "")
    sheet_names = list(sheet["sample"])
    unknown = [s for s in sheet_names if s not in names]
    if unknown:
        raise DataError(f"{swhere}: sample(s) {', '.join(map(repr, unknown))} are not columns "
                        f"of {where} (its samples: {', '.join(names)}); fix the names so they "
                        "match the table's header")
    absent = [n for n in names if n not in sheet_names]
    if absent:
        raise DataError(f"{swhere} has no row for sample(s) {', '.join(map(repr, absent))} of "
                        f"{where}; add a row for each (role 'skip' leaves a column out)")
    if not (sheet["role"] == "reference").any():
        raise DataError(f"{swhere}: no sample has role 'reference' (the plasmid or T0 "
                        "library the fold changes are taken against); mark one")
    if not (sheet["role"] == "end").any():
        raise DataError(f"{swhere}: no sample has role 'end'; mark the end-point samples")
    return sheet, notes


def _read_sheet(samples, path: Path) -> pd.DataFrame:
    if isinstance(samples, pd.DataFrame):
        frame, swhere = samples.copy(), "sample sheet"
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        lines = list(range(2, len(frame) + 2))
    else:
        spath = Path(samples)
        swhere = f"sample sheet {spath}"
        _, rows, numbers = _rows(_file_text(spath, "sample sheet"), swhere)
        header = [h.lower() for h in rows[0]]
        _check_header(header, swhere, numbers[0], "sample sheet")
        _check_width(rows[1:], numbers[1:], len(header), swhere)
        if len(rows) < 2:
            raise DataError(f"{swhere} has a header but no rows; add one row per sample")
        frame = pd.DataFrame(rows[1:], columns=header)
        lines = numbers[1:]
    missing = [c for c in ("sample", "role") if c not in frame.columns]
    if missing:
        raise DataError(f"{swhere} lacks column(s) {', '.join(missing)}; it needs sample, role "
                        "(reference, end or skip), cell_line and optionally replicate")
    frame["sample"] = frame["sample"].astype(str).str.strip()
    seen: dict[str, int] = {}

    def text(value) -> str:
        """A cell as text: a DataFrame's NaN or None is empty, and a whole float (an integer
        column with a NaN in it) is written 2, not 2.0."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    roles, reps, cells = [], [], []
    for line, row in zip(lines, frame.itertuples(index=False)):
        row = row._asdict()
        name = row["sample"]
        if name in seen:
            raise DataError(f"{swhere}: sample {name!r} appears twice (lines {seen[name]} and "
                            f"{line}); one row per sample")
        seen[name] = line
        role = str(row["role"]).strip().lower()
        role = ("reference" if role in REFERENCE_ROLES else "end" if role in END_ROLES
                else "skip" if role in SKIP_ROLES else role)
        if role not in ("reference", "end", "skip"):
            raise DataError(f"{swhere}: line {line}: role {row['role']!r} of sample {name!r} is "
                            "not one of reference (or plasmid, T0), end, skip; fix it")
        cell = text(row.get("cell_line"))
        if role == "end" and (not cell or cell.lower() in MISSING):
            raise DataError(f"{swhere}: line {line}: end sample {name!r} has no cell_line; "
                            "name the cell line it was screened in")
        reps.append(text(row.get("replicate")))
        roles.append(role)
        cells.append(cell)
    # plain object columns: pandas' str dtype would refuse the numbered replicates below
    frame["role"] = pd.Series(roles, index=frame.index, dtype=object)
    frame["cell_line"] = pd.Series(cells, index=frame.index, dtype=object)
    frame["replicate"] = pd.Series(reps, index=frame.index, dtype=object)
    ends = frame["role"] == "end"
    if frame.loc[ends, "replicate"].eq("").all():
        frame.loc[ends, "replicate"] = (frame[ends].groupby("cell_line").cumcount() + 1
                                        ).astype(str)
    elif frame.loc[ends, "replicate"].eq("").any():
        line = lines[int(np.flatnonzero(ends & frame["replicate"].eq(""))[0])]
        raise DataError(f"{swhere}: line {line}: replicate is empty while other rows have one; "
                        "fill it in for every end sample, or leave the column empty throughout")
    taken: dict[tuple[str, str], tuple[int, str]] = {}
    for line, role, name, cell, rep in zip(lines, frame["role"], frame["sample"],
                                           frame["cell_line"], frame["replicate"]):
        if role != "end":
            continue
        key = (str(cell), str(rep))
        if key in taken:
            raise DataError(f"{swhere}: line {line}: cell line {key[0]!r} has replicate "
                            f"{key[1]!r} more than once (samples {taken[key][1]!r} on line "
                            f"{taken[key][0]} and {name!r}); number its replicates 1, 2, ...")
        taken[key] = (line, name)
    return frame[["sample", "role", "cell_line", "replicate"]]


def _count_screen(table: pd.DataFrame, guide_gene: pd.Series, sheet: pd.DataFrame,
                  source: str, notes: list[str]) -> CountScreen:
    refs = list(sheet.loc[sheet["role"] == "reference", "sample"])
    ends = sheet[sheet["role"] == "end"]
    used = table[list(sheet.loc[sheet["role"] != "skip", "sample"])]  # not the skipped columns
    props = (used + PSEUDO_COUNT) / used.sum(axis=0)
    ref = np.log2(props[refs].mean(axis=1).to_numpy())
    notes = [*notes, f"log2 fold change against {' + '.join(refs)} with pseudo-count "
             f"{PSEUDO_COUNT:g}; each sample centred on its median guide; a gene's value is the "
             "mean over its guides"]
    parts = []
    for row in ends.itertuples(index=False):
        lfc = np.log2(props[row.sample].to_numpy()) - ref
        parts.append(pd.DataFrame({"sgRNA": table.index, "gene": guide_gene.to_numpy(),
                                   "cell_line": row.cell_line, "expt": str(row.replicate),
                                   "logfc": lfc}))
    guides = pd.concat(parts, ignore_index=True)
    centred = guides.assign(logfc=guides["logfc"] - guides.groupby(
        ["cell_line", "expt"])["logfc"].transform("median"))
    genes = centred.groupby(["cell_line", "gene", "expt"], sort=False, as_index=False)[
        "logfc"].mean()
    frame = _sorted_frame(genes, source)
    return CountScreen(frame, source, "counts", tuple(notes), counts=table,
                       guide_gene=guide_gene, samples=sheet, guide_logfc=guides)
