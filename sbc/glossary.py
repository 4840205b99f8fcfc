"""What every column of the report's tables means: one entry per column header, shown as the
header's tooltip and in the report's glossary (a test requires an entry for every column the
report shows)."""

from __future__ import annotations

import re

_COV = ("share of fits whose truth lies inside the central {level} posterior interval (a "
        "group: the mean over its elements); calibrated: {level} up to Monte Carlo error. "
        "'±e' in the header: 1.96 binomial standard errors at the nominal level for this "
        "many fits, the spread simulation noise alone gives a calibrated parameter")

COLUMNS: dict[str, str] = {
    # sequential test
    "where it stopped": "where the sequential study stands: stopped because an e-value "
                        "crossed its boundary (fail), at the pass point (the fixed-n test "
                        "decides), at max_simulations, or not stopped yet",
    "stop replicate": "the last replicate the verdict counts (replicates are counted in order)",
    "fits counted": "successful fits up to the stop: the verdict rests on these alone",
    "stored beyond the stop": "replicates stored after the stop (in flight when it came, or "
                              "from an earlier, larger run); kept, never counted",
    "reject at e-value": "a group fails when its e-value reaches this (the number of groups "
                         "divided by the share of alpha watched continuously); the chance "
                         "that a calibrated group ever does is at most that share",
    "pass point (fits)": "the fits at which a pass states the power asked for against the "
                         "stated departures ([sequential] power, shift, narrow)",
    "fixed-n study of equal power (fits)": "fits a fixed-n study (one look at full alpha) "
                                           "needs for the same power against the same "
                                           "departures",
    "max_simulations": "the most replicates the sequential study may run",
    "replicates not fitted": "max_simulations minus the replicates fitted (counted and "
                             "beyond the stop): the saving against a fixed study of "
                             "max_simulations",
    # summary
    "model": "the fitted model (a file in models/ or the path the study names)",
    "design": "cell lines x genes x replicate experiments of the simulated screens",
    "verdict": "pass / fail / inconclusive for this model and design, from the uniformity "
               "tests of all its parameter groups after the multiplicity correction",
    "cause": "for a fail: 'model or code' (the failure persists in fits without sampler "
             "warnings) or 'computation' (clean fits pass and flagged fits carry the extreme "
             "ranks) or 'undetermined'",
    "reason": "why the verdict is what it is, with the smallest adjusted p-value and the power",
    "fits ok / total": "fits that succeeded, of the replicates run (failed fits are counted, "
                       "never ranked)",
    "clean fits": "successful fits without any sampler warning (divergences, low ESS, "
                  "R-hat > 1.01, tree depth), and their share",
    "median ranked draws": "median number of thinned posterior draws each truth was ranked "
                           "among (the resolution of the ranks)",
    "without flagged fits": "the verdict the clean fits alone would get (a hint only: "
                            "excluded fits are not a random subset)",
    "changes": "whether leaving out the flagged fits changes the verdict",
    # parameter groups
    "parameter / group": "a scalar parameter, or a group of exchangeable elements (e.g. every "
                         "1|gene[i]) tested together; loglik and loglik_min are the log "
                         "likelihood of the data at the truth, ranked like parameters",
    "kind": "parameter, or quantity (a function of parameters and data)",
    "elements": "scalars in the group",
    "p (pooled)": "p-value of the group: Bonferroni over its elements' uniformity tests "
                  "('< x': the test's Monte Carlo floor was reached, the true p is smaller)",
    "Holm p": "the pooled p adjusted by Holm over every group test of the family; below "
              "alpha = 0.05 the group fails",
    "result": "pass or fail of the group at the adjusted level",
    "worst element": "the element with the smallest uniformity p-value",
    "worst p": "its p-value (the uniformity test of its fractional ranks)",
    "shape": "how the worst element's ranks depart from uniform: too narrow (U shape), too "
             "wide (hump), biased (slope)",
    "cov 50%": _COV.format(level="50 %"),
    "cov 80%": _COV.format(level="80 %"),
    "cov 90%": _COV.format(level="90 %"),
    "cov 95%": _COV.format(level="95 %"),
    "robust sd(z)": "robust spread (1.4826 x MAD) of the posterior z-score (mean - truth) / sd "
                    "over fits; about 1 when calibrated, above 1: posteriors too narrow",
    "contraction": "median posterior contraction 1 - sd^2 / prior sd^2: 0 = the data taught "
                   "nothing, 1 = the parameter is pinned down",
    "RMSE": "root mean squared error of the posterior mean against the truth",
    # scalars
    "name": "the scalar (an element of a vector parameter in brackets)",
    "n": "fits ranked",
    "p": "uniformity p-value of its fractional ranks (smallest of Anderson-Darling, Berk-Jones "
         "and Neyman-3, calibrated as one test on a Monte Carlo null); "
         "'< x': at the test's Monte Carlo floor",
    "shape (p<0.05)": "for p < 0.05: how the ranks depart from uniform",
    "mean u": "mean fractional rank; 0.5 when calibrated, below: the posterior sits above the "
              "truth (overestimates), above: underestimates",
    "var u": "variance of the fractional ranks; 1/12 = 0.083 when calibrated, above: "
             "posterior too narrow, below: too wide",
    "bias": "mean of posterior mean - truth",
    "median z": "median posterior z-score (mean - truth) / sd; about 0 when calibrated",
    "p clean": "the uniformity p-value on fits without sampler warnings only",
    "n clean": "fits without sampler warnings",
    # model bug or computation
    "element": "the worst element of a failing group",
    "p all fits": "its uniformity p-value over every fit",
    "n flagged": "fits with a sampler warning",
    "p flagged": "its uniformity p-value over the flagged fits",
    "extremeness flagged": "mean |2u - 1| over flagged fits (1: truth outside all draws; "
                           "0.5 when calibrated)",
    "extremeness clean": "mean |2u - 1| over clean fits",
    "Mann-Whitney p": "one-sided test that flagged fits have more extreme ranks than clean fits",
    "correlation": "point-biserial correlation of rank extremeness with the sampler flag",
    # sampler diagnostics
    "fits": "replicates run",
    "failed": "fits that failed (no ranks)",
    "ok": "fits that succeeded",
    "divergent": "share of fits with at least one divergent transition",
    "max treedepth hit": "share of fits that hit the sampler's maximum tree depth",
    "R-hat > 1.01": "share of fits with some R-hat above 1.01 (several chains only)",
    "low ESS": "share of fits whose smallest effective sample size is below 100",
    "rescued (refitted)": "share of fits refitted once with stronger settings after a warning "
                          "(both attempts recorded; the refit is ranked)",
    "any warning (after rescue)": "share of fits still flagged after any rescue",
    "failed fits by reason": "failed fits per failure code (timeout, worker_died, ...)",
    "did not move (degenerate, ranked)": "share of fits stuck at a point even after their "
                                         "rescue; ranked among all their draws and flagged",
    "median seconds / fit": "median wall time of one fit",
    # the most extreme fits
    "parameter": "the scalar",
    "replicate": "the replicate number (its record: replicates/MODEL/DESIGN/rNNNNNN.json)",
    "u": "fractional rank (rank + V) / (draws + 1): near 0 or 1 = truth in a posterior tail",
    "z": "posterior z-score (mean - truth) / sd",
    "truth": "the simulated value",
    "posterior mean": "mean of the posterior draws",
    "posterior sd": "sd of the posterior draws",
    "listed for": "why the fit is listed: among the largest |z|, the smallest u (truth below "
                  "almost every draw) or the largest u (truth above almost every draw)",
    "sampler warning": "the fit had a sampler warning (divergences, low ESS, R-hat, tree depth)",
    "rep": "the replicate number",
    "error": "the error of the failed fit",
    # sign decisions
    "event": "the decision checked: the parameter (every element of a vector) is below zero; "
             "its probability is the share of a fit's posterior draws below zero, its outcome "
             "whether the truth is below zero",
    "elements tested": "elements whose probability is not always equal to their outcome (a "
                       "positive parameter's is always 0 and false: nothing to check)",
    "decision fits": "fits with the probability of every tested element recorded",
    "share true": "share of the truths below zero (in a reliability table: of the pairs in "
                  "the bin); calibrated: equal to the mean probability",
    "Brier": "mean squared difference between the probability and the outcome (0 or 1); "
             "lower is better",
    "Brier reliability": "Murphy's reliability term over 10 bins of probability: the "
                         "weighted squared gap between mean probability and share true; about "
                         "0 when calibrated",
    "Brier resolution": "how far the bins' shares true spread around the base rate: higher "
                        "means sharper decisions",
    "Brier uncertainty": "base rate x (1 - base rate): the Brier score of always predicting "
                         "the base rate",
    "Spiegelhalter z": "Spiegelhalter's z of the worst element over the fits: sum (y - p)(1 - "
                       "2p) / its sd; above 0: probabilities too extreme (overconfident), "
                       "below 0: too timid",
    "decision p": "two-sided p of Spiegelhalter's test, Bonferroni over the elements tested",
    "decision Holm p": "decision p adjusted by Holm over the groups of this model x design; "
                       "at most alpha: the group's decisions fail",
    "decision result": "pass or fail of the decisions' calibration at the adjusted level (not "
                       "part of the SBC verdict)",
    "P(event)": "bin of the probability of the event",
    "pairs": "(fit, element) pairs in the bin",
    "mean P(event)": "mean probability of the pairs in the bin",
    "interval": "95 % interval of the bin's share true: Clopper-Pearson for one element, "
                "cluster-robust with fits as clusters for several; a calibrated bin's usually "
                "holds its mean probability",
    # sbc.Results in a notebook
    "fits ok": "fits that succeeded",
    "flagged share": "share of successful fits with a sampler warning",
    # the plan table
    "cell_lines": "cell lines in the design",
    "genes": "genes in the design",
    "reps": "replicate screens of each cell line",
    "rows": "measurements: cell lines x genes x replicates",
    "cost": "the design's cost from the plan's [cost] table",
    "status": "pass: the target is met with the stated probability (the interval's lower end "
              "clears it); fail: clearly not; inconclusive: more simulations could tell; "
              "unreliable fits / refused: see the note",
    "simulations": "simulated screens fitted for this design",
    "p_success": "estimated probability that a screen of this design meets every target",
    "p_lower": "lower end of its Wilson interval (the search's confidence level)",
    "p_upper": "upper end of its Wilson interval",
    "posterior_sd": "median posterior sd of the target quantity",
    "width": "median width of its central interval at the target's level",
    "rmse": "root mean squared error of the posterior mean against the truth",
    "failed_fits": "fits that failed",
    "flagged_fits": "fits with a sampler warning",
    "median_fit_seconds": "median wall time of one fit",
    "calibration": "the SBC verdict of the analysis model at this design (a design is "
                   "recommended only if calibrated)",
    "calibration_p_holm": "smallest Holm-adjusted uniformity p-value of that check",
    "calibration_failing": "the groups that fail it",
    "calibration_simulations": "fits the calibration check used",
    "note": "why a design was refused or judged unreliable",
    "group (contraction / RMSE / Holm p)": "per group and design: median contraction, RMSE of "
                                           "the posterior mean and Holm-adjusted p-value",
}

_DESIGN = re.compile(r"\d+x\d+x\d+|posterior-.+")
_COVERAGE = re.compile(r"(cov \d+%) ±[0-9.]+")
_TARGET = re.compile(r"p_target(\d+)")


_PERCENTILE = re.compile(r"(.+) \(percentile of truth\)")


def explain(column: str) -> str:
    """The explanation of a column header ("" when there is none)."""
    if column in COLUMNS:
        return COLUMNS[column]
    percentile = _PERCENTILE.fullmatch(column)
    if percentile:
        return (f"percentile of this fit's truth of {percentile.group(1)} among the truths of "
                "all fits of this model x design")
    coverage = _COVERAGE.fullmatch(column)
    if coverage:
        return COLUMNS[coverage.group(1)]
    target = _TARGET.fullmatch(column)
    if target:
        return f"estimated probability that a screen meets target {int(target.group(1)) + 1} alone"
    if _DESIGN.fullmatch(column):
        return f"design {column} (cell lines x genes x replicates)"
    return ""


def canonical(column: str) -> str:
    """The glossary's name of a column header: a coverage header without its Monte Carlo
    error ("cov 90% ±0.037" -> "cov 90%"), so that one entry explains it at every n."""
    coverage = _COVERAGE.fullmatch(column)
    return coverage.group(1) if coverage else column
