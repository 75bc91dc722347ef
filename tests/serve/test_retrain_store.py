"""`leadscore retrain` against the service's store on SQLite and PostgreSQL: the lock and the data checks work
through the same code on both (the end-to-end runs are in tests/test_retrain.py)."""

from __future__ import annotations

import mlflow
from leadscore.model import registry
from leadscore.serve import db, locks
from typer.testing import CliRunner

from leadscore.cli.main import app
from leadscore.settings import get_settings


def test_retrain_on_each_database_refuses_an_empty_store_and_a_held_lock(
    database_url, registry_copy, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_copy)
    get_settings.cache_clear()
    before_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registry_copy)
    champion = registry.alias_version(registry.CHAMPION)
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    try:
        # an empty store: exit 4, the champion unchanged
        done = CliRunner().invoke(app, ["retrain", "--database-url", database_url])
        assert done.exit_code == 4, done.output
        assert "the data holds no leads" in " ".join(done.output.split())
        # a run holding the lock: the next one exits 1 at once and names it
        held = locks.JobLock(engine, "retrain", holder="cron-host pid 77")
        held.acquire()
        try:
            done = CliRunner().invoke(app, ["retrain", "--database-url", database_url])
        finally:
            held.release()
        assert done.exit_code == 1, done.output
        assert "another retrain is running: held by cron-host pid 77 since" in " ".join(done.output.split())
        assert registry.alias_version(registry.CHAMPION) == champion == "1"
    finally:
        engine.dispose()
        get_settings.cache_clear()
        mlflow.set_tracking_uri(before_uri)
