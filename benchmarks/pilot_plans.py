"""One genome plan under three priors: the literature's (models/crispr_guides.py), a real pilot
(DepMap's liver gene-effect matrix, sbc/datasets/liver_500_genes.csv.gz) and a pilot
count table (studies/data/pilot/noisy_lab.*, simulated by the guide model for a lab with
noisier guides and replicates and a more skewed library than the literature's).

The plans are studies/plan_genome.toml, plan_genome_liver_pilot.toml and
plan_genome_count_pilot.toml on a small space so that all three finish in about 10 minutes
on 2 cores: 2,000 genes, 4, 8 or 12 cell lines, 2-3 replicates, 4, 6, 8 or 10 guides, 250
or 500 reads per guide (48 designs; up to 10 guides so that a lab with noisy guides, which
only more guides average, can find a design), no candidate genes, two targets: 60 % of the
essential genes called at a Bayesian FDR of 5 %, and 90 % of genes with a 95 % interval
narrower than 0.8, in 80 % of screens; at most 40 screens per design.  Writes
benchmarks/pilot_plans.md and pilot_plans.json, and (re)writes the count pilot
(deterministic) if it is missing.  The narrative of the markdown is computed from the run.

    .venv/bin/python benchmarks/pilot_plans.py [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDIES = ROOT / "studies"
PILOT_DIR = STUDIES / "data" / "pilot"
VARIANTS = (("literature", "plan_genome.toml", "literature prior (models/crispr_guides.py)"),
            ("liver pilot", "plan_genome_liver_pilot.toml",
             "liver gene-effect matrix (DepMap, 24 lines x 500 genes)"),
            ("count pilot", "plan_genome_count_pilot.toml",
             "count table of a noisier lab (simulated, 4 lines x 1,000 genes x 2 reps x 4 guides)"))
SPACE = {"cell_lines": (4, 8, 12), "genes": (2000,), "reps": (2, 3), "guides": (4, 6, 8, 10),
         "depth": (250, 500)}
N_DESIGNS = math.prod(len(v) for v in SPACE.values())
MAX_SCREENS = 40        # screens simulated per design at most
PROBABILITY = 0.8       # the plans' required probability of success
DIMS = (("cell_lines", "cell lines"), ("reps", "replicates"), ("guides", "guides per gene"),
        ("depth", "reads per guide"))
# the noisier lab the count pilot is simulated for
NOISY = {"sigma_guide": 0.4, "sigma_rep": 0.3, "library_sd": 0.8}


def make_count_pilot() -> dict:
    """Write studies/data/pilot/noisy_lab.count.txt.gz, its sample sheet and the truths:
    4 cell lines x 1,000 genes x 2 replicates x 4 guides at 300 reads per guide, the class
    hyperparameters drawn from the literature prior, the guide and replicate sds fixed
    (prior sd 0.01) at NOISY, the library's sd NOISY['library_sd']."""
    from sbc.plan.genome import GenomeSettings, GenomeTarget, ScreenDesign, guide_model
    from sbc.plan.genome_pilot import write_mageck

    priors = dict(guide_model().PRIORS)
    for name in ("sigma_guide", "sigma_rep"):
        priors[name] = ("LogNormal", {"mu": math.log(NOISY[name]), "sigma": 0.01})
    settings = GenomeSettings(seed=4, targets=(GenomeTarget("essential_power"),), max_cells=4,
                              max_guides=4, n_candidates=0, priors=priors,
                              library_sd=NOISY["library_sd"])
    files = write_mageck(ScreenDesign(4, 1000, 2, 4, 300), settings,
                         PILOT_DIR / "noisy_lab.count.txt.gz")
    truth = {"simulated_by": "sbc.plan.genome_pilot.write_mageck(ScreenDesign(4, 1000, 2, 4, "
                             "300), seed 4, rep 0) in benchmarks/pilot_plans.py",
             "hyper": files.truth["hyper"], "library_sd": NOISY["library_sd"],
             "reads_per_guide": 300, "t0_reads_per_guide": settings.t0_depth,
             "essential_genes": int(sum(files.truth["essential"]))}
    (PILOT_DIR / "noisy_lab_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def small(plan):
    """The plan on the benchmark's space, targets and search."""
    from sbc.plan.config import SearchSettings
    from sbc.plan.genome import GenomeTarget

    targets = (GenomeTarget("essential_power", fdr=0.05, at_least=0.6),
               GenomeTarget("width", level=0.95, below=0.8, at_least=0.9))
    return dataclasses.replace(
        plan, dims=dict(SPACE), targets=targets, n_candidates=0, selective_effect=None,
        search=SearchSettings(batch=10, max_simulations=MAX_SCREENS, runners_up=1,
                              alpha=0.01),
        output=None)


def run(workers: int) -> dict:
    from sbc.plan.genome import guide_model
    from sbc.plan.genome_config import load_genome_plan
    from sbc.plan.genome_plan import run_genome_plan

    if not (PILOT_DIR / "noisy_lab.count.txt.gz").is_file():
        make_count_pilot()
    results = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} cores",
               "workers": workers, "load_before": os.getloadavg()[0], "space": SPACE,
               "variants": {}}
    for name, file, what in VARIANTS:
        plan = small(load_genome_plan(STUDIES / file))
        results["probability"] = plan.probability
        out = ROOT / "reports" / "pilot_plans" / name.replace(" ", "_")
        if out.exists():
            import shutil

            shutil.rmtree(out)
        start = time.perf_counter()
        log = io.StringIO()
        res = run_genome_plan(plan, out, workers=workers, stream=log)
        seconds = time.perf_counter() - start
        sys.stderr.write(log.getvalue())
        data = json.loads((out / "plan.json").read_text())
        pilot = data.get("pilot")
        priors = data["plan"]["priors"] or {k: list(v) for k, v in guide_model().PRIORS.items()}
        evaluated = [r for r in data["designs"] if r["simulations"] > 0]
        for r in evaluated:  # the metrics' spread between screens (the prior's share)
            screens = [json.loads(f.read_text()) for f in
                       sorted((out / "screens" / r["design"]).glob("*.json"))]
            for i in range(len(plan.targets)):
                values = [x[f"metric{i}"] for x in screens]
                r[f"metric{i}_between_sd"] = float(statistics.pstdev(values))
        results["variants"][name] = {
            "plan": f"studies/{file}", "what": what, "seconds": seconds,
            "screens": data["fits"]["used"], "designs_evaluated": len(evaluated),
            "recommended": data["recommended"], "evaluated": evaluated,
            "priors": priors, "library_sd": data["plan"]["library_sd"],
            "pilot": pilot, "log": [ln for ln in log.getvalue().splitlines()
                                    if "priors from the pilot" in ln]}
        assert res.out == out
    results["load_after"] = os.getloadavg()[0]
    truth = PILOT_DIR / "noisy_lab_truth.json"
    results["count_pilot_truth"] = json.loads(truth.read_text()) if truth.is_file() else None
    return results


def _prior(p) -> str:
    from sbc.plan.genome_pilot import describe_prior

    return describe_prior((p[0], p[1]))


def _design(r: dict | None) -> str:
    if r is None:
        return "none in the space"
    return (f"`{r['design']}`: {r['cell_lines']} lines x {r['reps']} reps, {r['guides']} guides, "
            f"{r['depth']} reads")


def markdown(res: dict) -> str:
    v = res["variants"]
    names = list(v)
    lines = ["# One genome plan under three priors", "",
             f"`.venv/bin/python benchmarks/pilot_plans.py --workers {res['workers']}` on "
             f"{res['machine']} ({res['when']}; load average {res['load_before']:.2f} before, "
             f"{res['load_after']:.2f} after).  Space: {SPACE['genes'][0]:,} genes, cell lines "
             f"{list(SPACE['cell_lines'])}, replicates {list(SPACE['reps'])}, guides "
             f"{list(SPACE['guides'])}, reads per guide {list(SPACE['depth'])} ({N_DESIGNS} "
             f"designs); targets in {res.get('probability', PROBABILITY) * 100:.0f} % of "
             "screens: 60 % of essential genes called at Bayesian FDR 5 % and 90 % of genes "
             f"with a 95 % interval narrower than 0.8; at most {MAX_SCREENS} screens per "
             "design; cost model of studies/plan_genome.toml (kUSD).", "",
             "| prior | recommended design | cost (kUSD) | P(success) [95 % interval] | "
             "screens | designs evaluated | seconds |", "|---|---|---|---|---|---|---|"]
    for name in names:
        r = v[name]["recommended"]
        p = f"{r['p_success']:.2f} [{r['p_lower']:.2f}, {r['p_upper']:.2f}] (n = {r['simulations']})" \
            if r else "-"
        lines.append(f"| {name}: {v[name]['what']} | {_design(r)} | "
                     f"{r['cost']:.1f} | {p} | " if r else
                     f"| {name}: {v[name]['what']} | none in the space | - | - | ")
        lines[-1] += f"{v[name]['screens']} | {v[name]['designs_evaluated']} | " \
                     f"{v[name]['seconds']:.0f} |"
    truth = res.get("count_pilot_truth") or {}
    lines += ["", "## The priors side by side", "",
              "Design and analysis priors (the same in each plan); posterior mean [5 %, 95 %] of "
              "the pilot in brackets below the prior where the pilot informs it.", "",
              "| hyperparameter | " + " | ".join(names) + " | count pilot simulated with |",
              "|---|" + "---|" * (len(names) + 1)]
    from sbc.plan.genome import HYPER

    for k in HYPER:
        cells = []
        for name in names:
            pilot = v[name]["pilot"]
            cell = _prior(v[name]["priors"][k])
            if pilot and k in pilot["posterior"] and k in pilot["priors"]:
                post = pilot["posterior"][k]
                cell += f" ({post['mean']:.3g} [{post['q05']:.3g}, {post['q95']:.3g}])"
            elif pilot:
                cell += " (plan's)"
            cells.append(cell)
        t = truth.get("hyper", {}).get(k)
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {t:.3g} |" if t is not None else
                     f"| {k} | " + " | ".join(cells) + " | |")
    lines.append("| library sd | " + " | ".join(f"{v[n]['library_sd']:.3g}" for n in names)
                 + f" | {truth.get('library_sd', '')} |")
    for name in names:
        pilot = v[name]["pilot"]
        if pilot:
            lines += ["", f"**{name}** ({pilot['source'].split('/')[-1]}): "
                      + "; ".join(pilot["notes"]) + "."]
            if pilot["format"] == "counts":
                lib = pilot["library"]
                lines[-1] += (f"  The counts show {lib['reads_per_guide']:.0f} reads per guide "
                              f"per sample, {lib['t0_reads_per_guide']:.0f} in the T0 library, "
                              f"a negative binomial dispersion of {lib['nb_dispersion']:.3f} "
                              f"((sigma_rep ln 2)^2) and a library sd of "
                              f"{lib['library_sd']:.2f}.")
    lines += ["", "## How and why the plans differ", "", *interpretation(res)]
    lines += ["", "## Every design evaluated", "",
              "Essential power and width share: each target's metric, mean over the design's "
              "screens (sd between screens in brackets).", ""]
    for name in names:
        lines += [f"### {name}", "", "| design | cost | status | screens | P(success) | "
                  "95 % interval | essential power | width share | realised FDR | SBC |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in v[name]["evaluated"]:
            lines.append(f"| {r['design']} | {r['cost']:.1f} | {r['status']} | "
                         f"{r['simulations']} | {r['p_success']:.2f} | "
                         f"[{r['p_lower']:.2f}, {r['p_upper']:.2f}] | {r['metric0']:.3f} "
                         f"({r['metric0_between_sd']:.3f}) | {r['metric1']:.3f} "
                         f"({r['metric1_between_sd']:.3f}) | {r['fdp_at_0.05']:.3f} | "
                         f"{r['calibration']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _centre(p) -> float:
    """A prior's centre: a Normal's mean, a LogNormal's median, a Beta's mean."""
    family, par = p[0], p[1]
    if family == "LogNormal":
        return math.exp(par["mu"])
    if family == "Beta":
        return par["alpha"] / (par["alpha"] + par["beta"])
    return par.get("mu", math.nan)


def _p(r: dict) -> str:
    return (f"P(success) {r['p_success']:.2f} [{r['p_lower']:.2f}, {r['p_upper']:.2f}] from "
            f"{r['simulations']} screens")


def _words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _best_by(variant: dict, dim: str) -> str:
    """The best P(success) among the evaluated designs at each value of one dimension."""
    values = sorted({r[dim] for r in variant["evaluated"]})
    return ", ".join(f"{x}: {max(r['p_success'] for r in variant['evaluated'] if r[dim] == x):.2f}"
                     for x in values)


def _short(r: dict) -> str:
    """The share of a design's screens meeting each target, the lower first."""
    names = ("essential power", "width")
    shares = [r.get(f"p_target{i}") for i in range(2)]
    if any(x is None for x in shares):
        return ""
    if shares[0] == shares[1]:
        return f"each target met in {shares[0]:.2f} of its screens"
    worse = 0 if shares[0] < shares[1] else 1
    return (f"short on {names[worse]}: met in {shares[worse]:.2f} of its screens, "
            f"{names[1 - worse]} in {shares[1 - worse]:.2f}")


def _limits(r: dict) -> str:
    """Which target a design falls short on (its screens' share meeting each target)."""
    names = ("essential power", "width")
    shares = [r.get(f"p_target{i}") for i in range(2)]
    if any(x is None for x in shares):
        return ""
    if shares[0] == shares[1]:
        return (f"  {shares[0]:.2f} of its screens meet each target (mean essential power "
                f"{r['metric0']:.3f}, width share {r['metric1']:.3f}).")
    worse = 0 if shares[0] < shares[1] else 1
    return (f"  Its limiting target is {names[worse]} ({shares[worse]:.2f} of its screens "
            f"meet it, against {shares[1 - worse]:.2f} for {names[1 - worse]}; mean essential "
            f"power {r['metric0']:.3f}, width share {r['metric1']:.3f}).")


def interpretation(res: dict) -> list[str]:
    """The comparison in words: every number, and every conclusion, from the run."""
    v = res["variants"]
    lit = v["literature"]
    need = res.get("probability", PROBABILITY)
    base = lit["recommended"]

    def ref(k):  # the literature prior's centre
        return _centre(lit["priors"][k])

    def post(variant, k):
        return variant["pilot"]["posterior"][k]["mean"]

    def at(variant, label):
        return next((r for r in variant["evaluated"] if r["design"] == label), None)

    def compare(variant, keys):  # the pilot's estimate against the literature's, in words
        out = []
        for k in keys:
            if k == "library sd":
                mine, theirs = variant["library_sd"], lit["library_sd"]
            else:
                mine, theirs = post(variant, k), ref(k)
            word = "above" if mine > theirs else "below" if mine < theirs else "equal to"
            out.append(f"{k} {mine:.3g} ({word} the literature's {theirs:.3g})")
        return out

    def higher(variant, k):
        if k == "library sd":
            return variant["library_sd"] > lit["library_sd"]
        return post(variant, k) > ref(k)

    def none_passes(label, variant):
        best = max(variant["evaluated"], key=lambda x: (x["p_success"], -x["cost"]))
        return (f"- **{label}**: no design in the space passes (none shown above the required "
                f"{need:g} within {MAX_SCREENS} screens, {variant['designs_evaluated']} of "
                f"{N_DESIGNS} evaluated).  The best is {_design(best)}, {best['cost']:.1f} "
                f"kUSD, {_p(best)}." + _limits(best))

    def cheaper_misses(variant):
        r = variant["recommended"]
        misses = [x for x in variant["evaluated"] if x["cost"] < r["cost"]]
        if not misses:
            return "  It is the cheapest design evaluated."
        misses.sort(key=lambda x: x["cost"])
        return ("  The cheaper designs evaluated under this prior fall short: " + "; ".join(
            f"{x['design']} ({x['cost']:.1f} kUSD, P(success) {x['p_success']:.2f}, "
            f"{x['status']}; {_short(x)}"
            + (f"; not shown above {need:g} within {MAX_SCREENS} screens"
               if x["status"] == "inconclusive" else "") + ")"
            for x in misses) + ".")

    out = ["- **Mechanism** (the model's, whatever the prior): a gene's guide offsets are "
           "shared by every cell line and replicate of the gene, so only more guides average "
           "them; its spread across cell lines (tau) averages only over more cell lines; "
           "replicate noise (sigma_rep) and the samples' counting noise average over every "
           "cell line, replicate and guide, and counting noise also falls with reads, except "
           "the T0 library's, which each guide carries into every sample like its offset.",
           "- **Best P(success)** among the designs evaluated, by guides per gene: "
           + "; ".join(f"{name} ({_best_by(v[name], 'guides')})" for name in v)
           + "; by cell lines: "
           + "; ".join(f"{name} ({_best_by(v[name], 'cell_lines')})" for name in v) + "."]
    if base:
        def least(d):
            lo = min(SPACE[d])
            return "the space's fewest" if base[d] == lo else f"the space's fewest is {lo}"

        out.append(f"- **Literature prior**: {_design(base)}, {base['cost']:.1f} kUSD, "
                   f"{_p(base)}: {base['guides']} guides per gene ({least('guides')}) and "
                   f"{base['cell_lines']} cell lines ({least('cell_lines')})."
                   + cheaper_misses(lit))
    else:
        out.append(none_passes("Literature prior", lit))

    explain = {  # why a dimension grows, given which hyperparameter is higher in the pilot
        "cell_lines": [("tau", "genes vary more across cell lines, and that spread averages "
                               "only over more cell lines")],
        "guides": [("sigma_guide", "guide offsets are noisier, and only more guides average "
                                   "them")],
        "reps": [("sigma_rep", "replicates are noisier, and replicate noise averages over "
                               "replicates, cell lines and guides")],
        "depth": [("library sd", "the library is more skewed, so more guides are thin, and "
                                 "their counting noise in the samples falls with reads")]}
    for label, name, keys in (("Liver pilot", "liver pilot", ("tau", "sigma_essential")),
                              ("Count pilot", "count pilot",
                               ("sigma_guide", "sigma_rep", "library sd", "tau",
                                "sigma_essential"))):
        if name not in v:
            continue
        variant = v[name]
        r = variant["recommended"]
        text = (none_passes(label, variant) if r is None else
                f"- **{label}**: {_design(r)}, {r['cost']:.1f} kUSD, {_p(r)}.")
        text += "  The pilot's estimates: " + "; ".join(compare(variant, keys)) + "."
        if r is not None and base is not None:
            grew = [(d, w) for d, w in DIMS if r[d] > base[d]]
            shrank = [(d, w) for d, w in DIMS if r[d] < base[d]]
            if not grew and not shrank:
                text += (f"  It recommends the literature plan's design "
                         f"({r['cost'] - base['cost']:+.1f} kUSD): the pilot does not change "
                         "the plan.")
            else:
                moves = [f"{w} grow from {base[d]} to {r[d]}" for d, w in grew]
                moves += [f"{w} fall from {base[d]} to {r[d]}" for d, w in shrank]
                text += (f"  Against the literature plan ({base['design']}, "
                         f"{base['cost']:.1f} kUSD) {_words(moves)}, "
                         f"{r['cost'] - base['cost']:+.1f} kUSD.")
                reasons = [f"{why} ({k} above the literature's)" for d, _ in grew for k, why in explain[d]
                           if k in keys and higher(variant, k)]
                if reasons:
                    text += "  Why: " + "; ".join(reasons) + "."
                unexplained = [w for d, w in grew if not any(
                    k in keys and higher(variant, k) for k, _ in explain[d])]
                up = [k for k in keys if k in ("tau", "sigma_essential")
                      and higher(variant, k)]
                if unexplained and up:
                    informed = (variant["pilot"] or {}).get("used", [])
                    direct = [k for d, w in grew if w in unexplained for k, _ in explain[d]]
                    groups = [(g, what) for g, what in (
                        ([k for k in direct if k.replace(" ", "_") in informed],
                         "not above the literature's"),
                        ([k for k in direct if k.replace(" ", "_") not in informed],
                         "the literature's, not informed by it")) if g]
                    text += (f"  More {_words(unexplained)} answer the pilot's higher "
                             f"{_words(up)} (its " + "; ".join(
                                 f"{_words(g)} {'is' if len(g) == 1 else 'are'} {what}"
                                 for g, what in groups) + "): a gene's "
                             "interval and call average its cell-line spread over the cell "
                             "lines, its guide offsets over the guides and its noise over "
                             f"every sample, so more {_words(unexplained)} make up for "
                             "them by shrinking the other terms.")
                elif unexplained:
                    text += (f"  More {_words(unexplained)} answer none of the pilot's "
                             "hyperparameters compared here; they follow from its priors "
                             "taken together.")
                kept = [(w, r[d], k) for d, w in DIMS if r[d] == base[d]
                        and d in ("reps", "depth")
                        for k, _ in explain[d] if k in keys and higher(variant, k)]
                if kept:
                    text += ("  " + _words([f"{w} stay at {x} although {k} is above the "
                                            "literature's" for w, x, k in kept]).capitalize()
                             + (" (replicate and counting noise average over every sample, "
                                "which the added " + _words([w for d, w in grew if d in (
                                    "cell_lines", "guides")]) + " multiply)"
                                if any(d in ("cell_lines", "guides") for d, _ in grew)
                                else "") + ".")
        if "sigma_essential" in keys and post(variant, "sigma_essential") != ref(
                "sigma_essential"):
            wider = higher(variant, "sigma_essential")
            text += (f"  Essential effects spread {'wider' if wider else 'narrower'} than the "
                     f"literature's, so {'more' if wider else 'fewer'} genes sit between the "
                     "classes.")
        if r is not None:
            text += cheaper_misses(variant)
        if variant["pilot"] and variant["pilot"]["format"] != "counts":
            text += ("  tau from a matrix includes the pilot's own estimation noise (an "
                     "upper bound).")
        # one design evaluated under both priors: the metric and its spread between screens
        common = [x for x in variant["evaluated"] if at(lit, x["design"])]
        if common:
            order = [x["design"] for x in (r, base) if x]
            mine = next((at(variant, d) for d in order if at(variant, d) and at(lit, d)),
                        max(common, key=lambda x: min(x["simulations"],
                                                      at(lit, x["design"])["simulations"])))
            same = at(lit, mine["design"])
            lower = mine["metric0"] < same["metric0"]
            steadier = mine["metric0_between_sd"] < same["metric0_between_sd"]
            text += (f"  At {mine['design']} the essential power per screen is "
                     f"{mine['metric0']:.3f} (sd {mine['metric0_between_sd']:.3f} between "
                     f"screens) against {same['metric0']:.3f} (sd "
                     f"{same['metric0_between_sd']:.3f}) under the literature prior: "
                     f"{'lower' if lower else 'higher'} "
                     f"{'but' if lower == steadier else 'and'} "
                     f"{'steadier' if steadier else 'less steady'}")
            narrow = [k for k in variant["pilot"]["used"] if k in lit["priors"]
                      and variant["priors"][k][1].get("sigma", math.inf)
                      < lit["priors"][k][1].get("sigma", math.inf)] if variant["pilot"] else []
            text += (f", as the pilot's priors are narrower than the literature's for "
                     f"{_words(narrow)}." if steadier and narrow else ".")
        if name == "liver pilot":
            pi, pi_lit = post(variant, "pi_essential"), ref("pi_essential")
            if abs(pi - pi_lit) > 0.5 * pi_lit:
                text += (f"  Caveat: pi_essential = {pi:.2f} against the literature's "
                         f"{pi_lit:.2f} is that of a selected 500-gene subset, not the "
                         "genome's (`use = [...]` without pi_essential keeps the "
                         "literature's).")
        if name == "count pilot":
            truth = (res.get("count_pilot_truth") or {}).get("hyper", {})
            posterior = variant["pilot"]["posterior"]
            outside = [f"{k} {truth[k]:.4g} outside [{posterior[k]['q05']:.4g}, "
                       f"{posterior[k]['q95']:.4g}]" for k in truth
                       if not posterior[k]["q05"] <= truth[k] <= posterior[k]["q95"]]
            if truth:
                text += (f"  The pilot's fit against what it was simulated with (last "
                         f"column above): {len(truth) - len(outside)} of {len(truth)} "
                         "truths inside their 90 % posterior intervals"
                         + (f"; {'; '.join(outside)}" if outside else "") + ".")
        out.append(text)
    load = res["load_before"]
    cores = int(res["machine"].split()[0]) if res["machine"].split()[0].isdigit() else None
    out.append(f"- Time: {sum(x['seconds'] for x in v.values()):.0f} s for the three plans "
               f"with {res['workers']} local workers on {res['machine']} (1-minute load "
               f"average {load:.1f} before, {res['load_after']:.1f} after"
               + ("; other jobs filled the cores at the start, so the time is an upper bound"
                  if cores and load >= cores else "") + ").")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write-pilot", action="store_true",
                        help="only (re)write the simulated count pilot")
    parser.add_argument("--render", action="store_true",
                        help="only write pilot_plans.md again from pilot_plans.json")
    args = parser.parse_args(argv)
    if args.write_pilot:
        print(json.dumps(make_count_pilot(), indent=2))
        return 0
    if args.render:
        res = json.loads((HERE / "pilot_plans.json").read_text())
    else:
        res = run(args.workers)
        (HERE / "pilot_plans.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (HERE / "pilot_plans.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
