"""Writing scores: the score-log rows, each lead's newest state and, in the same transaction, the handoff
events a new score causes.

`write_scores` is the one way score-log rows reach the store (the API's background writer, the rescorer,
`leadscore rescore`, `leadscore import`). Because the event is written in the transaction of the score
that caused it, a score is never kept without its event nor an event without its score, whatever crashes
when; delivery then reads the outbox (at least once, `serve.webhooks`).

The rules, per lead and in the order of the rows:
- a score older (`as_of`) than the lead's newest known score goes to the score log only: it is history,
  not news; so does a score of a moment more than `FORECAST` after it was computed (a forecast);
- `lead.handoff` when the lead is handed over (at or above the threshold, or drawn for exploration) and
  its previous score was not, or it had none;
- `lead.grade_changed` when the lead had a previous score with another grade;
- `notify=False` (an import of history) keeps the state up to date and writes no events.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store import outbox
from leadscore.serve.store.rows import IN_CHUNK, aware, now, sqlite_insert_values
from leadscore.serve.store.score_log_rows import EVENT_REASONS as EVENT_REASONS  # the events' reasons
from leadscore.serve.store.score_log_rows import insert_score_log, sqlite_time

HANDOFF = "lead.handoff"
GRADE_CHANGED = "lead.grade_changed"
# A score of a moment this far after it was computed is a forecast ("where will this lead be next week"):
# logged, but not the lead's state, or every real score after it would look older and change nothing.
FORECAST = timedelta(minutes=5)

_STATE = db.lead_state.c
# a `score_log_row` tuple: lead_id, scored_at, as_of, model_version, probability, score, grade, qualified,
# features (JSON), reasons (JSON arrays of REASON_FIELDS), feature_set, propensity, explored, and the
# event's reasons (tuples of REASON_FIELDS values)
_STATE_COLUMNS = ("as_of", "scored_at", "model_version", "probability", "score", "grade", "qualified")


@functools.lru_cache(maxsize=16)  # a batch's events share their times (see `sqlite_time`)
def _time(t: datetime) -> str:
    return aware(t).isoformat().replace("+00:00", "Z")


# a batch's rows share their times (a bulk rescore: one `scored_at` and `as_of` for 25,000 rows): each is
# made aware once, not once a row
_aware = functools.lru_cache(maxsize=16)(aware)


@functools.lru_cache(maxsize=16)
def _latest_state(scored_at: datetime) -> datetime:
    """The latest `as_of` a score computed at `scored_at` may have to become the lead's state."""
    return aware(scored_at) + FORECAST


_STATE_FIELDS = ("as_of", "grade", "qualified", "handed_over_at")  # what a new score is compared with
_NEVER_SCORED = (None, None, None, None)
_WRITTEN = (*_STATE_COLUMNS, "explored", "handed_over_at")
_SQLITE_UPSERT = (  # head and tail of `rows.sqlite_insert_values`
    f"INSERT INTO lead_state (lead_id, {', '.join(_WRITTEN)})",
    f" ON CONFLICT (lead_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _WRITTEN)}",
)


_OUTBOX = ("event_id", "type", "lead_id", "created_at", "body", "status", "attempts", "next_attempt_at")
_BODY_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS  # as `encode_json`


def _sqlite_read(value: Any) -> datetime | None:
    return None if value is None else aware(datetime.fromisoformat(value))


def _locked_states(conn: sa.Connection, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """The state (`_STATE_FIELDS`) of each lead in `ids` that has one, locked for this transaction (a lead
    never scored: absent, or all None).

    SQLite: the score log's insert before this already holds the database's one write lock, so a plain
    read is consistent (and read through the driver: this runs for every score the API serves).
    PostgreSQL: empty rows are inserted first (ON CONFLICT DO NOTHING) and every row is then read FOR
    UPDATE in lead_id order, so two writers of the same lead queue on its row and a lead's first score
    cannot make two `lead.handoff` events."""
    out: dict[str, tuple[Any, ...]] = {}
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execute(
            db.dialect_insert(conn)(db.lead_state).on_conflict_do_nothing(), [{"lead_id": i} for i in ids]
        )
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        if postgres:
            q = sa.select(_STATE.lead_id, *(_STATE[c] for c in _STATE_FIELDS))
            q = q.where(_STATE.lead_id.in_(chunk)).order_by(_STATE.lead_id).with_for_update()
            for lead_id, *state in conn.execute(q):
                out[lead_id] = tuple(state)
        else:
            sql = f"SELECT lead_id, {', '.join(_STATE_FIELDS)} FROM lead_state WHERE lead_id IN "
            sql += f"({', '.join('?' * len(chunk))})"
            for lead_id, as_of, grade, qualified, handed in conn.exec_driver_sql(sql, tuple(chunk)):
                out[lead_id] = (
                    _sqlite_read(as_of),
                    grade,
                    None if qualified is None else bool(qualified),
                    _sqlite_read(handed),
                )
    return out


def _write_states(conn: sa.Connection, changed: dict[str, tuple[tuple[Any, ...], bool, Any]]) -> None:
    """Write each lead's new state: (its newest score-log row, handed over, handed over at) a lead."""
    if conn.dialect.name == "postgresql":  # every row exists (`_locked_states`) and is locked
        conn.execute(
            sa.update(db.lead_state)
            .where(_STATE.lead_id == sa.bindparam("b_lead_id"))
            .values({k: sa.bindparam(f"b_{k}") for k in _WRITTEN}),
            [
                dict(
                    zip(
                        ("b_lead_id", *(f"b_{k}" for k in _WRITTEN)),
                        (
                            lead_id,
                            _aware(r[2]),
                            _aware(r[1]),
                            *r[3:7],
                            handed,
                            None if r[12] is None else bool(r[12]),
                            handed_at,
                        ),
                        strict=True,
                    )
                )
                for lead_id, (r, handed, handed_at) in changed.items()
            ],
        )
        return
    params: list[Any] = []
    for lead_id, (r, handed, handed_at) in changed.items():
        params += (
            lead_id,
            sqlite_time(r[2]),
            sqlite_time(r[1]),
            r[3],
            r[4],
            r[5],
            r[6],
            int(handed),
            None if r[12] is None else int(r[12]),
            None if handed_at is None else sqlite_time(handed_at),
        )
    head, tail = _SQLITE_UPSERT
    sqlite_insert_values(conn, head, len(_WRITTEN) + 1, params, tail)


def _event_ids(n: int, at: datetime) -> list[str]:
    """`n` event ids made at `at`: UUIDs of version 7 (RFC 9562: the Unix time in milliseconds, then 74
    random bits), as `str(uuid.UUID)` spells them, drawn at once and in ascending order.

    Time-ordered, so the outbox's unique index on `event_id` grows at its end as the rows are inserted in
    this order: with random (version 4) ids every insert went to a random page of that index, and a first
    bulk rescore of 1M leads (866k events) spent ~5 s more CPU in SQLite (14.7 vs 9.7 s for 880k rows).
    Drawn at once: one `uuid` call at a time was a third of the cost of making an event."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    ms = int(aware(at).timestamp() * 1000)
    raw[:, :6] = np.frombuffer(ms.to_bytes(6, "big"), dtype=np.uint8)  # unix_ts_ms, big-endian
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 9562 (4122) variant
    h = raw.tobytes().hex()
    ids = []
    for i in range(0, 32 * n, 32):
        x = h[i : i + 32]
        ids.append(f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}")
    ids.sort()
    return ids


def _events(caused: list[tuple[str, tuple[Any, ...], Any, Any]], at: datetime) -> list[tuple[Any, ...]]:
    """The outbox rows (`_OUTBOX` values) of `caused`: (kind, score-log row, previous grade, previous
    qualified) each. The body's reasons are the row's own (`score_log_row`'s last field), not its reasons
    JSON decoded again."""
    created = _time(at)
    out = []
    for (kind, r, grade, qualified), event_id in zip(caused, _event_ids(len(caused), at), strict=True):
        body = {
            "event_id": event_id,
            "type": kind,
            "created_at": created,
            "lead_id": r[0],
            "score": r[5],
            "grade": r[6],
            "probability": r[4],
            "qualified": bool(r[7]),
            "explored": None if r[12] is None else bool(r[12]),
            "previous_grade": grade,
            "previous_qualified": qualified,
            "as_of": _time(r[2]),
            "scored_at": _time(r[1]),
            "model_version": r[3],
            "reasons": [
                {"feature": f, "value": value, "impact": impact, "points": points, "text": text}
                for f, value, impact, points, text in r[13]
            ],
        }
        body_json = orjson.dumps(body, option=_BODY_JSON).decode()
        out.append((event_id, kind, r[0], at, body_json, "pending", 0, at))
    return out


def record_transitions(conn: sa.Connection, rows: Sequence[tuple[Any, ...]], notify: bool = True) -> int:
    """Bring `lead_state` up to `rows` (score-log row tuples, in the order scored) and write the outbox
    events they cause; the number of events written. Call it inside the transaction that inserts the rows.

    A first bulk rescore passes here for every stored lead: a lead's state is a tuple, not a dict, and the
    rows' shared times are made aware once (`_aware`)."""
    if not rows:
        return 0
    states = _locked_states(conn, sorted({r[0] for r in rows}))
    at = now()
    caused: list[tuple[str, tuple[Any, ...], Any, Any]] = []
    # lead_id -> (its newest row, handed over, handed over at), in the order the leads first came
    changed: dict[str, tuple[tuple[Any, ...], bool, Any]] = {}
    for r in rows:
        lead_id = r[0]
        was_as_of, was_grade, was_qualified, was_handed_at = states.get(lead_id, _NEVER_SCORED)
        as_of = _aware(r[2])
        if (was_as_of is not None and as_of < was_as_of) or as_of > _latest_state(r[1]):
            continue
        was_handed = bool(was_qualified)
        handed = bool(r[7])
        if notify:
            if handed and not was_handed:
                caused.append((HANDOFF, r, was_grade, was_qualified))
            if was_grade is not None and was_grade != r[6]:
                caused.append((GRADE_CHANGED, r, was_grade, was_qualified))
        handed_at = (was_handed_at if was_handed else as_of) if handed else None
        states[lead_id] = (as_of, r[6], handed, handed_at)
        changed[lead_id] = (r, handed, handed_at)
    if changed:
        _write_states(conn, changed)
    if caused:
        outbox.before_insert(conn)
        _insert_events(conn, _events(caused, at))
    return len(caused)


def _insert_events(conn: sa.Connection, events: list[tuple[Any, ...]]) -> None:
    """Insert outbox rows (`_OUTBOX` values) in the order given (their ids are the handoff cursor). SQLite:
    VALUES lists through the driver (`rows.sqlite_insert_values`), as the state rows (SQLAlchemy's
    executemany spent ~40 us a row on the first rescore of a store, one event per lead handed over)."""
    if conn.dialect.name != "sqlite":
        conn.execute(sa.insert(db.outbox), [dict(zip(_OUTBOX, e, strict=True)) for e in events])
        return
    params: list[Any] = []
    for event_id, kind, lead_id, created, body, status, attempts, next_at in events:
        params += (
            event_id,
            kind,
            lead_id,
            sqlite_time(created),
            body,
            status,
            attempts,
            sqlite_time(next_at),
        )
    sqlite_insert_values(conn, f"INSERT INTO outbox ({', '.join(_OUTBOX)})", len(_OUTBOX), params)


def write_scores(conn: sa.Connection, rows: Sequence[tuple[Any, ...]], notify: bool = True) -> int:
    """Insert score-log rows (made by `store.score_log_row`) with the lead states and handoff events they
    cause, in the caller's transaction; the number of events written."""
    if not rows:
        return 0
    insert_score_log(conn, list(rows))  # first: on SQLite it takes the write lock the state read relies on
    return record_transitions(conn, rows, notify)
