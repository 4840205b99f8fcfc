"""The SBC paths the benchmark compares, each at the same sampler settings on the same model.

- ``naive_block``: what a user writes by hand: per replicate, rebuild the PyMC model, draw a
  truth and a data set from the prior predictive, rebuild with the data observed, call plain
  ``pm.sample`` (PyMC's default sampler choice) and rank the truth.
- ``simuk_block``: ``simuk.SBC`` 0.3 on the same PyMC model.
- ``sbc_cli``: ``sbc run`` on a temporary study file, in a fresh process, as a user runs it.

Each returns plain numbers (seconds) so ``run.py`` can interleave and compare them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Every path fits with these (the other sampler settings at sbc's defaults).
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


def load_build(model: str = "crispr_seed"):
    """The ``build(data)`` function of models/MODEL.py."""
    spec = importlib.util.spec_from_file_location(f"bench_{model}", ROOT / "models" / f"{model}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def _quiet():
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pymc", "pytensor", "bambi", "nutpie"):
        logging.getLogger(name).setLevel(logging.ERROR)


def naive_block(frame, n: int, tune: int, draws: int, seed: int) -> Block:
    """``n`` replicates of the hand-written loop (model rebuilt and recompiled every time)."""
    import pymc as pm

    _quiet()
    build = load_build()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, i])
        with build(frame):
            prior = pm.sample_prior_predictive(draws=1, random_seed=rng)
        names = [v for v in prior.prior.data_vars if v != "mu_gc"]
        truth = {v: prior.prior[v].values[0, 0] for v in names}
        data = frame.copy()
        data["logfc"] = prior.prior_predictive["logfc"].values[0, 0]
        with build(data):
            idata = pm.sample(tune=tune, draws=draws, chains=1, random_seed=rng,
                              progressbar=False, compute_convergence_checks=False)
        _ = {v: (idata.posterior[v].values[0] < truth[v]).sum(axis=0) for v in names}
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return Block("naive", n, total, total - sum(times), times,
                 load_before=load_before, load_after=os.getloadavg()[0])


def simuk_block(frame, n: int, tune: int, draws: int, seed: int) -> Block:
    """``n`` replicates of ``simuk.SBC(...).run_simulations()``; each fit timed inside simuk."""
    import simuk

    _quiet()
    build = load_build()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    sbc = simuk.SBC(build(frame), num_simulations=n, seed=seed, progress_bar=False,
                    sample_kwargs={"tune": tune, "draws": draws, "chains": 1})
    times = []
    fit_once = sbc._get_posterior_samples

    def timed(*args, **kwargs):  # time each replicate's fit without changing what simuk does
        t0 = time.perf_counter()
        try:
            return fit_once(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - t0)

    sbc._get_posterior_samples = timed
    sbc.run_simulations()
    total = time.perf_counter() - start
    if len(times) != n:
        raise RuntimeError(f"simuk ran {len(times)} of {n} simulations")
    return Block("simuk", n, total, total - sum(times), times,
                 load_before=load_before, load_after=os.getloadavg()[0])


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
tune = {tune}
draws = {draws}
"""


def sbc_cli(workdir: Path, label: str, design: tuple[int, int, int], n: int, workers: int,
            tune: int, draws: int, seed: int, model: str = "crispr_seed") -> Block:
    """``sbc run`` on a fresh study in a fresh process (Dask start, compile, store, report)."""
    import pandas as pd

    workdir.mkdir(parents=True, exist_ok=True)
    study = workdir / f"{label}.toml"
    c, g, r = design
    study.write_text(STUDY_TEMPLATE.format(label=label, model=model, seed=seed, n=n, c=c, g=g,
                                           r=r, tune=tune, draws=draws))
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
                        "record_bytes": float(np.mean([len(json.dumps(r)) for r in records])),
                        "stderr_tail": proc.stderr[-400:]})


def run_python(args: list[str]) -> dict:
    """Run ``benchmarks/worker.py ARGS`` in a fresh process and return its JSON answer."""
    cmd = [sys.executable, str(Path(__file__).with_name("worker.py")), *args]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
