from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from leadscore.model.policy import Grade
from leadscore.serve import store
from leadscore.serve.auth import Reader, Scorer
from leadscore.serve.deps import Engine, ServiceDep
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.schemas import EventBatch, LeadId, LeadUpsert, Timestamp

router = APIRouter(prefix="/v1", tags=["leads"])
TREND_POINTS = 3  # a move of more than this many score points between the last two scores is a trend


def trend(history: list[dict[str, Any]]) -> str:
    if len(history) < 2:
        return "steady"
    delta = history[0]["score"] - history[1]["score"]
    return "improving" if delta > TREND_POINTS else "declining" if delta < -TREND_POINTS else "steady"


@router.put(
    "/leads/{lead_id}",
    summary="Create or update a lead's attributes",
    responses=error_responses(400, *KEYED, 413, 422),
    response_model=None,
)
def put_lead(lead_id: LeadId, body: LeadUpsert, service: ServiceDep, _: Scorer) -> dict[str, Any]:
    """The lead is rescored with the champion in the background, after this answer
    (`LEADSCORE_RESCORE_ON_ACTIVITY`)."""
    rescore = service.settings.rescore_on_activity
    created = store.upsert_lead(
        service.engine, lead_id, body.created_at, body.attributes.model_dump(), rescore=rescore
    )
    if rescore:
        service.rescore_soon()
    return {"lead_id": lead_id, "created": created}


@router.post(
    "/events",
    status_code=201,
    summary="Append events for one or many stored leads",
    responses=error_responses(400, *KEYED, (404, "An event's lead is not stored: PUT it first"), 413, 422),
    response_model=None,
)
def post_events(body: EventBatch, engine: Engine, service: ServiceDep, _: Scorer) -> dict[str, Any]:
    """All or nothing: 404 if a lead is not stored, 422 if one would then have more than
    `LEADSCORE_MAX_EVENTS_PER_LEAD` stored events (the most a score by reference reads). The leads are
    rescored with the champion in the background, after this answer."""
    ids = [e["lead_id"] for e in body.events]
    known = store.known_leads(engine, ids)
    unknown = [(i, lid) for i, lid in enumerate(ids) if lid not in known]
    if unknown:
        # 404 as for a lead sent to POST /v1/score by lead_id only: the body is valid, the lead is not stored
        raise HTTPException(
            404,
            [
                {"field": f"events.{i}.lead_id", "reason": f"unknown lead {lid!r}: PUT it first"}
                for i, lid in unknown[:20]
            ],
        )
    try:
        n = store.add_events(
            engine,
            body.events,
            service.settings.max_events_per_lead,
            rescore=service.settings.rescore_on_activity,
        )
    except store.TooManyEvents as e:
        raise HTTPException(
            422, [{"field": f"events.{ids.index(e.lead_id)}.lead_id", "reason": str(e)}]
        ) from None
    if service.settings.rescore_on_activity:
        service.rescore_soon()
    return {"stored": n}


@router.get(
    "/leads/{lead_id}",
    summary="A lead's latest score, reasons, history and trend",
    responses=error_responses(*KEYED, (404, "No such lead: neither stored nor scored"), 422),
    response_model=None,
)
def get_lead(lead_id: LeadId, engine: Engine, _: Reader) -> dict[str, Any]:
    stored = store.get_leads(engine, [lead_id]).get(lead_id)
    history = store.score_history(engine, lead_id)
    if stored is None and not history:
        raise HTTPException(
            404,
            [
                {
                    "field": "lead_id",
                    "reason": f"no lead {lead_id!r}: store it with PUT /v1/leads/{{lead_id}} or score it",
                }
            ],
        )
    latest = history[0] if history else None
    return {
        "lead_id": lead_id,
        "created_at": stored["created_at"] if stored else None,
        "attributes": stored["attributes"] if stored else None,
        "latest": latest
        and {
            k: latest[k]
            for k in (
                "scored_at",
                "as_of",
                "model_version",
                "probability",
                "score",
                "grade",
                "qualified",
                "reasons",
            )
        },
        "history": [{k: h[k] for k in ("scored_at", "score", "grade", "model_version")} for h in history],
        "trend": trend(history),
        "feedback": store.feedback_for(engine, lead_id),
    }


@router.get(
    "/leads",
    summary="Latest scores for review lists, highest first or newly handed over first",
    responses=error_responses(*KEYED, 422),
    response_model=None,
)
def list_leads(
    engine: Engine,
    _: Reader,
    grade: Grade | None = None,
    since: Timestamp | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
    sort: Annotated[
        store.ListSort,
        Query(
            description="`score`: highest probability first; `handed_over`: the leads that crossed the "
            "handoff threshold most recently first (`handed_over_at`), then those not handed over, by score"
        ),
    ] = "score",
) -> dict[str, Any]:
    """The newest score of each lead (filtered by grade and by scored at or after `since`) in the order
    `sort`, each with its trend against the lead's previous score and when it was handed over."""
    rows = store.latest_scores(engine, grade=grade, since=since, limit=limit, offset=offset, sort=sort)
    recent = store.recent_scores(engine, [r["lead_id"] for r in rows])
    return {
        "leads": [
            {
                **{
                    k: r[k]
                    for k in (
                        "lead_id",
                        "scored_at",
                        "probability",
                        "score",
                        "grade",
                        "qualified",
                        "model_version",
                        "reasons",
                    )
                },
                "attributes": r.get("attributes"),
                "handed_over_at": r["handed_over_at"],
                "trend": trend(recent.get(r["lead_id"], [])),
            }
            for r in rows
        ]
    }
