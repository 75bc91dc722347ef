"""Reads and writes of the service's store. Feedback is written synchronously (acknowledged = durable);
the score log is written by a background writer in small batches, off the scoring hot path."""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from leadscore.serve import db
from sqlalchemy.exc import IntegrityError

log = logging.getLogger(__name__)


class Conflict(ValueError):
    """An idempotency key was reused with a different request."""


class UnknownLead(LookupError):
    """Feedback for a lead the store has never seen: it could never become a training label."""

    def __init__(self, lead_id: str):
        super().__init__(lead_id)
        self.lead_id = lead_id


class TooManyEvents(ValueError):
    """Storing the events would give a lead more than the allowed number; nothing was stored."""

    def __init__(self, lead_id: str, total: int, limit: int):
        super().__init__(
            f"lead {lead_id!r} would have {total} stored events, more than the {limit} allowed "
            "(LEADSCORE_MAX_EVENTS_PER_LEAD)"
        )
        self.lead_id = lead_id


def now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _row(r) -> dict:
    d = dict(r._mapping)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = _aware(v)
    return d


# --- feedback ---------------------------------------------------------------------------------------------
def add_feedback(
    engine: sa.Engine,
    lead_id: str,
    outcome: str,
    reason: str | None = None,
    note: str | None = None,
    at: datetime | None = None,
    idempotency_key: str | None = None,
    source: str = "api",
) -> tuple[dict, bool]:
    """Store one feedback; (row, duplicate). A retry with the same idempotency key is stored once.

    UnknownLead when `lead_id` is not in `leads` (stored with PUT /v1/leads): its verdict could never be a
    training label (export and retrain join feedback to stored leads). A retry of feedback accepted before
    that rule is still answered with the stored row."""
    received = now()
    values = {
        "lead_id": lead_id,
        "outcome": outcome,
        "reason": reason,
        "note": note,
        "at": _aware(at) or received,
        "received_at": received,
        "source": source,
        "idempotency_key": idempotency_key,
    }
    try:
        with engine.begin() as conn:
            if (
                conn.execute(sa.select(db.leads.c.lead_id).where(db.leads.c.lead_id == lead_id)).first()
                is None
            ):
                raise UnknownLead(lead_id)
            new_id = conn.execute(sa.insert(db.feedback).values(**values)).inserted_primary_key[0]
        return {**values, "id": new_id}, False
    except UnknownLead:
        if idempotency_key is None:
            raise
        with engine.connect() as conn:
            existing = conn.execute(
                sa.select(db.feedback).where(db.feedback.c.idempotency_key == idempotency_key)
            ).first()
        if existing is None:
            raise
        return _same_request(_row(existing), lead_id, outcome, reason, note, at, idempotency_key), True
    except IntegrityError:
        if idempotency_key is None:
            raise
        with engine.connect() as conn:
            existing = conn.execute(
                sa.select(db.feedback).where(db.feedback.c.idempotency_key == idempotency_key)
            ).first()
        return _same_request(_row(existing), lead_id, outcome, reason, note, at, idempotency_key), True


def _same_request(existing: dict, lead_id, outcome, reason, note, at, idempotency_key) -> dict:
    """`existing` if it is the same request again: same lead, outcome, reason, note, and time (a request
    without `at` was stored at the moment it was received); else Conflict."""
    same_at = existing["at"] == (_aware(at) or existing["received_at"])
    if (existing["lead_id"], existing["outcome"], existing["reason"], existing["note"]) != (
        lead_id,
        outcome,
        reason,
        note,
    ) or not same_at:
        raise Conflict(
            f"idempotency_key {idempotency_key!r} was already used for a different feedback"
        ) from None
    return existing


def feedback_for(engine: sa.Engine, lead_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(db.feedback)
            .where(db.feedback.c.lead_id == lead_id)
            .order_by(db.feedback.c.at, db.feedback.c.id)
        ).all()
    return [_row(r) for r in rows]


def feedback_frame(engine: sa.Engine, since: datetime | None = None) -> pd.DataFrame:
    """All stored feedback as an outcomes table (lead_id, outcome, at, reason) plus note and source,
    ready to join the canonical data model for the next retrain."""
    q = sa.select(db.feedback).order_by(db.feedback.c.at, db.feedback.c.id)
    if since is not None:
        q = q.where(db.feedback.c.received_at >= since)
    with engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(q).all()]
    df = pd.DataFrame(rows, columns=[c.name for c in db.feedback.columns])
    if len(df):
        df["at"] = pd.to_datetime(df["at"], utc=True)
        df["received_at"] = pd.to_datetime(df["received_at"], utc=True)
    return df


# --- leads and events ------------------------------------------------------------------------------------
def upsert_lead(engine: sa.Engine, lead_id: str, created_at: datetime, attributes: dict) -> bool:
    """Insert or update; True if the lead is new. One `INSERT ... ON CONFLICT DO NOTHING`, then an UPDATE if
    the lead was there: a check-then-insert let two concurrent first writes of a lead both insert (one failed
    with a duplicate key). PostgreSQL waits on the other transaction's uncommitted row; SQLite's INSERT takes
    the write lock first, so the UPDATE sees the committed row."""
    values = {
        "lead_id": lead_id,
        "created_at": _aware(created_at),
        "attributes": attributes,
        "updated_at": now(),
    }
    with engine.begin() as conn:
        insert = db.dialect_insert(conn)(db.leads).values(**values).on_conflict_do_nothing()
        created = conn.execute(insert.returning(db.leads.c.lead_id)).first() is not None
        if not created:
            conn.execute(
                sa.update(db.leads)
                .where(db.leads.c.lead_id == lead_id)
                .values(
                    created_at=values["created_at"], attributes=attributes, updated_at=values["updated_at"]
                )
            )
        return created


def known_leads(engine: sa.Engine, lead_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        return {
            r[0]
            for r in conn.execute(sa.select(db.leads.c.lead_id).where(db.leads.c.lead_id.in_(set(lead_ids))))
        }


def add_events(engine: sa.Engine, events: list[dict], max_per_lead: int | None = None) -> int:
    """Store events; with `max_per_lead`, all or none: TooManyEvents if a lead would then have more.

    The events are inserted first and counted after, in one transaction, with the leads' rows locked on
    PostgreSQL (SQLite's INSERT takes its single write lock), so concurrent writes cannot both pass the
    check."""
    t = now()
    rows = [
        {
            "lead_id": e["lead_id"],
            "type": e["type"],
            "timestamp": _aware(e["timestamp"]),
            "page": e.get("page"),
            "received_at": t,
        }
        for e in events
    ]
    ids = sorted({r["lead_id"] for r in rows})
    with engine.begin() as conn:
        if max_per_lead is not None and conn.dialect.name == "postgresql":
            conn.execute(
                sa.select(db.leads.c.lead_id)
                .where(db.leads.c.lead_id.in_(ids))
                .order_by(db.leads.c.lead_id)
                .with_for_update()
            )
        conn.execute(sa.insert(db.events), rows)
        if max_per_lead is not None:
            counts = conn.execute(
                sa.select(db.events.c.lead_id, sa.func.count())
                .where(db.events.c.lead_id.in_(ids))
                .group_by(db.events.c.lead_id)
            ).all()
            over = [(lid, n) for lid, n in counts if n > max_per_lead]
            if over:
                raise TooManyEvents(*min(over), max_per_lead)  # leaving the block rolls the insert back
    return len(rows)


def get_leads(engine: sa.Engine, lead_ids: list[str], max_events: int = 5000) -> dict[str, dict]:
    """Stored leads in the live-scoring shape: lead_id, created_at, attributes, events (the newest
    `max_events` of each lead, oldest first). Only those events are read: a lead stored before events were
    capped may have hundreds of thousands."""
    ids = list(set(lead_ids))
    ev = db.events.c
    newest = sa.func.row_number().over(partition_by=ev.lead_id, order_by=(ev.timestamp.desc(), ev.id.desc()))
    kept = (
        sa.select(ev.lead_id, ev.type, ev.timestamp, ev.page, ev.id, newest.label("rn"))
        .where(ev.lead_id.in_(ids))
        .subquery()
    )
    with engine.connect() as conn:
        leads = {r.lead_id: r for r in conn.execute(sa.select(db.leads).where(db.leads.c.lead_id.in_(ids)))}
        if len(ids) == 1:  # one lead (the usual request): straight down the (lead_id, timestamp) index
            evs = conn.execute(
                sa.select(ev.lead_id, ev.type, ev.timestamp, ev.page)
                .where(ev.lead_id == ids[0])
                .order_by(ev.timestamp.desc(), ev.id.desc())
                .limit(max_events)
            ).all()
        else:
            evs = conn.execute(
                sa.select(kept.c.lead_id, kept.c.type, kept.c.timestamp, kept.c.page)
                .where(kept.c.rn <= max_events)
                .order_by(kept.c.lead_id, kept.c.timestamp.desc(), kept.c.id.desc())
            ).all()
    out = {
        lid: {"lead_id": lid, "created_at": _aware(r.created_at), "attributes": r.attributes, "events": []}
        for lid, r in leads.items()
    }
    for e in evs:
        if e.lead_id in out:
            out[e.lead_id]["events"].append(
                {"type": e.type, "timestamp": _aware(e.timestamp), "page": e.page}
            )
    for lead in out.values():
        lead["events"].reverse()
    return out


def recent_scores(engine: sa.Engine, lead_ids: list[str], per_lead: int = 2) -> dict[str, list[dict]]:
    """The newest `per_lead` score-log rows (score, grade, scored_at) of each lead, newest first."""
    if not lead_ids:
        return {}
    rn = (
        sa.func.row_number()
        .over(
            partition_by=db.score_log.c.lead_id,
            order_by=(db.score_log.c.scored_at.desc(), db.score_log.c.id.desc()),
        )
        .label("rn")
    )
    inner = (
        sa.select(
            db.score_log.c.lead_id, db.score_log.c.score, db.score_log.c.grade, db.score_log.c.scored_at, rn
        )
        .where(db.score_log.c.lead_id.in_(set(lead_ids)))
        .subquery()
    )
    q = sa.select(inner).where(inner.c.rn <= per_lead).order_by(inner.c.lead_id, inner.c.rn)
    out: dict[str, list[dict]] = {}
    for r in conn_all(engine, q):
        out.setdefault(r.lead_id, []).append(_row(r))
    return out


# --- score log ---------------------------------------------------------------------------------------------
def score_history(engine: sa.Engine, lead_id: str, limit: int = 50) -> list[dict]:
    """The lead's newest `limit` score-log rows, newest first, features and reasons as the API shows them."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(db.score_log)
            .where(db.score_log.c.lead_id == lead_id)
            .order_by(db.score_log.c.scored_at.desc(), db.score_log.c.id.desc())
            .limit(limit)
        ).all()
        return db.decode_score_log(conn, [_row(r) for r in rows])


def latest_scores(
    engine: sa.Engine,
    grade: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    source: str | None = None,
    unreviewed: bool = False,
) -> list[dict]:
    """The newest score of each lead, highest score first, with the lead's attributes."""
    latest = (
        sa.select(db.score_log.c.lead_id, sa.func.max(db.score_log.c.id).label("id"))
        .group_by(db.score_log.c.lead_id)
        .subquery()
    )
    q = (
        sa.select(db.score_log, db.leads.c.attributes, db.leads.c.created_at.label("lead_created_at"))
        .join(latest, db.score_log.c.id == latest.c.id)
        .join(db.leads, db.leads.c.lead_id == db.score_log.c.lead_id, isouter=True)
    )
    if grade:
        q = q.where(db.score_log.c.grade == grade)
    if since:
        q = q.where(db.score_log.c.scored_at >= since)
    if unreviewed:
        q = q.where(~sa.exists().where(db.feedback.c.lead_id == db.score_log.c.lead_id))
    with engine.connect() as conn:
        rows = db.decode_score_log(
            conn,
            [
                _row(r)
                for r in conn.execute(
                    q.order_by(db.score_log.c.probability.desc(), db.score_log.c.lead_id)
                    .limit(limit)
                    .offset(offset)
                )
            ],
        )
    if source:
        rows = [r for r in rows if (r.get("attributes") or {}).get("source") == source]
    return rows


def conn_all(engine: sa.Engine, q) -> list:
    with engine.connect() as conn:
        return conn.execute(q).all()


def prune_score_log(engine: sa.Engine, older_than: datetime, max_rows: int = 5000) -> int:
    """Delete up to `max_rows` of the oldest score-log rows scored before `older_than`; how many. Bounded,
    so each step is a short transaction that neither holds SQLite's write lock nor grows PostgreSQL's
    undo for long; call it again while it returns `max_rows`.

    Two rows of each lead are never deleted, whatever their age: its first handed-over row and its newest
    row, the rows the selection table is built from (serve.export.selection_table). Deleting the first
    hand-over would let a later row's propensity stand for it (an explored lead's weight 20 would become 1),
    or turn a lead sales judged into one never handed over."""
    sl = db.score_log.c
    other = db.score_log.alias("other")
    o = other.c

    def before(a, b):  # a's row came before b's, in the order selection_table reads them (scored_at, id)
        return sa.or_(a.scored_at < b.scored_at, sa.and_(a.scored_at == b.scored_at, a.id < b.id))

    newer = sa.exists().where(o.lead_id == sl.lead_id, before(sl, o))
    handed_earlier = sa.exists().where(o.lead_id == sl.lead_id, o.qualified, before(o, sl))
    oldest = (
        sa.select(sl.id)
        .where(sl.scored_at < _aware(older_than), newer, sa.or_(sa.not_(sl.qualified), handed_earlier))
        .order_by(sl.scored_at)
        .limit(max_rows)
        .scalar_subquery()
    )
    with engine.begin() as conn:
        return conn.execute(sa.delete(db.score_log).where(sl.id.in_(oldest))).rowcount


def prune_all(engine: sa.Engine, retention_days: float, max_rows: int = 5000) -> int:
    """Delete every score-log row older than `retention_days` (0: keep forever), in steps of `max_rows`."""
    if retention_days <= 0:
        return 0
    cutoff = now() - timedelta(days=retention_days)
    total = 0
    while (n := prune_score_log(engine, cutoff, max_rows)) > 0:
        total += n
        if n < max_rows:
            break
    return total


class ScoreLogWriter:
    """Writes score-log rows in batches from a background thread.

    `put` encodes each row's features and reasons to JSON text at once (in the request), so the queue holds
    flat tuples of text and numbers: nothing for the garbage collector to walk, nothing for the writer to
    build while holding the GIL. The score log is an audit trail, not an acknowledged write: a crash loses
    what is still queued (about `flush_seconds` of rows while the database keeps up). Feedback, which is
    acknowledged, never goes through here.

    The queue is bounded in bytes (`max_bytes`, LEADSCORE_SCORE_LOG_QUEUE_BYTES): when the database does not
    keep up, new rows are dropped rather than growing the process. Drops are counted (`dropped`, and
    `on_drop(n)`, the Prometheus counter) and logged once per `DROP_LOG_SECONDS` with their number, not per row.
    """

    DROP_LOG_SECONDS = 10.0
    ROW_OVERHEAD = 200  # bytes of a queued row beyond its text: the tuple, numbers, times (CPython, 64-bit)

    PRUNE_ROWS = 5000  # rows deleted per retention step: a short transaction between two batches of writes

    def __init__(
        self,
        engine: sa.Engine,
        flush_seconds: float = 0.2,
        max_batch: int = 2000,
        max_bytes: int = 64_000_000,
        on_drop=None,
        retention_days: float = 0,
        prune_seconds: float = 600,
    ):
        """`retention_days` > 0: rows older than that are deleted, one step of `PRUNE_ROWS` after a flush
        while old rows remain, then again `prune_seconds` later (the first check right after the start)."""
        self.engine = engine
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
        self._q: collections.deque = (
            collections.deque()
        )  # one item per request: (its bytes, list of row tuples)
        self.queued_bytes = 0
        self._count = threading.Lock()  # guards queued_bytes and the drop counts (uncontended: ~0.1 us)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="score-log-writer", daemon=True)
        self._thread.start()

    @classmethod
    def size(cls, rows: list[tuple]) -> int:
        """About the bytes `rows` hold in the queue: their text and a fixed overhead a row."""
        return sum(len(v) for r in rows for v in r if isinstance(v, (str, bytes))) + cls.ROW_OVERHEAD * len(
            rows
        )

    def put(self, rows: list[dict]) -> None:
        """Queue rows with the fields of `db.SCORE_LOG_FIELDS` (features and reasons as Python values)."""
        if not rows:
            return
        try:
            item = [db.score_log_row(r) for r in rows]
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
        now = time.monotonic()
        with self._count:
            if not self._unlogged or (not force and now - self._last_warning < self.DROP_LOG_SECONDS):
                return
            n, self._unlogged, self._last_warning = self._unlogged, 0, now
            total = self.dropped
        log.warning(
            "score log queue full (%d bytes; the database is not keeping up): dropped %d rows since the "
            "last warning, %d since start",
            self.max_bytes,
            n,
            total,
        )

    def _drain(self) -> list[tuple]:
        batch: list[tuple] = []
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
        is empty), so the writer wakes every `flush_seconds` for one transaction, not one per request."""
        while True:
            batch = self._drain()
            if batch:
                try:
                    with self.engine.begin() as conn:
                        db.insert_score_log(conn, batch)
                except Exception:  # noqa: BLE001 - never let the audit writer die
                    log.exception("could not write %d score-log rows", len(batch))
            if not batch or (len(batch) < self.max_batch and not everything):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush(everything=True)
        self.log_drops(force=True)
