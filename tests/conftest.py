import atexit
import os
import shutil
import tempfile

import pytest

from support import ROOT, sbc_cmd  # noqa: F401  (re-exported for older imports)
os.environ.setdefault("MPLBACKEND", "Agg")
# sbc's recomputable cache (pass points): one fresh directory per test session, shared with
# the sbc commands the tests start, so every session computes what it checks at least once
os.environ["SBC_CACHE_DIR"] = tempfile.mkdtemp(prefix="sbc-test-cache-")
atexit.register(shutil.rmtree, os.environ["SBC_CACHE_DIR"], True)

EXACT_STUDY = """
name = "exact_test"
model = "{model}"
seed = 7
simulations = {sims}
thin = 1

[[designs]]
cell_lines = 4
genes = 3
reps = 2

[[designs]]
cell_lines = 6
genes = 2
reps = 2

[sampler]
name = "exact"
draws = 99
{extra}
"""


@pytest.fixture
def exact_study(tmp_path):
    """Write a small study file using the exact-posterior test model; returns a factory."""
    def make(sims=20, extra="", name="study.toml"):
        path = tmp_path / name
        path.write_text(EXACT_STUDY.format(model=str(ROOT / "tests/models/normal_mean.py"),
                                           sims=sims, extra=extra))
        return path
    return make


