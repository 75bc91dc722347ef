"""The v1 API against a real `leadscore serve` process: endpoints, the role matrix, validation and errors."""

from __future__ import annotations

import copy
import math
import time
from datetime import UTC

import httpx
import pytest

pytestmark = pytest.mark.slow
# the test keys the shared `server` fixture runs with (tests/conftest.py), role -> key
KEYS = {"scorer": "sc_test_key_0001", "sales": "sa_test_key_0001", "admin": "ad_test_key_0001"}


@pytest.fixture(scope="module")
def example(server) -> dict:
    with server.client("scorer") as c:
        return c.get("/v1/model").json()["example"]


def _lead(example: dict, lead_id: str, **over) -> dict:
    lead = copy.deepcopy(example["leads"][0])
    lead["lead_id"] = lead_id
    lead.update(over)
    return lead


def _wait_for(fn, timeout: float = 10.0):
    """Poll `fn` until it returns something truthy (the score log is written in background batches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    return fn()


def _settled(count, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """Wait until `count()` is above 0 and has not changed for `quiet` seconds (background rescores); the
    count."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since >= quiet:
            return now
    return last


def _is_error_list(body: dict) -> bool:
    return isinstance(body.get("detail"), list) and all({"field", "reason"} <= set(d) for d in body["detail"])


# --- scoring -----------------------------------------------------------------------------------------------
def test_stateless_score_has_probability_grade_and_top_reasons(server, example):
    # given the model's own example lead
    with server.client("scorer") as c:
        # when it is scored
        r = c.post("/v1/score", json=example)
    # then every result field is there, with at most 5 positive then at most 5 negative reasons
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "leadscore", "version": "1"}
    (res,) = body["results"]
    assert res["lead_id"] == example["leads"][0]["lead_id"]
    assert 0 <= res["probability"] <= 1 and res["score"] == round(100 * res["probability"])
    assert res["grade"] in "ABCD" and isinstance(res["qualified"], bool)
    impacts = [x["impact"] for x in res["reasons"]]
    pos, neg = [i for i in impacts if i > 0], [i for i in impacts if i < 0]
    assert impacts == pos + neg and len(pos) <= 5 and len(neg) <= 5 and pos
    assert pos == sorted(pos, reverse=True) and neg == sorted(neg)
    assert all({"feature", "value", "impact", "text"} <= set(x) for x in res["reasons"])
    assert "explanation" not in res or res["explanation"] is None


def test_explain_full_contributions_and_base_add_up_to_the_logit(server, example):
    # given a lead, when it is scored with ?explain=full
    with server.client("scorer") as c:
        res = c.post("/v1/score", params={"explain": "full"}, json=example).json()["results"][0]
        features = c.get("/v1/model").json()["features"]
    ex = res["explanation"]
    # then every feature has a contribution, and base + contributions is the logit of the probability
    assert set(ex["contributions"]) == set(features)
    assert math.isclose(ex["base"] + sum(ex["contributions"].values()), ex["logit"], abs_tol=1e-9)
    assert math.isclose(1 / (1 + math.exp(-ex["logit"])), res["probability"], rel_tol=1e-9)
    # and each reason's impact is the exact sum of its group's contributions (a channel over its windows)
    from leadscore.model.reason_groups import reason_group

    for reason in res["reasons"]:
        group = reason_group(reason["feature"])
        total = sum(c for f, c in ex["contributions"].items() if reason_group(f) == group)
        assert math.isclose(reason["impact"], total, abs_tol=1e-6)


def test_score_log_keeps_the_features_the_model_was_given_and_the_reasons_served(server, example, trained):
    # given a lead scored at a fixed moment
    import sqlalchemy as sa
    from leadscore.features.live import lead_features, to_ms

    lead = _lead(example, "api-snapshot-1")
    with server.client("scorer") as c:
        served = c.post("/v1/score", json={"leads": [lead]}).json()["results"][0]
    # when its score-log row is read from the service's database (written in the background)
    from leadscore.serve import store

    engine = sa.create_engine(server.env["LEADSCORE_DATABASE_URL"])
    logged = _wait_for(lambda: store.score_history(engine, "api-snapshot-1"))[0]
    engine.dispose()
    # then it holds every feature exactly as computed for that moment (missing ones as null) and the reasons
    # as they were served, with the model version
    values = lead_features([lead], [to_ms(lead["as_of"])])
    expected = {
        name: (None if isinstance(v, float) and math.isnan(v) else v)
        for name, v in ((n, values[n].tolist()[0]) for n in trained.result.model.encoder.features)
    }
    assert logged["features"] == expected and list(logged["features"]) == list(expected)
    assert logged["reasons"] == served["reasons"]
    assert (logged["model_version"], logged["score"]) == ("1", served["score"])


def test_many_leads_in_one_request_score_like_one_at_a_time(server, example):
    # given 40 leads that differ by their events
    base = example["leads"][0]
    leads = [
        _lead(example, f"api-many-{i}", events=base["events"][: i % (len(base["events"]) + 1)])
        for i in range(40)
    ]
    with server.client("scorer") as c:
        # when they are scored together and one by one
        together = c.post("/v1/score", json={"leads": leads}).json()["results"]
        alone = [c.post("/v1/score", json={"leads": [lead]}).json()["results"][0] for lead in leads[:5]]
    # then the results are the same, in request order
    assert [r["lead_id"] for r in together] == [lead["lead_id"] for lead in leads]
    assert [r["probability"] for r in together[:5]] == [r["probability"] for r in alone]


def test_stored_lead_scores_like_the_same_lead_sent_stateless(server, example):
    # given a lead stored with PUT /v1/leads and its events appended with POST /v1/events
    lead = _lead(example, "api-stored-1")
    with server.client("scorer") as c:
        put = c.put(
            f"/v1/leads/{lead['lead_id']}",
            json={"created_at": lead["created_at"], "attributes": lead["attributes"]},
        )
        assert put.status_code == 200 and put.json()["created"] is True
        ev = c.post(
            "/v1/events", json={"events": [{"lead_id": lead["lead_id"], **e} for e in lead["events"]]}
        )
        assert ev.status_code == 201 and ev.json()["stored"] == len(lead["events"])
        # when it is scored by lead_id and stateless at the same moment
        by_id = c.post("/v1/score", json={"leads": [{"lead_id": lead["lead_id"], "as_of": lead["as_of"]}]})
        stateless = c.post("/v1/score", json={"leads": [lead]})
        # then both give the same score and reasons
        assert by_id.status_code == 200, by_id.text
        assert by_id.json()["results"][0]["probability"] == stateless.json()["results"][0]["probability"]
        assert by_id.json()["results"][0]["reasons"] == stateless.json()["results"][0]["reasons"]
        # and an update keeps one lead
        again = c.put(
            f"/v1/leads/{lead['lead_id']}", json={"created_at": lead["created_at"], "attributes": {}}
        )
        assert again.json()["created"] is False


def test_lead_page_has_latest_score_history_and_trend(server, example):
    # given a stored lead scored early in its life (few events) and then later (all its events)
    lead = _lead(example, "api-trend-1")
    with server.client("scorer") as c:
        c.put(
            f"/v1/leads/{lead['lead_id']}",
            json={"created_at": lead["created_at"], "attributes": lead["attributes"]},
        )
        c.post("/v1/events", json={"events": [{"lead_id": lead["lead_id"], **e} for e in lead["events"]]})

        # (the service rescores the stored lead after each write, as of now: let those scores land first)
        def history() -> int:
            return len(c.get(f"/v1/leads/{lead['lead_id']}").json()["history"])

        base = _settled(history)
        first = c.post(
            "/v1/score", json={"leads": [{"lead_id": lead["lead_id"], "as_of": lead["created_at"]}]}
        )
        _wait_for(lambda: history() > base)
        second = c.post("/v1/score", json={"leads": [{"lead_id": lead["lead_id"], "as_of": lead["as_of"]}]})
    s1, s2 = first.json()["results"][0]["score"], second.json()["results"][0]["score"]
    # when sales reads the lead
    with server.client("sales") as c:

        def two_scores():
            p = c.get(f"/v1/leads/{lead['lead_id']}").json()
            return p if len(p["history"]) >= base + 2 else None

        page = _wait_for(two_scores)
    # then the latest score, the history (newest first) and the trend agree with what was served
    assert page["latest"]["score"] == s2 and [h["score"] for h in page["history"][:2]] == [s2, s1]
    expected = "improving" if s2 - s1 > 3 else "declining" if s1 - s2 > 3 else "steady"
    assert page["trend"] == expected
    assert page["latest"]["reasons"] == second.json()["results"][0]["reasons"]
    assert page["attributes"]["source"] == lead["attributes"].get("source")


def test_review_list_filters_by_grade_and_limits(server, example):
    # given a few scored leads
    with server.client("scorer") as c:
        c.post("/v1/score", json={"leads": [_lead(example, f"api-list-{i}") for i in range(3)]})
    with server.client("sales") as c:
        everything = _wait_for(lambda: c.get("/v1/leads", params={"limit": 1000}).json()["leads"])
        grade = everything[0]["grade"]
        # when the list is filtered by a grade and limited
        only = c.get("/v1/leads", params={"grade": grade, "limit": 2}).json()["leads"]
        future = c.get("/v1/leads", params={"since": "2099-01-01T00:00:00Z"}).json()["leads"]
    # then only that grade comes back, highest first, each with a trend; nothing was scored in the future
    assert 1 <= len(only) <= 2 and all(x["grade"] == grade for x in only)
    assert [x["probability"] for x in everything] == sorted(
        (x["probability"] for x in everything), reverse=True
    )
    assert all(x["trend"] in ("improving", "steady", "declining") for x in everything)
    assert future == []


# --- feedback ----------------------------------------------------------------------------------------------
def test_feedback_retried_with_the_same_key_is_stored_once(server):
    # given a stored lead and a feedback with an idempotency key
    fb = {
        "lead_id": "api-fb-1",
        "outcome": "disqualified",
        "reason": "no_budget",
        "note": "call back in Q3",
        "at": "2024-05-01T10:00:00Z",
        "idempotency_key": "api-fb-1-key",
    }
    _store(server, "api-fb-1")
    with server.client("sales") as c:
        # when it is sent twice
        first, retry = c.post("/v1/feedback", json=fb), c.post("/v1/feedback", json=fb)
        # and the key is reused for a different feedback
        clash = c.post("/v1/feedback", json={**fb, "outcome": "won", "reason": None})
        stored = c.get("/v1/feedback", params={"lead_id": "api-fb-1"}).json()
    # then it is stored once, the retry says so, and the clash is refused
    assert first.status_code == 201 and first.json()["duplicate"] is False
    assert (
        retry.status_code == 201
        and retry.json()["duplicate"] is True
        and retry.json()["id"] == first.json()["id"]
    )
    assert clash.status_code == 409 and clash.json()["detail"][0]["field"] == "idempotency_key"
    assert len(stored) == 1 and stored[0]["outcome"] == "disqualified" and stored[0]["source"] == "api"


def _store(server, lead_id: str) -> None:
    with server.client("scorer") as c:
        assert c.put(f"/v1/leads/{lead_id}", json={"created_at": "2024-04-01T00:00:00Z"}).status_code in (
            200,
            201,
        )


def test_feedback_for_a_lead_the_store_never_saw_is_refused_naming_the_lead_and_the_fix(server):
    # given a lead that was only ever scored with its data inline, never stored
    with server.client("scorer") as c:
        scored = c.post(
            "/v1/score",
            json={
                "leads": [
                    {
                        "lead_id": "api-inline-1",
                        "created_at": "2024-04-01T00:00:00Z",
                        "attributes": {},
                        "events": [],
                    }
                ]
            },
        )
    assert scored.status_code == 200
    # when sales sends feedback for it, with and without an idempotency key
    with server.client("sales") as c:
        refused = [
            c.post("/v1/feedback", json={"lead_id": "api-inline-1", "outcome": "won", **extra})
            for extra in ({}, {"idempotency_key": "api-inline-1-key"})
        ]
        stored = c.get("/v1/feedback", params={"lead_id": "api-inline-1"}).json()
    # then it is a 404 naming the lead and saying to store it first, and nothing is stored
    for r in refused:
        assert r.status_code == 404, r.text
        [d] = r.json()["detail"]
        assert (
            d["field"] == "lead_id"
            and "'api-inline-1'" in d["reason"]
            and "PUT /v1/leads/api-inline-1 " in d["reason"]
        )
    assert stored == []
    # and once the lead is stored, the same feedback is taken
    _store(server, "api-inline-1")
    with server.client("sales") as c:
        assert c.post("/v1/feedback", json={"lead_id": "api-inline-1", "outcome": "won"}).status_code == 201


def test_feedback_reason_only_with_disqualified(server):
    with server.client("sales") as c:
        r = c.post("/v1/feedback", json={"lead_id": "api-fb-2", "outcome": "won", "reason": "spam"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "reason"


# --- model, health, metrics ---------------------------------------------------------------------------------
def test_model_endpoint_describes_version_policy_and_features(server):
    with server.client("sales") as c:
        m = c.get("/v1/model").json()
    assert m["version"] == "1" and m["alias"] == "champion"
    assert {"kind", "threshold", "grade_cutoffs"} <= set(m["policy"])
    assert m["features"] and m["definition"]


def test_health_ready_and_metrics(server, example):
    with server.client("scorer") as c:
        c.post("/v1/score", json=example)
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"model": True, "database": True}
    text = httpx.get(f"{server.url}/metrics").text
    assert 'leadscore_requests_total{method="POST",route="/v1/score",status="200"}' in text
    assert "leadscore_request_seconds_bucket" in text and "leadscore_score_count" in text
    assert "leadscore_model_version 1.0" in text
    # no webhook URL (pull only): no pending gauge, which would only grow
    assert "leadscore_webhook_pending_events" not in text


def test_admin_reload_with_the_same_champion_changes_nothing(server):
    with server.client("admin") as c:
        r = c.post("/v1/admin/reload")
    assert r.status_code == 200 and r.json()["changed"] is False and r.json()["version"] == "1"


# --- roles -------------------------------------------------------------------------------------------------
ENDPOINTS = {
    "score": ("POST", "/v1/score", None),
    "put_lead": ("PUT", "/v1/leads/api-role-1", {"created_at": "2024-01-01T00:00:00Z", "attributes": {}}),
    "events": (
        "POST",
        "/v1/events",
        {
            "events": [
                {
                    "lead_id": "api-role-1",
                    "type": "web_visit",
                    "timestamp": "2024-01-02T00:00:00Z",
                    "page": "pricing",
                }
            ]
        },
    ),
    "get_lead": ("GET", "/v1/leads/api-role-1", None),
    "list_leads": ("GET", "/v1/leads", None),
    "feedback": ("POST", "/v1/feedback", {"lead_id": "api-role-1", "outcome": "qualified"}),
    "model": ("GET", "/v1/model", None),
    "monitoring": ("GET", "/v1/monitoring", None),
    "reload": ("POST", "/v1/admin/reload", None),
}
ALLOWED = {
    "scorer": {"score", "put_lead", "events", "get_lead", "list_leads", "model"},
    "sales": {"get_lead", "list_leads", "feedback", "model", "monitoring"},
    "admin": set(ENDPOINTS),
}


@pytest.mark.parametrize("role", ["scorer", "sales", "admin"])
def test_role_matrix(server, example, role):
    # given a key of `role`; the lead the calls touch exists (stored by the scorer first)
    with server.client("scorer") as c:
        c.put("/v1/leads/api-role-1", json=ENDPOINTS["put_lead"][2])
    statuses = {}
    with server.client(role) as c:
        for name, (method, path, body) in ENDPOINTS.items():
            # when it calls every endpoint
            r = c.request(method, path, json=example if name == "score" else body)
            statuses[name] = r.status_code
            if r.status_code == 403:
                assert _is_error_list(r.json()) and r.json()["detail"][0]["field"] == "authorization"
    # then exactly its endpoints answer, the others say 403
    assert {n for n, s in statuses.items() if s < 400} == ALLOWED[role], statuses
    assert {n for n, s in statuses.items() if s == 403} == set(ENDPOINTS) - ALLOWED[role], statuses


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-real-key-000"},
        {"Authorization": f"Basic {KEYS['admin']}"},
        {"X-API-Key": "wrong-key-000"},
    ],
)
def test_without_a_valid_key_every_endpoint_answers_401(server, headers):
    for method, path, body in ENDPOINTS.values():
        r = httpx.request(method, f"{server.url}{path}", json=body or {}, headers=headers)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer" and _is_error_list(r.json())


def test_x_api_key_header_is_accepted(server):
    r = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": KEYS["sales"]})
    assert r.status_code == 200


def test_keys_never_appear_in_the_log(server, example):
    # given requests with valid keys, wrong keys and bad bodies
    for key in KEYS.values():
        httpx.post(f"{server.url}/v1/score", json={"leads": []}, headers={"Authorization": f"Bearer {key}"})
    httpx.post(f"{server.url}/v1/score", json=example, headers={"Authorization": "Bearer sc_test_key_0002"})
    # then the service log never contains a key
    text = server.log.read_text()
    assert text and not any(k in text for k in (*KEYS.values(), "sc_test_key_0002"))


# --- validation ---------------------------------------------------------------------------------------------
def _bad_score_bodies(example):
    lead = example["leads"][0]
    ev = {"type": "web_visit", "timestamp": "2024-01-02T00:00:00Z", "page": "pricing"}
    return {
        "no leads": ({"leads": []}, "leads"),
        "1001 leads": ({"leads": [{"lead_id": f"x{i}"} for i in range(1001)]}, "leads"),
        "lead_id too long": ({"leads": [{**lead, "lead_id": "x" * 129}]}, "leads.0.lead_id"),
        "lead_id with spaces": ({"leads": [{**lead, "lead_id": "a b"}]}, "leads.0.lead_id"),
        "unknown event type": (
            {"leads": [{**lead, "events": [{**ev, "type": "telepathy"}]}]},
            "leads.0.events.0.type",
        ),
        "unknown page": ({"leads": [{**lead, "events": [{**ev, "page": "moon"}]}]}, "leads.0.events.0.page"),
        "timestamp in 1990": (
            {"leads": [{**lead, "events": [{**ev, "timestamp": "1990-01-01T00:00:00Z"}]}]},
            "leads.0.events.0.timestamp",
        ),
        "timestamp not a time": ({"leads": [{**lead, "created_at": "yesterday"}]}, "leads.0.created_at"),
        # year 1 with a positive offset is before year 1 in UTC: converting it overflows (found by the fuzz
        # test)
        "as_of before year 1 in UTC": (
            {"leads": [{**lead, "as_of": "0001-01-01T00:00:00+00:10"}]},
            "leads.0.as_of",
        ),
        "created_at past year 9999 in UTC": (
            {"leads": [{**lead, "created_at": "9999-12-31T23:59:59-01:00"}]},
            "leads.0.created_at",
        ),
        "attribute too long": (
            {"leads": [{**lead, "attributes": {"country": "x" * 201}}]},
            "leads.0.attributes.country",
        ),
        "control character": (
            {"leads": [{**lead, "attributes": {"country": "a\u0000b"}}]},
            "leads.0.attributes.country",
        ),
        "unknown field": ({"leads": [{**lead, "colour": "red"}]}, "leads.0.colour"),
        "events without created_at": ({"leads": [{"lead_id": "x1", "events": []}]}, "leads.0.created_at"),
        "attribute not a string": (
            {"leads": [{**lead, "attributes": {"country": 12}}]},
            "leads.0.attributes.country",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_score_bodies({"leads": [{"lead_id": "x", "events": []}]})))
def test_bad_score_bodies_get_422_naming_the_field(server, example, case):
    body, field = _bad_score_bodies(example)[case]
    with server.client("scorer") as c:
        r = c.post("/v1/score", json=body)
    assert r.status_code == 422, r.text
    assert _is_error_list(r.json()) and field in [d["field"] for d in r.json()["detail"]], r.json()


@pytest.mark.parametrize(
    "raw",
    [
        '{"leads": [{"lead_id": "x", "created_at": NaN}]}',
        '{"leads": [{"lead_id": "x", "created_at": 1e400}]}',
        '{"leads": [{"lead_id": "x", "created_at": Infinity}]}',
        '{"leads": ',
        "not json",
        "[1, 2]",
    ],
)
def test_non_finite_numbers_and_broken_json_get_422(server, raw):
    with server.client("scorer") as c:
        r = c.post("/v1/score", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and _is_error_list(r.json()), r.text


def test_unknown_stored_lead_gets_404_naming_it(server):
    with server.client("scorer") as c:
        r = c.post("/v1/score", json={"leads": [{"lead_id": "api-never-stored"}]})
    assert r.status_code == 404 and r.json()["detail"][0]["field"] == "leads.0.lead_id"


def test_events_for_an_unknown_lead_are_refused(server):
    with server.client("scorer") as c:
        r = c.post(
            "/v1/events",
            json={
                "events": [
                    {"lead_id": "api-nobody", "type": "web_visit", "timestamp": "2024-01-01T00:00:00Z"}
                ]
            },
        )
    assert r.status_code == 404 and r.json()["detail"][0]["field"] == "events.0.lead_id"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"lead_id": "x", "outcome": "maybe"}, "outcome"),
        ({"lead_id": "x", "outcome": "disqualified", "reason": "too tall"}, "reason"),
        ({"lead_id": "x", "outcome": "won", "at": "1999-12-31T23:59:59Z"}, "at"),
        ({"lead_id": "x", "outcome": "won", "at": "2099-01-01T00:00:00Z"}, "at"),
        ({"lead_id": "x", "outcome": "won", "note": "fine \u202eenil"}, "note"),
        ({"lead_id": "x", "outcome": "won", "note": "C1 \x85 next line"}, "note"),
        ({"lead_id": "x", "outcome": "won", "note": "n" * 2001}, "note"),
        ({"lead_id": "x", "outcome": "won", "idempotency_key": "k" * 129}, "idempotency_key"),
        ({"outcome": "won"}, "lead_id"),
    ],
)
def test_bad_feedback_gets_422_naming_the_field(server, body, field):
    with server.client("sales") as c:
        r = c.post("/v1/feedback", json=body)
    assert r.status_code == 422 and field in [d["field"] for d in r.json()["detail"]], r.text


@pytest.mark.parametrize(
    "params,field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 100000}, "limit"),
        ({"grade": "E"}, "grade"),
        ({"since": "not-a-time"}, "since"),
        ({"sort": "newest"}, "sort"),
    ],
)
def test_bad_list_queries_get_422(server, params, field):
    with server.client("sales") as c:
        r = c.get("/v1/leads", params=params)
    assert r.status_code == 422 and field in [d["field"] for d in r.json()["detail"]], r.text


def test_body_over_the_limit_gets_413(server):
    # given a body over the 5 MB limit, with and without a Content-Length (streamed in chunks)
    big = b'{"leads": [' + b" " * 5_100_000 + b"]}"
    with server.client("scorer") as c:
        r = c.post("/v1/score", content=big, headers={"Content-Type": "application/json"})
        streamed = c.post(
            "/v1/score",
            content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
            headers={"Content-Type": "application/json"},
        )
        events = c.post("/v1/events", content=big, headers={"Content-Type": "application/json"})
    # then all are refused with 413 and the field-reason body (scoring and every other route alike)
    for resp in (r, streamed, events):
        assert resp.status_code == 413 and resp.json()["detail"][0]["field"] == "body"


def test_unknown_path_is_404_with_the_error_format(server):
    r = httpx.get(f"{server.url}/v1/nothing-here")
    assert r.status_code == 404 and _is_error_list(r.json())


# --- stored data: integrity ------------------------------------------------------------------------------
def _in(minutes: float) -> str:
    from datetime import datetime, timedelta

    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def test_facts_dated_in_the_future_are_refused_naming_the_field(server):
    # given a lead, events and feedback dated next year, and the same a minute ahead (a client's clock skew)
    with server.client("scorer") as c, server.client("sales") as s:
        lead = c.put("/v1/leads/api-future-1", json={"created_at": _in(60 * 24 * 365)})
        ok_lead = c.put("/v1/leads/api-future-1", json={"created_at": _in(1)})
        events = c.post(
            "/v1/events",
            json={
                "events": [
                    {"lead_id": "api-future-1", "type": "web_visit", "timestamp": _in(1)},
                    {"lead_id": "api-future-1", "type": "web_visit", "timestamp": _in(10)},
                ]
            },
        )
        feedback = s.post("/v1/feedback", json={"lead_id": "api-future-1", "outcome": "won", "at": _in(10)})
        ok_feedback = s.post("/v1/feedback", json={"lead_id": "api-future-1", "outcome": "won", "at": _in(1)})
    # then each future moment is a 422 naming its field, and a moment within the allowance is taken
    assert lead.status_code == 422 and [d["field"] for d in lead.json()["detail"]] == ["created_at"], (
        lead.text
    )
    assert "future" in lead.json()["detail"][0]["reason"]
    assert events.status_code == 422 and [d["field"] for d in events.json()["detail"]] == [
        "events.1.timestamp"
    ]
    assert feedback.status_code == 422 and [d["field"] for d in feedback.json()["detail"]] == ["at"]
    assert ok_lead.status_code == 200 and ok_feedback.status_code == 201, (ok_lead.text, ok_feedback.text)


@pytest.mark.parametrize(
    "text", ["Boss\u202egnp.exe", "\u2066isolate\u2069", "C\x85EO", "\x9bCEO", "tab\there", "del\x7f"]
)
def test_control_and_bidi_characters_are_refused_in_free_text(server, example, text):
    # given an attribute with a control character or a bidirectional override
    lead = _lead(example, "api-bidi-1", attributes={"job_title": text})
    with server.client("scorer") as c:
        # when the lead is stored or scored
        put = c.put(
            "/v1/leads/api-bidi-1",
            json={"created_at": "2024-01-01T00:00:00Z", "attributes": {"job_title": text}},
        )
        scored = c.post("/v1/score", json={"leads": [lead]})
    # then both answer 422 naming the field
    assert put.status_code == 422 and [d["field"] for d in put.json()["detail"]] == ["attributes.job_title"]
    assert scored.status_code == 422 and "leads.0.attributes.job_title" in [
        d["field"] for d in scored.json()["detail"]
    ]


def test_feedback_key_reused_with_another_note_is_a_conflict(server):
    fb = {
        "lead_id": "api-fb-3",
        "outcome": "qualified",
        "note": "first call",
        "idempotency_key": "api-fb-3-key",
    }
    _store(server, "api-fb-3")
    with server.client("sales") as c:
        first, retry = c.post("/v1/feedback", json=fb), c.post("/v1/feedback", json=fb)
        clash = c.post("/v1/feedback", json={**fb, "note": "second call"})
    assert first.status_code == 201 and retry.json()["duplicate"] is True
    assert clash.status_code == 409 and clash.json()["detail"][0]["field"] == "idempotency_key"


def test_concurrent_puts_and_the_event_cap_on_a_real_server(database_url, trained, tmp_path, start_server):
    # given the service on each database, with at most 5 stored events per lead
    from concurrent.futures import ThreadPoolExecutor

    server = start_server(
        tmp_path, trained.uri, database_url, extra_env={"LEADSCORE_MAX_EVENTS_PER_LEAD": "5"}
    )
    try:
        # when 16 clients PUT each of 10 new leads at once
        def put(i: int) -> int:
            with server.client("scorer") as c:
                return c.put(
                    f"/v1/leads/api-race-{i % 10}", json={"created_at": "2024-01-01T00:00:00Z"}
                ).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(put, range(160)))
        # then every PUT succeeded
        assert statuses == [200] * 160
        with server.client("scorer") as c:
            # and events beyond the cap are refused whole, naming the lead's first event in the batch
            ev = [
                {"lead_id": "api-race-1", "type": "web_visit", "timestamp": f"2024-01-0{d}T00:00:00Z"}
                for d in range(2, 8)
            ]
            assert c.post("/v1/events", json={"events": ev[:4]}).status_code == 201
            over = c.post("/v1/events", json={"events": [{**ev[0], "lead_id": "api-race-2"}, *ev[4:]]})
            assert over.status_code == 422, over.text
            assert over.json()["detail"][0]["field"] == "events.1.lead_id"
            assert "LEADSCORE_MAX_EVENTS_PER_LEAD" in over.json()["detail"][0]["reason"]
            assert c.post("/v1/events", json={"events": ev[4:5]}).status_code == 201
    finally:
        server.stop()


def test_readiness_without_a_database_names_no_host_driver_or_error(trained, tmp_path):
    # given the service whose database has become unreachable (PostgreSQL on a closed port)
    import logging

    from fastapi.testclient import TestClient
    from leadscore.serve import db
    from leadscore.serve.app import create_app
    from support import KEYS_ENV, free_port

    from leadscore.settings import Settings

    port = free_port()
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'ready.db'}",
        mlflow_tracking_uri=trained.uri,
        model_uri="models:/leadscore@champion",
        api_keys=KEYS_ENV,
        reload_interval_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        client.app.state.service.engine.dispose()
        client.app.state.service.engine = db.make_engine(
            f"postgresql+psycopg://leadscore:pw@127.0.0.1:{port}/leadscore"
        )
        # when an unauthenticated client asks whether it is ready
        logging.getLogger("leadscore.serve").addHandler(handler)
        try:
            r = client.get("/readyz")
        finally:
            logging.getLogger("leadscore.serve").removeHandler(handler)
        client.app.state.service.engine.dispose()
    # then it answers 503 naming the component only
    assert r.status_code == 503
    body = r.json()
    assert body["checks"] == {"model": True, "database": False} and body["reasons"] == [
        "database: unavailable"
    ]
    for secret in ("127.0.0.1", str(port), "psycopg", "postgresql", "leadscore:pw", "Error"):
        assert secret not in r.text, secret
    # and the detail is in the service log
    assert any(str(port) in logging.Formatter().format(record) for record in logged)
