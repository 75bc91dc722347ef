"""Score leads from a request: the live feature path, the serving model, the score log.

The hot path is numpy on a few small arrays (see `features.live` and `ScoringModel.explain`): no
pandas, no scikit-learn, no thread pool. Stored leads are read from the database first (in a worker
thread, by the route), then everything else runs without I/O; the score-log rows go to a background writer.
Small stateless requests that arrive together are scored together (`Batcher`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import HTTPException
from leadscore.model.scoring import Scored
from leadscore.serve import store
from leadscore.serve.schemas import ScoreRequest

if TYPE_CHECKING:  # the service holds a Batcher
    from leadscore.model.scoring import ScoringModel
    from leadscore.serve.service import ScoringService

    # a request waiting for the end of its event-loop step: (request, explain_full, model, its answer)
    _Waiting = tuple[ScoreRequest, bool, ScoringModel, asyncio.Future[dict[str, Any]]]

log = logging.getLogger("leadscore.serve")
NO_MODEL = (
    "no model is loaded ({why}); train one with `leadscore train` (or promote a version) and the "
    "service picks it up on its next check or on POST /v1/admin/reload"
)


def current_model(state: ScoringService) -> ScoringModel:
    """The model to score with: one reference for the whole request, so a swap cannot split it."""
    model = state.holder.model
    if model is None:
        raise HTTPException(
            503,
            [{"field": "model", "reason": NO_MODEL.format(why=state.holder.last_error or "still loading")}],
        )
    return model


def stored_leads_needed(req: ScoreRequest) -> list[str]:
    return [lead.lead_id for lead in req.leads if lead.created_at is None]


def load_stored(state: ScoringService, req: ScoreRequest) -> dict[str, dict[str, Any]]:
    """Blocking database read of the leads sent by `lead_id` only."""
    need = stored_leads_needed(req)
    return store.get_leads(state.engine, need, state.settings.max_events_per_lead) if need else {}


def score_request(
    state, req: ScoreRequest, explain_full: bool = False, stored: dict | None = None, model=None
) -> dict:
    model = model or current_model(state)
    now = datetime.now(UTC)
    if stored is None:
        stored = load_stored(state, req)
    leads: list[dict] = []
    errors = []
    for i, lead in enumerate(req.leads):
        if lead.created_at is None:
            if lead.attributes is not None or lead.events is not None:
                errors.append(
                    {
                        "field": f"leads.{i}.created_at",
                        "reason": "required when attributes or events are sent",
                    }
                )
                continue
            if lead.lead_id not in stored:
                errors.append(
                    {
                        "field": f"leads.{i}.lead_id",
                        "reason": f"no stored lead {lead.lead_id!r}: send created_at, attributes and events, "
                        "or store it with PUT /v1/leads/{lead_id}",
                    }
                )
                continue
            d = dict(stored[lead.lead_id])
        else:
            attrs = lead.attributes.model_dump() if lead.attributes else {}
            # events are validated plain dicts (schemas.Event): read as they are
            d = {
                "lead_id": lead.lead_id,
                "created_at": lead.created_at,
                "attributes": attrs,
                "events": lead.events or (),
            }
        if lead.as_of is not None:
            d["as_of"] = lead.as_of
        leads.append(d)
    if errors:
        status = 422 if any(e["field"].endswith("created_at") for e in errors) else 404
        raise HTTPException(status, errors[:50])
    scored = model.score(leads, now, explain_full=explain_full, exploration=state.exploration)
    results = scored.results
    if state.metrics is not None:
        state.metrics.observe_scores(results)
    if state.score_log is not None:  # last: nothing after it can fail, so a request is never logged twice
        state.score_log.put(score_log_rows(scored, now, model.version))
    return {"model": {"name": model.name, "version": model.version}, "results": results}


def encoded_score_log_rows(scored: Scored, scored_at: datetime, version: str | None) -> list[tuple[Any, ...]]:
    """`score_log_rows` encoded as `store.write_scores` takes them (the rescorer's, `leadscore rescore`'s and
    `leadscore import`'s; the API's background writer encodes its own as they are queued), made straight
    from the feature columns: a bulk rescore built a dict of every lead's features only to encode its
    values (1.4 of 2.2 s per 100k leads)."""
    names = tuple(scored.features)
    columns = [np.asarray(scored.values[name]).tolist() for name in names]
    return store.encoded_score_log_rows(
        scored.results, scored_at, scored.as_of, version, zip(*columns, strict=True), names
    )


def score_log_rows(scored: Scored, scored_at: datetime, version: str | None) -> list[dict]:
    """The score log's rows of scored leads (the API's and `leadscore import`'s)."""
    return [
        {
            "lead_id": r["lead_id"],
            "scored_at": scored_at,
            "as_of": as_of,
            "model_version": version,
            "probability": r["probability"],
            "score": r["score"],
            "grade": r["grade"],
            "qualified": r["qualified"],
            "features": snapshot,
            "reasons": r["reasons"],
            "propensity": r["propensity"],
            "explored": r["explored"],
        }
        for r, as_of, snapshot in zip(scored.results, scored.as_of, scored.snapshots(), strict=True)
    ]


class Batcher:
    """Scores the small stateless requests that reach the event loop in the same step as one batch.

    Under load a worker's event loop reads several requests per step (one per ready connection). Scored
    one at a time, each pays every stage's fixed cost (feature arrays, the compiled walks, reasons, the
    score-log row) for its one lead; scored together they pay it once (measured in process,
    boosted: one lead alone 160 us, four together 73 us each). No request waits for another: a batch is
    what has already arrived when the step ends (`call_soon`), at most `MAX_LEADS` leads, one model, one
    `explain` setting. Each request gets exactly the results it would get alone (tests/serve/test_batching;
    test_fast_path proves the batch and one-lead paths of both model families equal), and if a batch
    fails, each of its requests is scored alone, so it gets its own answer or its own error.
    """

    MAX_LEADS = 64

    def __init__(self, service: ScoringService):
        self.service = service
        # per event loop (one per worker; tests may run several), the requests of its current step:
        # (request, explain_full, model, future)
        self._waiting: dict[asyncio.AbstractEventLoop, list[_Waiting]] = {}

    async def score(self, req: ScoreRequest, explain_full: bool, model: ScoringModel) -> dict[str, Any]:
        """`score_request(service, req, explain_full, {}, model)`, batched with the requests of the same
        step."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            loop.call_soon(self._flush, loop)
        waiting.append((req, explain_full, model, future))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting.pop(loop, [])
        batch: list[_Waiting] = []
        leads = 0
        for item in waiting:
            n = len(item[0].leads)
            if batch and (item[1] != batch[0][1] or item[2] is not batch[0][2] or leads + n > self.MAX_LEADS):
                self._score_or_fail(batch)
                batch, leads = [], 0
            batch.append(item)
            leads += n
        if batch:
            self._score_or_fail(batch)

    def _score_or_fail(self, batch: list[_Waiting]) -> None:
        try:
            self._score(batch)
        except Exception as e:  # noqa: BLE001 - a callback of the loop: never leave a request waiting
            log.exception("a batch of %d score requests failed", len(batch))
            for *_, future in batch:
                if not future.done():
                    future.set_exception(e)

    def _score(self, batch: list[_Waiting]) -> None:
        batch = [item for item in batch if not item[3].done()]  # a cancelled request needs no answer
        if len(batch) > 1:
            _, explain_full, model, _ = batch[0]
            try:
                together = ScoreRequest.model_construct(
                    leads=[lead for item in batch for lead in item[0].leads]
                )
                payload = score_request(self.service, together, explain_full, {}, model)
            except Exception:  # noqa: BLE001 - scored alone below: each request gets its own answer or error
                pass
            else:
                start = 0
                for req, _, _, future in batch:
                    end = start + len(req.leads)
                    future.set_result({"model": payload["model"], "results": payload["results"][start:end]})
                    start = end
                self._observe(len(batch))
                return
        for req, explain_full, model, future in batch:
            try:
                payload = score_request(self.service, req, explain_full, {}, model)
            except Exception as e:  # noqa: BLE001 - the request's own error, answered by its route
                future.set_exception(e)
            else:
                future.set_result(payload)
                self._observe(1)

    def _observe(self, requests: int) -> None:
        if self.service.metrics is not None:
            self.service.metrics.observe_batch(requests)
