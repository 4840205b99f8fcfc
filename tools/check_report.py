"""Render a report.html in headless Chromium and check it.

    python tools/check_report.py reports/crispr_seed/report.html [--screenshot out.png]

Checks, from the DOM as Chromium rendered it: every <img> has a data: src that decodes as a
PNG, the page holds no <script> element (the report has none; one would mean unescaped user
text), and the browser logged no script errors.  Also takes a full-width screenshot
(--window-size=1300,4000) to look at the layout.  Exit status 0: all good; 1: problems
found (listed); 2: Chromium missing or the file does not exist.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Lines Chromium writes to stderr (with --enable-logging=stderr) for page script errors.
SCRIPT_ERROR = re.compile(r"Uncaught|CONSOLE\(\d+\).*[Ee]rror|SyntaxError|ReferenceError|TypeError")


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "script":
            self.scripts += 1


def find_chromium(explicit: str | None = None) -> str | None:
    """Path of a Chromium binary, or None."""
    for name in ((explicit,) if explicit else CHROMIUM_CANDIDATES):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def image_problems(images: list[dict]) -> list[str]:
    """Problems with the <img> elements: a src that is not an inline base64 PNG."""
    problems = []
    for i, attrs in enumerate(images):
        src = attrs.get("src") or ""
        label = f"image {i + 1} ({attrs.get('alt') or 'no alt'})"
        prefix = "data:image/png;base64,"
        if not src.startswith(prefix):
            problems.append(f"{label}: src is not an inline PNG ({src[:40]!r})")
            continue
        try:
            payload = base64.b64decode(src[len(prefix):], validate=True)
        except (binascii.Error, ValueError) as exc:
            problems.append(f"{label}: base64 does not decode ({exc})")
            continue
        if not payload.startswith(PNG_SIGNATURE):
            problems.append(f"{label}: decoded data is not a PNG")
    return problems


def run_chromium(chromium: str, url: str, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="sbc-chromium-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
               "--v=0", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="path of report.html")
    parser.add_argument("--screenshot", help="PNG to write (default: next to the report, "
                        "report.png)")
    parser.add_argument("--chromium", help="Chromium binary (default: /usr/bin/chromium)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per browser run")
    args = parser.parse_args(argv)

    report = Path(args.report).resolve()
    if not report.is_file():
        print(f"error: {report} does not exist; write it with `sbc report DIR`", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("error: Chromium is not installed; install it with\n"
              "    apt-get install -y chromium\n"
              "(Debian/Ubuntu) and run this again", file=sys.stderr)
        return 2
    url = report.as_uri()
    problems: list[str] = []

    dom_run = run_chromium(chromium, url, ["--dump-dom"], args.timeout)
    if dom_run.returncode != 0 or not dom_run.stdout.strip():
        problems.append(f"--dump-dom failed (exit {dom_run.returncode}): {dom_run.stderr[-500:]}")
    collector = _Collector()
    collector.feed(dom_run.stdout)
    if not collector.images:
        problems.append("the page has no images")
    problems += image_problems(collector.images)
    if collector.scripts:
        problems.append(f"the page holds {collector.scripts} <script> element(s); the report "
                        "writes none, so user text was not escaped")
    errors = [line for line in dom_run.stderr.splitlines() if SCRIPT_ERROR.search(line)]
    problems += [f"script error: {line.strip()[:200]}" for line in errors]

    shot = Path(args.screenshot) if args.screenshot else report.with_suffix(".png")
    shot.unlink(missing_ok=True)
    shot_run = run_chromium(chromium, url, [f"--screenshot={shot.resolve()}",
                                            "--window-size=1300,4000", "--hide-scrollbars"],
                            args.timeout)
    if not shot.is_file() or not shot.read_bytes().startswith(PNG_SIGNATURE):
        problems.append(f"no screenshot written (exit {shot_run.returncode}): "
                        f"{shot_run.stderr[-500:]}")

    print(f"{report}: {len(collector.images)} images, {len(dom_run.stdout) // 1024} KiB DOM, "
          f"screenshot {shot}")
    for p in problems:
        print(f"PROBLEM: {p}")
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
