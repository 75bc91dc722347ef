"""`store.lead_frames`, the bulk read of `leadscore rescore`: each lead's events come back whole and exact
(types, pages, times to the microsecond) on SQLite and PostgreSQL, whatever their order or format."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.serve import db, store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _events_as_stored(engine, ids) -> dict[str, list[tuple]]:
    """Each lead's events as `store.get_leads` (scoring by reference) reads them, as sorted tuples."""
    return {
        lid: sorted((e["type"], pd.Timestamp(e["timestamp"]), e["page"]) for e in lead["events"])
        for lid, lead in store.get_leads(engine, ids).items()
        if lead["events"]
    }


def _events_of(frame: pd.DataFrame) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for lid, kind, ts, page in frame[[S.LEAD_ID, S.EVENT_TYPE, S.TIMESTAMP, S.PAGE]].itertuples(index=False):
        out.setdefault(lid, []).append((kind, ts, None if pd.isna(page) else page))
    return {k: sorted(v) for k, v in out.items()}


def test_lead_frames_reads_every_event_of_a_range_exactly(engine):
    # given leads with events of every type and page, stored interleaved and out of order, with
    # microseconds, and a lead without events
    rng = random.Random(3)
    ids = [f"f-{i:03d}" for i in range(30)]
    for i, lid in enumerate(ids):
        store.upsert_lead(engine, lid, T0 - timedelta(days=i), {"source": "webinar"}, rescore=False)
    events = [
        {
            "lead_id": rng.choice(ids[:-1]),
            "type": kind,
            "timestamp": T0 + timedelta(seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6)),
            "page": rng.choice([None, *S.PAGE_KINDS]) if kind == "web_visit" else None,
        }
        for kind in S.EVENT_TYPES * 25
    ]
    rng.shuffle(events)
    store.add_events(engine, events, rescore=False)
    # when the range from the 6th to the 30th lead is read
    leads, frame = store.lead_frames(engine, ids[5], ids[-1])
    # then the leads are those, in id order, and their events are exactly the stored ones
    assert list(leads[S.LEAD_ID]) == ids[5:]
    assert list(leads[S.CREATED_AT]) == [pd.Timestamp(T0 - timedelta(days=i)) for i in range(5, 30)]
    assert str(frame[S.TIMESTAMP].dtype) == "datetime64[us, UTC]"
    assert _events_of(frame) == _events_as_stored(engine, ids[5:])
    assert len(frame) == sum(e["lead_id"] in ids[5:] for e in events)
    # and with an activity cut, only the leads with an event since then, with all their events
    since = T0 + timedelta(seconds=9 * 10**6)
    active = {e["lead_id"] for e in events if e["timestamp"] >= since and e["lead_id"] in ids[5:]}
    leads, frame = store.lead_frames(engine, ids[5], ids[-1], since)
    assert list(leads[S.LEAD_ID]) == sorted(active)
    assert _events_of(frame) == _events_as_stored(engine, sorted(active))


def test_lead_frames_reads_times_not_written_by_the_service(tmp_path):
    # given a SQLite store whose events another tool wrote, times without microseconds or with a 'T'
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    store.upsert_lead(engine, "x", T0, {}, rescore=False)
    with engine.begin() as conn:
        for ts in ("2025-03-02 10:00:00", "2025-03-03T11:30:00.250000", "2025-03-04 09:15:00.000001"):
            conn.exec_driver_sql(
                "INSERT INTO events (lead_id, type, timestamp, page, received_at) "
                "VALUES ('x', 'web_visit', ?, 'docs', '2025-03-01 12:00:00.000000')",
                (ts,),
            )
    # when its leads are read for a rescore
    _, frame = store.lead_frames(engine, "x", "x")
    # then every time is read, as UTC
    assert sorted(frame[S.TIMESTAMP]) == [
        pd.Timestamp("2025-03-02 10:00:00", tz="UTC"),
        pd.Timestamp("2025-03-03 11:30:00.25", tz="UTC"),
        pd.Timestamp("2025-03-04 09:15:00.000001", tz="UTC"),
    ]
    engine.dispose()


def test_reading_a_leads_events_needs_only_the_index(tmp_path):
    # given a migrated SQLite store
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    ev = db.events.c
    newest = (
        sa.select(ev.type, ev.timestamp, ev.page)
        .where(ev.lead_id == "x")
        .order_by(ev.timestamp.desc(), ev.id.desc())
        .limit(50)
    )
    with engine.connect() as conn:
        # when SQLite plans the bulk read of `leadscore rescore` and the newest events of one lead
        bulk_sql, bounds = store.leads._events_by_lead("sqlite", "a", "z")
        bulk = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + bulk_sql, bounds).all()
        one_sql = str(newest.compile(engine, compile_kwargs={"literal_binds": True}))
        one = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + one_sql).all()
    engine.dispose()
    # then both read the events' index alone, never the table's rows behind it (a random page visit per
    # event once a lead's events are spread over the table by their arrival: docs/data-model.md)
    for plan in (bulk, one):
        assert any("COVERING INDEX ix_events_lead_id_timestamp_type_page" in row[-1] for row in plan), plan


def test_lead_ranges_cut_the_stored_leads_into_disjoint_ranges_that_count_them(engine):
    # given 23 stored leads, 8 of them with an event since a cut
    ids = [f"r-{i:03d}" for i in range(23)]
    for lid in reversed(ids):
        store.upsert_lead(engine, lid, T0, {}, rescore=False)
    active = ids[::3]
    since = T0 + timedelta(days=10)
    events = [{"lead_id": lid, "type": "web_visit", "timestamp": T0, "page": None} for lid in ids]
    events += [{"lead_id": lid, "type": "form_submitted", "timestamp": since, "page": None} for lid in active]
    store.add_events(engine, events, rescore=False)
    # when they are cut into ranges of 5, the first of 2
    ranges = store.lead_ranges(engine, 5, head=2)
    # then the ranges follow one another in id order, each with its number of leads, and cover every lead
    assert [r.leads for r in ranges] == [2, 5, 5, 5, 5, 1]
    assert [(r.first, r.last) for r in ranges] == [(ids[0], ids[1])] + [
        (ids[i], ids[min(i + 5, 23) - 1]) for i in range(2, 23, 5)
    ]
    covered = [lid for r in ranges for lid in store.lead_frames(engine, r.first, r.last)[0][S.LEAD_ID]]
    assert covered == ids
    # and with an activity cut, only the active leads are cut and counted
    ranges = store.lead_ranges(engine, 3, since, head=2)
    assert [r.leads for r in ranges] == [2, 3, 3]
    assert [
        lid for r in ranges for lid in store.lead_frames(engine, r.first, r.last, since)[0][S.LEAD_ID]
    ] == (active)
    # and a store without leads has no ranges; without `head` every range has `chunk` leads
    assert store.lead_ranges(engine, 4, T0 + timedelta(days=400)) == []
    assert [r.leads for r in store.lead_ranges(engine, 10)] == [10, 10, 3]
