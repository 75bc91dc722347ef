from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Query, Response

from leadscore.serve.auth import Scorer
from leadscore.serve.deps import AppState
from leadscore.serve.schemas import ScoreRequest, ScoreResponse
from leadscore.serve.scoring import score_request

router = APIRouter(prefix="/v1", tags=["scoring"])


@router.post("/score", response_model=ScoreResponse, summary="Score leads with reasons",
             responses={401: {"description": "No valid API key"}, 403: {"description": "Wrong role"},
                        404: {"description": "A lead_id-only lead is not stored"},
                        413: {"description": "Body too large"}, 503: {"description": "No model loaded"}})
def score(body: ScoreRequest, state: AppState, _: Scorer,
          explain: Literal["top", "full"] = Query("top", description="full adds every contribution and the base")):
    """Score up to 1,000 leads. Send each lead's `created_at`, `attributes` and `events` (stateless), or
    only its `lead_id` to use what was stored with PUT /v1/leads and POST /v1/events."""
    payload = score_request(state, body, explain_full=explain == "full")
    return Response(orjson.dumps(payload), media_type="application/json")
