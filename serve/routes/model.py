from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from leadscore.serve import model_sync
from leadscore.serve.auth import Admin, Reader
from leadscore.serve.deps import ServiceDep
from leadscore.serve.errors import KEYED, error_responses
from leadscore.serve.scoring import NO_MODEL
from leadscore.serve.store import rescore_queue

router = APIRouter(prefix="/v1", tags=["model"])


@router.get(
    "/model", summary="The model being served", responses=error_responses(*KEYED, 503), response_model=None
)
def get_model(service: ServiceDep, _: Reader) -> dict[str, Any]:
    """The champion being served, and `rescore`: how far the background rescore of the active leads with
    this version is (version, total, done, started_at, finished_at; null when none was started, e.g. with
    `LEADSCORE_RESCORE_RATE=0`)."""
    model = service.holder.model
    if model is None:
        raise HTTPException(
            503,
            [{"field": "model", "reason": NO_MODEL.format(why=service.holder.last_error or "still loading")}],
        )
    info = model.info
    return {
        "name": model.name,
        "version": model.version,
        "alias": service.holder.uri.partition("@")[2] or None,
        "family": model.family,
        "trained_at": info.get("trained_at"),
        "metrics": info.get("metrics"),
        "definition": model.definition.to_dict(),
        "policy": model.policy.to_dict(),
        "features": list(model.encoder.features),
        "example": info.get("example"),
        "rescore": rescore_queue.run_progress(service.engine, model.version) if model.version else None,
    }


@router.post(
    "/admin/reload",
    summary="Load the current champion now, in every worker",
    responses=error_responses(
        *KEYED,
        (409, "The champion was refused; the previous version keeps serving"),
        413,
        (503, "No model could be loaded"),
    ),
    response_model=None,
)
def reload(service: ServiceDep, _: Admin) -> dict[str, Any]:
    """Check the registry now and swap in the champion if it changed, then have every worker of the service
    do the same: the answer comes when all live workers report the version they serve (or after
    `LEADSCORE_RELOAD_WAIT_SECONDS`) and lists them. Requests in flight finish on the old model. A version
    that fails to load or fails its smoke score is refused (409) and the old one keeps serving; with no model
    at all the answer is 503."""
    outcome = service.holder.reload(force=True)
    if outcome.refused or service.holder.model is None:
        raise HTTPException(
            409 if service.holder.model else 503, [{"field": "model", "reason": outcome.message}]
        )
    answer: dict[str, Any] = {
        "changed": outcome.changed,
        "version": outcome.version,
        "message": outcome.message,
    }
    sync = service.model_sync
    if sync is None:  # the app without its lifespan (no store): this process only
        return answer
    generation = model_sync.bump_generation(service.engine)
    sync.adopt(generation)
    workers, done = sync.wait_for_all(generation, service.settings.reload_wait_seconds)
    versions = sorted({w["version"] or "none" for w in workers if w["generation"] >= generation})
    behind = [w["worker"] for w in workers if w["generation"] < generation]
    if behind:
        answer["message"] = (
            f"{outcome.message} here; {len(behind)} of {len(workers)} workers had not switched "
            f"within {service.settings.reload_wait_seconds:g} s: {', '.join(behind)}"
        )
    elif versions == [outcome.version]:
        answer["message"] = (
            f"{outcome.message} on all {len(workers)} workers" if len(workers) > 1 else outcome.message
        )
    else:  # another worker refused the version, or the alias moved again meanwhile
        answer["message"] = (
            f"{outcome.message} here; the {len(workers)} workers serve versions {', '.join(versions)}"
        )
    answer["workers"] = [
        {
            "worker": w["worker"],
            "version": w["version"],
            "switched": w["generation"] >= generation,
            "reported_at": w["reported_at"].isoformat(),
        }
        for w in workers
    ]
    answer["all_workers"] = done and versions == [outcome.version]
    return answer
