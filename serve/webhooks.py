"""Webhook delivery of the handoff events in the outbox (docs/webhooks.md).

Each service worker (process) runs one `WebhookDeliverer` between `ScoringService.start` and `stop`: a
dispatcher thread claims due events (`store.outbox_delivery.claim`, a lease per event, so processes and
hosts never send the same event at once) as long as one of its `LEADSCORE_WEBHOOK_WORKERS` delivery threads
is free, and each thread POSTs one event's stored body byte for byte, signed, with a timeout
(`webhook_http`). The API never waits for any of it: an unreachable or slow receiver only keeps these
threads busy.

2xx is delivered; anything else (a refused connection, a timeout, a 3xx, 4xx or 5xx) is a failed try,
retried after an exponential backoff with jitter, and dead after `LEADSCORE_WEBHOOK_MAX_ATTEMPTS` tries
(listed by `GET /v1/admin/webhooks`, sent again by its redeliver endpoint). The dispatcher wakes at once
when this process writes an event (`wake`) and polls the store every `poll_seconds` for the events of other
processes and for retries falling due.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from datetime import datetime, timedelta

import sqlalchemy as sa
from leadscore.serve.metrics import Metrics
from leadscore.serve.store import outbox_admin, outbox_delivery
from leadscore.serve.store.rows import now
from leadscore.serve.webhook_http import describe, post, receiver, request_headers

from leadscore.settings import Settings

log = logging.getLogger("leadscore.serve.webhooks")


def backoff_seconds(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """The wait after the `attempts`-th failed try: base * 2^(attempts-1), at most `cap`, drawn between half
    and all of it (jitter: receivers coming back from an outage are not hit by every event at once)."""
    full = min(cap, base * 2.0 ** min(attempts - 1, 60))
    return full / 2 + rng.random() * full / 2


class WebhookDeliverer:
    """Delivers the outbox's events from background threads (see the module's docstring)."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        metrics: Metrics,
        poll_seconds: float = 0.5,
    ) -> None:
        assert settings.webhook_url, "a deliverer needs LEADSCORE_WEBHOOK_URL"
        self.engine, self.settings, self.metrics = engine, settings, metrics
        self.url = settings.webhook_url
        self._secret = settings.webhook_secret.get_secret_value().encode()
        self.poll_seconds = poll_seconds
        self.workers = settings.webhook_workers
        # a try is cut at `try_seconds` (connect, send and status line, each within the timeout), and the
        # lease outlives it by a margin: no other deliverer takes the event while the try may still send
        self.try_seconds = 3 * settings.webhook_timeout_seconds
        self.lease_seconds = self.try_seconds + 10
        self._rng = random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = 0  # events claimed and not yet finished
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="webhook")
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info(
            "webhooks: delivering handoff events to %s with %d workers",
            receiver(self.url),
            self.workers,
        )

    def wake(self) -> None:
        """New events were written: claim them now rather than at the next poll."""
        self._wake.set()

    def stop(self, wait: float | None = None) -> None:
        """Stop claiming and wait at most `wait` seconds (default: a try's deadline and a second) for the
        tries in flight to record their outcome; events claimed and not tried, or whose try is still
        running then, stay leased and are due again when their lease expires."""
        ends = time.monotonic() + (wait if wait is not None else self.try_seconds + 1)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(0.0, ends - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = set(self._futures)
        wait_for(running, timeout=max(0.0, ends - time.monotonic()))

    def _expire_old(self) -> None:
        """The events written more than the max age ago and never tried die in one statement, with one log
        line (the URL was set long after they were written), rather than one claim and line each."""
        hours = self.settings.webhook_max_age_hours
        try:
            n = outbox_delivery.expire_untried(self.engine, hours)
        except Exception:  # noqa: BLE001 - a store outage: each expires when claimed instead
            log.warning("webhooks: could not expire old events", exc_info=True)
            return
        if n:
            self.metrics.webhook_dead.inc(n)
            log.warning(
                "webhooks: %d events written more than %g h ago and never tried are dead unsent "
                "(LEADSCORE_WEBHOOK_MAX_AGE_HOURS; GET /v1/admin/webhooks lists them, redeliver to send)",
                n,
                hours,
            )

    def _run(self) -> None:
        self._expire_old()
        while not self._stop.is_set():
            self._wake.clear()  # before claiming: a wake-up during the claim is not lost
            try:
                claimed = self.dispatch()
            except Exception:  # noqa: BLE001 - a store outage: try again at the next poll
                log.warning("webhooks: could not claim events", exc_info=True)
                claimed = 0
            if claimed == 0 or self._free() == 0:
                self._wake.wait(self.poll_seconds)

    def _free(self) -> int:
        with self._lock:
            return self.workers - self._busy

    def dispatch(self) -> int:
        """Claim as many due events as there are free delivery threads and hand them over; how many."""
        free = self._free()
        if free <= 0:
            return 0
        events = outbox_delivery.claim(self.engine, free, self.lease_seconds)
        with self._lock:
            self._busy += len(events)
        for event in events:
            future = self._pool.submit(self._deliver, event)
            with self._lock:
                self._futures.add(future)
            future.add_done_callback(self._forget)
        return len(events)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _deliver(self, event: outbox_delivery.Claimed) -> None:
        try:
            self.deliver(event)
        except Exception:  # noqa: BLE001 - the store failed to record it: the lease expires, it is retried
            log.warning("webhooks: could not record the outcome of event %s", event.event_id, exc_info=True)
        finally:
            with self._lock:
                self._busy -= 1
            self._wake.set()  # a thread is free: claim the next one

    def deliver(self, event: outbox_delivery.Claimed) -> bool:
        """One try of one claimed event, its outcome recorded; whether it was delivered."""
        settings = self.settings
        if not event.tried and event.created_at < now() - timedelta(hours=settings.webhook_max_age_hours):
            if outbox_delivery.mark_expired(self.engine, event, settings.webhook_max_age_hours):
                self.metrics.webhook_dead.inc()
                log.warning("webhooks: event %s expired before its first try: dead", event.event_id)
            return False
        body = event.body.encode()
        headers = request_headers(self._secret, event.event_id, body)
        try:
            status = post(self.url, body, headers, settings.webhook_timeout_seconds, self.try_seconds)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except Exception as e:  # noqa: BLE001 - every failure of a try is retried
            error = describe(e, settings.webhook_timeout_seconds, self.try_seconds)
        if error is None:
            # counted only when recorded: a lease lost meanwhile (a redelivery) means another try counts
            if outbox_delivery.mark_delivered(self.engine, event):
                self.metrics.webhook_delivered.inc()
            return True
        attempts = event.attempts + 1
        retry_at: datetime | None = None
        if attempts < settings.webhook_max_attempts:
            wait = backoff_seconds(
                attempts, settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds, self._rng
            )
            retry_at = now() + timedelta(seconds=wait)
        if not outbox_delivery.mark_failed(self.engine, event, error, retry_at):
            return False  # the lease was lost (a redelivery): the outcome is not ours to count
        self.metrics.webhook_failed.inc()
        if retry_at is None:
            self.metrics.webhook_dead.inc()
            log.warning("webhooks: event %s dead after %d tries: %s", event.event_id, attempts, error)
        else:
            log.info(
                "webhooks: event %s try %d failed (%s); next at %s", event.event_id, attempts, error, retry_at
            )
        return False


class PendingGauge:
    """The pending count for Prometheus: a scrape reads the last count and, when it is older than `ttl`
    seconds, has it counted again in a background thread, so /metrics (on the event loop) never waits for
    the store. NaN until the first count is in."""

    def __init__(self, engine: sa.Engine, ttl: float = 10.0) -> None:
        self.engine, self.ttl = engine, ttl
        self._value = float("nan")
        self._at = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            stale = time.monotonic() - self._at >= self.ttl
            if stale:
                self._at = time.monotonic()  # one count at a time; a failed one is tried again after `ttl`
        if stale:
            threading.Thread(target=self._count, name="webhook-pending-count", daemon=True).start()
        return self._value

    def _count(self) -> None:
        try:
            self._value = float(outbox_admin.pending_count(self.engine))
        except Exception:  # noqa: BLE001 - a store outage must not break /metrics
            log.warning("webhooks: could not count pending events", exc_info=True)
