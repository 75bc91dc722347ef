"""The service store through the same code on SQLite and PostgreSQL (skipped with a reason when no
PostgreSQL server is available: see .ci/postgres.sh)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from leadscore.serve import db, store

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(database_url):
    db.migrate(database_url)
    e = db.make_engine(database_url)
    yield e
    e.dispose()


def test_migrations_create_the_tables_and_rerun_cleanly(database_url):
    # given a migrated database, when migrations run again
    db.migrate(database_url)
    db.migrate(database_url)
    # then every table is there once
    names = set(sa.inspect(db.make_engine(database_url)).get_table_names())
    assert {"leads", "events", "feedback", "score_log", "alembic_version"} <= names


def test_sqlite_runs_in_wal_with_synchronous_full(tmp_path):
    e = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with e.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_leads_and_events_round_trip_with_utc_times(engine):
    # given a lead and events stored out of order
    assert store.upsert_lead(engine, "s-1", T0, {"source": "webinar", "country": "DE"}) is True
    store.add_events(engine, [
        {"lead_id": "s-1", "type": "web_visit", "timestamp": T0 + timedelta(days=2), "page": "pricing"},
        {"lead_id": "s-1", "type": "email_opened", "timestamp": T0 + timedelta(days=1)},
    ])
    # when it is read back
    lead = store.get_leads(engine, ["s-1", "unknown"])
    # then only known leads come back, with aware UTC times and events oldest first
    assert set(lead) == {"s-1"}
    got = lead["s-1"]
    assert got["created_at"] == T0 and got["attributes"] == {"source": "webinar", "country": "DE"}
    assert [e["type"] for e in got["events"]] == ["email_opened", "web_visit"]
    assert got["events"][1]["timestamp"] == T0 + timedelta(days=2) and got["events"][1]["page"] == "pricing"
    # and an upsert updates in place
    assert store.upsert_lead(engine, "s-1", T0, {"source": "event"}) is False
    assert store.get_leads(engine, ["s-1"])["s-1"]["attributes"] == {"source": "event"}
    assert store.known_leads(engine, ["s-1", "nope"]) == {"s-1"}


def test_only_the_newest_events_are_kept_when_a_lead_has_too_many(engine):
    store.upsert_lead(engine, "s-2", T0, {})
    store.add_events(engine, [{"lead_id": "s-2", "type": "email_sent", "timestamp": T0 + timedelta(hours=h)}
                              for h in range(10)])
    events = store.get_leads(engine, ["s-2"], max_events=3)["s-2"]["events"]
    assert [e["timestamp"] for e in events] == [T0 + timedelta(hours=h) for h in (7, 8, 9)]


def test_feedback_idempotency_key_stores_once_even_under_concurrent_retries(engine):
    # given eight clients retrying the same feedback at the same time
    results = []

    def send():
        results.append(store.add_feedback(engine, "s-3", "qualified", idempotency_key="same-key"))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly one row exists and every answer carries its id
    rows = store.feedback_for(engine, "s-3")
    assert len(rows) == 1
    assert {r[0]["id"] for r in results} == {rows[0]["id"]} and sum(not dup for _, dup in results) == 1
    # and the key cannot be reused for a different feedback
    with pytest.raises(store.Conflict):
        store.add_feedback(engine, "s-3", "lost", idempotency_key="same-key")


def test_feedback_frame_is_an_outcomes_table(engine):
    store.add_feedback(engine, "s-4", "disqualified", reason="spam", at=T0, source="ui")
    store.add_feedback(engine, "s-4", "won", at=T0 + timedelta(days=3))
    df = store.feedback_frame(engine)
    assert list(df["outcome"]) == ["disqualified", "won"] and list(df["source"]) == ["ui", "api"]
    assert str(df["at"].dt.tz) == "UTC" and df["at"].iloc[0] == T0


def test_score_log_writer_batches_rows_and_history_reads_newest_first(engine):
    # given two scores of a lead and one of another, written by the background writer
    writer = store.ScoreLogWriter(engine, flush_seconds=0.05)
    row = dict(as_of=T0, model_version="1", probability=0.5, score=50, grade="B", qualified=False,
               features={"lead_age_days": 3, "country": None}, reasons=[{"feature": "x", "impact": 0.1}])
    writer.put([{**row, "lead_id": "s-5", "scored_at": T0}, {**row, "lead_id": "s-6", "scored_at": T0}])
    writer.put([{**row, "lead_id": "s-5", "scored_at": T0 + timedelta(hours=1), "score": 70, "grade": "A",
                 "probability": 0.7, "as_of": (T0 + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))}])
    writer.close()
    # when the history and the review list are read
    history = store.score_history(engine, "s-5")
    latest = store.latest_scores(engine)
    recent = store.recent_scores(engine, ["s-5", "s-6"])
    # then the newest score comes first, the snapshot of features is kept as it was, one row per lead in lists
    assert [h["score"] for h in history] == [70, 50]
    assert history[0]["features"] == {"lead_age_days": 3, "country": None}
    assert history[0]["reasons"] == [{"feature": "x", "impact": 0.1}] and history[0]["qualified"] is False
    # and every time is read back as the instant it was (a +02:00 offset included)
    assert [(h["scored_at"], h["as_of"]) for h in history] == [(T0 + timedelta(hours=1),) * 2, (T0, T0)]
    assert [r["lead_id"] for r in latest] == ["s-5", "s-6"] and latest[0]["score"] == 70
    assert [r["score"] for r in recent["s-5"]] == [70, 50] and len(recent["s-6"]) == 1
    assert [r["lead_id"] for r in store.latest_scores(engine, grade="B")] == ["s-6"]


def test_score_log_keeps_the_order_of_a_request_and_bounds_its_queue(engine, caplog):
    # given one request that scored the same lead twice, a row that cannot be encoded, and a full queue
    writer = store.ScoreLogWriter(engine, flush_seconds=60)
    row = dict(lead_id="s-7", scored_at=T0, as_of=T0, model_version="1", probability=0.5, score=50, grade="B",
               qualified=False, features={}, reasons=[])
    writer.put([{**row, "score": 10}, {**row, "score": 20}])
    writer.put([{**row, "lead_id": "s-8", "features": {"x": object()}}])  # not JSON: logged and dropped
    writer.max_bytes = writer.queued_bytes + writer.size([db.score_log_row({**row, "lead_id": "s-10"})])  # one row
    writer.put([{**row, "lead_id": "s-9"}, {**row, "lead_id": "s-9"}])  # 2 rows > room for 1: dropped
    writer.put([{**row, "lead_id": "s-10"}])
    # when it is written
    writer.close()
    # then the later score of the request is the later row, and the rest is as announced in the log
    assert [h["score"] for h in store.score_history(engine, "s-7")] == [20, 10]
    assert store.score_history(engine, "s-8") == [] and store.score_history(engine, "s-9") == []
    assert len(store.score_history(engine, "s-10")) == 1
    assert "could not encode" in caplog.text and "queue full" in caplog.text


def test_a_big_batch_of_score_log_rows_is_written_whole_and_in_order(engine):
    # given one request's 250 rows for one lead (more than one INSERT statement's worth on SQLite)
    writer = store.ScoreLogWriter(engine, flush_seconds=60)
    row = dict(lead_id="s-11", as_of=T0, model_version="1", probability=0.5, grade="B", qualified=True,
               features={"lead_age_days": 1.5, "country": "GB"}, reasons=[{"feature": "country", "impact": -0.25}])
    writer.put([{**row, "scored_at": T0, "score": i % 101} for i in range(250)])
    # when it is written
    writer.close()
    # then every row is there once, in the request's order (history: newest first), with its values
    history = store.score_history(engine, "s-11", limit=1000)
    assert [h["score"] for h in history] == [i % 101 for i in reversed(range(250))]
    assert all(h["features"] == row["features"] and h["reasons"] == row["reasons"] and h["qualified"] is True
               for h in history)
