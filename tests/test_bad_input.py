"""Catalogue of user mistakes: each gives a specific message (what, where, how to fix), a
non-zero exit, and leaves an existing store exactly as it was."""

import errno
import hashlib
from pathlib import Path

import pytest

from conftest import ROOT
from sbc.cli import main

MODEL = ROOT / "tests/models/normal_mean.py"
GOOD = f"""
name = "bad_input"
model = "{MODEL}"
seed = 7
simulations = 4
thin = 1
[[designs]]
cell_lines = 3
genes = 2
reps = 2
[sampler]
name = "exact"
draws = 99
"""


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    study = root / "good.toml"
    study.write_text(GOOD)
    out = root / "store"
    assert main(["run", str(study), "--out", str(out), "--workers", "0", "--no-report"]) == 0
    return study, out


def write(tmp_path, text, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def model_file(tmp_path, body, name="m.py"):
    path = tmp_path / name
    path.write_text(body)
    return path


def with_model(ref):
    return GOOD.replace(f'model = "{MODEL}"', f'model = "{ref}"')


CASES = {
    "missing study file": (lambda t: t / "nope.toml", "study file not found"),
    "study path is a directory": (lambda t: t, "is a directory"),
    "toml syntax error with line": (lambda t: write(t, GOOD + "\nseed = = 3\n"), "line"),
    "unknown key with suggestion": (
        lambda t: write(t, GOOD.replace("simulations = 4", "simulatons = 4")),
        "did you mean 'simulations'"),
    "unknown sampler key with suggestion": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\ntarget_acept = 0.9')),
        "did you mean 'sampler.target_accept'"),
    "unknown model name": (lambda t: write(t, with_model("crispr_scren")), "did you mean 'crispr_screen'"),
    "model file does not exist": (lambda t: write(t, with_model("no/such/file.py:build")), "not found"),
    "model function does not exist": (
        lambda t: write(t, with_model(f"{MODEL}:buld")), "defines no function 'buld'"),
    "model file raises on import": (
        lambda t: write(t, with_model(model_file(t, "raise ValueError('broken module')\n"))),
        "broken module"),
    "model builder raises": (
        lambda t: write(t, with_model(model_file(t, "def build(data):\n    raise KeyError('oops')\n"))),
        "build(data) raised KeyError"),
    "formula names a column the design lacks": (
        lambda t: write(t, with_model(model_file(
            t, "import bambi as bmb\ndef build(data):\n"
               "    return bmb.Model('logfc ~ (1|batch)', data)\n"))),
        "batch"),
    "model returns the wrong type": (
        lambda t: write(t, with_model(model_file(t, "def build(data):\n    return 42\n"))),
        "must return a bambi.Model or a pymc.Model"),
    "improper prior": (
        lambda t: write(t, with_model(model_file(
            t, "import pymc as pm\ndef build(data):\n    with pm.Model() as m:\n"
               "        mu = pm.Flat('mu')\n        pm.Normal('logfc', mu, 1, observed=data['logfc'])\n"
               "    return m\n"))),
        "improper prior"),
    "non-positive design size": (
        lambda t: write(t, GOOD.replace("cell_lines = 3", "cell_lines = 0")), "must be >= 1"),
    "non-integer design size": (
        lambda t: write(t, GOOD.replace("genes = 2", "genes = 2.5")), "must be an integer"),
    "empty design grid": (
        lambda t: write(t, GOOD.split("[[designs]]")[0] + '[sampler]\nname = "exact"\n'),
        "design grid is empty"),
    "zero simulations": (
        lambda t: write(t, GOOD.replace("simulations = 4", "simulations = 0")), "must be >= 1"),
    "draws fewer than thinning needs": (
        lambda t: write(t, GOOD.replace("thin = 1", "thin = 50")), "fewer than 10 draws"),
    "invalid sampler name": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "nutpy"')), "did you mean 'nutpie'"),
    "negative target_accept": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\ntarget_accept = -0.1')),
        "strictly between 0 and 1"),
    "target_accept above 1": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\ntarget_accept = 1.5')),
        "strictly between 0 and 1"),
    "infinite timeout": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\ntimeout = inf')),
        "at most 604800"),
    "nan timeout": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\ntimeout = nan')),
        "at most 604800"),
    "unknown adaptation": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\nadaptation = "lowrank"')),
        "unknown adaptation 'lowrank'"),
    "rescue not a boolean": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\nrescue = "yes"')),
        "must be true or false"),
    "sampler exact for a model without an exact posterior": (
        lambda t: write(t, with_model(ROOT / "models/crispr_seed.py")), "has no exact_posterior"),
    "two models stored under one name": (
        lambda t: write(t, GOOD.replace(f'model = "{MODEL}"', f'models = ["{MODEL}", '
                                        f'"{ROOT / "tests/plan_models/normal_mean.py"}"]')),
        "would both be stored as 'normal_mean'"),
    "missing seed": (lambda t: write(t, GOOD.replace("seed = 7", "")), "missing key 'seed'"),
    "study changed since the store was created": (
        lambda t: write(t, GOOD.replace("seed = 7", "seed = 8")), "different study (changed: seed)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_study_gives_clear_error_and_leaves_store_untouched(case, store, tmp_path, capsys):
    _, out = store
    before = snapshot(out)
    make, expected = CASES[case]
    rc = main(["run", str(make(tmp_path)), "--out", str(out), "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert expected in err
    assert "Traceback" not in err
    assert snapshot(out) == before


def test_output_path_that_is_a_file(store, tmp_path, capsys):
    study, _ = store
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert main(["run", str(study), "--out", str(target), "--workers", "0"]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_non_empty_foreign_directory_is_refused(store, tmp_path, capsys):
    study, _ = store
    (tmp_path / "thesis.tex").write_text("precious")
    assert main(["run", str(study), "--out", str(tmp_path), "--workers", "0"]) == 2
    assert "holds no sbc study" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("args,expected", [(["--sims", "0"], "positive integer"),
                                           (["--workers", "-1"], "0 (in-process) or more")])
def test_bad_cli_arguments(store, args, expected, capsys):
    study, out = store
    before = snapshot(out)
    with pytest.raises(SystemExit) as exc:
        main(["run", str(study), "--out", str(out), *args])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err
    assert snapshot(out) == before


def test_unreachable_scheduler_times_out_with_message(store, capsys):
    study, out = store
    before = snapshot(out)
    rc = main(["run", str(study), "--out", str(out), "--sims", "6", "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert snapshot(out) == before


def test_report_on_a_directory_without_a_study(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no sbc study" in capsys.readouterr().err


def test_disk_full_gives_clear_error_and_keeps_results(store, tmp_path, monkeypatch, capsys):
    import sbc.store

    study, out = store
    before = snapshot(out)

    def full(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sbc.store, "atomic_write_bytes", full)
    rc = main(["run", str(study), "--out", str(out), "--sims", "6", "--workers", "0"])
    assert rc == 2
    assert "No space left on device" in capsys.readouterr().err
    assert snapshot(out) == before
