"""Real-screen readers (sbc.readers): every malformed file is refused whole with a DataError
naming the file and the line, column or sample at fault; valid files of every format and
orientation read to the values written (hypothesis round trips), and count tables give the
documented fold changes."""

import gzip
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import ROOT
from sbc.errors import DataError, StudyError
from sbc.readers import CountScreen, Screen, read_counts, read_gene_effects, read_screen

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

# a valid count table (tab-separated, as mageck count writes it) and its sample sheet;
# file lines: 1 header, 2 g1, 3 g2, 4 g3, 5 g4
COUNT_HEADER = "sgRNA\tGene\tplasmid\tS1\tS2"
COUNT_ROWS = ("g1\tA\t10\t20\t30", "g2\tA\t5\t6\t7", "g3\tB\t8\t9\t10", "g4\tB\t1\t2\t3")
SHEET = "sample,role,cell_line,replicate\nplasmid,reference,,\nS1,end,HUH7,1\nS2,end,HUH7,2\n"
# a valid matrix, genes as rows; lines 1 header, 2 A, 3 B, 4 C
MATRIX = "gene,ACH-000001,ACH-000002\nA,0.1,-0.2\nB,0.3,0.4\nC,-1.5,NA\n"


def counts(*rows, header=COUNT_HEADER):
    return "\n".join([header, *rows]) + "\n"


def row(line, value, column=3):
    """COUNT_ROWS[line - 2] with its field ``column`` (0-based: 2 plasmid, 3 S1, 4 S2) set."""
    fields = COUNT_ROWS[line - 2].split("\t")
    fields[column] = value
    return "\t".join(fields)


def replaced(line, value, column=3):
    rows = list(COUNT_ROWS)
    rows[line - 2] = row(line, value, column)
    return counts(*rows)


def sheet(*lines, header="sample,role,cell_line,replicate"):
    return "\n".join([header, *lines]) + "\n"


@dataclass
class Bad:
    """A malformed input: the main file's content (text or bytes), optionally a sample sheet,
    the reader to call, and what the message must contain besides the file's path."""

    data: str | bytes
    expect: tuple[str, ...]
    reader: str = "counts"  # counts | matrix | screen
    samples: str | None = None
    kwargs: dict = field(default_factory=dict)
    suffix: str = ".txt"
    names: tuple[str, ...] = ("table",)  # which paths the message must name
    error: type[Exception] = DataError


GOOD = counts(*COUNT_ROWS)
# a gzip file whose header is intact but whose deflate stream is not (zlib.error, not OSError)
CORRUPT_DEFLATE = bytes(0xFF if 20 <= i < 30 else b
                        for i, b in enumerate(gzip.compress(GOOD.encode() * 20)))
S = "plasmid,reference,,"
S1 = "S1,end,HUH7,1"
S2 = "S2,end,HUH7,2"

BAD = {
    # --- count tables: guides, header, counts
    "counts: duplicated guide": Bad(counts(*COUNT_ROWS[:2], COUNT_ROWS[0]),
                                    ("guide 'g1' appears twice", "lines 2 and 4")),
    "counts: duplicated sample column": Bad(
        counts(*COUNT_ROWS, header="sgRNA\tGene\tplasmid\tS1\tS1"),
        ("'S1' appears twice", "line 1", "columns 4 and 5")),
    "counts: unnamed header column": Bad(
        counts(*COUNT_ROWS, header="sgRNA\tGene\tplasmid\t\tS2"), ("column 4", "line 1", "no name")),
    "counts: negative count": Bad(replaced(3, "-6"), ("line 3, column 4 ('S1')", "negative")),
    "counts: non-integer count 12.5": Bad(replaced(4, "12.5", 4),
                                          ("line 4, column 5 ('S2')", "'12.5'", "not a whole number")),
    "counts: non-numeric count": Bad(replaced(5, "many", 2), ("line 5, column 3 ('plasmid')", "'many'")),
    "counts: missing count (empty cell)": Bad(replaced(3, "", 4), ("line 3, column 5 ('S2')", "empty")),
    "counts: missing count (NA)": Bad(replaced(2, "NA"), ("line 2, column 4 ('S1')", "empty")),
    "counts: infinite count": Bad(replaced(2, "inf"), ("line 2, column 4 ('S1')", "not a finite")),
    "counts: count beyond any read count": Bad(replaced(2, "1e300"), ("line 2, column 4 ('S1')",
                                                                      "beyond any read count")),
    "counts: empty sample (zero library size)": Bad(
        counts(*(row(n, "0", 4) for n in range(2, 6))), ("'S2' (column 5)", "library size 0")),
    "counts: empty reference (zero library size)": Bad(
        counts(*(row(n, "0", 2) for n in range(2, 6))), ("'plasmid' (column 3)", "library size 0")),
    "counts: too many fields": Bad(counts(COUNT_ROWS[0], COUNT_ROWS[1] + "\t4"),
                                   ("line 3 has 6 fields", "header has 5")),
    "counts: too few fields": Bad(counts(*COUNT_ROWS[:2], "g3\tB\t8\t9"),
                                  ("line 4 has 4 fields", "header has 5")),
    "counts: ragged line after blank and comment lines": Bad(
        counts(COUNT_ROWS[0], "", "# a comment", "g2\tA\t5"), ("line 5 has 3 fields",)),
    "counts: empty file": Bad("", ("is empty",)),
    "counts: only blank lines": Bad("\n  \n\t\n", ("is empty",)),
    "counts: header only": Bad(counts(), ("header (line 1)", "no guide lines")),
    "counts: missing Gene column": Bad(counts("g1\t1\t2", header="sgRNA\tplasmid\tS1"),
                                       ("header (line 1) lacks Gene",)),
    "counts: missing sgRNA column": Bad(counts("A\t1\t2", header="Gene\tplasmid\tS1"),
                                        ("header (line 1) lacks sgRNA",)),
    "counts: empty sgRNA name": Bad(counts(COUNT_ROWS[0], "\tA\t5\t6\t7"), ("line 3", "empty sgRNA")),
    "counts: empty gene name": Bad(counts(*COUNT_ROWS[:3], "g4\t\t1\t2\t3"), ("line 5", "empty Gene")),
    "counts: no sample columns": Bad(counts("g1\tA", header="sgRNA\tGene"),
                                     ("no sample columns after sgRNA and Gene",)),
    "counts: field over the csv size limit": Bad(counts(COUNT_ROWS[0], "g2\tA\t" + "9" * 200_000
                                                        + "\t6\t7"), ("line 3", "cannot be parsed")),
    "counts: not UTF-8": Bad(GOOD.encode().replace(b"g2", b"g\xff2"), ("line 3, column 2",
                                                                    "not valid UTF-8")),
    "counts: corrupt gz": Bad(gzip.compress(GOOD.encode())[:-12], ("not a readable gzip file",),
                              suffix=".txt.gz"),
    "counts: gz with a corrupt deflate stream": Bad(CORRUPT_DEFLATE, ("not a readable gzip file",
                                                                      "Error -3"), suffix=".txt.gz"),
    "counts: gz not UTF-8 inside": Bad(gzip.compress(GOOD.encode().replace(b"g3", b"\xfe3")),
                                       ("line 4, column 1", "not valid UTF-8"), suffix=".txt.gz"),
    "counts: gz that is plain text": Bad(GOOD.encode(), ("not a readable gzip file",),
                                         suffix=".txt.gz"),
    # --- count tables without a sample sheet
    "no sheet: no reference-like column": Bad(
        counts("g1\tA\t1\t2", header="sgRNA\tGene\tS1\tS2"),
        ("no column is named like a reference", "S1, S2")),
    "no sheet: every column a reference": Bad(
        counts("g1\tA\t1\t2", header="sgRNA\tGene\tplasmid\tT0"),
        ("every sample column looks like a reference", "plasmid, T0")),
    "no sheet: two columns read as the same replicate": Bad(
        counts("g1\tA\t1\t2\t3", header="sgRNA\tGene\tplasmid\tHUH7_1\tHUH7.1"),
        ("'HUH7_1' and 'HUH7.1'", "cell line 'HUH7' replicate 1")),
    # --- sample sheets
    "sheet: names a sample not in the table": Bad(GOOD, ("'S3'", "not columns of"),
                                                  samples=sheet(S, S1, S2, "S3,end,HUH7,3"),
                                                  names=("sheet", "table")),
    "sheet: table sample missing from the sheet": Bad(GOOD, ("no row for sample(s) 'S2'",),
                                                      samples=sheet(S, S1), names=("sheet", "table")),
    "sheet: no reference": Bad(GOOD, ("no sample has role 'reference'",),
                               samples=sheet("plasmid,skip,,", S1, S2), names=("sheet",)),
    "sheet: no end sample": Bad(GOOD, ("no sample has role 'end'",),
                                samples=sheet(S, "S1,skip,HUH7,1", "S2,skip,HUH7,2"), names=("sheet",)),
    "sheet: unknown role": Bad(GOOD, ("line 3", "role 'control'", "'S1'"),
                               samples=sheet(S, "S1,control,HUH7,1", S2), names=("sheet",)),
    "sheet: end sample without cell_line": Bad(GOOD, ("line 4", "end sample 'S2' has no cell_line"),
                                               samples=sheet(S, S1, "S2,end,,2"), names=("sheet",)),
    "sheet: end sample with cell_line NA": Bad(GOOD, ("line 3", "end sample 'S1' has no cell_line"),
                                               samples=sheet(S, "S1,end,NA,1", S2), names=("sheet",)),
    "sheet: end sample without cell_line column": Bad(
        GOOD, ("line 3", "'S1' has no cell_line"), samples=sheet("plasmid,reference", "S1,end", "S2,end",
                                                                 header="sample,role"),
        names=("sheet",)),
    "sheet: duplicate sample rows": Bad(GOOD, ("sample 'S1' appears twice", "lines 3 and 4"),
                                        samples=sheet(S, S1, S1, S2), names=("sheet",)),
    "sheet: duplicate cell line and replicate": Bad(
        GOOD, ("line 4", "'HUH7' has replicate '1' more than once", "'S1' on line 3", "'S2'"),
        samples=sheet(S, S1, "S2,end,HUH7,1"), names=("sheet",)),
    "sheet: replicate missing on one row": Bad(GOOD, ("line 4", "replicate is empty"),
                                               samples=sheet(S, S1, "S2,end,HUH7,"), names=("sheet",)),
    "sheet: lacks sample column": Bad(GOOD, ("lacks column(s) sample",),
                                      samples=sheet("plasmid,reference", header="name,role"),
                                      names=("sheet",)),
    "sheet: lacks role column": Bad(GOOD, ("lacks column(s) role",),
                                    samples=sheet("plasmid,HUH7", header="sample,cell_line"),
                                    names=("sheet",)),
    "sheet: duplicated header column": Bad(GOOD, ("'role' appears twice", "columns 2 and 3"),
                                           samples=sheet(header="sample,role,Role"), names=("sheet",)),
    "sheet: ragged line": Bad(GOOD, ("line 3 has 5 fields", "header has 4"),
                              samples=sheet(S, S1 + ",x", S2), names=("sheet",)),
    "sheet: header only": Bad(GOOD, ("header but no rows",), samples=sheet(), names=("sheet",)),
    "sheet: empty": Bad(GOOD, ("is empty",), samples="", names=("sheet",)),
    # --- gene-effect matrices
    "matrix: duplicated gene rows": Bad(MATRIX + "A,0.5,0.6\n", ("label 'A' appears twice",
                                                                 "lines 2 and 5"), reader="matrix"),
    "matrix: duplicated cell-line columns": Bad(
        "gene,ACH-000001,ACH-000001\nA,1,2\n", ("'ACH-000001' appears twice", "columns 2 and 3"),
        reader="matrix"),
    "matrix: duplicated cell-line rows (DepMap layout)": Bad(
        ",A1BG (1),NAT2 (10)\nACH-000001,1,2\nACH-000002,3,4\nACH-000001,5,6\n",
        ("label 'ACH-000001' appears twice", "lines 2 and 4"), reader="matrix"),
    "matrix: duplicated gene columns (DepMap layout)": Bad(
        ",A1BG (1),A1BG (1)\nACH-000001,1,2\n", ("'A1BG (1)' appears twice", "columns 2 and 3"),
        reader="matrix"),
    "matrix: unnamed header column": Bad("gene,ACH-000001,,ACH-000003\nA,1,2,3\n",
                                         ("column 3 of the header (line 1) has no name",),
                                         reader="matrix"),
    "matrix: too many fields": Bad(MATRIX.replace("B,0.3,0.4", "B,0.3,0.4,0.5"),
                                   ("line 3 has 4 fields", "header has 3"), reader="matrix"),
    "matrix: too few fields": Bad(MATRIX.replace("C,-1.5,NA", "C,-1.5"),
                                  ("line 4 has 2 fields", "header has 3"), reader="matrix"),
    "matrix: empty file": Bad("", ("is empty",), reader="matrix"),
    "matrix: only delimiters": Bad(",,\n,,\n", ("is empty",), reader="matrix"),
    "matrix: header only": Bad("gene,ACH-000001,ACH-000002\n", ("header (line 1)", "no data lines"),
                               reader="matrix"),
    "matrix: one column": Bad("gene\nA\nB\n", ("header (line 1) has one column",), reader="matrix"),
    "matrix: empty label": Bad(MATRIX.replace("B,0.3", ",0.3"), ("line 3 has an empty label",),
                               reader="matrix"),
    "matrix: non-numeric cell": Bad(MATRIX.replace("0.4", "abc"),
                                    ("line 3, column 3 ('ACH-000002')", "'abc'", "not a number"),
                                    reader="matrix"),
    "matrix: inf cell": Bad(MATRIX.replace("-0.2", "inf"),
                            ("line 2, column 3 ('ACH-000002')", "not a finite number"), reader="matrix"),
    "matrix: -Infinity cell": Bad(MATRIX.replace("-1.5", "-Infinity"),
                                  ("line 4, column 2 ('ACH-000001')", "not a finite number"),
                                  reader="matrix"),
    "matrix: line numbers count a quoted multi-line label": Bad(
        'gene,ACH-000001\n"A\nB",1\nC,x\n', ("line 4, column 2", "'x'"), reader="matrix"),
    "matrix: all cells missing": Bad("gene,ACH-000001,ACH-000002\nA,NA,\nB,nan,null\n",
                                     ("holds no values",), reader="matrix"),
    "matrix: ambiguous orientation": Bad("foo,x1,x2\na,1,2\nb,3,4\n",
                                         ("cannot tell whether the rows or the columns are genes",
                                          "'foo'", "genes_as"), reader="matrix"),
    "matrix: bad genes_as": Bad(MATRIX, ("genes_as must be 'rows' or 'columns'", "'sideways'"),
                                reader="matrix", kwargs={"genes_as": "sideways"}),
    "matrix: not UTF-8": Bad(MATRIX.encode().replace(b"C,", b"\xc3(,"), ("line 4, column 1",
                                                                        "not valid UTF-8"),
                             reader="matrix", suffix=".csv"),
    "matrix: corrupt gz": Bad(gzip.compress(MATRIX.encode() * 40)[:25] + b"\x00" * 40
                              + gzip.compress(MATRIX.encode())[-8:],
                              ("not a readable gzip file",), reader="matrix", suffix=".csv.gz"),
    # --- read_screen: format detection, long CSVs
    "screen: sample sheet with a non-count file": Bad(
        MATRIX, ("sample sheet was given but the file is not a MAGeCK count table",),
        reader="screen", samples=sheet(S, S1, S2), suffix=".csv"),
    "screen: one-column file": Bad("x\n1\n2\n", ("format not recognised",), reader="screen"),
    "screen: header-only matrix": Bad("gene,ACH-000001\n", ("header (line 1)", "no data lines"),
                                      reader="screen"),
    "screen: count table with a bad count": Bad(replaced(5, "x", 4), ("line 5, column 5 ('S2')",),
                                                reader="screen"),
    "long: missing logfc": Bad("logfc,gene,cell_line\n0.1,A,X\n,B,X\n", ("logfc in data row 2",),
                               reader="screen", suffix=".csv", error=StudyError),
    "long: non-numeric logfc": Bad("logfc,gene,cell_line\nhigh,A,X\n0.2,B,X\n",
                                   ("logfc in data row 1",), reader="screen", suffix=".csv",
                                   error=StudyError),
    "long: infinite logfc": Bad("logfc,gene,cell_line\n0.1,A,X\n0.2,B,X\ninf,C,X\n",
                                ("logfc in data row 3",), reader="screen", suffix=".csv",
                                error=StudyError),
    "long: empty gene": Bad("logfc,gene,cell_line\n0.1,A,X\n0.2,,X\n", ("'gene' cell of data row 2",),
                            reader="screen", suffix=".csv", error=StudyError),
    "long: duplicated header column": Bad("logfc,gene,cell_line,gene\n0.1,A,X,B\n",
                                          ("'gene' appears twice", "columns 2 and 4"),
                                          reader="screen", suffix=".csv", error=StudyError),
    "long: header only": Bad("logfc,gene,cell_line\n", ("header but no data rows",),
                             reader="screen", suffix=".csv", error=StudyError),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in BAD.items()])
def test_malformed_input_is_refused_naming_the_file_and_the_place(tmp_path, case):
    table = tmp_path / f"table{case.suffix}"
    table.write_bytes(case.data if isinstance(case.data, bytes) else case.data.encode())
    samples = None
    if case.samples is not None:
        samples = tmp_path / "sheet.csv"
        samples.write_text(case.samples)
    call = {"counts": lambda: read_counts(table, samples, **case.kwargs),
            "matrix": lambda: read_gene_effects(table, **case.kwargs),
            "screen": lambda: read_screen(table, samples, **case.kwargs)}[case.reader]
    with pytest.raises(case.error) as info:
        call()
    message = str(info.value)
    for name in case.names:
        assert str({"table": table, "sheet": samples}[name]) in message, message
    for part in case.expect:
        assert part in message, f"{part!r} not in: {message}"


def test_the_catalogue_covers_at_least_45_malformed_inputs():
    assert len(BAD) >= 45


def test_a_missing_file_is_refused_with_its_path(tmp_path):
    for path in (tmp_path / "nope.csv", tmp_path / "nope.csv.gz"):
        with pytest.raises(DataError, match="not found") as info:
            read_screen(path)
        assert str(path) in str(info.value)


# ------------------------------------------------------------------------- positive cases

def test_orientation_detection_gives_the_same_frame_both_ways(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(",ACH-000001,ACH-000002\nA1BG,0.1,-0.2\nNAT2,0.3,0.4\n")
    columns = tmp_path / "columns.csv"
    columns.write_text(",A1BG (1),NAT2 (10)\nACH-000001,0.1,0.3\nACH-000002,-0.2,0.4\n")
    a, b = read_gene_effects(rows), read_gene_effects(columns)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.notes[0].startswith("genes as rows") and b.notes[0].startswith("genes as columns")
    assert a.shape == (2, 2, 1)


def test_gene_symbols_are_stripped_from_depmap_headers(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("ModelID,A1BG (1),NAT2 (10),TP53 (7157)\nACH-000001,0.1,0.2,-1.0\n")
    screen = read_gene_effects(path)
    assert list(screen.frame["gene"].cat.categories) == ["A1BG", "NAT2", "TP53"]


def test_colliding_symbols_keep_the_full_depmap_labels(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text(",X (1),X (2)\nACH-000001,0.1,0.2\n")
    assert list(read_gene_effects(path).frame["gene"].cat.categories) == ["X (1)", "X (2)"]


def test_genes_as_overrides_an_ambiguous_orientation(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("foo,c1,c2\na,1,2\nb,3,4\n")
    rows = read_gene_effects(path, genes_as="rows")
    columns = read_gene_effects(path, genes_as="columns")
    assert rows.matrix().loc["b", "c1"] == 3 and columns.matrix().loc["c1", "b"] == 3


def test_gz_reads_the_same_as_the_plain_file(tmp_path):
    for name, text in (("m.csv", MATRIX), ("c.txt", GOOD)):
        plain, packed = tmp_path / name, tmp_path / f"{name}.gz"
        plain.write_text(text)
        packed.write_bytes(gzip.compress(text.encode()))
        a, b = read_screen(plain), read_screen(packed)
        pd.testing.assert_frame_equal(a.frame, b.frame)
        assert a.format == b.format and a.notes == b.notes


def test_missing_matrix_cells_are_dropped_and_noted(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(MATRIX)
    screen = read_gene_effects(path)
    assert len(screen.frame) == 5
    assert "1 missing cells dropped" in screen.notes


def test_windows_line_endings_bom_comments_and_blank_lines_are_tolerated(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"\xef\xbb\xbf# exported\r\n" + MATRIX.replace("\n", "\r\n\r\n").encode())
    pd.testing.assert_frame_equal(read_gene_effects(path).frame,
                                  read_gene_effects(_write(tmp_path / "p.csv", MATRIX)).frame)


def _write(path, text):
    path.write_text(text)
    return path


def test_read_screen_recognises_each_format(tmp_path):
    long = read_screen(_write(tmp_path / "l.csv", "logfc,gene,cell_line\n0.1,A,X\n0.2,B,X\n"))
    matrix = read_screen(_write(tmp_path / "m.csv", MATRIX))
    count = read_screen(_write(tmp_path / "c.txt", GOOD), _write(tmp_path / "s.csv", SHEET))
    assert (long.format, matrix.format, count.format) == ("long", "gene_effect", "counts")
    assert isinstance(count, CountScreen) and isinstance(long, Screen)


def test_a_tab_separated_long_file_reads_like_the_csv(tmp_path):
    csv_text = "logfc,gene,cell_line\n0.1,A,X\n0.2,B,X\n-0.3,A,Y\n"
    a = read_screen(_write(tmp_path / "l.csv", csv_text))
    b = read_screen(_write(tmp_path / "l.tsv", csv_text.replace(",", "\t")))
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_without_a_sheet_replicate_suffixes_give_cell_line_and_replicate(tmp_path):
    path = _write(tmp_path / "c.txt", counts(
        "g1\tA\t10\t20\t30\t5\t9\t4", "g2\tB\t5\t6\t7\t8\t3\t2",
        header="sgRNA\tGene\tpDNA\tHUH7_rep1\tHUH7_rep2\tA549\tMDA-MB-231\tHEPG2.3"))
    screen = read_counts(path)
    got = {r.sample: (r.role, r.cell_line, int(r.replicate)) for r in screen.samples.itertuples()}
    assert got == {"pDNA": ("reference", "", 0), "HUH7_rep1": ("end", "HUH7", 1),
                   "HUH7_rep2": ("end", "HUH7", 2), "A549": ("end", "A549", 1),
                   "MDA-MB-231": ("end", "MDA-MB-231", 1), "HEPG2.3": ("end", "HEPG2", 3)}
    assert any("no sample sheet" in n for n in screen.notes)
    assert screen.shape == (4, 2, 2)  # HUH7 twice


def test_a_skipped_sample_may_be_empty_and_is_left_out(tmp_path):
    table = _write(tmp_path / "c.txt", counts(*(row(n, "0", 4) for n in range(2, 6))))
    samples = _write(tmp_path / "s.csv", sheet(S, S1, "S2,skip,,"))
    screen = read_counts(table, samples)
    assert screen.shape == (1, 2, 1)
    assert np.isfinite(screen.frame["logfc"]).all()


def test_a_sheet_without_replicates_numbers_them_per_cell_line(tmp_path):
    table = _write(tmp_path / "c.txt", GOOD)
    samples = _write(tmp_path / "s.csv", "sample,role,cell_line\nplasmid,plasmid,\nS1,end,HUH7\n"
                                         "S2,end,HUH7\n")
    screen = read_counts(table, samples)
    assert list(screen.samples["replicate"][screen.samples["role"] == "end"]) == ["1", "2"]
    assert screen.shape == (1, 2, 2)


def test_a_sample_sheet_may_be_a_data_frame(tmp_path):
    table = _write(tmp_path / "c.txt", GOOD)
    frame = pd.DataFrame({"Sample": ["plasmid", "S1", "S2"], "Role": ["T0", "end", "end"],
                          "cell_line": [None, "HUH7", "HUH7"], "replicate": [None, 1, 2]})
    a = read_counts(table, frame)
    b = read_counts(table, _write(tmp_path / "s.csv", SHEET))
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_a_data_frame_sheet_with_a_clash_names_its_row(tmp_path):
    table = _write(tmp_path / "c.txt", GOOD)
    frame = pd.DataFrame({"sample": ["plasmid", "S1", "S2"], "role": ["reference", "end", "end"],
                          "cell_line": ["", "X", "X"], "replicate": [0, 1, 1]})
    with pytest.raises(DataError, match=r"line 4: cell line 'X' has replicate '1' more than once"):
        read_counts(table, frame)


@pytest.mark.parametrize("name, shape", [("liver_500_genes.csv.gz", (24, 500, 1)),
                                         ("neuroblastoma_500_genes.csv.gz", (37, 500, 1))])
def test_the_shipped_depmap_subsets_read_with_their_shapes(name, shape):
    path = ROOT / "sbc/datasets" / name
    screen = read_gene_effects(path)
    assert screen.shape == shape
    assert read_screen(path).shape == shape
    assert screen.frame["logfc"].notna().all()
    assert all(c.startswith("ACH-") for c in screen.frame["cell_line"].cat.categories)


# --------------------------------------------------------------------- property-based tests

SYMBOL = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=6)
VALUE = st.one_of(st.none(), st.floats(-5, 5, allow_nan=False, allow_subnormal=False))


@st.composite
def matrices(draw):
    genes = draw(st.lists(SYMBOL, min_size=1, max_size=6, unique=True))
    cells = [f"ACH-{i:06d}" for i in draw(st.lists(st.integers(0, 999_999), min_size=1,
                                                  max_size=5, unique=True))]
    values = np.array([[draw(VALUE) for _ in cells] for _ in genes], dtype=float)
    if np.isnan(values).all():
        values[draw(st.integers(0, len(genes) - 1)), draw(st.integers(0, len(cells) - 1))] = 0.25
    entrez = draw(st.lists(st.integers(1, 10**6), min_size=len(genes), max_size=len(genes),
                           unique=True))
    return genes, cells, values, entrez


@HYPOTHESIS
@given(m=matrices(), depmap=st.booleans(), corner=st.sampled_from(["", "gene|ModelID"]),
       missing=st.sampled_from(["", "NA", "nan", "NaN"]), tabs=st.booleans())
def test_any_valid_matrix_round_trips_in_either_orientation(tmp_path, m, depmap, corner, missing,
                                                            tabs):
    genes, cells, values, entrez = m

    def cell(x):
        return missing if math.isnan(x) else repr(float(x))

    if depmap:  # DepMap's layout: cell lines as rows, gene headers "SYMBOL (ENTREZ)"
        head = [corner.split("|")[-1], *(f"{g} ({e})" for g, e in zip(genes, entrez))]
        body = [[c, *(cell(x) for x in values[:, j])] for j, c in enumerate(cells)]
    else:
        head = [corner.split("|")[0], *cells]
        body = [[g, *(cell(x) for x in values[i])] for i, g in enumerate(genes)]
    sep = "\t" if tabs else ","
    path = tmp_path / "m.tsv"
    path.write_text("\n".join(sep.join(r) for r in [head, *body]) + "\n")
    screen = read_gene_effects(path)
    expected = pd.DataFrame(values, index=genes, columns=cells)
    expected = expected.dropna(how="all").dropna(axis=1, how="all")
    got = screen.matrix()
    got.index, got.columns = list(map(str, got.index)), list(map(str, got.columns))
    assert sorted(got.index) == sorted(expected.index)
    assert sorted(got.columns) == sorted(expected.columns)
    got = got.loc[expected.index, expected.columns]
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    assert len(screen.frame) == int(np.isfinite(values).sum())
    # categories sorted, as Bambi orders levels (models indexing by cat.codes agree with it)
    assert list(screen.frame["gene"].cat.categories) == sorted(g for g in genes if g in expected.index)


@st.composite
def count_tables(draw):
    n_guides = draw(st.integers(2, 8))
    genes = [f"G{draw(st.integers(0, 2))}" for _ in range(n_guides)]
    n_refs = draw(st.integers(1, 2))
    ends = draw(st.lists(st.sampled_from(["HUH7", "HEPG2"]), min_size=1, max_size=3))
    skip = draw(st.booleans())
    names = ([f"plasmid{k}" for k in range(n_refs)] + [f"end{k}" for k in range(len(ends))]
             + (["junk"] if skip else []))
    table = np.array(draw(st.lists(st.lists(st.integers(0, 2000), min_size=len(names),
                                            max_size=len(names)),
                                   min_size=n_guides, max_size=n_guides)), dtype=np.int64)
    used = len(names) - skip
    table[0, :used] += (table[:, :used].sum(axis=0) == 0)  # no empty library (junk may be)
    return genes, names, table, n_refs, ends, skip


def documented_logfc(table, genes, n_refs, ends):
    """The formula read_counts documents, computed independently: per guide
    log2((n+1/2)/N) - log2(mean over references of (r+1/2)/R), centred per end sample on its
    median guide, then the mean over each gene's guides."""
    x = table.astype(float)
    ref = np.log2(np.mean([(x[:, k] + 0.5) / x[:, k].sum() for k in range(n_refs)], axis=0))
    out, reps = {}, {}
    for j, line in enumerate(ends):
        col = n_refs + j
        lfc = np.log2((x[:, col] + 0.5) / x[:, col].sum()) - ref
        lfc = lfc - np.median(lfc)
        reps[line] = reps.get(line, 0) + 1
        for gene in dict.fromkeys(genes):
            out[line, gene, str(reps[line])] = lfc[[g == gene for g in genes]].mean()
    return out


@HYPOTHESIS
@given(t=count_tables())
def test_count_logfc_follows_the_documented_formula(tmp_path, t):
    genes, names, table, n_refs, ends, skip = t
    lines = ["\t".join(["sgRNA", "Gene", *names])]
    lines += ["\t".join([f"sg{i}", g, *map(str, r)]) for i, (g, r) in enumerate(zip(genes, table))]
    path = _write(tmp_path / "c.txt", "\n".join(lines) + "\n")
    reps: dict[str, int] = {}
    sheet_rows = [f"plasmid{k},reference,," for k in range(n_refs)]
    for j, line in enumerate(ends):
        reps[line] = reps.get(line, 0) + 1
        sheet_rows.append(f"end{j},end,{line},{reps[line]}")
    if skip:
        sheet_rows.append("junk,skip,,")
    screen = read_counts(path, _write(tmp_path / "s.csv", sheet(*sheet_rows)))
    want = documented_logfc(table, genes, n_refs, ends)
    got = {(str(r.cell_line), str(r.gene), str(r.expt)): r.logfc
           for r in screen.frame.itertuples()}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert screen.counts.to_numpy().tolist() == table.tolist()


CORRUPTIONS = {"-3": "negative", "12.5": "not a whole number", "seven": "not a count",
               "": "is empty", "NA": "is empty", "1.5e2x": "not a count", "-0.5": "negative"}


@HYPOTHESIS
@given(t=count_tables(), data=st.data(), bad=st.sampled_from(sorted(CORRUPTIONS)))
def test_one_corrupted_count_is_refused_naming_its_exact_line(tmp_path, t, data, bad):
    genes, names, table = t[:3]
    r = data.draw(st.integers(0, len(genes) - 1), "row")
    k = data.draw(st.integers(0, len(names) - 1), "sample")
    cells = table.astype(str)
    cells[r, k] = bad
    body = ["\t".join([f"sg{i}", g, *c]) for i, (g, c) in enumerate(zip(genes, cells))]
    # blank and comment lines before some guide lines: the line named is the file's line
    extra = data.draw(st.lists(st.sampled_from(["", "# note"]), min_size=len(body),
                               max_size=len(body)), "extra")
    lines = ["\t".join(["sgRNA", "Gene", *names])]
    for e, b in zip(extra, body):
        if data.draw(st.booleans(), "insert"):
            lines.append(e)
        lines.append(b)
    at = lines.index(body[r]) + 1
    path = _write(tmp_path / "c.txt", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_counts(path)
    message = str(info.value)
    assert f"line {at}, column {k + 3} ({names[k]!r})" in message, message
    assert CORRUPTIONS[bad] in message and str(path) in message


# ------------------------------------------------------------------------- bounded memory

MEASURE = """
import resource, sys
from pathlib import Path
from sbc.posterior import posterior_design
from sbc.readers import read_screen
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = Path(sys.argv[2])
if sys.argv[1] == "posterior":
    design = posterior_design(path)
    shape = (design.observed["cell_line"].nunique(), design.observed["gene"].nunique())
else:
    shape = read_screen(path).shape[:2]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024, *shape)
"""


def _long_csv(path, cells=60, genes=4000, reps=3, sep=","):
    """A long logfc file of cells x genes x reps rows (about 23 MB for the defaults)."""
    rng = np.random.default_rng(0)
    gene = np.repeat([f"GENE{g:05d}" for g in range(genes)], reps)
    rep = np.tile(np.arange(1, reps + 1).astype(str), genes)
    with open(path, "w") as fh:
        fh.write(sep.join(("gene", "cell_line", "replicate", "logfc")) + "\n")
        for c in range(cells):
            values = np.char.mod("%.6f", rng.normal(size=genes * reps))
            rows = np.char.add(np.char.add(np.char.add(gene, f"{sep}ACH-{c:06d}{sep}"), rep),
                               np.char.add(sep, values))
            fh.write("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("what, name", [("posterior", "observed.csv"), ("screen", "screen.csv"),
                                        ("screen", "screen.tsv")])
def test_validating_a_large_long_file_takes_a_few_times_its_size_in_memory(tmp_path, what, name):
    """A posterior-SBC data file of 720,000 rows (23 MB) is validated within 7 times its
    size of memory (measured: about 5x; one Python string per cell took 18x, so a 142 MB
    file took gigabytes): the text is parsed by pandas from bytes, in chunks, and checked
    on categories, never cell by cell."""
    import subprocess
    import sys

    path = _long_csv(tmp_path / name, sep="\t" if name.endswith(".tsv") else ",")
    size = path.stat().st_size
    done = subprocess.run([sys.executable, "-c", MEASURE, what, str(path)], check=True,
                          capture_output=True, text=True, cwd=ROOT)
    peak, cells, genes = map(int, done.stdout.split())
    assert (cells, genes) == (60, 4000)
    assert peak < 7 * size, f"{what}: {peak / 2**20:.0f} MB for a {size / 2**20:.0f} MB file"
