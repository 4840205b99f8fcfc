"""What a plan writes, either kind: the table of designs, plan.csv and plan.json (the one
writer of both), and the JSON form of its results (the pages: :func:`sbc.render.plan_page`
and a genome plan's summary.md)."""

from __future__ import annotations

import json
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


def write_plan_files(store, plan, table: pd.DataFrame, recommended, fits: dict, seconds: float,
                     *, kind: str | None = None, **extra) -> None:
    """plan.csv (one row per evaluated design) and plan.json (the plan, its ``kind`` when
    given, its targets, the recommendation, the fits used, the seconds, every design's row
    and ``extra`` fields)."""
    store.write_text("plan.csv", table.to_csv(index=False))
    store.write_text("plan.json", json.dumps(jsonable({
        "plan": plan.to_dict(), **({"kind": kind} if kind else {}),
        "targets": [t.describe() for t in plan.targets],
        "recommended": recommended.row() if recommended else None,
        "fits": fits, "seconds": seconds, "designs": table.to_dict(orient="records"),
        **extra}), indent=2))
