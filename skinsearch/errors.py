"""User-facing errors: one line each, saying what is wrong, where, and how to fix it.

The CLI turns a ``SkinsearchError`` into ``Error: <line>`` on stderr and exit code 2; anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class SkinsearchError(Exception):
    """A mistake in the user's input or environment, reported without a traceback.

    Args:
        problems: One or more one-line messages; each is printed on its own line.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p] or ["unknown error"]
        super().__init__("\n".join(self.problems))


class SpecError(SkinsearchError):
    """A search-space file that cannot be read or does not validate."""


class DataError(SkinsearchError):
    """A data set that cannot be used: missing, empty, or with unusable classes."""


class ResultsError(SkinsearchError):
    """No search, trial, checkpoint or bundle where the user pointed."""


class Interrupted(Exception):
    """The user stopped a run (Ctrl-C) after some of it had finished, which is kept.

    The CLI prints ``Interrupted: <line>`` on stderr and exits 130, as a shell does for SIGINT.
    """
