"""Exception types for user mistakes, raised at the boundary (study file, CLI, model file, store).

Every message says what was wrong, where, and how to fix it.  The CLI turns these into a
one-paragraph message and exit status 2, never a traceback.
"""


class SbcError(Exception):
    """Base class of every user-facing error."""


class StudyError(SbcError):
    """The study file is missing, unreadable or invalid."""


class ModelError(SbcError):
    """A model file cannot be found, imported or built."""


class StoreError(SbcError):
    """The output directory cannot be used (a file, not writable, holds another study)."""


class StudyMismatchError(StoreError):
    """The output directory holds results of a study that differs from the one given."""


class SchedulerError(SbcError):
    """The Dask scheduler cannot be reached."""


class DataError(StudyError):
    """A data file (a screen's counts, gene effects or log fold changes) is malformed."""


class ArgumentError(SbcError, ValueError):
    """An argument of a Python call or a command-line option is invalid, or two of them
    conflict (e.g. ``workers=-2``, or ``--threads`` with ``--workers``)."""
