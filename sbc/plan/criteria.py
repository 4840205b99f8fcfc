"""Success criteria, pure functions: from stored posterior summaries to success per simulated
screen, the probability of success with its Monte Carlo interval, and the decision it
supports.  Nothing here fits, stores or reads files."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sbc import stats
from sbc.design import Design

CRITERIA = ("sd", "width", "excludes", "contraction")
# central interval level -> the stored quantile columns that bound it
INTERVALS = {0.95: ("q0.025", "q0.975"), 0.9: ("q0.05", "q0.95"), 0.8: ("q0.1", "q0.9"),
             0.5: ("q0.25", "q0.75")}


@dataclass(frozen=True)
class Target:
    """One criterion on one posterior quantity, evaluated per simulated screen.

    quantity: a parameter or deterministic of the analysis model (``beta_g``: every element;
    ``beta_g[3]``: one element).  criterion: ``sd`` / ``width`` (posterior sd or central
    interval width below ``value``), ``excludes`` (interval excludes ``value`` on ``side``),
    ``contraction`` (1 - posterior var / prior var above ``value``).  over: for vector
    quantities, ``each`` scores the fraction of elements meeting it, ``all`` needs every one.
    """

    quantity: str
    criterion: str
    value: float
    level: float = 0.95
    side: str = "either"
    over: str = "each"
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        q = self.quantity
        if self.criterion == "sd":
            text = f"posterior sd of {q} < {self.value:g}"
        elif self.criterion == "width":
            text = f"{self.level:.0%} interval width of {q} < {self.value:g}"
        elif self.criterion == "excludes":
            where = {"either": "excludes", "below": "lies below", "above": "lies above"}[self.side]
            text = f"{self.level:.0%} interval of {q} {where} {self.value:g}"
        else:
            text = f"contraction of {q} > {self.value:g}"
        return text + (f" ({self.over} element)" if "[" not in q else "")


def split_quantity(quantity: str) -> tuple[str, tuple[int, ...] | None]:
    """``"beta_g"`` -> ("beta_g", None); ``"beta_g[3]"`` -> ("beta_g", (3,));
    ``"b[1, 2]"`` -> ("b", (1, 2)).  ValueError (with the fix) for anything else."""
    text = quantity.strip()
    if "[" not in text and "]" not in text:
        return text, None
    match = re.fullmatch(r"([^\[\]]+?)\s*\[([^\[\]]*)\]", text)
    if match is None:
        raise ValueError("write a parameter name, or one element as name[i] (name[i,j] for a "
                         "matrix), e.g. \"beta_g[3]\"")
    parts = [p.strip() for p in match.group(2).split(",")]
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"the index [{match.group(2)}] must be non-negative integers "
                         "(0-based, e.g. \"beta_g[0]\" for the first element)")
    return match.group(1).strip(), tuple(int(p) for p in parts)


def element_name(base: str, index: tuple[int, ...] | None) -> str:
    """The stored name of a quantity: ``base`` or ``base[i,j]`` (``scalar_names`` form)."""
    return base if index is None else f"{base}[{','.join(map(str, index))}]"


def select_quantity(params: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """Rows of a parameters table that belong to ``quantity`` (a name or a whole group)."""
    if "[" in quantity:
        return params[params["name"] == quantity]
    return params[(params["group"] == quantity) & (params["kind"] == "parameter")]


def element_success(rows: pd.DataFrame, target: Target,
                    prior_sd: dict[str, float] | None = None) -> np.ndarray:
    """Per row (replicate x element): does the posterior meet the target?  Boolean array."""
    lo_col, hi_col = INTERVALS[target.level]
    if target.criterion == "sd":
        return rows["sd"].to_numpy(float) < target.value
    if target.criterion == "width":
        return (rows[hi_col].to_numpy(float) - rows[lo_col].to_numpy(float)) < target.value
    if target.criterion == "excludes":
        below = rows[hi_col].to_numpy(float) < target.value
        above = rows[lo_col].to_numpy(float) > target.value
        return {"either": below | above, "below": below, "above": above}[target.side]
    return contraction(rows, prior_sd or {}) > target.value


def contraction(rows: pd.DataFrame, prior_sd: dict[str, float]) -> np.ndarray:
    """1 - posterior variance / prior variance per row; prior sd looked up by element name."""
    sd0 = rows["name"].map(prior_sd).to_numpy(float)
    return 1.0 - rows["sd"].to_numpy(float) ** 2 / sd0**2


def replicate_success(params: pd.DataFrame, reps: pd.DataFrame, targets: tuple[Target, ...],
                      prior_sd: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per replicate: score in [0, 1] per target and jointly.

    A vector target scored ``each`` gives the share of elements meeting it, ``all`` gives 0/1.
    The joint score is the product (each target must be met).  Failed fits score 0: a screen
    whose analysis fails has not met its target, and the count is reported next to it.
    """
    index = reps["rep"].to_numpy()
    out = pd.DataFrame({"rep": index, "ok": (reps["status"] == "ok").to_numpy()})
    joint = np.ones(len(out))
    for i, target in enumerate(targets):
        rows = select_quantity(params, target.quantity)
        hit = pd.Series(element_success(rows, target, prior_sd), index=rows.index)
        agg = hit.groupby(rows["rep"]).mean() if target.over == "each" else \
            hit.groupby(rows["rep"]).min().astype(float)
        score = out["rep"].map(agg).fillna(0.0).to_numpy(float)
        out[f"target{i}"] = score
        joint = joint * score
    out["success"] = joint
    return out


def success_interval(scores: np.ndarray, conf: float) -> tuple[float, float, float]:
    """(estimate, lower, upper) of the probability of success from per-replicate scores.

    Scores are 0/1 (or shares in [0, 1] for ``each`` targets, whose sum is treated as the
    success count: the elements of one screen are strongly dependent, so this is closer to
    the truth than counting each element as an independent trial).
    """
    n = len(scores)
    if n == 0:
        return math.nan, 0.0, 1.0
    k = float(np.sum(scores))
    lo, hi = stats.wilson_interval(k, n, conf)
    return k / n, float(lo), float(hi)


def plan_decision(lower: float, upper: float, probability: float) -> str | None:
    """'pass' when the whole interval lies at or above the required probability, 'fail' when
    below it, None while it straddles it (simulate more)."""
    if lower >= probability:
        return "pass"
    if upper < probability:
        return "fail"
    return None


def dominated(a: Design, b: Design, monotone: tuple[str, ...]) -> bool:
    """Is ``a`` no larger than ``b`` in every monotone dimension and equal in the others?
    (Any design with a ``dimensions`` mapping: the logfc designs, and the genome designs
    with guides and depth.)"""
    dims_b = b.dimensions
    for dim, x in a.dimensions.items():
        y = dims_b[dim]
        if (dim in monotone and x > y) or (dim not in monotone and x != y):
            return False
    return True
