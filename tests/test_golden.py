"""The golden run (tests/golden/make_golden.py): a small study, a small plan and a small genome
plan must store and decide exactly what golden.json records, so a restructuring that changes any stored rank,
truth, status, statistic, verdict or plan decision fails here.  A deliberate change
regenerates golden.json (``.venv/bin/python tests/golden/make_golden.py``) in the commit
that makes it, and says why."""

from __future__ import annotations

import json
import sys

import pytest

from support import ROOT

sys.path.insert(0, str(ROOT / "tests" / "golden"))
import make_golden

GOLDEN = json.loads(make_golden.GOLDEN.read_text())


def _compare(got: dict, want: dict) -> None:
    for key in want:
        assert got[key] == want[key], f"golden run differs in '{key}'"


def test_golden_exact_study(tmp_path):
    _compare(make_golden.run_study(make_golden.EXACT_STUDY, tmp_path / "exact"),
             GOLDEN["exact"])


def test_golden_plan(tmp_path):
    _compare(make_golden.run_plan(tmp_path / "plan"), GOLDEN["plan"])


def test_golden_genome_plan(tmp_path):
    _compare(make_golden.run_genome_plan(tmp_path / "genome"), GOLDEN["genome_plan"])


@pytest.mark.slow
def test_golden_nutpie_study(tmp_path):
    if make_golden.environment() != GOLDEN["environment"]:
        pytest.skip("nutpie's draws depend on the machine and library versions; golden.json "
                    f"was written on {GOLDEN['environment']}")
    _compare(make_golden.run_study(make_golden.NUTPIE_STUDY, tmp_path / "nutpie"),
             GOLDEN["nutpie"])
