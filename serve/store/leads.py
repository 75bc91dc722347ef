"""Leads and their events in the store: written by PUT /v1/leads and POST /v1/events (and `leadscore
import`), read back in the live-scoring shape for scoring by reference."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

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


def count_leads(engine: sa.Engine, active_since: datetime | None = None) -> int:
    """Stored leads (with `active_since`: those with an event at or after it)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(_stored(active_since).subquery())
            ).scalar_one()
        )


def lead_ranges(
    engine: sa.Engine, chunk: int = 50_000, active_since: datetime | None = None
) -> list[tuple[str, str]]:
    """Every stored lead (with `active_since`: those with an event at or after it) in lead-id order, cut into
    ranges of `chunk` leads: (first, last) lead ids, bounds included. Disjoint ranges that cover every lead
    once, so processes can read and score them apart (`lead_frames`); only the ids are read here."""
    q = _stored(active_since).with_only_columns(db.leads.c.lead_id).order_by(db.leads.c.lead_id)
    with engine.connect() as conn:
        ids = conn.execute(q).scalars().all()
    return [(ids[i], ids[min(i + chunk, len(ids)) - 1]) for i in range(0, len(ids), chunk)]


def lead_frames(
    engine: sa.Engine, first: str, last: str, active_since: datetime | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored leads with ids from `first` to `last` (with `active_since`: those with an event at or after
    it), in lead-id order, as the frames of a `features.loading.Dataset`: leads (lead_id, created_at, the
    attribute columns) and their events (lead_id, type, timestamp, page; times UTC). For bulk scoring
    through the batch feature path (`features.frames`): rows are read through the driver and turned into
    columns at once, and the events are one range of the (lead_id, timestamp) index, not an IN list. All
    of a lead's events are read (scoring by reference reads the newest `LEADSCORE_MAX_EVENTS_PER_LEAD`,
    which the API never lets a lead exceed)."""
    import orjson

    q = _stored(active_since).where(db.leads.c.lead_id >= first, db.leads.c.lead_id <= last)
    with engine.connect() as conn:
        leads = conn.execute(q.order_by(db.leads.c.lead_id)).all()
        # the driver's cursor: plain tuples (SQLAlchemy's rows cost ~8 us each when pandas reads them)
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cur.execute(
            "SELECT lead_id, type, timestamp, page FROM events WHERE lead_id >= {p} AND lead_id <= {p} "
            "ORDER BY lead_id, timestamp, id".format(p="?" if conn.dialect.name == "sqlite" else "%s"),
            (first, last),
        )
        evs = cur.fetchall()
        cur.close()
    ids = [r.lead_id for r in leads]
    attrs = [r.attributes if isinstance(r.attributes, dict) else orjson.loads(r.attributes) for r in leads]
    lead_frame = pd.DataFrame(
        {
            S.LEAD_ID: ids,
            S.CREATED_AT: _utc([r.created_at for r in leads]),
            **{a: [x.get(a) for x in attrs] for a in S.LEAD_ATTRIBUTES},
        }
    )
    # pandas turns a list of plain tuples into columns in C (unpacking them in Python cost ~2 us a row)
    ev = pd.DataFrame(evs, columns=[S.LEAD_ID, S.EVENT_TYPE, S.TIMESTAMP, S.PAGE], dtype=object)
    ev[S.TIMESTAMP] = _utc(ev[S.TIMESTAMP])
    chosen = ev[S.LEAD_ID].isin(ids) if active_since is not None else slice(None)
    return lead_frame, ev[chosen].reset_index(drop=True)  # a lead in the range but not active: left out


def _utc(values: Any) -> pd.Series:
    """Times as the driver gives them (SQLite: naive UTC text, PostgreSQL: aware datetimes) as UTC."""
    return pd.Series(pd.to_datetime(pd.Series(values), utc=True, format="ISO8601"))


def _stored(active_since: datetime | None) -> sa.Select[Any]:
    q = sa.select(db.leads.c.lead_id, db.leads.c.created_at, db.leads.c.attributes)
    if active_since is not None:
        ev = db.events.c
        q = q.where(sa.exists().where(ev.lead_id == db.leads.c.lead_id, ev.timestamp >= aware(active_since)))
    return q
