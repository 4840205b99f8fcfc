"""What a plan writes: the table of designs and the JSON form of its results (the page:
:func:`sbc.render.plan_page`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sbc.plan.search import DesignResult

def result_table(results: list[DesignResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in sorted(results, key=lambda r: (r.cost, r.design))])


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
