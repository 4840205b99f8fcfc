"""Which sampler settings and parametrization make crispr_screen fits clean in SBC replicates?

    .venv/bin/python benchmarks/sampler_defaults.py --reps 40 \
        --designs 10x3x3,20x5x3,30x10x2 --candidates default,ta90,c_ta80 --json out.json

A fit is *flagged* (not clean) when it has any divergence, the smallest bulk or tail ESS over
the ranked scalars is below 100 (``sbc.diagnostics.ESS_MIN``), R-hat > 1.01 with several
chains, or any draw hit the maximum tree depth.  "Ranked scalars" are what the study ranks:
the fit model's free variables and small deterministics that the simulator also draws (for
the non-centered Bambi model: Intercept, both sigmas, the offsets and the group effects).

Replicate ``i`` uses ``SeedSequence(103, spawn_key=(i,))`` split into a simulation seed and
a fit seed.  The data of replicate ``i`` are simulated once from the reference model
(``models/crispr_screen.py``, whose prior predictive the centered variant shares) and fitted
by every candidate, so candidates are compared on the same data sets.  The seed model
(``models/crispr_seed.py``) simulates from itself, as in the reference study.

Models:
  nc    models/crispr_screen.py's FORMULA and priors() with Bambi ``noncentered=True``
  c     the same with ``noncentered=False`` (both built from a copy in a temporary directory)
  seed  models/crispr_seed.py (plain PyMC, centered, two hyper-means)
  PATH  any other model file (``model:/tmp/variant.py``), fitted to the reference model's data

A candidate is a name from ``CANDIDATES`` or an ad-hoc ``label=key:value;key:value`` with keys
model, ta (target_accept), tune, draws, chains, adapt (nutpie ``adaptation``: diag,
draw_diag, low_rank, flow), maxdepth, gamma (``mass_matrix_gamma``, low_rank only; "auto":
sbc's rule).  Fits run one after another in this one process (chains of a fit too:
``cores=1``); the sampler seconds are those of the ``nutpie.sample`` call alone, compile
seconds those of ``nutpie.compile_pymc_model``.

``--pipeline`` runs whole replicates of ``models/crispr_screen.py`` instead, as a study does
(``sbc.replicate.run_batch``: rescue, ranks, record), and reports seconds and gradient
evaluations per replicate and per clean replicate against the first candidate
(``benchmarks/draw_rule.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED = 103
DESIGNS = "10x3x3,20x5x3,30x10x2"


@dataclass(frozen=True)
class Candidate:
    model: str = "nc"
    ta: float = 0.8
    tune: int = 1000
    draws: int = 1000
    chains: int = 1
    adapt: str = "diag"
    gamma: float | None = 1e-5  # nutpie's mass_matrix_gamma (low_rank only); None: sbc's auto
    maxdepth: int = 10

    def settings(self):
        """These options as the library's sampler settings, so the benchmark and a study
        reach nutpie through the one mapping, ``sbc.SamplerSettings.nutpie_kwargs`` (which
        resolves gamma "auto" by ``sbc.sampling.low_rank_gamma``, as a study would)."""
        from sbc.sampling import SamplerSettings

        return SamplerSettings(chains=self.chains, tune=self.tune, draws=self.draws,
                               target_accept=self.ta, max_treedepth=self.maxdepth,
                               adaptation=self.adapt, mass_matrix_gamma=self.gamma)

    def nutpie_kwargs(self, n_dim: int) -> dict:
        """nutpie.sample's options on a model of ``n_dim`` unconstrained dimensions."""
        return self.settings().nutpie_kwargs(n_dim)


D = Candidate()
CANDIDATES: dict[str, Candidate] = {
    "default": D,                                              # today's study settings
    "ta90": replace(D, ta=0.9),
    "ta95": replace(D, ta=0.95),
    "c_ta80": replace(D, model="c"),
    "c_ta90": replace(D, model="c", ta=0.9),
    "c_ta95": replace(D, model="c", ta=0.95),
    "lowrank": replace(D, adapt="low_rank"),
    "c_lowrank": replace(D, model="c", adapt="low_rank"),
    "drawdiag": replace(D, adapt="draw_diag"),
    "c_drawdiag": replace(D, model="c", adapt="draw_diag"),
    "ch2": replace(D, chains=2),                               # 2 chains x 1000 draws
    "d2000": replace(D, draws=2000),                           # 1 chain x 2000 draws
    "tune500": replace(D, tune=500),
    "tune2000": replace(D, tune=2000),
    "c_tune2000": replace(D, model="c", tune=2000),
    "c_d2000": replace(D, model="c", draws=2000),
    "c_ta90_d2000": replace(D, model="c", ta=0.9, draws=2000),
    "c_ta95_d2000": replace(D, model="c", ta=0.95, draws=2000),
    "c_lowrank_ta90": replace(D, model="c", adapt="low_rank", ta=0.9),
    "c_lowrank_d2000": replace(D, model="c", adapt="low_rank", draws=2000),
    "c_lowrank_ta90_d2000": replace(D, model="c", adapt="low_rank", ta=0.9, draws=2000),
    "c_lowrank_ta95": replace(D, model="c", adapt="low_rank", ta=0.95),
    "c_lowrank_ta99": replace(D, model="c", adapt="low_rank", ta=0.99),
    "c_lowrank_ta95_d2000": replace(D, model="c", adapt="low_rank", ta=0.95, draws=2000),
    "c_lowrank_ta99_d2000": replace(D, model="c", adapt="low_rank", ta=0.99, draws=2000),
    "c_lowrank_ta95_tune2000": replace(D, model="c", adapt="low_rank", ta=0.95, tune=2000),
    "c_lowrank_ta90_tune500": replace(D, model="c", adapt="low_rank", ta=0.9, tune=500),
    "ta99": replace(D, ta=0.99),
    "lowrank_ta95": replace(D, adapt="low_rank", ta=0.95),
    "lowrank_ta99": replace(D, adapt="low_rank", ta=0.99),
    "lowrank_ta95_tune2000": replace(D, adapt="low_rank", ta=0.95, tune=2000),
    "seed_default": replace(D, model="seed"),
    "seed_lowrank_ta99_d2000": replace(D, model="seed", adapt="low_rank", ta=0.99, draws=2000),
}
_KEYS = {"model": str, "ta": float, "tune": int, "draws": int, "chains": int, "adapt": str,
         "maxdepth": int, "gamma": lambda v: None if v == "auto" else float(v)}


def parse_candidate(text: str) -> tuple[str, Candidate]:
    if text in CANDIDATES:
        return text, CANDIDATES[text]
    label, sep, body = text.partition("=")
    if not sep:
        raise SystemExit(f"unknown candidate {text!r}; known: {', '.join(CANDIDATES)} "
                         "(or label=key:value;key:value)")
    values = {}
    for item in filter(None, body.split(";")):
        key, _, value = item.partition(":")
        if key not in _KEYS:
            raise SystemExit(f"candidate {label}: unknown key {key!r} (keys: {', '.join(_KEYS)})")
        values[key] = _KEYS[key](value)
    return label, replace(D, **values)


def model_refs(tmp: Path) -> dict:
    """nc and c: models/crispr_screen.py's own FORMULA and priors(), built by two functions
    appended here with an explicit ``noncentered`` flag, so the variants stay what their
    names say whichever form the file's ``build`` uses."""
    from sbc.spec import resolve_model

    source = (ROOT / "models" / "crispr_screen.py").read_text()
    if "FORMULA" not in source or "def priors(" not in source:
        raise SystemExit("models/crispr_screen.py no longer defines FORMULA and priors()")
    variants = tmp / "crispr_screen_variants.py"
    variants.write_text(source + "\n\n" + "".join(
        f"def bench_build_{name}(data):\n"
        f"    return bmb.Model(FORMULA, data, priors=priors(), family=\"gaussian\", "
        f"noncentered={flag})\n\n" for name, flag in (("nc", True), ("c", False))))
    return {"nc": resolve_model(f"{variants}:bench_build_nc"),
            "c": resolve_model(f"{variants}:bench_build_c"),
            "seed": resolve_model(str(ROOT / "models" / "crispr_seed.py"))}


class Fitter:
    """One model compiled for one design."""

    def __init__(self, ref, data):
        import nutpie

        from sbc.simulate import Simulator
        from sbc.spec import make_spec

        self.spec = make_spec(ref, data)
        self.simulator = Simulator(self.spec)
        self.ranked = tuple(n for n in self.spec.parameters if n in self.simulator.names)
        start = time.perf_counter()
        self.compiled = nutpie.compile_pymc_model(self.spec.fit_model,
                                                  var_names=list(self.spec.parameters))
        self.compile_seconds = time.perf_counter() - start

    def fit(self, y, seed: int, cand: Candidate) -> dict:
        import nutpie

        from sbc.diagnostics import RHAT_MAX, convergence, stack_scalars
        from sbc.sampling import fit_from_arrow
        from sbc.spec import RESPONSE_DATA_NAME

        model = self.compiled.with_data(
            **{RESPONSE_DATA_NAME: np.ascontiguousarray(y, dtype=float)})
        start = time.perf_counter()
        raw = nutpie.sample(model, seed=int(seed), save_warmup=False, progress_bar=False,
                            return_raw_trace=True, **cand.nutpie_kwargs(self.compiled.n_dim))
        seconds = time.perf_counter() - start
        fit = fit_from_arrow(raw, self.ranked, seconds)
        diag = convergence(stack_scalars(fit.draws, list(self.ranked)))
        ess_min = float(min(diag["ess_bulk"].min(), diag["ess_tail"].min()))
        rhat = float(np.nanmax(diag["rhat"])) if np.isfinite(diag["rhat"]).any() else float("nan")
        n_div = int(fit.diverging.sum())
        flags = {"divergent": n_div > 0, "low_ess": ess_min < 100,
                 "rhat": bool(np.isfinite(rhat) and rhat > RHAT_MAX),
                 "treedepth": fit.treedepth_hits > 0}
        return {"seconds": seconds, "gradient_evals": fit.gradient_evals,
                "n_divergent": n_div, "n_treedepth": fit.treedepth_hits,
                "ess_min": ess_min, "rhat_max": rhat, "step_size": fit.step_size,
                **{f"flag_{k}": v for k, v in flags.items()}, "flagged": any(flags.values())}


def summarize(rows: list[dict], compile_seconds: float) -> dict:
    def share(key):
        return float(np.mean([r[key] for r in rows]))

    ess = np.array([r["ess_min"] for r in rows])
    secs = np.array([r["seconds"] for r in rows])
    return {"n": len(rows), "clean": 1 - share("flagged"), "flagged": share("flagged"),
            "divergent": share("flag_divergent"), "low_ess": share("flag_low_ess"),
            "rhat": share("flag_rhat"), "treedepth": share("flag_treedepth"),
            "ess_min_median": float(np.median(ess)), "ess_min_p90": float(np.quantile(ess, 0.9)),
            "ess_min_p10": float(np.quantile(ess, 0.1)),
            "seconds_median": float(np.median(secs)), "seconds_p90": float(np.quantile(secs, 0.9)),
            "seconds_mean": float(secs.mean()), "compile_seconds": compile_seconds,
            "gradient_evals_median": float(np.median([r["gradient_evals"] for r in rows]))}


def run(reps: int, designs: list[str], candidates: list[tuple[str, Candidate]],
        first_rep: int = 0, log=print) -> dict:
    import logging

    from sbc.design import Design
    from sbc.spec import resolve_model

    logging.getLogger("pymc").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        refs = model_refs(Path(tmp))
        for label in designs:
            design = Design.from_label(label)
            data = design.frame()
            needed = {c.model for _, c in candidates} | {"nc"}
            fitters = {}
            for m in sorted(needed, key=lambda m: (["nc", "c", "seed"] + [m]).index(m)):
                ref = refs[m] if m in refs else resolve_model(str(Path(m).resolve()))
                fitters[m] = Fitter(ref, data)
                log(f"[{label}] compiled {m} in {fitters[m].compile_seconds:.1f} s")
            rows: dict[str, list] = {name: [] for name, _ in candidates}
            start = time.perf_counter()
            for i in range(first_rep, first_rep + reps):
                sim_seed, fit_seed = np.random.SeedSequence(SEED, spawn_key=(i,)).spawn(2)
                fit_int = int(fit_seed.generate_state(1)[0])
                y_ref = fitters["nc"].simulator.draw(sim_seed)[1]
                y_seed = fitters["seed"].simulator.draw(sim_seed)[1] if "seed" in fitters else None
                for name, cand in candidates:  # interleaved, so load drift hits all alike
                    y = y_seed if cand.model == "seed" else y_ref
                    rows[name].append({"rep": i, **fitters[cand.model].fit(y, fit_int, cand)})
            log(f"[{label}] {reps} replicates x {len(candidates)} candidates in "
                f"{time.perf_counter() - start:.0f} s")
            for name, cand in candidates:
                summary = summarize(rows[name], fitters[cand.model].compile_seconds)
                results.setdefault(name, {"candidate": asdict(cand), "designs": {}})
                results[name]["designs"][label] = {
                    "summary": summary, "fits": rows[name],
                    "nutpie_kwargs": cand.nutpie_kwargs(fitters[cand.model].compiled.n_dim)}
    return results


def settings_of(cand: Candidate):
    """The study's SamplerSettings a candidate stands for (its model key is ignored: the
    pipeline fits models/crispr_screen.py's own build, rescued in its RESCUE forms)."""
    from sbc.sampling import SamplerSettings

    return SamplerSettings(chains=cand.chains, tune=cand.tune, draws=cand.draws,
                           target_accept=cand.ta, max_treedepth=cand.maxdepth,
                           adaptation=cand.adapt, mass_matrix_gamma=cand.gamma)


def run_pipeline(reps: int, designs: list[str], candidates: list[tuple[str, Candidate]],
                 first_rep: int = 0, log=print) -> dict:
    """Whole replicates as a study runs them (``sbc.replicate.run_batch``: simulate, fit,
    rescue, rank), study seed ``SEED``, so every candidate fits the same data sets.  Every
    compile (the RESCUE forms too) is done before the clock starts; candidates run
    interleaved replicate by replicate."""
    import logging

    import pandas as pd

    from sbc.calibration import flagged_mask
    from sbc.design import Design
    from sbc.replicate import BatchTask, prepare, run_batch
    from sbc.spec import resolve_model

    logging.getLogger("pymc").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    model = resolve_model(str(ROOT / "models" / "crispr_screen.py"))
    results: dict = {}
    for label in designs:
        tasks = {name: BatchTask(model, None, Design.from_label(label), settings_of(cand),
                                 "auto", SEED, ()) for name, cand in candidates}
        for task in tasks.values():
            for _, get in prepare(task).rescue_forms():
                get()
        rows: dict[str, list] = {name: [] for name in tasks}
        for i in range(first_rep, first_rep + reps):
            for name, task in tasks.items():
                rows[name] += run_batch(replace(task, reps=(i,)))
        log(f"[{label}] {reps} replicates x {len(tasks)} candidates")
        for name, cand in candidates:
            reps_df = pd.DataFrame(rows[name])
            ok = reps_df["status"] == "ok"
            clean = ok & ~flagged_mask(reps_df)
            attempts = [r.get("attempts") or [] for r in rows[name]]
            summary = {
                "n": len(reps_df), "failed": int((~ok).sum()), "clean": float(clean.mean()),
                "rescued": float(reps_df["rescued"].fillna(False).astype(bool).mean()),
                "seconds_per_rep": float(reps_df["wall_seconds"].mean()),
                "seconds_per_clean": float(reps_df["wall_seconds"].sum() / max(clean.sum(), 1)),
                "gradients_per_rep": float(reps_df["gradient_evals"].mean()),
                "gradients_per_clean": float(reps_df["gradient_evals"].sum()
                                             / max(clean.sum(), 1)),
                "ess_bulk_min_median": float(reps_df.loc[ok, "ess_bulk_min"].median()),
                "ess_min_median": float(np.median(np.minimum(
                    reps_df.loc[ok, "ess_bulk_min"], reps_df.loc[ok, "ess_tail_min"]))),
                "n_draws_mean": float(reps_df.loc[ok, "n_draws"].mean()),
                "n_ranked_median": float(reps_df.loc[ok, "n_ranked"].median()),
                "draws_taken_mean": float(np.mean([sum(a["draws"] for a in att) if att
                                                   else cand.draws * cand.chains
                                                   for att in attempts])),
            }
            results.setdefault(name, {"candidate": asdict(cand),
                                      "settings": asdict(settings_of(cand)), "designs": {}})
            results[name]["designs"][label] = {
                "summary": summary,
                "fits": reps_df[["rep", "status", "wall_seconds", "gradient_evals", "n_draws",
                                 "n_ranked", "ess_bulk_min", "ess_tail_min", "rescued",
                                 *[c for c in ("flag_divergent", "flag_low_ess")
                                   if c in reps_df]]].to_dict("records")}
    return results


def pipeline_markdown(results: dict, designs: list[str], baseline: str) -> str:
    head = ("| candidate | tune | draws | target_accept | design | n | clean | rescued | "
            "s/rep | s/clean rep | vs " + baseline + " | min bulk ESS median | "
            "min ESS median | draws taken | ranked median | gradients/rep | "
            "gradients/clean rep | vs " + baseline + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, res in results.items():
        c = res["candidate"]
        for label in designs:
            s = res["designs"][label]["summary"]
            b = results[baseline]["designs"][label]["summary"]
            lines.append(
                f"| {name} | {c['tune']} | {c['draws']} | {c['ta']} | {label} | {s['n']} | "
                f"{s['clean']:.0%} | {s['rescued']:.0%} | {s['seconds_per_rep']:.2f} | "
                f"{s['seconds_per_clean']:.2f} | "
                f"{s['seconds_per_clean'] / b['seconds_per_clean']:.2f} | "
                f"{s['ess_bulk_min_median']:.0f} | {s['ess_min_median']:.0f} | "
                f"{s['draws_taken_mean']:.0f} | {s['n_ranked_median']:.0f} | "
                f"{s['gradients_per_rep']:.0f} | {s['gradients_per_clean']:.0f} | "
                f"{s['gradients_per_clean'] / b['gradients_per_clean']:.2f} |")
    return "\n".join(lines)


def markdown(results: dict, designs: list[str]) -> str:
    head = ("| candidate | model | nutpie options | design | n | clean | div | ESS<100 | "
            "treedepth | R-hat | min ESS median | min ESS p90 | s/fit median | gradients median | "
            "compile s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, res in results.items():
        c = res["candidate"]
        for label in designs:
            s = res["designs"][label]["summary"]
            # the options of this design's fits (gamma "auto" resolves by its dimension)
            opts = ", ".join(f"{k}={v}" for k, v in res["designs"][label]["nutpie_kwargs"].items()
                             if k != "cores")
            lines.append(
                f"| {name} | {c['model']} | {opts} | {label} | {s['n']} | {s['clean']:.0%} | "
                f"{s['divergent']:.0%} | {s['low_ess']:.0%} | {s['treedepth']:.0%} | "
                f"{s['rhat']:.0%} | {s['ess_min_median']:.0f} | {s['ess_min_p90']:.0f} | "
                f"{s['seconds_median']:.3f} | {s['gradient_evals_median']:.0f} | "
                f"{s['compile_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=40, help="replicates per design")
    parser.add_argument("--first-rep", type=int, default=0, help="first replicate number")
    parser.add_argument("--designs", default=DESIGNS, help=f"comma-separated (default {DESIGNS})")
    parser.add_argument("--candidates", default="default,ta90,c_ta80",
                        help=f"comma-separated; known: {', '.join(CANDIDATES)}")
    parser.add_argument("--json", type=Path, help="write all numbers (per fit too) here")
    parser.add_argument("--pipeline", action="store_true",
                        help="run whole replicates (rescue included) of models/crispr_screen.py "
                             "as a study does; the first candidate is the baseline of the ratios")
    args = parser.parse_args(argv)
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    candidates = [parse_candidate(c.strip()) for c in args.candidates.split(",") if c.strip()]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.pipeline:
        results = run_pipeline(args.reps, designs, candidates, args.first_rep, log)
        table = pipeline_markdown(results, designs, candidates[0][0])
    else:
        results = run(args.reps, designs, candidates, args.first_rep, log)
        table = markdown(results, designs)
    print(table)
    if args.json:
        import nutpie

        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "started": started, "seed": SEED,
            "first_rep": args.first_rep, "reps": args.reps, "designs": designs,
            "nutpie": nutpie.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "results": results, "table": table}, indent=1))


if __name__ == "__main__":
    main()
