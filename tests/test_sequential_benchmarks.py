"""benchmarks/sequential_bug.py and sequential_split.py measure what they say: the former's
vectorised sequential study stops where the production one (:func:`sbc.stopping.decide_cell`)
does and its matched level gives the stated false-alarm rate; the latter's production split
is sbc.sequential's, with its pass point; each committed .md renders the committed .json.

Fast: synthetic ranks, no fits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import sequential_bug as sb  # noqa: E402
import sequential_split as ss  # noqa: E402

SHAPES = {"Intercept": 1, "1|gene": 3, "1|cell_line": 4, "sigma": 1}


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(sb, "STUDIES", 30)
    monkeypatch.setattr(sb, "CHECKED", 30)


def _studies(shift: float, seed: int) -> dict:
    """Synthetic rank sets of the SHAPES groups, the Intercept shifted by ``shift`` sds."""
    rng = np.random.default_rng(seed)
    groups = {g: rng.uniform(size=(sb.LENGTH * 2, k)) for g, k in SHAPES.items()}
    groups["Intercept"] = norm.cdf(norm.ppf(groups["Intercept"]) - shift)
    return sb.draw_studies(groups, rng)


@pytest.mark.parametrize("shift", [0.0, 0.45])
def test_the_benchmark_stops_where_decide_cell_stops(small, shift):
    studies = _studies(shift, seed=3)
    point = sb.sq.pass_point(len(studies), sb.ALPHA, 0.8, 0.5, 0.2, sb.LENGTH).n
    p = {n: sb.family_minp(studies, n, sb.sq.LOOK_SHARE * sb.ALPHA)
         for n in sorted(set(sb.SCHEDULE) | {point})}
    found = sb.sequential_detection(studies, p, point)
    assert sb.check_against_production(studies, found, point) == 30
    if shift:  # the check compares something: some studies fail before the pass point
        assert np.sum(found < point) >= 10


def test_a_wrong_stop_is_caught(small):
    """The check can fail: a stop moved by one look is reported."""
    studies = _studies(0.45, seed=3)
    point = sb.sq.pass_point(len(studies), sb.ALPHA, 0.8, 0.5, 0.2, sb.LENGTH).n
    p = {n: sb.family_minp(studies, n, sb.sq.LOOK_SHARE * sb.ALPHA)
         for n in sorted(set(sb.SCHEDULE) | {point})}
    found = sb.sequential_detection(studies, p, point)
    early = np.flatnonzero(found < point)[0]
    found[early] = point - 1
    with pytest.raises(AssertionError, match=f"study {early}"):
        sb.check_against_production(studies, found, point)


def test_the_matched_level_gives_the_stated_rate(monkeypatch):
    monkeypatch.setattr(sb, "STUDIES", 2000)
    rng = np.random.default_rng(5)
    p = {n: rng.uniform(size=2000) ** (1 + i / 4) for i, n in enumerate(sb.SCHEDULE)}
    level = sb.matched_level(p, 0.05)
    rate = np.mean(np.isfinite(sb.schedule_detection(p, level)))
    assert rate == pytest.approx(0.05, abs=0.5 / 2000)
    assert np.mean(np.isfinite(sb.schedule_detection(p, 0.05))) > 0.1  # looks add up


def test_the_committed_markdown_renders_the_committed_json():
    res = json.loads((BENCH / "sequential_bug.json").read_text())
    assert (BENCH / "sequential_bug.md").read_text() == sb.markdown(res)


def test_the_split_benchmark_runs_the_production_split_with_its_pass_point():
    """sequential_split's "production" row is sbc.sequential's split, and its pass-point
    search gives sbc.sequential.pass_point's n on the same departure draws."""
    early, looks, final = ss.SPLITS["production"]
    assert (early, final) == (ss.sq.EARLY, ss.sq.FINAL) and tuple(looks) == ss.sq.LOOKS
    departures = {k: ss.Ranks(ss.sq.departure_ranks(k, size, ss.LIMIT))
                  for k, size in (("shift", 0.5), ("narrow", 0.2))}
    ours = ss.pass_point(ss.SPLITS["production"], departures)
    assert ours == ss.sq.pass_point(ss.GROUPS, ss.ALPHA, 0.8, 0.5, 0.2, ss.LIMIT).n


def test_the_committed_split_markdown_renders_the_committed_json():
    res = json.loads((BENCH / "sequential_split.json").read_text())
    assert (BENCH / "sequential_split.md").read_text() == ss.markdown(res)
