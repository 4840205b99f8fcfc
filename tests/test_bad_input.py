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
    "mass_matrix_gamma out of range": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\nmass_matrix_gamma = 2')),
        "must be \"auto\" or a number strictly between 0 and 1"),
    "mass_matrix_gamma a word": (
        lambda t: write(t, GOOD.replace('name = "exact"', 'name = "exact"\nmass_matrix_gamma = "big"')),
        "must be \"auto\" or a number strictly between 0 and 1"),
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


# --- where fits run: counts, conflicting options, crashes, schedulers ------------------------
# (outside testers' cases: a crashing in-process fit, options blamed on the file, ignored
# option combinations, extend("auto"), negative worker counts, a finished sequential study,
# TLS files with tcp://, an HTTP server given as the scheduler)

import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st  # noqa: E402

from support import sbc_cmd  # noqa: E402
from sbc.errors import ArgumentError, SbcError, StudyError  # noqa: E402

FAST = hsettings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
BAD_WORKERS = st.one_of(st.integers(max_value=-1), st.booleans(),
                        st.floats(allow_nan=True), st.text(max_size=3),
                        st.just([2]))
BAD_THREADS = st.one_of(st.integers(max_value=0), st.booleans(), st.floats(allow_nan=True),
                        st.text(max_size=3))


@pytest.mark.parametrize("how", [["--workers", "0"], ["--threads", "2"]])
def test_a_fit_that_kills_an_in_process_run_says_which_replicate(how, tmp_path):
    """Case 1: os.abort() in a fit run in this process ends the run, but with a message that
    names the replicate being fitted and points to worker processes; the store stays good."""
    study = write(tmp_path, GOOD)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SBC_TEST_FAULT": "abort"}
    proc = subprocess.run(sbc_cmd("run", study, "--out", out, *how, "--no-report"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    err = proc.stderr
    assert "Fatal Python error: Aborted" in err and "normal_mean.py" in err  # where it died
    assert "Extension modules" not in err
    found = re.findall(r"died while fitting in this process \(" + re.escape(" ".join(how))
                       + r"\): (.*?)\. A fit", err)
    assert found, err
    dying = re.findall(r"model normal_mean, design 3x2x2, replicate (\d+)", found[0])
    assert dying, err
    assert "--workers N" in err and "recorded as a failed replicate" in err
    # the replicate(s) in flight are not stored; everything stored reads back, and the same
    # command (without the fault) resumes the study
    from sbc.store import Store

    store = Store(out)
    assert all(not store.replicate_path("normal_mean", "3x2x2", int(r)).exists() for r in dying)
    assert all(r["status"] == "ok" for r in store.iter_records())
    assert main(["run", str(study), "--out", str(out), "--workers", "0", "--no-report"]) == 0
    assert sorted(r["rep"] for r in Store(out).iter_records()) == [0, 1, 2, 3]


def test_the_crash_guard_is_silent_when_nothing_crashes(capfd):
    from sbc.inflight import Guard

    with Guard("--workers 0") as guard:
        guard.start("model m, design d, replicate 0")
        guard.end()
    assert guard._proc is None  # the watcher was waited for
    assert capfd.readouterr().err == ""


GUARD_CHILD = """
import os, sys
from sbc.inflight import Guard
with Guard("--threads 3") as guard:
    guard.start("model m, design 2x2x2, replicate 7")
    {death}
"""


@pytest.mark.parametrize("death", ["os.abort()", "os._exit(3)"])
def test_the_crash_guard_names_the_replicate_for_any_death(death):
    proc = subprocess.run([sys.executable, "-c", GUARD_CHILD.format(death=death)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert ("died while fitting in this process (--threads 3): model m, design 2x2x2, "
            "replicate 7.") in proc.stderr


@pytest.mark.parametrize("args,expected", [
    (["--sims", "auto", "--max-sims", "5"], "--max-sims 5: the most simulations"),
    (["--sims", "auto", "--max-sims", "200000"], "--max-sims 200000 (for "),
    (["--max-sims", "50"], "--max-sims needs a sequential study"),
    (["--sims", "200000"], "--sims 200000 (for ")])
def test_values_from_the_command_line_are_blamed_on_the_option(store, args, expected, capsys):
    """Case 2: a bad value given on the command line names the option, never a key of the
    study file."""
    study, out = store
    before = snapshot(out)
    assert main(["run", str(study), "--out", str(out), "--workers", "0", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "key 'max_simulations'" not in err
    assert "key 'simulations'" not in err
    assert snapshot(out) == before


@FAST
@given(st.one_of(st.integers(max_value=9), st.booleans(), st.floats(), st.text(max_size=4)))
def test_a_bad_max_simulations_argument_is_named_as_the_argument(tmp_path, value):
    import sbc

    study = write(tmp_path, GOOD)
    with pytest.raises(StudyError, match=r"^max_simulations=") as info:
        sbc.run(study, tmp_path / "never", simulations="auto", max_simulations=value)
    assert "key 'max_simulations'" not in str(info.value)
    assert not (tmp_path / "never").exists()


@FAST
@given(st.one_of(st.integers(max_value=0), st.booleans(), st.floats(),
                 st.text(max_size=4).filter(lambda s: s != "auto")))
def test_a_bad_simulations_argument_is_named_as_the_argument(tmp_path, value):
    import sbc

    study = write(tmp_path, GOOD)
    with pytest.raises(StudyError, match=r"^simulations="):
        sbc.run(study, tmp_path / "never", simulations=value)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("command,args,expected", [
    ("run", ["--workers", "2", "--threads", "2"], "--workers 2 and --threads 2 were both given"),
    ("run", ["--threads", "2", "--workers", "0"], "--workers 0 and --threads 2 were both given"),
    ("run", ["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"],
     "--workers 2 and --scheduler tcp://127.0.0.1:9 were both given"),
    ("run", ["--threads", "2", "--scheduler", "tcp://127.0.0.1:9"],
     "--threads 2 and --scheduler tcp://127.0.0.1:9 were both given"),
    ("plan", ["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"],
     "--workers 2 and --scheduler tcp://127.0.0.1:9 were both given")])
def test_options_that_would_be_ignored_together_are_refused(store, tmp_path, command, args,
                                                            expected, capsys):
    """Case 3: --workers, --threads and --scheduler each choose where fits run; two of them
    together would silently ignore one."""
    study, out = store
    target = str(study) if command == "run" else str(write(tmp_path, plan_text(), "plan.toml"))
    where = out if command == "run" else tmp_path / "plan_out"
    before = snapshot(out)
    assert main([command, target, "--out", str(where), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "would be ignored" in err and "Traceback" not in err
    assert snapshot(out) == before
    assert command == "run" or not where.exists()


@pytest.mark.parametrize("extra,expected", [
    ("[run]\nworkers = 2\nthreads = 2\n", "'run.workers' and 'run.threads' are both set"),
    ('[run]\nscheduler = "tcp://127.0.0.1:9"\nworkers = 2\n',
     "'run.scheduler' and 'run.workers' are both set"),
    ('[run]\nscheduler = "tcp://127.0.0.1:9"\nthreads = 2\n',
     "'run.scheduler' and 'run.threads' are both set"),
    ('[run]\nworkers = 2\n[cluster]\nkind = "slurm"\n',
     "[cluster] kind = \"slurm\" and 'run.workers' are both set")])
def test_study_files_that_choose_twice_where_fits_run_are_refused(store, tmp_path, extra,
                                                                   expected, capsys):
    _, out = store
    before = snapshot(out)
    assert main(["run", str(write(tmp_path, GOOD + extra)), "--out", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert snapshot(out) == before


def test_local_options_on_the_command_line_beat_the_files_scheduler(tmp_path):
    """The command line overrides the study file: --workers 0 runs here even when the file
    names a scheduler (which is not running)."""
    study = write(tmp_path, GOOD + '[run]\nscheduler = "tcp://127.0.0.1:9"\n')
    assert main(["run", str(study), "--out", str(tmp_path / "o"), "--workers", "0",
                 "--no-report"]) == 0


def test_python_arguments_that_would_be_ignored_together_are_refused(tmp_path):
    import sbc

    study = write(tmp_path, GOOD)
    for kwargs in ({"workers": 2, "threads": 2}, {"workers": 0, "scheduler": "tcp://x:1"},
                   {"threads": 1, "scheduler": "tcp://x:1"}):
        with pytest.raises(ArgumentError, match="were both given"):
            sbc.run(study, tmp_path / "never", **kwargs)
    with pytest.raises(ArgumentError, match="workers=2 and scheduler='tcp://x:1'"):
        sbc.plan(write(tmp_path, plan_text(), "plan.toml"), tmp_path / "never", workers=2,
                 scheduler="tcp://x:1")
    assert not (tmp_path / "never").exists()


def test_extend_to_auto_goes_on_sequentially(store, tmp_path):
    """Case 4: Results.extend("auto") continues the study until each verdict is reached."""
    import shutil

    import sbc

    _, out = store
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    results = sbc.open(copy).extend("auto", max_simulations=12, workers=0, progress=False)
    assert len(results.replicates) == 12 and results.last_run.new == 8
    (outcome,) = results.sequential.values()
    assert outcome.stop_rep is not None


@FAST
@given(st.one_of(st.none(), st.integers(max_value=0), st.booleans(), st.floats(),
                 st.text(max_size=4).filter(lambda s: s != "auto")))
def test_extend_refuses_what_is_not_a_number_of_simulations(store, value):
    import sbc

    _, out = store
    before = snapshot(out)
    with pytest.raises(SbcError, match="simulations"):
        sbc.open(out).extend(value, workers=0, progress=False)
    assert snapshot(out) == before


@FAST
@given(BAD_WORKERS)
def test_bad_worker_counts_are_refused_everywhere_they_enter(store, tmp_path, workers):
    """Case 5: workers=-2 hung (a cluster of no workers); every entry point refuses it at
    once, naming the argument, before any file is read or store touched."""
    import sbc
    from sbc.dispatch import session
    from sbc.pipeline import run_study
    from sbc.runner import Runner
    from sbc.study import load_study
    from sbc.testing import assert_calibrated, check_calibration

    study, out = store
    before = snapshot(out)
    never = tmp_path / "never"
    calls = [
        lambda: sbc.run(study, out, workers=workers),
        lambda: run_study(load_study(study), out, workers=workers),
        lambda: sbc.open(out).extend(10, workers=workers),
        lambda: sbc.plan(write(tmp_path, plan_text(), "plan.toml"), never, workers=workers),
        lambda: check_calibration(MODEL, (3, 2, 2), workers=workers, cache_dir=never),
        lambda: assert_calibrated(MODEL, (3, 2, 2), workers=workers, cache_dir=never),
        lambda: Runner(never, {}, workers=workers),
        lambda: session(workers=workers, scheduler=None).__enter__(),
    ]
    for call in calls:
        with pytest.raises(ArgumentError, match=r"workers must be a whole number >= 0"):
            call()
    assert snapshot(out) == before and not never.exists()


@FAST
@given(BAD_THREADS)
def test_bad_thread_counts_are_refused_everywhere_they_enter(store, tmp_path, threads):
    import sbc
    from sbc.dispatch import session
    from sbc.pipeline import run_study
    from sbc.runner import Runner
    from sbc.study import load_study

    study, out = store
    before = snapshot(out)
    never = tmp_path / "never"
    for call in (lambda: sbc.run(study, out, threads=threads),
                 lambda: run_study(load_study(study), out, threads=threads),
                 lambda: Runner(never, {}, threads=threads),
                 lambda: session(workers=None, scheduler=None, threads=threads).__enter__()):
        with pytest.raises(ArgumentError, match=r"threads must be a whole number >= 1"):
            call()
    assert snapshot(out) == before and not never.exists()


def test_a_finished_sequential_study_says_nothing_was_needed(tmp_path, capsys):
    """Case 6: resuming a sequential study that already reached its verdict says so, not
    "0 of this run's 0 already stored ... more than the 0 this run asks for"."""
    study = write(tmp_path, GOOD)
    args = ["run", str(study), "--out", str(tmp_path / "o"), "--workers", "0", "--sims",
            "auto", "--max-sims", "10", "--no-report"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "10 new replicates" in first and "this run's" not in first
    assert main(args) == 0
    text = capsys.readouterr().out
    assert ("nothing to fit: the stored study had already reached its verdict for all 1 "
            "model x design pair(s), with 10 replicates stored") in text
    assert "this run's 0" not in text and "more than the 0" not in text


@pytest.mark.parametrize("command", ["run", "plan"])
@pytest.mark.parametrize("scheduler", ["tcp://127.0.0.1:9", None])
def test_tls_files_without_a_tls_address_are_refused(store, tmp_path, capsys, command,
                                                     scheduler):
    """Case 7: certificates are read only for a tls:// scheduler; with tcp:// (or none)
    they would be ignored and the traffic left unencrypted."""
    study, out = store
    ca = tmp_path / "ca.pem"
    ca.write_text("not read")
    target = str(study) if command == "run" else str(write(tmp_path, plan_text(), "plan.toml"))
    where = out if command == "run" else tmp_path / "plan_out"
    before = snapshot(out)
    args = [command, target, "--out", str(where), "--tls-ca-file", str(ca)]
    args += ["--scheduler", scheduler] if scheduler else ["--workers", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--tls-ca-file {ca}" in err and "TLS needs a tls:// address" in err
    assert (f"{scheduler} is not a tls:// address" if scheduler else
            "no scheduler address is given") in err
    assert snapshot(out) == before


def test_tls_argument_without_a_tls_address_is_refused_in_python(store):
    import sbc
    from sbc.dispatch import TLS
    from sbc.errors import SchedulerError

    study, out = store
    with pytest.raises(SchedulerError, match="TLS needs a tls:// address"):
        sbc.run(study, out, scheduler="tcp://127.0.0.1:9", tls=TLS(cert="c.pem"))


@pytest.fixture
def http_server():
    """A plain HTTP server on a free local port: something that is not a Dask scheduler."""
    import http.server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_http_server_given_as_scheduler_fails_in_bounded_time(store, http_server,
                                                                 monkeypatch, capsys):
    """Case 8: Dask's client waits forever for the handshake of a server that accepts the
    connection but is not Dask; the run fails within the connect timeout instead."""
    import sbc.dispatch

    monkeypatch.setattr(sbc.dispatch, "CONNECT_TIMEOUT", 1.0)
    study, out = store
    before = snapshot(out)
    start = time.monotonic()
    rc = main(["run", str(study), "--out", str(out), "--sims", "6", "--scheduler",
               http_server])
    assert time.monotonic() - start < 30
    assert rc == 2
    err = capsys.readouterr().err
    assert f"no Dask scheduler answered at {http_server} within 1 s" in err
    assert "Traceback" not in err
    assert snapshot(out) == before


def test_the_scheduler_probe_knows_a_scheduler_from_a_worker():
    from dask.distributed import LocalCluster

    from sbc.dispatch import probe_scheduler
    from sbc.errors import SchedulerError

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        probe_scheduler(cluster.scheduler_address)  # answers: no error
        worker = next(iter(cluster.workers.values())).address
        with pytest.raises(SchedulerError, match="answered as a Dask Worker, not a scheduler"):
            probe_scheduler(worker)


@FAST
@given(st.one_of(st.integers(max_value=-1).map(str), st.sampled_from(["x", "1.5", ""])))
def test_the_sbc_workers_pytest_option_refuses_what_is_not_a_worker_count(text):
    import argparse

    from sbc.testing.plugin import _workers

    with pytest.raises(argparse.ArgumentTypeError, match="0 \\(in the test process\\) or more"):
        _workers(text)
    assert _workers("0") == 0 and _workers("3") == 3


# --- 10. numbers that cannot be stored: nan, inf and integers beyond 2**53, in every field
# The store keeps the study and plan as strict JSON (study.json); a value it cannot read
# back must be refused when the file is read, naming the file and the key, never stored
# (then the next run or report would refuse the store's own study.json as damaged).
import math  # noqa: E402
import tomllib  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GENOME_PLAN = """
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
effect = -1.0
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
[library]
sd = 0.5
t0_depth = 500.0
[priors]
tau = {family = "LogNormal", mu = -1.9, sigma = 0.3}
[search]
batch = 10
max_simulations = 20
"""
# (file kind, key path, integer field?) of every numeric key of study and plan files
NUMERIC_FIELDS = [
    *(("plan", key, False) for key in (
        "probability", "cost.fixed", "cost.per_cell_line", "cost.per_gene",
        "cost.per_replicate", "cost.per_screen", "cost.per_measurement", "search.confidence",
        "search.alpha", "search.max_minutes_per_design", "search.max_flagged", "target.below",
        "target.level", "pilot.widen", "sampler.target_accept", "sampler.timeout")),
    *(("plan", key, True) for key in (
        "search.batch", "search.max_simulations", "search.runners_up",
        "search.calibration_simulations", "sampler.chains", "sampler.tune", "sampler.draws",
        "sampler.max_treedepth", "pilot.draws", "pilot.tune", "pilot.chains", "run.workers",
        "run.batch_size", "limits.simulations", "space.cell_lines[0]", "space.genes.from")),
    *(("genome", key, False) for key in (
        "probability", "cost.per_cell_line", "cost.per_million_reads", "cost.fixed",
        "cost.per_screen", "cost.culture_per_1000_guides", "search.confidence", "search.alpha",
        "candidates.fraction", "candidates.effect", "library.sd", "library.t0_depth",
        "priors.tau.mu", "priors.tau.sigma", "targets[0].at_least", "targets[0].fdr",
        "targets[0].level", "targets[1].below")),
    *(("genome", key, True) for key in (
        "candidates.genes", "search.batch", "search.max_simulations", "shortcut.hyper_draws",
        "shortcut.n_pit", "targets[0].n_controls", "space.reps[0]", "limits.designs")),
    *(("study", key, False) for key in (
        "sampler.target_accept", "sampler.timeout", "sequential.alpha", "sequential.power",
        "sequential.shift", "sequential.narrow")),
    *(("study", key, True) for key in (
        "max_simulations", "sampler.chains", "sampler.tune", "sampler.draws",
        "sampler.max_treedepth", "run.workers", "run.threads", "run.batch_size",
        "designs[0].cell_lines", "limits.rows", "cluster.jobs")),
]
NOT_STORABLE = st.sampled_from([math.inf, -math.inf, math.nan])
TOO_LARGE = st.integers(2**53 + 1, 2**70)


def _base(kind: str) -> dict:
    if kind == "plan":
        raw = tomllib.loads(plan_text(extra='[pilot]\ndata = "pilot.csv"\n[run]\nworkers = 1\n'
                                             '[search]\nbatch = 5\n[cost]\nfixed = 1.0\n'))
        raw["space"]["genes"] = {"from": 2, "to": 3}
        return raw
    if kind == "genome":
        return tomllib.loads(GENOME_PLAN)
    raw = tomllib.loads(GOOD.replace("simulations = 4", 'simulations = "auto"'))
    raw.update(max_simulations=100, sequential={"alpha": 0.05}, run={"workers": 1},
               cluster={"jobs": 1})
    return raw


def _put(raw: dict, key: str, value) -> None:
    """Set the (dotted, with [i] indices) ``key`` of ``raw`` to ``value``."""
    import re

    parts = [int(p) if p.isdigit() else p for p in re.split(r"\.|\[|\]\.?", key) if p != ""]
    target = raw
    for part in parts[:-1]:
        target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
    target[parts[-1]] = value


def _parse(kind: str, raw: dict, path: Path):
    from sbc.plan.config import parse_plan
    from sbc.plan.genome_config import parse_genome_plan
    from sbc.study import parse_study

    return {"plan": parse_plan, "genome": parse_genome_plan, "study": parse_study}[kind](raw, path)


@pytest.mark.parametrize("kind", ["plan", "genome", "study"])
def test_the_base_files_of_the_number_property_are_valid(kind):
    _parse(kind, _base(kind), Path(f"/files/{kind}.toml"))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(NUMERIC_FIELDS), data=st.data())
def test_no_numeric_field_accepts_a_number_that_cannot_be_stored(field, data):
    """Property: nan, inf, -inf in any numeric key of a study, plan or genome plan file, and
    an integer beyond 2**53 in any integer key, is refused at load with a StudyError naming
    the file and the key (JSON has no nan or inf; larger integers are not exact)."""
    from sbc.errors import StudyError

    kind, key, integer = field
    value = data.draw(st.one_of(NOT_STORABLE, TOO_LARGE) if integer else NOT_STORABLE)
    raw = _base(kind)
    _put(raw, key, value)
    path = Path(f"/files/{kind}_file.toml")
    with pytest.raises(StudyError) as info:
        _parse(kind, raw, path)
    message = str(info.value)
    leaf = key.split(".")[-1].split("[")[0]
    assert str(path) in message and leaf in message, message


def test_an_infinite_cost_is_refused_by_sbc_plan_before_anything_is_stored(tmp_path, capsys):
    for name, text in (("plan.toml", plan_text(extra="[cost]\nper_gene = inf\n")),
                       ("genome.toml", GENOME_PLAN.replace("per_cell_line = 1.0",
                                                           "per_cell_line = inf"))):
        plan = write(tmp_path, text, name)
        out = tmp_path / f"out_{name}"
        assert main(["plan", str(plan), "--out", str(out), "--workers", "0"]) == 2
        err = capsys.readouterr().err
        assert str(plan) in err and "must be a finite number >= 0, got inf" in err, err
        assert not out.exists()


def test_the_store_never_writes_a_study_json_it_could_not_read_back(tmp_path):
    """A non-finite value that reaches the store (e.g. from Python) is refused before the
    directory is created; an older store that holds one is named with the fix."""
    from sbc.errors import StoreError
    from sbc.store import Store

    manifest = {"fingerprint": "f" * 16, "model_digests": {}, "plan": {"cost": {"fixed": math.inf}},
                "study": {"name": "s", "models": ["m"], "designs": ["1x1x1"], "seed": 3}}
    with pytest.raises(StoreError, match=r"'plan.cost.fixed' is not a finite number"):
        Store.open_for_run(tmp_path / "new", manifest)
    assert not (tmp_path / "new").exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "study.json").write_text(__import__("json").dumps(manifest))  # Infinity, as before
    rc = main(["report", str(old)])
    assert rc == 2


def test_an_older_store_holding_infinity_names_the_fix(tmp_path, capsys):
    import json

    manifest = {"fingerprint": "f" * 16, "model_digests": {}, "plan": {"cost": {"fixed": math.inf}},
                "study": {"name": "s", "models": ["m"], "designs": ["1x1x1"], "seed": 3}}
    (tmp_path / "study.json").write_text(json.dumps(manifest))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds Infinity, which is not strict JSON" in err and "stored replicates are intact" in err


@pytest.mark.parametrize("args, expected", [
    (["run", "STUDY", "--sims", str(2**60)], "at most 2**53"),
    (["run", "STUDY", "--workers", "1e3"], "expected 0 (in-process) or more workers"),
    (["fit", "data.csv", "--seed", str(2**64)], "at most 2**53"),
    (["fit-seed", "--draws", "inf"], "expected a positive integer, got 'inf'"),
])
def test_cli_numbers_that_cannot_be_stored_are_refused(store, args, expected, capsys):
    study, out = store
    before = snapshot(out)
    args = [str(study) if a == "STUDY" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main([*args, *(["--out", str(out)] if args[0] == "run" else [])])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err
    assert snapshot(out) == before


def test_cli_alpha_nan_is_refused(tmp_path, capsys):
    assert main(["check", str(tmp_path / "data.csv"), "--alpha", "nan",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--alpha must lie strictly between 0 and 1, got nan" in capsys.readouterr().err


# --- 11. parameter names: whatever PyMC accepts, the report draws -----------------------
LONG = "a" * 310
ODD_NAMES = (LONG, "a" * 309 + "b", "Mu", "mu", "θ_ünï名前", "x.y z[1]", "tab\there",
             "line\nbreak", "<b>&amp;", ".", "chain", "n_ranked", "mu_dim_0")


def test_any_parameter_name_pymc_accepts_reports(tmp_path, capsys):
    """Long names (310 characters, two that differ only at the end), names that differ
    only in case, unicode, dots, spaces, brackets, tabs, line breaks, HTML, and names the
    ranks.nc layout uses itself ('.', chain, n_ranked, X_dim_0): the run and its report
    succeed, the report names every parameter in full, and ranks.nc keeps every one."""
    import html

    import xarray as xr

    model = model_file(tmp_path, (
        "import numpy as np\nimport pymc as pm\n"
        f"NAMES = {ODD_NAMES!r}\n"
        "def build(data):\n    with pm.Model() as model:\n"
        "        first = [pm.Normal(n, 0.0, 1.0) for n in NAMES][0]\n"
        "        pm.Normal('logfc', first, 1.0, observed=data['logfc'].to_numpy())\n"
        "    return model\n"
        "def exact_posterior(data, y, n_draws, rng):\n    n = len(y)\n"
        "    draws = {name: rng.normal(0.0, 1.0, size=n_draws) for name in NAMES[1:]}\n"
        "    draws[NAMES[0]] = rng.normal(np.sum(y) / (1 + n), 1 / np.sqrt(1 + n), size=n_draws)\n"
        "    return draws\n"))
    study = write(tmp_path, with_model(model).replace("simulations = 4", "simulations = 12"))
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--workers", "0"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    page = (out / "report.html").read_text()
    for name in ODD_NAMES:
        assert html.escape(name, quote=False) in page or html.escape(name) in page, name
    assert main(["report", str(out)]) == 0
    with xr.open_datatree(out / "ranks.nc", engine="h5netcdf") as tree:
        for group in ("prior_sbc", "sbc_ranks"):
            node = tree[f"{model.stem}/3x2x2/{group}"]
            stored = {v.attrs.get("sbc_name") for v in node.data_vars.values()}
            assert set(ODD_NAMES) <= stored
            assert node["n_ranked_" if group == "prior_sbc" else "n_ranked"].size == 12


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(names=st.lists(st.text(st.characters(blacklist_characters="/\x00",
                                            blacklist_categories=("Cs",)),
                              min_size=1, max_size=400),
                      min_size=1, max_size=3, unique=True))
def test_figures_draw_any_name(names):
    """Property: every figure of the report draws whatever names it is given (length,
    script, control characters, mathtext), within its margins."""
    import numpy as np

    from sbc import plots, render

    rng = np.random.default_rng(0)
    panels = [plots.Panel(title=n, u=[rng.uniform(size=20)], truth=rng.normal(size=20),
                          mean=rng.normal(size=20), lo=rng.normal(size=20) - 1,
                          hi=rng.normal(size=20) + 1, contraction=rng.uniform(size=20),
                          z=rng.normal(size=20), flagged=np.zeros(20, bool)) for n in names]
    rows = [plots.CoverageRow(n, 20, np.full((1, 4), 0.6), np.full(4, 0.3),
                              np.full(4, 0.9)) for n in names]
    figures = [plots.ecdf_difference_grid(panels), plots.coverage_plot(rows),
               plots.design_trend(names, ["2x2x2", "3x3x3"], [8, 27],
                                  {"contraction": rng.uniform(size=(len(names), 2))})]
    for figure in figures:
        assert render.png_base64(figure)
    assert all(len(plots.short(n)) <= plots.LABEL_CHARS for n in names)
