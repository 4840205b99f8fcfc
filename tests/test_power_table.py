"""benchmarks/power.md agrees with benchmarks/power.json (both written by
benchmarks/power.py), and every test's size in the study is checked against the binomial 99 %
interval around 0.05 of the study's null studies.

Fast: reads the two files, runs nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
CELL = re.compile(r"^(-?\d+\.\d+) ± (\d+\.\d+)( !)?$")
# Tests whose p-values are valid by construction (exact, or Monte Carlo against an independent
# null sample): their size at nominal 0.05 must hold.  pot_c, prit_c (Cauchy combinations of
# dependent p-values) and chi2_10 (asymptotic chi2(9)) only approximate theirs: a size of
# theirs outside the interval must be flagged in the table, and only their size-corrected
# power is comparable.  The candidates for the default test are all calibrated on a Monte Carlo
# null (valid by construction).
VALID_P = ("sbc_gamma", "piet_c", "ks", "ad", "minp_g_ad", "minp_g_ad_pot", "cauchy_g_ad_pot",
           "ledwina", "neyman3", "berk_jones", "minp_ad_bj_n3")


@pytest.fixture(scope="module")
def data() -> dict:
    return json.loads((BENCH / "power.json").read_text())


@pytest.fixture(scope="module")
def tables() -> dict[tuple[str, str], list[list[str]]]:
    """Markdown tables of power.md keyed by (## section, the line above the table)."""
    out: dict[tuple[str, str], list[list[str]]] = {}
    section = caption = ""
    for line in (BENCH / "power.md").read_text().splitlines():
        if line.startswith("## "):
            section, caption = line[3:].strip(), ""
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            out.setdefault((section, caption), []).append(cells)
        elif line.strip():
            caption = line.strip()
    return out


def _interval(n_null: int) -> tuple[float, float]:
    lo = stats.binom.ppf(0.005, n_null, 0.05) / n_null
    hi = stats.binom.ppf(0.995, n_null, 0.05) / n_null
    return lo, hi


def _same(cell: str, value: float, sd: float) -> bool:
    m = CELL.match(cell)
    assert m, f"not a 'value ± sd' cell: {cell!r}"
    return abs(float(m[1]) - value) <= 5e-4 + 1e-9 and abs(float(m[2]) - sd) <= 5e-4 + 1e-9


def _body(table: list[list[str]], tests: list[str]) -> dict[str, list[str]]:
    head, *rows = table
    assert head[1:] == tests
    return {r[0]: r[1:] for r in rows}


def test_power_tables_match_json(data, tables):
    tests, ns = data["tests"], data["settings"]["ns"]
    for d in data["departures"]:
        for prefix, key, sd_key, size_key in (
                ("Size-corrected power", "corrected", "corrected_sd", "size_corrected"),
                ("Power at nominal 0.05", "nominal", "nominal_sd", "size_nominal")):
            found = [t for (sec, cap), t in tables.items() if sec == d and cap.startswith(prefix)]
            assert len(found) == 1, (d, prefix)
            body = _body(found[0], tests)
            for n in ns:
                for t, cell in zip(tests, body[str(n)]):
                    r = data["power"][d][str(n)][t]
                    assert _same(cell, r[key], r[sd_key]), (d, prefix, n, t, cell)
            size_row = next(v for k, v in body.items() if k.startswith("null size"))
            for t, cell in zip(tests, size_row):
                want = [data["size"][t][str(n)][size_key] for n in ns]
                got = [float(x) for x in cell.split(" / ")]
                assert got == pytest.approx(want, abs=5e-4 + 1e-9), (d, prefix, t)


def test_size_table_matches_json(data, tables):
    tests, ns = data["tests"], data["settings"]["ns"]
    found = [t for (sec, _), t in tables.items() if sec.startswith("Null:")]
    assert len(found) == 1
    body = _body(found[0], tests)
    lo, hi = _interval(data["settings"]["n_null"])
    assert data["size_interval99"] == pytest.approx([lo, hi])
    for n in ns:
        for t, cell in zip(tests, body[str(n)]):
            z = data["size"][t][str(n)]
            assert _same(cell, z["size_nominal"], z["size_sd"]), (n, t, cell)
            outside = not lo <= z["size_nominal"] <= hi
            assert z["within99"] is not outside, (n, t)
            # A size outside the interval is flagged in the table, and only then.
            assert cell.endswith(" !") is outside, (n, t, cell)


def test_best_table_matches_json(data, tables):
    ns = data["settings"]["ns"]
    found = [t for (sec, _), t in tables.items() if sec.startswith("Best test")]
    assert len(found) == 1
    head, *rows = found[0]
    assert head[1:] == [f"n={n}" for n in ns]
    assert [r[0] for r in rows] == list(data["departures"])
    for d, *cells in rows:
        for n, cell in zip(ns, cells):
            r = data["power"][d][str(n)]
            assert cell.split(", ") == [t for t in data["tests"] if r[t]["best_within_mc"]]


@pytest.mark.parametrize("test", VALID_P)
def test_valid_p_values_hold_their_size(data, test):
    """The size at nominal 0.05 of every test with a valid p-value, sbc's included, lies in the
    binomial 99 % interval around 0.05 for the study's number of null studies."""
    lo, hi = _interval(data["settings"]["n_null"])
    for n, z in data["size"][test].items():
        assert lo <= z["size_nominal"] <= hi, (test, n, z["size_nominal"], (lo, hi))


def test_every_size_checked_or_flagged(data):
    """Every test's size is inside the 99 % interval or listed as miscalibrated (and then
    only a test whose p-value is approximate); the size-corrected level is exactly 0.05."""
    lo, hi = _interval(data["settings"]["n_null"])
    flagged = {t: set(v) for t, v in data["size_flagged"].items()}
    for t in data["tests"]:
        for n, z in data["size"][t].items():
            inside = lo <= z["size_nominal"] <= hi
            assert inside or int(n) in flagged.get(t, set()), (t, n)
            assert inside or t not in VALID_P, (t, n)
            assert z["size_corrected"] == pytest.approx(0.05, abs=1e-9), (t, n)


def test_default_table_matches_json(data, tables):
    """The table of "Which test is the default" agrees with the per-cell results: cells within
    MC error of the best single test, the worst deficit and where, the sizes, the cost ratios."""
    tests, ns = data["tests"], data["settings"]["ns"]
    refs = data["reference_tests"]
    found = [t for (sec, cap), t in tables.items()
             if sec == "Which test is the default" and cap.startswith("Candidates against")]
    assert len(found) == 1
    head, *rows = found[0]
    assert head[:3] == ["test", "within MC error of the best", "worst deficit (cell)"]
    assert [r[0] for r in rows] == tests
    cells = [(d, str(n)) for d in data["departures"] for n in ns]
    cost = data["engine_cost"]
    for name, within, worst, mean, size, cold, warm in rows:
        res = [data["power"][d][n] for d, n in cells]
        for r in res:  # "best" is the best single test, and within is 2 paired sd of it
            best = max(refs, key=lambda t: r[t]["corrected"])
            assert r[name]["best_single"] == best
            gap = r[best]["corrected"] - r[name]["corrected"]
            assert r[name]["best_within_mc"] is (gap <= data["settings"]["z_tie"]
                                                  * r[name]["minus_best_sd"] + 1e-12)
        assert within == f"{sum(r[name]['best_within_mc'] for r in res)} / {len(cells)}"
        k = min(range(len(res)), key=lambda i: res[i][name]["minus_best"])
        assert worst.startswith(f"{res[k][name]['minus_best']:+.3f} ± "
                                f"{res[k][name]['minus_best_sd']:.3f} ({cells[k][0]} n={cells[k][1]})")
        assert mean == f"{np.mean([r[name]['minus_best'] for r in res]):+.3f}"
        sizes = [float(x) for x in size.rstrip(" !").split(" / ")]
        assert sizes == pytest.approx([data["size"][name][str(n)]["size_nominal"] for n in ns],
                                      abs=5e-4 + 1e-9)
        if name in cost:
            for cell, key in ((cold, "cold_s"), (warm, "warm_s")):
                ratios = [cost[name][c][key] / cost["sbc_gamma"][c][key] for c in cost[name]]
                assert cell == f"{min(ratios):.1f}-{max(ratios):.1f}x"
        else:
            assert cold == warm == "-"
    assert set(cost) == {"sbc_gamma", *data["candidates"]}


def test_the_docs_power_block_is_the_committed_power_json():
    """docs/user_guide/report.md's power table is tools/readme.py's rendering of power.json,
    and it names the test the engine uses as the default."""
    import importlib.util

    import sbc.stats
    import sbc.uniformity

    tool_path = BENCH.parent / "tools" / "readme.py"
    spec = importlib.util.spec_from_file_location("readme_tool", tool_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    page = tool.BLOCKS["power"].page
    text = page.read_text()
    assert tool.render(text, ["power"]) == text, \
        "the power block of docs/user_guide/report.md is stale: run python tools/readme.py"
    assert "| `minp_ad_bj_n3` | default (`sbc.stats.rank_test`) |" in text
    # the row called the default is the engine's default test
    u = np.random.default_rng(5).uniform(size=(3, 40))
    assert np.array_equal(sbc.stats.rank_test_pvalues(u),
                          sbc.uniformity.combined_uniformity_pvalues(u))
