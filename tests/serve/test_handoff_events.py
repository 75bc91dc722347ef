"""Scores write each lead's state and, in the same transaction, the handoff events they cause
(`store.write_scores`), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from leadscore.serve import db, locks, model_sync, store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REASONS = [
    {"feature": f"f{i}", "value": i, "impact": 0.1 * (5 - i), "points": 5 - i, "text": f"reason {i}"}
    for i in range(5)
]


def served(lead_id: str, grade: str, qualified: bool, as_of: datetime = T0, **more) -> dict:
    """A score as the API serves it to the score log."""
    return {
        "lead_id": lead_id,
        "scored_at": as_of + timedelta(seconds=1),
        "as_of": as_of,
        "model_version": "3",
        "probability": {"A": 0.6, "B": 0.3, "C": 0.1, "D": 0.02}[grade],
        "score": {"A": 90, "B": 60, "C": 30, "D": 5}[grade],
        "grade": grade,
        "qualified": qualified,
        "features": {"lead_age_days": 3.0},
        "reasons": REASONS,
        "propensity": 1.0,
        "explored": False,
        **more,
    }


def row(lead_id: str, grade: str, qualified: bool, as_of: datetime = T0, **more) -> tuple:
    return store.score_log_row(served(lead_id, grade, qualified, as_of, **more))


def write(engine, rows, notify=True) -> int:
    with engine.begin() as conn:
        return store.write_scores(conn, rows, notify)


def events(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.outbox).order_by(db.outbox.c.id)).all()
    return [{**r._mapping, "body": orjson.loads(r.body)} for r in rows]


def state(engine, lead_id) -> dict:
    with engine.connect() as conn:
        r = conn.execute(sa.select(db.lead_state).where(db.lead_state.c.lead_id == lead_id)).one()
    return store.row(r)


def test_the_migrations_build_exactly_the_tables_the_code_declares(engine):
    # given a store migrated to the head revision, when compared with the tables the code uses (those
    # declared beside the code that owns them too)
    assert {locks.job_locks.name, model_sync.model_generation.name} <= set(db.metadata.tables)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    # then nothing differs (a new column must come with its migration)
    assert diff == []


def test_a_lead_crossing_the_threshold_makes_one_handoff_event_with_its_score_and_reasons(engine):
    # given a lead scored below the threshold
    assert write(engine, [row("l-1", "C", False)]) == 0
    # when it is scored above it, then once more above it
    assert write(engine, [row("l-1", "A", True, T0 + timedelta(hours=1))]) == 2
    assert write(engine, [row("l-1", "A", True, T0 + timedelta(hours=2))]) == 0
    # then one handoff and one grade change were written, in that order, with the crossing score
    got = events(engine)
    assert [e["type"] for e in got] == [store.HANDOFF, store.GRADE_CHANGED]
    handoff = got[0]["body"]
    assert handoff["event_id"] == got[0]["event_id"] and got[0]["status"] == "pending"
    assert got[0]["event_id"] != got[1]["event_id"]
    assert {k: handoff[k] for k in ("lead_id", "score", "grade", "probability", "qualified")} == {
        "lead_id": "l-1",
        "score": 90,
        "grade": "A",
        "probability": 0.6,
        "qualified": True,
    }
    assert (handoff["previous_grade"], handoff["previous_qualified"]) == ("C", False)
    assert handoff["model_version"] == "3" and handoff["as_of"] == "2026-03-01T13:00:00Z"
    assert handoff["reasons"] == REASONS[: store.handoffs.EVENT_REASONS]
    # and the state remembers when the lead crossed, not when it was last scored
    s = state(engine, "l-1")
    assert (s["grade"], s["qualified"], s["handed_over_at"]) == ("A", True, T0 + timedelta(hours=1))


def test_a_first_score_above_the_threshold_is_a_handoff_and_below_it_is_nothing(engine):
    # when two new leads are scored, one handed over (for exploration) and one not
    write(engine, [row("new-a", "C", True, explored=True), row("new-b", "D", False)])
    # then only the handed-over one makes an event, saying it was explored, with no previous grade
    (e,) = events(engine)
    assert (e["type"], e["lead_id"], e["body"]["explored"], e["body"]["previous_grade"]) == (
        store.HANDOFF,
        "new-a",
        True,
        None,
    )


def test_leaving_and_crossing_again_is_a_new_handoff_and_the_crossing_time_moves(engine):
    t1, t2, t3 = (T0 + timedelta(days=d) for d in (1, 2, 3))
    # when a lead crosses, falls back and crosses again, all in one batch
    write(engine, [row("l-2", "A", True, T0), row("l-2", "B", False, t1), row("l-2", "A", True, t2)])
    # then it was handed over twice, and its crossing time is the second crossing's
    kinds = [e["type"] for e in events(engine)]
    assert kinds == [store.HANDOFF, store.GRADE_CHANGED, store.HANDOFF, store.GRADE_CHANGED]
    assert state(engine, "l-2")["handed_over_at"] == t2
    # and a fall below the threshold clears it
    write(engine, [row("l-2", "C", False, t3)])
    assert state(engine, "l-2")["handed_over_at"] is None


def test_an_older_score_is_history_not_news(engine):
    # given a lead whose newest score is below the threshold
    write(engine, [row("l-3", "C", False, T0 + timedelta(days=5))])
    # when a score of an earlier moment arrives, above the threshold
    write(engine, [row("l-3", "A", True, T0)])
    # then it is in the score log, but changes neither the state nor makes an event
    assert events(engine) == []
    assert state(engine, "l-3")["grade"] == "C"
    assert len(store.score_history(engine, "l-3")) == 2


def test_an_import_of_history_keeps_the_state_and_makes_no_events(engine):
    # when history is written without notifications
    write(engine, [row("l-4", "A", True)], notify=False)
    # then no event, but the state knows the lead is handed over: its next score above is no news either
    assert events(engine) == []
    assert state(engine, "l-4")["handed_over_at"] == T0
    write(engine, [row("l-4", "A", True, T0 + timedelta(hours=1))])
    assert events(engine) == []


def test_a_failed_transaction_keeps_neither_the_score_nor_its_event(engine):
    # when the transaction that wrote a crossing score fails afterwards
    try:
        with engine.begin() as conn:
            store.write_scores(conn, [row("l-5", "A", True)])
            raise RuntimeError("the process died here")
    except RuntimeError:
        pass
    # then there is no event without its score, nor a state
    assert events(engine) == [] and store.score_history(engine, "l-5") == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.lead_state)).scalar() == 0


def test_two_writers_of_a_leads_first_score_make_one_handoff(database_url):
    # given two writers (two service workers) with their own engines on one store
    db.migrate(database_url)
    engines = [db.make_engine(database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(e, i):
        try:
            barrier.wait()
            for k in range(20):  # 20 leads, each first scored by both writers at once
                write(e, [row(f"race-{k}", "A", True, T0 + timedelta(seconds=i))])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e, i)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then every lead has exactly one handoff, though both scores are logged
    assert errors == []
    got = events(engines[0])
    handoffs = sorted(e["lead_id"] for e in got if e["type"] == store.HANDOFF)
    assert handoffs == sorted(f"race-{k}" for k in range(20))
    assert len(store.score_history(engines[0], "race-0")) == 2
    for e in engines:
        e.dispose()


def test_the_background_writer_writes_the_events_and_says_so(engine, database_url):
    # given the API's score-log writer, told when events are written
    told: list[int] = []
    writer = store.ScoreLogWriter(db.make_engine(database_url), flush_seconds=0.05, on_events=told.append)
    try:
        # when a served score crosses the threshold
        writer.put([served("w-1", "A", True)])
    finally:
        writer.close()
        writer.engine.dispose()
    # then the event is in the outbox and the writer said one was written
    assert [e["lead_id"] for e in events(engine)] == ["w-1"]
    assert told == [1]


def test_a_forecast_is_logged_but_does_not_freeze_the_lead(engine):
    # given a score of a moment a year after it was computed (a forecast)
    forecast = served("f-1", "A", True, T0 + timedelta(days=365))
    forecast["scored_at"] = T0
    write(engine, [store.score_log_row(forecast)])
    # when the lead is then scored for real, above the threshold
    write(engine, [row("f-1", "A", True, T0 + timedelta(hours=1))])
    # then the real score is the lead's state and makes the handoff; the forecast is only in the log
    assert [e["type"] for e in events(engine)] == [store.HANDOFF]
    assert state(engine, "f-1")["as_of"] == T0 + timedelta(hours=1)
    assert len(store.score_history(engine, "f-1")) == 2


def test_a_batch_the_database_refuses_for_a_while_is_written_later_with_its_event(engine, database_url):
    # given the API's writer, and a store that cannot take score-log rows for now (the table is away)
    writer = store.ScoreLogWriter(db.make_engine(database_url), flush_seconds=3600, retry_seconds=0)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE score_log RENAME TO score_log_away"))
        writer.put([served("r-1", "A", True)])
        # when the writer tries, fails, and the store comes back
        writer.flush()
        assert events(engine) == []
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE score_log_away RENAME TO score_log"))
        writer.flush()
    finally:
        writer.close()
        writer.engine.dispose()
    # then the score and its handoff were written once, and nothing was dropped
    assert [e["lead_id"] for e in events(engine)] == ["r-1"]
    assert len(store.score_history(engine, "r-1")) == 1 and writer.dropped == 0


def test_a_bulk_rescores_row_with_reasons_as_field_tuples_logs_and_notifies_as_the_served_row(engine):
    # given the same score twice: as the API serves it (reasons as objects) and as a bulk rescore makes it
    # (`ScoringModel.results(reason_fields=True)`: tuples of the REASON_FIELDS values)
    as_fields = [tuple(r[k] for k in store.REASON_FIELDS) for r in REASONS]
    write(engine, [row("served", "A", True), row("bulk", "A", True, reasons=as_fields)])
    # then the score log keeps the same reasons for both, read back as the API serves them
    logged = {r["lead_id"]: r for r in store.latest_scores(engine, limit=10)}
    assert logged["served"]["reasons"] == logged["bulk"]["reasons"] == REASONS
    # and the two handoff events carry the same top reasons, byte for byte in their bodies
    served_event, bulk_event = events(engine)
    assert served_event["body"]["reasons"] == REASONS[: store.handoffs.EVENT_REASONS]
    with engine.connect() as conn:
        raw = dict(conn.execute(sa.select(db.outbox.c.lead_id, db.outbox.c.body)).all())
    assert raw["bulk"].replace(bulk_event["event_id"], "ID").replace('"bulk"', '"L"') == raw[
        "served"
    ].replace(served_event["event_id"], "ID").replace('"served"', '"L"')


def test_event_ids_are_distinct_time_ordered_uuid7_strings_as_uuid_spells_them():
    from datetime import UTC, datetime

    # given the ids drawn for a first bulk rescore's events, made at one moment
    at = datetime(2026, 11, 29, 6, 0, 0, 123456, tzinfo=UTC)
    ids = store.handoffs._event_ids(20_000, at)
    # then each is a version 7 UUID of the RFC 9562 variant, spelled as str(uuid.UUID) spells it
    parsed = [uuid.UUID(x) for x in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids
    # whose first 48 bits are the moment in Unix milliseconds, in ascending order (the outbox's index grows
    # at its end)
    assert {u.int >> 80 for u in parsed} == {int(at.timestamp() * 1000)}
    assert ids == sorted(ids)
    # and no two are equal (74 random bits each)
    assert len(set(ids)) == len(ids)
    # and a later moment's ids sort after these
    later = store.handoffs._event_ids(10, at.replace(microsecond=124456))
    assert min(later) > max(ids)
    assert store.handoffs._event_ids(0, at) == []
