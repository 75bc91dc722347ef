"""POST /v1/score: leads in, scores with reasons out.

The hot path is `answer`: authorisation, the `explain` query, the body validated straight from its bytes
(`model_validate_json`: no json.loads into Python objects first, as FastAPI's body parameters do), live
features, the model, one orjson response. `serve_score` calls it straight from ASGI, before the framework's
middleware, routing and dependency machinery (together they cost more than the scoring itself); the
FastAPI route below declares the operation for the OpenAPI document and calls the same `answer`, so both
doors give the same bytes and the same errors.
"""

from __future__ import annotations

import logging
import time
from typing import Literal
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from leadscore.serve.auth import authorize, presented_key, require
from leadscore.serve.errors import INTERNAL_ERROR, KEYED, error_detail, error_responses, validation_detail
from leadscore.serve.metrics import ClientGone, TooLarge, read_body, too_large_body
from leadscore.serve.schemas import ScoreRequest, ScoreResponse
from leadscore.serve.scoring import current_model, load_stored, score_request, stored_leads_needed
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

log = logging.getLogger("leadscore.serve")
router = APIRouter(prefix="/v1", tags=["scoring"])
PATH = "/v1/score"
INLINE_LEADS = 20  # up to this many stateless leads are scored on the event loop (well under a millisecond
# each); bigger requests and any database read go to a worker thread so the loop keeps answering
INLINE_BYTES = 64_000  # bodies up to this size are validated on the event loop
EXPLAIN = ("top", "full")

# The body's schema is published in the OpenAPI document as if it were a body parameter: `REQUEST_SCHEMAS`
# are added to the components by `app.create_app`.
_schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
REQUEST_SCHEMAS = {**_schema.pop("$defs", {}), "ScoreRequest": _schema}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}},
    }
}


def parse_score_request(content_type: str | None, body: bytes) -> ScoreRequest:
    """The validated request, or RequestValidationError (422 naming each field and the reason)."""
    if content_type and "json" not in content_type.split(";")[0].lower():
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "send JSON (Content-Type: application/json)", "type": "content_type"}]
        )
    try:
        return ScoreRequest.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None


def _explain(query_string: bytes) -> str:
    value = "top"
    if not query_string:
        return value
    for name, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name == "explain":
            value = v  # the last one counts, as for any query parameter
    if value not in EXPLAIN:
        raise RequestValidationError(
            [{"loc": ("query", "explain"), "msg": "Input should be 'top' or 'full'", "type": "literal_error"}]
        )
    return value


async def answer(state, scope: Scope, raw: bytes) -> bytes:
    """The JSON response body of a POST /v1/score request with body `raw`, or HTTPException /
    RequestValidationError."""
    authorization = x_api_key = content_type = None
    for name, value in scope["headers"]:  # the first of a repeated header counts, as Starlette's Headers.get
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"x-api-key" and x_api_key is None:
            x_api_key = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    authorize(state, scope, presented_key(authorization, x_api_key), ("scorer",))
    full = _explain(scope.get("query_string", b"")) == "full"
    if len(raw) > INLINE_BYTES:  # a big body is validated off the event loop
        body = await run_in_threadpool(parse_score_request, content_type, raw)
    else:
        body = parse_score_request(content_type, raw)
    model = current_model(state)
    if stored_leads_needed(body) or len(body.leads) > INLINE_LEADS:
        payload = await run_in_threadpool(
            lambda: score_request(state, body, full, load_stored(state, body), model)
        )
    else:  # with the other small requests of this event-loop step
        payload = await state.batcher.score(body, full, model)
    return orjson.dumps(payload)


@router.post(
    PATH.removeprefix("/v1"),
    response_model=ScoreResponse,
    summary="Score leads with reasons",
    openapi_extra=_BODY,
    dependencies=[Depends(require("scorer"))],  # the key before the query, as below
    responses=error_responses(*KEYED, (404, "A lead sent by lead_id only is not stored"), 413, 422, 503),
)
async def score(
    request: Request,
    explain: Literal["top", "full"] = Query(
        "top", description="full adds every contribution and the base, which add up to the logit"
    ),
):
    """Score up to 1,000 leads. Send each lead's `created_at`, `attributes` and `events` (stateless), or
    only its `lead_id` to use what was stored with PUT /v1/leads and POST /v1/events. Each result has the
    top 5 positive and top 5 negative reasons; `?explain=full` adds `explanation` with every feature's
    contribution and the base: base + sum(contributions) = logit, and probability = sigmoid(logit).
    Needs the scorer (or admin) role."""
    return Response(
        await answer(request.app.state, request.scope, await request.body()), media_type="application/json"
    )


async def serve_score(scope: Scope, receive: Receive, send: Send, state, limit: int) -> None:
    """Answer one POST /v1/score straight from ASGI (`serve.app.Leadscore` routes it here before the
    framework): the size limit and the metrics of every other route apply, errors have the app's shape
    ({"detail": [{"field", "reason"}]})."""
    start = time.perf_counter()
    headers = [(b"content-type", b"application/json")]
    try:
        status, body = 200, await answer(state, scope, await read_body(receive, scope["headers"], limit))
    except ClientGone:
        return
    except TooLarge:
        status, body = 413, too_large_body(limit)
    except HTTPException as e:
        status, body = e.status_code, orjson.dumps({"detail": error_detail(e.detail)})
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (e.headers or {}).items()]
    except RequestValidationError as e:
        status, body = 422, orjson.dumps({"detail": validation_detail(e.errors())})
    except Exception:  # noqa: BLE001 - answered like the app's own handler: logged, then a 500
        log.exception("unexpected error on POST %s", PATH)  # headers (with the API key) are not logged
        status, body = 500, orjson.dumps({"detail": INTERNAL_ERROR})
    headers.append((b"content-length", str(len(body)).encode()))
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    finally:
        state.metrics.observe_request(PATH, "POST", status, time.perf_counter() - start)
