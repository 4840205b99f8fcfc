"""Validation suite support: collect each result and write tests/validation/RESULTS.md.

Run with ``pytest -m slow tests/validation``.  The table is rewritten at the end of a session
that produced at least one result; fits are cached under tests/validation/.sbc_cache, so a
rerun with unchanged models only recomputes statistics.

Each bug model in models/ repeats the build code of its correct twin on purpose: a model's
source travels to the workers as text and runs on its own (sbc.spec), so it cannot import a
sibling file, and the twin's diff is then exactly the bug.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RESULTS_FILE = HERE / "RESULTS.md"
CACHE_DIR = HERE / ".sbc_cache"

_ROWS: dict[str, list[dict]] = {"bugs": [], "controls": [], "false_alarms": []}


@pytest.fixture(scope="session")
def validation_results() -> dict[str, list[dict]]:
    """Tests append rows here (sections: bugs, controls, false_alarms)."""
    return _ROWS


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return CACHE_DIR


def _table(rows: list[dict]) -> str:
    if not rows:
        return "_not run in this session_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session, exitstatus):
    if not any(_ROWS.values()):
        return
    text = (
        "# Validation results\n\n"
        f"Written by `pytest -m slow tests/validation` on {time.strftime('%Y-%m-%d %H:%M')}.\n"
        "A bug counts as detected at n simulations when `check_calibration` of the buggy\n"
        "model fails (the calibration engine: Holm over parameter groups, family-wise alpha\n"
        "0.05) and the correct twin, run with the same study seed and n, passes; n grows\n"
        "through the bug's schedule (exact backend 25, 50, 100, 200, 400; the flagship\n"
        "`crispr_screen` bugs 25, 50 with nutpie at the default settings; cached fits are\n"
        "extended, not refitted). `flagged fits`: share of successful fits with a sampler\n"
        "warning after the rescue. The controls are one family: each runs at alpha 0.05 / (number\n"
        "of controls), so the chance of any false 'fail' among them is at most 5 %.\n\n"
        "## Known bugs\n\n" + _table(_ROWS["bugs"]) +
        "\n## Correct models (controls)\n\n" + _table(_ROWS["controls"]) +
        "\n## False-alarm rate of assert_calibrated (exact backend, many seeds)\n\n" +
        _table(_ROWS["false_alarms"]))
    RESULTS_FILE.write_text(text)
