"""Testing tools: calibration assertions, hypothesis strategies and a pytest plugin.

    from sbc.testing import assert_calibrated
    assert_calibrated("my_model", (10, 3, 3), n_sims=100, sampler="nutpie")

The strategies (:mod:`sbc.testing.strategies`) need ``hypothesis``; they are imported on
first use so that the calibration assertion works without it.
"""

from sbc.testing.calibration import (
    CalibrationFailure,
    CalibrationResult,
    ParameterCheck,
    assert_calibrated,
    calibration_checks,
    check_calibration,
)

__all__ = [
    "CalibrationFailure",
    "CalibrationResult",
    "ParameterCheck",
    "assert_calibrated",
    "calibration_checks",
    "check_calibration",
]
