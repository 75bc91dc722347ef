"""The score log's compact row format: features as a JSON array of values in the order of a feature set
(its names stored once, in `feature_sets`), reasons as arrays of `REASON_FIELDS`. `score_log_row` encodes a
row as the API served it, `insert_score_log` writes a batch of them, `decode_score_log` gives rows read back
the API's shape again."""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from leadscore.model.reasons import REASON_FIELDS
from leadscore.serve import db
from leadscore.serve.db import encode_json
from leadscore.serve.store.rows import sqlite_insert_values

SCORE_LOG_FIELDS = (
    "lead_id",
    "scored_at",
    "as_of",
    "model_version",
    "probability",
    "score",
    "grade",
    "qualified",
    "features",
    "reasons",
    "propensity",
    "explored",
)
# reasons in a handoff event: the top ones, as the sales page shows them; a row carries them unencoded
EVENT_REASONS = 3
_COLUMNS = (*SCORE_LOG_FIELDS[:10], "feature_set", *SCORE_LOG_FIELDS[10:])
_INTO = f"INSERT INTO score_log ({', '.join(_COLUMNS)}) "
_PG_CASTS = (
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "float8",
    "integer",
    "text",
    "boolean",
    "json",
    "json",
    "text",
    "float8",
    "boolean",
)
_PG_PICK = ", ".join(f"CAST(r.value->>{i} AS {cast})" for i, cast in enumerate(_PG_CASTS))
# rows get their ids in the array's order (a request's repeated lead_id: the later score is the later row)
_PG_INSERT = sa.text(
    _INTO + f"SELECT {_PG_PICK} FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY "
    "AS r(value, ord) ORDER BY r.ord"
)


# feature names <-> the id of their feature set (a content hash: valid in every database)
_SET_IDS: dict[tuple[str, ...], str] = {}
_SET_NAMES: dict[str, tuple[str, ...]] = {}


def feature_set_id(names: tuple[str, ...]) -> str:
    got = _SET_IDS.get(names)
    if got is None:
        got = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        _SET_IDS[names], _SET_NAMES[got] = got, names
    return got


def feature_names(conn: sa.Connection, ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The names of each feature set in `ids` (unknown ids: left out)."""
    missing = [i for i in set(ids) if i not in _SET_NAMES]
    if missing:
        for r in conn.execute(sa.select(db.feature_sets).where(db.feature_sets.c.id.in_(missing))):
            _SET_NAMES[r.id] = tuple(r.names)
    return {i: _SET_NAMES[i] for i in set(ids) if i in _SET_NAMES}


_reason_values = operator.itemgetter(*REASON_FIELDS)


def score_log_row(r: dict[str, Any]) -> tuple[Any, ...]:
    """A score-log row (a mapping with the fields of `SCORE_LOG_FIELDS`, features a mapping of name to
    value, reasons as the API serves them; `propensity` and `explored` may be absent: NULL) as
    `insert_score_log` takes it: a flat tuple, features encoded as the JSON array of their values, reasons as
    arrays of `REASON_FIELDS`, the id of the feature set, propensity and explored, and last (not stored in
    the score log) the first `EVENT_REASONS` reasons as a tuple of tuples of their `REASON_FIELDS` values,
    what a handoff event shows (taken from there, not decoded back from the JSON). About 1 KB of JSON a row
    instead of 2.4 KB with every key repeated (docs/api.md, "Score log")."""
    features = r["features"]
    (row,) = encoded_score_log_rows(
        [r], r["scored_at"], [r["as_of"]], r["model_version"], [list(features.values())], tuple(features)
    )
    return row


def encoded_score_log_rows(
    results: Iterable[dict[str, Any]],
    scored_at: datetime,
    as_of: Iterable[datetime],
    version: str | None,
    values: Iterable[Sequence[Any]],
    names: tuple[str, ...],
) -> list[tuple[Any, ...]]:
    """`score_log_row` of each result (lead_id, probability, score, grade, qualified, reasons and, if known,
    propensity and explored) scored as of its `as_of`, whose features are its `values` in the order of
    `names`. Reasons are `Reason`s as the API serves them, or tuples of their `REASON_FIELDS` values
    (`ScoringModel.results(reason_fields=True)`: a bulk rescore's, which never makes the dicts). One loop
    for a batch: a bulk rescore encodes 25,000 rows at a time (a call a row cost a fifth of it)."""
    set_id = feature_set_id(names)
    out = []
    for r, at, vals in zip(results, as_of, values, strict=True):
        reasons = r["reasons"]
        if reasons and not isinstance(reasons[0], tuple):
            reasons = [_reason_values(x) for x in reasons]
        out.append(
            (
                r["lead_id"],
                scored_at,
                at,
                version,
                r["probability"],
                r["score"],
                r["grade"],
                r["qualified"],
                encode_json(vals),
                encode_json(reasons),
                set_id,
                r.get("propensity"),
                r.get("explored"),
                # the event's reasons, tuples of numbers and text: the collector stops tracking them
                tuple(reasons[:EVENT_REASONS]),
            )
        )
    return out


def decode_score_log(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score-log rows as read (`features`, `reasons`, `feature_set` columns) back in the API's shape:
    features a mapping of name to value, reasons objects; rows from before migration 0003 are already so."""
    names = feature_names(conn, {r["feature_set"] for r in rows if r.get("feature_set")})
    for r in rows:
        fs = r.pop("feature_set", None)
        if "features" in r and fs is not None and isinstance(r["features"], list):
            r["features"] = dict(zip(names[fs], r["features"], strict=False)) if fs in names else {}
        if "reasons" in r and r["reasons"] and isinstance(r["reasons"][0], list):
            r["reasons"] = [dict(zip(REASON_FIELDS, x, strict=False)) for x in r["reasons"]]
    return rows


@functools.lru_cache(maxsize=16)
def sqlite_time(t: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it, "YYYY-MM-DD HH:MM:SS.ffffff" (UTC; read back as
    UTC by `store`). Cached: a batch's rows share their times (a bulk rescore: one `scored_at` and `as_of`
    for 25,000 rows, one `created_at` for their events), formatted once instead of once a row (equal
    datetimes are the same instant, so they have the same text)."""
    if t.tzinfo is not None:
        t = (t if t.tzinfo is UTC else t.astimezone(UTC)).replace(tzinfo=None)
    return t.isoformat(" ", "microseconds")


def insert_score_log(conn: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert score-log rows made by `score_log_row`, and the feature sets they name if not stored yet.

    A few statements per batch, not one per row: the driver releases the GIL around every statement, and
    each time it takes it back it waits for the serving thread's switch interval, which every request would
    pay. SQLite: VALUES lists (`rows.sqlite_insert_values`; one statement over a JSON array made SQLite
    unescape every row's features again). PostgreSQL: one statement over a JSON array
    (`json_array_elements`). The figures are in docs/benchmarks.md ("How it got here") and docs/api.md
    ("Score log")."""
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {name!r}: use SQLite or PostgreSQL")
    conn.execute(
        db.dialect_insert(conn)(db.feature_sets).on_conflict_do_nothing(),
        [{"id": i, "names": list(_SET_NAMES[i])} for i in {r[10] for r in rows}],
    )
    if name == "sqlite":
        params: list[Any] = []
        for r in rows:
            params += (
                r[0],
                sqlite_time(r[1]),
                sqlite_time(r[2]),
                r[3],
                r[4],
                r[5],
                r[6],
                int(r[7]),
                r[8],
                r[9],
                r[10],
                r[11],
                None if r[12] is None else int(r[12]),
            )
        sqlite_insert_values(conn, _INTO.rstrip(), len(_COLUMNS), params)
    else:
        payload = [(r[0], r[1].isoformat(), r[2].isoformat(), *r[3:13]) for r in rows]
        conn.execute(_PG_INSERT, {"rows": encode_json(payload)})
