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
    block = tool.certification_block((ROOT / "tests" / "validation" / "GENOME.md").read_text())
    assert block.count("\n") == 1 + len(tool.SBC_ROWS)
    assert "400 screens" in block and "200 screens" in block


def test_the_readme_states_the_plan_file_it_times():
    import json

    res = json.loads((ROOT / "benchmarks" / "plan_genome.json").read_text())
    assert res["command"] == "sbc plan studies/plan_genome.toml --workers 2"
    assert res["designs"] == 216
