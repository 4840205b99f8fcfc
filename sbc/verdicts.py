"""Verdicts and their diagnosis: from the engine's test results (:mod:`sbc.calibration`) to
the verdict of each model x design, the cause of a failure with its evidence, the warnings
that qualify a pass, and what to try next.

The cause of a ``fail`` is attributed separately from the verdict: "model or code" (the
failure persists in the fits without sampler warnings, or no fit had warnings),
"computation" (the clean fits pass and the failing ranks are more extreme in flagged fits),
or "undetermined", always with the evidence (counts, the clean-fit test and the association
test).  Recommendations are computed from what went wrong and what the fits actually ran with
(the study's settings raised by rescues, the fitted form), and never repeat a setting that is
already in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sbc import stats
from sbc.sampling import SamplerSettings

ALPHA = 0.05  # default family-wise false-fail rate
MIN_FITS = 10  # fewer successful fits than this: inconclusive (the one minimum n)
MIN_SIDE = 5  # fewest flagged and clean fits for comparing the two
MAX_FLAGGED = 0.10  # a pass with more flagged fits than this carries a warning
MAX_FAILED = 0.05  # ... and with more failed fits than this
MIN_POWER = 0.8  # a pass with less power than this (0.5-sd shift) is "low power"
MIN_RANKED = 50  # a median of fewer ranked draws per fit than this is "low resolution"
POWER_SHIFT = 0.5  # the shift (in posterior sds) whose detection probability is stated
SHAPE_TEXT = {
    "ok": "irregular (ranks non-uniform, neither mean nor spread stands out)",
    "too_narrow": "too narrow (U-shaped ranks: posterior overconfident)",
    "too_wide": "too wide (hump-shaped ranks: posterior underconfident)",
    "biased_low": "biased low (ranks high: posterior underestimates)",
    "biased_high": "biased high (ranks low: posterior overestimates)",
}

CAUSES = ("model or code", "computation", "undetermined")


@dataclass(frozen=True)
class Cause:
    """Why a (model, design) fails: ``kind`` is one of :data:`CAUSES`; ``evidence`` says
    on what the attribution rests (counts of clean and flagged fits, the clean-fit test, the
    association of extreme ranks with sampler flags)."""

    kind: str
    evidence: str
    n_clean: int = 0
    n_flagged: int = 0


@dataclass(frozen=True)
class Verdict:
    """Calibration verdict of one model x design (or of a model, or of the study).

    status: "pass" | "fail" | "inconclusive".
    warnings: short tags qualifying a pass or fail ("flagged fits", "failed fits",
        "low resolution", "degenerate fits", "untested quantities", "low power"); a pass
        with warnings is not a clean pass.
    cause: for a fail, the attribution; None otherwise.
    power: probability of detecting a 0.5-sd shift of one scalar at this number of fits and
        this family (NaN when not computed).
    """

    status: str
    reason: str
    failing: tuple[str, ...] = ()
    recommendation: str = ""
    warnings: tuple[str, ...] = ()
    cause: Cause | None = None
    power: float = math.nan

    @property
    def label(self) -> str:
        """What to show: "pass", "pass, with warnings", "pass, low power", "fail: model or
        code", ...; never a bare "pass" when something qualifies it."""
        if self.status == "pass" and self.warnings:
            if self.warnings == ("low power",):
                return "pass, low power"
            return "pass, with warnings"
        if self.status == "fail" and self.cause is not None:
            return f"fail: {self.cause.kind}"
        if self.status == "inconclusive" and self.cause is not None:
            return f"inconclusive: {self.cause.evidence}"
        return self.status

    @property
    def clean_pass(self) -> bool:
        return self.status == "pass" and not self.warnings

    def __str__(self) -> str:
        """The verdict as a person reads it: its label, why, what fails, the cause and
        what to do next (``repr`` keeps every field)."""
        text = self.label
        if self.warnings and not (self.status == "pass" and self.warnings == ("low power",)):
            text += f" ({', '.join(self.warnings)})"
        parts = [f"{text}: {_sentence(self.reason)}"]
        if self.failing:
            parts.append(f"Failing: {', '.join(self.failing)}.")
        if self.cause is not None and self.status == "fail":
            parts.append(f"Cause: {self.cause.kind}, because {_sentence(self.cause.evidence)}")
        if self.recommendation:
            parts.append(f"Next: {_sentence(self.recommendation)}")
        return " ".join(parts)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def _setting(sampler, name: str):
    """A sampler setting in use: from SamplerSettings, its dict (a store's manifest), or,
    when unknown, the default."""
    default = getattr(SamplerSettings(), name)
    if sampler is None:
        return default
    if isinstance(sampler, dict):
        return sampler.get(name, default)
    return getattr(sampler, name, default)


def recommendation(diag: dict, sampler=None, names: tuple[str, ...] = (),
                   failing_cause: str | None = None) -> str:
    """Concrete next steps for one (model, design), computed from what went wrong and what
    the fits actually ran with: the study's settings (``sampler``: SamplerSettings or its
    dict), raised by rescues (``diag["target_accept_used"]``), and the fitted form
    (``diag["noncentered"]``: share of ranked fits in a non-centered form); never a setting
    already in place.  ``names``: the ranked parameter groups, the fallback for the form of
    stores written before the form was recorded."""
    tips = []
    used = diag.get("target_accept_used", math.nan)
    target = max(float(_setting(sampler, "target_accept")),
                 float(used) if used is not None and np.isfinite(used) else 0.0)
    depth = int(_setting(sampler, "max_treedepth"))
    draws = int(_setting(sampler, "draws"))
    tune = int(_setting(sampler, "tune"))
    chains = int(_setting(sampler, "chains"))
    rescue = bool(_setting(sampler, "rescue"))
    share_nc = diag.get("noncentered", math.nan)
    known_form = share_nc is not None and np.isfinite(share_nc)
    noncentered = share_nc > 0.5 if known_form else any(n.endswith("_offset") for n in names)
    if failing_cause == "model or code":
        tips.append("check the model code and priors of the failing quantities first (a "
                    "fitter that differs from the simulator, a wrong prior or likelihood); "
                    "better sampler settings do not cure these")
    elif failing_cause == "undetermined":
        tips.append("the cause is undetermined, so check the model code and priors of the "
                    "failing quantities (a fitter that differs from the simulator, a wrong "
                    "prior or likelihood) as well as the sampler")
    if diag.get("flagged", 0) > MAX_FLAGGED and not rescue:
        tips.append("set [sampler] rescue = true (flagged fits are refitted on the same data, "
                    "recorded)")
    if diag.get("divergent", 0) > 0:
        if target < 0.95:
            tips.append(f"raise [sampler] target_accept from {target:g} to 0.95")
        elif target < 0.99:
            tips.append(f"raise [sampler] target_accept from {target:g} to 0.99")
        elif target > float(_setting(sampler, "target_accept")):
            tips.append(f"divergences remain after refits at target_accept {target:g}: a "
                        "smaller step does not cure them, the geometry does")
        if noncentered:
            tips.append("divergences with non-centered group effects: when each group has "
                        "many observations the centered form often samples better (Bambi: "
                        "noncentered=False)")
        elif known_form and share_nc > 0:
            tips.append(f"divergences remain although {share_nc:.0%} of the ranked fits were "
                        "refitted in the non-centered form: reconsider the priors of the group "
                        "scales (too much mass near zero makes a funnel in either form)")
        elif names or known_form:
            tips.append("reparametrize the group effects in the non-centered form "
                        "(Bambi: noncentered=True)")
    if diag.get("treedepth", 0) > 0 and depth < 15:
        tips.append(f"raise [sampler] max_treedepth from {depth} to {depth + 2}")
    if (diag.get("low_ess", 0) > 0 or diag.get("rhat", 0) > 0
            or diag.get("median_ranked", math.inf) < MIN_RANKED):
        more = [f"draws from {draws} to {2 * draws}"]
        if tune < 2000:
            more.append(f"tune from {tune} to 2000")
        if chains == 1:
            more.append("chains from 1 to 2 (also gives R-hat)")
        tips.append("raise [sampler] " + ", ".join(more) + "; if the ESS of some parameters "
                    "stays low, reparametrize them (parameters identified only through their "
                    "sum, like two hyper-means, need a single intercept)")
    failures = str(diag.get("failures") or "")
    if "worker_died" in failures:
        tips.append("some fits killed the process running them (worker_died: os.abort, a "
                    "segfault or out of memory in the model or sampler); fit one such "
                    "replicate's data in a plain Python session to see the crash, then "
                    "`sbc run --retry-failed`")
    if "timeout" in failures:
        timeout = _setting(sampler, "timeout")
        tips.append("some fits ran past [sampler] timeout" + (f" ({timeout:g} s)" if timeout
                                                               else "")
                    + ": raise it, then `sbc run --retry-failed` refits them with their seeds")
    if diag.get("failed", 0) > 0:
        tips.append("read the errors of the failed fits (replicates.parquet, column error)")
    return "; ".join(tips)


def _eq(p_text: str) -> str:
    return p_text if p_text.startswith("<") else f"= {p_text}"


def _names(groups: pd.DataFrame) -> str:
    parts = []
    for g in groups.itertuples():
        label = g.group if g.elements == 1 else f"{g.group} ({g.elements} elements, worst {g.worst})"
        parts.append(f"{label}: {SHAPE_TEXT.get(g.worst_shape, g.worst_shape)}, "
                     f"Holm p {_eq(stats.format_p(g.p_holm, g.at_floor))}")
    return "; ".join(parts)


def attribute(failing: pd.DataFrame, groups_clean: pd.DataFrame, scalars: pd.DataFrame,
              diag: dict, alpha: float) -> Cause:
    """Why the failing groups of one (model, design) fail.

    Per failing group: "model or code" when no fit was flagged, or when the group also fails
    on the clean fits alone (however few: a sequential study stops early with fewer than a
    fixed verdict needs, and a rejection holds its level at any number of fits);
    "computation" when the clean fits pass it and its worst element's ranks are more extreme
    in flagged fits (one-sided Mann-Whitney p < alpha); "undetermined" otherwise.  The
    (model, design) gets "model or code" if any group does, "computation" if all groups do,
    else "undetermined".  Excluding flagged fits can itself bias SBC (whether a fit is flagged
    depends on the parameters), so the evidence is stated, not just the label.
    """
    n_clean = int(diag["clean"])
    n_flagged = int(diag["ok"] - diag["clean"])
    clean_fail = set(groups_clean.loc[groups_clean["fails"], "group"]) if len(groups_clean) else set()
    clean_p = groups_clean.set_index("group")["p_holm"] if len(groups_clean) else pd.Series(dtype=float)
    if n_flagged == 0:
        return Cause("model or code", f"none of the {n_clean} fits had sampler warnings, so "
                     "the computation is not to blame", n_clean, 0)
    kinds, evidence = [], []
    for g in failing.itertuples():
        worst = scalars[scalars["name"] == g.worst].iloc[0]
        pc = float(clean_p.get(g.group, math.nan))
        if n_flagged == 0:
            kinds.append("model or code")
            evidence.append(f"{g.group}: no fit had sampler warnings")
        elif g.group in clean_fail:  # a rejection at alpha is valid at any number of fits
            kinds.append("model or code")
            evidence.append(f"{g.group} fails on the {n_clean} clean fits alone "
                            f"(Holm p = {pc:.2g})")
        elif n_clean >= MIN_FITS and worst["assoc_p"] < alpha:
            kinds.append("computation")
            evidence.append(f"{g.group} passes on the {n_clean} clean fits (Holm p = {pc:.2g}) "
                            f"and its ranks are more extreme in the {n_flagged} flagged fits "
                            f"(Mann-Whitney p = {worst['assoc_p']:.2g})")
        elif min(n_clean, n_flagged) < MIN_SIDE or n_clean < MIN_FITS:
            kinds.append("undetermined")
            evidence.append(f"{g.group}: only {n_clean} clean and {n_flagged} flagged fits, "
                            "too few to compare")
        else:
            kinds.append("undetermined")
            evidence.append(f"{g.group} passes on the {n_clean} clean fits (Holm p = {pc:.2g}) "
                            f"but its extreme ranks are not concentrated in the {n_flagged} "
                            f"flagged fits (Mann-Whitney p = {worst['assoc_p']:.2g})")
    if "model or code" in kinds:
        kind = "model or code"
    elif kinds and all(k == "computation" for k in kinds):
        kind = "computation"
    else:
        kind = "undetermined"
    return Cause(kind, "; ".join(evidence), n_clean, n_flagged)


def _warnings(diag: dict, power: float) -> tuple[tuple[str, ...], str]:
    tags, notes = [], []
    if diag["flagged"] > MAX_FLAGGED:
        tags.append("flagged fits")
        notes.append(f"{diag['flagged']:.0%} of fits had sampler warnings (divergent "
                     f"{diag['divergent']:.0%}, low ESS {diag['low_ess']:.0%}); with more "
                     "simulations unreliable fits can bend the ranks")
    if diag.get("degenerate", 0) > 0:
        tags.append("degenerate fits")
        notes.append(f"{diag['degenerate']:.1%} of fits did not move even after their rescue "
                     "(degenerate: stuck at a point); each is ranked among all its draws, so its "
                     "extreme ranks count in the tests above, and the report shows where in the "
                     "prior they come from")
    if diag["failed"] > MAX_FAILED * diag["fits"]:
        tags.append("failed fits")
        notes.append(f"{diag['failed']} of {diag['fits']} fits failed and are not ranked; if "
                     "failures depend on the parameters this can hide a problem")
    if diag.get("median_ranked", math.inf) < MIN_RANKED:
        # Thinning to the ESS keeps ranked draws near-independent, but few of them blur the
        # ranks: a sampler that is a little off in the tails goes unseen (about 25 ranked
        # draws per fit have hidden a one-sided excess of extreme ranks at 1000 simulations).
        tags.append("low resolution")
        notes.append(f"only {diag['median_ranked']:.0f} near-independent draws were ranked "
                     f"per fit (median; thinned to the effective sample size), below "
                     f"{MIN_RANKED}: ranks this coarse can hide a miscalibrated sampler")
    if diag.get("untested"):
        tags.append("untested quantities")
        notes.append(f"not everything the model has was tested, so this verdict rests on "
                     f"fewer tests than the model has: {diag['untested']}")
    if np.isfinite(power) and power < MIN_POWER:
        tags.append("low power")
        notes.append(f"low power: with {diag['ok']} fits a {POWER_SHIFT:g}-sd shift of one "
                     f"scalar would be detected with probability {power:.2f} only; run more "
                     "simulations")
    return tuple(tags), "".join(f" {n[0].upper()}{n[1:]}." for n in notes)


def decide(groups: pd.DataFrame, groups_clean: pd.DataFrame, scalars: pd.DataFrame,
           diag: dict, alpha: float = ALPHA, power: float = math.nan, sampler=None) -> Verdict:
    """Verdict of one (model, design) from its group tests (see the module docstring)."""
    n_ok, n_fits = diag["ok"], diag["fits"]
    names = tuple(groups["group"]) if len(groups) else ()
    if n_ok < MIN_FITS:
        failures = diag.get("failures", "")
        evidence = (f"{n_fits - n_ok} of {n_fits} fits failed ({failures})" if failures
                    else f"only {n_fits} fits stored")
        return Verdict("inconclusive", f"only {n_ok} successful fits of {n_fits} (need at "
                       f"least {MIN_FITS} to test ranks); run more simulations",
                       recommendation=recommendation(diag, sampler, names),
                       cause=Cause("undetermined", evidence, 0, 0))
    tags, notes = _warnings(diag, power)
    failing = groups[groups["fails"]]
    if failing.empty:
        tip = recommendation(diag, sampler, names) if tags else ""
        return Verdict("pass", f"no parameter group deviates from uniform ranks in {n_ok} fits "
                       f"(smallest Holm p = {groups['p_holm'].min():.2g}; power to detect a "
                       f"{POWER_SHIFT:g}-sd shift {power:.2f}).{notes}",
                       (), tip, tags, None, power)
    cause = attribute(failing, groups_clean, scalars, diag, alpha)
    tags, notes = _warnings(diag, math.nan)  # a detected failure has power enough
    return Verdict("fail", f"{_names(failing)}. Cause: {cause.kind} ({cause.evidence}).{notes}",
                   tuple(failing["group"]), recommendation(diag, sampler, names, cause.kind),
                   tags, cause, power)


def decide_clean(groups_clean: pd.DataFrame, diag: dict) -> Verdict:
    """Verdict on fits without sampler warnings only (fewer than MIN_FITS: inconclusive)."""
    if diag["clean"] < MIN_FITS:
        return Verdict("inconclusive", f"only {diag['clean']} fits without warnings")
    failing = groups_clean[groups_clean["fails"]]
    if failing.empty:
        return Verdict("pass", f"{diag['clean']} fits without warnings")
    return Verdict("fail", f"{', '.join(failing['group'])} on {diag['clean']} fits without "
                   "warnings", tuple(failing["group"]))


def combine(verdicts: list[tuple[str, Verdict]]) -> Verdict:
    """Verdict of several verdicts: fail if any fails, else inconclusive if any is, else
    pass (with the union of their warnings)."""
    if not verdicts:
        return Verdict("inconclusive", "no results")
    for status in ("fail", "inconclusive"):
        hit = [label for label, v in verdicts if v.status == status]
        if hit:
            return Verdict(status, f"{status} in {', '.join(hit)}")
    tags = tuple(dict.fromkeys(t for _, v in verdicts for t in v.warnings))
    warned = [label for label, v in verdicts if v.warnings]
    note = f"; with warnings in {', '.join(warned)}" if warned else ""
    return Verdict("pass", f"all {len(verdicts)} model x design combinations pass{note}",
                   warnings=tags)
