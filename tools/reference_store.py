"""Copy the reference study's store (``make study`` writes reports/crispr_seed, ignored by git)
into tests/reference/crispr_seed, the small committed copy that the README's percentage and
report-size tests read (tests/test_readme_claims.py), so that they run on a fresh clone and
in CI without the 8-minute study:

- ``study.json``: the manifest (the study, the model files' digests, the versions, the date);
- ``replicates.parquet``: one row per fit (status, flags, rescues), what the percentages count;
- ``report.html.gz``: the report, gzip level 9 without a name or a time stamp (the same
  bytes for the same report), what the report size and figure count are read from.

The store's parameters.parquet, ranks.nc and record files (about 25 MB) are left out.  After
a new ``make study``:

    python tools/reference_store.py [--store reports/crispr_seed] [--out tests/reference/crispr_seed]

then update the README's numbers and their measurement date (the tests say which differ).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "reports" / "crispr_seed"
OUT = ROOT / "tests" / "reference" / "crispr_seed"
FILES = ("study.json", "replicates.parquet", "report.html.gz")


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzipped at level 9 with no file name and time stamp 0 (reproducible)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def check_complete(store: Path) -> None:
    """SystemExit unless ``store`` holds every replicate of its study and a report."""
    import pandas as pd

    for name in ("study.json", "replicates.parquet", "report.html"):
        if not (store / name).is_file():
            raise SystemExit(f"{store / name} is missing: run `make study` first")
    study = json.loads((store / "study.json").read_text(encoding="utf-8"))["study"]
    reps = pd.read_parquet(store / "replicates.parquet", columns=["model", "design", "rep"])
    expected = len(study["models"]) * len(study["designs"]) * study["simulations"]
    if len(reps) != expected:
        raise SystemExit(f"{store} holds {len(reps)} of its study's {expected} replicates: "
                         "let `make study` finish first")


def copy_reference(store: Path = STORE, out: Path = OUT) -> list[Path]:
    check_complete(store)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store / "study.json", out / "study.json")
    shutil.copyfile(store / "replicates.parquet", out / "replicates.parquet")
    (out / "report.html.gz").write_bytes(gzip_bytes((store / "report.html").read_bytes()))
    return [out / name for name in FILES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    paths = copy_reference(args.store, args.out)
    total = sum(p.stat().st_size for p in paths)
    for p in paths:
        print(f"{p} ({p.stat().st_size / 1e6:.2f} MB)")
    print(f"{total / 1e6:.2f} MB in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
