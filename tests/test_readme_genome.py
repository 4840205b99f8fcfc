"""The README's genome-planning numbers are the committed result files' numbers
(tools/genome_readme.py generates them; rerun it after the validation or a benchmark)."""

from __future__ import annotations

import importlib.util

from support import ROOT


def _tool():
    spec = importlib.util.spec_from_file_location("genome_readme",
                                                  ROOT / "tools" / "genome_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_genome_blocks_agree_with_the_committed_results():
    tool = _tool()
    generated = tool.blocks()
    assert set(generated) == {"genome-certification", "genome-plan", "genome-bench"}
    readme = (ROOT / "README.md").read_text()
    assert tool.render(readme, generated) == readme, \
        "README genome blocks are stale: run python tools/genome_readme.py"


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
