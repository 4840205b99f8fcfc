"""Command-line behaviour: --version, progress ETA, --no-report tables, --sims below the store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sbc import __version__
from sbc.cli import main
from sbc.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
STUDY = f"""
name = "cli"
model = "{ROOT / 'models' / 'normal_known_sigma.py'}"
seed = 9
simulations = {{sims}}
[[designs]]
cell_lines = 2
genes = 2
reps = 1
[sampler]
name = "exact"
"""


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sbc {__version__}"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_eta_ignores_start_up_time():
    """Start-up (imports, workers, compiling) before the first batch must not count as fit
    time: 100 s to the first batch of 10, then 10 replicates per second."""
    clock, out = Clock(), io.StringIO()
    bar = Progress(1000, stream=out, every=0.0, clock=clock)
    clock.now = 100.0
    bar.update(10, 0)
    assert "ETA estimating" in bar.line()  # one batch: no rate yet
    for _ in range(9):
        clock.now += 1.0
        bar.update(10, 0)
    assert bar.rate() == pytest.approx(10.0)
    assert "10.00/s, ETA 1m30s" in bar.line()  # 900 left at 10/s (over all 109 s: 16m21s)
    clock.now += 1.0
    bar.update(5, 5)
    assert "110/1000 replicates done, 5 failed" in bar.line()


def test_no_report_still_writes_the_tables(tmp_path, capsys):
    study = tmp_path / "s.toml"
    study.write_text(STUDY.format(sims=6))
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--workers", "0", "--no-report"]) == 0
    for name in ("replicates.parquet", "parameters.parquet", "ranks.nc"):
        assert (out / name).is_file(), name
    assert not (out / "report.html").exists()


def test_sims_below_the_store_says_what_the_store_holds(tmp_path, capsys):
    study = tmp_path / "s.toml"
    study.write_text(STUDY.format(sims=12))
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["run", str(study), "--out", str(out), "--workers", "0", "--sims", "4"]) == 0
    text = capsys.readouterr().out
    assert "0 new replicates" in text and "4 of this run's 4 already stored" in text
    assert ("the store holds 12 replicates, more than the 4 this run asks for (4 simulations "
            "per model and design)") in text
    assert "cover all 12" in text
