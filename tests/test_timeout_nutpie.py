"""sampler.timeout with nutpie: fits within the limit succeed, a fit past it fails with the
reason (nutpie 0.16 signals "not finished yet" with TimeoutError, which must not be taken
for a failed fit)."""

from __future__ import annotations

import pytest

from sbc.design import Design
from sbc.sampling import FitTimeout, NutpieBackend
from sbc.simulate import Simulator
from sbc.spec import make_spec, resolve_model
from sbc.study import SamplerSettings


@pytest.fixture(scope="module")
def spec():
    return make_spec(resolve_model("normal_known_sigma"), Design(5, 3, 2).frame())


def test_nutpie_fit_within_its_timeout_succeeds(spec):
    import numpy as np

    _, y = Simulator(spec).draw(np.random.SeedSequence(1))
    fit = NutpieBackend(spec, SamplerSettings(timeout=120.0)).fit(y, 1)
    assert fit.draws["mu"].shape == (1, SamplerSettings().draws)


def test_nutpie_fit_past_its_timeout_fails_with_the_reason(spec):
    import numpy as np

    _, y = Simulator(spec).draw(np.random.SeedSequence(1))
    slow = SamplerSettings(draws=2_000_000, tune=100, timeout=0.5)
    with pytest.raises(FitTimeout, match=r"per-fit timeout of 0\.5 s"):
        NutpieBackend(spec, slow).fit(y, 1)
