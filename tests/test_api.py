"""The Python API: sbc.Study, sbc.run, sbc.open -> Results, sbc.plan -> PlanResults, the
shipped models and the rule for relative paths."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

import sbc
from sbc.errors import ModelError, StoreError, StudyError
from sbc.spec import known_models, resolve_model

ROOT = Path(__file__).resolve().parents[1]
PLAN_MODEL = ROOT / "tests" / "plan_models" / "normal_mean.py"


def exact_study(**changes) -> sbc.Study:
    fields = dict(name="api", models="normal_known_sigma", designs=[(3, 3, 2)],
                  simulations=20, seed=3, sampler="exact")
    fields.update(changes)
    return sbc.Study(**fields)


# --- Study: validated on construction --------------------------------------------------


def test_study_normalizes_the_convenient_forms():
    study = exact_study(models="normal_known_sigma", designs=[(3, 3, 2), "5x3x2"],
                        sampler={"name": "exact", "draws": 400})
    assert study.models == ("normal_known_sigma",)
    assert [d.label for d in study.designs] == ["3x3x2", "5x3x2"]
    assert study.sampler.name == "exact" and study.sampler.draws == 400
    assert Path(study.base_dir).is_absolute()


@pytest.mark.parametrize("change, message", [
    ({"seed": -1}, "seed"),
    ({"simulations": 0}, "simulations"),
    ({"designs": [(3, 3)]}, "design"),
    ({"designs": []}, "designs"),
    ({"sampler": "nutpy"}, "did you mean 'nutpie'"),
    ({"sampler": {"name": "exact", "chains": 0}}, "sampler.chains"),
    ({"name": "../elsewhere"}, "name"),
    ({"models": []}, "models"),
    ({"models": ["a", "a"]}, "twice"),
    ({"thin": 10_000}, "thin"),
    ({"workers": -1}, "workers"),
])
def test_study_refuses_bad_values_naming_the_field(change, message):
    with pytest.raises(StudyError, match=message):
        exact_study(**change)


def test_study_from_toml_is_the_study_file_reader():
    study = sbc.Study.from_toml(ROOT / "studies" / "crispr_seed.toml", simulations=7)
    assert study.simulations == 7 and study.models == ("crispr_screen", "crispr_seed")
    assert study.base_dir == str(ROOT / "studies")


# --- run / open / Results ----------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "out"
    return sbc.run(exact_study(), out, workers=0, progress=False)


def test_run_returns_results_with_tidy_tables_and_a_verdict(results):
    assert isinstance(results, sbc.Results)
    assert results.last_run.new == 20
    reps, params = results.replicates, results.parameters
    assert len(reps) == 20 and set(reps["status"]) == {"ok"}
    assert {"model", "design", "rep", "name", "truth", "rank", "n_ranked", "u", "flagged"} \
        <= set(params.columns)
    assert params["u"].between(0, 1).all()
    assert results.verdict.status == "pass"
    assert set(results.verdicts) == {("normal_known_sigma", "3x3x2")}
    table = results.verdict_table()
    assert list(table["verdict"]) == [results.verdict.label]
    summary = results.summary()
    assert {"name", "p_value", "group_p_holm", "verdict"} <= set(summary.columns)


def test_results_to_datatree_has_the_group_arviz_reads(results):
    tree = results.to_datatree()
    node = tree["normal_known_sigma"]["3x3x2"]["prior_sbc"]
    assert set(node.data_vars) >= {"mu", "gene_effect"}
    assert node["mu"].sizes == {"chain": 1, "draw": 20}
    ranks = tree["normal_known_sigma"]["3x3x2"]["sbc_ranks"]
    mu = results.parameters.query("name == 'mu'").sort_values("rep")
    assert list(ranks["mu"].values[0]) == list(mu["rank"])


@pytest.mark.parametrize("method", ["plot_ecdf", "plot_ranks", "plot_coverage",
                                    "plot_recovery", "plot_zscores"])
def test_results_plots_are_figures(results, method):
    figure = getattr(results, method)()  # one model and design: no need to name them
    assert isinstance(figure, Figure) and figure.axes


def test_plots_of_a_study_with_several_cells_ask_which(results):
    with pytest.raises(StudyError, match="model= one of"):
        results.plot_ecdf(model="no_such_model")


def test_results_show_their_verdict_table_in_a_notebook(results):
    html = results._repr_html_()
    assert "normal_known_sigma" in html and "3x3x2" in html
    from sbc.render import badge_class
    from sbc.summarize import Badge

    badge = Badge.of(results.verdict)
    assert f'class="badge {badge_class(badge)}">{badge.label}' in html and "<table>" in html
    assert "<script" not in html


def test_open_reads_the_same_results_and_extend_fits_only_new_replicates(results, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(results.directory, out)
    opened = sbc.open(out)
    assert opened.verdict == results.verdict
    pd.testing.assert_frame_equal(opened.parameters, results.parameters)
    assert opened.study.simulations == 20 and opened.study.models == ("normal_known_sigma",)
    with pytest.raises(StudyError, match="already holds 20"):
        opened.extend(20)
    extended = opened.extend(30, workers=0, progress=False)
    assert extended.last_run.new == 10 and extended.last_run.already_done == 20
    assert len(extended.replicates) == 30
    # the first 20 replicates are unchanged: same seeds, same ranks
    first = extended.parameters.query("rep < 20").reset_index(drop=True)
    pd.testing.assert_frame_equal(first[["rep", "name", "rank", "truth"]],
                                  results.parameters[["rep", "name", "rank", "truth"]])


def test_write_report_rewrites_the_report(results):
    path = results.write_report()
    assert path == results.directory / "report.html" and path.stat().st_size > 0


def test_open_refuses_what_is_not_a_store(tmp_path):
    with pytest.raises(StoreError):
        sbc.open(tmp_path / "missing")


def test_run_accepts_a_study_file_path(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "from_file"\nmodel = "normal_known_sigma"\nseed = 4\n'
                    'simulations = 10\n[[designs]]\ncell_lines = 2\ngenes = 2\nreps = 1\n'
                    '[sampler]\nname = "exact"\n[run]\noutput = "results_here"\n')
    results = sbc.run(path, workers=0, progress=False, simulations=12)
    assert results.directory == tmp_path / "results_here"  # relative to the study file
    assert len(results.replicates) == 12


# --- plans ---------------------------------------------------------------------------------


def test_sbc_plan_is_callable_and_returns_plan_results(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(f'name = "api_plan"\nseed = 11\nmodel = "{PLAN_MODEL}"\nprobability = 0.8\n'
                    '[space]\ncell_lines = [5, 20]\ngenes = [1]\nreps = [2]\n'
                    '[target]\nquantity = "mu"\ncriterion = "width"\nbelow = 0.7\n'
                    '[cost]\nper_cell_line = 10\nper_screen = 1\n'
                    '[sampler]\nname = "exact"\ndraws = 2000\n')
    plan = sbc.plan(path, tmp_path / "out", workers=0, progress=False)
    assert isinstance(plan, sbc.PlanResults)
    # exact 95 % width 2 * 1.96 / sqrt(1 + rows): 1.18 at 5x1x2, 0.61 at 20x1x2
    assert plan.recommended["design"] == "20x1x2"
    assert {"design", "cost", "p_success"} <= set(plan.table.columns)
    assert isinstance(plan.plot(), Figure)
    assert "20x1x2" in plan._repr_html_()
    again = sbc.open(tmp_path / "out")
    assert isinstance(again, sbc.PlanResults) and again.recommended == plan.recommended
    assert sbc.plan.Plan is not None  # the package keeps its modules


# --- models shipped with the package and the path rule --------------------------------------


def test_reference_models_resolve_from_any_folder(tmp_path):
    ref = resolve_model("crispr_screen", tmp_path)  # no models/ anywhere near tmp_path
    assert Path(ref.path).name == "crispr_screen.py"
    names = known_models(tmp_path)
    assert {"crispr_screen", "crispr_seed", "crispr_plan", "normal_known_sigma"} <= set(names)


def test_unknown_model_lists_each_known_model_once(tmp_path):
    with pytest.raises(ModelError) as info:
        resolve_model("crispr_scren", tmp_path)
    message = str(info.value)
    assert "did you mean 'crispr_screen'" in message
    listed = message.split("known models: ")[1].split(", ")
    assert len(listed) == len(set(listed)) and "crispr_screen" in listed


def test_a_models_folder_beside_the_study_comes_first(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "crispr_screen.py").write_text((ROOT / "models" / "normal_known_sigma.py")
                                                          .read_text())
    assert resolve_model("crispr_screen", tmp_path).path == str(tmp_path / "models" / "crispr_screen.py")


def test_model_files_are_relative_to_the_study_file_not_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.py").write_text((ROOT / "models" / "normal_known_sigma.py").read_text())
    monkeypatch.chdir(tmp_path)
    assert resolve_model("m.py", tmp_path / "sub").path == str(tmp_path / "sub" / "m.py")
    with pytest.raises(ModelError, match="study file's folder"):
        resolve_model("sub/m.py", tmp_path / "sub")  # would exist from the current folder


def test_entry_points_add_models(monkeypatch, tmp_path):
    """A package declares models in the entry-point group "sbc.models"."""
    import sbc.spec as spec

    class Entry:
        value = "sbc.models.normal_known_sigma"

    monkeypatch.setattr(spec, "_entry_points", lambda: {"lab_model": Entry})
    ref = resolve_model("lab_model", tmp_path)
    assert ref.label == "lab_model" and Path(ref.path).name == "normal_known_sigma.py"
    assert "lab_model" in known_models(tmp_path)


def test_assert_calibrated_shows_its_options():
    from sbc.testing import assert_calibrated, check_calibration

    shown = inspect.signature(assert_calibrated).parameters
    assert "kwargs" not in shown
    assert list(shown) == list(inspect.signature(check_calibration).parameters)


# --- a fresh install, outside the repository ------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built as a wheel and installed (without the repository) into a folder."""
    base = tmp_path_factory.mktemp("install")
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-w", str(base / "dist"), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    target = base / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target",
                              str(target), *map(str, (base / "dist").glob("*.whl"))],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    empty = base / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    return target, empty, env


def test_installed_package_runs_a_study_naming_crispr_screen_from_an_empty_folder(installed):
    target, empty, env = installed
    where = subprocess.run([sys.executable, "-c", "import sbc, sbc.models; "
                            "print(sbc.__file__); print(sbc.models.__file__)"],
                           cwd=empty, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.splitlines() == [str(target / "sbc" / "__init__.py"),
                                         str(target / "sbc" / "models" / "__init__.py")]
    (empty / "study.toml").write_text(
        'name = "fresh"\nmodel = "crispr_screen"\nseed = 5\nsimulations = 2\n'
        '[[designs]]\ncell_lines = 3\ngenes = 2\nreps = 1\n'
        '[sampler]\ntune = 100\ndraws = 100\n')
    cli = subprocess.run([str(target / "bin" / "sbc"), "run", "study.toml", "--workers", "0"],
                         cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert (empty / "reports" / "fresh" / "report.html").is_file()
    code = ("import sbc\n"
            "r = sbc.run(sbc.Study(name='fresh_py', models='crispr_screen', designs=[(3, 2, 1)],"
            " simulations=2, seed=6, sampler={'tune': 100, 'draws': 100}), workers=0,"
            " progress=False)\n"
            "print(r.verdict.status, len(r.replicates))\n")
    api = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True,
                         text=True, timeout=600)
    assert api.returncode == 0, api.stderr[-3000:]
    status, n = api.stdout.split()[-2:]
    assert status in {"pass", "fail", "inconclusive"} and n == "2"


@pytest.mark.parametrize("change, message", [
    ({"name": 5}, "must be a string"),
    ({"parameter_map": 5}, "parameter_map"),
    ({"parameter_map": {"a": "b"}}, "without simulate_model"),
    ({"base_dir": 5}, "base_dir"),
])
def test_study_refuses_hostile_types(change, message):
    with pytest.raises(StudyError, match=message):
        exact_study(**change)


def test_the_readme_python_example_runs_as_a_plain_script_from_the_installed_wheel(installed):
    """The README's example, pasted into run.py (no ``__main__`` guard) in an empty folder
    and run with ``python run.py`` against the installed wheel, prints a verdict sentence
    and exits 0 (on local worker processes, the default).  Its lines up to ``print(results)``
    run, with 6 simulations instead of the example's 100 to keep the test short."""
    import re

    _, empty, env = installed
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    lines = block.splitlines()
    last = next(i for i, line in enumerate(lines) if line.startswith("print(results)"))
    script = "\n".join(lines[:last + 1])
    assert "simulations=100" in script and "if __name__" not in script
    folder = empty / "readme_example"
    folder.mkdir()
    (folder / "run.py").write_text(script.replace("simulations=100", "simulations=6") + "\n")
    done = subprocess.run([sys.executable, "run.py"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("Study 'seed_sbc' (reports/seed_sbc): 6 replicates stored")
    assert re.search(r"\nOverall: (pass|fail|inconclusive)[^\n]*: .+\.", done.stdout)
    assert "\n  crispr_screen at 10x3x3 (" in done.stdout
