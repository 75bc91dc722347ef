from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from leadscore.serve.auth import Sales
from leadscore.serve.deps import ServiceDep
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.scoring import NO_MODEL

router = APIRouter(prefix="/v1", tags=["monitoring"])


@router.get(
    "/monitoring",
    summary="Is the champion still right? Calibration, drift, volume, feedback coverage",
    responses=error_responses(*KEYED, 503),
    response_model=None,
)
def get_monitoring(service: ServiceDep, _: Sales) -> dict[str, Any]:
    """The monitoring report of the model being served over the last `LEADSCORE_MONITOR_WINDOW_DAYS`
    (docs/monitoring.md): a status per check (ok / warn / alert / not enough data / unknown) and
    `retrain_recommended` when any alert fires, with the reasons. Computed at most every
    `LEADSCORE_MONITOR_CACHE_SECONDS` per worker (`generated_at` says when)."""
    # a plain `def`: FastAPI runs it in its threadpool, so a computation here never blocks the event loop
    report: dict[str, Any] | None = service.monitor_cache.get()
    if report is None:
        raise HTTPException(
            503,
            [{"field": "model", "reason": NO_MODEL.format(why=service.holder.last_error or "still loading")}],
        )
    return report
