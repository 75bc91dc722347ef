"""Leases (the outbox's deliveries, the rescore queue's claims) are set and checked by the store's clock: on
PostgreSQL the server's, so a worker on a host whose clock runs ahead cannot take what another still holds.
SQLite's store is on one host, whose clock is the only one (nothing to test there)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from leadscore.serve import store
from leadscore.serve.store import outbox_delivery, rescore_queue, rows
from test_webhooks import add_event, stored, wait_until

SKEW = timedelta(minutes=10)  # far longer than any lease below
pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def clock_ahead(monkeypatch) -> Callable[[], AbstractContextManager[None]]:
    """A context in which this process's clock runs SKEW ahead of the real one (and of the server's): the
    other host of the story."""

    @contextmanager
    def ahead() -> Iterator[None]:
        with monkeypatch.context() as m:
            for module in (rows, outbox_delivery, rescore_queue):
                m.setattr(module, "now", lambda: datetime.now(UTC) + SKEW)
            yield

    return ahead


def test_a_host_whose_clock_runs_ahead_cannot_take_an_event_another_deliverer_holds(engine, clock_ahead):
    # given an event a deliverer has claimed
    event_id = add_event(engine)
    (held,) = outbox_delivery.claim(engine, 10, lease_seconds=60)
    # when a deliverer on a host whose clock runs 10 minutes ahead claims
    with clock_ahead():
        taken = outbox_delivery.claim(engine, 10, lease_seconds=60)
    # then it gets nothing (its clock says the lease ran out; the store's says not), and the holder's
    # outcome is recorded
    assert taken == []
    assert outbox_delivery.mark_delivered(engine, held)
    assert stored(engine, event_id)["status"] == "delivered"


def test_a_lease_that_ran_out_by_the_stores_clock_is_taken_over_whatever_the_hosts_clock(engine, clock_ahead):
    # given an event claimed for half a second by a deliverer that then died
    event_id = add_event(engine)
    (dead,) = outbox_delivery.claim(engine, 10, lease_seconds=0.5)
    # when a deliverer whose clock runs ahead claims until it gets something
    got: list[outbox_delivery.Claimed] = []
    with clock_ahead():
        assert wait_until(lambda: bool(got.extend(outbox_delivery.claim(engine, 10, 60)) or got), timeout=10)
    # then it takes the event over once the store's clock passed the lease, and the dead claim can no
    # longer record an outcome
    assert [c.event_id for c in got] == [event_id]
    assert got[0].lease_until > dead.lease_until
    assert not outbox_delivery.mark_failed(engine, dead, "late", None)


def test_a_rescorer_whose_clock_runs_ahead_cannot_take_leads_another_holds(engine, clock_ahead):
    # given a queued lead claimed by one rescorer
    store.upsert_lead(engine, "L-1", datetime(2026, 3, 1, tzinfo=UTC), {})
    a = rescore_queue.claim(engine, "a", rescore_queue.ACTIVITY, 10, lease_seconds=60)
    assert list(a.leads) == ["L-1"]
    # when a rescorer on a host whose clock runs 10 minutes ahead claims
    with clock_ahead():
        b = rescore_queue.claim(engine, "b", rescore_queue.ACTIVITY, 10, lease_seconds=60)
    # then it gets nothing, and the first one's finish takes the lead off the queue
    assert b.leads == {}
    with engine.begin() as conn:
        rescore_queue.finish(conn, "a", a)
    assert rescore_queue.waiting(engine, rescore_queue.ACTIVITY) == 0
