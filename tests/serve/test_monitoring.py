"""Monitoring: is the champion still right? On a real store (SQLite, and PostgreSQL for the queries) filled as
the service fills it: the session's champion scored demo leads (the score log keeps their feature values) and
sales gave verdicts. A population like the training one stays ok; a shifted one with a base-rate shift makes
the alerts fire and recommends a retrain; a lead whose horizon has not passed is not counted; a model
trained before histograms were stored has drift "unknown". The CLI writes the HTML and JSON reports."""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from leadscore.model.exploration import Exploration
from leadscore.serve import db
from leadscore.serve.metrics import Metrics
from leadscore.serve.monitoring import MonitorCache, monitor
from monitoring_store import give_verdicts, populate, store_leads
from support import log_scores, score_entry
from typer.testing import CliRunner

from leadscore.cli.main import app
from leadscore.settings import Settings, get_settings

WINDOW_DAYS = 180  # the demo's 4,000 leads are spread over 18 months: a month holds too few to judge
SETTINGS = Settings()


def _store(url: str, dataset, model, shifted: bool):
    db.migrate(url)
    engine = db.make_engine(url)
    populate(engine, dataset, model, shifted=shifted)
    return engine


@pytest.fixture(scope="module")
def stores(trained, demo_dataset, tmp_path_factory):
    """SQLite stores: one scored on the training population, one on a shifted population; their URLs."""
    tmp = tmp_path_factory.mktemp("monitoring")
    urls = {}
    for shifted in (False, True):
        urls[shifted] = f"sqlite:///{tmp / f'store-{int(shifted)}.db'}"
        _store(urls[shifted], demo_dataset, trained.result.model, shifted).dispose()
    return urls


def _report(url, model, now, **kw):
    engine = db.make_engine(url)
    try:
        return monitor(engine, model, SETTINGS, now=now, window_days=WINDOW_DAYS, **kw)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def calm(stores, trained, demo_dataset) -> dict:
    return _report(stores[False], trained.result.model, demo_dataset.snapshot_at.to_pydatetime())


def test_a_store_like_the_training_data_stays_ok(calm, trained):
    # given the champion's scores of leads like the ones it learned from, and what sales said about them
    report = calm
    c = report["checks"]
    # then every check is ok and no retrain is recommended
    assert {k: v["status"] for k, v in c.items()} == dict.fromkeys(c, "ok"), report["reasons"]
    assert report["retrain_recommended"] is False and report["reasons"] == []
    # and calibration rests on many leads, with the predicted and observed rates close
    cal = c["calibration"]
    assert cal["n"] >= SETTINGS.monitor_min_labeled and len(cal["deciles"]) == 10
    assert abs(cal["observed_rate"] - cal["predicted_rate"]) < 0.03 and cal["ece"] < SETTINGS.monitor_ece_warn
    # and every model feature has a PSI, all small
    assert set(c["drift"]["features"]) == set(trained.result.model.encoder.features)
    assert max(f["psi"] for f in c["drift"]["features"].values()) < SETTINGS.monitor_psi_warn
    assert c["volume"]["n"] == sum(d["n"] for d in c["volume"]["per_day"]) > 0
    json.dumps(report)  # JSON-ready as it is


def test_with_verdicts_only_for_handed_over_leads_calibration_weighs_what_sales_saw(
    calm, trained, demo_dataset, tmp_path
):
    # given the calm store's leads, but handed over by a strict policy (threshold 0.5) with exploration (30 %
    # of the leads below it) and a verdict only for the leads handed over; the score log records propensities
    model = replace(trained.result.model, policy=replace(trained.result.model.policy, threshold=0.5))
    url = f"sqlite:///{tmp_path / 'partial.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    try:
        populate(engine, demo_dataset, model, partial=Exploration(share=0.3, seed=1))
        report = monitor(
            engine, model, SETTINGS, now=demo_dataset.snapshot_at.to_pydatetime(), window_days=WINDOW_DAYS
        )
    finally:
        engine.dispose()
    cal, full = report["checks"]["calibration"], calm["checks"]["calibration"]
    # then the scores of leads not handed over at that moment are left out, not counted as "not qualified"
    assert cal["unlabelled_rows"] > 0 and cal["weighted"] is True
    assert cal["n"] + cal["unlabelled_rows"] == full["n"]
    # and the handed-over rows, weighted by their inverse propensity, give the figures of full feedback
    assert abs(cal["predicted_rate"] - full["predicted_rate"]) < 0.01
    assert abs(cal["observed_rate"] - full["observed_rate"]) < 0.01
    assert cal["status"] == full["status"] == "ok", cal["message"]


def test_postgresql_gives_the_same_report(database_url, calm, trained, demo_dataset):
    if database_url.startswith("sqlite"):
        pytest.skip("the SQLite report is the module's own (`calm`)")
    # given the same scores and feedback in PostgreSQL
    engine = _store(database_url, demo_dataset, trained.result.model, shifted=False)
    try:
        report = monitor(
            engine,
            trained.result.model,
            SETTINGS,
            now=demo_dataset.snapshot_at.to_pydatetime(),
            window_days=WINDOW_DAYS,
        )
    finally:
        engine.dispose()
    # then the store's queries give the same figures as on SQLite
    strip = {"generated_at"}
    assert {k: v for k, v in report.items() if k not in strip} == {
        k: v for k, v in calm.items() if k not in strip
    }


def test_shifted_inputs_and_a_base_rate_shift_fire_the_alerts(stores, trained, demo_dataset):
    # given leads from other sources, sizes and countries that do nothing on the site, and sales qualifying
    # 70 % of them
    report = _report(stores[True], trained.result.model, demo_dataset.snapshot_at.to_pydatetime())
    c = report["checks"]
    # then calibration, input drift, the score and the grade mix alert, and a retrain is recommended
    for check in ("calibration", "drift", "score", "grades"):
        assert c[check]["status"] == "alert", (check, c[check].get("message"))
    assert report["status"] == "alert" and report["retrain_recommended"] is True
    # with the reasons in words
    assert any(r.startswith("calibration: scores said") for r in report["reasons"])
    assert any("source" in r for r in report["reasons"] if r.startswith("drift:"))
    assert c["calibration"]["observed_rate"] > 0.6 > 0.2 > c["calibration"]["predicted_rate"]
    assert c["drift"]["features"]["source"]["status"] == "alert"


def test_a_base_rate_shift_alone_alerts_on_calibration_while_the_inputs_stay_ok(trained, tmp_path):
    # given a store of 2,000 leads from `leadscore demo-data --drift` (from 2026-01 on, leads move towards the
    # hand-over faster: the same kind of leads, qualified about twice as often), scored by the champion
    from leadscore.features.loading import load_dataset

    from leadscore.demo.generate import generate
    from leadscore.demo.params import DemoParams, DriftParams

    generate(tmp_path / "drift", 2000, seed=11, params=DemoParams(drift=DriftParams()))
    dataset = load_dataset(tmp_path / "drift")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = _store(url, dataset, trained.result.model, shifted=False)
    try:
        # when monitoring looks at the last 90 days (all after the shift)
        report = monitor(
            engine, trained.result.model, SETTINGS, now=dataset.snapshot_at.to_pydatetime(), window_days=90
        )
    finally:
        engine.dispose()
    c = report["checks"]
    # then calibration alerts (far more qualified than the scores said) and a retrain is recommended ...
    assert c["calibration"]["status"] == "alert", c["calibration"]["message"]
    assert c["calibration"]["observed_rate"] > 1.5 * c["calibration"]["predicted_rate"]
    assert report["retrain_recommended"] is True
    # ... while the inputs, the score and the grade mix stay ok: the case docs/monitoring.md sends to
    # `leadscore recalibrate`
    assert [c[k]["status"] for k in ("drift", "score", "grades")] == ["ok"] * 3, [
        c[k].get("message") for k in ("drift", "score", "grades")
    ]


def test_a_lead_counts_for_calibration_only_once_its_horizon_has_passed(engine, trained):
    # given three stored leads, each scored once and qualified by sales 5 days later: one scored 40 days
    # ago (horizon passed), one 10 days ago (horizon not passed), one scored after it was already decided
    model = trained.result.model
    now = datetime(2026, 3, 1, tzinfo=UTC)
    lead = {"lead_age_days": 3.0}
    features = dict.fromkeys(model.encoder.features) | lead
    rows = []
    cases = (("past", 40, 35), ("open", 10, 5), ("decided", 40, 45))  # lead, scored and verdict days ago
    with engine.begin() as conn:
        for lid, scored_days_ago, verdict_days_ago in cases:
            at = now - timedelta(days=scored_days_ago)
            store_leads(conn, [lid], at - timedelta(days=10), now)
            give_verdicts(conn, [lid], now - timedelta(days=verdict_days_ago), now)
            rows.append(score_entry(lid, at, grade="A", qualified=True, features=features))
    log_scores(engine, rows)
    # when monitoring looks at the last 30 days
    report = monitor(engine, model, Settings(monitor_min_labeled=1), now=now, window_days=30)
    cal = report["checks"]["calibration"]
    # then only the lead whose 30-day horizon has passed counts, as a positive
    assert cal["n"] == 1 and cal["positives"] == 1 and cal["observed_rate"] == 1.0
    # and with the minimum at its default, one lead is "not enough data", not an alert
    report = monitor(engine, model, SETTINGS, now=now, window_days=30)
    assert report["checks"]["calibration"]["status"] == "not enough data"
    assert report["checks"]["drift"]["status"] == "not enough data" and report["retrain_recommended"] is False


def _scored_leads(engine, model, now, leads: int, moments: int, positive_leads: int, prefix: str) -> float:
    """`leads` stored leads created 45 days before `now`, each scored alike at `moments` ages (1, 2, ...
    days), the first `positive_leads` qualified 20 days in (within every row's 30-day horizon); the
    probability."""
    features = dict.fromkeys(model.encoder.features) | {"lead_age_days": 3.0}
    created = now - timedelta(days=45)
    ids = [f"{prefix}{i}" for i in range(leads)]
    with engine.begin() as conn:
        store_leads(conn, ids, created, now)
        give_verdicts(conn, ids[:positive_leads], created + timedelta(days=20), now)
    low = {"probability": 0.1, "score": 10, "grade": "C", "features": features}
    log_scores(
        engine,
        [
            score_entry(lid, created + timedelta(days=1 + k, seconds=i), **low)
            for i, lid in enumerate(ids)
            for k in range(moments)
        ],
    )
    values = {
        k: np.array([v], dtype=object if k in model.encoder.categorical else float)
        for k, v in features.items()
    }
    return float(model.explain(values).probability[0])


def test_a_lead_scored_at_several_moments_counts_as_one_outcome_in_the_noise(engine, trained):
    # given 100 leads each scored at 10 moments (1,000 rows), as many qualified as the scores said plus 1.6
    # standard errors of a 100-lead rate: a deviation that chance gives one time in 20
    model = trained.result.model
    now = datetime(2026, 3, 1, tzinfo=UTC)
    p = _scored_leads(engine, model, now, leads=100, moments=10, positive_leads=0, prefix="probe")
    with engine.begin() as conn:
        conn.execute(sa.delete(db.score_log))
        conn.execute(sa.delete(db.leads))
    positives = round(100 * (p + 1.6 * np.sqrt(p * (1 - p) / 100)))
    _scored_leads(engine, model, now, leads=100, moments=10, positive_leads=positives, prefix="many")
    cal = monitor(engine, model, SETTINGS, now=now, window_days=30)["checks"]["calibration"]
    assert cal["n"] == 1000 and cal["positives"] == 10 * positives
    # then calibration stays ok: the 1,000 rows are 100 outcomes (the rate's z is about 1.6, not 5)
    assert abs(cal["rate_z"]) < 3 and cal["ece"] < cal["ece_noise"], cal
    assert cal["status"] == "ok", cal["message"]
    # while the same rates on 1,000 leads scored once each are beyond noise
    with engine.begin() as conn:
        conn.execute(sa.delete(db.score_log))
        conn.execute(sa.delete(db.feedback))
        conn.execute(sa.delete(db.leads))
    _scored_leads(engine, model, now, leads=1000, moments=1, positive_leads=10 * positives, prefix="once")
    cal = monitor(engine, model, SETTINGS, now=now, window_days=30)["checks"]["calibration"]
    assert cal["n"] == 1000 and abs(cal["rate_z"]) > 3 and cal["status"] in ("warn", "alert"), cal


def test_scores_logged_without_a_feature_the_champion_needs_are_not_enough_data(
    engine, trained, demo_dataset
):
    # given 300 scores in the window, logged by a model whose feature set lacks one of the champion's features
    model = trained.result.model
    missing = model.encoder.features[0]
    now = datetime(2026, 3, 1, tzinfo=UTC)
    values = model.info["distributions"]["features"]
    rows = []
    for i in range(300):
        features = {
            n: (
                spec["categories"][0]
                if spec["kind"] == "categorical"
                else (spec["edges"] or [0.0])[len(spec["edges"]) // 2]
            )
            for n, spec in values.items()
            if n != missing
        }
        at = now - timedelta(days=1, minutes=i)
        rows.append(
            score_entry(
                f"l{i}", at, model_version="0", probability=0.1, score=10, grade="C", features=features
            )
        )
    log_scores(engine, rows)
    report = monitor(engine, model, SETTINGS, now=now, window_days=30)
    c = report["checks"]
    # then that feature, the score and the grade mix have "not enough data" (no row holds every feature),
    # not an alert on zero rows, and no reason to retrain is given on them (the other, constant features
    # drift)
    assert (
        c["drift"]["features"][missing]["status"] == "not enough data"
        and c["drift"]["features"][missing]["n"] == 0
    )
    assert missing in c["drift"]["message"]
    assert c["score"]["status"] == c["grades"]["status"] == "not enough data", (c["score"], c["grades"])
    assert c["score"]["n"] == 0 and "every feature" in c["score"]["message"]
    assert not [r for r in report["reasons"] if r.startswith(("score:", "grades:")) or f"{missing} (PSI" in r]


def test_volume_and_coverage_count_every_score_and_only_stored_leads(engine, trained):
    # given 1,200 scores of 600 stored leads in the last 30 days (beyond a row cap of 1,000), the first 300
    # with a verdict, and a lead handed over 40 days ago that was never stored
    model = trained.result.model
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    features = dict.fromkeys(model.encoder.features)
    with engine.begin() as conn:
        store_leads(conn, [f"s{i}" for i in range(600)], now - timedelta(days=20), now)
        give_verdicts(conn, [f"s{i}" for i in range(300)], now - timedelta(days=1), now)
    low = {"probability": 0.1, "score": 10, "grade": "C", "features": features}
    rows = [score_entry(f"s{i % 600}", now - timedelta(days=i % 10, seconds=i), **low) for i in range(1200)]
    high = {"probability": 0.9, "score": 90, "grade": "A", "qualified": True, "features": features}
    rows.append(score_entry("unstored", now - timedelta(days=40), **high))
    log_scores(engine, rows)
    report = monitor(engine, model, Settings(monitor_max_rows=1000), now=now, window_days=30)
    volume, coverage = report["checks"]["volume"], report["checks"]["coverage"]
    # then volume counts all 1,200 scores, per day too, and coverage all 600 leads
    assert volume["n"] == sum(d["n"] for d in volume["per_day"]) == 1200
    assert {d["day"]: d["n"] for d in volume["per_day"]}["2026-03-01"] == 120
    assert (coverage["scored_leads"], coverage["with_verdict"], coverage["share"]) == (600, 300, 0.5)
    # and the unstored lead is not a handed-over lead due a verdict (it could never get one)
    assert coverage["handed_over_due"] == 0 and coverage["status"] == "not enough data"


def test_a_model_without_training_histograms_reports_drift_unknown(stores, trained, demo_dataset):
    # given a model trained before the histograms were stored (the old per-feature quantiles only)
    model = trained.result.model
    old = replace(model, info={**model.info, "distributions": {"score_deciles": [0.0] * 11, "features": {}}})
    report = _report(stores[False], old, demo_dataset.snapshot_at.to_pydatetime())
    c = report["checks"]
    # then drift is unknown, calibration is still judged, and nothing is recommended on the unknown
    assert c["drift"]["status"] == c["score"]["status"] == c["grades"]["status"] == "unknown"
    assert "retrain" in c["drift"]["message"]
    assert c["calibration"]["status"] == "ok" and report["retrain_recommended"] is False


def test_the_service_never_waits_for_a_report_and_refreshes_it_in_one_background_thread(engine, trained):
    # given the service's cache of the report, whose computation (the real `monitor`) we hold until released
    started, release, threads = threading.Event(), threading.Event(), []

    def held_monitor(*args, **kw):
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(60)
        return monitor(*args, **kw)

    state = SimpleNamespace(
        holder=SimpleNamespace(model=trained.result.model),
        engine=engine,
        settings=Settings(monitor_cache_seconds=3600),
    )
    cache = MonitorCache(state, compute=held_monitor)
    # before the first report exists, /metrics and the page get nothing at once ("computing") ...
    assert cache.peek() is None
    assert started.wait(60)
    # ... while one background thread computes it: asking again starts no second one
    assert cache.peek() is None and cache.peek() is None
    release.set()
    cache.wait_refresh(60)
    assert threads == ["leadscore-monitoring"]
    first = cache.peek()
    assert first is not None and first["model"]["version"] == trained.result.model.version
    assert cache.peek() is first and len(threads) == 1  # fresh: no refresh
    # when the report is stale, it is still served at once while a refresh runs in the background
    state.settings = Settings(monitor_cache_seconds=0)
    started.clear()
    release.clear()
    assert cache.peek() is first
    assert started.wait(60) and cache.peek() is first
    release.set()
    cache.wait_refresh(60)
    assert len(threads) == 2 and cache.peek() is not first
    cache.wait_refresh(60)
    # with the background refresh off, nothing computes until GET /v1/monitoring asks (in its own thread)
    idle = MonitorCache(
        SimpleNamespace(holder=state.holder, engine=engine, settings=Settings(monitor_refresh=False)),
        compute=held_monitor,
    )
    before = len(threads)
    assert idle.peek() is None and idle.peek() is None and len(threads) == before
    report = idle.get()
    assert threads[before:] == [threading.current_thread().name] and idle.peek() is report


def test_the_gauges_are_the_last_reports_figures_and_drop_what_it_lacks(calm):
    # given the gauges of a report
    metrics = Metrics()
    metrics.observe_monitoring(calm)
    value = metrics.registry.get_sample_value
    c = calm["checks"]
    # then they hold its figures
    assert value("leadscore_monitor_retrain_recommended") == 0
    assert value("leadscore_monitor_window_scores") == c["volume"]["n"]
    assert value("leadscore_monitor_feedback_coverage") == pytest.approx(c["coverage"]["share"])
    assert value("leadscore_monitor_calibration", {"figure": "ece"}) == pytest.approx(c["calibration"]["ece"])
    for name, entry in c["drift"]["features"].items():
        assert value("leadscore_monitor_feature_psi", {"feature": name}) == pytest.approx(entry["psi"])
    # when the next report is of a champion with other features, calibration without figures, no coverage
    later = copy.deepcopy(calm)
    later["checks"]["drift"]["features"] = {
        "new_feature": {**next(iter(c["drift"]["features"].values())), "psi": 0.5}
    }
    later["checks"]["calibration"] = {"status": "not enough data", "n": 0}
    later["checks"]["coverage"].update(share=None)
    metrics.observe_monitoring(later)
    # then the former features' PSI and the missing calibration figures are gone, not left at their old values
    text = metrics.render().decode()
    assert value("leadscore_monitor_feature_psi", {"feature": "new_feature"}) == 0.5
    assert all(f'feature="{name}"' not in text for name in c["drift"]["features"])
    assert value("leadscore_monitor_calibration", {"figure": "ece"}) is None
    assert value("leadscore_monitor_calibration", {"figure": "rows"}) == 0
    assert np.isnan(value("leadscore_monitor_feedback_coverage"))


@pytest.fixture
def champion_env(trained, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    monkeypatch.setenv("LEADSCORE_MODEL_URI", f"models:/leadscore/{trained.tracked.version}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_cli_writes_the_html_and_json_reports(stores, demo_dataset, champion_env, tmp_path):
    snapshot = demo_dataset.snapshot_at.isoformat()
    html_path, json_path = tmp_path / "report.html", tmp_path / "report.json"
    # when monitor runs on the shifted store
    done = CliRunner().invoke(
        app,
        [
            "monitor",
            "--database-url",
            stores[True],
            "--window",
            f"{WINDOW_DAYS}d",
            "--as-of",
            snapshot,
            "--out",
            str(html_path),
            "--json",
            str(json_path),
        ],
        catch_exceptions=False,
    )
    # then it exits 3 (retrain recommended) and says why
    assert done.exit_code == 3, done.output
    assert "retrain recommended" in done.output and "calibration" in done.output
    # and the JSON is the report, the HTML page has the reliability diagram, PSI bars and score distribution
    report = json.loads(json_path.read_text())
    assert report["retrain_recommended"] is True and report["window_days"] == WINDOW_DAYS
    assert report["checks"]["drift"]["status"] == "alert"
    page = html_path.read_text()
    assert page.count("data:image/png") == 3 and "Retrain recommended" in page
    # and a bad window is refused with the reason
    bad = CliRunner().invoke(app, ["monitor", "--database-url", stores[False], "--window", "a month"])
    assert bad.exit_code == 1 and "--window" in bad.output
    # and so is a window beyond the settings' limit (ten years), with a message rather than a traceback
    huge = CliRunner().invoke(app, ["monitor", "--database-url", stores[False], "--window", "99999999999d"])
    assert huge.exit_code == 1 and isinstance(huge.exception, SystemExit), huge.exception
    assert "--window" in huge.output and "longer than 3650 days" in huge.output


def test_the_service_reports_monitoring_to_sales_and_admin_and_in_metrics(server):
    # given the running service (its store holds what the other tests sent)
    for role, status in (("scorer", 403), ("sales", 200), ("admin", 200)):
        with server.client(role) as c:
            r = c.get("/v1/monitoring")
        assert r.status_code == status, (role, r.text)
    assert httpx.get(f"{server.url}/v1/monitoring").status_code == 401
    body = r.json()
    assert set(body["checks"]) == {"calibration", "drift", "score", "grades", "volume", "coverage"}
    assert body["model"]["version"] == "1" and isinstance(body["retrain_recommended"], bool)
    # the registered champion kept its training histograms: drift is judged, not "unknown"
    assert body["checks"]["drift"]["status"] != "unknown"
    # and the same figures are Prometheus gauges
    text = httpx.get(f"{server.url}/metrics").text
    assert 'leadscore_monitor_status{check="calibration"}' in text
    assert "leadscore_monitor_retrain_recommended" in text and "leadscore_monitor_window_scores" in text
