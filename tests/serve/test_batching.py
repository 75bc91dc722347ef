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

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/score", "raw_path": b"/v1/score", "query_string": query, "root_path": "",
             "headers": [(b"host", b"test"), (b"authorization", f"Bearer {KEY}".encode()),
                         (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {}}
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def _batches(app) -> tuple[float, float]:
    """(batches, requests in them) so far, from the service's own metric."""
    values = {s.name: s.value for m in app.state.metrics.batches.collect() for s in m.samples}
    return values["leadscore_score_batch_requests_count"], values["leadscore_score_batch_requests_sum"]


def test_requests_of_one_step_are_scored_together_with_the_answers_they_get_alone(trained, tmp_path):
    # given the service, and five requests: one, three, one, two and one leads, the fourth with explain=full
    settings = Settings(api_keys=f"scorer:{KEY}", mlflow_tracking_uri=trained.uri,
                        database_url=f"sqlite:///{tmp_path / 'batch.db'}", reload_interval_seconds=0)
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
            before = _batches(app)
            # when they reach the worker in the same event-loop step
            together = await asyncio.gather(*(_post(app, body, query) for body, query in requests))
            after = _batches(app)
            return alone, together, before, after

    alone, together, before, after = asyncio.run(scenario())
    # then each gets exactly the answer it got alone: its own leads, in its order, with the same numbers
    assert [status for status, _ in together] == [200] * 5
    assert together == alone
    assert [[r["lead_id"] for r in body["results"]] for _, body in together] == \
        [[lead["lead_id"] for lead in body["leads"]] for body, _ in requests]
    assert "explanation" in together[3][1]["results"][0] and "explanation" not in together[0][1]["results"][0]
    # and they were scored in three batches (explain=full apart: the first three, the fourth, the fifth),
    # where one at a time had made five batches of one
    assert before == (5, 5)
    assert (after[0] - before[0], after[1] - before[1]) == (3, 5)
