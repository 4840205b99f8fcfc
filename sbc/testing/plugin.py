"""pytest plugin: a ``calibration`` fixture so a calibration test is a few lines.

    def test_my_model_is_calibrated(calibration):
        calibration.assert_calibrated("my_model", (10, 3, 3), n_sims=100)

The plugin is registered through the ``pytest11`` entry point of the ``sbc-screens``
distribution (or with ``-p sbc.testing.plugin``).  Options:

    --sbc-cache DIR     where fits are cached (default: .sbc_cache under the rootdir)
    --sbc-workers N     0 = in the test process (default), N = N local Dask workers
    --sbc-profile NAME  load a hypothesis settings profile of sbc.testing.strategies (dev, ci)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from sbc.testing.calibration import (
    DEFAULT_CACHE_DIR,
    assert_calibrated,
    check_calibration,
)

# hypothesis and sbc.testing.strategies are imported only with --sbc-profile: pytest loads
# this plugin in every session.


def _workers(text: str) -> int:
    """--sbc-workers: 0 (in the test process) or more local Dask workers."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (in the test process) or more Dask "
                                         f"workers, got {text!r}")
    return value


def pytest_addoption(parser):
    group = parser.getgroup("sbc", "simulation-based calibration")
    group.addoption("--sbc-cache", default=None,
                    help=f"directory of cached calibration fits (default: {DEFAULT_CACHE_DIR} "
                         "under the rootdir)")
    group.addoption("--sbc-workers", type=_workers, default=0,
                    help="Dask workers for calibration runs (0: in the test process)")
    group.addoption("--sbc-profile", default=None,
                    help="hypothesis settings profile from sbc.testing.strategies: dev or ci")


def pytest_configure(config):
    profile = config.getoption("--sbc-profile", default=None)
    if profile:
        from hypothesis import settings

        import sbc.testing.strategies  # noqa: F401  (registers the profiles)

        settings.load_profile(profile)


@dataclass(frozen=True)
class Calibration:
    """What the ``calibration`` fixture returns: the checks with cache and workers bound."""

    cache_dir: Path
    workers: int = 0

    def assert_calibrated(self, model, design=(10, 3, 3), **kwargs):
        """:func:`sbc.testing.assert_calibrated` with this session's cache and workers."""
        kwargs.setdefault("cache_dir", self.cache_dir)
        kwargs.setdefault("workers", self.workers)
        return assert_calibrated(model, design, **kwargs)

    def check(self, model, design=(10, 3, 3), **kwargs):
        """:func:`sbc.testing.check_calibration` (returns the result, never raises on failure)."""
        kwargs.setdefault("cache_dir", self.cache_dir)
        kwargs.setdefault("workers", self.workers)
        return check_calibration(model, design, **kwargs)


@pytest.fixture(scope="session")
def calibration(request) -> Calibration:
    """Calibration checks whose fits are cached across test runs (see ``--sbc-cache``)."""
    config = request.config
    cache = config.getoption("--sbc-cache", default=None)
    cache_dir = Path(cache) if cache else Path(config.rootpath) / DEFAULT_CACHE_DIR
    return Calibration(cache_dir=cache_dir,
                       workers=config.getoption("--sbc-workers", default=0) or 0)
