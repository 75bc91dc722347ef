"""Score leads from a request: the live feature path, the serving model, the score log."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from fastapi import HTTPException

from leadscore.features.live import lead_features, to_ms
from leadscore.serve import store
from leadscore.serve.schemas import ScoreRequest


def _json_value(v):
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else (int(v) if v.is_integer() else round(v, 6))
    if hasattr(v, "item"):
        return _json_value(v.item())
    return v


def score_request(state, req: ScoreRequest, explain_full: bool = False) -> dict:
    model = state.holder.model  # one reference for the whole request: a swap cannot split it
    if model is None:
        raise HTTPException(503, f"no model is loaded yet ({state.holder.last_error or 'loading'}); "
                                 "train one with `leadscore train` and it is picked up automatically")
    now = datetime.now(timezone.utc)
    leads: list[dict] = []
    need_stored = [lead.lead_id for lead in req.leads if lead.created_at is None]
    stored = store.get_leads(state.engine, need_stored, state.settings.max_events_per_lead) if need_stored else {}
    for i, lead in enumerate(req.leads):
        if lead.created_at is None:
            if lead.attributes is not None or lead.events is not None:
                raise HTTPException(422, [{"field": f"leads.{i}.created_at",
                                           "reason": "required when attributes or events are sent"}])
            if lead.lead_id not in stored:
                raise HTTPException(404, [{"field": f"leads.{i}.lead_id",
                                           "reason": f"no stored lead {lead.lead_id!r}: send created_at, attributes "
                                                     "and events, or store it with PUT /v1/leads/{lead_id}"}])
            d = dict(stored[lead.lead_id])
        else:
            attrs = lead.attributes.model_dump() if lead.attributes else {}
            d = {"lead_id": lead.lead_id, "created_at": lead.created_at, "attributes": attrs,
                 "events": [{"type": e.type, "timestamp": e.timestamp, "page": e.page} for e in lead.events or ()]}
        d["as_of"] = lead.as_of or now
        leads.append(d)
    as_of = [to_ms(d["as_of"]) for d in leads]
    values = lead_features(leads, as_of)
    results = model.results(values, [d["lead_id"] for d in leads], explain_full=explain_full)
    if state.score_log is not None:
        names = model.encoder.features
        state.score_log.put([{
            "lead_id": r["lead_id"], "scored_at": now, "as_of": d["as_of"], "model_version": model.version,
            "probability": r["probability"], "score": r["score"], "grade": r["grade"], "qualified": r["qualified"],
            "features": {n: _json_value(values[n][i]) for n in names}, "reasons": r["reasons"],
        } for i, (r, d) in enumerate(zip(results, leads))])
    if state.metrics is not None:
        state.metrics.observe_scores(results)
    return {"model": {"name": model.name, "version": model.version}, "results": results}
