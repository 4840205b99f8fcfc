"""The previous nutpie result path, kept for side-by-side measurement.

``sbc.sampling.NutpieBackend.fit`` reads nutpie's raw Arrow trace (``return_raw_trace=True``).
Before, it let ``nutpie.sample`` convert every trace to an xarray DataTree (warm-up groups,
coordinates, alignment), which cost about a third of a fit at 90 rows.  ``fit_datatree`` is
that old path; ``use_raw_trace(False)`` patches it in so the benchmark can compare both in
one process, and ``use_raw_trace(True)`` restores the library's own path.
"""

from __future__ import annotations

import time

import numpy as np


def fit_datatree(self, y: np.ndarray, seed: int):
    """``NutpieBackend.fit`` through nutpie's DataTree conversion (the old path)."""
    import nutpie

    from sbc.sampling import Fit
    from sbc.spec import RESPONSE_DATA_NAME

    s = self.settings
    start = time.perf_counter()
    trace = nutpie.sample(
        self.compiled.with_data(**{RESPONSE_DATA_NAME: np.ascontiguousarray(y, dtype=float)}),
        **s.nutpie_kwargs(self.compiled.n_dim), seed=int(seed),
        save_warmup=False, progress_bar=False,
    )
    seconds = time.perf_counter() - start
    post, stats = trace["posterior"], trace["sample_stats"]
    draws = {name: np.asarray(post[name].values, dtype=float) for name in self.spec.parameters}
    return Fit(draws=draws, diverging=np.asarray(stats["diverging"].values, dtype=bool),
               treedepth_hits=int(np.asarray(stats["maxdepth_reached"].values).sum()),
               step_size=float(np.asarray(stats["step_size"].values).mean()), seconds=seconds)


def use_raw_trace(enabled: bool = True) -> None:
    """Use the library's raw-trace fit (True) or the old DataTree path (False) in this process."""
    from sbc import sampling as fit

    if not hasattr(fit.NutpieBackend, "_fit_raw"):
        fit.NutpieBackend._fit_raw = fit.NutpieBackend.fit
    fit.NutpieBackend.fit = fit.NutpieBackend._fit_raw if enabled else fit_datatree
