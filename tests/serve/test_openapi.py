"""The OpenAPI document says what the service does: the error body it really returns, the key every API
operation needs, the content type of /metrics, and the bounds of times (tests/serve/test_fuzz.py checks
every operation against the document with schemathesis; these are the promises a client reads first)."""

from __future__ import annotations

import re
from datetime import UTC

import httpx
import jsonschema
import pytest

HEALTH = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture(scope="module")
def document(server) -> dict:
    return httpx.get(f"{server.url}/openapi.json").json()


def _operations(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _validator(document, schema: dict) -> jsonschema.Draft202012Validator:
    """A validator of `schema`, whose references point into the document's components."""
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def _json_schema(response: dict) -> dict:
    return response["content"]["application/json"]["schema"]


def test_the_documented_422_is_the_body_the_service_returns(server, document):
    # given requests with a bad query, a bad body on a framework route and a bad body on POST /v1/score
    with server.client("admin") as c:
        answers = {
            ("/v1/leads", "get"): c.get("/v1/leads", params={"limit": 0, "grade": "E"}),
            ("/v1/feedback", "post"): c.post("/v1/feedback", json={"lead_id": "x", "outcome": "maybe"}),
            ("/v1/score", "post"): c.post("/v1/score", json={"leads": [{"lead_id": "x", "colour": 1}]}),
        }
    for (path, method), r in answers.items():
        # when the service answers 422
        assert r.status_code == 422, r.text
        # then the body is what the document's 422 of that operation describes, and has nothing else
        schema = _json_schema(document["paths"][path][method]["responses"]["422"])
        _validator(document, schema).validate(r.json())
        item = document["components"]["schemas"]["ErrorItem"]
        assert all(set(d) == set(item["properties"]) == set(item["required"]) for d in r.json()["detail"])
    # and a body of the old framework shape ({loc, msg, type}) is not what the document describes
    assert not _validator(document, schema).is_valid(
        {"detail": [{"loc": ["query", "limit"], "msg": "bad", "type": "greater_than_equal"}]}
    )


def test_every_error_status_of_every_operation_has_the_one_error_body(document):
    errors = [
        (path, method, status, response)
        for path, method, operation in _operations(document)
        for status, response in operation["responses"].items()
        if int(status) >= 400
    ]
    assert len(errors) > 30
    for path, method, status, response in errors:
        if (path, status) == ("/readyz", "503"):  # not ready: the readiness report, which orchestrators read
            assert _json_schema(response) == {"$ref": "#/components/schemas/Readiness"}
            continue
        assert _json_schema(response) == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)


def test_every_operation_but_health_needs_a_key_and_says_how_to_send_it(server, document):
    # the schemes: the bearer key, and the X-API-Key header
    schemes = document["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["bearer"].items()
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes["apiKey"].items()
    operations = list(_operations(document))
    for path, method, operation in operations:
        if path in HEALTH:
            assert "security" not in operation, path
        else:  # either scheme (alternatives), and 401 / 403 / 429 documented
            assert operation.get("security") == [{"bearer": []}, {"apiKey": []}], (path, method)
            assert {"401", "403", "429"} <= set(operation["responses"]), (path, method)
    assert sum(path not in HEALTH for path, _, _ in operations) >= 9
    # and a 401 is what its documentation says: the error body and the challenge header
    r = httpx.get(f"{server.url}/v1/model")
    documented = document["paths"]["/v1/model"]["get"]["responses"]["401"]
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert set(documented["headers"]) == {"WWW-Authenticate"}
    _validator(document, _json_schema(documented)).validate(r.json())


def test_metrics_are_documented_as_the_text_they_are(server, document):
    r = httpx.get(f"{server.url}/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    assert set(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}


@pytest.mark.parametrize(
    "time,accepted",
    [
        ("2000-01-01T00:00:00Z", True),
        ("2099-12-31T23:59:59.999Z", True),
        ("2000-01-01T00:30:00-01:00", True),
        ("2099-12-31T22:30:00+01:00", True),
        ("1999-12-31T23:59:59Z", False),
        ("2100-01-01T00:00:00Z", False),
        ("0379-08-28T03:32:19-13:32", False),
        # in 2000 and 2099 by the calendar, outside in UTC
        ("2000-01-01T00:30:00+01:00", False),
        ("2099-12-31T23:30:00-01:00", False),
    ],
)
def test_the_documented_time_bounds_are_the_service_s(server, document, time, accepted):
    # given a time field of the document (the review list's `since`; a stored fact's time is also bounded by
    # the clock, below)
    (param,) = [p for p in document["paths"]["/v1/leads"]["get"]["parameters"] if p["name"] == "since"]
    (schema,) = [s for s in param["schema"]["anyOf"] if s.get("type") == "string"]
    assert schema["format"] == "date-time" and "2000-01-01" in schema["description"]
    # when the leads scored since that time are listed
    with server.client("admin") as c:
        r = c.get("/v1/leads", params={"since": time})
    # then the service accepts exactly the times the document admits (its pattern)
    assert (r.status_code == 200) is accepted, r.text
    assert bool(re.search(schema["pattern"], time)) is accepted


def test_a_stored_fact_s_documented_times_are_all_accepted(server, document):
    # given a stored lead's created_at, which the service takes up to 5 minutes ahead of its clock
    from datetime import datetime, timedelta

    schema = document["components"]["schemas"]["LeadUpsert"]["properties"]["created_at"]
    now = datetime.now(UTC)
    last_year_end = f"{now.year - 1}-12-31T23:59:59.999Z"
    soon, later = ((now + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in (1, 10))
    with server.client("admin") as c:
        # then what the pattern admits is stored, and a time beyond the allowance is refused
        for time, documented, accepted in (
            (last_year_end, True, True),
            ("2000-01-01T00:00:00Z", True, True),
            (soon, False, True),
            (later, False, False),
        ):
            r = c.put("/v1/leads/openapi-time", json={"created_at": time})
            assert (r.status_code == 200) is accepted, (time, r.text)
            assert bool(re.search(schema["pattern"], time)) is documented, time
