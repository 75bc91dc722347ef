"""What every read of the store shares: times in UTC, rows as dicts.

SQLite hands back the naive UTC times it stores, PostgreSQL aware ones: every time leaving the store goes
through `aware`, so callers always get aware UTC datetimes whatever the database."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, overload

import sqlalchemy as sa

# a result row of any shape (SQLAlchemy types a row by its columns)
AnyRow: TypeAlias = "sa.Row[*tuple[Any, ...]]"
IN_CHUNK = 900  # ids per IN list: SQLite before 3.32 allows 999 parameters a statement
SQLITE_PARAMETERS = 999  # a statement's parameters in SQLite before 3.32


def now() -> datetime:
    return datetime.now(UTC)


def lease_clock(dialect: sa.Dialect, ahead: float = 0.0) -> sa.ColumnElement[datetime]:
    """The time a lease is set and checked against in a claiming statement, `ahead` seconds on. PostgreSQL:
    the server's `now()` (the transaction's start, one value for every row), so workers on hosts whose clocks
    disagree still agree on whether a lease has run out and a host whose clock runs ahead cannot take what
    another still holds. SQLite: the store is on the one host, so its clock is the only one."""
    if dialect.name == "postgresql":
        return sa.func.now() + sa.literal(timedelta(seconds=ahead), sa.Interval())
    return sa.literal(now() + timedelta(seconds=ahead), sa.DateTime(timezone=True))


@overload
def aware(t: datetime) -> datetime: ...
@overload
def aware(t: None) -> None: ...
@overload
def aware(t: datetime | None) -> datetime | None: ...
def aware(t: datetime | None) -> datetime | None:
    """`t` as an aware UTC datetime (a naive one is read as UTC); None stays None."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def row(r: AnyRow) -> dict[str, Any]:
    """A result row as a dict, its datetimes aware UTC."""
    d = dict(r._mapping)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = aware(v)
    return d


@functools.lru_cache(maxsize=256)
def _values_sql(head: str, width: int, n: int, tail: str) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * n)}{tail}"


def sqlite_insert_values(
    conn: sa.Connection, head: str, width: int, params: list[Any], tail: str = ""
) -> None:
    """Insert rows of `width` values each, given flat in `params` (row after row, values as the driver takes
    them), on SQLite as `head VALUES (?, ...), (?, ...) tail` statements of as many rows as
    `SQLITE_PARAMETERS` allows, through the driver, in the order given. A few statements per batch, not one
    per row: SQLAlchemy's executemany spent ~40 us a row, and the driver releases the GIL around every
    statement (each time it takes it back it waits for the serving thread's switch interval, which every
    request would pay). Flat, not a tuple a row: the rows are only ever parameters."""
    per = SQLITE_PARAMETERS // width * width
    for start in range(0, len(params), per):
        part = params[start : start + per]
        conn.exec_driver_sql(_values_sql(head, width, len(part) // width, tail), tuple(part))
