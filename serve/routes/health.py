from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response

from leadscore.serve.deps import AppState

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Alive")
def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="Model loaded and database reachable")
def readyz(state: AppState, response: Response):
    checks = {"model": state.holder.model is not None, "database": True}
    try:
        with state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001
        checks["database"] = False
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    return {"ready": ready, "checks": checks, "model_version": state.holder.version,
            "last_error": state.holder.last_error}


@router.get("/metrics", summary="Prometheus metrics")
def metrics(state: AppState):
    state.metrics.model_version.set(float(state.holder.version or 0))
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
