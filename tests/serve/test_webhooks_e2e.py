"""Handoff webhooks end to end: a real `leadscore serve` process, a real local HTTP receiver that verifies
each signature, and leads that cross the handoff threshold after high-intent events (issue 15, "Done when"):
exactly one signed `lead.handoff` within 5 s of the events, with no score asked for (the service
rescores the stored lead); a receiver failing three times still accepts it once; a
server killed with SIGKILL between the score and the delivery delivers it after a restart."""

from __future__ import annotations

import re
import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from support import KEYS, api_lead, free_port
from webhook_receiver import SECRET, Receiver

pytestmark = pytest.mark.slow
SCORER = {"Authorization": f"Bearer {KEYS['scorer']}"}
SALES = {"Authorization": f"Bearer {KEYS['sales']}"}


def shifted(lead: dict, to: datetime) -> dict:
    """`lead` moved in time so its last event is a minute before `to` (now): its activity is recent."""
    last = max(datetime.fromisoformat(e["timestamp"]) for e in lead["events"])
    delta = to - last - timedelta(minutes=1)

    def move(t: str) -> str:
        return (datetime.fromisoformat(t) + delta).isoformat()

    return {
        **lead,
        "created_at": move(lead["created_at"]),
        "events": [{**e, "timestamp": move(e["timestamp"])} for e in lead["events"]],
    }


@pytest.fixture(scope="module")
def hot_leads(trained, demo_dataset) -> list[dict]:
    """Demo leads (moved to now) that the champion hands over with their events and not without them."""
    model = trained.result.model
    by_activity = demo_dataset.events["lead_id"].value_counts().index[:400]
    now = datetime.now(UTC)
    leads = [shifted(api_lead(demo_dataset, str(i)), now) for i in by_activity]
    with_events = model.score(leads, now).results
    without = model.score([{**lead, "events": []} for lead in leads], now).results
    hot = [
        lead
        for lead, w, wo in zip(leads, with_events, without, strict=True)
        if w["qualified"] and not wo["qualified"] and len(lead["events"]) <= 1000
    ]
    assert len(hot) >= 3, "the demo data should have leads that cross the threshold with their events"
    return hot[:3]


def store_cold(c: httpx.Client, lead: dict, lead_id: str) -> None:
    """The lead stored and scored before its activity: not handed over."""
    r = c.put(
        f"/v1/leads/{lead_id}", json={"created_at": lead["created_at"], "attributes": lead["attributes"]}
    )
    assert r.status_code == 200, r.text
    r = c.post("/v1/score", json={"leads": [{"lead_id": lead_id}]})
    assert r.status_code == 200 and r.json()["results"][0]["qualified"] is False, r.text
    # both cold scores written (the rescore the PUT asked for, and this one, through the background
    # writer) before any event arrives: the lead's state is "not handed over", whatever the timing
    deadline = time.monotonic() + 30
    while len(c.get(f"/v1/leads/{lead_id}").json()["history"]) < 2:
        assert time.monotonic() < deadline, "the cold scores were not written within 30 s"
        time.sleep(0.05)


def heat_up(c: httpx.Client, lead: dict, lead_id: str) -> None:
    """Its high-intent events arrive; nothing else is asked: the service rescores the stored lead itself
    (serve/rescore.py), and that score writes the handoff event."""
    r = c.post("/v1/events", json={"events": [{"lead_id": lead_id, **e} for e in lead["events"]]})
    assert r.status_code == 201, r.text


def handoffs(receiver: Receiver, lead_id: str, accepted: bool = True) -> list:
    got = receiver.accepted() if accepted else list(receiver.received)
    return [r for r in got if r.event["type"] == "lead.handoff" and r.event["lead_id"] == lead_id]


def wait_for_handoff(receiver: Receiver, lead_id: str, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not handoffs(receiver, lead_id):
        time.sleep(0.02)
    return handoffs(receiver, lead_id)


def test_a_lead_crossing_the_threshold_is_pushed_once_signed_and_survives_sigkill(
    trained, hot_leads, tmp_path, database_url, start_server
):
    receiver = Receiver().start(port=free_port())
    port = receiver.server.server_address[1]
    env = {
        "LEADSCORE_WEBHOOK_URL": receiver.url,
        "LEADSCORE_WEBHOOK_SECRET": SECRET,
        "LEADSCORE_WEBHOOK_BACKOFF_SECONDS": "0.2",
        "LEADSCORE_WEBHOOK_BACKOFF_MAX_SECONDS": "0.5",
        "LEADSCORE_WEBHOOK_TIMEOUT_SECONDS": "2",
        # while the receiver is down before the kill, hook-3's event is retried every 0.1-0.5 s: 100 tries
        # (the most allowed) keep it alive far longer than a loaded machine takes to get to the restart
        "LEADSCORE_WEBHOOK_MAX_ATTEMPTS": "100",
    }
    server = start_server(tmp_path, trained.uri, database_url=database_url, extra_env=env)
    again = None
    try:
        with server.client("scorer") as c:
            # given a stored lead scored before its activity
            store_cold(c, hot_leads[0], "hook-1")
            # when its high-intent events arrive (and the service rescores it on its own)
            heat_up(c, hot_leads[0], "hook-1")
            # then the receiver gets exactly one lead.handoff within 5 s, signed, naming the lead
            got = wait_for_handoff(receiver, "hook-1", timeout=5)
            assert len(got) == 1 and got[0].signature_ok
            event = got[0].event
            assert event["qualified"] is True and event["previous_qualified"] is False
            assert event["event_id"] == got[0].headers["X-Leadscore-Event-Id"]
            assert {"score", "grade", "probability", "reasons", "model_version", "created_at"} <= set(event)

            # given a receiver that fails the first three tries of each event
            receiver.fail_each = 3
            store_cold(c, hot_leads[1], "hook-2")
            heat_up(c, hot_leads[1], "hook-2")
            # then the event is accepted once, after three failed tries with the same id and body
            got = wait_for_handoff(receiver, "hook-2", timeout=30)
            assert len(got) == 1 and got[0].signature_ok
            tries = handoffs(receiver, "hook-2", accepted=False)
            assert [r.status for r in tries] == [500, 500, 500, 200]
            assert {r.event_id for r in tries} == {got[0].event_id}
            receiver.fail_each = 0

            # given the receiver down, a lead handed over (its event stored, not delivered)
            receiver.stop()
            store_cold(c, hot_leads[2], "hook-3")
            heat_up(c, hot_leads[2], "hook-3")
            with server.client("sales") as pull:
                assert _pulled(pull, "hook-3", timeout=30), "the event was not stored"
        # when the server is killed with SIGKILL before it could deliver it
        server.stop(signal.SIGKILL)
        accepted_before = len(receiver.accepted())
        # and started again once the receiver is back
        receiver = Receiver(received=receiver.received).start(port=port)
        again = start_server(tmp_path, trained.uri, database_url=database_url, extra_env=env)
        # then the event is delivered, once
        got = wait_for_handoff(receiver, "hook-3", timeout=30)
        assert len(got) == 1 and got[0].signature_ok
        # and each lead's handoff was accepted exactly once over the whole run
        assert [len(handoffs(receiver, f"hook-{i}")) for i in (1, 2, 3)] == [1, 1, 1]
        with again.client("admin") as admin:
            # and everything pending is delivered, nothing dead; Prometheus counts what the restarted
            # server delivered
            deadline = time.monotonic() + 30
            while admin.get("/v1/admin/webhooks").json()["counts"]["pending"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert admin.get("/v1/admin/webhooks").json()["counts"] == {
                "pending": 0,
                "delivered": len(receiver.accepted()),
                "dead": 0,
            }
            metrics = admin.get("/metrics").text
            assert "leadscore_webhook_pending_events" in metrics  # a URL is set: the gauge is there
            delivered = re.search(r"^leadscore_webhook_delivered_total (\S+)$", metrics, re.M)
            assert delivered and float(delivered.group(1)) == len(receiver.accepted()) - accepted_before
    finally:
        receiver.stop()
        server.stop()
        if again is not None:
            again.stop()


def _pulled(c: httpx.Client, lead_id: str, timeout: float = 10) -> bool:
    """Whether GET /v1/handoffs lists a lead.handoff of the lead (within `timeout`: the lead is rescored
    in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = c.get("/v1/handoffs", params={"limit": 1000}).json()["events"]
        if any(e["event"]["lead_id"] == lead_id and e["event"]["type"] == "lead.handoff" for e in events):
            return True
        time.sleep(0.1)
    return False
