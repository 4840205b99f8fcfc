"""Sphinx configuration of the sbc documentation (``make docs``)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
import warnings
from pathlib import Path

from sphinx.util.nodes import make_refnode

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's sbc, also where it is not installed

import sbc  # noqa: E402

project = "sbc"
author = "the sbc authors"
copyright = "the sbc authors, MIT licence"
version = release = sbc.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and the example notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
]

root_doc = "index"
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# MyST: ::: fences, and anchors for headings down to level 3, so that pages can link to a
# section as `page.md#section-title`
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# The example notebooks are stored executed (docs/execute_notebooks.py): at their own sizes
# they take many minutes, too long for every build.
nb_execution_mode = "off"
nb_merge_streams = True

# API reference from the numpydoc docstrings.  Types are read from the docstrings; the
# signatures stay short.
autodoc_typehints = "none"
autodoc_docstring_signature = False
autodoc_member_order = "bysource"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
# hypothesis's own docstrings (reached through sbc.testing.strategies) have sections numpydoc
# does not know; they are not shown here
warnings.filterwarnings("ignore", message="Unknown section", category=UserWarning)

# Every cross-reference must resolve (sphinx-build -n).  Names of other packages cannot:
# their inventories (intersphinx) would be fetched over the network, which a build here
# does not have.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|pandas|pd|xarray|xr|matplotlib|arviz\w*|pymc|pm|bambi|bmb|dask|"
               r"distributed|hypothesis|pytest|pathlib|typing|collections|datetime)(\..*)?"),
    (r"py:.*", r"(Path|DataFrame|Series|Figure|DataTree|ndarray|Any|Callable|Sequence|"
               r"Mapping|Iterable|Iterator)"),
]

# doctest: the pages' ```{doctest} and ```{testcode} blocks run in an empty folder
doctest_global_setup = """
import os, tempfile
_sbc_docs_cwd = os.getcwd()
os.chdir(tempfile.mkdtemp(prefix="sbc-doctest-"))
"""
doctest_global_cleanup = """
os.chdir(_sbc_docs_cwd)
"""

html_theme = "pydata_sphinx_theme"
html_title = f"sbc {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
html_show_sourcelink = False


# ---- docstrings -------------------------------------------------------------------------
# Besides numpydoc sections, sbc's docstrings describe fields, attributes and options as
# "name: text" lines with indented continuations.  Written as reST field lists they render
# as a table of names, as the numpydoc sections do.

_FIELD = re.compile(r"^([A-Za-z_]\w*(?:(?: / |, )[A-Za-z_]\w*)*): (\S.*)$")


def house_fields(app, what, name, obj, options, lines):
    """Rewrite "name: text" lines after a docstring's first paragraph as a field list."""
    if what == "class" and dataclasses.is_dataclass(obj) and \
            (obj.__doc__ or "").startswith(f"{obj.__name__}("):
        lines[:] = []  # the signature that dataclasses write where a docstring is missing
        return
    out: list[str] = []
    in_field = False
    summary = True  # the first paragraph ("sbc: simulation-based ...") is never a field
    for line in lines:
        if summary:
            summary = bool(line.strip())
            out.append(line)
            continue
        match = _FIELD.match(line)
        if match:
            if not in_field and out and out[-1].strip():
                out.append("")
            out.append(f":{match[1]}: {match[2]}")
            in_field = True
        elif in_field and line.strip() and line[:1].isspace():
            out.append(line)  # a continuation of the field
        else:
            if in_field and line.strip():
                out.append("")  # a paragraph after the fields
            in_field = False
            out.append(line)
    lines[:] = out


# ---- references to an object reached by another name --------------------------------------
# `sbc.run` is `sbc.results.run`, `sbc.PlanResults` is `sbc.plan.results.PlanResults`: a
# docstring may name the object where it is defined while the API pages document it where
# users import it.  Such a reference resolves to the page that documents the same object.


def _lookup(path: str):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _documented(env) -> dict[int, tuple[str, object]]:
    cache = getattr(env, "_sbc_documented", None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            if name.startswith("sbc") and not entry.aliased:
                obj = _lookup(name)
                if obj is not None:
                    cache.setdefault(id(getattr(obj, "__func__", obj)), (name, entry))
        env._sbc_documented = cache
    return cache


def resolve_alias(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module") or "", node.get("py:class") or ""
    # the object whose docstring holds the reference, e.g. "... docstring of sbc.results.Results"
    owner = str(node.source or "").rpartition("docstring of ")[2]
    candidates = [target, f"{module}.{cls}.{target}", f"{module}.{target}", f"{owner}.{target}",
                  f"{owner.rpartition('.')[0]}.{target}", f"sbc.{target}"]
    for path in candidates:
        if not path.startswith("sbc"):
            continue
        obj = _lookup(path.replace("..", "."))
        found = _documented(env).get(id(getattr(obj, "__func__", obj))) if obj is not None \
            else None
        if found:
            name, entry = found
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id,
                                contnode, name)
    # a bare name (a summary line taken out of its module) that one documented object has
    same = [(name, entry) for name, entry in env.get_domain("py").objects.items()
            if name.startswith("sbc.") and name.endswith("." + target) and not entry.aliased]
    if len(same) == 1:
        name, entry = same[0]
        return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id,
                            contnode, name)
    return None


def internal_name(app, domain, node):
    """A reference to an sbc object that exists but is not on the API pages (a module's
    internals) stays plain text without a warning; one to a name that does not exist (a
    renamed or removed object) is a warning, and with -W an error."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module") or "", node.get("py:class") or ""
    owner = str(node.source or "").rpartition("docstring of ")[2]
    for path in (target, f"{module}.{cls}.{target}", f"{module}.{target}", f"{owner}.{target}",
                 f"{owner.rpartition('.')[0]}.{target}"):
        if path.startswith("sbc") and _lookup(path.replace("..", ".")) is not None:
            return True
    return None


def dataclass_signature(app, what, name, obj, options, signature, return_annotation):
    """A dataclass's signature as its field names, defaults kept.  Where a dataclass has no
    docstring, its ``__doc__`` is a signature with string annotations, which numpydoc would
    show instead and which do not parse as types."""
    if what != "class" or not dataclasses.is_dataclass(obj):
        return None
    params = []
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        default = "" if f.default is dataclasses.MISSING else f"={f.default!r}"
        if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = "=..."
        params.append(f"{f.name}{default}")
    star = "*, " if getattr(obj, "__dataclass_params__", None) and \
        getattr(obj.__dataclass_params__, "kw_only", False) else ""
    return f"({star}{', '.join(params)})", None


def setup(app):
    app.connect("autodoc-process-docstring", house_fields, priority=400)
    app.connect("autodoc-process-signature", dataclass_signature, priority=400)
    app.connect("missing-reference", resolve_alias)
    app.connect("warn-missing-reference", internal_name)
