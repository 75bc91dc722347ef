from __future__ import annotations

from fastapi import APIRouter, HTTPException

from leadscore.serve.auth import Admin, Reader
from leadscore.serve.deps import AppState
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.scoring import NO_MODEL

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", summary="The model being served", responses=error_responses(*KEYED, 503))
def get_model(state: AppState, _: Reader):
    model = state.holder.model
    if model is None:
        raise HTTPException(503, [{"field": "model", "reason": NO_MODEL.format(
            why=state.holder.last_error or "still loading")}])
    info = model.info
    return {
        "name": model.name, "version": model.version, "alias": state.holder.uri.partition("@")[2] or None,
        "family": model.family, "trained_at": info.get("trained_at"), "metrics": info.get("metrics"),
        "definition": model.definition.to_dict(), "policy": model.policy.to_dict(),
        "features": list(model.encoder.features), "example": info.get("example"),
    }


@router.post("/admin/reload", summary="Load the current champion now",
             responses=error_responses(*KEYED, (409, "The champion was refused; the previous version keeps serving"),
                                       413, (503, "No model could be loaded")))
def reload(state: AppState, _: Admin):
    """Check the registry now and swap in the champion if it changed. Requests in flight finish on the old
    model. A version that fails to load or fails its smoke score is refused (409) and the old one keeps
    serving; with no model at all the answer is 503."""
    outcome = state.holder.reload(force=True)
    if outcome.refused or state.holder.model is None:
        raise HTTPException(409 if state.holder.model else 503, [{"field": "model", "reason": outcome.message}])
    return {"changed": outcome.changed, "version": outcome.version, "message": outcome.message}
