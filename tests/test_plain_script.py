"""The Python API from a plain script, as most scientists write one: no
``if __name__ == "__main__":`` guard, run with ``python file.py`` (and ``python -c``), with
local worker processes.  Dask's workers start by "spawn", which imports the main script
again in each worker unless sbc hides it (:func:`sbc.execution.main_script_hidden`); the
script counts its own top-level runs, so a worker that ran it again is seen."""

from __future__ import annotations

import subprocess
import sys

from support import TINY_GENOME_PLAN, exact_study

STUDY = exact_study("plain", 12)

SCRIPT = """
import sbc
with open("runs.txt", "a") as f:
    f.write("top level ran\\n")
results = sbc.run(sbc.Study.from_toml("s.toml"), "out", workers=2, progress=False)
print("study:", results.verdict.label, len(results.replicates))
plan = sbc.plan("genome.toml", "plan_out", workers=2, progress=False)
print("plan:", plan.recommended["design"] if plan.recommended else None)
"""


def test_a_script_without_a_main_guard_runs_a_study_and_a_plan_on_worker_processes(tmp_path):
    (tmp_path / "s.toml").write_text(STUDY)
    (tmp_path / "genome.toml").write_text(TINY_GENOME_PLAN)
    (tmp_path / "run.py").write_text(SCRIPT)
    done = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "study: " in done.stdout and " 12\n" in done.stdout
    assert "plan: 2x300x2x3g250r" in done.stdout
    # the workers did not run the script again
    assert (tmp_path / "runs.txt").read_text() == "top level ran\n"


def test_python_dash_c_runs_a_study_on_worker_processes(tmp_path):
    (tmp_path / "s.toml").write_text(STUDY)
    code = ("import sbc; r = sbc.run('s.toml', 'out', workers=2, progress=False); "
            "print(len(r.replicates), r.verdict.status)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("12 ")


def test_the_script_is_hidden_only_while_the_workers_run():
    import types

    from sbc.execution import main_script_hidden

    main = sys.modules["__main__"]
    before = (getattr(main, "__file__", None), getattr(main, "__spec__", None))
    fake = types.ModuleType("__main__")
    fake.__file__ = "/somewhere/run.py"
    sys.modules["__main__"] = fake
    try:
        with main_script_hidden():
            assert fake.__file__ is None
        assert fake.__file__ == "/somewhere/run.py"
    finally:
        sys.modules["__main__"] = main
    assert (getattr(main, "__file__", None), getattr(main, "__spec__", None)) == before
