"""Anytime-valid sequential uniformity tests (sbc.sequential): level under continuous
monitoring, power against the usual failure shapes, and predictability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sbc.sequential import log_eprocess, log_group_eprocess, sequential_test


def test_level_holds_under_continuous_monitoring():
    """1,000 calibrated studies, each watched after every one of 300 replicates, a family of
    4 groups (a scalar, a group of 3 strongly dependent elements, two more scalars) at
    alpha = 0.05.  Ville's inequality bounds the family-wise rate of ever rejecting by 0.05.
    The test fails above 65 rejections: with a true rate of 0.05 that happens with
    probability 0.015 (binomial), and a fixed-n test looked at after every replicate rejects
    far more often than that (see the next test)."""
    rng = np.random.default_rng(2027)
    rejections = 0
    for _ in range(1000):
        base = rng.uniform(size=300)
        dependent = np.column_stack([(base + shift) % 1.0 for shift in (0.0, 0.31, 0.62)])
        groups = {"a": rng.uniform(size=300), "b": dependent, "c": rng.uniform(size=300),
                  "d": rng.uniform(size=300)}
        rejections += sequential_test(groups, alpha=0.05).rejects
    assert rejections <= 65, rejections


def test_peeking_at_a_fixed_n_test_would_not_hold_its_level():
    """The reason for e-processes: a pointwise 5 % test looked at after every replicate
    rejects a calibrated scalar far more often than 5 % (here: a z-test of the mean rank)."""
    rng = np.random.default_rng(11)
    peeking = 0
    for _ in range(300):
        u = rng.uniform(size=300)
        t = np.arange(1, 301)
        z = (np.cumsum(u) / t - 0.5) / np.sqrt(1 / 12 / t)
        peeking += bool(np.any(np.abs(z[9:]) > 1.96))
    assert peeking / 300 > 0.2


@pytest.mark.parametrize("shape, draw", [
    ("too narrow (U)", lambda rng, n: rng.beta(0.6, 0.6, size=n)),
    ("too wide (hump)", lambda rng, n: rng.beta(2.0, 2.0, size=n)),
    ("biased (slope)", lambda rng, n: rng.uniform(size=n) ** 1.6),
])
def test_the_usual_failure_shapes_are_detected(shape, draw):
    """Each departure is caught within 300 replicates in at least 90 % of 100 studies
    (family of 4 groups, alpha = 0.05), half of them within 150.  (The partitions were chosen
    on other seeds; this seed was not used to choose them.)"""
    rng = np.random.default_rng(2028)
    stops = []
    for _ in range(100):
        groups = {"bad": draw(rng, 300), **{g: rng.uniform(size=300) for g in "xyz"}}
        result = sequential_test(groups, alpha=0.05)
        stops.append(result.stopped_at if result.rejects and "bad" in result.rejected
                     else np.inf)
    assert np.mean(np.isfinite(stops)) >= 0.9, (shape, stops)
    assert np.median(stops) <= 150, (shape, np.median(stops))


def test_the_eprocess_is_predictable_so_prefixes_agree():
    """E_t uses u_1..u_t only: the process of a prefix is the prefix of the process, so a
    study stops at the same replicate whatever arrives later (and however it is run)."""
    u = np.random.default_rng(3).uniform(size=120)
    full = log_eprocess(u)
    np.testing.assert_allclose(log_eprocess(u[:40]), full[:40])
    group = np.random.default_rng(4).uniform(size=(120, 3))
    np.testing.assert_allclose(log_group_eprocess(group[:50]), log_group_eprocess(group)[:50])


def test_the_first_crossing_and_the_groups_that_crossed_are_reported():
    rng = np.random.default_rng(8)
    groups = {"bad": rng.beta(0.4, 0.4, size=300), "fine": rng.uniform(size=300)}
    result = sequential_test(groups, alpha=0.05)
    assert result.threshold == 40.0
    assert result.rejected == ("bad",)
    crossing = np.flatnonzero(result.log_e["bad"] >= np.log(40.0))[0] + 1
    assert result.stopped_at == crossing
    assert result.max_e("bad") >= 40.0 > result.max_e("fine")


@pytest.mark.parametrize("bad", [np.array([0.2, np.nan]), np.array([0.2, 1.5]),
                                 np.ones((2, 2, 2))])
def test_bad_ranks_are_refused(bad):
    with pytest.raises(ValueError):
        log_eprocess(bad)


def test_groups_must_share_their_replicates():
    with pytest.raises(ValueError, match="same replicates"):
        sequential_test({"a": np.full(10, 0.5), "b": np.full(12, 0.5)})


@pytest.mark.parametrize("groups", [1, 4, 8])
def test_the_pass_point_states_its_power_and_costs_what_a_fixed_study_of_equal_power_does(
        groups):
    """At the pass point the procedure reaches the stated power against each departure, and it
    needs at most 10 % more fits than a fixed-n study (one look at full alpha) of the same
    power: the price of watching 2 % of alpha after every replicate and spending 20 % on the
    interim looks (measured: 5 % for 1 group, 8 % for 4, 0 % for 8; before the interim looks,
    with 98 % at the pass point, it was within 3 %).  (Deterministic: the departures are
    simulated with a fixed seed.)"""
    from sbc.sequential import pass_point

    point = pass_point(groups, 0.05, 0.8, 0.5, 0.2, 1000)
    assert point.n is not None
    assert all(p >= 0.8 for p in point.power.values()), point.power
    fixed = max(point.fixed_n.values())
    assert point.n <= 1.10 * fixed, (point.n, point.fixed_n)
    # a smaller limit than the pass point: no pass point, and the power reached is stated
    short = pass_point(groups, 0.05, 0.8, 0.5, 0.2, point.n // 2)
    assert short.n is None and short.power["narrow"] < 0.8


@pytest.mark.parametrize("groups", [1, 4])
def test_the_pass_points_power_holds_on_fresh_departures(groups):
    """The pass point is chosen on one set of simulated departures (400 studies each), so its
    stated power could be a selection effect.  On 1,000 fresh studies per departure (other
    seeds) the procedure (e-process, interim looks, final look) at the pass point must reach
    the target within Monte Carlo error: at least 0.8 - 3 sd (binomial sd 0.013 at 1,000
    studies, so >= 0.76); a pass point whose power held only on its own draws fails this with
    probability near 1."""
    from sbc.sequential import departure_ranks, departures, detection_times, pass_point

    point = pass_point(groups, 0.05, 0.8, 0.5, 0.2, 1000)
    for kind, size in departures(0.5, 0.2).items():
        u = departure_ranks(kind, size, point.n, studies=1000, seed=2026_12_05 + groups)
        power = float((detection_times(u, groups, 0.05, point.n) <= point.n).mean())
        assert power >= 0.8 - 3 * math.sqrt(0.8 * 0.2 / 1000), (kind, power, point.n)


def test_a_pass_point_is_computed_once_per_machine_and_read_back_the_same(tmp_path,
                                                                          monkeypatch):
    """The pass point's Monte Carlo (seconds) is kept on disk: a new process (here: the
    in-process cache cleared) reads the same point without simulating; a torn or hostile
    cache file is recomputed, never trusted; another version of the code or libraries uses
    another file."""
    from sbc import sequential

    monkeypatch.setenv("SBC_CACHE_DIR", str(tmp_path))
    sequential.pass_point.cache_clear()
    first = sequential.pass_point(2, 0.05, 0.8, 0.5, 0.2, 600)
    files = list(tmp_path.glob("pass_points-*.json"))
    assert len(files) == 1 and sequential._code_key() in files[0].name

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated although the point was on disk")

    sequential.pass_point.cache_clear()
    with monkeypatch.context() as m:
        m.setattr(sequential, "departure_ranks", no_simulation)
        again = sequential.pass_point(2, 0.05, 0.8, 0.5, 0.2, 600)
    assert again == first
    # hostile contents: a wrong type for n, then a torn file: both recomputed to the truth
    stored = files[0].read_text()
    hostile = stored.replace(f'"n": {first.n}', '"n": "216"')
    assert hostile != stored
    for text in (hostile, "{\"[2, "):
        files[0].write_text(text)
        sequential.pass_point.cache_clear()
        assert sequential.pass_point(2, 0.05, 0.8, 0.5, 0.2, 600) == first
    # an unwritable cache costs only the recompute
    monkeypatch.setenv("SBC_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a directory")
    sequential.pass_point.cache_clear()
    assert sequential.pass_point(2, 0.05, 0.8, 0.5, 0.2, 600) == first
    sequential.pass_point.cache_clear()
