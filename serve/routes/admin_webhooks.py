"""The webhook delivery's admin endpoints: what is waiting, failing and dead, and redelivery
(docs/webhooks.md)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from leadscore.serve.auth import Admin
from leadscore.serve.deps import ServiceDep
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.store import outbox_admin
from leadscore.serve.webhook_http import receiver

router = APIRouter(prefix="/v1/admin", tags=["webhooks"])


@router.get(
    "/webhooks",
    summary="Webhook delivery: counts by status, the failing and the dead events",
    responses=error_responses(*KEYED, 422),
    response_model=None,
)
def webhooks_status(service: ServiceDep, _: Admin, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """`receiver` (scheme, host and port of LEADSCORE_WEBHOOK_URL; null when delivery is off), `counts` of
    the events by status, `failing` (pending after a failed try, next due first) and `dead` (newest first),
    at most `limit` each, with their `attempts` and `last_error`."""
    url = service.settings.webhook_url
    return {
        "receiver": receiver(url) if url else None,
        "counts": outbox_admin.counts(service.engine),
        **outbox_admin.troubled(service.engine, limit),
    }


@router.post(
    "/webhooks/{event_id}/redeliver",
    summary="Send an event again",
    responses=error_responses(
        *KEYED,
        (404, "No event with this id"),
        (409, "Webhook delivery is off: LEADSCORE_WEBHOOK_URL is not set"),
        413,
        422,
    ),
    response_model=None,
)
def redeliver(event_id: UUID, service: ServiceDep, _: Admin) -> dict[str, Any]:
    """Put the event (dead, failing or already delivered) back to `pending`, due now, with its attempts
    from 0; answered with the event's delivery state. The receiver gets the same body and event id again."""
    if not service.settings.webhook_url:
        raise HTTPException(
            409,
            [{"field": "event_id", "reason": "webhook delivery is off: LEADSCORE_WEBHOOK_URL is not set"}],
        )
    event = outbox_admin.redeliver(service.engine, str(event_id))
    if event is None:
        raise HTTPException(404, [{"field": "event_id", "reason": f"no event {str(event_id)!r}"}])
    if service.webhooks is not None:
        service.webhooks.wake()
    return event
