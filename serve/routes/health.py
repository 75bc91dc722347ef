from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from leadscore.serve.deps import ServiceDep
from pydantic import BaseModel

log = logging.getLogger("leadscore.serve")
router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    """The body of /readyz, ready or not (a 503 carries it too, not the error body: orchestrators read it)."""

    ready: bool
    checks: dict[str, bool]
    reasons: list[str]
    model_version: str | None
    last_error: str | None


@router.get("/healthz", summary="Alive", response_model=None)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Model loaded and database reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: `reasons` says why"}},
)
def readyz(service: ServiceDep, response: Response) -> dict[str, Any]:
    """200 when a model is loaded and the database answers, else 503. Unauthenticated, so it names what is
    wrong without details (no driver, host or exception text): `reasons` as "component: state", and
    `last_error` only the first clause of the model holder's message (e.g. a refused new version while the
    previous one keeps serving). The details are in the service log."""
    checks = {"model": service.holder.model is not None, "database": True}
    reasons = []
    if not checks["model"]:
        reasons.append(
            "model: no model loaded"
            if service.holder.last_error is None or service.holder.last_error.startswith("no model")
            else "model: unavailable"
        )
    try:
        with service.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001
        log.warning("readiness: the database is unreachable", exc_info=True)
        checks["database"] = False
        reasons.append("database: unavailable")
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    last_error = service.holder.last_error and service.holder.last_error.partition(": ")[0]
    return {
        "ready": ready,
        "checks": checks,
        "reasons": reasons,
        "model_version": service.holder.version,
        "last_error": last_error,
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    response_description="Prometheus text format 0.0.4",
)
async def metrics(service: ServiceDep) -> Response:
    service.metrics.model_version.set(float(service.holder.version or 0))
    # the monitoring gauges: from the last report, never waiting for one (a stale one is refreshed in the
    # background; before the first exists the gauges are absent)
    report = service.monitor_cache.peek()
    if report is not None:
        service.metrics.observe_monitoring(report)
    return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")
