from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from leadscore.serve.auth import Scorer
from leadscore.serve.deps import AppState
from leadscore.serve.schemas import ScoreRequest, ScoreResponse
from leadscore.serve.scoring import current_model, load_stored, score_request, stored_leads_needed
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

router = APIRouter(prefix="/v1", tags=["scoring"])
INLINE_LEADS = 20  # up to this many stateless leads are scored on the event loop (well under a millisecond
# each); bigger requests and any database read go to a worker thread so the loop keeps answering
INLINE_BYTES = 64_000  # bodies up to this size are validated on the event loop

# The body is validated here, straight from its bytes (`model_validate_json`: no json.loads into Python
# objects first, as FastAPI's body parameters do). Its schema is published in the OpenAPI document as if it
# were a body parameter: `REQUEST_SCHEMAS` are added to the components by `app.create_app`.
_schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
REQUEST_SCHEMAS = {**_schema.pop("$defs", {}), "ScoreRequest": _schema}
_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}}}}


def parse_score_request(content_type: str | None, body: bytes) -> ScoreRequest:
    """The validated request, or RequestValidationError (422 naming each field and the reason)."""
    if content_type and "json" not in content_type.split(";")[0].lower():
        raise RequestValidationError([{"loc": ("body",), "msg": "send JSON (Content-Type: application/json)",
                                       "type": "content_type"}])
    try:
        return ScoreRequest.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None


@router.post("/score", response_model=ScoreResponse, summary="Score leads with reasons", openapi_extra=_BODY,
             responses={401: {"description": "No valid API key"}, 403: {"description": "Wrong role"},
                        404: {"description": "A lead_id-only lead is not stored"},
                        413: {"description": "Body too large"}, 422: {"description": "Invalid body"},
                        503: {"description": "No model loaded"}})
async def score(request: Request, state: AppState, _: Scorer,
                explain: Literal["top", "full"] = Query("top", description="full adds every contribution and the "
                                                                          "base, which add up to the logit")):
    """Score up to 1,000 leads. Send each lead's `created_at`, `attributes` and `events` (stateless), or
    only its `lead_id` to use what was stored with PUT /v1/leads and POST /v1/events. Each result has the
    top 5 positive and top 5 negative reasons; `?explain=full` adds `explanation` with every feature's
    contribution and the base: base + sum(contributions) = logit, and probability = sigmoid(logit)."""
    raw = await request.body()
    content_type = request.headers.get("content-type")
    if len(raw) > INLINE_BYTES:  # a big body is validated off the event loop
        body = await run_in_threadpool(parse_score_request, content_type, raw)
    else:
        body = parse_score_request(content_type, raw)
    model = current_model(state)
    full = explain == "full"
    if stored_leads_needed(body) or len(body.leads) > INLINE_LEADS:
        payload = await run_in_threadpool(lambda: score_request(state, body, full, load_stored(state, body), model))
    else:
        payload = score_request(state, body, full, {}, model)
    return Response(orjson.dumps(payload), media_type="application/json")
