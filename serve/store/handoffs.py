"""Writing scores: the score-log rows, each lead's newest state and, in the same transaction, the handoff
events a new score causes.

`write_scores` is the one way score-log rows reach the store (the API's background writer, the rescorer,
`leadscore rescore`, `leadscore import`). Because the event is written in the transaction of the score
that caused it, a score is never kept without its event nor an event without its score, whatever crashes
when; delivery then reads the outbox (at least once, `serve.webhooks`).

The rules, per lead and in the order of the rows:
- a score older (`as_of`) than the lead's newest known score goes to the score log only: it is history,
  not news;
- `lead.handoff` when the lead is handed over (at or above the threshold, or drawn for exploration) and
  its previous score was not, or it had none;
- `lead.grade_changed` when the lead had a previous score with another grade;
- `notify=False` (an import of history) keeps the state up to date and writes no events.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.rows import IN_CHUNK, aware, now
from leadscore.serve.store.score_log_rows import REASON_FIELDS, insert_score_log

HANDOFF = "lead.handoff"
GRADE_CHANGED = "lead.grade_changed"
EVENT_REASONS = 3  # reasons in an event: the top ones, as the sales page shows them

_STATE = db.lead_state.c
# a `score_log_row` tuple: lead_id, scored_at, as_of, model_version, probability, score, grade, qualified,
# features (JSON), reasons (JSON arrays of REASON_FIELDS), feature_set, propensity, explored
_STATE_COLUMNS = ("as_of", "scored_at", "model_version", "probability", "score", "grade", "qualified")


def _time(t: datetime) -> str:
    return aware(t).isoformat().replace("+00:00", "Z")


def _locked_states(conn: sa.Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The state of each lead in `ids`, locked for this transaction; an empty row for a lead never scored.

    The empty rows are inserted first (ON CONFLICT DO NOTHING) and every row is then read FOR UPDATE, in
    lead_id order: on PostgreSQL two writers of the same lead queue on its row, so a lead's first score
    cannot make two `lead.handoff` events. On SQLite the score log's insert before this already holds the
    database's one write lock."""
    conn.execute(
        db.dialect_insert(conn)(db.lead_state).on_conflict_do_nothing(), [{"lead_id": i} for i in ids]
    )
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        q = sa.select(db.lead_state).where(_STATE.lead_id.in_(chunk)).order_by(_STATE.lead_id)
        for r in conn.execute(q.with_for_update()):
            out[r.lead_id] = dict(r._mapping)
    return out


def _event(kind: str, r: tuple[Any, ...], before: dict[str, Any], at: datetime) -> dict[str, Any]:
    reasons = orjson.loads(r[9])[:EVENT_REASONS] if r[9] else []
    event_id = str(uuid.uuid4())
    body = {
        "event_id": event_id,
        "type": kind,
        "created_at": _time(at),
        "lead_id": r[0],
        "score": r[5],
        "grade": r[6],
        "probability": r[4],
        "qualified": bool(r[7]),
        "explored": None if r[12] is None else bool(r[12]),
        "previous_grade": before.get("grade"),
        "previous_qualified": before.get("qualified"),
        "as_of": _time(r[2]),
        "scored_at": _time(r[1]),
        "model_version": r[3],
        "reasons": [dict(zip(REASON_FIELDS, x, strict=False)) for x in reasons],
    }
    return {
        "event_id": event_id,
        "type": kind,
        "lead_id": r[0],
        "created_at": at,
        "body": orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode(),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": at,
    }


def record_transitions(conn: sa.Connection, rows: Sequence[tuple[Any, ...]], notify: bool = True) -> int:
    """Bring `lead_state` up to `rows` (score-log row tuples, in the order scored) and write the outbox
    events they cause; the number of events written. Call it inside the transaction that inserts the rows."""
    if not rows:
        return 0
    states = _locked_states(conn, sorted({r[0] for r in rows}))
    at = now()
    events: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for r in rows:
        state = states[r[0]]
        if state["as_of"] is not None and aware(r[2]) < aware(state["as_of"]):
            continue
        was_handed = bool(state["qualified"])
        handed = bool(r[7])
        if notify:
            if handed and not was_handed:
                events.append(_event(HANDOFF, r, state, at))
            if state["grade"] is not None and state["grade"] != r[6]:
                events.append(_event(GRADE_CHANGED, r, state, at))
        new = dict(zip(_STATE_COLUMNS, (aware(r[2]), aware(r[1]), *r[3:8]), strict=True))
        new["qualified"] = handed
        new["explored"] = None if r[12] is None else bool(r[12])
        new["handed_over_at"] = (state["handed_over_at"] if was_handed else aware(r[2])) if handed else None
        state.update(new)
        changed[r[0]] = state
    if changed:
        conn.execute(
            sa.update(db.lead_state)
            .where(_STATE.lead_id == sa.bindparam("b_lead_id"))
            .values({k: sa.bindparam(f"b_{k}") for k in (*_STATE_COLUMNS, "explored", "handed_over_at")}),
            [{f"b_{k}": v for k, v in s.items()} for s in changed.values()],
        )
    if events:
        conn.execute(sa.insert(db.outbox), events)
    return len(events)


def write_scores(conn: sa.Connection, rows: Sequence[tuple[Any, ...]], notify: bool = True) -> int:
    """Insert score-log rows (made by `store.score_log_row`) with the lead states and handoff events they
    cause, in the caller's transaction; the number of events written."""
    if not rows:
        return 0
    insert_score_log(conn, list(rows))  # first: on SQLite it takes the write lock the state read relies on
    return record_transitions(conn, rows, notify)
