"""Acknowledged feedback survives a crash: the server is SIGKILLed in the middle of a stream of writes and
every write it acknowledged is there after a restart (SQLite WAL + synchronous=FULL; PostgreSQL commit)."""

from __future__ import annotations

import signal
import threading

import httpx
import pytest
from leadscore.serve import db, store

pytestmark = pytest.mark.slow
SALES = {"Authorization": "Bearer sa_test_key_0001"}
SCORER = {"Authorization": "Bearer sc_test_key_0001"}


def test_every_acknowledged_feedback_survives_sigkill(trained, tmp_path, database_url, start_server):
    # given a server taking feedback from 4 concurrent clients
    server = start_server(tmp_path, trained.uri, database_url=database_url)
    for k in range(4):  # feedback is taken for stored leads only
        with httpx.Client(base_url=server.url, headers=SCORER, timeout=10) as c:
            assert c.put(f"/v1/leads/crash-{k}", json={"created_at": "2024-01-01T00:00:00Z"}).json()[
                "created"
            ]
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def client(k: int):
        with httpx.Client(base_url=server.url, headers=SALES, timeout=10) as c:
            for i in range(100_000):
                key = f"crash-{k}-{i}"
                try:
                    r = c.post(
                        "/v1/feedback",
                        json={
                            "lead_id": f"crash-{k}",
                            "outcome": "qualified",
                            "note": f"write {i}",
                            "idempotency_key": key,
                        },
                    )
                except httpx.HTTPError:
                    return  # the server died mid-request: that write was never acknowledged
                if r.status_code == 201:
                    with lock:
                        acked.append(key)
                        if len(acked) >= 300:
                            enough.set()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    # when it is killed with SIGKILL while the writes are streaming
    assert enough.wait(120), "the server did not acknowledge 300 writes"
    server.stop(signal.SIGKILL)
    for t in threads:
        t.join(timeout=30)
    # and started again on the same database
    again = start_server(tmp_path, trained.uri, database_url=database_url)
    try:
        engine = db.make_engine(database_url)
        stored = set(store.feedback_frame(engine)["idempotency_key"])
        engine.dispose()
        # then every acknowledged write is there
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost"
        # and the API serves them: a retry of an acknowledged write is answered as a duplicate
        r = httpx.post(
            f"{again.url}/v1/feedback",
            headers=SALES,
            json={
                "lead_id": acked[-1].rsplit("-", 1)[0],
                "outcome": "qualified",
                "note": f"write {acked[-1].rsplit('-', 1)[1]}",
                "idempotency_key": acked[-1],
            },
        )
        assert r.status_code == 201 and r.json()["duplicate"] is True
    finally:
        again.stop()
