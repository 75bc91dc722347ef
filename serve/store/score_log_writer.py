"""The score-log writer: a background thread that writes the rows of served scores in small batches, off
the scoring hot path, and runs the score log's retention between them."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from leadscore.serve.store.handoffs import write_scores
from leadscore.serve.store.retention import prune_score_log
from leadscore.serve.store.rows import now
from leadscore.serve.store.score_log_rows import score_log_row

log = logging.getLogger("leadscore.serve.store")


class ScoreLogWriter:
    """Writes score-log rows in batches from a background thread.

    `put` encodes each row's features and reasons to JSON text at once (in the request), so the queue holds
    tuples of text and numbers (and the event's top reasons, `store.score_log_row`): nothing for the
    garbage collector to walk, nothing for the writer to build while holding the GIL. The score log is an
    audit trail, not an acknowledged write: a crash loses what is still queued (about `flush_seconds` of
    rows while the database keeps up). Feedback, which is acknowledged, never goes through here.
    The handoff events of queued scores are written with them (`store.handoffs`), so a crash loses those
    too; the lead's next score is compared with its last written one and brings the event then. Leads
    stored in the service are rescored after new activity from the durable rescore queue
    (`serve.rescore`), which loses nothing.

    The queue is bounded in bytes (`max_bytes`, LEADSCORE_SCORE_LOG_QUEUE_BYTES): when the database does not
    keep up, new rows are dropped rather than growing the process. Drops are counted (`dropped`, and
    `on_drop(n)`, the Prometheus counter) and logged once per `DROP_LOG_SECONDS` with their number, not per
    row.
    """

    DROP_LOG_SECONDS = 10.0
    # bytes of a queued row beyond its top-level text: the tuple, numbers, times and the handoff event's top
    # reasons as tuples (measured: ~780 bytes a demo row, CPython 3.11, 64-bit)
    ROW_OVERHEAD = 800

    PRUNE_ROWS = 5000  # rows deleted per retention step: a short transaction between two batches of writes
    MAX_TRIES = 6  # tries of a failed batch before it is dropped (backoff 1, 2, 4, 8, 16 s by default)
    MAX_RETRY_SECONDS = 30.0

    def __init__(
        self,
        engine: sa.Engine,
        flush_seconds: float = 0.2,
        max_batch: int = 2000,
        max_bytes: int = 64_000_000,
        on_drop: Callable[[int], Any] | None = None,
        retention_days: float = 0,
        prune_seconds: float = 600,
        on_events: Callable[[int], Any] | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        """`retention_days` > 0: rows older than that are deleted, one step of `PRUNE_ROWS` after a flush
        while old rows remain, then again `prune_seconds` later (the first check right after the start).
        `on_events(n)` is called after a batch wrote n > 0 handoff events (webhook delivery wakes on it)."""
        self.engine = engine
        self.on_events = on_events
        self.retry_seconds = retry_seconds
        self._failures = 0  # failed tries in a row of the batch at the head of the queue
        self._retry_at = 0.0  # monotonic time before which a failed batch is not tried again
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self.retention_days = retention_days
        self.prune_seconds = prune_seconds
        self._next_prune = time.monotonic()
        self._pruned = 0  # rows deleted in the current pass
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self.dropped = 0  # rows dropped since start
        self._unlogged = 0  # rows dropped since the last warning
        self._last_warning = float("-inf")
        # one item per request: (its bytes, list of row tuples)
        self._q: collections.deque[tuple[int, list[tuple[Any, ...]]]] = collections.deque()
        self.queued_bytes = 0
        self._count = threading.Lock()  # guards queued_bytes and the drop counts (uncontended: ~0.1 us)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="score-log-writer", daemon=True)
        self._thread.start()

    @classmethod
    def size(cls, rows: list[tuple[Any, ...]]) -> int:
        """About the bytes `rows` hold in the queue: their text and a fixed overhead a row."""
        return sum(len(v) for r in rows for v in r if isinstance(v, (str, bytes))) + cls.ROW_OVERHEAD * len(
            rows
        )

    def put(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows with the fields of `store.score_log_rows.SCORE_LOG_FIELDS` (features and reasons as
        Python values)."""
        if not rows:
            return
        try:
            item = [score_log_row(r) for r in rows]
        except Exception:  # noqa: BLE001 - the score was served: never fail the request for its audit row
            log.exception("could not encode %d score-log rows: dropped", len(rows))
            return
        size = self.size(item)
        with self._count:
            accepted = self.queued_bytes + size <= self.max_bytes
            if accepted:
                self.queued_bytes += size
                self._q.append((size, item))
            else:
                self.dropped += len(item)
                self._unlogged += len(item)
        if not accepted and self.on_drop is not None:
            self.on_drop(len(item))

    def log_drops(self, force: bool = False) -> None:
        """One warning for the rows dropped since the last one, at most every `DROP_LOG_SECONDS`."""
        t = time.monotonic()
        with self._count:
            if not self._unlogged or (not force and t - self._last_warning < self.DROP_LOG_SECONDS):
                return
            n, self._unlogged, self._last_warning = self._unlogged, 0, t
            total = self.dropped
        log.warning(
            "score log queue full (%d bytes; the database is not keeping up): dropped %d rows since the "
            "last warning, %d since start",
            self.max_bytes,
            n,
            total,
        )

    def _drain(self) -> list[tuple[Any, ...]]:
        batch: list[tuple[Any, ...]] = []
        while (
            len(batch) < self.max_batch
        ):  # whole requests: a batch may exceed max_batch by one request's rows
            try:
                size, item = self._q.popleft()
            except IndexError:
                break
            batch.extend(item)
            with self._count:
                self.queued_bytes -= size
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.flush_seconds)
            self.flush()
            self.log_drops()
            self.prune_step()

    def prune_step(self) -> None:
        """One bounded retention step if one is due. A backlog (a first start with retention on) is
        worked off a step per wake-up, between the writes, never blocking them for long."""
        if self.retention_days <= 0 or time.monotonic() < self._next_prune:
            return
        try:
            n = prune_score_log(self.engine, now() - timedelta(days=self.retention_days), self.PRUNE_ROWS)
        except Exception:  # noqa: BLE001 - never let the audit writer die; try again at the next check
            log.exception("could not delete old score-log rows")
            n = 0
        self._pruned += n
        if n < self.PRUNE_ROWS:  # done for now
            if self._pruned:
                log.info(
                    "score log retention: deleted %d rows older than %g days",
                    self._pruned,
                    self.retention_days,
                )
            self._pruned = 0
            self._next_prune = time.monotonic() + self.prune_seconds

    def flush(self, everything: bool = False) -> None:
        """Write what is queued, in transactions of about `max_batch` rows. Under load the queue never
        empties: a pass stops at the first batch smaller than `max_batch` (`everything`: only when the queue
        is empty), so the writer wakes every `flush_seconds` for one transaction, not one per request.

        A batch that fails (the database is locked past its timeout, a PostgreSQL restart) goes back to the
        head of the queue and is tried again after a backoff: its rows carry the handoff events of the scores
        they log (`store.handoffs`), so a passing outage must not lose them. After `MAX_TRIES` failures in a
        row the batch is dropped and counted like a full queue's rows (a batch the database refuses for good
        must not stop the log)."""
        while True:
            if not everything and time.monotonic() < self._retry_at:
                return
            batch = self._drain()
            if batch:
                try:
                    with self.engine.begin() as conn:
                        events = write_scores(conn, batch)
                except Exception:  # noqa: BLE001 - never let the audit writer die
                    if not self._failed(batch):
                        return
                else:
                    self._failures = 0
                    if events and self.on_events is not None:
                        self.on_events(events)
            if not batch or (len(batch) < self.max_batch and not everything):
                return

    def _failed(self, batch: list[tuple[Any, ...]]) -> bool:
        """Requeue a batch that could not be written (False: try again later) or, after `MAX_TRIES`, drop it
        (True: go on with the rest)."""
        self._failures += 1
        if self._failures >= self.MAX_TRIES:
            log.exception(
                "could not write %d score-log rows in %d tries: dropped", len(batch), self.MAX_TRIES
            )
            self._failures = 0
            with self._count:
                self.dropped += len(batch)
            if self.on_drop is not None:
                self.on_drop(len(batch))
            return True
        wait = min(self.MAX_RETRY_SECONDS, self.retry_seconds * 2 ** (self._failures - 1))
        log.warning(
            "could not write %d score-log rows (try %d of %d): trying again in %.1f s",
            len(batch),
            self._failures,
            self.MAX_TRIES,
            wait,
            exc_info=True,
        )
        size = self.size(batch)
        with self._count:
            self.queued_bytes += size
            self._q.appendleft((size, batch))
        self._retry_at = time.monotonic() + wait
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush(everything=True)
        self.log_drops(force=True)
