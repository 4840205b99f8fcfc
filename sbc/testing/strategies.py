"""hypothesis strategies for calibration tests: designs, random-intercept models, seeds.

    from hypothesis import given
    from sbc.testing import strategies as sst

    @given(sst.designs(max_rows=60), sst.random_intercept_models(), sst.study_seeds())
    def test_any_small_screen_is_calibrated(design, model, seed, tmp_path_factory): ...

A generated model is plain data (:class:`RandomInterceptModel`: formula and priors) that
can build its Bambi model directly or write itself as a model file, because the pipeline
runs models from their source text.  Every prior drawn is proper, so the prior can be
simulated from.  Settings profiles ``dev`` (few examples) and ``ci`` (more, derandomized)
keep runs bounded; select one with ``settings.load_profile`` or ``pytest --sbc-profile``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sbc.design import Design

# Bambi is imported where a model is built: test modules import these strategies at
# collection, which should not wait for Bambi and PyMC to load.

FACTORS = ("gene", "cell_line")
RESPONSE = "logfc"

# Bounded runs: a single example may build and compile a PyMC model (seconds).
settings.register_profile("dev", max_examples=10, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def designs(draw, max_cell_lines: int = 12, max_genes: int = 6, max_reps: int = 3,
            max_rows: int = 150, min_cell_lines: int = 2, min_genes: int = 2) -> Design:
    """A :class:`Design` within the bounds and with at most ``max_rows`` rows.

    At least two levels per factor by default, so a group standard deviation is estimable.
    """
    if min_cell_lines * min_genes > max_rows:
        raise ValueError(f"no design has at most {max_rows} rows with at least "
                         f"{min_cell_lines} cell lines and {min_genes} genes; raise max_rows")
    # Draw genes and replicates so that the smallest number of cell lines still fits.
    n_genes = draw(st.integers(min_genes, min(max_genes, max_rows // min_cell_lines)))
    n_reps = draw(st.integers(1, max(1, min(max_reps, max_rows // (min_cell_lines * n_genes)))))
    most_cells = max(min_cell_lines, min(max_cell_lines, max_rows // (n_genes * n_reps)))
    n_cells = draw(st.integers(min_cell_lines, most_cells))
    return Design(n_cells, n_genes, n_reps)


def study_seeds() -> st.SearchStrategy[int]:
    """Study seeds (the study file's ``seed``): non-negative 32-bit integers."""
    return st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def formulas(draw, factors: tuple[str, ...] = FACTORS) -> str:
    """A Bambi formula with a common intercept and random intercepts for a non-empty,
    ordered subset of ``factors``, e.g. ``logfc ~ 1 + (1|cell_line) + (1|gene)``."""
    chosen = draw(st.lists(st.sampled_from(factors), min_size=1, max_size=len(factors),
                           unique=True))
    return f"{RESPONSE} ~ 1 + " + " + ".join(f"(1|{f})" for f in chosen)


@dataclass(frozen=True)
class PriorChoice:
    """A proper prior as plain data: a Bambi distribution name and its keyword arguments;
    a nested PriorChoice as a value is a hyperprior (e.g. a group sd)."""

    dist: str
    kwargs: tuple[tuple[str, float | PriorChoice], ...]

    def to_bambi(self):
        import bambi as bmb

        return bmb.Prior(self.dist, **{k: v.to_bambi() if isinstance(v, PriorChoice) else v
                                       for k, v in self.kwargs})

    def source(self) -> str:
        args = ", ".join(f"{k}={v.source() if isinstance(v, PriorChoice) else repr(v)}"
                         for k, v in self.kwargs)
        return f"bmb.Prior({self.dist!r}, {args})"


def scale_priors() -> st.SearchStrategy[PriorChoice]:
    """Proper priors on a positive scale (a group sd or the residual sd)."""
    scale = st.floats(0.2, 3.0).map(lambda x: round(x, 2))
    return st.one_of(
        scale.map(lambda s: PriorChoice("HalfNormal", (("sigma", s),))),
        scale.map(lambda s: PriorChoice("Exponential", (("lam", round(1 / s, 3)),))),
    )


@st.composite
def priors(draw, formula: str) -> dict[str, PriorChoice]:
    """Proper priors for every parameter of a random-intercept ``formula``: a Normal
    intercept, Normal(0, sd) group intercepts with a positive hyperprior, and a residual sd."""
    out = {"Intercept": PriorChoice("Normal", (("mu", draw(st.floats(-2, 2).map(
        lambda x: round(x, 2)))), ("sigma", draw(st.floats(0.5, 3).map(lambda x: round(x, 2))))))}
    for factor in re.findall(r"\(1\|(\w+)\)", formula):
        out[f"1|{factor}"] = PriorChoice("Normal", (("mu", 0.0),
                                                        ("sigma", draw(scale_priors()))))
    out["sigma"] = draw(scale_priors())
    return out


@dataclass(frozen=True)
class RandomInterceptModel:
    """A Bambi random-intercept model as data: formula and proper priors."""

    formula: str
    priors: tuple[tuple[str, PriorChoice], ...]

    def build(self, data):
        """The Bambi model for a design frame (non-centered, like ``crispr_screen``)."""
        import bambi as bmb

        return bmb.Model(self.formula, data, family="gaussian", noncentered=True,
                         priors={k: v.to_bambi() for k, v in self.priors})

    def source(self) -> str:
        """Python source of an equivalent model file (``build(data)``)."""
        lines = ",\n".join(f"        {k!r}: {v.source()}" for k, v in self.priors)
        return (f'"""Generated random-intercept model: {self.formula}"""\n\n'
                "import bambi as bmb\n\n\n"
                "def build(data):\n"
                f"    priors = {{\n{lines},\n    }}\n"
                f"    return bmb.Model({self.formula!r}, data, family='gaussian', "
                "noncentered=True, priors=priors)\n")

    def write(self, directory: str | Path) -> Path:
        """Write the model file into ``directory`` (named by a hash of its source)."""
        source = self.source()
        path = Path(directory) / f"ri_{hashlib.sha256(source.encode()).hexdigest()[:10]}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        return path


@st.composite
def random_intercept_models(draw, factors: tuple[str, ...] = FACTORS) -> RandomInterceptModel:
    """A random-intercept Bambi model over ``factors`` with proper priors."""
    formula = draw(formulas(factors))
    return RandomInterceptModel(formula, tuple(draw(priors(formula)).items()))
