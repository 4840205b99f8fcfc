"""Derived test quantities: log-likelihoods of the simulated data (Modrák et al. 2023).

Parameter ranks cannot see a likelihood that drops data or a posterior that ignores them;
the rank of the joint log-likelihood ``log p(y | theta)`` of the truth among posterior draws
can.  A pointwise quantity, the log-likelihood of the worst-fitting observation
``min_i log p(y_i | theta)``, adds sensitivity to bugs that touch single data points.
Both are functions of (parameters, data), so they are ranked like a parameter.
"""

from __future__ import annotations

import numpy as np

from sbc.spec import DERIVED_QUANTITIES, RESPONSE_DATA_NAME, ModelSpec

# PyMC and PyTensor are imported where the log-likelihood is compiled: sbc.replicate imports
# this module, and a run's import graph (also `sbc report`, sbc.open) must not load them.

QUANTITIES = DERIVED_QUANTITIES  # their names (sbc.spec reserves them)


class LoglikEvaluator:
    """Pointwise ``log p(y_i | theta)`` for many parameter draws at once.

    Compiled once per (model, design): the fit model without value transforms (so it takes
    constrained values, as the sampler reports them), vectorized over a leading draw axis.
    """

    def __init__(self, spec: ModelSpec):
        import pytensor
        import pytensor.tensor as pt
        from pymc.model.transform.conditioning import remove_value_transforms
        from pytensor.graph.replace import vectorize_graph

        model = remove_value_transforms(spec.fit_model)
        obs = model.observed_RVs[0]
        pointwise = model.logp(vars=[obs], sum=False)[0]
        self.inputs = [(rv.name, model.rvs_to_values[rv]) for rv in model.free_RVs]
        batched = {value: pt.tensor(dtype=value.dtype, shape=(None,) + tuple(value.type.shape))
                   for name, value in self.inputs}
        out = vectorize_graph(pointwise, replace=batched)
        out = out.reshape((out.shape[0], -1))
        self._data = next(v for v in pytensor.graph.traversal.ancestors([pointwise])
                          if getattr(v, "name", None) == RESPONSE_DATA_NAME)
        self._fn = pytensor.function(list(batched.values()), out, on_unused_input="ignore")

    def pointwise(self, params: dict[str, np.ndarray], y: np.ndarray) -> np.ndarray:
        """params: name -> (n_draws, *shape) for every free parameter.  Returns (n_draws, n_obs)."""
        self._data.set_value(np.asarray(y, dtype=self._data.dtype))
        return self._fn(*[np.asarray(params[name], dtype=float) for name, _ in self.inputs])


def derived_quantities(pointwise: np.ndarray) -> dict[str, np.ndarray]:
    """(n_draws, n_obs) pointwise log-likelihoods -> name -> (n_draws,) test quantities."""
    return {"loglik": pointwise.sum(axis=1), "loglik_min": pointwise.min(axis=1)}
