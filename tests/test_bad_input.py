"""Catalogue of user mistakes: each gives a specific message (what, where, how to fix), a
non-zero exit, and leaves an existing store exactly as it was."""

import errno
import hashlib
from pathlib import Path

import pytest

from support import ROOT
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


def write_bytes(tmp_path, payload: bytes, name="study.toml"):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def with_run(line):
    return GOOD + f"[run]\n{line}\n"


def posterior_study(tmp_path, csv_text: str | bytes, name="observed.csv"):
    """A posterior-SBC study whose observed data file holds ``csv_text``."""
    csv = tmp_path / name
    if isinstance(csv_text, bytes):
        csv.write_bytes(csv_text)
    else:
        csv.write_text(csv_text)
    head = GOOD.split("[[designs]]")[0]
    return write(tmp_path, head + f'[posterior_sbc]\ndata = "{csv}"\n'
                 '[sampler]\nname = "exact"\ndraws = 99\n')


OBSERVED = "cell_line,gene,expt,logfc\nc0,g0,e0,0.5\nc0,g1,e0,-0.5\nc1,g0,e0,0.1\n"
BAMBI_DEFAULTS = ("import bambi as bmb\ndef build(data):\n"
                  "    return bmb.Model('logfc ~ 1 + (1|gene)', data)\n")
BAMBI_SIGMA_DEFAULT = (
    "import bambi as bmb\ndef build(data):\n"
    "    priors = {'Intercept': bmb.Prior('Normal', mu=0, sigma=1),\n"
    "              '1|gene': bmb.Prior('Normal', mu=0, sigma=bmb.Prior('Exponential', lam=1))}\n"
    "    return bmb.Model('logfc ~ 1 + (1|gene)', data, priors=priors)\n")


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
    # 1. files that are not UTF-8: the file, the byte offset, line and column
    "study file not UTF-8": (
        lambda t: write_bytes(t, GOOD.encode() + b"# caf\xff\xfe\n"),
        f"is not valid UTF-8: byte 0xff at byte offset {len(GOOD.encode()) + 5} "
        f"(line {GOOD.count(chr(10)) + 1}, column 6)"),
    "model file not UTF-8": (
        lambda t: write(t, with_model(write_bytes(
            t, b"# \xff\xfe comment\n" + MODEL.read_bytes(), "m.py"))),
        "m.py is not valid UTF-8: byte 0xff at byte offset 2 (line 1, column 3)"),
    # 2. wrong types in [run]
    "run.output not a string": (lambda t: write(t, with_run("output = 5")),
                                "'run.output' must be a directory path (a string), got 5"),
    "run.output empty": (lambda t: write(t, with_run('output = ""')), "'run.output' must be"),
    "run.scheduler not a string": (lambda t: write(t, with_run("scheduler = 0")),
                                   "'run.scheduler' must be an address"),
    "run.scheduler a boolean": (lambda t: write(t, with_run("scheduler = false")),
                                "got False"),
    "run.workers not an integer": (lambda t: write(t, with_run("workers = 1.5")),
                                   "'run.workers' must be an integer, got 1.5"),
    "run.batch_size not an integer": (lambda t: write(t, with_run('batch_size = "4"')),
                                      "'run.batch_size' must be an integer"),
    "run not a table": (lambda t: write(t, GOOD.replace("seed = 7", "seed = 7\nrun = 5")),
                        "'run' must be a table"),
    # 3. seeds outside 0 <= seed < 2**63 (stored as 64-bit integers)
    "seed of 2**63": (lambda t: write(t, GOOD.replace("seed = 7", f"seed = {2**63}")),
                      "0 <= seed < 2**63"),
    "seed far beyond 2**64": (lambda t: write(t, GOOD.replace("seed = 7", f"seed = {2**70}")),
                              "0 <= seed < 2**63"),
    "negative seed": (lambda t: write(t, GOOD.replace("seed = 7", "seed = -1")),
                      "0 <= seed < 2**63"),
    "seed not an integer": (lambda t: write(t, GOOD.replace("seed = 7", "seed = 7.0")),
                            "0 <= seed < 2**63 (at most 9223372036854775807), got 7.0"),
    # 4. names and labels that become path components
    "name climbs out of reports/": (
        lambda t: write(t, GOOD.replace('name = "bad_input"', 'name = "../../../x"')),
        "key 'name' = '../../../x' contains '/'"),
    "absolute name": (lambda t: write(t, GOOD.replace('name = "bad_input"', 'name = "/tmp/x"')),
                      "must not start with a dot; write e.g. name = \"tmp_x\""),
    "name starting with a dot": (
        lambda t: write(t, GOOD.replace('name = "bad_input"', 'name = ".hidden"')),
        "'.hidden' starts with a dot"),
    "name with a space": (
        lambda t: write(t, GOOD.replace('name = "bad_input"', 'name = "my study"')),
        "contains ' '"),
    "name not a string": (lambda t: write(t, GOOD.replace('name = "bad_input"', "name = 5")),
                          "'name' must be a non-empty string, got 5"),
    "default name from an unsafe file name": (
        lambda t: write(t, GOOD.replace('name = "bad_input"\n', ""), name="my study.toml"),
        "the name taken from the file name 'my study' contains ' '"),
    "model file named ...py gets the label '..'": (
        lambda t: write(t, with_model(model_file(t, MODEL.read_text(), name="...py"))),
        "'..' starts with a dot; it becomes a directory name"),
    "model file name with a space": (
        lambda t: write(t, with_model(model_file(t, MODEL.read_text(), name="my model.py"))),
        "rename the file to e.g. my_model.py"),
    "model function that is not a name": (
        lambda t: write(t, with_model(f"{MODEL}:../x")), "'../x' is not a function name"),
    # 7. resource guards with stated, overridable limits
    "a billion simulations": (
        lambda t: write(t, GOOD.replace("simulations = 4", "simulations = 1000000000")),
        "exceeds the limit of 100,000 simulations per model and design"),
    "simulations as a float": (
        lambda t: write(t, GOOD.replace("simulations = 4", "simulations = 1e9")),
        "'simulations' must be an integer, got 1000000000.0"),
    "a design of a billion rows": (
        lambda t: write(t, GOOD.replace("cell_lines = 3", "cell_lines = 1000")
                        .replace("genes = 2", "genes = 1000").replace("reps = 2", "reps = 1000")),
        "design 1000x1000x1000 has 1,000,000,000 rows, which exceeds the limit of 10,000,000 "
        "rows per design"),
    "limit names the override": (
        lambda t: write(t, GOOD.replace("simulations = 4", "simulations = 100001")),
        "[limits] simulations = 100001"),
    "grid of too many designs": (
        lambda t: write(t, GOOD.split("[[designs]]")[0] + "[grid]\n"
                        + "".join(f"{k} = {list(range(1, 23))}\n"
                                  for k in ("cell_lines", "genes", "reps"))
                        + '[sampler]\nname = "exact"\n'),
        "22 x 22 x 22 designs, which exceeds the limit of 10,000 designs"),
    "limits not a table": (lambda t: write(t, GOOD.replace("seed = 7", "seed = 7\nlimits = 5")),
                           "'limits' must be a table"),
    "unknown limits key": (
        lambda t: write(t, GOOD + "[limits]\nsimulation = 5\n"),
        "did you mean 'limits.simulations'"),
    # 8. Bambi's default priors are refused at load time, naming the terms
    "bambi model with default priors": (
        lambda t: write(t, with_model(model_file(t, BAMBI_DEFAULTS))),
        "relies on Bambi's default priors for Intercept, 1|gene, sigma"),
    "bambi model with a default prior on sigma only": (
        lambda t: write(t, with_model(model_file(t, BAMBI_SIGMA_DEFAULT))),
        "default priors for sigma; Bambi scales"),
    # 6. posterior-SBC data
    "observed data with an empty gene cell": (
        lambda t: posterior_study(t, OBSERVED.replace("c0,g1,", "c0,,")),
        "the 'gene' cell of data row 2 is empty"),
    "observed data with a blank cell_line cell": (
        lambda t: posterior_study(t, OBSERVED.replace("c1,g0", "  ,g0")),
        "the 'cell_line' cell of data row 3 is empty"),
    "observed data with a header only": (
        lambda t: posterior_study(t, "cell_line,gene,expt,logfc\n"),
        "has a header but no data rows"),
    "observed data file empty": (lambda t: posterior_study(t, ""), "observed.csv is empty"),
    "observed data with a duplicated column": (
        lambda t: posterior_study(t, OBSERVED.replace("expt,logfc", "logfc,logfc")),
        "column name 'logfc' appears twice in the header (columns 3 and 4)"),
    "observed data not UTF-8": (
        lambda t: posterior_study(t, OBSERVED.encode() + b"c1,g\xe9,e0,0.2\n"),
        "observed.csv is not valid UTF-8: byte 0xe9"),
    "observed data file with an unsafe name": (
        lambda t: posterior_study(t, OBSERVED, name="my data.csv"),
        "the design label 'posterior-my data' contains ' '"),
    "observed data file missing": (
        lambda t: write(t, GOOD.split("[[designs]]")[0] + '[posterior_sbc]\ndata = "no.csv"\n'),
        "observed data file not found"),
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


def test_limits_can_be_raised(tmp_path):
    from sbc.study import load_study

    path = write(tmp_path, GOOD.replace("simulations = 4", "simulations = 150000")
                 + "[limits]\nsimulations = 200000\n")
    assert load_study(path).simulations == 150000


def test_parameter_name_that_is_not_mathtext_still_reports(tmp_path, capsys):
    """9. A parameter named like broken mathtext is drawn as plain text in every figure."""
    model = model_file(tmp_path, (
        "import numpy as np\nimport pymc as pm\nNAME = '$\\\\x{y}$'\n"
        "def build(data):\n    with pm.Model() as model:\n"
        "        mu = pm.Normal(NAME, 0.0, 1.0)\n"
        "        pm.Normal('logfc', mu, 1.0, observed=data['logfc'].to_numpy())\n"
        "    return model\n"
        "def exact_posterior(data, y, n_draws, rng):\n    n = len(y)\n"
        "    return {NAME: rng.normal(np.sum(y) / (1 + n), 1 / np.sqrt(1 + n), size=n_draws)}\n"))
    study = write(tmp_path, with_model(model).replace("simulations = 4", "simulations = 10"))
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--workers", "0"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert r"$\x{y}$" in (out / "report.html").read_text()


def test_plain_labels_are_never_mathtext():
    import matplotlib.pyplot as plt

    from sbc.plots import plain

    fig, ax = plt.subplots()
    ax.set_title(plain(r"$\x{y}$"))
    ax.set_yticks([0], [plain("a$b$c")])
    fig.canvas.draw()  # raises on unparsable mathtext
    plt.close(fig)


PLAN_MODEL = ROOT / "tests/plan_models/normal_mean.py"  # scalar mu
VECTOR_MODEL = MODEL  # mu per gene
PLAN = """
name = "bad_plan"
seed = 11
model = "{model}"
probability = 0.8
[space]
cell_lines = {cell_lines}
genes = [2]
reps = [2]
[target]
quantity = "{quantity}"
criterion = "width"
below = 0.5
[sampler]
name = "exact"
draws = 99
"""


def plan_text(model=PLAN_MODEL, cell_lines="[2, 3]", quantity="mu", extra=""):
    return PLAN.format(model=model, cell_lines=cell_lines, quantity=quantity) + extra


def pilot_plan(tmp_path, csv_text):
    """A plan whose design prior comes from a pilot screen holding ``csv_text``."""
    write(tmp_path, csv_text, "pilot.csv")
    return write(tmp_path, plan_text(extra='[pilot]\ncsv = "pilot.csv"\n'), "plan.toml")


def in_top(text, line):
    """``text`` with ``line`` added at the top level (before the first table)."""
    return text.replace('probability = 0.8', f"probability = 0.8\n{line}")


PLAN_CASES = {
    # 5. ranges
    "range with by = 0": (lambda t: write(t, plan_text(cell_lines="{from = 2, to = 6, by = 0}"),
                                          "plan.toml"),
                          "'space.cell_lines.by' (the step between values) must be an integer >= 1, got 0"),
    "range with negative by": (
        lambda t: write(t, plan_text(cell_lines="{from = 2, to = 6, by = -2}"), "plan.toml"),
        "must be an integer >= 1, got -2"),
    "range to 1e9 (a float)": (
        lambda t: write(t, plan_text(cell_lines="{from = 2, to = 1e9}"), "plan.toml"),
        "'space.cell_lines.to' must be an integer, got 1000000000.0"),
    "range to a billion": (
        lambda t: write(t, plan_text(cell_lines="{from = 2, to = 1000000000}"), "plan.toml"),
        "has 999,999,999 values, which exceeds the limit of 10,000 designs"),
    "empty range": (lambda t: write(t, plan_text(cell_lines="{from = 6, to = 2}"), "plan.toml"),
                    "runs from 6 to 2, which is empty"),
    "range with an unknown key": (
        lambda t: write(t, plan_text(cell_lines="{from = 2, to = 6, step = 2}"), "plan.toml"),
        "unknown key 'space.cell_lines.step'; valid keys are: by, from, to"),
    # 5. targets naming elements that do not exist, checked against the model
    "element of a scalar": (lambda t: write(t, plan_text(quantity="mu[0]"), "plan.toml"),
                            "'mu' is a scalar (no elements); write quantity = \"mu\""),
    "index past the end": (
        lambda t: write(t, plan_text(model=VECTOR_MODEL, quantity="mu[2]"), "plan.toml"),
        "'mu' has shape (2,) there; valid elements: mu[0], mu[1]"),
    "too many indices": (
        lambda t: write(t, plan_text(model=VECTOR_MODEL, quantity="mu[0, 1]"), "plan.toml"),
        "'mu[0,1]' names an element of 'mu'"),
    "element of a parameter that does not exist": (
        lambda t: write(t, plan_text(quantity="nu[0]"), "plan.toml"),
        "'nu[0]' is not a parameter of the model"),
    "negative index": (lambda t: write(t, plan_text(model=VECTOR_MODEL, quantity="mu[-1]"),
                                       "plan.toml"),
                       "must be non-negative integers"),
    "malformed element": (lambda t: write(t, plan_text(quantity="mu[0"), "plan.toml"),
                          "one element as name[i]"),
    # 2-4, 7 in plan files
    "plan seed of 2**63": (
        lambda t: write(t, plan_text().replace("seed = 11", f"seed = {2**63}"), "plan.toml"),
        "0 <= seed < 2**63"),
    "plan name climbs out of reports/": (
        lambda t: write(t, plan_text().replace('"bad_plan"', '"../../x"'), "plan.toml"),
        "key 'name' = '../../x' contains '/'"),
    "plan run.output not a string": (
        lambda t: write(t, plan_text(extra="[run]\noutput = 5\n"), "plan.toml"),
        "'run.output' must be a directory path (a string), got 5"),
    "plan run.scheduler not a string": (
        lambda t: write(t, plan_text(extra="[run]\nscheduler = 8786\n"), "plan.toml"),
        "'run.scheduler' must be an address"),
    "plan max_simulations beyond the limit": (
        lambda t: write(t, plan_text(extra="[search]\nmax_simulations = 1000000\n"),
                        "plan.toml"),
        "'search.max_simulations' = 1000000 exceeds the limit of 100,000"),
    "plan design of too many rows": (
        lambda t: write(t, plan_text(cell_lines="[2, 10000000]"), "plan.toml"),
        "has 40,000,000 rows, which exceeds the limit of 10,000,000 rows per design"),
    "plan file not UTF-8": (
        lambda t: write_bytes(t, plan_text().encode() + b"# \xff\n", "plan.toml"),
        "plan file"),
    "plan description not a string": (
        lambda t: write(t, in_top(plan_text(), "description = 5"), "plan.toml"),
        "'description' must be a string"),
    "plan cost unit not a string": (
        lambda t: write(t, plan_text(extra="[cost]\nunit = 5\n"), "plan.toml"),
        "'cost.unit' must be a string"),
    "plan target label not a string": (
        lambda t: write(t, plan_text().replace('below = 0.5', 'below = 0.5\nlabel = 3'),
                        "plan.toml"),
        "'target.label' must be a string"),
    "pilot csv with a duplicated column": (
        lambda t: pilot_plan(t, OBSERVED.replace("expt,", "gene,")),
        "pilot csv"),
    "pilot csv with an empty gene cell": (
        lambda t: pilot_plan(t, OBSERVED.replace("c0,g1,", "c0,,")),
        "the 'gene' cell of data row 2 is empty"),
}


@pytest.mark.parametrize("case", sorted(PLAN_CASES))
def test_bad_plan_gives_clear_error_before_any_fit(case, tmp_path, capsys):
    make, expected = PLAN_CASES[case]
    out = tmp_path / "out"
    rc = main(["plan", str(make(tmp_path)), "--out", str(out), "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert expected in err
    assert "Traceback" not in err
    assert not (out / "replicates").exists()


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


def test_sims_beyond_the_limit_names_the_override(store, capsys):
    study, out = store
    before = snapshot(out)
    assert main(["run", str(study), "--out", str(out), "--sims", "1000000"]) == 2
    err = capsys.readouterr().err
    assert "--sims 1000000" in err and "[limits] simulations = 1000000" in err
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
