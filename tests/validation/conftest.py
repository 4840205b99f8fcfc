"""Validation suite support: the fit cache, and collecting each result into
tests/validation/RESULTS.md.

Run with ``pytest -m slow tests/validation``.  RESULTS.md is rewritten at the end of a
session in which every validation test produced its row and none failed; a failing session
writes its rows, marked FAILED, to ``.sbc_cache/RESULTS.partial.md``; a partial session (``-m ci``, ``-k``,
a single test, an error) writes its rows to ``.sbc_cache/RESULTS.partial.md`` instead, so it
never replaces the committed table with a partial one.  ``python tools/readme.py``
then copies the tables into the README.

Fits are cached under ``tests/validation/.sbc_cache/env-<key>`` (``$SBC_VALIDATION_CACHE``
moves the base): the key covers the sbc version, every sbc source file and the versions of
pymc, pytensor, nutpie, numpy and bambi (validation_support.cache_key), on top of what each
store's own key covers (study, model sources).  A rerun in an unchanged environment only
recomputes statistics; any change to sbc or to those libraries refits everything.
RESULTS.md states the key it was written under, and test_validation_support.py (default run)
fails when that is not the current key: the committed table then certifies other sources.

Each bug model in models/ repeats the build code of its correct twin on purpose: a model's
source travels to the workers as text and runs on its own (sbc.spec), so it cannot import a
sibling file, and the twin's diff is then exactly the bug.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from validation_support import cell, current_cache_key, environment_line, prepare_cache_dir

HERE = Path(__file__).resolve().parent
RESULTS_FILE = HERE / "RESULTS.md"

SECTIONS = ("bugs", "controls", "false_alarms", "sequential_null", "sequential_bugs")


class Results:
    """Rows of the three tables, each at its index, with each section's expected count."""

    def __init__(self):
        self.rows: dict[str, dict[int, dict]] = {s: {} for s in SECTIONS}
        self.expected: dict[str, int] = {}
        self.cache_dir: Path | None = None
        self.cache_key: str | None = None

    def add(self, section: str, index: int, total: int, row: dict) -> None:
        self.rows[section][index] = row
        self.expected[section] = total

    def complete(self) -> bool:
        return all(self.expected.get(s) and len(self.rows[s]) == self.expected[s]
                   for s in SECTIONS)

    def any(self) -> bool:
        return any(self.rows.values())

    def table(self, section: str) -> str:
        rows = [r for _, r in sorted(self.rows[section].items())]
        if not rows:
            return "_not run in this session_\n"
        cols = list(rows[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
        return "\n".join(lines) + "\n"


_RESULTS = Results()


@pytest.fixture(scope="session")
def validation_results() -> Results:
    """Tests add rows here (sections: bugs, controls, false_alarms)."""
    return _RESULTS


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """This environment's fit cache (see the module docstring)."""
    if _RESULTS.cache_dir is None:
        # The key is taken once, when the session starts: the fits are cached under it even
        # when sbc's sources change while the suite runs, so RESULTS.md states that key.
        _RESULTS.cache_key = current_cache_key()
        _RESULTS.cache_dir = prepare_cache_dir(_RESULTS.cache_key)
    return _RESULTS.cache_dir


BUGS_NOTE = """\
A bug counts as detected at n simulations when `check_calibration` of the buggy model fails
(Holm over parameter groups, family-wise alpha 0.05) and its correct twin, run with the same
study seed (2025) and n, passes; n grows through the bug's schedule (exact backend 25, 50,
100, 200, 400; the flagship `crispr_screen` bugs 25, 50 with nutpie at the default settings).
`asserted`: the detection n the test accepts ("exactly": the stated n, no other), derived
from the spread of the detection n over other seeds (tests/validation/DETECTION_MC.md).
`asserted signature`: checks that must fail at the detection n, with their shape (a name
matches a scalar or its whole group).  `failing checks`: all that fail there.
`flagged fits`: share of successful fits with a sampler warning after the rescue.
"""

CONTROLS_NOTE = """\
Each must pass at the stated number of simulations.  The controls are one family: each runs
at alpha 0.05 / (number of controls), so the chance of any false 'fail' among them is at
most 5 %.
"""

FALSE_ALARMS_NOTE = """\
Seeds 0, 1, ... of each correct model, one `check_calibration` each at alpha 0.05.  The test
is two-sided: the number of false alarms must lie in the pass region; `P(pass), correct`: the
chance that a checker at exactly the nominal rate passes; `P(fail), rate 2 alpha`: the chance
that one at twice the nominal rate fails; one that never rejects always fails (scipy.stats.binom).
"""


SEQUENTIAL_NULL_NOTE = """\
Calibrated studies with exact posterior ranks (a hierarchical normal model whose posterior is
Gaussian, so each truth's fractional rank is exactly uniform and the elements of a vector
group are dependent as real ranks are), each judged by `sbc.stopping.judge` at alpha 0.05:
the e-processes watched after every replicate (2 % of alpha), the fixed-n test at 25, 50,
100 and 200 fits below the pass point (5 % each), then the look at the stop (78 %).
`pass point`: the default settings (stop at the pass point for power 0.8 against a 0.5-sd
shift and a 20 % too narrow posterior); `monitored to 1,000`: no pass point within
1,000 replicates, so every study is watched to 1,000 and judged there.  The test fails when
the Clopper-Pearson 95 % interval of the overall rate lies above 0.05.
"""

SEQUENTIAL_BUGS_NOTE = """\
Each known bug of the table above, checked sequentially (`check_calibration` with
`n_sims="auto"`, at most 400 simulations) on several study seeds, with its correct twin
simulating the data.  `median fits to detection`: over the seeds that detected it (in this
process nothing is fitted past the stop, so these are all the fits it took).
`fixed-n schedule (median)`: the fixed-n procedure's detection n over DETECTION_MC.md's
seeds (it looks only at 25, 50, 100, 200, 400 and needs the twin to pass at the same n).
A bug the fixed-n schedule detects at the suite seed must be detected there sequentially.
Three seeds say little about a weak bug: `benchmarks/sequential_bug.md` draws 1,000 studies
from 4,000 fits of the weakest (the intercept prior) and of its twin, and compares both
procedures there, also at equal family-wise false-alarm rates.
"""


def results_text(results: Results, when: str, environment: str, failed: int = 0) -> str:
    if failed:
        how = (f"FAILED ({failed} validation test(s) failed; RESULTS.md was left alone): "
               "written")
    elif results.complete():
        how = "Written by `pytest -m slow tests/validation`"
    else:
        how = "PARTIAL (not every validation test ran; RESULTS.md was left alone): written"
    return (
        "# Validation results\n\n"
        f"{how} on {when}\n({environment}).\n\n"
        "## Known bugs\n\n" + BUGS_NOTE + "\n" + results.table("bugs") +
        "\n## Correct models (controls)\n\n" + CONTROLS_NOTE + "\n" + results.table("controls") +
        "\n## False-alarm rate of assert_calibrated (exact backend, many seeds)\n\n" +
        FALSE_ALARMS_NOTE + "\n" + results.table("false_alarms") +
        "\n## Sequential studies: false alarms under continuous monitoring\n\n" +
        SEQUENTIAL_NULL_NOTE + "\n" + results.table("sequential_null") +
        "\n## Sequential studies: known bugs\n\n" + SEQUENTIAL_BUGS_NOTE + "\n" +
        results.table("sequential_bugs"))


def pytest_sessionfinish(session, exitstatus):
    if not _RESULTS.any():
        return
    failed = session.testsfailed
    text = results_text(_RESULTS, time.strftime("%Y-%m-%d %H:%M"),
                        environment_line(_RESULTS.cache_key), failed)
    if _RESULTS.complete() and not failed:  # a certificate only from a passing run
        RESULTS_FILE.write_text(text)
        target = RESULTS_FILE
    else:
        target = (_RESULTS.cache_dir or HERE / ".sbc_cache").parent / "RESULTS.partial.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"validation results written to {target}")
