"""The genome-scale planner: the shortcut's algebra against dense Gaussian formulas, its
numerical pieces, the genome plan file, and a small plan end to end (store, resume,
hostile files, command line).  Its certification against full NUTS is the slow
tests/validation/test_genome_validation.py."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from scipy import stats as sps
from support import TINY_GENOME_PLAN

from sbc.cli import main
from sbc.errors import StudyError, StudyMismatchError
from sbc.plan import genome_fit as gf, genome_screen as gm
from sbc.plan.criteria import dominated
from sbc.plan.genome import GenomeSettings, GenomeTarget, ScreenDesign
from sbc.plan.genome_fit import Observations
from sbc.plan.genome_config import GenomeCost, load_genome_plan
from sbc.plan.planner import run_plan as run_genome_plan

H = {"pi_essential": 0.15, "mu_essential": -0.9, "sigma_essential": 0.4, "sigma_gene": 0.15,
     "tau": 0.2, "sigma_guide": 0.3, "sigma_rep": 0.25}


def _dense(y, vcount, v0, x, h, offset, candidate, m0, s0):
    """log N(y; X mu0, V + X Sigma X') and the posterior of (beta, [gamma], u, d) for one
    gene, written out densely: the definition the shortcut must equal."""
    C, R, K = y.shape
    cols = 1 + (1 if candidate else 0) + C + K
    rows, X = [], []
    for c in range(C):
        for r in range(R):
            for k in range(K):
                row = np.zeros(cols)
                row[0] = 1.0
                j = 1
                if candidate:
                    row[1] = x[c]
                    j = 2
                row[j + c] = 1.0
                row[j + C + k] = 1.0
                X.append(row)
                rows.append((c, r, k))
    X = np.array(X)
    z = np.array([y[c, r, k] for c, r, k in rows]) - offset
    V = np.diag([vcount[c, r, k] + h["sigma_rep"] ** 2 for c, r, k in rows])
    prior_var = [s0**2] + ([0.5**2] if candidate else []) + [h["tau"] ** 2] * C + \
        list(h["sigma_guide"] ** 2 + v0)
    mu0 = np.zeros(cols)
    mu0[0] = m0
    Sigma = np.diag(prior_var)
    logml = sps.multivariate_normal(X @ mu0, V + X @ Sigma @ X.T).logpdf(z)
    P = np.linalg.inv(Sigma) + X.T @ np.linalg.inv(V) @ X
    cov = np.linalg.inv(P)
    mean = cov @ (np.linalg.inv(Sigma) @ mu0 + X.T @ np.linalg.inv(V) @ z)
    return logml, mean, cov


@pytest.mark.parametrize("candidate", [False, True])
def test_collapsed_gene_model_equals_the_dense_gaussian(candidate):
    rng = np.random.default_rng(1)
    G, C, R, K = 3, 3, 2, 2
    y = rng.normal(0, 0.5, (G, C, R, K))
    vcount = rng.uniform(0.01, 0.1, (G, C, R, K))
    v0 = rng.uniform(0.005, 0.02, (G, K))
    x = np.array([1.0, 0.0, 0.0])
    obs = Observations(y, vcount, v0, x, 0)
    F = np.stack([np.ones(C), x], axis=1) if candidate else np.ones((C, 1))
    offset = 0.07
    affine = gf._reduce(gf._sums(obs, slice(None), H["sigma_rep"]), v0, F, H,
                        extra_prec=1 / 0.5**2 if candidate else 0.0)
    red = affine.at(offset)
    ess, non = gf._classes(red, H)
    for cls, m0, s0 in ((ess, H["mu_essential"], H["sigma_essential"]),
                        (non, 0.0, H["sigma_gene"])):
        mean_f, cov_f = cls.fixed_block(red)
        u_mean, u_sd = gf._u_moments(red, cls, G)
        for g in range(G):
            logml, mean, cov = _dense(y[g], vcount[g], v0[g], x, H, offset, candidate, m0, s0)
            assert cls.logml[g] == pytest.approx(logml, rel=1e-9, abs=1e-9)
            assert cls.mean[g] == pytest.approx(mean[0], abs=1e-10)
            assert cls.var[g] == pytest.approx(cov[0, 0], rel=1e-9)
            nf = 2 if candidate else 1
            if candidate:
                assert mean_f[g, 1] == pytest.approx(mean[1], abs=1e-10)
                assert cov_f[g, 1, 1] == pytest.approx(cov[1, 1], rel=1e-9)
            np.testing.assert_allclose(u_mean[g], mean[nf:nf + C], atol=1e-10)
            np.testing.assert_allclose(u_sd[g] ** 2, np.diag(cov)[nf:nf + C], rtol=1e-9)


def test_mixture_quantile_inverts_the_mixture_cdf():
    rng = np.random.default_rng(2)
    G, M = 500, 8
    w = rng.dirichlet(np.ones(M), G)
    m = rng.normal(0, 2, (G, M))      # far-apart, multimodal mixtures included
    s = rng.uniform(1e-4, 0.5, (G, M))
    for q in (0.025, 0.25, 0.5, 0.975):
        x = gm.mixture_quantile(q, w, m, s)
        assert np.abs(gm.mixture_cdf(x, w, m, s) - q).max() < 1e-8
    one = gm.mixture_quantile(0.3, w[0], m[0], s[0])  # a single mixture: a scalar
    assert one.shape == () and abs(gm.mixture_cdf(one, w[0], m[0], s[0]) - 0.3) < 1e-8


def test_interval_narrower_agrees_with_the_two_quantiles():
    """The width target's one-quantile test equals width = upper - lower < below, away from
    ties (|width - below| > 1e-6, far beyond the quantiles' 1e-8 tolerance)."""
    rng = np.random.default_rng(3)
    G, M = 2000, 8
    w = rng.dirichlet(np.ones(M), G)
    m = rng.normal(0, 0.5, (G, M))
    s = rng.uniform(0.05, 0.4, (G, M))
    for level in (0.95, 0.8, 0.5):
        tail = (1 - level) / 2
        width = gm.mixture_quantile(1 - tail, w, m, s) - gm.mixture_quantile(tail, w, m, s)
        below = float(np.median(width))  # half the mixtures on each side
        clear = np.abs(width - below) > 1e-6
        narrower = gm.interval_narrower(level, below, w, m, s)
        np.testing.assert_array_equal(narrower[clear], (width < below)[clear])


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.floats(0.01, 0.3))
def test_bayes_fdr_calls_the_largest_set_within_the_level(lfdr, q):
    lfdr = np.array(lfdr)
    calls = gm.bayes_fdr_calls(lfdr, q)
    if calls.any():
        assert lfdr[calls].mean() <= q + 1e-12
        assert lfdr[calls].max() <= lfdr[~calls].min(initial=1.0) + 1e-12
    # one more gene (the next smallest local fdr) would exceed the level
    rest = np.sort(lfdr[~calls])
    if len(rest):
        bigger = np.append(lfdr[calls], rest[0])
        assert bigger.mean() > q - 1e-12


def test_replicate_sd_recovers_the_replicate_noise():
    rng = np.random.default_rng(3)
    G, C, R, K = 2000, 4, 3, 4
    vcount = rng.uniform(0.005, 0.05, (G, C, R, K))
    base = rng.normal(0, 1, (G, C, 1, K))
    y = base + rng.normal(0, np.sqrt(vcount + 0.2**2))
    assert gf.replicate_sd(Observations(y, vcount, np.zeros((G, K)), np.ones(C), 0)) == \
        pytest.approx(0.2, rel=0.02)


TARGETS = (GenomeTarget("essential_power", at_least=0.5),
           GenomeTarget("selective_power", at_least=0.5, side="either"),
           GenomeTarget("width", below=0.8, at_least=0.5),
           GenomeTarget("separation", below=-2.0, n_controls=50))


def test_the_shortcut_recovers_hyperparameters_and_covers_genes():
    """One screen of 2,000 genes simulated as counts: the hyperparameters are recovered to
    a few per cent and the 95 % intervals cover close to 95 % of the gene effects."""
    design = ScreenDesign(6, 2000, 3, 4, 500)
    s = GenomeSettings(seed=5, targets=TARGETS, max_cells=6, max_guides=4, n_candidates=10)
    truth, t0, counts, x = gm.simulate(design, 0, s)
    post = gm.fit_screen(t0, counts, x, design, 0, s)
    for name in ("tau", "sigma_guide", "sigma_rep"):
        assert post.hyper[name] == pytest.approx(truth["hyper"][name], rel=0.08)
    cal = gm.calibration_summary(post, truth, s)
    assert 0.93 <= cal["coverage95"] <= 0.97
    scores = gm.target_scores(post, truth, s)
    assert set(scores) >= {"metric0", "met0", "metric3", "met3", "success", "fdp0"}
    assert scores["metric3"] < -2  # essential controls lie far below non-essential ones


def test_common_random_numbers_share_truths_across_designs():
    s = GenomeSettings(seed=9, targets=TARGETS, max_cells=6, max_guides=5, n_candidates=5)
    a = gm.simulate(ScreenDesign(3, 200, 2, 3, 250), 4, s)[0]
    b = gm.simulate(ScreenDesign(6, 200, 3, 5, 1000), 4, s)[0]
    np.testing.assert_array_equal(a["beta_g"], b["beta_g"])
    np.testing.assert_array_equal(a["u"], b["u"])


def test_dominated_compares_every_dimension_of_a_genome_design():
    small, big = ScreenDesign(4, 100, 2, 3, 250), ScreenDesign(8, 100, 2, 4, 500)
    monotone = ("cell_lines", "reps", "guides", "depth")
    assert dominated(small, big, monotone)
    assert not dominated(big, small, monotone)
    assert not dominated(small, ScreenDesign(8, 200, 2, 4, 500), monotone)  # genes differ


def test_cost_counts_sequencing_culture_and_cell_lines():
    cost = GenomeCost(fixed=1, per_cell_line=2, per_screen=0.5, culture_per_1000_guides=0.01,
                      per_million_reads=0.004)
    d = ScreenDesign(4, 1000, 3, 4, 500)
    reads = 4 * 3 * 1000 * 4 * 500 / 1e6 + 500 * 4000 / 1e6
    assert cost(d, 500) == pytest.approx(1 + 8 + 6 + 0.01 * 12 * 4 + 0.004 * reads)


PLAN = TINY_GENOME_PLAN


def _plan_file(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_small_genome_plan_runs_resumes_and_refuses_damage(tmp_path, capsys):
    plan = load_genome_plan(_plan_file(tmp_path))
    out = tmp_path / "out"
    first = run_genome_plan(plan, out, workers=0)
    assert first.recommended is not None
    for name in ("plan.csv", "plan.json", "summary.md", "plan_cost.png", "study.json"):
        assert (out / name).is_file()
    data = json.loads((out / "plan.json").read_text())
    assert data["recommended"]["design"] == first.recommended.design.label
    stored = sorted((out / "screens").rglob("r*.json"))
    assert len(stored) == first.fits["used"] > 0
    # a resumed run simulates nothing and reaches the same answer
    again = run_genome_plan(plan, out, workers=0)
    assert again.fits["new"] == 0
    assert again.table.equals(first.table)
    # a damaged screen file is set aside and simulated again, with the same result
    stored[0].write_text(stored[0].read_text().replace('"success": ', '"success": 1 or '))
    third = run_genome_plan(plan, out, workers=0)
    assert third.fits["new"] == 1
    assert third.table[["design", "p_success"]].equals(first.table[["design", "p_success"]])
    assert list(stored[0].parent.glob("*.corrupt-*"))
    # another plan (seed) never mixes with these results
    other = load_genome_plan(_plan_file(tmp_path, PLAN.replace("seed = 11", "seed = 12")))
    with pytest.raises(StudyMismatchError):
        run_genome_plan(other, out, workers=0)


def test_a_genome_plan_on_dask_workers_equals_one_in_process(tmp_path):
    """The same plan through a local Dask cluster of 2 workers: the same screens, the same
    table (seeds depend on the plan, design and replicate only)."""
    plan = load_genome_plan(_plan_file(tmp_path))
    here = run_genome_plan(plan, tmp_path / "here", workers=0)
    there = run_genome_plan(plan, tmp_path / "there", workers=2)
    timing = ["median_fit_seconds"]
    assert there.table.drop(columns=timing).equals(here.table.drop(columns=timing))


def test_sbc_plan_returns_plan_results_for_a_genome_plan(tmp_path):
    import sbc

    result = sbc.plan(_plan_file(tmp_path), tmp_path / "p", workers=0, progress=False)
    assert result.kind == "genome" and result.recommended is not None
    assert "guides" in result._repr_html_()
    fig = result.plot()
    assert fig.axes[0].get_xlabel().startswith("cost")


def test_sbc_plan_runs_a_genome_plan_from_the_command_line(tmp_path, capsys):
    path = _plan_file(tmp_path)
    assert main(["plan", str(path), "--out", str(tmp_path / "o"), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "recommended" in printed and "guides per gene" in printed


BAD = [
    ("kind = \"genome\"", "", "kind"),
    ("[space]\ncell_lines = [2, 4]\n", "[space]\ncell_lines = [2, 4]\nlanes = [1]\n",
     "unknown key 'space.lanes'"),
    ("guides = [3]\n", "", "lacks guides"),
    ("kind = \"essential_power\"", "kind = \"essential_powr\"", "did you mean 'essential_power'"),
    ("below = 1.0\n", "", "needs below"),
    ("genes = 6\n", "genes = 300\n", "fewer than the smallest library"),
    ("[cost]\nper_cell_line = 1.0\nper_million_reads = 0.01\n", "[cost]\nunit = \"kUSD\"\n",
     "gives no cost"),
    ("max_simulations = 20\n", "max_simulations = 20\n[priors]\ntau = {family = \"Normal\", "
     "mu = 0.1, sigma = 0.1}\n", "must be 'LogNormal'"),
    ("genes = [300]", "genes = [30000000]", "memory"),
    ("cell_lines = [2, 4]", "cell_lines = [1, 4]", "at least 2"),
]


@pytest.mark.parametrize("old, new, message", BAD)
def test_a_bad_genome_plan_is_refused_with_the_key_and_a_fix(tmp_path, old, new, message):
    assert old in PLAN
    with pytest.raises(StudyError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_genome_plan(_plan_file(tmp_path, PLAN.replace(old, new, 1)))


def test_a_selective_target_needs_candidates(tmp_path):
    text = PLAN.replace("genes = 6\n", "genes = 0\n") + \
        "\n[[targets]]\nkind = \"selective_power\"\n"
    with pytest.raises(StudyError, match="needs candidate genes"):
        load_genome_plan(_plan_file(tmp_path, text))


def test_the_shipped_genome_plan_is_valid_and_genome_wide():
    root = Path(__file__).resolve().parent.parent
    plan = load_genome_plan(root / "studies" / "plan_genome.toml")
    assert plan.dims["genes"] == (18000,)
    assert set(plan.dims["guides"]) == {3, 4, 5} and max(plan.dims["cell_lines"]) == 30
    assert plan.dims["depth"] == (250, 500, 1000) and plan.dims["reps"] == (2, 3, 4)
    designs = plan.designs()
    costs = [plan.cost_of(d) for d in designs]
    assert costs == sorted(costs) and math.isfinite(costs[-1])


def test_priors_in_a_plan_reach_the_simulation(tmp_path):
    text = PLAN + "\n[priors]\ntau = {mu = -0.5, sigma = 0.01}\n"
    plan = load_genome_plan(_plan_file(tmp_path, text))
    truth = gm.simulate(ScreenDesign(2, 300, 2, 3, 250), 0, plan.settings())[0]
    assert truth["hyper"]["tau"] == pytest.approx(math.exp(-0.5), rel=0.05)
    shutil.rmtree(tmp_path)


def test_genome_designs_are_judged_by_the_calibration_engine():
    """A design's screens go through the engine every study and plan uses: uniform PITs
    pass, PITs squeezed to the middle (an over-wide posterior) fail in the group they are
    in, and too few screens are "not checked"."""
    from sbc.plan.genome_screen import screen_tables
    from sbc.plan.planner import calibration_verdict

    rng = np.random.default_rng(5)

    def records(n, squeeze):
        return [{"rep": r, "simulate_seconds": 0.1, "fit_seconds": 0.2,
                 "pit_beta": [float(rng.uniform())],
                 "pit_u": [float(0.5 + (rng.uniform() - 0.5) * squeeze)],
                 "pit_gamma": []} for r in range(n)]

    good = calibration_verdict(*screen_tables(records(200, 1.0), "m", "d", True), 0.01)
    bad = calibration_verdict(*screen_tables(records(200, 0.4), "m", "d", True), 0.01)
    few = calibration_verdict(*screen_tables(records(5, 1.0), "m", "d", True), 0.01)
    assert good[0] == "calibrated" and good[1] > 0.01
    assert bad[0] == "miscalibrated" and bad[2] == "u" and bad[1] < 0.01
    assert few[0] == "not checked"
