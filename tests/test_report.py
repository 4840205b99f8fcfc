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
