"""Fast tests (default run): every generated block of the documentation pages (tools/readme.py:
the validation and benchmark tables, the real-data check, the genome-planning numbers) is what
its committed source gives, the tool's errors, and RESULTS.md states what the slow validation
tests assert."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from validation_support import FalseAlarmDesign, parse_tables

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "readme.py"
RESULTS = ROOT / "tests" / "validation" / "RESULTS.md"
BENCH = ROOT / "benchmarks" / "results.json"
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _tool():
    spec = importlib.util.spec_from_file_location("readme_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_readme_tables_agree_with_committed_results():
    proc = run_tool("--check")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr


BLOCK_NAMES = ("real-check", "genome-certification", "genome-plan", "genome-bench",
               "validation", "bench", "power")


def test_every_marked_block_of_the_docs_is_generated():
    tool = _tool()
    assert tuple(tool.BLOCKS) == BLOCK_NAMES
    # each block once, on its page, in page order; no marked block without a generator, and
    # none left in the README
    for page in sorted({*DOCS.rglob("*.md"), README}):
        text = page.read_text(encoding="utf-8")
        found = re.findall(r"^<!-- ([\w-]+):start -->$", text, re.M)
        assert found == tool.pages().get(page, []), page
        assert re.findall(r"^<!-- ([\w-]+):end -->$", text, re.M) == found, page


@pytest.mark.parametrize("name", BLOCK_NAMES)
def test_docs_block_is_its_source(name):
    tool = _tool()
    page = tool.BLOCKS[name].page
    text = page.read_text(encoding="utf-8")
    assert tool.replace_block(text, name, tool.generate(name)) == text, \
        f"block {name} of {page.relative_to(ROOT)} is stale: run python tools/readme.py --only {name}"


def test_headings_stay_outside_the_markers():
    tool = _tool()
    validation = tool.BLOCKS["validation"].page.read_text(encoding="utf-8")
    assert validation.startswith("# Validation results\n")
    assert "\n\n<!-- validation:start -->\n`pytest -m slow" in validation
    assert "\n## Known bugs\n" in validation  # RESULTS.md's sections are the page's
    bench = tool.BLOCKS["bench"].page.read_text(encoding="utf-8")
    assert "## Latest benchmark run\n\n<!-- bench:start -->\n`make bench` writes" in bench
    assert bench.endswith("|\n<!-- bench:end -->\n")


RESULTS_TEXT = """\
# Validation results

Written by `pytest -m slow tests/validation` on 2026-01-01 00:00 (sbc 0.1.0).

## Known bugs

| bug | simulations to detection | failing checks |
|---|---|---|
| a | 25 | 1\\|gene[0] (too_narrow) |

## Correct models (controls)

_not run in this session_
"""

README_TEXT = """\
# Title

```python
# a comment in a code block, not a heading
<!-- validation:start -->
```

### Validation results

<!-- validation:start -->
old text

#### Known bugs

| bug | simulations to detection |
|---|---|
| a | 50 |
<!-- validation:end -->

## Scale-out and faults

kept
"""


@pytest.fixture
def files(tmp_path):
    results, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    results.write_text(RESULTS_TEXT)
    readme.write_text(README_TEXT)
    return results, readme


def test_check_fails_with_a_diff_and_writing_fixes_it(files):
    results, readme = files
    args = ("--only", "validation", "--readme", readme, "--source", f"validation={results}")
    proc = run_tool("--check", *args)
    assert proc.returncode == 1
    assert "-| a | 50 |" in proc.stdout and "+| a | 25 | 1\\|gene[0] (too_narrow) |" in proc.stdout
    assert "validation" in proc.stderr and "python tools/readme.py" in proc.stderr
    assert readme.read_text() == README_TEXT  # --check writes nothing
    assert run_tool(*args).returncode == 0
    text = readme.read_text()
    assert run_tool("--check", *args).returncode == 0
    # only the block changed: what precedes and follows it, markers included, is kept byte
    # for byte (a marker inside a code fence is text, not a marker)
    head = README_TEXT.split("### Validation results")[0]
    tail = README_TEXT.split("<!-- validation:end -->")[1]
    assert text.startswith(head + "### Validation results\n\n<!-- validation:start -->\n"
                           + "`pytest -m slow tests/validation`")
    assert text.endswith("(controls)\n\n_not run in this session_\n<!-- validation:end -->"
                         + tail)
    assert "\n## Known bugs\n" in text and "\n## Correct models (controls)\n" in text
    assert "old text" not in text and "| a | 50 |" not in text
    # a change in RESULTS.md is a difference again
    results.write_text(RESULTS_TEXT.replace("| 25 |", "| 100 |"))
    assert run_tool("--check", *args).returncode == 1


@pytest.mark.parametrize("broken, message", [
    (README_TEXT.replace("<!-- validation:start -->\nold", "old"),
     "no <!-- validation:start --> line"),
    (README_TEXT.replace("<!-- validation:end -->\n", ""), "no <!-- validation:end --> line"),
    (README_TEXT + "\n<!-- validation:end -->\n", "more than one <!-- validation:end -->"),
    (README_TEXT.replace("<!-- validation:start -->\nold", "<!-- validation:end -->\nold")
     .replace("| a | 50 |\n<!-- validation:end -->", "| a | 50 |\n<!-- validation:start -->"),
     "<!-- validation:end --> comes before"),
])
def test_a_missing_or_misplaced_marker_is_exit_2(files, broken, message):
    results, readme = files
    readme.write_text(broken)
    for check in (("--check",), ()):
        proc = run_tool(*check, "--only", "validation", "--readme", readme, "--source",
                        f"validation={results}")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert readme.read_text() == broken


def test_missing_file_or_heading_is_exit_2(files, tmp_path):
    results, readme = files
    proc = run_tool("--check", "--only", "validation", "--readme", readme, "--source",
                    f"validation={tmp_path / 'missing.md'}")
    assert proc.returncode == 2 and "missing.md is missing" in proc.stderr
    results.write_text(RESULTS_TEXT.replace("# Validation results", "# Something else"))
    proc = run_tool("--check", "--only", "validation", "--readme", readme, "--source",
                    f"validation={results}")
    assert proc.returncode == 2 and "Validation results" in proc.stderr
    # without --only, every block's markers are required: this README has no bench block
    results.write_text(RESULTS_TEXT)
    proc = run_tool("--check", "--readme", readme, "--source", f"validation={results}")
    assert proc.returncode == 2 and "<!-- real-check:start -->" in proc.stderr
    proc = run_tool("--check", "--only", "validation", "--only", "bench", "--readme", readme,
                    "--source", f"validation={results}")
    assert proc.returncode == 2 and "<!-- bench:start -->" in proc.stderr
    proc = run_tool("--check", "--readme", tmp_path / "nothing.md")
    assert proc.returncode == 2 and "nothing.md" in proc.stderr
    proc = run_tool("--check", "--source", f"nonsense={results}")
    assert proc.returncode == 2 and "NAME=PATH" in proc.stderr


def test_a_block_ends_at_its_end_marker_not_at_a_heading():
    tool = _tool()
    body = tool.validation_block(RESULTS_TEXT)
    readme = README_TEXT.replace("## Scale-out and faults", "### Next subsection")
    out = tool.replace_block(readme, "validation", body)
    assert out.endswith("<!-- validation:end -->\n\n### Next subsection\n\nkept\n")
    assert "old text" not in out and "\n## Correct models (controls)\n" in out
    # a heading inside the block is the block's: it is replaced with it
    assert tool.replace_block(out, "validation", "new") == readme.split(
        "<!-- validation:start -->\nold")[0] + "<!-- validation:start -->\nnew\n" + \
        "<!-- validation:end -->\n\n### Next subsection\n\nkept\n"


BENCH_README = """\
# Title

## Performance

kept prose

### Latest benchmark run

<!-- bench:start -->
old
<!-- bench:end -->
"""


def test_benchmark_table_is_generated_from_results_json(tmp_path):
    bench = json.loads(BENCH.read_text())
    readme, source = tmp_path / "README.md", tmp_path / "results.json"
    readme.write_text(BENCH_README)
    source.write_text(json.dumps(bench))
    args = ("--only", "bench", "--readme", readme, "--source", f"bench={source}")
    assert run_tool("--check", *args).returncode == 1
    assert run_tool(*args).returncode == 0
    text = readme.read_text()
    assert run_tool("--check", *args).returncode == 0
    assert text.startswith(BENCH_README.split("old")[0]) and "\nold\n" not in text
    assert text.endswith(" |\n<!-- bench:end -->\n")
    ratio = f"{bench['sbc_vs_simuk']:.1f}, {bench['sbc_vs_naive']:.1f}"
    assert f"| `sbc_vs_simuk`, `sbc_vs_naive` (replicates per core-second, setup included) | " \
           f"{ratio} |" in text
    # a changed number in results.json makes the README stale again
    bench["sbc_vs_simuk"] += 1.0
    source.write_text(json.dumps(bench))
    proc = run_tool("--check", *args)
    assert proc.returncode == 1 and "-| `sbc_vs_simuk`" in proc.stdout
    # a results.json that lacks a headline key is exit 2, naming it
    del bench["paths"]
    source.write_text(json.dumps(bench))
    proc = run_tool("--check", *args)
    assert proc.returncode == 2 and "paths" in proc.stderr
    source.write_text("{not json")
    proc = run_tool("--check", *args)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr


# ---- RESULTS.md states what the slow tests assert ------------------------------------


def _tables():
    return parse_tables(RESULTS.read_text(encoding="utf-8"))


def _section(tables, prefix):
    (name,) = [k for k in tables if k.startswith(prefix)]
    return tables[name]


def _failing(cell: str) -> list[tuple[str, str]]:
    return [(n.strip(), s) for n, s in re.findall(r"([^,]+?) \((\w+)\)", cell)]


def test_results_state_the_asserted_detection_and_signatures():
    import test_validation as tv

    rows = {(r["bug"], r["design"]): r for r in _section(_tables(), "Known bugs")}
    assert len(rows) == len(tv.BUGS) + 1
    for bug in tv.BUGS:
        row = rows[(bug.name, bug.label)]
        assert row["simulations to detection"] == tv._n_text(bug.recorded, bug), bug.name
        assert bug.recorded in bug.tolerance
        assert row["asserted"] == bug.tolerance_text(), bug.name
        assert row["asserted signature"] == (bug.signature.text() if bug.signature
                                             else "none asserted"), bug.name
        failing = _failing(row["failing checks"])
        if bug.signature:
            for name, shapes in bug.signature.fails:  # the recorded failures show it
                assert any(s in shapes and (n == name or n.startswith(name + "["))
                           for n, s in failing), (bug.name, name, shapes)
            if bug.signature.only is not None:
                assert all(n.split("[")[0] in bug.signature.only for n, _ in failing), bug.name
            if bug.signature.confine is not None:
                group, names = bug.signature.confine
                assert all(n in names for n, _ in failing if n.startswith(group + "[")), bug.name
        elif bug.recorded is None:
            assert row["failing checks"] == "none"
    default = rows[("fitter keeps Bambi's default priors", "3x3x1")]
    assert default["simulations to detection"] == "0 (refused)"


def test_results_state_the_controls_at_their_asserted_simulations():
    import test_validation as tv

    rows = {r["model"]: r for r in _section(_tables(), "Correct models")}
    assert len(rows) == len(tv.CONTROLS)
    for c in tv.CONTROLS:
        name, _, design, _, n_sims = c.values if hasattr(c, "values") else c
        assert rows[name]["simulations"] == str(n_sims)
        assert rows[name]["design"] == "x".join(map(str, design))
        assert rows[name]["verdict"].startswith("pass")
        assert float(rows[name]["alpha"]) == tv.CONTROL_ALPHA


def test_results_state_the_false_alarm_designs():
    import test_validation as tv

    rows = {r["model"]: r for r in _section(_tables(), "False-alarm rate")}
    assert len(rows) == len(tv.FALSE_ALARMS)
    for case in tv.FALSE_ALARMS:
        row, d = rows[case.label], case.test
        assert isinstance(d, FalseAlarmDesign)
        assert int(row["checks (seeds)"]) == d.n_seeds
        assert int(row["simulations per check"]) == case.n_sims
        assert {k: row[k] for k in d.summary()} == d.summary()
        assert d.passes(int(row["false alarms"]))
