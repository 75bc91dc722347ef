"""Leads and their events in the store: written by PUT /v1/leads and POST /v1/events (and `leadscore
import`), read back in the live-scoring shape for scoring by reference."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.serve import db
from leadscore.serve.store.rescore_queue import enqueue
from leadscore.serve.store.rows import aware, now


class TooManyEvents(ValueError):
    """Storing the events would give a lead more than the allowed number; nothing was stored."""

    def __init__(self, lead_id: str, total: int, limit: int):
        super().__init__(
            f"lead {lead_id!r} would have {total} stored events, more than the {limit} allowed "
            "(LEADSCORE_MAX_EVENTS_PER_LEAD)"
        )
        self.lead_id = lead_id


def upsert_lead(
    engine: sa.Engine, lead_id: str, created_at: datetime, attributes: dict[str, Any], rescore: bool = True
) -> bool:
    """Insert or update; True if the lead is new. One `INSERT ... ON CONFLICT DO NOTHING`, then an UPDATE if
    the lead was there: a check-then-insert let two concurrent first writes of a lead both insert (one failed
    with a duplicate key). PostgreSQL waits on the other transaction's uncommitted row; SQLite's INSERT takes
    the write lock first, so the UPDATE sees the committed row. The lead is queued for a rescore in the same
    transaction (`rescore_queue.enqueue`) unless `rescore` is False."""
    values = {
        "lead_id": lead_id,
        "created_at": aware(created_at),
        "attributes": attributes,
        "updated_at": now(),
    }
    with engine.begin() as conn:
        insert = db.dialect_insert(conn)(db.leads).values(**values).on_conflict_do_nothing()
        created = conn.execute(insert.returning(db.leads.c.lead_id)).first() is not None
        if not created:
            conn.execute(
                sa.update(db.leads)
                .where(db.leads.c.lead_id == lead_id)
                .values(
                    created_at=values["created_at"], attributes=attributes, updated_at=values["updated_at"]
                )
            )
        if rescore:
            enqueue(conn, [lead_id])
        return created


def known_leads(engine: sa.Engine, lead_ids: Iterable[str]) -> set[str]:
    with engine.connect() as conn:
        return {
            r[0]
            for r in conn.execute(sa.select(db.leads.c.lead_id).where(db.leads.c.lead_id.in_(set(lead_ids))))
        }


def add_events(
    engine: sa.Engine,
    events: Sequence[Mapping[str, Any]],
    max_per_lead: int | None = None,
    rescore: bool = True,
) -> int:
    """Store events; with `max_per_lead`, all or none: TooManyEvents if a lead would then have more.

    The events are inserted first and counted after, in one transaction, with the leads' rows locked on
    PostgreSQL (SQLite's INSERT takes its single write lock), so concurrent writes cannot both pass the
    check. The leads are queued for a rescore in the same transaction (unless `rescore` is False): an
    acknowledged event is rescored even if the process dies right after answering."""
    t = now()
    rows = [
        {
            "lead_id": e["lead_id"],
            "type": e["type"],
            "timestamp": aware(e["timestamp"]),
            "page": e.get("page"),
            "received_at": t,
        }
        for e in events
    ]
    ids = sorted({r["lead_id"] for r in rows})
    with engine.begin() as conn:
        if max_per_lead is not None and conn.dialect.name == "postgresql":
            conn.execute(
                sa.select(db.leads.c.lead_id)
                .where(db.leads.c.lead_id.in_(ids))
                .order_by(db.leads.c.lead_id)
                .with_for_update()
            )
        conn.execute(sa.insert(db.events), rows)
        if max_per_lead is not None:
            counts = conn.execute(
                sa.select(db.events.c.lead_id, sa.func.count())
                .where(db.events.c.lead_id.in_(ids))
                .group_by(db.events.c.lead_id)
            ).all()
            over = [(lid, n) for lid, n in counts if n > max_per_lead]
            if over:
                raise TooManyEvents(*min(over), max_per_lead)  # leaving the block rolls the insert back
        if rescore:
            enqueue(conn, ids)
    return len(rows)


def get_leads(
    engine: sa.Engine, lead_ids: Iterable[str], max_events: int = 5000
) -> dict[str, dict[str, Any]]:
    """Stored leads in the live-scoring shape: lead_id, created_at, attributes, events (the newest
    `max_events` of each lead, oldest first). Only those events are read: a lead stored before events were
    capped may have hundreds of thousands."""
    ids = list(set(lead_ids))
    ev = db.events.c
    newest = sa.func.row_number().over(partition_by=ev.lead_id, order_by=(ev.timestamp.desc(), ev.id.desc()))
    kept = (
        sa.select(ev.lead_id, ev.type, ev.timestamp, ev.page, ev.id, newest.label("rn"))
        .where(ev.lead_id.in_(ids))
        .subquery()
    )
    with engine.connect() as conn:
        leads = {r.lead_id: r for r in conn.execute(sa.select(db.leads).where(db.leads.c.lead_id.in_(ids)))}
        if len(ids) == 1:  # one lead (the usual request): straight down the (lead_id, timestamp) index
            evs = conn.execute(
                sa.select(ev.lead_id, ev.type, ev.timestamp, ev.page)
                .where(ev.lead_id == ids[0])
                .order_by(ev.timestamp.desc(), ev.id.desc())
                .limit(max_events)
            ).all()
        else:
            evs = conn.execute(
                sa.select(kept.c.lead_id, kept.c.type, kept.c.timestamp, kept.c.page)
                .where(kept.c.rn <= max_events)
                .order_by(kept.c.lead_id, kept.c.timestamp.desc(), kept.c.id.desc())
            ).all()
    out = {
        lid: {"lead_id": lid, "created_at": aware(r.created_at), "attributes": r.attributes, "events": []}
        for lid, r in leads.items()
    }
    for e in evs:
        if e.lead_id in out:
            out[e.lead_id]["events"].append({"type": e.type, "timestamp": aware(e.timestamp), "page": e.page})
    for lead in out.values():
        lead["events"].reverse()
    return out


class LeadRange(NamedTuple):
    """Stored leads with ids from `first` to `last` (bounds included): `leads` of them."""

    first: str
    last: str
    leads: int


def lead_ranges(
    engine: sa.Engine, chunk: int = 50_000, active_since: datetime | None = None, head: int | None = None
) -> list[LeadRange]:
    """Every stored lead (with `active_since`: those with an event at or after it) in lead-id order, cut into
    ranges of `chunk` leads, the first of `head` if given (a pipeline's first range, scored before anything
    can be written, can be smaller). Disjoint ranges that cover every lead once, so processes can read and
    score them apart (`lead_frames`); only the ids are read here, and the number of leads is the ranges'
    sum (no count of its own).

    The ids come from the driver's cursor: the statement and its parameters are SQLAlchemy's (`_stored`),
    but a result row per lead cost 1.3 s CPU at 1M leads, the driver's own rows 0.3 s."""
    q = _stored(active_since).with_only_columns(sa.type_coerce(db.leads.c.lead_id, sa.String))
    with engine.connect() as conn:
        result = conn.execute(q.order_by(db.leads.c.lead_id))
        try:
            ids = [r[0] for r in result.cursor.fetchall()]
        finally:
            result.close()
    if not ids:
        return []
    cuts = [0, *range(min(head or chunk, chunk), len(ids), chunk)]
    ends = [*cuts[1:], len(ids)]
    return [LeadRange(ids[a], ids[b - 1], b - a) for a, b in zip(cuts, ends, strict=True)]


def lead_frames(
    engine: sa.Engine, first: str, last: str, active_since: datetime | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored leads with ids from `first` to `last` (with `active_since`: those with an event at or after
    it), in lead-id order, as the frames of a `features.loading.Dataset`: leads (lead_id, created_at, the
    attribute columns) and their events (lead_id, type, timestamp, page; times UTC), grouped by lead. For
    bulk scoring through the batch feature path (`features.frames`, which takes a lead's events in any
    order). All of a lead's events are read (scoring by reference reads the newest
    `LEADSCORE_MAX_EVENTS_PER_LEAD`, which the API never lets a lead exceed).

    The events come back as columns, never as one Python object per event (3M events per 100k leads):
    the database aggregates each lead's events into one row of three strings (`_EVENTS_BY_LEAD`), a type
    and a page code of one character per event and the fixed-width UTC times, which numpy turns into arrays
    at once. `type` and `page` are categoricals over `schema.EVENT_TYPES` and `PAGE_KINDS` (a value outside
    them is missing: the features count it nowhere, as before), `lead_id` a categorical over the leads'
    ids, which `features.frames` takes as lead positions without hashing an id per event."""
    import orjson

    q = _stored(active_since).where(db.leads.c.lead_id >= first, db.leads.c.lead_id <= last)
    # the columns as the driver gives them (SQLite: text), without SQLAlchemy's per-row type processing
    raw = [sa.type_coerce(c, sa.String).label(c.name) for c in q.selected_columns]
    with engine.connect() as conn:
        ids, created, attributes = _columns(conn.execute(q.with_only_columns(*raw).order_by(raw[0])), 3)
        # the driver's cursor: plain tuples (SQLAlchemy's rows cost ~8 us each)
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cur.execute(*_events_by_lead(conn.dialect.name, first, last))
        grouped = cur.fetchall()
        cur.close()
    attrs = [a if isinstance(a, dict) else orjson.loads(a) for a in attributes]
    texts = all(isinstance(t, str) for t in created)
    lead_frame = pd.DataFrame(
        {
            S.LEAD_ID: list(ids),
            S.CREATED_AT: _times(",".join(created), len(created)) if texts else _utc(list(created)),
            **{a: [x.get(a) for x in attrs] for a in S.LEAD_ATTRIBUTES},
        }
    )
    return lead_frame, _event_frame(pd.Index(lead_frame[S.LEAD_ID]), grouped)


# One character per event for its type and its page (`~`: none, or a value the features do not know).
_TYPE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_OTHER = "~"
_TS_WIDTH = 26  # "YYYY-MM-DD HH:MM:SS.ffffff", how SQLAlchemy stores a DateTime in SQLite
_TS_SEP = (4, 7, 10, 13, 16, 19), b"-- ::."


def _char_case(column: str, values: Sequence[str]) -> str:
    assert len(values) <= len(_TYPE_CHARS), f"{column}: more values than codes"
    whens = " ".join(f"WHEN '{v}' THEN '{_TYPE_CHARS[i]}'" for i, v in enumerate(values))
    return f"CASE {column} {whens} ELSE '{_OTHER}' END"


def _events_by_lead(dialect: str, first: str, last: str) -> tuple[str, tuple[str, str]]:
    """The events of the leads from `first` to `last`, one row per lead: lead_id, the number of events, their
    type codes, their times (UTC, `_TS_WIDTH` characters each, comma-separated) and their page codes, all
    in the same order (every aggregate of a group sees its rows in one order). One range of the
    (lead_id, timestamp) index."""
    if dialect == "postgresql":
        p, agg = "%s", "string_agg"
        ts = "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    else:
        p, agg, ts = "?", "group_concat", "timestamp"
    sql = (
        f"SELECT lead_id, count(*), {agg}({_char_case('type', S.EVENT_TYPES)}, ''), {agg}({ts}, ','), "
        f"{agg}({_char_case('page', S.PAGE_KINDS)}, '') FROM events "
        f"WHERE lead_id >= {p} AND lead_id <= {p} GROUP BY lead_id"
    )
    return sql, (first, last)


def _codes(chars: str, n: int, values: Sequence[str]) -> np.ndarray:
    """`_char_case`'s characters as codes into `values` (-1: none or unknown)."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[np.frombuffer(_TYPE_CHARS[: len(values)].encode(), np.uint8)] = np.arange(len(values))
    got = lut[np.frombuffer(chars.encode("ascii"), np.uint8)]
    if len(got) != n:
        raise ValueError(f"events: {len(got)} codes for {n} events")
    return got


def _times(text: str, n: int) -> pd.Series:
    """`n` comma-separated UTC times as a datetime column: parsed by numpy as fixed-width text when every one
    has SQLAlchemy's SQLite format (always, for rows it wrote), else one by one as before."""
    raw = (text + ",").encode("ascii")
    width = _TS_WIDTH + 1
    fixed = len(raw) == n * width
    if fixed:
        cells = np.frombuffer(raw, np.uint8).reshape(n, width)
        pos, seps = _TS_SEP
        fixed = bool((cells[:, pos] == np.frombuffer(seps, np.uint8)).all() and (cells[:, -1] == 44).all())
    if not fixed:
        return _utc(text.split(",") if n else [])
    us = np.ascontiguousarray(cells[:, :-1]).view(f"S{_TS_WIDTH}").ravel().astype("datetime64[us]")
    return pd.Series(pd.DatetimeIndex(us).tz_localize("UTC"))


def _event_frame(leads: pd.Index, grouped: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """`_events_by_lead`'s rows as the events frame of `leads` (events of other leads are left out)."""
    lead_ids = [r[0] for r in grouped]
    counts = np.fromiter((r[1] for r in grouped), dtype=np.int64, count=len(grouped))
    n = int(counts.sum())
    lead = np.repeat(leads.get_indexer(pd.Index(lead_ids, dtype=object)), counts)
    types = _codes("".join(r[2] for r in grouped), n, S.EVENT_TYPES)
    times = _times(",".join(r[3] for r in grouped), n)
    pages = _codes("".join(r[4] for r in grouped), n, S.PAGE_KINDS)
    keep = lead >= 0  # with `active_since`: a lead in the range that is not active
    frame = pd.DataFrame(
        {
            S.LEAD_ID: pd.Categorical.from_codes(lead[keep], categories=leads),
            S.EVENT_TYPE: pd.Categorical.from_codes(types[keep], categories=list(S.EVENT_TYPES)),
            S.TIMESTAMP: times[keep].reset_index(drop=True) if not keep.all() else times,
            S.PAGE: pd.Categorical.from_codes(pages[keep], categories=list(S.PAGE_KINDS)),
        }
    )
    return frame


def _columns(result: sa.Result[Any], n: int) -> list[tuple[Any, ...]]:
    rows = result.all()
    return list(zip(*rows, strict=True)) if rows else [()] * n


def _utc(values: Any) -> pd.Series:
    """Times as the driver gives them (SQLite: naive UTC text, PostgreSQL: aware datetimes) as UTC."""
    return pd.Series(pd.to_datetime(pd.Series(values), utc=True, format="ISO8601"))


def _stored(active_since: datetime | None) -> sa.Select[Any]:
    q = sa.select(db.leads.c.lead_id, db.leads.c.created_at, db.leads.c.attributes)
    if active_since is not None:
        ev = db.events.c
        q = q.where(sa.exists().where(ev.lead_id == db.leads.c.lead_id, ev.timestamp >= aware(active_since)))
    return q
