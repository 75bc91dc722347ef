"""Fresh scores: stored leads are rescored with the champion after new activity (by the service's background
rescorer, not in the response), rescorers in several processes share one queue without losing a lead, a new
champion's active leads are rescored in a run that /v1/model reports, and `leadscore rescore` rescores a
store in bulk."""

from __future__ import annotations

import gc
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from leadscore.features import schema as S
from leadscore.serve import db, store
from leadscore.serve.rescore import Rescorer
from leadscore.serve.service import ScoringService
from leadscore.serve.store import rescore_queue, score_log_rows
from serve_helpers import register_version, shifted
from support import KEYS, KEYS_ENV, api_lead
from typer.testing import CliRunner

from leadscore.cli.main import app as cli_app
from leadscore.settings import Settings, get_settings

SCORER = {"Authorization": f"Bearer {KEYS['scorer']}"}
URI = "models:/leadscore@champion"


def assert_scored_as_the_model_does(model, logged: list[dict], stored: dict, as_of) -> None:
    """The logged scores have the probabilities, reasons and features the API's entry point
    (`ScoringModel.score`) gives the same stored leads as of `as_of` (NaN features are logged as null)."""
    again = model.score([stored[r["lead_id"]] for r in logged], as_of)
    assert [r["probability"] for r in logged] == pytest.approx(
        [x["probability"] for x in again.results], abs=1e-12
    )
    assert [r["reasons"] for r in logged] == [x["reasons"] for x in again.results]
    assert [r["features"] for r in logged] == [
        {k: None if v != v else v for k, v in x.items()} for x in again.snapshots()
    ]


def assert_one_handoff_per_lead_handed_over(engine) -> None:
    """Every lead the state says is handed over has exactly one `lead.handoff` event, and no other lead."""
    with engine.connect() as conn:
        handed = conn.execute(sa.select(db.lead_state.c.lead_id).where(db.lead_state.c.qualified)).scalars()
        events = conn.execute(
            sa.select(db.outbox.c.lead_id).where(db.outbox.c.type == "lead.handoff")
        ).scalars()
        assert sorted(events) == sorted(handed)


def settings_for(database_url: str, mlflow_uri: str, **kw) -> Settings:
    return Settings(
        database_url=database_url,
        mlflow_tracking_uri=mlflow_uri,
        model_uri=URI,
        api_keys=KEYS_ENV,
        reload_interval_seconds=0,
        model_sync_seconds=0,
        monitor_refresh=False,
        **kw,
    )


def recent(lead: dict, now: datetime) -> dict:
    """`lead` (as the API takes it) with its events moved so the last is an hour before `now`, created
    before the first."""
    times = [datetime.fromisoformat(e["timestamp"]) for e in lead["events"]]
    shift = now - timedelta(hours=1) - max(times)
    events = [{**e, "timestamp": (t + shift).isoformat()} for e, t in zip(lead["events"], times, strict=True)]
    created = min(times) + shift - timedelta(days=1)
    return {**lead, "created_at": created.isoformat(), "events": events}


def crossing_lead(trained, demo_dataset, now: datetime) -> dict:
    """A demo lead the champion does not hand over without events and hands over with its (recent) events."""
    model = trained.result.model
    for lead_id in demo_dataset.leads[S.LEAD_ID].astype(str):
        lead = recent(api_lead(demo_dataset, lead_id), now)
        if (
            len(lead["events"]) > 3
            and not model.score([{**lead, "events": []}], now).results[0]["qualified"]
            and model.score([lead], now).results[0]["qualified"]
        ):
            return lead
    raise AssertionError("no demo lead crosses the threshold with its events")


def wait_for(check, timeout: float = 60.0):
    """Poll `check` until it returns something true (the rescorer works in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def outbox_types(engine, lead_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(db.outbox.c.type).where(db.outbox.c.lead_id == lead_id).order_by(db.outbox.c.id)
            ).scalars()
        )


def test_posted_events_rescore_the_lead_in_the_background_and_hand_it_over(
    trained, demo_dataset, database_url
):
    now = datetime.now(UTC)
    lead = crossing_lead(trained, demo_dataset, now)
    lid = lead["lead_id"]
    settings = settings_for(database_url, trained.uri)
    with TestClient(make_app(settings)) as client:
        engine = client.app.state.service.engine
        # given a stored lead without events, scored by the rescorer and not handed over
        r = client.put(f"/v1/leads/{lid}", json={"created_at": lead["created_at"]}, headers=SCORER)
        assert r.status_code == 200
        first = wait_for(lambda: store.score_history(engine, lid))
        assert len(first) == 1 and not first[0]["qualified"]
        assert outbox_types(engine, lid) == []
        # when its high-intent events are posted (and nobody calls POST /v1/score)
        r = client.post(
            "/v1/events", json={"events": [{**e, "lead_id": lid} for e in lead["events"]]}, headers=SCORER
        )
        assert r.status_code == 201
        # then the rescorer writes a new score-log row that reads them, and the lead is handed over once
        history = wait_for(lambda: (h := store.score_history(engine, lid)) and len(h) >= 2 and h)
        assert history[0]["qualified"] and history[0]["model_version"] == "1"
        assert history[0]["features"] != first[0]["features"]
        # (with its grade change: both events come from the one score, in one transaction)
        assert sorted(wait_for(lambda: outbox_types(engine, lid))) == ["lead.grade_changed", "lead.handoff"]
        # and nothing is left queued
        assert wait_for(lambda: rescore_queue.waiting(engine, rescore_queue.ACTIVITY) == 0)


def make_app(settings: Settings):
    from leadscore.serve.app import create_app

    return create_app(settings)


def _service(database_url: str, mlflow_uri: str, **kw) -> ScoringService:
    service = ScoringService.build(settings_for(database_url, mlflow_uri, **kw))
    service.holder.reload()
    return service


def _store_leads(engine, demo_dataset, n: int, now: datetime) -> tuple[list[str], list[str]]:
    """The first `n` demo leads stored with their events moved to the last days: (all, those with events)."""
    ids = list(demo_dataset.leads[S.LEAD_ID].astype(str)[:n])
    active = []
    for lid in ids:
        lead = recent(api_lead(demo_dataset, lid), now)
        store.upsert_lead(engine, lid, datetime.fromisoformat(lead["created_at"]), lead["attributes"])
        if lead["events"]:
            events = [
                {**e, "lead_id": lid, "timestamp": datetime.fromisoformat(e["timestamp"])}
                for e in lead["events"]
            ]
            store.add_events(engine, events)
            active.append(lid)
    return ids, active


def test_two_rescorers_on_one_store_never_lose_a_lead(trained, demo_dataset, database_url, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    mlflow.set_tracking_uri(trained.uri)
    db.migrate(database_url)
    a = _service(database_url, trained.uri, rescore_rate=0)
    b = _service(database_url, trained.uri, rescore_rate=0)
    now = datetime.now(UTC)
    try:
        ids, _ = _store_leads(a.engine, demo_dataset, 60, now)
        # given two rescorers (two processes' worth) working the queue while new events keep arriving
        rescorers = [Rescorer(a, worker="host:1"), Rescorer(b, worker="host:2")]
        for r in rescorers:
            r.BATCH = 7  # many small claims: the two interleave
        writing = threading.Event()
        writing.set()
        errors: list[BaseException] = []

        def work(r: Rescorer) -> None:
            try:
                while True:
                    if r.step():
                        continue
                    if not writing.is_set() and not r.step():
                        return  # nothing due after the last write: any row another claims, it rescores
                    time.sleep(0.01)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)

        assert all(r.step() for r in rescorers)  # each rescores a batch first, then both run at once
        threads = [threading.Thread(target=work, args=(r,)) for r in rescorers]
        for t in threads:
            t.start()
        rng = random.Random(3)
        for _ in range(40):
            lid = rng.choice(ids)
            store.add_events(
                a.engine, [{"lead_id": lid, "type": "web_visit", "timestamp": store.now(), "page": "pricing"}]
            )
        writing.clear()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        # then nothing is left queued, and every lead's newest score was computed after its last event came in
        assert rescore_queue.waiting(a.engine, rescore_queue.ACTIVITY) == 0
        with a.engine.connect() as conn:
            last_event = dict(
                conn.execute(
                    sa.select(db.events.c.lead_id, sa.func.max(db.events.c.received_at)).group_by(
                        db.events.c.lead_id
                    )
                ).all()
            )
            last_score = dict(
                conn.execute(
                    sa.select(db.score_log.c.lead_id, sa.func.max(db.score_log.c.as_of)).group_by(
                        db.score_log.c.lead_id
                    )
                ).all()
            )
        assert set(last_score) == set(ids)
        assert all(store.aware(last_score[lid]) >= store.aware(t) for lid, t in last_event.items())
        # and the work was shared: each lead's every rescore by one of the two
        assert sum(r.rescored for r in rescorers) >= len(ids)
    finally:
        a.engine.dispose()
        b.engine.dispose()


def test_a_new_champion_rescores_the_active_leads_in_a_run_that_v1_model_reports(
    trained, demo_dataset, registry_copy, tmp_path, database_url, monkeypatch
):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_copy)
    mlflow.set_tracking_uri(registry_copy)
    db.migrate(database_url)
    now = datetime.now(UTC)
    # the API's own rescorer starts no run (rate 0), so the run below is driven step by step
    with TestClient(make_app(settings_for(database_url, registry_copy, rescore_rate=0))) as client:
        engine = client.app.state.service.engine
        _, active = _store_leads(engine, demo_dataset, 25, now)
        quiet = "quiet-lead"
        store.upsert_lead(engine, quiet, now - timedelta(days=400), {})
        store.add_events(
            engine,
            [{"lead_id": quiet, "type": "web_visit", "timestamp": now - timedelta(days=200), "page": None}],
        )
        worker = Rescorer(_service(database_url, registry_copy, rescore_rate=1e9))
        worker.BATCH = 10
        # the activity rows of the stored leads first (the API's rescorer takes part)
        assert wait_for(
            lambda: not worker.step() and rescore_queue.waiting(engine, rescore_queue.ACTIVITY) == 0
        )
        # given version 1's run done (the leads were scored with it), when version 2 is promoted and loaded
        assert client.get("/v1/model", headers=SCORER).json()["rescore"]["version"] == "1"
        v2 = register_version(
            registry_copy, shifted(trained.result.model, 0.4), tmp_path / "artifacts", promote=True
        )
        worker.service.holder.reload()
        other = Rescorer(_service(database_url, registry_copy, rescore_rate=1e9), worker="host:other")
        # then one worker starts its run (the other finds it started) and it waits for the active leads only
        worker.step()
        other._check_run(v2)
        assert (
            other._version == v2 and rescore_queue.waiting(engine, rescore_queue.CHAMPION) == len(active) - 10
        )
        client.app.state.service.holder.reload()
        progress = client.get("/v1/model", headers=SCORER).json()["rescore"]
        assert progress["version"] == v2 and progress["total"] == len(active)
        assert progress["done"] == 10 and progress["finished_at"] is None and progress["started_at"]
        # and when the rest is rescored, the run is finished and every active lead has a version-2 score
        while worker.step():
            pass
        progress = client.get("/v1/model", headers=SCORER).json()["rescore"]
        assert progress["done"] == progress["total"] == len(active) and progress["finished_at"]
        latest = {r["lead_id"]: r["model_version"] for r in store.latest_scores(engine, limit=1000)}
        assert {latest[lid] for lid in active} == {v2} and latest[quiet] == "1"


@pytest.fixture
def cli_store(trained, database_url, monkeypatch):
    """The store (migrated) and the registry `leadscore rescore` reads, through the settings as the command
    takes them."""
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", database_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    get_settings.cache_clear()
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()
    get_settings.cache_clear()


def test_rescore_cli_rescores_the_stored_leads_with_the_champion(trained, demo_dataset, cli_store):
    engine = cli_store
    now = datetime.now(UTC)
    everyone, active = _store_leads(engine, demo_dataset, 12, now)
    store.upsert_lead(engine, "quiet-lead", now - timedelta(days=400), {})
    store.add_events(
        engine,
        [
            {
                "lead_id": "quiet-lead",
                "type": "web_visit",
                "timestamp": now - timedelta(days=200),
                "page": None,
            }
        ],
    )
    # when the active leads are rescored (the default: an event in the last 90 days), in a process that
    # froze what it holds (as the server freezes its model)
    collector, first_freeze = gc.get_threshold(), gc.get_freeze_count() == 0
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        res = CliRunner().invoke(cli_app, ["rescore"])
        # (in this process: the collector is left as it was, what the process froze still frozen; a frozen
        # object that dies leaves the count, so a few fewer)
        assert gc.get_threshold() == collector and gc.get_freeze_count() > frozen * 0.9
    finally:
        if first_freeze:
            gc.unfreeze()
    assert res.exit_code == 0, res.output
    assert f"rescored {len(active)} leads" in res.output
    latest = store.latest_scores(engine, limit=1000)
    assert {r["lead_id"] for r in latest} == set(active)
    # with the numbers the API's entry point gives for the stored leads at that moment (the command
    # reads and counts through the batch feature path)
    stored = store.get_leads(engine, active)
    assert_scored_as_the_model_does(trained.result.model, latest, stored, latest[0]["as_of"])
    # and with --all, every stored lead, each once more
    res = CliRunner().invoke(cli_app, ["rescore", "--all"])
    assert res.exit_code == 0 and f"rescored {len(everyone) + 1} leads" in res.output
    assert (
        len(store.score_history(engine, active[0])) == 2
        and len(store.score_history(engine, "quiet-lead")) == 1
    )
    # and the handoff decisions went through the lead state: one handoff event per lead handed over
    assert_one_handoff_per_lead_handed_over(engine)
    # and wrong options are a usage error
    res = CliRunner().invoke(cli_app, ["rescore", "--all", "--active-days", "30"])
    assert res.exit_code == 2 and "not both" in res.output


def test_rescore_cli_in_worker_processes_scores_every_lead_once_as_the_model_does(
    trained, demo_dataset, cli_store, monkeypatch
):
    from leadscore.cli import rescore as rescore_cli

    engine = cli_store
    # 14 leads: 4 ranges (the first of 2) for 2 processes (forked: they see it)
    monkeypatch.setattr(rescore_cli, "CHUNK", 4)
    monkeypatch.setattr(rescore_cli, "HEAD", 2)
    now = datetime.now(UTC)
    everyone, _ = _store_leads(engine, demo_dataset, 14, now)
    # as a fresh command process would: no feature set known yet (the workers score, the parent writes)
    monkeypatch.setattr(score_log_rows, "_SET_IDS", {})
    monkeypatch.setattr(score_log_rows, "_SET_NAMES", {})
    # given ranges that are disjoint and cover every stored lead once, in lead-id order
    ranges = store.lead_ranges(engine, 4, head=2)
    assert [r.leads for r in ranges] == [2, 4, 4, 4] and all(r.first <= r.last for r in ranges)
    assert all(prev.last < nxt.first for prev, nxt in zip(ranges, ranges[1:], strict=False))
    # when two worker processes rescore them
    frozen = gc.get_freeze_count()
    res = CliRunner().invoke(cli_app, ["rescore", "--all", "--workers", "2"])
    assert res.exit_code == 0, res.output
    # (what the command froze for its workers is given back: no more frozen than before)
    assert gc.get_freeze_count() <= frozen
    assert f"rescored {len(everyone)} leads" in res.output
    # then every lead has exactly one new score (none missed, none doubled)
    with engine.connect() as conn:
        logged = list(conn.execute(sa.select(db.score_log.c.lead_id)).scalars())
    assert sorted(logged) == sorted(everyone)
    # with the numbers the API's entry point gives for it at its range's time
    latest = store.latest_scores(engine, limit=1000)
    stored = store.get_leads(engine, everyone)
    for as_of in {r["as_of"] for r in latest}:
        rows = sorted((r for r in latest if r["as_of"] == as_of), key=lambda r: r["lead_id"])
        assert_scored_as_the_model_does(trained.result.model, rows, stored, as_of)
    # and one handoff event per lead handed over, written by whichever process scored it
    assert_one_handoff_per_lead_handed_over(engine)
    res = CliRunner().invoke(cli_app, ["rescore", "--all", "--workers", "0"])
    assert res.exit_code == 2 and "--workers" in res.output


def test_storing_with_rescore_on_activity_off_queues_nothing(engine):
    # given a deployment where another system asks for every score (LEADSCORE_RESCORE_ON_ACTIVITY=false)
    t = datetime(2026, 3, 1, tzinfo=UTC)
    # when a lead and its events are stored without a rescore, and another one with
    store.upsert_lead(engine, "quiet", t, {}, rescore=False)
    store.add_events(engine, [{"lead_id": "quiet", "type": "web_visit", "timestamp": t}], rescore=False)
    store.upsert_lead(engine, "busy", t, {})
    # then only the second one waits for the rescorer
    with engine.connect() as conn:
        queued = conn.execute(sa.select(db.rescore_queue.c.lead_id)).scalars().all()
    assert queued == ["busy"]
