from __future__ import annotations

from fastapi import APIRouter, HTTPException

from leadscore.serve.auth import Admin, Reader
from leadscore.serve.deps import AppState

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", summary="The model being served")
def get_model(state: AppState, _: Reader):
    model = state.holder.model
    if model is None:
        raise HTTPException(503, f"no model is loaded ({state.holder.last_error or 'loading'})")
    info = model.info
    return {
        "name": model.name, "version": model.version, "alias": state.holder.uri.partition("@")[2] or None,
        "family": model.family, "trained_at": info.get("trained_at"), "metrics": info.get("metrics"),
        "definition": model.definition.to_dict(), "policy": model.policy.to_dict(),
        "features": list(model.encoder.features), "example": info.get("example"),
    }


@router.post("/admin/reload", summary="Load the current champion now")
def reload(state: AppState, _: Admin):
    outcome = state.holder.reload()
    if state.holder.model is None or (not outcome.changed and outcome.message.startswith("refused")):
        raise HTTPException(409 if state.holder.model else 503, outcome.message)
    return {"changed": outcome.changed, "version": outcome.version, "message": outcome.message}
