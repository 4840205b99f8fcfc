"""Simulate: draw true parameters and a data set from the model's prior predictive.

The forward function is compiled once per (model, design) and reseeded per replicate,
because compiling it per draw (what ``pm.draw`` does) costs more than a whole fit.
"""

from __future__ import annotations

import numpy as np

from sbc.spec import ModelSpec

# PyMC is imported where a simulator is built and drawn from: sbc.replicate and sbc.posterior
# import this module, and a run's import graph (also `sbc report`, sbc.open) must not load it.


def _is_rng(var) -> bool:
    return type(var.type).__name__ in ("RandomGeneratorType", "RandomTypeGenerator")


class Simulator:
    """Joint draws of ``spec.parameters`` and the response from one compiled function."""

    def __init__(self, spec: ModelSpec):
        import pymc as pm

        model = spec.generative
        self.names = tuple(spec.parameters)
        outputs = [model[name] for name in self.names] + [model[spec.response]]
        self._fn = pm.pytensorf.compile([], outputs, random_seed=0)
        self._rngs = [v for v in self._fn.get_shared() if _is_rng(v)]

    def draw(self, seed: np.random.SeedSequence) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Return ``(truths, y)``: one prior draw per parameter and the simulated response."""
        import pymc as pm

        pm.pytensorf.reseed_rngs(self._rngs, seed.generate_state(4).tolist())
        values = self._fn()
        truths = {name: np.asarray(v, dtype=float) for name, v in zip(self.names, values[:-1])}
        return truths, np.asarray(values[-1])
