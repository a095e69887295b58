"""The one exception family of pile-index.

Every error a user can cause is a ``PileIndexError``; the subclass says which kind, so the CLI can print
it and the API can map it to a status code in one place. Messages name the bad value, what was expected
and the fix, so one line is enough to act on.
"""

from __future__ import annotations


class PileIndexError(Exception):
    """Base class of every error pile-index raises on purpose."""


class FormatError(PileIndexError):
    """A file on disk does not have the format it claims (bad magic, counts, sizes, truncation)."""


class ConfigError(PileIndexError):
    """A configuration value or command-line option is invalid."""


class NotFoundError(PileIndexError):
    """A requested thing (file, document, step, revision) does not exist."""


class QueryError(PileIndexError):
    """A query is malformed or not allowed (bad SQL, out-of-range ids)."""


class LimitError(PileIndexError):
    """A request exceeds a named limit setting."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting
