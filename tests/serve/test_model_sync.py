"""The store side of keeping every worker on one model: a reload in one worker reaches another through the
reload generation alone (no registry polling), and each worker's report says what it serves."""

from __future__ import annotations

import mlflow
from leadscore.serve import db, model_sync
from leadscore.serve.model_holder import ModelHolder
from serve_helpers import register_version, shifted

URI = "models:/leadscore@champion"


def test_a_reload_in_one_worker_reaches_another_through_the_generation(
    trained, registry_copy, tmp_path, database_url, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_copy)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registry_copy)
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    try:
        # given two workers that never ask the registry on their own (registry_every=0), both on version 1
        a, b = ModelHolder(URI), ModelHolder(URI)
        sync_a = model_sync.ModelSync(a, engine, registry_every=0, sync_every=1, worker="host:1")
        sync_b = model_sync.ModelSync(b, engine, registry_every=0, sync_every=1, worker="host:2")
        for holder, sync in ((a, sync_a), (b, sync_b)):
            sync.start()
            holder.reload()
            sync.report_now()
        assert [(w["worker"], w["version"]) for w in model_sync.live_workers(engine)] == [
            ("host:1", "1"),
            ("host:2", "1"),
        ]
        # when a new champion is promoted, worker b alone does not see it
        v2 = register_version(
            registry_copy, shifted(trained.result.model, 0.3), tmp_path / "artifacts", promote=True
        )
        sync_b.step()
        assert b.version == "1"
        # when worker a reloads (as POST /v1/admin/reload does) and bumps the generation
        assert a.reload(force=True).version == v2
        generation = model_sync.bump_generation(engine)
        sync_a.adopt(generation)
        _, done = sync_a.wait_for_all(generation, timeout=0)
        assert not done  # b has not acted on it yet
        # then worker b's next check loads it, and both report it for that generation
        sync_b.step()
        assert b.version == v2
        workers, done = sync_a.wait_for_all(generation, timeout=0)
        assert done and [(w["version"], w["generation"]) for w in workers] == [(v2, generation)] * 2
        # and a stopped worker is no longer waited for
        sync_b.leave()
        assert [w["worker"] for w in model_sync.live_workers(engine)] == ["host:1"]
    finally:
        engine.dispose()
        mlflow.set_tracking_uri(previous)


def test_with_the_store_down_a_promotion_still_arrives_and_the_outage_is_said_once(
    trained, registry_copy, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_copy)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registry_copy)
    # given a worker whose store cannot be read (a database without the service's tables)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'not-migrated.db'}")
    try:
        holder = ModelHolder(URI)
        holder.reload()
        sync = model_sync.ModelSync(holder, engine, registry_every=0.001, sync_every=1, worker="host:1")
        # when a new champion is promoted in the registry and the worker checks three times
        v2 = register_version(
            registry_copy, shifted(trained.result.model, 0.3), tmp_path / "artifacts", promote=True
        )
        with caplog.at_level("INFO", logger="leadscore"):
            for _ in range(3):
                sync.step()
        # then the alias check alone brought it to the new version, and the outage was logged once
        assert holder.version == v2
        assert sum("cannot read the reload generation" in r.getMessage() for r in caplog.records) == 1
    finally:
        engine.dispose()
        mlflow.set_tracking_uri(previous)
