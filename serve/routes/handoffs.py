"""GET /v1/handoffs: the handoff events in the order they were written, for applications that pull rather
than receive webhooks (docs/webhooks.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from leadscore.serve.auth import Reader
from leadscore.serve.deps import Engine
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.store import outbox

router = APIRouter(prefix="/v1", tags=["handoffs"])


@router.get(
    "/handoffs",
    summary="Handoff events after a cursor, oldest first",
    responses=error_responses(*KEYED, 422),
    response_model=None,
)
def list_handoffs(
    engine: Engine,
    _: Reader,
    since: int = Query(
        0, ge=0, le=2**63 - 1, description="The `next` of the previous page; 0 = from the start"
    ),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The events (`lead.handoff`, `lead.grade_changed`) written after the cursor `since`, oldest first:
    each its `id` (the cursor), its delivery `status` (`pending`, `delivered`, `dead`), `attempts`,
    `delivered_at` and the `event` itself, the very body a webhook receives. Pass `next` as `since` to get
    the following page; an empty page keeps `next` where it was, so polling with it never misses or repeats
    an event."""
    events = outbox.outbox_page(engine, since, limit)
    return {"events": events, "next": events[-1]["id"] if events else since}
