"""A real screen as the models see it (:class:`Screen`: the one long frame, where it came
from, its format and what the reader decided), and the delimited-text reading the screen
readers share (:mod:`sbc.readers` for long CSVs and gene-effect matrices, :mod:`sbc.counts`
for MAGeCK count tables): a file's text (``.gz`` decompressed, UTF-8 checked), its rows
streamed with their file line numbers, its header and row widths checked, so that every
refusal names the line.

The text parsing is written here, not left to ``pandas.read_csv``, because pandas turns a
duplicated column into ``name.1``, a stray word into a string column and a ragged row into
NaNs without saying on which line; a reader that must name the line has to see the lines.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sbc.config import read_text
from sbc.design import screen_frame, text_lines
from sbc.errors import DataError

MISSING = {"", "na", "nan", "null", "none", "n/a"}


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


def _sorted_frame(long: pd.DataFrame, where: str) -> pd.DataFrame:
    """A long frame validated by ``screen_frame``, its factors' categories sorted.

    Sorted, not in file order, because Bambi orders a factor's levels sorted whatever the
    categories' order: a model that indexes effects by ``cat.codes`` (a hand-written PyMC
    form, such as a rescue parametrization) then labels them as Bambi does."""
    frame = screen_frame(long, where)
    for col in ("cell_line", "gene"):  # every category is used (screen_frame keeps no other)
        frame[col] = frame[col].cat.reorder_categories(sorted(frame[col].cat.categories))
    return frame.sort_values(["cell_line", "gene", "expt"], ignore_index=True)


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
