"""Fast tests of the validation suite's machinery (default run): the fit-cache key, the keys
the committed certificates (RESULTS.md, GENOME.md) record, and the design of the false-alarm
test."""

from __future__ import annotations

import os
import time

import pytest
from scipy.stats import binom
from validation_support import (CERTIFICATES, GENOME_LIBRARIES, LIBRARIES, Certificate,
                                FalseAlarmDesign, cache_dir_for, cache_key,
                                certificate_problem, current_cache_key, environment_line,
                                genome_key, genome_sources, library_versions, parse_tables,
                                prepare_cache_dir, recorded_key, sbc_sources, sbc_version,
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


# --------------------------------------------------------------------------------------
# The committed certificates record the current key
# --------------------------------------------------------------------------------------
# Certificates known to be stale today.  Each is a strict xfail: the day its file is
# regenerated the test passes, which fails the run as XPASS(strict) with this reason; then
# delete the entry.  A recorded key is never edited by hand: only the file's writer stamps it.
KNOWN_STALE: dict[str, str] = {}


def _certificate_param(name):
    if name not in KNOWN_STALE:
        return name
    return pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                                      reason=KNOWN_STALE[name]))


@pytest.mark.parametrize("name", [_certificate_param(n) for n in CERTIFICATES])
def test_committed_certificate_records_the_current_key(name):
    """RESULTS.md and GENOME.md state the key of the sources and library versions they were
    written with; a certificate of other sources certifies nothing about these."""
    problem = certificate_problem(CERTIFICATES[name])
    assert problem is None, problem


def test_known_stale_names_only_certificates():
    assert set(KNOWN_STALE) <= set(CERTIFICATES)
    assert set(CERTIFICATES) == {"RESULTS.md", "GENOME.md"}


@pytest.mark.parametrize("name", sorted(CERTIFICATES))
def test_the_key_check_catches_a_stale_key_and_passes_the_current_one(name, tmp_path):
    cert = CERTIFICATES[name]
    current = cert.current_key()
    path = tmp_path / name
    fake = Certificate(path, cert.label, cert.current_key, cert.command)
    head = "# A certificate\n\nWritten on 2026-01-01 00:00\n"

    path.write_text(head + f"(sbc 0.1.0; numpy 2.5.5; {cert.label} 0123456789abcdef).\n")
    problem = certificate_problem(fake)
    assert problem == (f"{name} is stale: it records {cert.label} 0123456789abcdef, but the "
                       f"current sources and library versions give {current[:16]}; regenerate "
                       f"it with {cert.command}")
    assert "pytest -m slow tests/validation" in problem

    path.write_text(head + f"(sbc 0.1.0; numpy 2.5.5; {cert.label} {current[:16]}).\n")
    assert certificate_problem(fake) is None
    assert certificate_problem(fake, current="f" * 64) is not None  # a later source change

    path.write_text(head + "(sbc 0.1.0; numpy 2.5.5).\n")
    assert f"{name} is stale: it records no {cert.label}" in certificate_problem(fake)
    path.unlink()
    assert f"{name} is missing" in certificate_problem(fake)


def test_results_md_header_records_the_key_the_check_reads():
    """environment_line is what conftest.py stamps RESULTS.md with."""
    key = current_cache_key()
    assert recorded_key(f"({environment_line(key)}).", "fit-cache key") == key[:16]
    assert recorded_key(f"({environment_line(key)}).", "genome key") is None


def _genome_validation_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("test_genome_validation.py")
    spec = importlib.util.spec_from_file_location("genome_validation_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_genome_md_writer_stamps_the_genome_key_and_the_readme_block_is_unchanged(
        tmp_path, monkeypatch):
    """GENOME.md, as its writer writes it, records the current genome key, and the README's
    certification block reads the stamped file as it read the unstamped one."""
    import importlib.util
    from pathlib import Path

    genome = _genome_validation_module()
    committed = CERTIFICATES["GENOME.md"].path.read_text(encoding="utf-8")
    sbc_part = committed[committed.index("## SBC"):committed.index("## Shortcut")]
    nuts_part = committed[committed.index("## Shortcut"):]
    monkeypatch.setattr(genome, "OUT", tmp_path / "GENOME.md")
    genome.SECTIONS.update(sbc=sbc_part)
    genome._write()
    assert not (tmp_path / "GENOME.md").exists()  # only after both certifications
    genome.SECTIONS.update(nuts=nuts_part)
    genome._write()
    text = (tmp_path / "GENOME.md").read_text()
    cert = Certificate(tmp_path / "GENOME.md", "genome key", genome_key, "the writer")
    assert recorded_key(text, "genome key") == genome_key()[:16]
    assert certificate_problem(cert) is None
    assert certificate_problem(cert, current="0" * 64).startswith("GENOME.md is stale")
    for name, v in library_versions(GENOME_LIBRARIES).items():
        assert f"{name} {v}" in text

    tool_path = Path(__file__).resolve().parents[2] / "tools" / "readme.py"
    spec = importlib.util.spec_from_file_location("readme_tool_under_test", tool_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.certification_block(text) == tool.certification_block(committed)


def _tree(root, files):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_genome_sources_follow_the_certification_s_imports_only(tmp_path):
    _tree(tmp_path, {
        "sbc/__init__.py": "__version__ = '0'\n",
        "sbc/stats.py": "from sbc import seeding\nimport numpy\n",
        "sbc/seeding.py": "",
        "sbc/report.py": "from sbc import stats\n",           # imports stats; not imported
        "sbc/plan/genome.py": "def f():\n    from sbc.models import crispr_guides\n",
        "sbc/plan/genome_fit.py": "from sbc.plan.genome import f\n",
        "sbc/plan/genome_plan.py": "from sbc import report\n",  # a genome file: kept, not followed
        "models/crispr_guides.py": "import math\n",
        "models/other.py": "",
    })
    sources = genome_sources(tmp_path, modules=("sbc.stats", "sbc.plan.genome_fit"))
    assert set(sources) == {"sbc/__init__.py", "sbc/stats.py", "sbc/seeding.py",
                            "sbc/plan/genome.py", "sbc/plan/genome_fit.py",
                            "sbc/plan/genome_plan.py", "models/crispr_guides.py"}
    assert sources["sbc/seeding.py"] == b""


def test_genome_key_covers_this_checkout():
    sources = genome_sources()
    assert {"sbc/plan/genome.py", "sbc/plan/genome_fit.py", "sbc/plan/genome_screen.py",
            "sbc/plan/genome_nuts.py", "models/crispr_guides.py", "sbc/stats.py",
            "sbc/seeding.py"} <= set(sources)
    assert not {"sbc/report.py", "sbc/store.py", "sbc/cli.py"} & set(sources)
    assert set(GENOME_LIBRARIES) == {"numpy", "scipy", "pymc", "pytensor", "nutpie"}
    assert genome_key() == cache_key(sbc_version(), sources, library_versions(GENOME_LIBRARIES))
    assert genome_key() != current_cache_key()
