"""The shape of the code (README "How the code is organised"): data flows one way, so no sbc
module imports another that imports it back, even lazily inside a function; each of Dask,
the store's file layout, HTML and random seeding is known to one home; and no module grows
past about 500 lines without saying why in its docstring."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from support import ROOT

PACKAGE = ROOT / "sbc"
MAX_LINES = 500
LONG_REASON = "This module is long because"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
           if "__pycache__" not in p.parts and "templates" not in p.parts}


def resolve(name: str) -> str | None:
    """The sbc module that importing ``name`` executes (a module, or a package's __init__)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path) -> set[str]:
    """sbc modules ``path`` imports anywhere (top level or inside functions)."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "sbc" or name.startswith("sbc."):
                target = resolve(name)
                if target and target != here and target != "sbc":
                    out.add(target)
    return out


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    # a package imports its own modules to re-export them; they never import it back
    graph = {m: {t for t in deps if not (MODULES[m].name == "__init__.py"
                                          and t.startswith(m + "."))}
             for m, deps in GRAPH.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _external_importers(prefixes: tuple[str, ...]) -> set[str]:
    found = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n == p or n.startswith(p + ".") for n in names for p in prefixes):
                found.add(name)
    return found


def test_only_dispatch_knows_dask():
    assert {m.split(".")[0] + "." + m.split(".")[1] for m in _external_importers(
        ("dask", "distributed", "dask_jobqueue"))} == {"sbc.dispatch"}  # the package


def _modules_with(pattern: str) -> set[str]:
    rx = re.compile(pattern)
    out = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    rx.search(node.value) and not _is_docstring(node, path):
                out.add(name)
    return out


_DOCSTRINGS: dict[Path, set[int]] = {}


def _is_docstring(node: ast.Constant, path: Path) -> bool:
    if path not in _DOCSTRINGS:
        ids = set()
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = n.body[0] if n.body else None
                if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
                    ids.add((doc.value.lineno, doc.value.col_offset))
        _DOCSTRINGS[path] = ids
    return (node.lineno, node.col_offset) in _DOCSTRINGS[path]


def test_only_the_store_knows_the_file_layout():
    files = r"^(study\.json|replicates\.parquet|parameters\.parquet|ranks\.nc|replicates)$"
    assert _modules_with(files) == {"sbc.store"}


def test_only_the_render_layer_writes_html():
    """HTML lives in the render layer's Jinja2 templates: no Python module of sbc holds an
    HTML tag, and only sbc.render loads templates."""
    assert _modules_with(r"<(html|table|div|p|h[1-6]|img|span|ul|li|tr|td)[ >]") == set()
    templates = {p.name for p in (PACKAGE / "render" / "templates").glob("*.j2")}
    assert {"report.html.j2", "plan.html.j2", "summary.md.j2"} <= templates
    assert _external_importers(("jinja2", "markupsafe")) == {"sbc.render"}


def test_only_the_seeding_module_derives_seeds():
    users = set()
    for name, path in MODULES.items():
        text = path.read_text()
        if re.search(r"\bSeedSequence\(|spawn_key\s*=", text):
            users.add(name)
    assert users == {"sbc.seeding"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small_or_say_why(name):
    path = MODULES[name]
    n = len(path.read_text().splitlines())
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert n <= MAX_LINES or LONG_REASON in doc, \
        f"{path.relative_to(ROOT)} has {n} lines; split it or state why in its docstring"
