"""Command line: ``sbc run``, ``sbc report``, ``sbc plan``, ``sbc fit``, ``sbc check``,
``sbc fit-seed``.

User mistakes (``SbcError``) print one clear message and exit with status 2; nothing in an
existing store is touched before the study file and arguments are validated.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sbc import __version__
from sbc.errors import SbcError, StoreError, StudyError

# Each command imports the modules it runs inside its function (the pipeline, the planner,
# PyMC, Dask and matplotlib behind them): `sbc --help` and a mistyped command load only
# argparse and sbc.errors besides `import sbc`.

EXIT_USAGE = 2
EXIT_VERDICT = 1  # --fail-on: the verdict is at or below the named level
FAIL_ON = ("fail", "inconclusive")


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= minimum, refused with ``what`` it should be."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        if value > 2**53:  # as in study files (sbc.config.MAX_INTEGER): exact when stored
            raise argparse.ArgumentTypeError(f"expected {what} of at most 2**53, got {value}")
        return value
    return parse


_positive = _int_at_least(1, "a positive integer")
_workers = _int_at_least(0, "0 (in-process) or more workers")


def _sims(text: str) -> int | str:
    """--sims: a positive integer, or "auto" (a sequential study)."""
    return "auto" if text.strip().lower() == "auto" else \
        _int_at_least(1, "a positive integer or 'auto'")(text)


def _tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS for a tls:// scheduler (default: Dask's "
                                      "distributed.comm.tls configuration)")
    group.add_argument("--tls-ca-file", metavar="PEM", help="CA certificate the scheduler's "
                       "certificate must be signed by")
    group.add_argument("--tls-cert", metavar="PEM", help="this client's certificate")
    group.add_argument("--tls-key", metavar="PEM", help="this client's private key (when not "
                       "in the certificate file)")


def tls_of(args):
    """The TLS settings given on the command line (sbc.dispatch.TLS)."""
    from sbc.dispatch import TLS

    return TLS(ca_file=args.tls_ca_file, cert=args.tls_cert, key=args.tls_key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sbc", description="Simulation-based calibration of Bayesian models and "
                                "design-size planning for CRISPR screens.")
    parser.add_argument("--version", action="version", version=f"sbc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run or resume a calibration study",
                         description="Run a study file, or resume it when --out already holds "
                                     "part of it (same command).")
    run.add_argument("study", help="study file (TOML), e.g. studies/crispr_seed.toml")
    run.add_argument("--out", help="output directory (default: the study's run.output, else "
                                   "reports/STUDY_NAME)")
    run.add_argument("--workers", type=_workers, help="local Dask workers, one single-threaded "
                     "worker per core by default; 0 runs in this process without Dask")
    run.add_argument("--threads", type=_positive, help="fit in this many threads of this "
                     "process instead of worker processes: each model compiles once and no "
                     "workers start (nutpie and exact; a crashing fit ends the run)")
    run.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. "
                                         "tcp://host:8786 (no local cluster is started)")
    _tls_arguments(run)
    run.add_argument("--sims", type=_sims, help="simulations per model and design "
                     "(overrides the study file; raising it later extends a stored study), "
                     "or 'auto': stop as soon as the verdict is reached (sequential)")
    run.add_argument("--max-sims", type=_positive, help="with --sims auto (or simulations = "
                     "\"auto\"): the most simulations per model and design (default 1000)")
    run.add_argument("--retry-failed", action="store_true", help="refit the stored failed "
                     "replicates (same seeds; e.g. after raising sampler.timeout)")
    run.add_argument("--no-report", action="store_true", help="skip writing the report "
                     "(the Parquet tables are still written; no verdicts are printed)")
    run.add_argument("--fail-on", choices=FAIL_ON, help="exit with status 1 when the overall "
                     "verdict is 'fail' (or, with 'inconclusive', anything but a pass): for CI")

    rep = sub.add_parser("report", help="(re)write DIR/report.html from stored results",
                         description="Recompute every statistic from the store and write "
                                     "report.html, summary.csv and summary.md; never refits.")
    rep.add_argument("dir", help="output directory of `sbc run`")
    rep.add_argument("--fail-on", choices=FAIL_ON, help="exit with status 1 when the overall "
                     "verdict is 'fail' (or, with 'inconclusive', anything but a pass)")

    plan = sub.add_parser("plan", help="plan the design size of a screen",
                          description="Find the cheapest design (cell lines x genes x "
                                      "replicates) that meets a precision or decision target "
                                      "with stated probability; adaptive, resumable.")
    plan.add_argument("plan", help="plan file (TOML), e.g. studies/plan_screen.toml")
    plan.add_argument("--out", help="output directory (default: reports/PLAN_NAME)")
    plan.add_argument("--workers", type=_workers, help="local Dask workers (default: one per "
                      "core; 0 runs in this process)")
    plan.add_argument("--scheduler", help="address of a running Dask scheduler")
    _tls_arguments(plan)

    def data_arguments(p):
        p.add_argument("data", help="a real screen: long logfc CSV, gene-effect matrix (e.g. "
                       "DepMap's CRISPRGeneEffect.csv) or MAGeCK count table (.gz too)")
        p.add_argument("--samples", help="sample sheet of a count table (sample, role, "
                       "cell_line, replicate)")
        p.add_argument("--study", help="the SBC study whose procedure (sampler settings, "
                       "rescue) fits the data: a study file or a study's output directory")
        p.add_argument("--seed", type=_int_at_least(0, "a seed >= 0"), default=0)
        p.add_argument("--strict", action="store_true", help="refuse data whose design lies "
                       "outside the designs the study checked (default: warn)")
        p.add_argument("--out", help="folder for the results")

    fit = sub.add_parser("fit", help="fit a real screen with a study's certified procedure",
                         description="Fit a model to a real screen with exactly the sampler "
                                     "settings and rescue an SBC study validated; writes an "
                                     "ArviZ DataTree (posterior, posterior predictive, log "
                                     "likelihood) as NetCDF.")
    data_arguments(fit)
    fit.add_argument("--model", help="model name or path.py[:function] (default: the study's "
                     "first model, else crispr_screen)")

    chk = sub.add_parser("check", help="check models against a real screen (posterior "
                         "predictive checks, LOO-PIT, LOO comparison)",
                         description="Fit each model with the study's procedure and check it "
                                     "against the data: a verdict (adequate or misfit, naming "
                                     "the statistics, genes and cell lines) per model, their "
                                     "LOO comparison, check.html and check.json.")
    data_arguments(chk)
    chk.add_argument("--model", action="append", help="a model to check (repeat to compare; "
                     "default: crispr_screen and crispr_gene_spread)")
    chk.add_argument("--alpha", type=float, default=0.05, help="false-alarm rate of a misfit "
                     "verdict per model (default 0.05)")
    chk.add_argument("--fail-on-misfit", action="store_true", help="exit with status 1 when "
                     "any model misfits")

    seed = sub.add_parser("fit-seed", help="reproduce the seed notebook's single analysis",
                          description="Simulate the seed's design (10 cell lines x 3 genes x 3 "
                                      "experiments) with its true values and seed 103, fit, "
                                      "and print the posterior summary next to the truth.")
    seed.add_argument("--model", default="crispr_seed", choices=["crispr_seed", "crispr_screen"],
                      help="which form of the model to fit (default: the seed's own)")
    seed.add_argument("--draws", type=_positive, default=2000)
    seed.add_argument("--tune", type=_positive, default=1000)
    seed.add_argument("--chains", type=_positive, default=4)
    return parser


def _output_folder(path: str):
    """The folder results go to, refused before any fit when it cannot be one."""
    from sbc.storefiles import make_dirs

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out} is a file, not a folder; give a folder for the results")
    try:
        make_dirs(out)  # a file in the way (out's parent, ...) is named
    except OSError as exc:
        raise StoreError(f"cannot create the output folder {out}: {exc.strerror}; check the "
                         "path and its permissions") from None
    return out


def _cmd_plan(args) -> int:
    """``sbc plan PLAN [--out DIR] [--workers N] [--scheduler ADDR]``, either kind of plan."""
    from sbc.config import output_dir
    from sbc.execution import check_how
    from sbc.plan.genome_config import GenomePlan
    from sbc.plan.planner import run_plan
    from sbc.plan.results import load_any_plan

    check_how(workers=args.workers, scheduler=args.scheduler, option=True)
    plan = load_any_plan(args.plan)
    out = output_dir(args.out, plan.output, plan.base_dir, plan.name)
    result = run_plan(plan, out, workers=args.workers, scheduler=args.scheduler,
                      tls=tls_of(args))
    genome = isinstance(plan, GenomePlan)
    page = out / ("summary.md" if genome else "report.html")
    r = result.recommended
    if r is None:
        print(f"[sbc plan] no design meets the target{'s' if genome else ''} with the stated "
              f"confidence; see {page}")
    elif genome:
        d = r.design
        print(f"[sbc plan] recommended {d.cell_lines} cell lines x {d.reps} replicates, "
              f"{d.guides} guides per gene, {d.depth} reads per guide ({d.genes} genes): cost "
              f"{r.cost:.4g} {plan.cost.unit}; P(success) = {r.probability:.2f} "
              f"[{r.lower:.2f}, {r.upper:.2f}], n = {r.n}; SBC {r.calibration}")
        for other in result.table.itertuples():
            if other.status == "pass" and other.design != d.label:
                print(f"[sbc plan]   runner-up {other.design}: cost {other.cost:.4g}, "
                      f"P(success) = {other.p_success:.2f} [{other.p_lower:.2f}, "
                      f"{other.p_upper:.2f}]")
    else:
        print(f"[sbc plan] recommended {r.design.label} (cell lines x genes x replicates), "
              f"cost {r.cost:g} {plan.cost.unit}: P(target met) = {r.probability:.2f} "
              f"[{r.lower:.2f}, {r.upper:.2f}], n = {r.n}; SBC {r.calibration}")
    f = result.fits
    print(f"[sbc plan] {'screens simulated' if genome else 'fits used'} {f['used']} "
          f"({f['new']} new) vs {f['full_grid']} for the full grid ({f['saved_share']:.0%} "
          f"saved); {result.seconds:.0f} s; {'summary' if genome else 'report'}: {page}")
    return 0


def _cmd_fit(args) -> int:
    from sbc.datafit import fit_data

    out = _output_folder(args.out or "reports/fit")
    result = fit_data(args.data, args.model, study=args.study, samples=args.samples,
                      seed=args.seed, strict=args.strict)
    print(result)
    path = out / f"{result.model}.nc"
    result.datatree.to_netcdf(path, engine="h5netcdf")
    print(f"wrote {path} (ArviZ DataTree: posterior, posterior_predictive, log_likelihood, "
          "observed_data)")
    return 0


def _cmd_check(args) -> int:
    from sbc.model_check import check

    if not 0 < args.alpha < 1:
        raise StudyError(f"--alpha must lie strictly between 0 and 1, got {args.alpha}")
    models = args.model or ["crispr_screen", "crispr_gene_spread"]
    out = _output_folder(args.out or "reports/check")
    result = check(args.data, models, study=args.study, samples=args.samples, seed=args.seed,
                   alpha=args.alpha, out=out, strict=args.strict)
    print(result)
    misfit = any(c.verdict == "misfit" for c in result.checks)
    return EXIT_VERDICT if args.fail_on_misfit and misfit else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "plan":
            return _cmd_plan(args)
        if args.command == "fit":
            return _cmd_fit(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "fit-seed":
            from sbc.notebook import fit_seed
            print(fit_seed(model=args.model, draws=args.draws, tune=args.tune, chains=args.chains))
            return 0
    except SbcError as exc:
        print(f"sbc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\nsbc {args.command}: interrupted; finished replicates are stored. Run the same "
              "command again to resume.", file=sys.stderr)
        return 130
    return 1


def _cmd_run(args) -> int:
    from sbc.config import output_dir
    from sbc.execution import check_how
    from sbc.results import run
    from sbc.study import load_study

    # --workers, --threads and --scheduler each choose where fits run: one at most
    check_how(workers=args.workers, threads=args.threads, scheduler=args.scheduler,
              option=True)
    study = load_study(args.study, sims=args.sims, max_sims=args.max_sims)
    out = output_dir(args.out, study.output, study.base_dir, study.name)
    if args.fail_on and args.no_report:
        raise StudyError("--fail-on needs the verdicts, which --no-report skips; drop one of "
                         "the two (or run `sbc report DIR --fail-on ...` afterwards)")
    shown = {}

    def show(cal) -> None:  # the verdicts as soon as they are known; the report follows
        shown["status"] = _print_verdicts(cal, args.fail_on)
        _print_stops(cal)
        if not args.no_report:
            print("[sbc] writing the report ...", flush=True)

    results = run(study, out, workers=args.workers, scheduler=args.scheduler,
                  report=not args.no_report, retry_failed=args.retry_failed, tls=tls_of(args),
                  threads=args.threads, on_verdict=show)
    summary = results.last_run
    if "status" in shown:
        status = shown["status"]
    else:  # nothing to judge (no successful fit), or no report asked for
        status = _print_verdicts(summary.calibration, args.fail_on)
        _print_stops(summary.calibration)
    where = (f"{summary.seconds:.1f} s; results in {out}"
             + (f"; report: {out / 'report.html'}" if not args.no_report else ""))
    if study.sequential is not None:  # decided cells are not part of this run at all
        cells = len(study.models) * len(study.designs)
        decided = cells - summary.total // max(1, study.simulations)
        if decided == cells and not summary.new:
            print(f"[sbc] nothing to fit: the stored study had already reached its verdict "
                  f"for all {cells} model x design pair(s), with {summary.stored} replicates "
                  f"stored; {where}")
        else:
            print(f"[sbc] {summary.new} new replicates ({summary.failed} failed fits kept as "
                  f"data), {summary.already_done} already stored of the at most "
                  f"{summary.total} that the {cells - decided} open model x design pair(s) "
                  "may need"
                  + (f" ({decided} of {cells} had already reached their verdict)"
                     if decided else "") + f", {where}")
    else:
        print(f"[sbc] {summary.new} new replicates ({summary.failed} failed fits kept as "
              f"data), {summary.already_done} of this run's {summary.total} already stored, "
              f"{where}")
    if study.sequential is None and summary.stored > summary.total:
        print(f"[sbc] the store holds {summary.stored} replicates, more than the "
              f"{summary.total} this run asks for ({study.simulations} simulations per model "
              f"and design): none of them is dropped, and the "
              + ("tables, verdicts and report cover" if not args.no_report else "tables cover")
              + f" all {summary.stored}")
    if summary.lost_batches:
        print(f"[sbc] {summary.lost_batches} batches could not run; run the same command to "
              "resume them", file=sys.stderr)
        return 1
    if summary.new and summary.failed == summary.new:
        print(f"[sbc] error: all {summary.new} fits of this run failed, so nothing was "
              "learned; the reasons:\n" + "\n".join(f"[sbc]   {line}"
                                                    for line in summary.failure_lines())
              + "\n[sbc] fix the cause, then `sbc run --retry-failed` refits them with "
              "their own seeds", file=sys.stderr)
        return 1
    return status


def verdict_lines(cal) -> list[str]:
    """Plain-text verdicts for a terminal (a :class:`sbc.calibration.Calibration`): overall, per
    model x design, failing groups and what to try."""
    overall = cal.overall()
    lines = [f"overall: {overall.label} ({overall.reason}); {cal.family_text()}"]
    for (model, design), v in cal.verdicts.items():
        lines.append(f"  {model} {design}: {v.label}")
        if v.status == "fail":
            lines.append(f"    failing: {', '.join(v.failing)}")
            lines.append(f"    {v.reason}")
        elif v.warnings or v.status == "inconclusive":
            lines.append(f"    {v.reason}")
        if v.recommendation and not v.clean_pass:
            lines.append(f"    try: {v.recommendation}")
    return lines


def _print_verdicts(cal, fail_on: str | None) -> int:
    """Print the verdicts (overall, per model x design, failing groups) and return the exit
    status that ``--fail-on`` asks for."""
    if cal is None:
        if fail_on:
            print("[sbc] no successful fits stored: no verdict", file=sys.stderr)
            return EXIT_VERDICT
        return 0

    for line in verdict_lines(cal):
        print(f"[sbc] {line}")
    status = cal.overall().status
    if fail_on == "fail" and status == "fail":
        return EXIT_VERDICT
    if fail_on == "inconclusive" and status != "pass":
        return EXIT_VERDICT
    return 0


def _print_stops(cal) -> None:
    """Where each model x design of a sequential study stopped, and what that saved."""
    if cal is None or not cal.sequential:
        return
    why = {"fail": "an e-value crossed", "look": "the pass point", "limit": "max_simulations"}
    for (model, design), o in cal.sequential.items():
        if o.stop_rep is None:
            print(f"[sbc] {model} {design}: not stopped yet ({o.fits} fits counted); run the "
                  "same command to go on")
            continue
        print(f"[sbc] {model} {design}: stopped at replicate {o.stop_rep} ({why[o.status]}), "
              f"{o.fits} fits counted, {o.beyond} stored beyond the stop; "
              f"{o.saved} of {o.settings.max_simulations} replicates not fitted")


def _cmd_report(args) -> int:
    from sbc.results import Results

    results = Results(args.dir)
    path = results.write_report()
    print(f"[sbc] report written: {path}")
    status = _print_verdicts(results.calibration, args.fail_on)
    _print_stops(results.calibration)
    return status


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
