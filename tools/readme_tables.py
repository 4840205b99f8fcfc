"""Generate the README's validation tables from tests/validation/RESULTS.md.

The README section from the heading "### Validation results" up to the next heading of
level 1 to 3 (now "## Scale-out and faults") is generated: a fixed introduction, then
RESULTS.md without its title, its "## " headings demoted to "#### ".

    python tools/readme_tables.py            rewrite that README section
    python tools/readme_tables.py --check    exit 1, printing a diff, when the README differs

Exit status 2 when a file or the section heading is missing.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "tests" / "validation" / "RESULTS.md"
START = "### Validation results"
INTRO = """\
`pytest -m slow tests/validation` (run with `make test-all`) writes
`tests/validation/RESULTS.md`; `python tools/readme_tables.py` copies it here, and
`tests/validation/test_readme_tables.py` fails when the two differ.
"""
_HEADING = re.compile(r"^#{1,3} ")


class SectionError(ValueError):
    pass


def section_from_results(results: str) -> str:
    """The README section (heading included, ending with one blank line)."""
    lines = results.strip("\n").splitlines()
    if not lines or lines[0].strip() != "# Validation results":
        raise SectionError("RESULTS.md does not start with '# Validation results'")
    body = ["####" + line[2:] if line.startswith("## ") else line for line in lines[1:]]
    text = "\n".join(body).strip("\n")
    return f"{START}\n\n{INTRO}\n{text}\n\n"


def _section_bounds(lines: list[str]) -> tuple[int, int]:
    """Index of the START line and of the first heading (level <= 3) after it, outside
    code fences; the end is len(lines) when no heading follows."""
    start = None
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if start is None:
            if line.rstrip() == START:
                start = i
        elif _HEADING.match(line):
            return start, i
    if start is None:
        raise SectionError(f"README has no line '{START}'")
    return start, len(lines)


def replace_section(readme: str, section: str) -> str:
    lines = readme.splitlines(keepends=True)
    start, end = _section_bounds([line.rstrip("\n") for line in lines])
    return "".join(lines[:start]) + section + "".join(lines[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 with a diff when the README differs")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        readme = args.readme.read_text(encoding="utf-8")
        wanted = replace_section(readme, section_from_results(
            args.results.read_text(encoding="utf-8")))
    except (OSError, SectionError) as exc:
        print(f"readme_tables: {exc}", file=sys.stderr)
        return 2
    if wanted == readme:
        if not args.check:
            print(f"{args.readme}: validation tables already match {args.results}")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(
            readme.splitlines(keepends=True), wanted.splitlines(keepends=True),
            fromfile=f"{args.readme} (now)", tofile=f"{args.readme} (from {args.results.name})"))
        print(f"\n{args.readme} differs from {args.results}; run: python tools/readme_tables.py",
              file=sys.stderr)
        return 1
    args.readme.write_text(wanted, encoding="utf-8")
    print(f"{args.readme}: validation tables rewritten from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
