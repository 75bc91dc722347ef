"""Model lifecycle in a real server: no model at all, hot swap of the champion under load (by the periodic
check and by the admin call) with zero failed requests, and refusal of versions that cannot serve."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from serve_helpers import break_calibration, break_format, promote, register_version, shifted

pytestmark = pytest.mark.slow
KEYS = {"scorer": "sc_test_key_0001", "sales": "sa_test_key_0001", "admin": "ad_test_key_0001"}


class Load:
    """Score requests from `n` threads until stopped; counts answers by (status, model version)."""

    def __init__(self, url: str, body: dict, n: int = 4):
        self.url, self.body, self.n = url, body, n
        self.seen: Counter = Counter()
        self.failures: list = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self):
        with httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {KEYS['scorer']}"}, timeout=30
        ) as c:
            while not self._stop.is_set():
                try:
                    r = c.post("/v1/score", json=self.body)
                    if r.status_code != 200:
                        self.failures.append((r.status_code, r.text[:200]))
                    else:
                        self.seen[r.json()["model"]["version"]] += 1
                except httpx.HTTPError as e:  # a dropped connection is a failed request too
                    self.failures.append(repr(e))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def wait_for_version(self, version: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.seen[version] < 20:
            time.sleep(0.1)
        return self.seen[version] >= 20


def test_champion_swaps_under_load_with_zero_failed_requests_and_broken_versions_are_refused(
    trained, registry_copy, tmp_path, start_server
):
    model = trained.result.model
    # given a server on a private copy of the registry (champion = version 1), checking every second
    server = start_server(tmp_path, registry_copy, extra_env={"LEADSCORE_RELOAD_INTERVAL_SECONDS": "1"})
    try:
        body = model.info["example"]
        with Load(server.url, body) as load:
            assert load.wait_for_version("1")
            # when a second version is registered and promoted while requests keep coming
            v2 = register_version(registry_copy, shifted(model, 0.3), tmp_path / "artifacts", promote=True)
            # then the periodic check swaps it in
            assert load.wait_for_version(v2), load.seen
            # and when a third is promoted and the admin asks for a reload, it serves at once
            v3 = register_version(registry_copy, shifted(model, -0.3), tmp_path / "artifacts")
            promote(registry_copy, v3)
            r = httpx.post(
                f"{server.url}/v1/admin/reload",
                headers={"Authorization": f"Bearer {KEYS['admin']}"},
                timeout=120,
            )  # loads and smoke-tests a model: slow on a loaded machine
            assert r.status_code == 200 and r.json()["version"] == v3, r.text
            assert load.wait_for_version(v3), load.seen
        # then not one request failed during the swaps, and each version gave its own scores
        assert load.failures == [] and load.seen["1"] and load.seen[v2] and load.seen[v3]

        # given a champion that loads but scores NaN, and one that cannot even load
        for breaker in (break_calibration, break_format):
            bad = register_version(registry_copy, model, tmp_path / "artifacts", mutate=breaker, promote=True)
            with Load(server.url, body, n=2) as load:
                # when the admin asks for a reload
                r = httpx.post(
                    f"{server.url}/v1/admin/reload",
                    headers={"Authorization": f"Bearer {KEYS['admin']}"},
                    timeout=120,
                )
                time.sleep(1.5)  # a periodic check passes too
            # then the version is refused with the reason, the previous one keeps serving, nothing failed
            assert r.status_code == 409, r.text
            assert f"refused model version {bad}" in r.json()["detail"][0]["reason"]
            assert load.failures == [] and set(load.seen) == {v3}
            ready = httpx.get(f"{server.url}/readyz").json()
            assert ready["ready"] is True and ready["model_version"] == v3
            assert f"refused model version {bad}" in ready["last_error"]
            assert f"refused model version {bad}" in server.log.read_text()
        # and the periodic check does not retry the refused version over and over (it may have met it once
        # before the admin's reload did: what matters is that the count stops growing)
        seen = server.log.read_text().count(f"refused model version {bad}")
        assert 1 <= seen <= 2
        time.sleep(2.5)  # two more periodic checks
        assert server.log.read_text().count(f"refused model version {bad}") == seen
    finally:
        server.stop()


def test_without_any_model_the_service_starts_answers_503_and_is_not_ready(trained, tmp_path, start_server):
    # given an empty registry
    empty = f"sqlite:///{tmp_path / 'empty-mlflow.db'}"
    server = start_server(tmp_path, empty)
    try:
        auth = {"Authorization": f"Bearer {KEYS['scorer']}"}
        # when it is asked to score
        r = httpx.post(f"{server.url}/v1/score", json=trained.result.model.info["example"], headers=auth)
        # then it is alive, not ready, and says why scoring is unavailable
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"] == {"model": False, "database": True}
        assert "no model" in ready.json()["reasons"][0]
        assert r.status_code == 503 and "leadscore train" in r.json()["detail"][0]["reason"]
        # and leads are still stored and feedback for them taken
        put = httpx.put(
            f"{server.url}/v1/leads/nm-1",
            json={"created_at": "2024-01-01T00:00:00Z"},
            headers={"Authorization": f"Bearer {KEYS['scorer']}"},
        )
        assert put.status_code == 200 and put.json()["created"], put.text
        fb = httpx.post(
            f"{server.url}/v1/feedback",
            json={"lead_id": "nm-1", "outcome": "won"},
            headers={"Authorization": f"Bearer {KEYS['sales']}"},
        )
        assert fb.status_code == 201
        # when a first model is registered and the admin reloads, it becomes ready
        v = register_version(empty, trained.result.model, tmp_path / "artifacts", promote=True)
        rl = httpx.post(
            f"{server.url}/v1/admin/reload", headers={"Authorization": f"Bearer {KEYS['admin']}"}, timeout=120
        )  # loads and smoke-tests a model: slow on a loaded machine
        assert rl.status_code == 200 and rl.json()["version"] == v
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert (
            httpx.post(
                f"{server.url}/v1/score", json=trained.result.model.info["example"], headers=auth
            ).status_code
            == 200
        )
    finally:
        server.stop()
