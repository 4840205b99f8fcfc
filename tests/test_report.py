"""Tests for the report: escaping, embedded images, summary files, and tools/check_report.py."""

from __future__ import annotations

import base64
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sbc import render
from sbc.replicate import RECORD_SCHEMA
from sbc.report import build_report, write_report
from sbc.store import Store
from test_calibration import EXACT, QUANTILE_COLUMNS, synthetic_tables

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>alert(1)</script>"


def _page(body: str) -> str:
    """A minimal page around ``body`` (HTML), for the checker's own tests."""
    return f"<!DOCTYPE html><html lang='en'><head><title>t</title></head><body>{body}</body></html>"


def _manifest(name: str = "study", models=("m",), simulate_model=None) -> dict:
    return {"study": {"name": name, "models": list(models), "designs": ["10x3x3"], "seed": 1,
                      "simulate_model": simulate_model, "thin": "auto",
                      "sampler": {"name": "exact"}}, "fingerprint": "x"}


def _records(reps, params, seed: int = 1) -> list[dict]:
    """Replicate records as run_batch writes them, from synthetic tables, with the seeds the
    study (``_manifest``: seed 1) derives for them, so the store counts them as its own."""
    import zlib

    records = []
    for rep in reps.itertuples():
        key = [zlib.crc32(rep.model.encode()), zlib.crc32(rep.design.encode()), int(rep.rep)]
        base = {"schema": RECORD_SCHEMA, "model": rep.model, "design": rep.design,
                "rep": int(rep.rep), "status": rep.status, "error": rep.error,
                "wall_seconds": 0.1, "seed_entropy": seed, "seed_key": key}
        if rep.status != "ok":
            records.append(base)
            continue
        rows = params[params["rep"] == rep.rep]
        columns = ["name", "group", "truth", "rank", "mean", "sd", *QUANTILE_COLUMNS]
        records.append({**base, "n_ranked": int(rep.n_ranked), "n_draws": 100, "thin": 1,
                        "n_divergent": int(rep.n_divergent), "n_treedepth": 0,
                        "ess_bulk_min": 500.0, "ess_tail_min": 500.0, "rhat_max": 1.0,
                        "flag_divergent": bool(rep.flag_divergent), "flag_low_ess": False,
                        "flag_rhat": False,
                        "parameters": {c: rows[c].tolist() for c in columns},
                        "quantities": {"loglik": {"truth": -10.0, "rank": int(rep.rep % 100),
                                                  "mean": -11.0, "sd": 1.0}}})
    return records


@pytest.fixture(scope="module")
def evil_body():
    reps, params = synthetic_tables(40, {"sigma": (1, 1.0, 0.0), "alpha_g": (3, 1.0, 0.0)},
                                    seed=11, model=EVIL)
    report, summary = build_report(_manifest(EVIL, (EVIL,), "other<b>"), reps, params)
    return render.report_html(report), summary


def test_report_escapes_study_and_model_names(evil_body):
    html, _ = evil_body
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "other<b>" not in html and "other&lt;b&gt;" in html


def test_report_says_when_simulator_differs(evil_body):
    html, _ = evil_body
    assert "Data are simulated from model other&lt;b&gt;" in html


def test_report_embeds_png_images(evil_body):
    html, _ = evil_body
    sources = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    assert len(sources) >= 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in html and "https://" not in html  # opens without network


def test_write_report_writes_summary_files(tmp_path):
    reps, params = synthetic_tables(30, dict(EXACT, sigma=(1, 0.3, 0.0)), seed=12, failed={2})
    store = Store(tmp_path)
    store.write_text("study.json", __import__("json").dumps(_manifest()))
    for record in _records(reps, params):
        store.write_record(record)
    path = write_report(store)
    html = path.read_text()
    assert "Overall:" in html and "sigma" in html
    csv = (tmp_path / "summary.csv").read_text().splitlines()
    header = csv[0].split(",")
    for column in ("model", "design", "name", "group", "kind", "p_value", "shape", "cov90",
                   "cov90_lo", "cov90_hi", "rmse", "z_sd", "contraction_median",
                   "group_p_holm", "verdict", "verdict_without_flagged"):
        assert column in header, column
    assert len(csv) == 1 + 8 + 1  # 8 parameters and the loglik quantity
    md = (tmp_path / "summary.md").read_text()
    assert "**Overall: fail**" in md and "sigma" in md


def test_check_report_without_chromium_exits_2(tmp_path):
    report = tmp_path / "report.html"
    report.write_text(_page("<p>x</p>"))
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "check_report.py"), str(report),
                          "--chromium", "/nonexistent/chromium"], capture_output=True, text=True)
    assert run.returncode == 2
    assert "apt-get install -y chromium" in run.stderr


# CI (.ci/run) installs Chromium (make browser) and sets SBC_REQUIRE_CHROMIUM=1, so there a
# missing browser fails this test instead of skipping it.
@pytest.mark.skipif(shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists()
                    and not os.environ.get("SBC_REQUIRE_CHROMIUM"),
                    reason="Chromium not installed (make browser, or apt-get install -y chromium)")
def test_check_report_accepts_report_and_rejects_broken_image(tmp_path, evil_body):
    html, _ = evil_body
    good = tmp_path / "good.html"
    good.write_text(html)
    tool = [sys.executable, str(ROOT / "tools" / "check_report.py")]
    run = subprocess.run([*tool, str(good)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "good.png").read_bytes().startswith(b"\x89PNG")
    bad = tmp_path / "bad.html"
    bad.write_text(_page('<img alt="x" src="data:image/png;base64,AAAA">'))
    run = subprocess.run([*tool, str(bad)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "not a PNG" in run.stdout


# --- read at a glance: glossary, p-value floors, coverage error, outliers, size ------------------


@pytest.fixture(scope="module")
def failing_report():
    """A study report with a failing, overconfident parameter (sigma) and an exact group."""
    reps, params = synthetic_tables(60, dict(EXACT, sigma=(1, 0.3, 0.0)), seed=12)
    report, cal = build_report(_manifest(), reps, params)
    return report, cal, render.report_html(report)


class _Headers(__import__("html.parser").parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.headers: list[tuple[str, str | None]] = []
        self._open: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag == "th":
            self._open, self._text = dict(attrs).get("title"), ""

    def handle_data(self, data):
        if self._open is not None or self._text is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "th":
            self.headers.append((self._text.strip(), self._open))
            self._open, self._text = None, ""


def test_every_column_of_the_report_is_explained(failing_report):
    report, _, html = failing_report
    parser = _Headers()
    parser.feed(html)
    assert len(parser.headers) > 40
    missing = sorted({h for h, title in parser.headers if not title})
    assert not missing, f"columns without a tooltip: {missing}"
    assert all(report.glossary.values()) and '<h2 id="glossary">' in html
    from markupsafe import escape

    assert "cov 80%" in report.glossary and not any("±" in c for c in report.glossary)
    for column in report.glossary:
        assert f"<dt>{escape(column)}</dt>" in html


def test_p_values_at_the_monte_carlo_floor_are_shown_as_bounds(failing_report):
    from sbc.summarize import PValue

    assert PValue(1.45e-05, bound=True).text == "< 1.5e-05"
    assert PValue(0.2, bound=True).text == "< 0.2"
    assert PValue(1.45e-05).text == "1.5e-05" and PValue(1.0, bound=True).text == "1"
    assert PValue(1.51e-05, bound=True).text == "< 1.6e-05"  # a bound is rounded up
    assert PValue(float("nan")).text == "n/a"  # as in every verdict and summary
    _, cal, html = failing_report
    floor = 1 / (cal.n_sim + 1)
    sigma = cal.scalars.query("name == 'sigma'").iloc[0]
    assert sigma["p_value"] <= floor * (1 + 1e-9)  # overconfident: the test's floor
    assert f"<td>&lt; {PValue(floor, True).text[2:]}</td>" in html  # "< 0.00025"
    assert f"<td>{floor:.3g}</td>" not in html  # never shown as if it were an estimate


def test_coverage_columns_carry_their_monte_carlo_error(failing_report):
    from sbc.report_tables import coverage_header

    report, _, _ = failing_report
    groups = report.models[0].designs[0].groups
    assert coverage_header(0.9, 60) == "cov 90% ±0.076"  # 1.96 sqrt(0.9 0.1 / 60)
    assert {"cov 50% ±0.127", "cov 80% ±0.101", "cov 90% ±0.076", "cov 95% ±0.055"} \
        <= set(groups.columns)


def test_the_most_extreme_fits_are_listed_with_their_replicate(failing_report):
    report, _, html = failing_report
    design = report.models[0].designs[0]
    table = design.extremes
    assert list(table.columns[:4]) == ["parameter", "replicate", "listed for", "u"]
    by_z = table[table["listed for"] == "largest |z|"]
    assert len(by_z) == 10 and (by_z["z"].abs().diff().dropna() <= 0).all()  # largest first
    assert table["parameter"].iloc[0] == "sigma"  # the overconfident one
    # the smallest and the largest fractional ranks are listed too, each fit once
    block = _block(failing_report, report.models[0].designs[0])
    assert block["u"].min() in set(table["u"]) and block["u"].max() in set(table["u"])
    assert set(table["listed for"]) <= {"largest |z|", "smallest u", "largest u"}
    assert not table.duplicated(["parameter", "replicate"]).any()
    assert "The most extreme fits" in html and "<td class=\"l\">smallest u</td>" in html


def _block(failing, design):
    """The parameters table (with fractional ranks) of one model x design of the report."""
    from sbc.calibration import with_fractional_ranks

    reps, params = synthetic_tables(60, dict(EXACT, sigma=(1, 0.3, 0.0)), seed=12)
    u = with_fractional_ranks(params, reps)
    return u[(u["model"] == design.model) & (u["design"] == design.design)]


def test_the_glossary_has_one_entry_per_column_whatever_its_monte_carlo_error():
    from sbc.glossary import canonical, explain

    assert canonical("cov 90% ±0.037") == "cov 90%" and canonical("p clean") == "p clean"
    assert explain("cov 90% ±0.037") == explain("cov 90%") != ""


def test_report_figures_are_small_palette_pngs(failing_report):
    import io

    from matplotlib.figure import Figure
    from PIL import Image

    report, _, _ = failing_report
    figure = report.models[0].designs[0].plots[0].figure
    assert isinstance(figure, Figure)
    image = Image.open(io.BytesIO(base64.b64decode(render.png_base64(figure))))
    assert image.mode == "P"  # a palette: a few KiB per figure, not tens
    rgba = io.BytesIO()
    figure.savefig(rgba, format="png", dpi="figure")
    assert len(base64.b64decode(render.png_base64(figure))) < 0.7 * len(rgba.getvalue())
    titles = [p.alt for p in report.models[0].designs[0].plots]
    assert "coverage difference over all widths" in titles


def test_coverage_across_designs_shows_every_level_with_its_monte_carlo_range():
    """The across-design coverage figure has one panel per level (50/80/90/95 %), each with
    the nominal line and the binomial 95 % range of a calibrated scalar, and an axis that
    takes in that range (so noise inside it never fills the panel as if it were a trend)."""
    import pandas as pd
    from scipy.stats import binom

    tables = [synthetic_tables(40, EXACT, seed=s, design=d)
              for s, d in ((21, "10x3x3"), (22, "20x5x3"))]
    reps = pd.concat([t[0] for t in tables], ignore_index=True)
    params = pd.concat([t[1] for t in tables], ignore_index=True)
    manifest = _manifest()
    manifest["study"]["designs"] = ["10x3x3", "20x5x3"]
    report, _ = build_report(manifest, reps, params)
    coverage = report.models[0].trend.coverage
    axes = coverage.figure.axes
    assert [ax.get_title() for ax in axes] == [f"{lv}% interval coverage"
                                             for lv in (50, 80, 90, 95)]
    for ax, level in zip(axes, (0.5, 0.8, 0.9, 0.95)):
        nominal = [line for line in ax.get_lines() if list(line.get_ydata()) == [level, level]]
        assert nominal, f"no nominal line at {level}"
        lo, hi = ax.get_ylim()
        assert lo <= binom.ppf(0.025, 40, level) / 40 and hi >= binom.ppf(0.975, 40, level) / 40
        assert hi - lo < 0.6  # fitted to the data and its range, not 0..1
    assert "coverage across designs" in render.report_html(report)


def test_a_synthetic_report_stays_small(failing_report):
    """Seven figures and every table of one model x design in under 125 kB: palette PNGs at
    the plots' own resolution (full-colour PNGs alone would exceed it)."""
    _, _, html = failing_report
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 7
    assert max(len(i) for i in images) < 24_000
    assert len(html.encode()) < 125_000
