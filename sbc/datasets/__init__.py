"""Real screens shipped with sbc, for examples and tests that must run without a network.

:func:`depmap` returns the path of a DepMap CRISPR gene-effect subset (Chronos scale, 500
genes, genes as rows and DepMap cell-line ids as columns), readable with
:func:`sbc.read_gene_effects`.  Source, checksums, licence (CC BY 4.0) and citations:
``README.md`` in this folder.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["LINEAGES", "depmap"]

HERE = Path(__file__).resolve().parent
LINEAGES = {"liver": "liver_500_genes.csv.gz", "neuroblastoma": "neuroblastoma_500_genes.csv.gz"}


def depmap(lineage: str = "liver") -> Path:
    """The shipped DepMap gene-effect subset of ``lineage`` ("liver": 24 cell lines,
    "neuroblastoma": 37), 500 genes each.  Data: DepMap, Broad Institute, CC BY 4.0."""
    if lineage not in LINEAGES:
        raise ValueError(f"unknown lineage {lineage!r}; shipped: {', '.join(LINEAGES)}")
    return HERE / LINEAGES[lineage]
