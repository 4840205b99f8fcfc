"""Helpers shared by the test modules (imported as ``support``; tests/validation has its own
conftest, so nothing is imported from ``conftest`` by name)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sbc_cmd(*args):
    return [sys.executable, "-m", "sbc.cli", *map(str, args)]
