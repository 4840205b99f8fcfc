"""Tests for the render layer: the plan page from a small table, escaping of user text in
every template, figures as Figure objects built without pyplot, and the templates shipped
as package data."""

from __future__ import annotations

import base64
import fnmatch
import math
import re
import subprocess
import sys
import tomllib
from importlib.resources import files
from types import SimpleNamespace

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sbc import render
from sbc.plots import plan_curves_figure
from sbc.report import build_report
from sbc.summarize import Badge, StudySummary, study_summary
from support import ROOT
from test_calibration import EXACT, synthetic_tables

EVIL = "<script>alert(1)</script>"


def _design(c: int, g: int, r: int) -> SimpleNamespace:
    return SimpleNamespace(n_cell_lines=c, n_genes=g, n_reps=r, label=f"{c}x{g}x{r}")


def _small_plan(name: str = "small plan", unit: str = "EUR") -> SimpleNamespace:
    """Stands in for sbc.plan.Plan: the attributes plan_page reads."""
    target = SimpleNamespace(describe=lambda: "posterior sd of mu < 0.3 (each element)")
    search = SimpleNamespace(confidence=0.95, max_simulations=40, calibration_simulations=20,
                             batch=10, max_flagged=0.1, alpha=0.01)
    return SimpleNamespace(name=name, description="", model="normal_mean", targets=(target,),
                           probability=0.8, cost=SimpleNamespace(unit=unit), search=search,
                           monotone=("cell_lines", "reps"))


def _small_table() -> pd.DataFrame:
    rows = []
    for i, (c, r) in enumerate([(5, 2), (5, 8), (10, 2), (10, 8)]):
        p = [0.1, 0.5, 0.7, 0.95][i]
        rows.append({"design": f"{c}x1x{r}", "cell_lines": c, "genes": 1, "reps": r,
                     "rows": c * r, "cost": 10.0 * c + c * r, "status": "pass" if p > 0.8 else "fail",
                     "simulations": 20, "p_success": p, "p_lower": p - 0.1, "p_upper": min(1, p + 0.1),
                     "posterior_sd": 0.3 / (i + 1), "calibration": "pass", "note": ""})
    return pd.DataFrame(rows)


FITS = {"used": 80, "new": 80, "full_grid": 240, "designs": 4, "separate": False,
        "saved_share": 1 - 80 / 240, "design_prior": "normal_mean (its prior)"}


def _recommended() -> SimpleNamespace:
    return SimpleNamespace(design=_design(10, 1, 8), cost=180.0, probability=0.95, lower=0.85,
                           upper=1.0, n=20, calibration="pass", calibration_n=20)


def _png_sources(html: str) -> list[bytes]:
    return [base64.b64decode(s) for s in
            re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)]


def test_plan_page_states_recommendation_table_and_method():
    html = render.plan_page(_small_plan(), _small_table(), _recommended(), FITS)
    assert "<h1>Design plan: small plan</h1>" in html
    assert "10 cell lines x 1 genes x 8 replicates</b> (cost 180 EUR)" in html
    assert "P(target met) = 0.95, 95% Wilson interval [0.85, 1.00] from 20 simulated" in html
    assert "Fits used: <b>80</b> (this run: 80) against <b>240</b>" in html
    assert "Saved: 67%." in html and "calibration fits" not in html
    assert "posterior sd of mu &lt; 0.3" in html
    assert "All designs" in html and "10x1x8" in html and "<th>rows</th>" not in html
    assert "Monotone in cell_lines, reps" in html and "Holm over parameter groups at 0.01" in html
    images = _png_sources(html)
    assert len(images) == 1 and images[0].startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in html and "http://" not in html


def test_plan_page_without_recommendation_says_so():
    html = render.plan_page(_small_plan(), _small_table(), None, dict(FITS, separate=True))
    assert "No design of the space meets the target" in html and "Recommended:" not in html
    assert "plus 20 calibration fits" in html


def test_plan_page_escapes_user_text():
    plan = _small_plan(name=EVIL, unit="<b>EUR</b>")
    plan.description = "a & b <i>"
    html = render.plan_page(plan, _small_table().assign(note=EVIL), _recommended(),
                            dict(FITS, design_prior="<img src=x>"))
    assert "<script" not in html.lower() and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;EUR&lt;/b&gt;" in html and "a &amp; b &lt;i&gt;" in html


def test_plan_curves_figure_has_a_panel_per_varied_dimension():
    figure = plan_curves_figure(_small_table(), 0.8)
    assert isinstance(figure, Figure)
    assert [ax.get_xlabel() for ax in figure.axes] == ["cell lines", "reps"]
    one = _small_table().query("reps == 2")
    assert [ax.get_xlabel() for ax in plan_curves_figure(one, 0.8).axes] == ["cell lines"]
    assert base64.b64decode(render.png_base64(figure)).startswith(b"\x89PNG\r\n\x1a\n")


def test_figures_are_built_without_pyplot_or_a_backend_switch():
    code = ("import sys, matplotlib; before = matplotlib.get_backend(); sys.path[:0] = "
            f"[{str(ROOT / 'tests')!r}]\n"
            "from test_calibration import EXACT, synthetic_tables\n"
            "from sbc.report import build_report\nfrom sbc import render\n"
            "reps, params = synthetic_tables(20, EXACT, seed=3)\n"
            "m = {'study': {'name': 's', 'models': ['m'], 'designs': ['2x2x2'], 'seed': 1}}\n"
            "report, _ = build_report(m, reps, params)\n"
            "figures = [p.figure for mm in report.models for d in mm.designs for p in d.plots]\n"
            "assert figures and all(type(f).__name__ == 'Figure' for f in figures)\n"
            "assert 'data:image/png' in render.report_html(report)\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
            "assert matplotlib.get_backend() == before\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    sources = "".join(p.read_text() for p in (ROOT / "sbc").rglob("*.py"))
    assert "matplotlib.use(" not in sources and "import matplotlib.pyplot" not in sources


def test_report_without_fits_lists_failed_fits():
    reps, params = synthetic_tables(12, EXACT, seed=4, failed=set(range(12)))
    manifest = {"study": {"name": EVIL, "models": ["m"], "designs": ["2x2x2"], "seed": 1}}
    report, cal = build_report(manifest, reps, params.iloc[0:0])
    html = render.report_html(report)
    assert cal is None and report.summary is None
    assert "No successful fits are stored" in html and "<h2>Failed fits</h2>" in html
    assert "<script" not in html


def test_badges_escape_their_text_and_only_known_statuses_colour():
    frame = pd.DataFrame({"verdict": [Badge("fail", EVIL, note="a<b")],
                          "odd": [Badge("x' onmouseover='1")], "n": [3], "p": [math.nan]})
    html = render.environment().get_template("_macros.html.j2").module.table(frame)
    assert "<script" not in html and "a&lt;b" in html and "onmouseover='1" not in html
    assert '<span class="badge fail">' in html and '<span class="badge ">' in html
    assert "<td>3</td><td></td>" in html


def test_summary_markdown_keeps_names_inside_table_cells():
    reps, params = synthetic_tables(40, dict(EXACT, sigma=(1, 0.3, 0.0)), seed=10,
                                    model="a|b")
    from sbc.calibration import calibrate

    manifest = {"study": {"name": "s", "models": ["a|b"]}}
    text = render.summary_markdown(study_summary(manifest, calibrate(reps, params)))
    rows = [line for line in text.splitlines() if line.startswith("| a")]
    assert rows and all(line.startswith("| a\\|b |") for line in rows)
    assert render.summary_markdown(StudySummary("s", ["m"], "sim")).endswith(
        "No successful fits stored.\n")


def test_templates_ship_as_package_data():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "sbc.render.templates" in setuptools["packages"]
    patterns = setuptools["package-data"]["sbc.render.templates"]
    shipped = [p.name for p in (files("sbc.render") / "templates").iterdir()
               if p.name != "__pycache__"]
    assert {"report.html.j2", "summary.md.j2", "plan.html.j2"} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


@pytest.mark.parametrize("name", ["report.html.j2", "plan.html.j2", "_page.html.j2"])
def test_html_templates_autoescape(name):
    assert render.environment().get_template(name).environment.autoescape(name)
