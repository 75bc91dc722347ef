"""Several workers (`leadscore serve --workers 2`, real processes): a promote, rollback or reload reaches
every worker within seconds, and a flood of big requests is shed with 503 + Retry-After instead of timing
out."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from serve_helpers import register_version, shifted

from leadscore.settings import Settings

pytestmark = pytest.mark.slow
KEYS = {"scorer": "sc_test_key_0001", "sales": "sa_test_key_0001", "admin": "ad_test_key_0001"}
READ = {"Authorization": f"Bearer {KEYS['scorer']}"}
ADMIN = {"Authorization": f"Bearer {KEYS['admin']}"}


def versions_served(url: str, n: int) -> list[str]:
    """The version named by `n` GET /v1/model, each on a new connection (so the kernel hands them to either
    worker, as it does a client's connections)."""
    return [httpx.get(f"{url}/v1/model", headers=READ, timeout=30).json()["version"] for _ in range(n)]


def reload_answer(url: str) -> dict:
    r = httpx.post(f"{url}/v1/admin/reload", headers=ADMIN, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_two_workers(url: str) -> None:
    """Until both workers serve version 1 (the second may still be starting on a loaded machine)."""
    deadline = time.monotonic() + 300
    while [w["version"] for w in reload_answer(url)["workers"]] != ["1", "1"]:
        assert time.monotonic() < deadline, "the two workers did not both start"
        time.sleep(1)


def wait_for_every_worker(url: str, version: str, within: float) -> None:
    """Ask until 50 answers in a row name `version`; the first of them must come within `within` seconds (the
    50 requests themselves, each on a new connection, may take longer on a loaded machine)."""
    start = time.monotonic()
    streak_from, streak = None, 0
    while streak < 50:
        assert time.monotonic() - start < within + 120, f"answers kept alternating versions: not {version}"
        asked = time.monotonic()
        if versions_served(url, 1) == [version]:
            streak_from, streak = (streak_from if streak else asked), streak + 1
        else:
            streak = 0
    assert streak_from - start < within, (
        f"every worker served version {version} only after {streak_from - start:.1f} s"
    )


def test_promote_rollback_and_reload_reach_every_worker_within_seconds(
    trained, registry_copy, tmp_path, start_server
):
    model = trained.result.model
    default_interval = Settings.model_fields["reload_interval_seconds"].default
    # given two workers with the default registry check, both serving version 1
    server = start_server(
        tmp_path,
        registry_copy,
        workers=2,
        timeout=300,
        extra_env={"LEADSCORE_RELOAD_INTERVAL_SECONDS": str(default_interval)},
    )
    try:
        wait_for_two_workers(server.url)
        # when a second version is promoted in the registry (as `leadscore promote` does)
        v2 = register_version(registry_copy, shifted(model, 0.3), tmp_path / "artifacts", promote=True)
        # then within 5 s 50 answers in a row, from either worker, name it
        wait_for_every_worker(server.url, v2, within=5)
        # and a rollback (the previous champion again) reaches them the same way
        from leadscore.model import registry
        from mlflow import MlflowClient

        assert registry.rollback(client=MlflowClient(registry_copy)) == "1"
        wait_for_every_worker(server.url, "1", within=5)

        # when a third is promoted and the admin reloads at once
        v3 = register_version(registry_copy, shifted(model, -0.3), tmp_path / "artifacts", promote=True)
        body = reload_answer(server.url)
        # then the answer comes when every worker serves it, and says so worker by worker
        assert body["version"] == v3 and body["all_workers"] is True, body
        assert [(w["version"], w["switched"]) for w in body["workers"]] == [(v3, True), (v3, True)]
        assert len({w["worker"] for w in body["workers"]}) == 2 and "on all 2 workers" in body["message"]
        # and from then on every answer names it, with no wait
        assert set(versions_served(server.url, 50)) == {v3}
    finally:
        server.stop()


class Flood:
    """`threads` clients each sending `per_thread` POST /v1/score of `body`, with a client timeout."""

    def __init__(self, url: str, body: bytes, threads: int, per_thread: int, timeout: float):
        self.url, self.body, self.per_thread, self.timeout = url, body, per_thread, timeout
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.shed: list[httpx.Response] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(
            base_url=self.url, timeout=self.timeout, headers={**READ, "Content-Type": "application/json"}
        ) as c:
            for _ in range(self.per_thread):
                try:
                    r = c.post("/v1/score", content=self.body)
                except httpx.HTTPError as e:  # a timeout or a dropped connection: what must not happen
                    self.errors.append(repr(e))
                    continue
                self.statuses[r.status_code] += 1
                if r.status_code == 503:
                    self.shed.append(r)

    def run(self) -> Flood:
        for t in self._threads:
            t.start()
        for t in self._threads:
            t.join(timeout=300)
        return self


def test_a_flood_of_big_requests_is_shed_at_once_and_the_service_recovers(trained, tmp_path, start_server):
    import json

    lead = trained.result.model.info["example"]["leads"][0]
    body = json.dumps({"leads": [{**lead, "lead_id": f"flood-{i}"} for i in range(1000)]}).encode()
    # given two workers, each working on at most 2 such bodies at once (the default bound is 8 MB)
    server = start_server(
        tmp_path,
        trained.uri,
        workers=2,
        timeout=300,
        extra_env={"LEADSCORE_MAX_INFLIGHT_BODY_BYTES": str(2 * len(body))},
    )
    try:
        wait_for_two_workers(server.url)
        # when 24 clients send 1,000-lead requests as fast as they are answered, with a 10 s client timeout
        flood = Flood(server.url, body, threads=24, per_thread=4, timeout=10).run()
        # then no request timed out or failed, the ones over the bound were answered 503 and told when to
        # retry
        assert flood.errors == [], flood.errors[:3]
        assert set(flood.statuses) <= {200, 503} and flood.statuses[200] and flood.statuses[503], (
            flood.statuses
        )
        for r in flood.shed:
            assert r.headers["retry-after"] == "1"
            detail = r.json()["detail"][0]
            assert detail["field"] == "request" and "at capacity" in detail["reason"]
        # and the service answers normally afterwards
        with server.client("scorer") as c:
            after = c.post("/v1/score", content=body, headers={"Content-Type": "application/json"})
            assert after.status_code == 200 and len(after.json()["results"]) == 1000
            assert c.get("/readyz").status_code == 200
            metrics = c.get("/metrics").text
        assert "leadscore_shed_requests_total" in metrics
    finally:
        server.stop()
