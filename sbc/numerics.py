"""What decides a fit's floating-point results beyond its seed and model source: the compiled
code's floating-point settings, the CPU and the versions of the libraries that compute.

numba's ``fastmath`` (PyTensor's default for its numba backend, which nutpie and PyTensor's own
functions use) lets LLVM reorder and fuse floating-point operations, and it did so differently
when a function was compiled fresh and when it was loaded from numba's cache: the same
replicate of ``crispr_screen`` at 10x3x3, same seed, gave other draws in a cold and in a warm
PyTensor compile directory, and 1,156 of 1,170 ranks of ``sbc run studies/crispr_seed.toml
--sims 6`` changed between the two.  Without fastmath the compiled code keeps IEEE semantics:
cold, warm and uncached compiles give the same draws bit for bit (tests/test_reproducible.py).
So sbc switches fastmath off in every process where it compiles a model (the setting is
process-wide in PyTensor), and a store's fingerprint holds :func:`numerics`, so fits made under
other numerics are never mixed into it.

What it costs (benchmarks/numerics.md, both variants side by side in one process): nothing at
10x3x3 and 100x30x3, but a fit of ``crispr_screen`` at 30x10x3 takes 1.35x as long (gradient
evaluations per second 0.65x: without reassociation the likelihood's sum over 900 rows is not
vectorised).  The alternative that keeps fastmath, compiling without numba's cache in every
process, is also reproducible but adds about 4 s to every compile of every model form in
every worker; bits that do not depend on how a function was compiled were chosen instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib.metadata import PackageNotFoundError, version

# PyTensor and llvmlite are imported where they are asked: every study imports this module
# (its fingerprint), and validating a study or opening its results needs neither.

# The libraries whose code runs inside a simulation or a fit: another version may give other
# bits (a rewrite, a new sampler default), so a store refuses to mix them.
COMPUTING = ("numpy", "numba", "llvmlite", "pytensor", "pymc", "bambi", "nutpie")


def pin_numerics() -> None:
    """Compile with IEEE floating point (numba's fastmath off), from now on in this process.
    Idempotent; called before every model is built, in the client and in every worker."""
    import pytensor

    if pytensor.config.numba__fastmath:
        pytensor.config.numba__fastmath = False


@functools.cache
def numerics() -> dict:
    """The settings, CPU and library versions a fit's bits depend on (JSON-ready): part of
    every store's fingerprint and of its study.json."""
    import llvmlite.binding as llvm

    out = {"numba_fastmath": False, "cpu": llvm.get_host_cpu_name()}
    for pkg in COMPUTING:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def describe_change(old: dict | None, new: dict) -> str:
    """What differs between two :func:`numerics` records, for a refusal message."""
    if not old:
        return "the store was written before its numerics were recorded (fits may differ in " \
               "their last bits, so their ranks would not be reproducible here)"
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {old.get(k, 'absent')} -> {new.get(k, 'absent')}" for k in keys)


def fingerprint(payload: dict) -> str:
    """The one hash of what decides a store's results (studies, plans and genome plans): its
    ``payload`` (seed, models' sources, designs, sampler, ...) and :func:`numerics`."""
    blob = json.dumps({**payload, "numerics": numerics()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
