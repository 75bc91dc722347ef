from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from leadscore.serve.auth import Scorer
from leadscore.serve.deps import AppState
from leadscore.serve.schemas import ScoreRequest, ScoreResponse
from leadscore.serve.scoring import current_model, load_stored, score_request, stored_leads_needed

router = APIRouter(prefix="/v1", tags=["scoring"])
INLINE_LEADS = 20  # up to this many stateless leads are scored on the event loop (well under a millisecond
# each); bigger requests and any database read go to a worker thread so the loop keeps answering


@router.post("/score", response_model=ScoreResponse, summary="Score leads with reasons",
             responses={401: {"description": "No valid API key"}, 403: {"description": "Wrong role"},
                        404: {"description": "A lead_id-only lead is not stored"},
                        413: {"description": "Body too large"}, 422: {"description": "Invalid body"},
                        503: {"description": "No model loaded"}})
async def score(body: ScoreRequest, state: AppState, _: Scorer,
                explain: Literal["top", "full"] = Query("top", description="full adds every contribution and the "
                                                                          "base, which add up to the logit")):
    """Score up to 1,000 leads. Send each lead's `created_at`, `attributes` and `events` (stateless), or
    only its `lead_id` to use what was stored with PUT /v1/leads and POST /v1/events. Each result has the
    top 5 positive and top 5 negative reasons; `?explain=full` adds `explanation` with every feature's
    contribution and the base: base + sum(contributions) = logit, and probability = sigmoid(logit)."""
    model = current_model(state)
    full = explain == "full"
    if stored_leads_needed(body) or len(body.leads) > INLINE_LEADS:
        payload = await run_in_threadpool(lambda: score_request(state, body, full, load_stored(state, body), model))
    else:
        payload = score_request(state, body, full, {}, model)
    return Response(orjson.dumps(payload), media_type="application/json")
