"""The documentation site builds, its links hold, and its examples run.

- The site builds with Sphinx with every warning an error and every cross-reference resolved
  (``-W -n``), every link between its pages points at a page and an anchor that exist
  (docs/check_links.py), and the pages' Python examples run and print what the pages show
  (``sphinx.ext.doctest``): what ``make docs`` does.
- The command-line example of the getting-started page runs and prints the verdict it shows.
- The example notebooks stored executed in docs/examples/ hold the code of examples/*.ipynb,
  ran without an error and show their figures.
- The README fits a newcomer's first screens and its links into docs/ point at pages.

Skipped, with the reason, where the docs extra is not installed (``make test-ci`` and
``make docs`` install it).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from support import ROOT, sbc_cmd

DOCS = ROOT / "docs"
NEEDED = ("sphinx", "myst_nb", "numpydoc", "pydata_sphinx_theme")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
needs_sphinx = pytest.mark.skipif(
    bool(MISSING), reason=f"the docs extra is not installed ({', '.join(MISSING)} missing): "
                          "pip install -e '.[docs]', or make docs / make test-ci, which install it")


def _check_links():
    spec = importlib.util.spec_from_file_location("check_links", DOCS / "check_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sphinx(builder: str, out, doctrees) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q",
                           "-b", builder, "-d", str(doctrees), str(DOCS), str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


@needs_sphinx
def test_docs_build_without_warnings_links_resolve_and_examples_run(tmp_path):
    """One test, so that the two builds share their parsed pages (a second reading costs
    most of a build)."""
    doctrees, html = tmp_path / "doctrees", tmp_path / "html"
    built = sphinx("html", html, doctrees)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-6000:]
    assert "WARNING" not in built.stderr and "ERROR" not in built.stderr, built.stderr[-6000:]
    for page in ("index", "getting_started", "user_guide/index", "user_guide/planning",
                 "api/index", "api/studies", "results/validation", "changelog", "contributing",
                 "examples/seed_walkthrough", "examples/real_screen"):
        assert (html / f"{page}.html").is_file(), page
    # the API pages show the docstrings of the public names
    api = (html / "api" / "studies.html").read_text(encoding="utf-8")
    for name in ("sbc.Study", "sbc.run", "sbc.open", "sbc.Results"):
        assert f'id="{name}"' in api, name
    # the result pages include the files as they are
    results_md = (ROOT / "benchmarks" / "results.md").read_text(encoding="utf-8")
    first_row = next(line for line in results_md.splitlines() if line.startswith("| ")
                     and "---" not in line)
    cell = first_row.strip("|").split("|")[0].strip()
    assert cell in (html / "results" / "benchmark_results.html").read_text(encoding="utf-8")

    assert _check_links().broken_links(html) == []

    tested = sphinx("doctest", tmp_path / "doctest", doctrees)
    output = (tmp_path / "doctest" / "output.txt")
    report = output.read_text() if output.exists() else ""
    assert tested.returncode == 0, report[-4000:] + tested.stderr[-4000:]
    counts = re.search(r"(\d+) tests\s+(\d+) failures in tests", report)
    assert counts and int(counts.group(1)) >= 2 and counts.group(2) == "0", report[-2000:]


def test_check_links_finds_a_missing_page_and_a_missing_anchor(tmp_path):
    (tmp_path / "index.html").write_text(
        '<a href="a.html#here">ok</a> <a href="a.html#gone">no anchor</a> '
        '<a href="b.html">no page</a> <a href="https://example.org/x">outside</a> '
        '<img src="img/x.png"> <a id="top" href="#top">self</a>')
    (tmp_path / "a.html").write_text('<h2 id="here">Here</h2>')
    broken = _check_links().broken_links(tmp_path)
    assert len(broken) == 3, broken
    assert any("#gone" in b for b in broken) and any("b.html" in b for b in broken)
    assert any("img/x.png" in b for b in broken)


def _fenced(text: str, after: str, lang: str) -> str:
    block = re.search(rf"```{lang}\n(.*?)```", text.split(after, 1)[1], re.S)
    assert block, f"no ```{lang} block after {after!r}"
    return block.group(1)


def test_getting_started_command_line_example_prints_the_verdicts_it_shows(tmp_path):
    page = (DOCS / "getting_started.md").read_text(encoding="utf-8")
    toml = _fenced(page, "## A first study on the command line", "toml")
    assert toml.startswith("# first.toml\n")
    console = _fenced(page, "# first.toml", "console")
    command = console.splitlines()[0].removeprefix("$ ").split()
    assert command[:2] == ["sbc", "run"]
    (tmp_path / "first.toml").write_text(toml)
    run = subprocess.run(sbc_cmd(*command[1:]), capture_output=True, text=True, cwd=tmp_path,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    shown = [line for line in console.splitlines() if line.startswith(("[sbc] overall",
                                                                       "[sbc]   "))]
    printed = run.stdout + run.stderr
    assert len(shown) == 2
    for line in shown:
        assert line in printed, (line, printed[-3000:])
    assert (tmp_path / "reports" / "first" / "report.html").is_file()


EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_stored_notebook_is_its_example_executed(example):
    """docs/examples/NAME.ipynb (written by docs/execute_notebooks.py) has exactly the code of
    examples/NAME.ipynb, every code cell ran, none raised, and the plots are images."""
    stored = DOCS / "examples" / example.name
    assert stored.is_file(), f"run: python docs/execute_notebooks.py {example.stem}"
    source, shown = (json.loads(p.read_text(encoding="utf-8")) for p in (example, stored))

    def code(nb):
        return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]

    assert code(shown) == code(source), \
        f"{example.name} changed since it was executed: python docs/execute_notebooks.py " \
        f"{example.stem}"
    cells = [c for c in shown["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in cells)
    assert not [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    plots = [c for c in cells if re.fullmatch(r"\w+\.plot\w*\(\)", "".join(c["source"]).strip())]
    assert plots
    for cell in plots:
        assert any("image/png" in o.get("data", {}) for o in cell["outputs"]), cell["source"]
    assert "executed" in shown["metadata"].get("sbc_docs", {})


def test_readme_fits_the_first_screens_and_points_into_the_docs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) < 300
    first_screen = "\n".join(lines[:25])
    assert "make study" in first_screen and "make test" in first_screen
    assert "pip install sbc-screens" in text
    python = _fenced(text, "In Python", "python")
    assert len(python.strip().splitlines()) <= 16
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link
