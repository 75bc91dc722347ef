"""`leadscore import`: the most recent leads of a dataset, their events and outcomes go into the store and
are scored once with the champion; a rerun changes nothing."""

from __future__ import annotations

import pytest
from leadscore.features import schema as S
from leadscore.serve import db, store
from typer.testing import CliRunner

from leadscore.cli.main import app
from leadscore.settings import get_settings


@pytest.fixture
def run_cli(trained, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'import.db'}"
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    get_settings.cache_clear()
    yield url, lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def test_import_loads_recent_leads_feedback_and_scores_once(run_cli, demo_dir, demo_dataset):
    url, cli = run_cli
    # given a dataset, when its 120 most recent leads are imported
    first = cli("import", "--data", str(demo_dir), "--recent", "120")
    assert first.exit_code == 0, first.output
    engine = db.make_engine(url)
    newest = demo_dataset.leads.sort_values([S.CREATED_AT, S.LEAD_ID]).tail(120)[S.LEAD_ID].astype(str)
    # then exactly those leads are stored with all their events
    assert store.known_leads(engine, list(demo_dataset.leads[S.LEAD_ID].astype(str))) == set(newest)
    sample = newest.iloc[-1]
    n_events = (demo_dataset.events[S.LEAD_ID].astype(str) == sample).sum()
    assert len(store.get_leads(engine, [sample])[sample]["events"]) == n_events
    # and their outcomes are feedback from the import, and each lead has one score by the champion
    fb = store.feedback_frame(engine)
    assert set(fb["source"]) <= {"import"} and set(fb["lead_id"]) <= set(newest)
    latest = store.latest_scores(engine, limit=1000)
    assert len(latest) == 120 and {r["model_version"] for r in latest} == {"1"}
    # and a lead with an outcome was scored before that outcome, never after it
    if len(fb):
        lead = fb["lead_id"].iloc[0]
        scored = store.score_history(engine, lead)[0]
        assert scored["as_of"] <= fb[fb["lead_id"] == lead]["at"].min()
    # when the import runs again, nothing changes
    again = cli("import", "--data", str(demo_dir), "--recent", "120")
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert len(store.latest_scores(engine, limit=1000)) == 120 and len(store.feedback_frame(engine)) == len(
        fb
    )
    assert sum(len(store.score_history(engine, lid)) for lid in newest[:10]) == 10
    engine.dispose()


def test_import_decides_the_handoff_as_the_service_does_and_records_propensities(
    run_cli, demo_dir, monkeypatch, trained
):
    from leadscore.model.exploration import explored

    url, cli = run_cli
    # given exploration of 30 % configured, when 200 leads are imported and scored
    monkeypatch.setenv("LEADSCORE_EXPLORATION_SHARE", "0.3")
    monkeypatch.setenv("LEADSCORE_EXPLORATION_SEED", "5")
    get_settings.cache_clear()
    res = cli("import", "--data", str(demo_dir), "--recent", "200")
    assert res.exit_code == 0, res.output
    engine = db.make_engine(url)
    rows = store.latest_scores(engine, limit=1000)
    engine.dispose()
    # then each score-log row records the handoff: over the threshold at propensity 1, below it handed over
    # exactly when the service's per-lead draw says so, at propensity 0.3
    threshold = trained.result.model.policy.threshold
    below = [r for r in rows if r["probability"] < threshold]
    above = [r for r in rows if r["probability"] >= threshold]
    assert len(below) > 50 and above
    assert all(r["qualified"] and not r["explored"] and r["propensity"] == 1.0 for r in above)
    drawn = explored([r["lead_id"] for r in below], 0.3, 5)
    assert [r["explored"] for r in below] == drawn.tolist() == [r["qualified"] for r in below]
    assert {r["propensity"] for r in below} == {0.3} and 0 < drawn.sum() < len(below)
