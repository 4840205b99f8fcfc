"""CRISPR screen log fold changes where every gene has its own spread across cell lines (Bambi).

    logfc ~ 1 + (1 | gene) + (1 | cell_line)
    sigma ~ 1 + (1 | gene)            (log link: log sigma_g = sigma_Intercept + sigma_1|gene)

``crispr_screen`` gives every gene one residual sd.  Real gene-effect data do not look like
that: a selective dependency (a gene that some cell lines need and others do not) varies
from line to line, while most genes never move.  On DepMap's neuroblastoma lines (500 genes
x 37 lines) the largest per-gene sd is 0.5-0.7 against about 0.3 that ``crispr_screen``'s
posterior predictive distribution allows, and the quietest tenth of genes vary half as much
as it allows (``sbc check``; README "Real screens").  Here each gene's residual sd is
lognormal around a common one, a distributional model Bambi writes as a second formula.

| Bambi parameter        | meaning                                            | prior                  |
|------------------------|----------------------------------------------------|------------------------|
| ``Intercept``          | mean log fold change                               | Normal(-1, sqrt(8))    |
| ``1|gene_sigma``       | sd of the gene effects                             | Exponential(rate 0.5)  |
| ``1|gene``             | gene effect                                        | Normal(0, 1|gene_sigma)|
| ``1|cell_line_sigma``  | sd of the cell-line effects                        | Exponential(rate 0.5)  |
| ``1|cell_line``        | cell-line effect                                   | Normal(0, ...)         |
| ``sigma_Intercept``    | log of the typical gene's residual sd              | Normal(-1.5, 1)        |
| ``sigma_1|gene_sigma`` | sd of the genes' log residual sds                  | Exponential(rate 2)    |
| ``sigma_1|gene``       | a gene's log residual sd, relative to the typical  | Normal(0, ...)         |

The location priors are ``crispr_screen``'s, so the two models differ only in the spread.
``exp(-1.5) = 0.22`` is a typical Chronos gene's sd across lines; the prior allows 0.03-1.6
within two sds.  Every prior is explicit (Bambi's defaults are scaled by the data).

The group effects are centered: a real screen has tens of cell lines per gene.  At small
designs (3 genes) the spread of the genes' sds is weakly identified and the centered form can
funnel; a flagged fit is refitted non-centered (``RESCUE``).
"""

import math

import bambi as bmb

FORMULA = ("logfc ~ 1 + (1|gene) + (1|cell_line)", "sigma ~ 1 + (1|gene)")
INTERCEPT_MU, INTERCEPT_SD = -1.0, math.sqrt(8.0)
GENE_SD_RATE = 0.5
CELL_SD_RATE = 0.5
LOG_SIGMA_MU, LOG_SIGMA_SD = -1.5, 1.0
LOG_SIGMA_SD_RATE = 2.0


def priors() -> dict:
    return {
        "Intercept": bmb.Prior("Normal", mu=INTERCEPT_MU, sigma=INTERCEPT_SD),
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=GENE_SD_RATE)),
        "1|cell_line": bmb.Prior("Normal", mu=0.0,
                                 sigma=bmb.Prior("Exponential", lam=CELL_SD_RATE)),
        "sigma": {
            "Intercept": bmb.Prior("Normal", mu=LOG_SIGMA_MU, sigma=LOG_SIGMA_SD),
            "1|gene": bmb.Prior("Normal", mu=0.0,
                                sigma=bmb.Prior("Exponential", lam=LOG_SIGMA_SD_RATE)),
        },
    }


def _model(data, noncentered: bool):
    return bmb.Model(bmb.Formula(*FORMULA), data, priors=priors(), family="gaussian",
                     noncentered=noncentered)


def build(data):
    """data: a design frame (``sbc.design_frame``) or a real screen (``sbc.read_screen``)."""
    return _model(data, noncentered=False)


RESCUE = ("build_noncentered",)


def build_noncentered(data):
    """The same model with every group effect non-centered (Bambi)."""
    return _model(data, noncentered=True)
