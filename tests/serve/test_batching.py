"""Requests that reach a worker together are scored together, and each gets what it would get alone."""

from __future__ import annotations

import asyncio
import copy
import json

from leadscore.serve.app import create_app

from leadscore.settings import Settings

KEY = "sc_batch_key_0001"


def _leads(example: dict, n: int, start: int) -> list[dict]:
    """n variants of the model's example lead (explicit as_of: the answer does not depend on the clock)."""
    sources = ["webinar", "paid_search", "organic", "referral", "event"]
    out = []
    for i in range(start, start + n):
        lead = copy.deepcopy(example["leads"][0])
        lead["lead_id"] = f"batch-{i}"
        lead["as_of"] = f"2026-06-{10 + i:02d}T10:00:00Z"
        lead.setdefault("attributes", {})["source"] = sources[i % len(sources)]
        out.append(lead)
    return out


async def _post(app, body: dict, query: bytes = b"") -> tuple[int, dict]:
    raw = json.dumps(body).encode()
    messages = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def _batches(metrics) -> tuple[float, float]:
    """(batches, requests in them) so far, from the service's own metric."""
    values = {s.name: s.value for m in metrics.batches.collect() for s in m.samples}
    return values["leadscore_score_batch_requests_count"], values["leadscore_score_batch_requests_sum"]


def test_requests_of_one_step_are_scored_together_with_the_answers_they_get_alone(trained, tmp_path):
    # given the service, and five requests: one, three, one, two and one leads, the fourth with explain=full
    settings = Settings(
        api_keys=f"scorer:{KEY}",
        mlflow_tracking_uri=trained.uri,
        database_url=f"sqlite:///{tmp_path / 'batch.db'}",
        reload_interval_seconds=0,
    )
    app = create_app(settings)
    example = trained.result.model.info["example"]
    sizes, start, requests = [1, 3, 1, 2, 1], 0, []
    for i, n in enumerate(sizes):
        requests.append(({"leads": _leads(example, n, start)}, b"explain=full" if i == 3 else b""))
        start += n

    async def scenario():
        async with app.router.lifespan_context(app):
            alone = []
            for body, query in requests:  # one at a time: each is a batch of its own
                alone.append(await _post(app, body, query))
            before = _batches(app.state.service.metrics)
            # when they reach the worker in the same event-loop step
            together = await asyncio.gather(*(_post(app, body, query) for body, query in requests))
            after = _batches(app.state.service.metrics)
            return alone, together, before, after

    alone, together, before, after = asyncio.run(scenario())
    # then each gets exactly the answer it got alone: its own leads, in its order, with the same numbers
    assert [status for status, _ in together] == [200] * 5
    assert together == alone
    assert [[r["lead_id"] for r in body["results"]] for _, body in together] == [
        [lead["lead_id"] for lead in body["leads"]] for body, _ in requests
    ]
    assert "explanation" in together[3][1]["results"][0] and "explanation" not in together[0][1]["results"][0]
    # and they were scored in three batches (explain=full apart: the first three, the fourth, the fifth),
    # where one at a time had made five batches of one
    assert before == (5, 5)
    assert (after[0] - before[0], after[1] - before[1]) == (3, 5)


def test_a_request_that_fails_in_a_batch_fails_alone_and_a_swapped_model_is_batched_apart(trained):
    # given the batcher of a service, the real model, a copy with other scores (a champion swapped in the
    # middle of a step), and a copy that fails on one lead
    from types import SimpleNamespace

    from leadscore.model.exploration import NONE
    from leadscore.serve.metrics import Metrics
    from leadscore.serve.schemas import ScoreRequest
    from leadscore.serve.scoring import Batcher, score_request
    from serve_helpers import shifted

    real = trained.result.model
    swapped = shifted(real, 1.0)

    class Fragile:
        def __getattr__(self, name):
            return getattr(real, name)

        def score(self, leads, as_of=None, explain_full=False, exploration=NONE):
            if any(lead["lead_id"] == "boom" for lead in leads):
                raise ValueError("boom")
            return real.score(leads, as_of, explain_full=explain_full, exploration=exploration)

    fragile = Fragile()
    state = SimpleNamespace(metrics=Metrics(), score_log=None, settings=None, engine=None, exploration=NONE)
    example = trained.result.model.info["example"]
    requests = [ScoreRequest.model_validate({"leads": _leads(example, 1, i)}) for i in range(6)]
    boom = ScoreRequest.model_validate({"leads": [{**_leads(example, 1, 9)[0], "lead_id": "boom"}]})
    steps = [
        (requests[0], fragile),
        (boom, fragile),
        (requests[1], fragile),  # one batch, then alone
        (requests[2], real),
        (requests[3], swapped),
        (requests[4], swapped),
        (requests[5], real),
    ]
    batcher = Batcher(state)

    async def one_step():
        return await asyncio.gather(
            *(batcher.score(req, False, model) for req, model in steps), return_exceptions=True
        )

    # when they all arrive in one step
    answers = asyncio.run(one_step())
    # then the failing request gets its own error and every other one its answer alone, with its own model
    assert isinstance(answers[1], ValueError)
    for (req, model), answer in zip(steps, answers, strict=False):
        if req is not boom:
            assert answer == score_request(state, req, False, {}, model if model is not fragile else real)
    assert answers[3]["results"][0]["probability"] != answers[2]["results"][0]["probability"]
    # and the batches were: the fragile three (failed, then two scored alone), real, swapped x2, real
    count, total = _batches(state.metrics)
    assert (count, total) == (5, 6)
