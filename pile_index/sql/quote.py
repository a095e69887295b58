"""The one SQL string literal: a value (text or a path) quoted for DuckDB, for the places that cannot bind a
parameter (view definitions, ``SET`` statements, ``read_parquet`` lists).

SQL standard quoting: the value in single quotes, each single quote inside doubled. DuckDB reads it back
byte for byte; nothing else in the string is special.
"""

from __future__ import annotations

import os


def sql_string(value: str | os.PathLike) -> str:
    """``value`` (a str, or a path as its str) as a single-quoted SQL literal."""
    return "'" + str(value).replace("'", "''") + "'"
