"""POST /v1/score: leads in, scores with reasons out.

The route is declared once, as any FastAPI route: `score`'s signature (the body, the `explain` query, the
scorer role) is what the OpenAPI document shows. Its requests are read by `ScoreRoute`, FastAPI's documented
way to customise a route's request handling, in place of the generic one (dependency solving, `json.loads`
then validation, response-model serialisation: together more than the scoring itself). `ScoreRoute` gives
`score` the same arguments: the scorer role checked once (`auth.authorize`, what the `Scorer` dependency
runs), `explain` read from the query, and the body validated straight from its bytes
(`model_validate_json`). Its errors are the app's, answered by the app's exception handlers; the body limit
and the metrics are the app's too (serve/app.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from leadscore.serve.auth import Scorer, authorize, presented_key
from leadscore.serve.deps import ServiceDep, service_of
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.schemas import ScoreRequest, ScoreResponse
from leadscore.serve.scoring import current_model, load_stored, score_request, stored_leads_needed
from leadscore.serve.service import ScoringService
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("leadscore.serve")
PATH = "/v1/score"
INLINE_LEADS = 20  # up to this many stateless leads are scored on the event loop (well under a millisecond
# each); bigger requests and any database read go to a worker thread so the loop keeps answering
INLINE_BYTES = 64_000  # bodies up to this size are validated on the event loop
EXPLAIN = ("top", "full")


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


class ScoreRoute(APIRoute):
    """POST /v1/score's request handling: `score`'s arguments read by hand (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            scope = request.scope
            authorization = x_api_key = content_type = None
            for name, value in scope["headers"]:  # the first of a repeated header counts, as in Headers.get
                if name == b"authorization" and authorization is None:
                    authorization = value.decode("latin-1")
                elif name == b"x-api-key" and x_api_key is None:
                    x_api_key = value.decode("latin-1")
                elif name == b"content-type" and content_type is None:
                    content_type = value.decode("latin-1")
            service = service_of(request)
            role = authorize(service, scope, presented_key(authorization, x_api_key), ("scorer",))
            explain = _explain(scope.get("query_string", b""))  # the key before the query, as dependencies
            raw = await request.body()
            if len(raw) > INLINE_BYTES:  # a big body is validated off the event loop
                body = await run_in_threadpool(parse_score_request, content_type, raw)
            else:
                body = parse_score_request(content_type, raw)
            response: Response = await endpoint(body=body, service=service, _role=role, explain=explain)
            return response

        return handle


router = APIRouter(prefix="/v1", tags=["scoring"], route_class=ScoreRoute)  # its one route


@router.post(
    PATH.removeprefix("/v1"),
    response_model=ScoreResponse,
    summary="Score leads with reasons",
    responses=error_responses(*KEYED, (404, "A lead sent by lead_id only is not stored"), 413, 422, 503),
)
async def score(
    body: ScoreRequest,
    service: ServiceDep,
    _role: Scorer,
    explain: Literal["top", "full"] = Query(
        "top", description="full adds every contribution and the base, which add up to the logit"
    ),
) -> Response:
    """Score up to 1,000 leads. Send each lead's `created_at`, `attributes` and `events` (stateless), or
    only its `lead_id` to use what was stored with PUT /v1/leads and POST /v1/events. Each result has the
    top 5 positive and top 5 negative reasons; `?explain=full` adds `explanation` with every feature's
    contribution and the base: base + sum(contributions) = logit, and probability = sigmoid(logit).
    Needs the scorer (or admin) role."""
    return Response(await scored(service, body, explain == "full"), media_type="application/json")


async def scored(service: ScoringService, body: ScoreRequest, full: bool) -> bytes:
    """The JSON response body for a validated request, or HTTPException (no model, unknown stored lead)."""
    model = current_model(service)
    if stored_leads_needed(body) or len(body.leads) > INLINE_LEADS:
        payload = await run_in_threadpool(
            lambda: score_request(service, body, full, load_stored(service, body), model)
        )
    else:  # with the other small requests of this event-loop step
        payload = await service.batcher.score(body, full, model)
    return orjson.dumps(payload)
