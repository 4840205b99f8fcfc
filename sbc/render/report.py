"""The sections of the calibration report (report.html): statistics from
:mod:`sbc.calibration` in, HTML out.  Adding a section is adding a function here and a call
in :func:`summary_body`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sbc.render.html import badge, esc, figure_html, img_html, table_html, verdict_badge

WORST_LISTED = 10  # individual elements listed / plotted per model x design


def _design_rows(label: str) -> int:
    try:
        return int(np.prod([int(x) for x in str(label).split("x")]))
    except ValueError:
        return 0


def _study_header(manifest: dict) -> str:
    study = manifest["study"]
    parts = [f"<h1>SBC report: {esc(study['name'])}</h1>"]
    if study.get("description"):
        parts.append(f"<p>{esc(study['description'])}</p>")
    sampler = study.get("sampler", {})
    parts.append(
        f"<p class='small'>Models: {esc(', '.join(study['models']))}; designs (cell lines x "
        f"genes x replicates): {esc(', '.join(study['designs']))}; seed {esc(study['seed'])}; "
        f"sampler {esc(sampler.get('name', '?'))} (chains {esc(sampler.get('chains', '?'))}, "
        f"tune {esc(sampler.get('tune', '?'))}, draws {esc(sampler.get('draws', '?'))}, "
        f"target_accept {esc(sampler.get('target_accept', '?'))}); thin {esc(study.get('thin'))}.</p>")
    sim = study.get("simulate_model")
    if sim and any(m != sim for m in study["models"]):
        parts.append(
            f"<p class='warn'>Data are simulated from model {esc(sim)} but fitted with "
            f"{esc(', '.join(m for m in study['models'] if m != sim))}. A fitted model that "
            "differs from the simulator is expected to fail SBC wherever the two disagree.</p>")
    return "".join(parts)


def empty_body(manifest: dict, reps: pd.DataFrame) -> str:
    """Body of a report with no successful fit: what is stored and why nothing is judged."""
    body = _study_header(manifest)
    body += ("<div class='verdict inconclusive'>" + badge("inconclusive") +
             " No successful fits are stored, so nothing can be judged.</div>")
    if len(reps):
        errors = reps.loc[reps["status"] != "ok", ["model", "design", "rep", "error"]].head(20)
        body += "<h2>Failed fits</h2>" + table_html(errors)
    return body


def _verdict_box(v, title: str = "") -> str:
    tip = (f"<br><b>Recommendation:</b> {esc(v.recommendation)}." if v.recommendation else "")
    head = f"<b>{esc(title)}</b> " if title else ""
    cls = "warned" if v.status == "pass" and v.warnings else v.status
    return (f"<div class='verdict {esc(cls)}'>{head}{verdict_badge(v)} "
            f"{esc(v.reason)}{tip}</div>")


def _summary_section(manifest: dict, summary) -> str:
    from sbc.calibration import MIN_FITS, combine

    v = summary.verdicts
    overall = summary.overall()
    models = list(dict.fromkeys(m for m, _ in v))
    rows = []
    for (m, d), x in v.items():
        diag = summary.diagnostics.query("model == @m and design == @d").iloc[0]
        clean = summary.verdicts_clean[(m, d)]
        changed = "no" if clean.status == x.status else "yes"
        rows.append({"model": m, "design": d, "verdict": verdict_badge(x),
                     "cause": x.cause.kind if x.cause else "",
                     "reason": x.reason, "fits ok / total": f"{diag['ok']} / {diag['fits']}",
                     "clean fits": f"{diag['clean']} ({1 - diag['flagged']:.0%})",
                     "median ranked draws": diag["median_ranked"],
                     "without flagged fits": f"{badge(clean.status)} {esc(clean.reason)}",
                     "changes": changed})
    per_model = "".join(_verdict_box(combine([(f"{d}", x) for (mm, d), x in v.items() if mm == m]),
                                     f"Model {m}:") for m in models) if len(models) > 1 else ""
    n_tests = len(summary.groups)
    method = (
        f"<p class='small'>Method: the rank of each simulated truth among the thinned posterior "
        f"draws, as a fractional rank with each fit's own number of ranked draws, is tested for "
        f"uniformity with the ECDF gamma test (Säilynoja et al. 2022, {summary.n_sim} null "
        f"simulations). Exchangeable elements of a vector parameter (e.g. all alpha_g[i]) form "
        f"one group whose p-value is Bonferroni over its elements. The {n_tests} group tests of "
        f"this report (every model, design, parameter group and log-likelihood quantity) are "
        f"corrected for multiplicity: {esc(summary.family_text())}. A verdict needs at least "
        f"{MIN_FITS} successful fits; 'pass, low power' means a shift of one scalar by half a "
        f"posterior sd would be detected with probability below 0.8; 'pass, with warnings' "
        f"means more than 10 % of fits were flagged by the sampler or more than 5 % failed. "
        f"A 'fail' names its cause: model or code (the failure persists in clean fits or no "
        f"fit was flagged), computation (clean fits pass and the flagged fits carry the "
        f"extreme ranks) or undetermined. Failed "
        f"fits are counted, not ranked. 'Without flagged fits' recomputes the tests on fits "
        f"without divergences, low ESS or R-hat &gt; 1.01; excluding fits can itself bias SBC "
        f"(the excluded fits are not a random subset), so read it as a hint only.</p>")
    return ("<h2>Summary</h2>" + _verdict_box(overall, "Overall:") + per_model
            + table_html(pd.DataFrame(rows), html_columns=("verdict", "without flagged fits"))
            + method)


def _elements(block: pd.DataFrame, group: str) -> pd.DataFrame:
    return block[block["group"] == group]


def _panel(params: pd.DataFrame, title: str, failing: bool):
    """A plots.Panel for the rows of one scalar or group of one (model, design)."""
    from sbc.plots import Panel

    us = [rows["u"].to_numpy(float) for _, rows in params.groupby("name", sort=True)]
    prior_sd = params.groupby("name")["truth"].transform(lambda t: t.std(ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (params["mean"] - params["truth"]) / params["sd"]
        contraction = 1 - params["sd"] ** 2 / prior_sd ** 2
    return Panel(title=title, failing=failing, u=us, truth=params["truth"].to_numpy(float),
                 mean=params["mean"].to_numpy(float), lo=params["q0.05"].to_numpy(float),
                 hi=params["q0.95"].to_numpy(float), contraction=contraction.to_numpy(float),
                 z=z.to_numpy(float), flagged=params["flagged"].to_numpy(bool))


def _coverage_rows(groups: pd.DataFrame, scalars: pd.DataFrame):
    from sbc.plots import CoverageRow
    from sbc.calibration import LEVELS

    tags = [f"cov{round(level * 100)}" for level in LEVELS]
    rows = []
    for g in groups.itertuples():
        s = scalars[scalars["group"] == g.group]
        cov = s[tags].to_numpy(float)
        one = len(s) == 1
        lower = s[[f"{t}_lo" for t in tags]].to_numpy(float)[0] if one else None
        upper = s[[f"{t}_hi" for t in tags]].to_numpy(float)[0] if one else None
        label = g.group if one else f"{g.group} [{len(s)}]"
        rows.append(CoverageRow(label, int(s["n_used"].median()), cov, lower, upper, bool(g.fails)))
    return rows


def _group_table(groups: pd.DataFrame) -> str:
    from sbc.calibration import SHAPE_TEXT

    frame = pd.DataFrame({
        "parameter / group": groups["group"], "kind": groups["kind"],
        "elements": groups["elements"], "p (pooled)": groups["p_pooled"],
        "Holm p": groups["p_holm"],
        "result": [badge("fail" if f else "pass") for f in groups["fails"]],
        "worst element": groups["worst"], "worst p": groups["worst_p"],
        "shape": [SHAPE_TEXT.get(s, s) if f else "" for s, f in
                  zip(groups["worst_shape"], groups["fails"])],
        "cov 50%": groups["cov50"], "cov 80%": groups["cov80"], "cov 90%": groups["cov90"],
        "cov 95%": groups["cov95"],
        "robust sd(z)": groups["z_sd"], "contraction": groups["contraction"], "RMSE": groups["rmse"]})
    return table_html(frame, html_columns=("result",))


SCALAR_COLUMNS = {"name": "name", "n_used": "n", "p_value": "p", "shape": "shape (p<0.05)",
                  "rank_mean": "mean u", "rank_var": "var u", "cov50": "cov 50%",
                  "cov80": "cov 80%", "cov90": "cov 90%", "cov95": "cov 95%", "bias": "bias",
                  "rmse": "RMSE", "z_median": "median z", "z_sd": "robust sd(z)",
                  "contraction_median": "contraction", "p_clean": "p clean",
                  "n_clean": "n clean"}


def _computation_section(groups: pd.DataFrame, scalars: pd.DataFrame, verdict, clean_verdict,
                         diag) -> str:
    failing = groups[groups["fails"]]
    if failing.empty:
        return ""
    worst = scalars.set_index("name").loc[failing["worst"]].reset_index()
    frame = pd.DataFrame({
        "element": worst["name"], "p all fits": worst["p_value"],
        "n flagged": worst["n_flagged"], "p flagged": worst["p_flagged"],
        "n clean": worst["n_clean"], "p clean": worst["p_clean"],
        "extremeness flagged": worst["extreme_flagged"],
        "extremeness clean": worst["extreme_clean"],
        "Mann-Whitney p": worst["assoc_p"], "correlation": worst["assoc_r"]})
    same = "does not change" if clean_verdict.status == verdict.status else "changes"
    cause = (f"<p><b>Cause: {esc(verdict.cause.kind)}.</b> {esc(verdict.cause.evidence)}.</p>"
             if verdict.cause else "")
    return (
        "<h4>Model bug or computation?</h4>"
        "<p class='small'>For the worst element of each failing group: uniformity among fits "
        "with sampler warnings (flagged) and without (clean), and whether extreme ranks "
        "(|2u - 1|, 1 = truth outside all draws) are more common in flagged fits (one-sided "
        "Mann-Whitney test; point-biserial correlation of extremeness with the flag).</p>"
        + table_html(frame) + cause
        + f"<p>Excluding the {diag['ok'] - diag['clean']} flagged fits {same} the verdict "
          f"({badge(clean_verdict.status)} {esc(clean_verdict.reason)}). Excluding fits can "
          "itself bias SBC, because whether a fit is flagged depends on the simulated "
          "parameters.</p>")


def _design_section(model: str, design: str, summary, params: pd.DataFrame) -> str:
    from sbc import plots

    sel = "model == @model and design == @design"
    groups = summary.groups.query(sel)
    scalars = summary.scalars.query(sel)
    block = params.query(sel)
    diag = summary.diagnostics.query(sel).iloc[0]
    verdict = summary.verdicts[(model, design)]
    clean_verdict = summary.verdicts_clean[(model, design)]
    out = [f"<h3>{esc(model)} &middot; design {esc(design)}</h3>", _verdict_box(verdict)]
    out.append("<h4>Parameter groups</h4>" + _group_table(groups))
    worst = scalars.sort_values("p_value").head(WORST_LISTED)
    out.append("<h4>Worst individual elements</h4>" + table_html(
        worst[list(SCALAR_COLUMNS)].rename(columns=SCALAR_COLUMNS)))
    out.append(_computation_section(groups, scalars, verdict, clean_verdict, diag))
    diag_frame = pd.DataFrame([{
        "fits": diag["fits"], "failed": diag["failed"], "ok": diag["ok"],
        "divergent": f"{diag['divergent']:.0%}", "max treedepth hit": f"{diag['treedepth']:.0%}",
        "R-hat > 1.01": f"{diag['rhat']:.0%}", "low ESS": f"{diag['low_ess']:.0%}",
        "rescued (refitted)": f"{diag.get('rescued', 0.0):.0%}",
        "any warning (after rescue)": f"{diag['flagged']:.0%}",
        "failed fits by reason": diag.get("failures", "") or "none",
        "median ranked draws": diag["median_ranked"],
        "median seconds / fit": diag["median_seconds"]}])
    out.append("<h4>Sampler diagnostics</h4>" + table_html(diag_frame))
    panels = [_panel(_elements(block, g.group), g.group if g.elements == 1 else
                     f"{g.group} [{g.elements}]", bool(g.fails)) for g in groups.itertuples()]
    out.append(figure_html(plots.ecdf_difference_grid(panels), "ECDF difference plots",
                           "ECDF difference of fractional ranks with simultaneous 95% bands "
                           "(grey) for one element; groups: thin line per element, black = "
                           "pooled (display only). Red title: the group fails."))
    out.append(figure_html(plots.rank_histogram_grid(panels), "rank histograms",
                           "Rank histograms (groups: mean over elements); grey: 95% range of "
                           "a bin for one element under uniformity. U shape: posterior too "
                           "narrow; hump: too wide; slope: biased."))
    out.append(figure_html(plots.coverage_plot(_coverage_rows(groups, scalars)), "coverage",
                           "Coverage of central posterior intervals minus nominal, with Wilson "
                           "95% bars (scalars) or one dot per element (groups, [k] = "
                           "elements); grey: range expected under calibration."))
    out.append(figure_html(plots.zscore_contraction_grid(panels), "z-score vs contraction",
                           "Posterior z-score against posterior contraction, one point per "
                           "fit and element (at most 600 shown)."))
    out.append(figure_html(plots.truth_estimate_grid(panels), "truth vs estimate",
                           "Posterior mean and 90% interval against the truth."))
    worst_multi = scalars[scalars["group"].map(groups.set_index("group")["elements"]) > 1]
    worst_multi = worst_multi.sort_values("p_value").head(WORST_LISTED)
    if len(worst_multi):
        failing = set(groups.loc[groups["fails"], "group"])
        el_panels = [_panel(block[block["name"] == r.name], f"{r.name} (p={r.p_value:.2g})",
                            r.group in failing) for r in worst_multi.itertuples()]
        out.append("<details><summary>ECDF of the worst individual elements of vector "
                   "parameters</summary>" + img_html(plots.ecdf_difference_grid(el_panels),
                                                     "worst elements ECDF") + "</details>")
    out.append(f"<details><summary>All {len(scalars)} scalars of {esc(model)} {esc(design)}"
               "</summary>" + table_html(scalars[list(SCALAR_COLUMNS)].rename(
                   columns=SCALAR_COLUMNS)) + "</details>")
    return "".join(out)


def _trend_section(model: str, summary) -> str:
    from sbc import plots

    groups = summary.groups[summary.groups["model"] == model]
    designs = list(dict.fromkeys(groups["design"]))
    if len(designs) < 2:
        return ""
    names = list(dict.fromkeys(groups["group"]))
    pivot = {col: groups.pivot(index="group", columns="design", values=col)
             .reindex(index=names, columns=designs) for col in
             ("contraction", "rmse", "cov90", "p_holm")}
    table = pivot["contraction"].round(3).astype(str) + " / " + \
        pivot["rmse"].map(lambda x: f"{x:.3g}") + " / " + pivot["p_holm"].map(lambda x: f"{x:.2g}")
    table = table.reset_index().rename(columns={"group": "group (contraction / RMSE / Holm p)"})
    img = plots.design_trend(
        names, designs, [_design_rows(d) for d in designs],
        {"median posterior contraction": pivot["contraction"].to_numpy(),
         "RMSE of posterior mean": pivot["rmse"].to_numpy(),
         "90% interval coverage": pivot["cov90"].to_numpy()},
        set(groups.loc[groups["fails"], "group"]))
    return ("<h3>How calibration and recovery change with design size</h3>" + table_html(table)
            + figure_html(img, "design trend", "Per group (mean over elements) against the "
                          "number of observations; dashed: the group fails somewhere."))


def summary_body(manifest: dict, summary, params: pd.DataFrame) -> str:
    """The report body: header, summary verdicts, then a section per model and design.

    params: the parameters table with fractional ranks ``u`` and ``flagged`` columns.
    """
    out = [_study_header(manifest), _summary_section(manifest, summary)]
    for model in dict.fromkeys(m for m, _ in summary.verdicts):
        out.append(f"<h2>Model {esc(model)}</h2>")
        out.append(_trend_section(model, summary))
        for m, d in summary.verdicts:
            if m == model and not summary.scalars.query("model == @m and design == @d").empty:
                out.append(_design_section(m, d, summary, params))
    return "".join(out)
