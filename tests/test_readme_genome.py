"""The genome-planning numbers and the real-data check of the documentation pages (moved there
from the README) are the committed result files' numbers (tools/readme.py generates them;
rerun it after the validation or a benchmark)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from support import ROOT

TOOL = ROOT / "tools" / "readme.py"
GENOME = ("genome-certification", "genome-plan", "genome-bench")


def _tool():
    spec = importlib.util.spec_from_file_location("readme_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_readme_genome_blocks_agree_with_the_committed_results():
    tool = _tool()
    assert {n for n in tool.BLOCKS if n.startswith("genome-")} == set(GENOME)
    (page,) = {tool.BLOCKS[name].page for name in GENOME}
    text = page.read_text()
    assert tool.render(text, list(GENOME)) == text, \
        f"the genome blocks of {page.relative_to(ROOT)} are stale: run python tools/readme.py"


def test_the_certification_block_reads_every_row_of_genome_md():
    tool = _tool()
    genome_md = (ROOT / "tests" / "validation" / "GENOME.md").read_text()
    block = tool.certification_block(genome_md)
    sbc_table = block.split("\n\n")[0]
    assert sbc_table.count("\n") == 1 + len(tool.SBC_ROWS)
    assert "400 screens" in sbc_table and "200 screens" in sbc_table
    # the comparison with full NUTS: every line of its table and its per-gene line
    nuts = genome_md.split(tool.NUTS_HEADING)[1]
    for line in nuts.splitlines()[1:]:
        if line.strip():
            assert line in block


def test_the_real_check_block_is_real_check_py_s_own():
    """tools/readme.py renders the real-check block with benchmarks/real_check.py's
    readme_block, the function its --readme writes with."""
    tool = _tool()
    module = tool._real_check_module()
    results = json.loads((ROOT / "benchmarks" / "real_check.json").read_text())
    block = tool.generate("real-check")
    assert module.readme_block(results) == f"{module.START}\n{block}\n{module.END}"
    assert module.readme_block(results) in tool.BLOCKS["real-check"].page.read_text()


def _readme_with_genome_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n" + "".join(
        f"<!-- {n}:start -->\nold\n<!-- {n}:end -->\n\n" for n in GENOME) + "kept\n")
    return readme


def test_genome_blocks_are_written_and_their_errors_are_exit_2(tmp_path):
    readme = _readme_with_genome_markers(tmp_path)
    only = [a for n in GENOME for a in ("--only", n)]
    proc = run_tool("--check", *only, "--readme", readme)
    assert proc.returncode == 1 and "-old" in proc.stdout
    assert run_tool(*only, "--readme", readme).returncode == 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("# Title\n\n<!-- genome-certification:start")
    assert text.endswith("<!-- genome-bench:end -->\n\nkept\n")
    assert run_tool("--check", *only, "--readme", readme).returncode == 0
    # GENOME.md without its comparison with full NUTS
    genome_md = tmp_path / "GENOME.md"
    genome_md.write_text((ROOT / "tests" / "validation" / "GENOME.md").read_text()
                         .replace("## Shortcut against full NUTS", "## Something else"))
    proc = run_tool("--check", "--only", "genome-certification", "--readme", readme,
                    "--source", f"genome-certification={genome_md}")
    assert proc.returncode == 2 and "Shortcut against full NUTS" in proc.stderr
    # a plan result that lacks a key, or a named source that does not exist
    plan = json.loads((ROOT / "benchmarks" / "plan_genome.json").read_text())
    del plan["recommended"]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    proc = run_tool("--check", "--only", "genome-plan", "--readme", readme,
                    "--source", f"genome-plan={tmp_path / 'plan.json'}")
    assert proc.returncode == 2 and "recommended" in proc.stderr
    proc = run_tool("--check", "--only", "genome-bench", "--readme", readme,
                    "--source", f"genome-bench={tmp_path / 'absent.json'}")
    assert proc.returncode == 2 and "absent.json is missing" in proc.stderr


def test_an_unrecorded_timed_plan_or_genome_benchmark_is_a_placeholder(monkeypatch, tmp_path):
    tool = _tool()
    monkeypatch.setitem(tool.BLOCKS, "genome-plan",
                        tool.BLOCKS["genome-plan"]._replace(source=tmp_path / "none.json"))
    monkeypatch.setitem(tool.BLOCKS, "genome-bench",
                        tool.BLOCKS["genome-bench"]._replace(source=tmp_path / "none.json"))
    assert tool.generate("genome-plan") == (
        "No timed run of it is recorded yet (`make bench-genome-plan` writes "
        "`benchmarks/plan_genome.json`).")
    assert tool.generate("genome-bench") == "Not measured yet (`benchmarks/genome.py`)."


def test_the_timed_plan_is_the_shipped_plan_file():
    """benchmarks/plan_genome.py times studies/plan_genome.toml, whose 216 designs the README
    states."""
    import hashlib
    import json

    from sbc.plan.genome_config import load_genome_plan

    plan = load_genome_plan(ROOT / "studies" / "plan_genome.toml")
    assert len(plan.designs()) == 216
    assert 'PLAN = ROOT / "studies" / "plan_genome.toml"' in \
        (ROOT / "benchmarks" / "plan_genome.py").read_text()
    recorded = ROOT / "benchmarks" / "plan_genome.json"
    if recorded.exists():
        res = json.loads(recorded.read_text())
        assert res["command"] == "sbc plan studies/plan_genome.toml --workers 2"
        assert res["designs"] == 216
        # the recorded run is of this plan file, and its figure is committed beside it
        assert res["plan_sha256"] == hashlib.sha256(
            (ROOT / "studies" / "plan_genome.toml").read_bytes()).hexdigest(), \
            "studies/plan_genome.toml changed since the recorded run: make bench-genome-plan"
        assert (ROOT / "benchmarks" / "plan_genome_cost.png").exists()
