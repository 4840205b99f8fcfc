"""Execute the example notebooks (examples/*.ipynb) and store them, outputs included, in
docs/examples/, where the documentation renders them without running them again.

Run at the notebooks' own sizes they take longer than a documentation build should (the
seed walkthrough fits a 100-replicate study and a plan; the real-screen notebook fits 500
genes of 24 cell lines twice and plans two genome-scale screens), so the outputs are stored
and the build shows them as they are.  ``tests/test_docs.py`` checks that every stored
copy has the code of its example, ran without an error, and shows its figures.

    python docs/execute_notebooks.py                  # every example
    python docs/execute_notebooks.py seed_walkthrough # one of them

Each notebook runs in a fresh kernel in an empty temporary folder (as tests/test_examples.py
runs it), so what it writes does not land in the repository.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
STORED = Path(__file__).resolve().parent / "examples"


def execute(name: str, timeout: int = 3600) -> Path:
    """Execute examples/NAME.ipynb and write it, with its outputs, to docs/examples/."""
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix=f"sbc-docs-{name}-") as folder:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": folder}})
        client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        raise RuntimeError(f"{name}: a cell raised {errors[0].get('ename')}: "
                           f"{errors[0].get('evalue')}")
    nb.metadata["sbc_docs"] = {
        "executed": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.time() - start),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
    }
    STORED.mkdir(exist_ok=True)
    out = STORED / f"{name}.ipynb"
    nbformat.write(nb, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks of examples/ (default: all)")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.stem for p in EXAMPLES.glob("*.ipynb"))
    for name in names:
        out = execute(name)
        print(f"{out.relative_to(ROOT)}: executed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
