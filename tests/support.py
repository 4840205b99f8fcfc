"""Helpers shared by the test modules (imported as ``support``; tests/validation has its own
conftest, so nothing is imported from ``conftest`` by name)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sbc_cmd(*args):
    return [sys.executable, "-m", "sbc.cli", *map(str, args)]


# A genome plan small enough to run in seconds (two designs, 300 genes): the genome tests
# and the golden genome plan (tests/golden/make_golden.py) both plan it.
TINY_GENOME_PLAN = """
kind = "genome"
name = "tiny_genome"
seed = 11
probability = 0.6

[space]
cell_lines = [2, 4]
genes = [300]
reps = [2]
guides = [3]
depth = [250]

[candidates]
genes = 6
fraction = 0.5

[[targets]]
kind = "essential_power"
at_least = 0.3

[[targets]]
kind = "width"
below = 1.0
at_least = 0.5

[cost]
per_cell_line = 1.0
per_million_reads = 0.01

[search]
batch = 10
max_simulations = 20
"""


def exact_study(name: str, simulations: int) -> str:
    """A small study file fitted by exact posterior draws (no MCMC, no compile): seconds."""
    return f"""
name = "{name}"
models = ["{ROOT}/models/normal_known_sigma.py"]
seed = 3
simulations = {simulations}

[[designs]]
cell_lines = 3
genes = 3
reps = 1

[sampler]
name = "exact"
draws = 200
"""
