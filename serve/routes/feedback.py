from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException
from leadscore.serve import store
from leadscore.serve.auth import Reader, Sales
from leadscore.serve.deps import Engine
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.schemas import FeedbackIn, FeedbackOut, LeadId

router = APIRouter(prefix="/v1", tags=["feedback"])
UNKNOWN_LEAD = (
    "no stored lead {lead_id!r}: feedback is only taken for leads the service has stored, because "
    "only those become training labels; store it first with PUT /v1/leads/{lead_id} (created_at and "
    "attributes; events with POST /v1/events), then send the feedback again"
)


def save_feedback(engine: sa.Engine, fb: FeedbackIn, source: str) -> dict[str, Any]:
    """The one way feedback is stored, used by the API and the sales page."""
    if fb.outcome != "disqualified" and fb.reason is not None:
        raise HTTPException(
            422, [{"field": "reason", "reason": "a reason is only given with outcome 'disqualified'"}]
        )
    try:
        row, duplicate = store.add_feedback(
            engine, fb.lead_id, fb.outcome, fb.reason, fb.note, fb.at, fb.idempotency_key, source=source
        )
    except store.Conflict as e:
        raise HTTPException(409, [{"field": "idempotency_key", "reason": str(e)}]) from None
    except store.UnknownLead:
        raise HTTPException(
            404, [{"field": "lead_id", "reason": UNKNOWN_LEAD.format(lead_id=fb.lead_id)}]
        ) from None
    return {**row, "duplicate": duplicate}


@router.post(
    "/feedback",
    response_model=FeedbackOut,
    status_code=201,
    summary="Record what sales said",
    responses=error_responses(
        400,
        *KEYED,
        (404, "The lead is not stored: PUT /v1/leads/{lead_id} first"),
        (409, "The idempotency_key was used for other feedback"),
        413,
        422,
    ),
)
def post_feedback(body: FeedbackIn, engine: Engine, _: Sales) -> dict[str, Any]:
    """Store sales feedback durably (it is the label of the next retrain). The lead must be stored
    (PUT /v1/leads/{lead_id}); feedback for any other lead is refused with 404. A retry with the same
    `idempotency_key` is stored once and answered with the stored feedback (`duplicate: true`)."""
    return save_feedback(engine, body, "api")


@router.get(
    "/feedback",
    response_model=list[FeedbackOut],
    summary="Feedback stored for a lead",
    responses=error_responses(*KEYED, 422),
)
def get_feedback(lead_id: LeadId, engine: Engine, _: Reader) -> list[dict[str, Any]]:
    return store.feedback_for(engine, lead_id)
