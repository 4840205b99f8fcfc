"""CRISPR screen log fold changes whose spread differs by gene and by cell line (Bambi: a
distributional model).

    logfc ~ 1 + (1 | gene) + (1 | cell_line)                       Normal
    sigma ~ 1 + (1 | gene) + (1 | cell_line)                       log link

``crispr_screen`` gives every value one residual sd.  Real gene-effect data do not look like
that (``sbc check`` on DepMap's 37 neuroblastoma lines, README "Real screens"):

* genes differ in how much they vary across cell lines: a selective dependency (needed by
  some lines, not others) varies, most genes never move.  The largest per-gene sd is 0.58
  where ``crispr_screen``'s replicated data allow 0.29-0.33, the quietest tenth of genes vary
  half as much as it allows, and a gene's spread goes with its mean (correlation of a gene's
  mean and log sd: -0.77; essential genes vary more);
* cell lines differ in screen quality: the sd of a line's standardised residuals ranges from
  0.70 to 1.35 (sampling alone: +-0.03);
* what is left has nearly normal tails once each gene and each line has its own scale (excess
  kurtosis 0.46 with one scale per gene, 0.26 with one per gene and line).

So the residual sd is lognormal in gene and cell line: ``sigma_gc = exp(sigma_Intercept +
sigma_1|gene + sigma_1|cell_line)``.  (Student-t residuals on top win LOO by a further 79
elpd (se 16) on the neuroblastoma lines, but their degrees of freedom are weakly identified
at the reference designs: prior SBC of that form had sampler warnings in half of its fits
and biased gene effects at 30 x 10 x 2, so this model stays normal.)

| Bambi parameter             | meaning                                         | prior                  |
|-----------------------------|-------------------------------------------------|------------------------|
| ``Intercept``               | mean log fold change                            | Normal(-1, sqrt(8))    |
| ``1|gene_sigma``            | sd of the gene effects                          | Exponential(rate 0.5)  |
| ``1|gene``                  | gene effect                                     | Normal(0, 1|gene_sigma)|
| ``1|cell_line_sigma``       | sd of the cell-line effects                     | Exponential(rate 0.5)  |
| ``1|cell_line``             | cell-line effect                                | Normal(0, ...)         |
| ``sigma_Intercept``         | log of the typical residual scale               | Normal(-1.5, 1)        |
| ``sigma_1|gene_sigma``      | sd of the genes' log scales                     | Exponential(rate 2)    |
| ``sigma_1|gene``            | a gene's log scale, relative to the typical     | Normal(0, ...)         |
| ``sigma_1|cell_line_sigma`` | sd of the cell lines' log scales                | Exponential(rate 2)    |
| ``sigma_1|cell_line``       | a cell line's log scale, relative               | Normal(0, ...)         |

The location priors are ``crispr_screen``'s.  ``exp(-1.5) = 0.22`` is a typical Chronos
gene's sd across lines; the prior allows 0.03-1.6 within two sds.  Every prior is explicit
(Bambi's defaults are scaled by the data).

The group effects are centered, as in ``crispr_screen``; a flagged fit is refitted with every
group effect non-centered (``RESCUE``), the better form where effects are weakly informed or
tiny (on real screens the cell-line effects are: Chronos centres every line).
"""

import math

import bambi as bmb

FORMULA = ("logfc ~ 1 + (1|gene) + (1|cell_line)", "sigma ~ 1 + (1|gene) + (1|cell_line)")
INTERCEPT_MU, INTERCEPT_SD = -1.0, math.sqrt(8.0)
GENE_SD_RATE = 0.5
CELL_SD_RATE = 0.5
LOG_SIGMA_MU, LOG_SIGMA_SD = -1.5, 1.0
LOG_SIGMA_SD_RATE = 2.0


def priors() -> dict:
    def log_scale_effect():
        return bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=LOG_SIGMA_SD_RATE))

    return {
        "Intercept": bmb.Prior("Normal", mu=INTERCEPT_MU, sigma=INTERCEPT_SD),
        "1|gene": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("Exponential", lam=GENE_SD_RATE)),
        "1|cell_line": bmb.Prior("Normal", mu=0.0,
                                 sigma=bmb.Prior("Exponential", lam=CELL_SD_RATE)),
        "sigma": {
            "Intercept": bmb.Prior("Normal", mu=LOG_SIGMA_MU, sigma=LOG_SIGMA_SD),
            "1|gene": log_scale_effect(),
            "1|cell_line": log_scale_effect(),
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
