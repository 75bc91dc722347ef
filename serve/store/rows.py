"""What every read of the store shares: times in UTC, rows as dicts.

SQLite hands back the naive UTC times it stores, PostgreSQL aware ones: every time leaving the store goes
through `aware`, so callers always get aware UTC datetimes whatever the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, overload

import sqlalchemy as sa

# a result row of any shape (SQLAlchemy types a row by its columns)
AnyRow: TypeAlias = "sa.Row[*tuple[Any, ...]]"
IN_CHUNK = 900  # ids per IN list: SQLite before 3.32 allows 999 parameters a statement


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
