"""The service store through the same code on SQLite and PostgreSQL (skipped with a reason when no
PostgreSQL server is available: see .ci/postgres.sh)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from leadscore.serve import db, store
from support import log_scores, score_entry

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
REASON = {"feature": "lead_age_days", "value": 3, "impact": 0.1, "points": 3, "text": "Lead is 3 days old"}


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
    store.add_events(
        engine,
        [
            {"lead_id": "s-1", "type": "web_visit", "timestamp": T0 + timedelta(days=2), "page": "pricing"},
            {"lead_id": "s-1", "type": "email_opened", "timestamp": T0 + timedelta(days=1)},
        ],
    )
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
    store.add_events(
        engine,
        [{"lead_id": "s-2", "type": "email_sent", "timestamp": T0 + timedelta(hours=h)} for h in range(10)],
    )
    events = store.get_leads(engine, ["s-2"], max_events=3)["s-2"]["events"]
    assert [e["timestamp"] for e in events] == [T0 + timedelta(hours=h) for h in (7, 8, 9)]


def test_feedback_idempotency_key_stores_once_even_under_concurrent_retries(engine):
    # given eight clients retrying the same feedback for a stored lead at the same time
    store.upsert_lead(engine, "s-3", T0, {})
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


def test_feedback_for_a_lead_the_store_never_saw_is_refused_and_what_was_accepted_stays(engine):
    # given a stored lead, and feedback accepted for an unknown lead before the rule (written directly)
    store.upsert_lead(engine, "known-1", T0, {})
    with engine.begin() as conn:
        conn.execute(
            sa.insert(db.feedback).values(
                lead_id="ghost-0",
                outcome="won",
                at=T0,
                received_at=T0,
                source="api",
                idempotency_key="old-key",
            )
        )
    # when feedback comes for a lead that is not stored, then it is refused and nothing is stored
    with pytest.raises(store.UnknownLead):
        store.add_feedback(engine, "ghost-1", "qualified", idempotency_key="k-1")
    with pytest.raises(store.UnknownLead):
        store.add_feedback(engine, "ghost-1", "qualified")
    assert store.feedback_for(engine, "ghost-1") == []
    # and feedback for the stored lead is taken
    row, duplicate = store.add_feedback(engine, "known-1", "qualified")
    assert not duplicate and store.feedback_for(engine, "known-1")[0]["id"] == row["id"]
    # and the feedback accepted earlier stays, and a retry of it is answered with it
    again, duplicate = store.add_feedback(engine, "ghost-0", "won", at=T0, idempotency_key="old-key")
    assert duplicate and again["lead_id"] == "ghost-0" and len(store.feedback_for(engine, "ghost-0")) == 1
    with pytest.raises(store.Conflict):
        store.add_feedback(engine, "ghost-0", "lost", at=T0, idempotency_key="old-key")


def test_feedback_frame_is_an_outcomes_table(engine):
    store.upsert_lead(engine, "s-4", T0, {})
    store.add_feedback(engine, "s-4", "disqualified", reason="spam", at=T0, source="ui")
    store.add_feedback(engine, "s-4", "won", at=T0 + timedelta(days=3))
    df = store.feedback_frame(engine)
    assert list(df["outcome"]) == ["disqualified", "won"] and list(df["source"]) == ["ui", "api"]
    assert str(df["at"].dt.tz) == "UTC" and df["at"].iloc[0] == T0


def test_feedback_frame_reads_only_the_given_leads_up_to_a_moment(engine):
    # given feedback of three leads at several moments, and more leads asked for than one IN list holds
    for lid in ("s-5", "s-6", "s-7"):
        store.upsert_lead(engine, lid, T0, {})
    store.add_feedback(engine, "s-5", "qualified", at=T0 + timedelta(days=1))
    store.add_feedback(engine, "s-5", "won", at=T0 + timedelta(days=5))
    store.add_feedback(engine, "s-6", "disqualified", reason="spam", at=T0 + timedelta(days=2))
    store.add_feedback(engine, "s-7", "qualified", at=T0 + timedelta(days=1))
    asked = ["s-6", "s-5", *(f"absent-{i}" for i in range(store.IN_CHUNK + 5))]
    # when the frame is read for some leads up to a moment (what monitoring folds into outcomes)
    df = store.feedback_frame(engine, lead_ids=asked, until=T0 + timedelta(days=2))
    # then it holds exactly their feedback given by then, oldest first, as the whole frame shows it
    assert list(zip(df["lead_id"], df["outcome"], strict=True)) == [
        ("s-5", "qualified"),
        ("s-6", "disqualified"),
    ]
    whole = store.feedback_frame(engine)
    expected = whole[whole["lead_id"].isin(asked) & (whole["at"] <= T0 + timedelta(days=2))]
    assert df.reset_index(drop=True).equals(expected.reset_index(drop=True))
    # and an open connection reads the same (monitoring reads everything on one)
    with engine.connect() as conn:
        assert store.feedback_frame(conn, lead_ids=asked, until=T0 + timedelta(days=2)).equals(df)


def test_score_log_writer_batches_rows_and_history_reads_newest_first(engine):
    # given two scores of a lead and one of another, written by the background writer
    writer = store.ScoreLogWriter(engine, flush_seconds=0.05)
    row = score_entry("s-5", T0, features={"lead_age_days": 3, "country": None}, reasons=[REASON])
    writer.put([{**row, "lead_id": "s-5", "scored_at": T0}, {**row, "lead_id": "s-6", "scored_at": T0}])
    writer.put(
        [
            {
                **row,
                "lead_id": "s-5",
                "scored_at": T0 + timedelta(hours=1),
                "score": 70,
                "grade": "A",
                "probability": 0.7,
                "as_of": (T0 + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))),
            }
        ]
    )
    writer.close()
    # when the history and the review list are read
    history = store.score_history(engine, "s-5")
    latest = store.latest_scores(engine)
    recent = store.recent_scores(engine, ["s-5", "s-6"])
    # then the newest score comes first, the snapshot of features is kept as it was, one row per lead in lists
    assert [h["score"] for h in history] == [70, 50]
    assert history[0]["features"] == {"lead_age_days": 3, "country": None}
    assert history[0]["reasons"] == [REASON] and history[0]["qualified"] is False
    # and every time is read back as the instant it was (a +02:00 offset included)
    assert [(h["scored_at"], h["as_of"]) for h in history] == [(T0 + timedelta(hours=1),) * 2, (T0, T0)]
    assert [r["lead_id"] for r in latest] == ["s-5", "s-6"] and latest[0]["score"] == 70
    assert [r["score"] for r in recent["s-5"]] == [70, 50] and len(recent["s-6"]) == 1
    assert [r["lead_id"] for r in store.latest_scores(engine, grade="B")] == ["s-6"]


def test_score_log_keeps_the_order_of_a_request_and_bounds_its_queue(engine, caplog):
    # given one request that scored the same lead twice, a row that cannot be encoded, and a full queue
    writer = store.ScoreLogWriter(engine, flush_seconds=60)
    row = score_entry("s-7", T0)
    writer.put([{**row, "score": 10}, {**row, "score": 20}])
    writer.put([{**row, "lead_id": "s-8", "features": {"x": object()}}])  # not JSON: logged and dropped
    writer.max_bytes = writer.queued_bytes + writer.size(
        [store.score_log_row({**row, "lead_id": "s-10"})]
    )  # one row
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
    row = score_entry(
        "s-11",
        T0,
        qualified=True,
        features={"lead_age_days": 1.5, "country": "GB"},
        reasons=[REASON, {**REASON, "feature": "country", "value": "GB", "impact": -0.25, "points": -7}],
    )
    writer.put([{**row, "score": i % 101} for i in range(250)])
    # when it is written
    writer.close()
    # then every row is there once, in the request's order (history: newest first), with its values
    history = store.score_history(engine, "s-11", limit=1000)
    assert [h["score"] for h in history] == [i % 101 for i in reversed(range(250))]
    assert all(
        h["features"] == row["features"] and h["reasons"] == row["reasons"] and h["qualified"] is True
        for h in history
    )


def test_concurrent_first_writes_of_a_lead_all_succeed_and_one_creates_it(engine):
    # given eight clients that PUT the same new leads at the same moment, each on its own connection
    workers, leads = 8, 12
    barrier = threading.Barrier(workers)
    created: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def client(k: int):
        for i in range(leads):
            barrier.wait()
            try:
                created.append((f"race-{i}", store.upsert_lead(engine, f"race-{i}", T0, {"source": f"w{k}"})))
            except BaseException as e:  # noqa: BLE001 - collected for the assertion
                errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then no write failed, exactly one of them created each lead, and each lead holds one client's attributes
    assert errors == []
    assert sorted(lid for lid, new in created if new) == sorted(f"race-{i}" for i in range(leads))
    stored = store.get_leads(engine, [f"race-{i}" for i in range(leads)])
    assert len(stored) == leads and all(s["attributes"]["source"].startswith("w") for s in stored.values())


def test_events_beyond_the_cap_are_refused_whole_and_scoring_reads_the_newest(engine):
    # given a lead with 4 events and a cap of 5 per lead
    store.upsert_lead(engine, "cap-1", T0, {})
    store.upsert_lead(engine, "cap-2", T0, {})
    ev = [{"lead_id": "cap-1", "type": "email_sent", "timestamp": T0 + timedelta(hours=h)} for h in range(4)]
    assert store.add_events(engine, ev, max_per_lead=5) == 4
    # when a batch would take it to 6 (with an event of another lead in the same batch)
    more = [
        {"lead_id": "cap-2", "type": "email_sent", "timestamp": T0},
        *[
            {"lead_id": "cap-1", "type": "web_visit", "timestamp": T0 + timedelta(days=1, hours=h)}
            for h in range(2)
        ],
    ]
    with pytest.raises(
        store.TooManyEvents, match="'cap-1' would have 6 stored events, more than the 5 allowed"
    ):
        store.add_events(engine, more, max_per_lead=5)
    # then nothing of that batch was stored, and a batch within the cap still is
    got = store.get_leads(engine, ["cap-1", "cap-2"])
    assert len(got["cap-1"]["events"]) == 4 and got["cap-2"]["events"] == []
    assert store.add_events(engine, more[:2], max_per_lead=5) == 2
    # and scoring by reference reads the newest events of each lead, one lead or several at once
    one = store.get_leads(engine, ["cap-1"], max_events=2)["cap-1"]["events"]
    both = store.get_leads(engine, ["cap-1", "cap-2"], max_events=2)
    assert [e["timestamp"] for e in one] == [T0 + timedelta(hours=3), T0 + timedelta(days=1)]
    assert both["cap-1"]["events"] == one and len(both["cap-2"]["events"]) == 1


def test_feedback_idempotency_key_reused_with_another_note_or_time_is_a_conflict(engine):
    # given a feedback stored with a key, and one stored with a key and no time
    store.upsert_lead(engine, "s-12", T0, {})
    store.upsert_lead(engine, "s-13", T0, {})
    first, _ = store.add_feedback(engine, "s-12", "qualified", note="called", at=T0, idempotency_key="k-12")
    untimed, _ = store.add_feedback(engine, "s-13", "won", idempotency_key="k-13")
    # when the same requests are retried, they are answered with the stored rows
    assert store.add_feedback(engine, "s-12", "qualified", note="called", at=T0, idempotency_key="k-12") == (
        first,
        True,
    )
    assert store.add_feedback(engine, "s-13", "won", idempotency_key="k-13")[0]["id"] == untimed["id"]
    # but the key with another note, another time, or a time the first request did not give is refused
    for change in ({"note": "called twice"}, {"note": None}, {"at": T0 + timedelta(minutes=1)}, {"at": None}):
        with pytest.raises(store.Conflict):
            store.add_feedback(
                engine, "s-12", "qualified", **{"note": "called", "at": T0, **change}, idempotency_key="k-12"
            )
    with pytest.raises(store.Conflict):
        store.add_feedback(engine, "s-13", "won", at=T0, idempotency_key="k-13")
    assert len(store.feedback_for(engine, "s-12")) == 1


def test_failed_statements_do_not_show_their_values(engine):
    # given a lead whose attributes are personal data
    store.upsert_lead(engine, "pii-1", T0, {"email_domain": "private-person.example"})
    # when a statement carrying them fails (a duplicate key)
    with pytest.raises(sa.exc.IntegrityError) as failed, engine.begin() as conn:
        conn.execute(
            sa.insert(db.leads).values(
                lead_id="pii-1",
                created_at=T0,
                updated_at=T0,
                attributes={"email_domain": "private-person.example"},
            )
        )
    # then the error (what the service logs) has the SQL but not the values sent with it (PostgreSQL's own
    # message names the duplicate key)
    text = str(failed.value)
    assert "INSERT INTO leads" in text and "private-person" not in text and "parameters hidden" in text


SNAPSHOT = {
    "source": "webinar",
    "country": "DE",
    "lead_age_days": 20.0,
    "email_opened_30d": 5.0,
    "days_since_demo_requested": None,
    "activity_trend": -0.4348,
}
REASONS = [
    {
        "feature": "engagement_30d",
        "value": 10,
        "impact": 0.534486,
        "points": 15,
        "text": "10 interactions in the last 30 days",
    },
    {
        "feature": "lead_age_days",
        "value": 20,
        "impact": -0.308318,
        "points": -9,
        "text": "Lead is 20 days old",
    },
]


def _log(engine, *rows: dict) -> None:
    # as_of stays T0 whatever the scored_at
    base = score_entry("", T0, features=SNAPSHOT, reasons=REASONS)
    log_scores(engine, [{**base, **r} for r in rows])


def test_score_log_stores_feature_names_once_and_reads_rows_back_whole(engine):
    # given two scores of a lead
    _log(
        engine, {"lead_id": "c-1", "scored_at": T0}, {"lead_id": "c-1", "scored_at": T0 + timedelta(hours=1)}
    )
    # when the stored columns are read as they are
    with engine.connect() as conn:
        raw = conn.execute(sa.select(db.score_log.c.features, db.score_log.c.reasons)).all()
        sets = conn.execute(sa.select(db.feature_sets)).all()
    # then each row holds only the values, in the order of the one stored list of names, and keyless reasons
    assert [r.features for r in raw] == [list(SNAPSHOT.values())] * 2
    assert [tuple(s.names) for s in sets] == [tuple(SNAPSHOT)]
    assert raw[0].reasons == [[r[k] for k in store.REASON_FIELDS] for r in REASONS]
    # and about a third of the size of the keyed objects
    keyed = len(db.encode_json(SNAPSHOT)) + len(db.encode_json(REASONS))
    assert len(db.encode_json(raw[0].features)) + len(db.encode_json(raw[0].reasons)) < 0.75 * keyed
    # and every reader gets the features and reasons as the API serves them
    for row in (store.score_history(engine, "c-1")[0], store.latest_scores(engine)[0]):
        assert row["features"] == SNAPSHOT and row["reasons"] == REASONS and "feature_set" not in row


def test_rows_logged_before_the_compact_format_are_read_after_the_migration(database_url):
    # given a database at the first schema, holding a score-log row with keyed features and reasons
    db.migrate(database_url, "0001")
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO score_log (lead_id, scored_at, as_of, model_version, probability, score, "
                "grade, qualified, features, reasons) VALUES ('old-1', :t, :t, '1', 0.5, 50, 'B', "
                ":q, :f, :r)"
            ),
            {"t": T0, "q": False, "f": db.encode_json(SNAPSHOT), "r": db.encode_json(REASONS)},
        )
    # when it is migrated to the newest schema and a new row is logged beside it
    db.migrate(database_url)
    _log(engine, {"lead_id": "old-1", "scored_at": T0 + timedelta(hours=1), "score": 60})
    # then both rows read back the same way
    history = store.score_history(engine, "old-1")
    assert [h["score"] for h in history] == [60, 50]
    assert all(h["features"] == SNAPSHOT and h["reasons"] == REASONS for h in history)
    engine.dispose()


def test_retention_deletes_old_score_log_rows_in_bounded_steps(engine):
    # given 7 leads with 2 rows older than 30 days each, and a newer row for 3 of them
    now = store.now()
    _log(
        engine,
        *(
            {"lead_id": f"r-{i}", "scored_at": now - timedelta(days=40 + i, hours=h)}
            for i in range(7)
            for h in (0, 1)
        ),
        *({"lead_id": f"r-{i}", "scored_at": now - timedelta(days=29)} for i in range(3)),
    )
    cutoff = now - timedelta(days=30)
    # when old rows are pruned 5 at a time, then they are deleted oldest first, at most 5 a step, but each
    # lead's newest row stays whatever its age (the selection table is built from it: serve.export)
    assert store.prune_score_log(engine, cutoff, max_rows=5) == 5
    assert [len(store.score_history(engine, f"r-{i}")) for i in range(7)] == [3, 3, 2, 1, 1, 1, 1]
    assert store.prune_score_log(engine, cutoff, max_rows=5) == 5
    assert store.prune_score_log(engine, cutoff, max_rows=5) == 0
    assert [len(store.score_history(engine, f"r-{i}")) for i in range(7)] == [1] * 7
    assert {r["lead_id"] for r in store.latest_scores(engine, limit=100)} == {f"r-{i}" for i in range(7)}
    # and the service's writer does the same by itself, a bounded step after each flush while rows are due
    _log(engine, *({"lead_id": "r-w", "scored_at": now - timedelta(days=100 + i)} for i in range(5)))
    writer = store.ScoreLogWriter(engine, flush_seconds=60, retention_days=30, prune_seconds=3600)
    writer.PRUNE_ROWS = 2
    writer.prune_step()
    assert len(store.score_history(engine, "r-w")) == 3
    writer.prune_step(), writer.prune_step()
    assert len(store.score_history(engine, "r-w")) == 1  # its newest row
    writer.prune_step()  # a short step ended the pass: the next check is an hour away
    _log(engine, {"lead_id": "r-w", "scored_at": now - timedelta(days=90)})
    writer.prune_step()
    writer.close()
    assert len(store.score_history(engine, "r-w")) == 2


def test_prune_command_deletes_rows_older_than_the_retention(database_url, monkeypatch):
    from typer.testing import CliRunner

    from leadscore.cli.main import app
    from leadscore.settings import get_settings

    # given a lead scored 200 days ago and 10 days ago, and 1 day ago, and a retention of 180 days
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    now = store.now()
    _log(engine, *({"lead_id": "p", "scored_at": now - timedelta(days=d), "score": d} for d in (200, 10, 1)))
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", database_url)
    monkeypatch.setenv("LEADSCORE_SCORE_LOG_RETENTION_DAYS", "180")
    get_settings.cache_clear()
    try:
        # when `leadscore prune` runs with the configured retention, then with 5 days
        first = CliRunner().invoke(app, ["prune"])
        kept = [h["score"] for h in store.score_history(engine, "p")]
        second = CliRunner().invoke(app, ["prune", "--days", "5"])
    finally:
        get_settings.cache_clear()
    # then each deletes what is older (but the lead's newest row), and says how much
    assert first.exit_code == 0 and "deleted 1 score-log rows older than 180 days" in first.output, (
        first.output
    )
    assert sorted(kept) == [1, 10]
    assert second.exit_code == 0 and [h["score"] for h in store.score_history(engine, "p")] == [1]
    engine.dispose()


def test_the_migrations_form_one_chain():
    # given every migration file (their numbers need not follow the chain: each names the one before it)
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    script = ScriptDirectory.from_config(cfg)
    # then there is one head and one base, and the walk from the head reaches every file
    assert len(script.get_heads()) == 1 and len(script.get_bases()) == 1
    files = {p.stem for p in (Path(db.__file__).parent / "migrations" / "versions").glob("0*.py")}
    walked = {Path(r.module.__file__).stem for r in script.walk_revisions()}
    assert walked == files
