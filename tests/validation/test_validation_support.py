"""Fast tests of the validation suite's machinery (default run): the fit-cache key and the
design of the false-alarm test."""

from __future__ import annotations

import os
import time

import pytest
from scipy.stats import binom
from validation_support import (LIBRARIES, FalseAlarmDesign, cache_dir_for, cache_key,
                                current_cache_key, library_versions, parse_tables,
                                prepare_cache_dir, sbc_sources, sbc_version,
                                smallest_powered_n)

BASE = {
    "version": "0.1.0",
    "sources": {"__init__.py": b"__version__ = '0.1.0'\n", "rank.py": b"def rank(): ...\n",
                "testing/calibration.py": b"x = 1\n"},
    "libraries": {"pymc": "6.4.0", "pytensor": "3.3.8", "nutpie": "0.16.11",
                  "numpy": "2.5.5", "bambi": "0.21.0"},
}


def key(version=None, sources=None, libraries=None):
    return cache_key(version or BASE["version"], sources or BASE["sources"],
                     libraries or BASE["libraries"])


def test_cache_key_is_stable_for_the_same_inputs():
    assert key() == key()
    # order of the mappings does not matter (paths are sorted)
    assert key(sources=dict(reversed(BASE["sources"].items())),
               libraries=dict(reversed(BASE["libraries"].items()))) == key()


def test_cache_key_changes_with_the_sbc_version():
    assert key(version="0.1.1") != key()


@pytest.mark.parametrize("change", ["edit", "add", "remove", "rename", "move bytes"])
def test_cache_key_changes_with_any_sbc_source(change):
    sources = dict(BASE["sources"])
    if change == "edit":
        sources["rank.py"] = b"def rank(): return 1\n"
    elif change == "add":
        sources["new.py"] = b""
    elif change == "remove":
        del sources["rank.py"]
    elif change == "rename":
        sources["ranks.py"] = sources.pop("rank.py")
    else:  # the same bytes split differently between two files
        sources["__init__.py"] += b"def rank(): ..."
        sources["rank.py"] = b"\n"
    assert key(sources=sources) != key()


@pytest.mark.parametrize("library", LIBRARIES)
def test_cache_key_changes_with_each_library_version(library):
    libraries = dict(BASE["libraries"], **{library: "999.0"})
    assert key(libraries=libraries) != key()
    assert key(libraries={k: v for k, v in BASE["libraries"].items() if k != library}) != key()


def test_cache_key_covers_this_checkout():
    assert set(LIBRARIES) == {"pymc", "pytensor", "nutpie", "numpy", "bambi"}
    sources = sbc_sources()
    assert {"__init__.py", "rank.py", "testing/calibration.py", "pipeline.py"} <= set(sources)
    assert all(not p.startswith("/") and "__pycache__" not in p for p in sources)
    versions = library_versions()
    assert set(versions) == set(LIBRARIES)
    assert current_cache_key() == cache_key(sbc_version(), sources, versions)


def test_cache_dir_is_named_by_the_key(tmp_path, monkeypatch):
    k = key()
    assert cache_dir_for(k, tmp_path) == tmp_path / f"env-{k[:16]}"
    monkeypatch.setenv("SBC_VALIDATION_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir_for(k) == tmp_path / "elsewhere" / f"env-{k[:16]}"
    assert cache_dir_for(key(version="9")) != cache_dir_for(k)


def test_prepare_cache_dir_keeps_recent_environments_and_drops_unkeyed_stores(tmp_path):
    legacy = tmp_path / "normal_known_sigma-5x3x2-0123456789abcdef"
    legacy.mkdir()
    (legacy / "study.json").write_text("{}")
    other = tmp_path / "not-a-store"
    other.mkdir()
    olds = []
    for i in range(4):
        d = tmp_path / f"env-{i:016d}"
        d.mkdir()
        os.utime(d, (time.time() - 1000 * (i + 1),) * 2)  # env-0 most recent
        olds.append(d)
    path = prepare_cache_dir("f" * 64, tmp_path, keep=3)
    assert path == tmp_path / ("env-" + "f" * 16) and path.is_dir()
    assert [d.exists() for d in olds] == [True, True, False, False]
    assert not legacy.exists() and other.exists()


def test_false_alarm_designs_have_the_stated_power():
    """The numbers test_validation.py states for its false-alarm tests."""
    full = FalseAlarmDesign(0.05, 405, 0.005)
    assert (full.lo, full.hi) == (2, 32)
    assert round(full.p_pass(0.05), 3) == 0.995
    assert round(1 - full.p_pass(0.10), 3) == 0.911
    assert full.p_pass(0.0) == 0
    assert binom.cdf(full.lo - 1, 405, 0.025) <= 0.001  # half-rate checker: lower side safe
    ci = FalseAlarmDesign(0.05, 250, 0.05)
    assert (ci.lo, ci.hi) == (1, 18)
    assert round(ci.p_pass(0.05), 3) == 0.953
    assert round(1 - ci.p_pass(0.10), 3) == 0.919
    assert ci.p_pass(0.0) == 0
    # a one-sided test on 200 seeds (an upper bound only) has neither property
    old_hi = binom.ppf(0.995, 200, 0.05)
    assert binom.cdf(old_hi, 200, 0.10) > 0.4  # a checker at twice the rate passes often


def test_false_alarm_design_passes_and_fails_the_right_counts():
    d = FalseAlarmDesign(0.05, 405, 0.005)
    assert d.passes(20) and d.passes(2) and d.passes(32)
    assert not d.passes(0) and not d.passes(1) and not d.passes(33)
    assert smallest_powered_n(0.05, 0.005) <= 405
    assert smallest_powered_n(0.05, 0.05) <= 250


def test_parse_tables_reads_escaped_pipes():
    text = ("# Validation results\n\n## Known bugs\n\nnote\n\n| bug | failing checks |\n|---|---|\n"
            "| a | 1\\|gene[0] (too_narrow), loglik (biased_low) |\n\n## Other\n\n_not run_\n")
    tables = parse_tables(text)
    assert tables == {"Known bugs": [{"bug": "a", "failing checks":
                                      "1|gene[0] (too_narrow), loglik (biased_low)"}],
                      "Other": []}


def _validation_conftest():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("conftest.py")
    spec = importlib.util.spec_from_file_location("validation_conftest_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("failed", [0, 1])
def test_results_md_is_written_only_by_a_complete_passing_session(tmp_path, monkeypatch,
                                                                   failed):
    conf = _validation_conftest()
    results_file = tmp_path / "RESULTS.md"
    results_file.write_text("the committed certificate\n")
    monkeypatch.setattr(conf, "RESULTS_FILE", results_file)
    results = conf.Results()
    results.cache_dir, results.cache_key = tmp_path / "cache" / "env-x", "0" * 16
    for section in conf.SECTIONS:  # every row of every section: a complete session
        results.add(section, 0, 1, {"model": "m", "result": "ok"})
    monkeypatch.setattr(conf, "_RESULTS", results)

    class Session:
        testsfailed = failed

        class config:
            class pluginmanager:
                @staticmethod
                def get_plugin(name):
                    return None

    conf.pytest_sessionfinish(Session(), exitstatus=int(bool(failed)))
    partial = tmp_path / "cache" / "RESULTS.partial.md"
    if failed:
        assert results_file.read_text() == "the committed certificate\n"
        assert "FAILED (1 validation test(s) failed" in partial.read_text()
    else:
        assert "Written by `pytest -m slow tests/validation`" in results_file.read_text()
        assert not partial.exists()


def test_genome_md_is_written_after_the_assertions_of_both_certifications():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(__file__).with_name("test_genome_validation.py").read_text())
    names = ("test_shortcut_passes_sbc", "test_shortcut_agrees_with_full_nuts")
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert [fn.name for fn in found] == list(names)
    for fn in found:
        body = fn.body
        writes = [i for i, stmt in enumerate(body) if "_write()" in ast.unparse(stmt)]
        asserts = [i for i, stmt in enumerate(body) if isinstance(stmt, ast.Assert)]
        assert writes and asserts and min(writes) > max(asserts), fn.name
