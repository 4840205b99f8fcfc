"""Helpers of the validation suite (no tests here): the fit-cache key, the design of the
false-alarm test, and running many exact-backend checks in parallel processes.

Kept apart from conftest.py so that fast tests and tools can import it by name
(``tests/validation`` is on ``sys.path`` while pytest runs these tests).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from scipy.stats import binom

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SBC_DIR = ROOT / "sbc"
# Libraries whose behaviour decides what a cached fit holds (samplers, model graphs, RNG).
LIBRARIES = ("pymc", "pytensor", "nutpie", "numpy", "bambi")
BASE_CACHE_DIR = HERE / ".sbc_cache"
KEEP_CACHES = 3  # environment caches kept (the current one and the 2 most recently used)


# --------------------------------------------------------------------------------------
# Fit-cache key
# --------------------------------------------------------------------------------------
# check_calibration keys a cached store by the study and the model sources only, so fits made
# by an older sbc (a changed rank, seed or quantity computation) or another pymc / nutpie
# would be reused silently.  The suite therefore keeps its fits under a subdirectory named
# by a key of everything else that decides them.


def sbc_sources(package_dir: Path = SBC_DIR) -> dict[str, bytes]:
    """Every ``*.py`` file of the sbc package (subpackages included), by posix path
    relative to the package directory."""
    return {p.relative_to(package_dir).as_posix(): p.read_bytes()
            for p in sorted(package_dir.rglob("*.py")) if "__pycache__" not in p.parts}


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def sbc_version() -> str:
    import sbc

    return str(sbc.__version__)


def cache_key(sbc_version: str, sources: Mapping[str, bytes],
              libraries: Mapping[str, str]) -> str:
    """Hex key of the sbc version, the sbc sources (sorted paths and their contents) and
    the library versions.  Any change in any of them gives another key."""
    h = hashlib.sha256()

    def put(tag: str, data: bytes) -> None:  # length-prefixed: no two inputs collide by concatenation
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)

    put("sbc_version", sbc_version.encode())
    for path in sorted(sources):
        put("path", path.encode())
        put("source", sources[path])
    put("libraries", json.dumps(dict(sorted(libraries.items()))).encode())
    return h.hexdigest()


def current_cache_key() -> str:
    return cache_key(sbc_version(), sbc_sources(), library_versions())


def environment_line(key: str | None = None) -> str:
    """sbc and library versions with the fit-cache key: ``key`` (the one the session's fits
    were cached under, computed when it started) or, by default, the current one."""
    libs = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    return f"sbc {sbc_version()}; {libs}; fit-cache key {(key or current_cache_key())[:16]}"


# --------------------------------------------------------------------------------------
# The genome key: what decides a genome screen (tests/validation/GENOME.md)
# --------------------------------------------------------------------------------------
# The genome certification fits no study store; its numbers are decided by the shortcut
# (sbc/plan/genome*.py), the guide-level model (models/crispr_guides.py), the sbc modules
# the certification imports (statistics, seeding, the NUTS backend), found by following the
# imports of GENOME_MODULES through sbc's own files, and the numerical libraries.  Editing the
# report or the store does not change this key.

GENOME_LIBRARIES = ("numpy", "scipy", "pymc", "pytensor", "nutpie")
GENOME_MODULES = ("sbc.stats", "sbc.plan.genome", "sbc.plan.genome_fit",
                  "sbc.plan.genome_screen", "sbc.plan.genome_nuts")


def _module_file(name: str, root: Path) -> Path | None:
    """The file of sbc module ``name`` under ``root`` (``sbc.models.X``: ``models/X.py``,
    installed as sbc.models); None for other packages and names that are not modules."""
    parts = name.split(".")
    if parts[0] != "sbc":
        return None
    base = root.joinpath("models", *parts[2:]) if parts[1:2] == ["models"] else \
        root.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_names(path: Path) -> set[str]:
    """Absolute module names ``path`` imports anywhere (function-level imports included);
    ``from a import b`` gives both ``a`` and ``a.b`` (b may be a module)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def genome_sources(root: Path = ROOT, modules: Sequence[str] = GENOME_MODULES
                   ) -> dict[str, bytes]:
    """Every ``sbc/plan/genome*.py``, ``models/crispr_guides.py`` and every sbc file that
    ``modules`` import, directly or not, by posix path relative to ``root``."""
    files = set(root.glob("sbc/plan/genome*.py")) | {root / "models" / "crispr_guides.py"}
    todo, seen = list(modules), set()
    while todo:
        name = todo.pop()
        path = _module_file(name, root)
        if name in seen or path is None:
            continue
        seen.add(name)
        files.add(path)
        todo += sorted(_imported_names(path) - seen)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(files)}


def genome_key() -> str:
    """The key GENOME.md records: the sbc version, :func:`genome_sources` and the versions of
    GENOME_LIBRARIES (the same hash as the fit-cache key, over other inputs)."""
    return cache_key(sbc_version(), genome_sources(), library_versions(GENOME_LIBRARIES))


def genome_environment_line(key: str) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in library_versions(GENOME_LIBRARIES).items())
    return f"sbc {sbc_version()}; {libs}; genome key {key[:16]}"


# --------------------------------------------------------------------------------------
# The keys the committed certificates record
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """A committed result file, the key it records (``label`` followed by 16 or more hex
    digits, as environment_line / genome_environment_line write it) and how to rewrite it."""

    path: Path
    label: str
    current_key: Callable[[], str]
    command: str

    @property
    def name(self) -> str:
        return self.path.name


CERTIFICATES = {
    "RESULTS.md": Certificate(
        HERE / "RESULTS.md", "fit-cache key", lambda: current_cache_key(),
        "`pytest -m slow tests/validation` (about an hour of fitting), then "
        "`python tools/readme.py`"),
    "GENOME.md": Certificate(
        HERE / "GENOME.md", "genome key", lambda: genome_key(),
        "`pytest -m slow tests/validation/test_genome_validation.py`, then "
        "`python tools/readme.py`"),
}


def recorded_key(text: str, label: str) -> str | None:
    """The key after ``label`` in a certificate's text (None when it records none)."""
    match = re.search(rf"\b{re.escape(label)} ([0-9a-f]{{16,64}})\b", text)
    return match.group(1) if match else None


def certificate_problem(cert: Certificate, current: str | None = None) -> str | None:
    """Why ``cert`` does not certify the current sources and libraries (None when the key
    it records is the current one, ``current`` or ``cert.current_key()``)."""
    where = cert.path
    if not where.is_file():
        return f"{cert.name} is missing ({where}); write it with {cert.command}"
    recorded = recorded_key(where.read_text(encoding="utf-8"), cert.label)
    if recorded is None:
        return (f"{cert.name} is stale: it records no {cert.label}, so nothing says which "
                f"sources and library versions it was written with; regenerate it with "
                f"{cert.command}")
    current = current or cert.current_key()
    if current[:len(recorded)] != recorded:
        return (f"{cert.name} is stale: it records {cert.label} {recorded[:16]}, but the "
                f"current sources and library versions give {current[:16]}; regenerate it "
                f"with {cert.command}")
    return None


def cache_dir_for(key: str, base: Path | None = None) -> Path:
    """The fit cache of one environment: ``<base>/env-<key[:16]>``.  ``base`` defaults to
    ``$SBC_VALIDATION_CACHE`` or ``tests/validation/.sbc_cache``."""
    if base is None:
        base = Path(os.environ.get("SBC_VALIDATION_CACHE") or BASE_CACHE_DIR)
    return Path(base) / f"env-{key[:16]}"


def prepare_cache_dir(key: str, base: Path | None = None, keep: int = KEEP_CACHES) -> Path:
    """Create (and mark as used) this environment's cache; delete the stores of older
    environments beyond the ``keep`` most recently used, and stores written before the cache
    was keyed by environment (directories directly under the base that are not ``env-*``),
    which no key can reach any more."""
    path = cache_dir_for(key, base)
    path.mkdir(parents=True, exist_ok=True)
    path.touch()
    base = path.parent
    envs = sorted((p for p in base.glob("env-*") if p.is_dir()), key=lambda p: p.stat().st_mtime,
                  reverse=True)
    stale = [p for p in envs if p != path][max(keep - 1, 0):]
    stale += [p for p in base.iterdir() if p.is_dir() and not p.name.startswith("env-")
              and (p / "study.json").exists()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return path


# --------------------------------------------------------------------------------------
# The false-alarm test: a two-sided binomial test with stated power
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FalseAlarmDesign:
    """Acceptance region ``lo <= rejections <= hi`` out of ``n_seeds`` checks at ``alpha``.

    hi: the smallest count with P(R > hi | rate alpha) <= ``fail_nominal`` (a checker at the
    nominal rate fails the upper side at most that often).  lo: the largest count with
    P(R < lo | rate alpha / 2) <= 0.001 (a conservative checker, at half the nominal rate,
    still passes the lower side with probability >= 0.999), and at least 1, so that a checker
    that never rejects always fails.
    """

    alpha: float
    n_seeds: int
    fail_nominal: float = 0.005

    @property
    def hi(self) -> int:
        hi = int(binom.isf(self.fail_nominal, self.n_seeds, self.alpha))
        while binom.sf(hi, self.n_seeds, self.alpha) > self.fail_nominal:
            hi += 1
        while hi > 0 and binom.sf(hi - 1, self.n_seeds, self.alpha) <= self.fail_nominal:
            hi -= 1
        return hi

    @property
    def lo(self) -> int:
        lo = 1
        while binom.cdf(lo, self.n_seeds, self.alpha / 2) <= 0.001:  # P(R < lo + 1)
            lo += 1
        return lo

    def p_pass(self, rate: float) -> float:
        """P(lo <= R <= hi) for a checker whose false-alarm rate is ``rate``."""
        if rate == 0:
            return float(self.lo <= 0)
        return float(binom.cdf(self.hi, self.n_seeds, rate) -
                     binom.cdf(self.lo - 1, self.n_seeds, rate))

    def passes(self, rejections: int) -> bool:
        return self.lo <= rejections <= self.hi

    def summary(self) -> dict[str, str]:
        a = self.alpha
        return {"pass region": f"[{self.lo}, {self.hi}]",
                "P(pass), correct": f"{self.p_pass(a):.3f}",
                "P(fail), rate 2 alpha": f"{1 - self.p_pass(2 * a):.3f}",
                "P(fail), never rejects": f"{1 - self.p_pass(0.0):.0f}"}


def smallest_powered_n(alpha: float, fail_nominal: float, power: float = 0.9,
                       start: int = 10, stop: int = 5000) -> int:
    """Fewest seeds whose design fails a checker at twice the nominal rate with probability
    >= ``power`` (and a checker that never rejects always)."""
    for n in range(start, stop):
        d = FalseAlarmDesign(alpha, n, fail_nominal)
        if 1 - d.p_pass(2 * alpha) >= power and d.p_pass(0.0) == 0:
            return n
    raise ValueError("no design found")


# --------------------------------------------------------------------------------------
# Many exact-backend checks, in parallel processes
# --------------------------------------------------------------------------------------


def default_jobs() -> int:
    return max(1, int(os.environ.get("SBC_VALIDATION_JOBS") or min(2, os.cpu_count() or 1)))


def _rejects(args) -> bool:
    model, design, n_sims, seed, alpha, cache_dir = args
    from sbc.testing import check_calibration

    return not check_calibration(Path(model), tuple(design), n_sims=n_sims, seed=seed,
                                 sampler="exact", alpha=alpha, cache_dir=cache_dir,
                                 report=False).passed


def count_rejections(model: Path, design, *, n_sims: int, seeds: Sequence[int], alpha: float,
                     cache_dir: Path, jobs: int | None = None) -> list[bool]:
    """``check_calibration(...).passed`` negated, for each seed (in order).  Runs in
    ``jobs`` spawned processes (``$SBC_VALIDATION_JOBS``, default min(2, cores)); each seed
    has its own store, so the processes never share one."""
    tasks = [(str(model), tuple(design), n_sims, seed, alpha, str(cache_dir)) for seed in seeds]
    jobs = default_jobs() if jobs is None else jobs
    if jobs <= 1:
        return [_rejects(t) for t in tasks]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_rejects, tasks, chunksize=4))


# --------------------------------------------------------------------------------------
# RESULTS.md tables
# --------------------------------------------------------------------------------------


def cell(value) -> str:
    """A table cell: pipes escaped (group names such as ``1|gene`` would split the row)."""
    return str(value).replace("|", "\\|")


def parse_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The tables of a RESULTS.md text by section heading ("## ..."), as lists of rows."""
    out: dict[str, list[dict[str, str]]] = {}
    section, header = None, None
    for line in text.splitlines():
        if line.startswith("## "):
            section, header = line[3:].strip(), None
            out[section] = []
        elif section and line.startswith("|"):
            cells = [c.strip().replace("\\|", "|")
                     for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if header is None:
                header = cells
            elif not set(line) <= set("|-: "):
                out[section].append(dict(zip(header, cells)))
    return out


# --------------------------------------------------------------------------------------
# Sequential studies under the null: exact posterior ranks, the production judge
# --------------------------------------------------------------------------------------
# A hierarchical normal model (mu ~ N(0, 1); gene effects g_j ~ N(mu, 0.5); n_obs
# observations per gene ~ N(g_j, 0.5)) has a Gaussian joint posterior, so the fractional rank
# of each truth is exactly Phi((theta - m) / s) with the posterior mean m and sd s: exactly
# uniform per scalar, and dependent across the elements of a replicate as real ranks are
# (they share mu and the data).  A study of B such blocks has 2B groups (mu_b, g_b).


def exact_null_ranks(rng, n_rep: int, blocks: int, genes: int, n_obs: int = 2,
                     tau: float = 0.5, sigma: float = 0.5):
    """(u (n_rep, scalars), names, groups) of ``blocks`` independent hierarchical blocks."""
    import numpy as np
    from scipy.stats import norm

    k = 1 + genes
    prior = np.zeros((k, k))
    prior[0, 0] = 1.0 + genes / tau**2
    prior[0, 1:] = prior[1:, 0] = -1.0 / tau**2
    prior[1:, 1:] += np.eye(genes) / tau**2
    post = prior.copy()
    post[1:, 1:] += np.eye(genes) * n_obs / sigma**2
    cov = np.linalg.inv(post)
    sd = np.sqrt(np.diag(cov))
    us, names, groups = [], [], []
    for b in range(blocks):
        mu = rng.normal(0.0, 1.0, n_rep)
        g = mu[:, None] + rng.normal(0.0, tau, (n_rep, genes))
        ybar = g + rng.normal(0.0, sigma / np.sqrt(n_obs), (n_rep, genes))
        rhs = np.zeros((n_rep, k))
        rhs[:, 1:] = ybar * n_obs / sigma**2
        us.append(norm.cdf((np.column_stack([mu, g]) - rhs @ cov.T) / sd))
        names += [f"mu{b}"] + [f"g{b}[{j}]" for j in range(genes)]
        groups += [f"mu{b}"] + [f"g{b}"] * genes
    return np.hstack(us), names, groups


def null_tables(u, names, groups, seed: int, n_ranked: int = 1000):
    """A store's (replicates, parameters) tables for ranks ``u``: rank = floor(u (L + 1))
    among L = ``n_ranked`` draws, which the engine's randomised PIT turns back into exactly
    uniform fractional ranks."""
    import numpy as np
    import pandas as pd

    n_rep, k = u.shape
    rank = np.clip(np.floor(u * (n_ranked + 1)), 0, n_ranked).astype(int)
    reps = pd.DataFrame({"model": "m", "design": "d", "rep": np.arange(n_rep), "status": "ok",
                         "n_ranked": n_ranked, "seed_entropy": seed, "n_divergent": 0,
                         "n_treedepth": 0, "flag_divergent": False, "flag_low_ess": False,
                         "flag_rhat": False, "wall_seconds": 0.0})
    params = pd.DataFrame({
        "model": "m", "design": "d", "rep": np.repeat(np.arange(n_rep), k),
        "name": np.tile(names, n_rep), "group": np.tile(groups, n_rep), "kind": "parameter",
        "rank": rank.ravel(), "n_ranked": n_ranked, "seed_entropy": seed, "truth": 0.0,
        "mean": 0.0, "sd": 1.0, "q0.05": -1.0, "q0.95": 1.0})
    return reps, params


def null_study(args) -> tuple[str, int]:
    """One calibrated sequential study judged by sbc.stopping.judge: (overall status, fits
    at the stop).  args: (seed, blocks, genes, settings as a dict)."""
    import numpy as np

    from sbc import stopping

    seed, blocks, genes, settings = args
    settings = stopping.Sequential(**settings)
    u, names, groups = exact_null_ranks(np.random.default_rng(seed), settings.max_simulations,
                                        blocks, genes)
    cal = stopping.judge(*null_tables(u, names, groups, seed), settings)
    (outcome,) = cal.sequential.values()
    return cal.overall().status, outcome.fits


def run_null_studies(tasks: Sequence[tuple], jobs: int | None = None) -> list[tuple[str, int]]:
    """:func:`null_study` for each task, in ``jobs`` spawned processes."""
    jobs = default_jobs() if jobs is None else jobs
    if jobs <= 1:
        return [null_study(t) for t in tasks]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(null_study, tasks, chunksize=8))
