from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response

from leadscore.serve.deps import AppState

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Alive")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="Model loaded and database reachable")
def readyz(state: AppState, response: Response):
    """200 when a model is loaded and the database answers, else 503. `reasons` says what is wrong;
    `last_error` also reports a refused new version while the previous one keeps serving."""
    checks = {"model": state.holder.model is not None, "database": True}
    reasons = []
    if not checks["model"]:
        reasons.append(state.holder.last_error or "no model loaded yet")
    try:
        with state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:  # noqa: BLE001
        checks["database"] = False
        reasons.append(f"database unreachable: {type(e).__name__}")
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    return {"ready": ready, "checks": checks, "reasons": reasons, "model_version": state.holder.version,
            "last_error": state.holder.last_error}


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(state: AppState):
    state.metrics.model_version.set(float(state.holder.version or 0))
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
