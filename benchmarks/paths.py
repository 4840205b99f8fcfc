"""The SBC paths the benchmark compares, on the same model and designs.

- ``naive_block``: what a user writes by hand: per replicate, rebuild the PyMC model, draw a
  truth and a data set from the prior predictive, rebuild with the data observed, call plain
  ``pm.sample`` (PyMC 6 hands it to nutpie when nutpie is installed) and rank the truth.
- ``simuk_block``: ``simuk.SBC`` 0.3 on the same PyMC model.
- ``nutpie_block``: the bare sampler: compile once, then ``nutpie.sample`` per replicate
  with sbc's default sampler settings; no store, no ranks.
- ``sbc_cli``: ``sbc run`` on a temporary study file, in a fresh process, as a user runs it.

Each returns a :class:`Block` of plain numbers (seconds, and per fit the quality measures of
:func:`fit_quality`) so ``run.py`` and ``quality.py`` can interleave and compare them.  The
peers' quality is computed from their own traces after the block's clock has stopped, so it
never adds to their time.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Every path of the speed comparison fits with these (the other settings at sbc's defaults).
TUNE, DRAWS = 1000, 1000

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Block:
    """One measured block of replicates of one path."""

    path: str
    n: int
    total_seconds: float  # wall time of the whole block, setup included
    setup_seconds: float  # the part not spent in any one replicate (compile, start-up, ranks)
    per_replicate: list[float] = field(default_factory=list)  # seconds per replicate
    cores: int = 1
    load_before: float = float("nan")
    load_after: float = float("nan")
    extra: dict = field(default_factory=dict)
    fits: list[dict] = field(default_factory=list)  # one fit_quality() per replicate


def load_build(model: str = "crispr_seed"):
    """The ``build(data)`` function of models/MODEL.py."""
    spec = importlib.util.spec_from_file_location(f"bench_{model}", ROOT / "models" / f"{model}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def ranked_names(frame, model: str = "crispr_seed") -> list[str]:
    """What sbc ranks for MODEL on this design: the fit's parameters that the simulator draws.
    Every path's quality is measured on these scalars."""
    from sbc.simulate import Simulator
    from sbc.spec import make_spec, resolve_model

    spec = make_spec(resolve_model(str(ROOT / "models" / f"{model}.py")), frame)
    drawn = set(Simulator(spec).names)
    return [n for n in spec.parameters if n in drawn]


def fit_quality(matrix: np.ndarray, n_divergent: int, gradient_evals: int,
                seconds: float) -> dict:
    """One fit's quality from its own trace, as sbc records it: divergences, the smallest
    bulk and tail ESS over the ranked scalars (arviz-stats; 5 % and 95 % tail quantiles, a
    scalar that never moved has ESS 0) and leapfrog steps.

    matrix: (chain, draw, n_scalars) posterior draws of the ranked scalars.
    """
    from arviz_stats.base import array_stats

    with np.errstate(all="ignore"):
        bulk = np.asarray(array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="bulk"))
        tail = np.asarray(array_stats.ess(matrix, chain_axis=0, draw_axis=1, method="tail",
                                          prob=(0.05, 0.95)))
    stuck = np.ptp(matrix, axis=(0, 1)) == 0
    bulk = np.where(stuck | ~np.isfinite(bulk), 0.0, bulk)
    tail = np.where(stuck | ~np.isfinite(tail), 0.0, tail)
    return {"seconds": float(seconds), "failed": False, "n_divergent": int(n_divergent),
            "ess_bulk_min": float(bulk.min()), "ess_tail_min": float(tail.min()),
            "gradient_evals": int(gradient_evals)}


def _trace_arrays(tree, names: list[str]) -> tuple[np.ndarray, int, int]:
    """(ranked draws as (chain, draw, k), divergences, leapfrog steps) of a PyMC or nutpie
    DataTree.  Leapfrog steps are those of every stored draw: tuning included only where the
    trace keeps the warm-up (nutpie's own default; not ``pm.sample``'s)."""
    post = tree["posterior"]
    matrix = np.concatenate([np.asarray(post[n].values, dtype=float).reshape(
        post[n].shape[:2] + (-1,)) for n in names], axis=2)
    stats = [tree[g] for g in ("sample_stats", "warmup_sample_stats") if g in tree.children]
    n_div = int(stats[0]["diverging"].values.sum())
    step_key = next((k for k in ("n_steps", "tree_size") if k in stats[0].data_vars), None)
    steps = 0 if step_key is None else int(sum(s[step_key].values.sum() for s in stats))
    return matrix, n_div, steps


def _quiet():
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pymc", "pytensor", "bambi", "nutpie"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _pymc_cores(tree) -> int:
    """Cores a ``pm.sample`` call kept busy: its chains, at most PyMC's default of
    min(4, CPUs) processes or threads."""
    return min(int(tree["posterior"].sizes["chain"]), min(4, os.cpu_count() or 1))


def naive_block(frame, n: int, seed: int, sample_kwargs: dict,
                budget: float = math.inf) -> Block:
    """Up to ``n`` replicates of the hand-written loop (model rebuilt and recompiled every
    time); no new replicate starts once ``budget`` seconds have passed."""
    import pymc as pm

    _quiet()
    build = load_build()
    names = ranked_names(frame)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    times, traces, cores = [], [], 1
    for i in range(n):
        if times and time.perf_counter() - start > budget:
            break
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, i])
        with build(frame):
            prior = pm.sample_prior_predictive(draws=1, random_seed=rng)
        truth = {v: prior.prior[v].values[0, 0] for v in names}
        data = frame.copy()
        data["logfc"] = prior.prior_predictive["logfc"].values[0, 0]
        with build(data):
            idata = pm.sample(random_seed=rng, progressbar=False, compute_convergence_checks=False,
                              **sample_kwargs)
        draws = {v: idata.posterior[v].values for v in names}  # (chain, draw, *shape)
        _ = {v: (d.reshape((-1,) + d.shape[2:]) < truth[v]).sum(axis=0) for v, d in draws.items()}
        times.append(time.perf_counter() - t0)
        traces.append(_trace_arrays(idata, names))
        cores = _pymc_cores(idata)
    total = time.perf_counter() - start
    return Block("naive", len(times), total, total - sum(times), times, cores=cores,
                 load_before=load_before, load_after=os.getloadavg()[0],
                 fits=[fit_quality(*tr, s) for tr, s in zip(traces, times)])


def simuk_block(frame, n: int, seed: int, sample_kwargs: dict | None,
                budget: float = math.inf) -> Block:
    """Up to ``n`` replicates of ``simuk.SBC(...).run_simulations()``, each fit timed inside
    simuk; once ``budget`` seconds have passed simuk is told it asked for no more.  Each
    fit's trace is read as simuk receives it from ``pm.sample``, without changing what
    simuk does with it."""
    import simuk
    import simuk.sbc as simuk_module

    _quiet()
    build = load_build()
    names = ranked_names(frame)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    sbc = simuk.SBC(build(frame), num_simulations=n, seed=seed, progress_bar=False,
                    sample_kwargs=None if sample_kwargs is None else dict(sample_kwargs))
    times, traces, cores = [], [], []
    fit_once, extract = sbc._get_posterior_samples, simuk_module.extract

    def seen(tree, *args, **kwargs):  # simuk's one call per fit: extract(pm.sample's trace)
        if kwargs.get("group") == "posterior" and "sample_stats" in tree.children:
            traces.append(_trace_arrays(tree, names))
            cores.append(_pymc_cores(tree))
        return extract(tree, *args, **kwargs)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fit_once(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start > budget:  # this fit is simuk's last
                sbc.num_simulations = sbc._simulations_complete + 1

    sbc._get_posterior_samples = timed
    simuk_module.extract = seen
    try:
        sbc.run_simulations()
    finally:
        simuk_module.extract = extract
    total = time.perf_counter() - start
    if len(times) != sbc.num_simulations or len(traces) != len(times):
        raise RuntimeError(f"simuk ran {len(times)} of {sbc.num_simulations} simulations "
                           f"({len(traces)} traces seen)")
    return Block("simuk", len(times), total, total - sum(times), times, cores=max(cores),
                 load_before=load_before, load_after=os.getloadavg()[0],
                 fits=[fit_quality(*tr, s) for tr, s in zip(traces, times)])


def nutpie_block(frame, n: int, seed: int, budget: float = math.inf) -> Block:
    """Up to ``n`` replicates of the bare sampler at sbc's default settings: compile once
    (the ranked parameters stored, as sbc compiles), then per replicate simulate with sbc's
    simulator and call ``nutpie.sample`` (its default DataTree, warm-up kept)."""
    import nutpie

    from sbc.sampling import SamplerSettings
    from sbc.simulate import Simulator
    from sbc.spec import RESPONSE_DATA_NAME, make_spec, resolve_model

    _quiet()
    s = SamplerSettings()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    spec = make_spec(resolve_model(str(ROOT / "models" / "crispr_seed.py")), frame)
    simulator = Simulator(spec)
    names = [p for p in spec.parameters if p in simulator.names]
    compiled = nutpie.compile_pymc_model(spec.fit_model, var_names=list(spec.parameters))
    seeds = np.random.SeedSequence(seed).spawn(n)
    times, traces = [], []
    for child in seeds:
        if times and time.perf_counter() - start > budget:
            break
        t0 = time.perf_counter()
        sim_seed, fit_seed = child.spawn(2)
        y = simulator.draw(sim_seed)[1]
        tree = nutpie.sample(
            compiled.with_data(**{RESPONSE_DATA_NAME: np.ascontiguousarray(y, dtype=float)}),
            **s.nutpie_kwargs(compiled.n_dim),
            seed=int(fit_seed.generate_state(1)[0]), progress_bar=False)
        times.append(time.perf_counter() - t0)
        traces.append(_trace_arrays(tree, names))
    total = time.perf_counter() - start
    return Block("nutpie", len(times), total, total - sum(times), times, cores=s.chains,
                 load_before=load_before, load_after=os.getloadavg()[0],
                 fits=[fit_quality(*tr, t) for tr, t in zip(traces, times)])


STUDY_TEMPLATE = """\
name = "bench_{label}"
models = ["{model}"]
seed = {seed}
simulations = {n}
thin = "auto"

[[designs]]
cell_lines = {c}
genes = {g}
reps = {r}

[sampler]
name = "nutpie"
chains = 1
{sampler_lines}"""


def sbc_cli(workdir: Path, label: str, design: tuple[int, int, int], n: int, workers: int,
            tune: int | None, draws: int | None, seed: int,
            model: str = "crispr_seed") -> Block:
    """``sbc run`` on a fresh study in a fresh process (Dask start, compile, store, report);
    ``tune``/``draws`` None keeps sbc's defaults."""
    import pandas as pd

    workdir.mkdir(parents=True, exist_ok=True)
    study = workdir / f"{label}.toml"
    c, g, r = design
    lines = "".join(f"{k} = {v}\n" for k, v in (("tune", tune), ("draws", draws)) if v is not None)
    study.write_text(STUDY_TEMPLATE.format(label=label, model=model, seed=seed, n=n, c=c, g=g,
                                           r=r, sampler_lines=lines))
    out = workdir / label
    cmd = [str(ROOT / ".venv" / "bin" / "sbc"), "run", str(study), "--out", str(out),
           "--workers", str(workers)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"sbc run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    records = [json.loads(p.read_text()) for p in (out / "replicates").rglob("r*.json")]
    frame = pd.DataFrame([{k: v for k, v in rec.items() if not isinstance(v, dict | list)}
                          for rec in records])
    ok = frame[frame["status"] == "ok"]
    wall = ok["wall_seconds"].to_numpy()
    busy = float(frame["wall_seconds"].sum()) / workers
    return Block(f"sbc_{workers}", len(frame), total, max(0.0, total - busy), wall.tolist(),
                 cores=workers, load_before=load_before, load_after=os.getloadavg()[0],
                 extra={"n_failed": int((frame["status"] != "ok").sum()),
                        "sampler_seconds": ok["sampler_seconds"].to_numpy().tolist(),
                        "flag_low_ess": float(ok["flag_low_ess"].mean()),
                        "flag_divergent": float(ok["flag_divergent"].mean()),
                        "rescued": float(ok["rescued"].mean()),
                        "record_bytes": float(np.mean([len(json.dumps(r)) for r in records])),
                        "stderr_tail": proc.stderr[-400:]},
                 fits=[_record_quality(rec) for rec in records])


def _record_quality(rec: dict) -> dict:
    """An sbc record's quality measures (those of the ranked fit; its time and leapfrog steps
    those of every attempt), as :func:`fit_quality` gives them for the other paths."""
    if rec.get("status") != "ok":
        return {"seconds": float(rec.get("wall_seconds") or 0.0), "failed": True,
                "n_divergent": 0, "ess_bulk_min": 0.0, "ess_tail_min": 0.0,
                "gradient_evals": int(rec.get("gradient_evals") or 0)}
    return {"seconds": float(rec["wall_seconds"]), "failed": False,
            "n_divergent": int(rec["n_divergent"]), "ess_bulk_min": float(rec["ess_bulk_min"]),
            "ess_tail_min": float(rec["ess_tail_min"]),
            "gradient_evals": int(rec["gradient_evals"])}


def run_python(args: list[str]) -> dict:
    """Run ``benchmarks/worker.py ARGS`` in a fresh process and return its JSON answer."""
    cmd = [sys.executable, str(Path(__file__).with_name("worker.py")), *args]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
