"""`leadscore retrain` as a scheduler runs it: from a store filled only through the API of a real server, it
trains, gates, registers and promotes, and the server serves the new champion; run again on the same data it
does nothing; with no usable data or a broken export it registers nothing; a held lock stops a second run.
Real MLflow registry (SQLite in a temporary folder), real store, real server process."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.writing import write_dataset
from leadscore.model import registry, tracking
from leadscore.model.gate import GateDecision
from leadscore.serve import db, locks, store
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from support import api_lead, start_server
from typer.testing import CliRunner

from leadscore.cli.main import app
from leadscore.settings import get_settings

N_LEADS = 600  # a contiguous slice of the session's demo leads: enough rows of each class, a fast fit


def _slice(demo_dataset, start: int = 1500, n: int = N_LEADS) -> pd.DataFrame:
    return demo_dataset.leads.sort_values([S.CREATED_AT, S.LEAD_ID]).iloc[start : start + n]


def _feedback(demo_dataset, ids) -> pd.DataFrame:
    o = demo_dataset.outcomes
    return o[o[S.LEAD_ID].isin(set(ids)) & o[S.OUTCOME].isin(["qualified", "disqualified", "won", "lost"])]


@pytest.fixture(scope="module")
def registry_env(tmp_path_factory):
    """A fresh, empty MLflow registry (SQLite) for this module's runs, with artifacts beside it; the process's
    MLflow and settings point back to the session's registry afterwards."""
    tmp = tmp_path_factory.mktemp("retrain")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # the experiment's artifact folder is made here
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(uri)
        yield tmp, uri
    get_settings.cache_clear()
    mlflow.set_tracking_uri(before)


def _retrain(*args: str):
    return CliRunner().invoke(app, ["retrain", *args], catch_exceptions=False)


def _versions() -> list[str]:
    try:
        return sorted(
            str(v.version) for v in MlflowClient().search_model_versions(f"name = '{registry.MODEL_NAME}'")
        )
    except Exception:  # noqa: BLE001 - no registered model yet
        return []


def _aliases() -> dict:
    return {a: registry.alias_version(a) for a in (registry.CHAMPION, registry.CHALLENGER)}


@pytest.fixture(scope="module")
def through_the_api(registry_env, demo_dataset):
    """A server on a fresh store and the empty registry; leads, events and feedback sent through its API;
    then `leadscore retrain` on that store. Yields what a test needs to look at the outcome."""
    tmp, uri = registry_env
    store_url = f"sqlite:///{tmp / 'leadscore.db'}"
    server = start_server(
        tmp, uri, database_url=store_url, extra_env={"LEADSCORE_RELOAD_INTERVAL_SECONDS": "1"}
    )  # the default: the alias is polled
    try:
        leads = _slice(demo_dataset)
        with server.client("admin") as c:
            events = []
            for lead_id in leads[S.LEAD_ID]:
                lead = api_lead(demo_dataset, lead_id)
                r = c.put(
                    f"/v1/leads/{lead_id}",
                    json={"created_at": lead["created_at"], "attributes": lead["attributes"]},
                )
                assert r.status_code == 200, r.text
                events += [
                    {"lead_id": lead_id, **{k: v for k, v in e.items() if v is not None}}
                    for e in lead["events"]
                ]
            for i in range(0, len(events), 10_000):
                r = c.post("/v1/events", json={"events": events[i : i + 10_000]})
                assert r.status_code < 300, r.text
            fb = _feedback(demo_dataset, leads[S.LEAD_ID])
            for r_ in fb.itertuples(index=False):
                body = {"lead_id": r_.lead_id, "outcome": r_.outcome, "at": r_.at.isoformat()}
                if r_.outcome == "disqualified" and isinstance(r_.reason, str):
                    body["reason"] = r_.reason
                r = c.post("/v1/feedback", json=body)
                assert r.status_code == 201, r.text
            assert c.get("/v1/model").status_code == 503  # nothing to serve yet
        as_of = demo_dataset.snapshot_at.isoformat()
        done = _retrain("--database-url", store_url, "--as-of", as_of, "--model", "scorecard")
        yield server, store_url, as_of, done, fb, len(events)
    finally:
        server.stop()


def test_retrain_from_the_store_alone_promotes_and_the_server_serves_it(through_the_api):
    server, store_url, _, done, fb, n_events = through_the_api
    # then the first retrain on an empty registry trains, registers and promotes: exit 0
    assert done.exit_code == 0, done.output
    assert _versions() == ["1"] and registry.alias_version(registry.CHAMPION) == "1"
    assert "promoted version 1 to champion (rule first)" in " ".join(done.output.split())
    # and the run says what it was trained on: the data fingerprint, the feedback counts, the gate's rule
    run = mlflow.get_run(MlflowClient().get_model_version(registry.MODEL_NAME, "1").run_id)
    verdicts = int(fb[S.OUTCOME].isin(["qualified", "disqualified"]).sum())
    assert run.data.metrics["feedback.verdicts"] == verdicts > 40
    assert run.data.metrics["feedback.won"] == int((fb[S.OUTCOME] == "won").sum())
    assert run.data.metrics["feedback.lost"] == int((fb[S.OUTCOME] == "lost").sum())
    assert run.data.metrics["feedback.leads"] == fb[S.LEAD_ID].nunique()
    assert run.data.tags["leadscore.gate.rule"] == "first" and run.data.params["retrain.source"] == "store"
    assert (
        run.data.tags["leadscore.data.sha256"]
        == MlflowClient().get_model_version(registry.MODEL_NAME, "1").tags[tracking.DATA_SHA256]
    )
    fp = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data_fingerprint.json")
    assert fp["n_leads"] == N_LEADS and fp["n_events"] == n_events
    # and the running server picks the new champion up by itself
    deadline = time.monotonic() + 60
    with server.client("scorer") as c:
        while (r := c.get("/v1/model")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == "1"


def test_a_second_run_on_the_same_data_does_nothing(through_the_api):
    _, store_url, as_of, first, _, _ = through_the_api
    assert first.exit_code == 0
    before = (_versions(), _aliases())
    # when the scheduler runs retrain again and nothing new arrived
    done = _retrain("--database-url", store_url, "--as-of", as_of, "--model", "scorecard")
    # then it says which version already has this data, registers nothing, and exits 3
    assert done.exit_code == 3, done.output
    assert "version 1 was already trained on this data" in " ".join(done.output.split())
    assert (_versions(), _aliases()) == before


def _store(tmp: Path, name: str, demo_dataset, leads: pd.DataFrame, feedback: pd.DataFrame | None) -> str:
    url = f"sqlite:///{tmp / name}"
    db.migrate(url)
    engine = db.make_engine(url)
    for r in leads.itertuples(index=False):
        attrs = {a: getattr(r, a) for a in S.LEAD_ATTRIBUTES if isinstance(getattr(r, a), str)}
        store.upsert_lead(engine, r.lead_id, r.created_at.to_pydatetime(), attrs)
    for r in (feedback if feedback is not None else leads.iloc[:0]).itertuples(index=False):
        store.add_feedback(engine, r.lead_id, r.outcome, r.reason, at=r.at.to_pydatetime())
    engine.dispose()
    return url


def test_no_usable_data_registers_nothing(through_the_api, demo_dataset, tmp_path):
    _, _, as_of, first, _, _ = through_the_api
    assert first.exit_code == 0  # a champion exists: no alias may move
    before = (_versions(), _aliases())
    # an empty store: not enough data, exit 4
    empty = _store(tmp_path, "empty.db", demo_dataset, demo_dataset.leads.iloc[:0], None)
    done = _retrain("--database-url", empty, "--as-of", as_of)
    assert done.exit_code == 4, done.output
    assert "no leads" in done.output and "nothing was registered" in " ".join(done.output.split())
    # a store where sales only ever disqualified: not enough data, exit 4, with how many are missing
    leads = _slice(demo_dataset, 0, 300)
    negatives = pd.DataFrame(
        {
            S.LEAD_ID: leads[S.LEAD_ID],
            S.OUTCOME: "disqualified",
            S.REASON: "no_budget",
            S.OUTCOME_AT: leads[S.CREATED_AT] + pd.Timedelta(days=2),
        }
    )
    only_neg = _store(tmp_path, "neg.db", demo_dataset, leads, negatives)
    done = _retrain("--database-url", only_neg, "--as-of", as_of)
    assert done.exit_code == 4, done.output
    assert "0 positive" in done.output
    # a CRM export whose events break the schema: exit 1 with the loader's problems
    export = write_dataset(demo_dataset, tmp_path / "export")
    events = pd.read_parquet(export / "events.parquet")
    events[S.EVENT_TYPE] = events[S.EVENT_TYPE].astype(object)
    events.loc[5, S.EVENT_TYPE] = "email_open"
    events.to_parquet(export / "events.parquet", index=False)
    done = _retrain("--database-url", empty, "--export", str(export))
    assert done.exit_code == 1, done.output
    assert "row 6, column 'type': 'email_open' is not one of" in " ".join(done.output.split())
    # and none of them registered a version or moved an alias
    assert (_versions(), _aliases()) == before


def test_an_export_is_trained_with_the_stores_feedback_merged(through_the_api, demo_dataset, tmp_path):
    _, _, _, first, _, _ = through_the_api
    assert first.exit_code == 0
    # given a CRM export that lags: it has the leads and events, but none of their outcomes yet
    leads = _slice(demo_dataset, 2200, N_LEADS)
    ids = set(leads[S.LEAD_ID])
    lagging = replace(
        demo_dataset,
        leads=leads,
        events=demo_dataset.events[demo_dataset.events[S.LEAD_ID].isin(ids)],
        outcomes=demo_dataset.outcomes.iloc[:0],
    )
    export = write_dataset(lagging, tmp_path / "crm")
    # and the verdicts sales gave through the service, in its store
    fb = _feedback(demo_dataset, ids)
    url = _store(tmp_path, "fb.db", demo_dataset, leads, fb)
    # when retrain runs on the export
    done = _retrain("--database-url", url, "--export", str(export), "--model", "scorecard")
    # then it trained on the export's leads with the store's verdicts as outcomes (the export alone has none)
    assert done.exit_code in (0, 3), done.output
    assert "already trained" not in done.output
    version = max(_versions(), key=int)
    run = mlflow.get_run(MlflowClient().get_model_version(registry.MODEL_NAME, version).run_id)
    assert run.data.params["retrain.source"] == "export" and run.data.params["retrain.export"] == str(export)
    assert run.data.metrics["feedback.verdicts"] == int(
        fb[S.OUTCOME].isin(["qualified", "disqualified"]).sum()
    )
    fp = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data_fingerprint.json")
    assert fp["n_leads"] == N_LEADS and fp["n_outcomes"] == len(fb) > 0
    # and the exit code is the gate's decision
    decision = json.loads(MlflowClient().get_model_version(registry.MODEL_NAME, version).tags["gate"])
    assert done.exit_code == (0 if decision["promote"] else 3)
    assert (registry.alias_version(registry.CHAMPION) == version) == decision["promote"]


def test_a_held_lock_stops_a_second_run_at_once(registry_env, demo_dataset, tmp_path):
    url = _store(tmp_path, "locked.db", demo_dataset, _slice(demo_dataset, 0, 50), None)
    before = (_versions(), _aliases())
    # given a retrain running elsewhere (it holds the lock in the store)
    engine = db.make_engine(url)
    held = locks.JobLock(engine, "retrain", holder="batch-host-2 pid 4242")
    held.acquire()
    try:
        # when another run starts
        done = _retrain("--database-url", url)
    finally:
        held.release()
        engine.dispose()
    # then it stops at once, naming the holder and since when, and does nothing
    assert done.exit_code == 1, done.output
    text = " ".join(done.output.split())
    assert "another retrain is running: held by batch-host-2 pid 4242 since" in text
    assert (_versions(), _aliases()) == before


def test_a_challenger_the_gate_refuses_is_registered_but_not_promoted(through_the_api):
    _, store_url, as_of, first, _, _ = through_the_api
    assert first.exit_code == 0 and registry.alias_version(registry.CHAMPION) == "1"
    n = len(_versions())
    # when a retrain asks for the other family on the same data (a tie never switches family; worse never
    # wins)
    done = _retrain("--database-url", store_url, "--as-of", as_of, "--model", "boosted")
    # then the challenger is registered with the gate's decision, the champion stays, and the exit code is 3
    assert done.exit_code == 3, done.output
    new = str(n + 1)
    gate = MlflowClient().get_model_version(registry.MODEL_NAME, new).tags["gate"]
    rule = json.loads(gate)["rule"]
    assert rule in ("worse", "worse_calibrated", "tie")
    assert _aliases() == {registry.CHAMPION: "1", registry.CHALLENGER: new}
    text = " ".join(done.output.split())
    assert f"kept the champion version 1 (rule {rule})" in text and f"version {new} stays challenger" in text


class _AliasFails(MlflowClient):
    """The real registry, whose alias call fails after the version was created (a registry outage mid-way)."""

    def set_registered_model_alias(self, *_args, **_kwargs):
        raise MlflowException("the registry went away")


def test_a_registration_that_fails_half_way_leaves_no_version(through_the_api):
    _, _, _, first, _, _ = through_the_api
    assert first.exit_code == 0
    before = (_versions(), _aliases())
    source = MlflowClient().get_model_version(registry.MODEL_NAME, "1").source
    decision = GateDecision(True, "better beyond noise", "new", rule="better")
    # when registering a version fails after the version was created
    with pytest.raises(MlflowException, match="the registry went away"):
        tracking.register_version(source, registry.MODEL_NAME, decision, _AliasFails(), {"data_sha256": "x"})
    # then the version is gone again (no version to promote without its decision) and no alias moved
    assert (_versions(), _aliases()) == before
