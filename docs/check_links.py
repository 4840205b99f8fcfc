"""Check the links between the pages of the built documentation (no network needed).

Every ``href`` and ``src`` of every built HTML page that points inside the site must name a
file that exists, and its ``#fragment``, if any, an element id of that page.  Links that
leave the site (``https:``, ``mailto:``, ...) are not followed: the build machine has no
network, and they are not the site's to keep.

    python docs/check_links.py [docs/build/html]

Exit status 1, listing each broken link with the page that holds it, when one is broken.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HTML = Path(__file__).resolve().parent / "build" / "html"


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag != "meta" else ():
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") == "canonical"):
                self.links.append(attrs[key])


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def site_pages(root: Path) -> list[Path]:
    """The built pages (not the theme's templates under _static/)."""
    return [p for p in sorted(root.rglob("*.html"))
            if not p.relative_to(root).parts[0].startswith("_")]


def broken_links(root: Path) -> list[str]:
    """'page: link (why)' for every link inside the site that points nowhere."""
    pages = {p: parse(p) for p in site_pages(root)}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("//"):
                continue  # leaves the site
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(root)}: {link}"
            if not target.exists():
                broken.append(f"{where} (no file {target})")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no id {parts.fragment!r} in {target.name})")
    return broken


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]).resolve() if args else HTML
    if not (root / "index.html").exists():
        print(f"check_links: no built site in {root} (run make docs)", file=sys.stderr)
        return 2
    broken = broken_links(root)
    for line in broken:
        print(line, file=sys.stderr)
    n = len(site_pages(root))
    print(f"check_links: {n} pages, {len(broken)} broken internal links", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
