"""MAGeCK count tables in: ``mageck count``'s guides x samples read counts and the sample
sheet that says which columns are the reference (plasmid, T0) and which the end points of
which cell line and replicate, read into the guides' log2 fold changes and the long
gene-level frame of a :class:`CountScreen`.  :func:`sbc.readers.read_screen` hands a file
here when its header has sgRNA and Gene.

Like every screen reader, this one refuses a malformed table or sheet whole with a
:class:`~sbc.errors.DataError` naming the file, the line, the column or the sample, and the
fix; the rows are read with :mod:`sbc.screen`'s line-numbered text reading.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sbc.errors import DataError
from sbc.screen import (MISSING, Screen, _check_header, _check_width, _file_text, _row_stream,
                        _rows, _sorted_frame)

__all__ = ["CountScreen", "read_counts"]

REFERENCE_NAME = re.compile(r"(plasmid|pdna|\bt0\b|day_?0|\bd0\b|reference|\bref\b|library)",
                            re.IGNORECASE)
# CELL_LINE_rep2, CELL_LINE.2, CELL_LINE-r2, CELL_LINErep2; a bare trailing number (A549,
# HUH7, MDA-MB-231, ACH-000001) is part of the name, not a replicate
REPLICATE_SUFFIX = re.compile(r"^(?P<line>.+?)(?:[_.\- ](?:rep|replicate|r)[_ ]?|[_.]"
                              r"|(?:rep|replicate)[_ ]?)(?P<rep>\d+)$", re.IGNORECASE)
REFERENCE_ROLES = {"reference", "plasmid", "pdna", "t0", "library", "ref"}
END_ROLES = {"end", "endpoint", "end_point", "treatment", "sample", "screen"}
SKIP_ROLES = {"skip", "ignore", "exclude"}
PSEUDO_COUNT = 0.5  # as the genome model's counts -> log fold change step (sbc.plan.genome_fit)


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
