"""The rescorer: a background thread per service worker that scores queued stored leads with the champion
and writes the scores the way every score is written (`store.write_scores`: score log, lead state, handoff
events), off the request path.

What is queued (`store.rescore_queue`): leads with new events or attributes (priority 0, in the
transaction of the write; the route wakes this worker's rescorer at once, other workers' rescorers find
them on their next poll, every `POLL_SECONDS`), and, when a worker starts serving a champion version that
has no rescore run yet, the active leads (priority 1, at most `LEADSCORE_RESCORE_RATE` leads a second
across the live workers). With no model loaded the queue is left as it is.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from leadscore.serve import store
from leadscore.serve.model_sync import live_workers
from leadscore.serve.scoring import encoded_score_log_rows
from leadscore.serve.store import rescore_queue, write_scores
from leadscore.serve.store.rescore_queue import ACTIVITY, CHAMPION, Claimed

if TYPE_CHECKING:
    from leadscore.serve.service import ScoringService

log = logging.getLogger("leadscore.serve.rescore")


class Rescorer:
    POLL_SECONDS = 0.5  # how often the queue is read for what other processes queued
    BATCH = 200  # leads a transaction: short write transactions, short holds of the GIL between requests
    LEASE_SECONDS = 60.0  # a claim not finished by then (its process died) is taken over
    WORKERS_SECONDS = 10.0  # how often the rate's share of this worker is recomputed

    def __init__(self, service: ScoringService, worker: str | None = None):
        self.service = service
        self.engine = service.engine
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:rescore"
        self.rate = service.settings.rescore_rate
        self.active_days = service.settings.rescore_active_days
        self.rescored = 0  # leads rescored by this worker since start
        self._version: str | None = None  # the champion version whose run this worker has checked
        self._budget = 0.0  # priority-1 leads this worker may claim now (a token bucket)
        self._budget_at = time.monotonic()
        self._share = 1.0  # this worker's share of the rate: 1 / live workers
        self._share_at = float("-inf")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rescorer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Leads were queued in this process: look now, not at the next poll."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.POLL_SECONDS)
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.step():
                    pass
            except Exception:  # noqa: BLE001 - a database blip: the rows stay queued, tried again next poll
                log.exception("rescore failed; the leads stay queued")

    def step(self) -> int:
        """Claim, score and write one batch (activity first, then a new champion's leads within the rate);
        the number of leads claimed (0: nothing due)."""
        model = self.service.holder.model
        if model is None:
            return 0
        if self.rate > 0 and model.version is not None and model.version != self._version:
            self._check_run(model.version)
        claimed = rescore_queue.claim(self.engine, self.worker, ACTIVITY, self.BATCH, self.LEASE_SECONDS)
        if not claimed.leads and self.rate > 0:
            claimed = rescore_queue.claim(
                self.engine, self.worker, CHAMPION, min(self.BATCH, self._allowance()), self.LEASE_SECONDS
            )
            self._budget -= len(claimed.leads)
        if not claimed.leads:
            return 0
        self.rescore(claimed)
        return len(claimed.leads)

    def rescore(self, claimed: Claimed) -> None:
        """Score the claimed leads with the model serving now and write them with the queue's rows in one
        transaction: a crash before the commit leaves the rows queued (taken over when the lease ends)."""
        service = self.service
        model = service.holder.model
        if model is None:
            return
        leads = store.get_leads(self.engine, list(claimed.leads), service.settings.max_events_per_lead)
        rows = []
        if leads:
            scored_at = store.now()
            scored = model.score(
                [leads[i] for i in sorted(leads)], scored_at, exploration=service.exploration
            )
            rows = encoded_score_log_rows(scored, scored_at, model.version)
        events = 0
        with self.engine.begin() as conn:
            if rows:
                events = write_scores(conn, rows)
            rescore_queue.finish(conn, self.worker, claimed)
            if claimed.priority == CHAMPION:
                rescore_queue.finish_runs(conn)
        self.rescored += len(rows)
        if events:  # committed: the webhook deliverer sends them now, not at its next poll
            service.events_written(events)

    def _check_run(self, version: str) -> None:
        """A champion version new to this worker: start its rescore run unless a process already did."""
        total = rescore_queue.start_run(self.engine, version, self.active_days)
        if total is not None:
            log.info(
                "model version %s: rescoring %d active leads (an event in the last %g days), %g a second",
                version,
                total,
                self.active_days,
                self.rate,
            )
        self._version = version

    def _allowance(self) -> int:
        """Priority-1 leads this worker may claim now: a bucket refilled at its share of the rate, holding
        at most one batch (an idle spell does not turn into a burst)."""
        t = time.monotonic()
        if t - self._share_at >= self.WORKERS_SECONDS:
            self._share = 1.0 / max(1, len(live_workers(self.engine)))
            self._share_at = t
        self._budget = min(self.BATCH, self._budget + (t - self._budget_at) * self.rate * self._share)
        self._budget_at = t
        return int(self._budget)
