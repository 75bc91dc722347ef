"""The service's SQL store: SQLAlchemy Core tables and engine, migrated by alembic.

SQLite by default (WAL journal, synchronous=FULL: an acknowledged write survives a crash), PostgreSQL by
URL in LEADSCORE_DATABASE_URL through the same code. How the score log's rows are encoded into these
tables: `store.score_log_rows`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

metadata = sa.MetaData()

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(128), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("page", sa.String(32), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # a lead's newest events straight from the index (scoring by reference reads only those), type and page
    # in it too so that reading a lead's events never visits the table (migration 0008)
    sa.Index("ix_events_lead_id_timestamp_type_page", "lead_id", "timestamp", "type", "page"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(128), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("note", sa.String(2000), nullable=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # api | ui
    sa.Column("idempotency_key", sa.String(128), nullable=True, unique=True),
)

score_log = sa.Table(
    "score_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(128), nullable=False, index=True),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("grade", sa.String(1), nullable=False),
    sa.Column("qualified", sa.Boolean, nullable=False),
    # The model's input values as they were (what later feedback labels, and what monitoring compares with
    # training): a JSON array in the order of the feature set's names, stored once in `feature_sets`. Rows
    # written before migration 0003 have no feature set and a JSON object here.
    sa.Column("features", sa.JSON, nullable=False),
    # The reasons served: arrays in `REASON_FIELDS` order (before 0003: objects).
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("feature_set", sa.String(16), nullable=True),
    # The handoff decision's probability under the policy in force (1 at or above the threshold, the
    # exploration share below it) and whether the lead was handed over only because it was drawn for
    # exploration (`model.exploration`). NULL on rows written before migration 0006: unknown.
    sa.Column("propensity", sa.Float, nullable=True),
    sa.Column("explored", sa.Boolean, nullable=True),
)

feature_sets = sa.Table(
    "feature_sets",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),  # a hash of the names: the same list, the same id
    sa.Column("names", sa.JSON, nullable=False),
)

# Each scored lead's newest score and handoff state: what `store.handoffs.write_scores` compares a new
# score with to know whether the lead just crossed the handoff threshold or changed grade. Every column but
# the key is nullable only because a row is first inserted empty and filled in the same transaction (the
# insert is what serialises two writers of the same lead's first score on PostgreSQL).
lead_state = sa.Table(
    "lead_state",
    metadata,
    sa.Column("lead_id", sa.String(128), primary_key=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=True),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column("probability", sa.Float, nullable=True),
    sa.Column("score", sa.Integer, nullable=True),
    sa.Column("grade", sa.String(1), nullable=True),
    sa.Column("qualified", sa.Boolean, nullable=True),
    sa.Column("explored", sa.Boolean, nullable=True),
    # `as_of` of the score at which the lead last crossed to handed over; NULL while it is not handed over
    sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True, index=True),
)

# Handoff events (`lead.handoff`, `lead.grade_changed`), written in the transaction of the score that caused
# them, then delivered to the webhook and listed by GET /v1/handoffs (`id` is the cursor: the order written).
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("lead_id", sa.String(128), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the JSON delivered, byte for byte (what is signed)
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),  # a deliverer's claim
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    # SQLite: AUTOINCREMENT, so an id is never drawn twice, even after retention deleted the newest rows
    # (a pull client's cursor would skip the new events under the reused ids)
    sqlite_autoincrement=True,
)

# Stored leads waiting to be rescored: after new activity (priority 0, at once) or a new champion
# (priority 1, rate-limited). `enqueued_at` moves on every enqueue, so a lead that got events while it was
# being scored stays queued for another pass.
rescore_queue = sa.Table(
    "rescore_queue",
    metadata,
    sa.Column("lead_id", sa.String(128), primary_key=True),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("claimed_by", sa.String(160), nullable=True),
    sa.Index("ix_rescore_queue_priority_enqueued_at", "priority", "enqueued_at"),
)

# One row per champion version whose active leads were queued for a rescore (the first worker to serve it
# inserts it; the others see it and queue nothing).
rescore_runs = sa.Table(
    "rescore_runs",
    metadata,
    sa.Column("model_version", sa.String(32), primary_key=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

# The sales page's sessions (`serve.ui.session`): shared by every worker, so signing out ends a session
# at once.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column(
        "id", sa.String(64), primary_key=True
    ),  # sha256 of the cookie's token: a copy of the table opens none
    sa.Column("key_fp", sa.String(64), nullable=False),  # HMAC of the key signed in with (never the key)
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


# JSON columns are read with orjson too: monitoring reads tens of thousands of feature snapshots at once, and
# the stdlib decoder spent most of its time there (2.2 s of 3.2 s for 18k rows).
def encode_json(value: Any) -> str:
    """JSON columns through orjson: the score log writes a thousand feature snapshots per big request, and
    the stdlib encoder would hold the GIL several times longer while the next request waits."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def dialect_insert(conn: sa.Connection) -> Callable[[sa.Table], Any]:
    """The dialect's INSERT construct, which has `on_conflict_do_nothing` (SQLite and PostgreSQL only)."""
    return {"sqlite": sqlite_dialect.insert, "postgresql": pg_dialect.insert}[conn.dialect.name]


def make_engine(url: str, synchronous: str = "FULL") -> sa.Engine:
    """The engine of the service's store. SQLite: WAL journal and `synchronous` FULL (an acknowledged write
    survives a crash); the score-log writer's own engine uses NORMAL (no fsync per batch: the score log is
    an audit trail whose last fraction of a second may be lost in a power cut, never corrupted).

    `hide_parameters`: a failed statement's error (logged) shows the SQL without its values, which are
    leads' attributes, notes and events."""
    dialect = sa.engine.make_url(url).get_backend_name()
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(
            f"LEADSCORE_DATABASE_URL: {dialect!r} is not supported; use sqlite:///... or "
            "postgresql+psycopg://..."
        )
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=encode_json,
            json_deserializer=orjson.loads,
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        json_serializer=encode_json,
        json_deserializer=orjson.loads,
        hide_parameters=True,
    )


# the key of the PostgreSQL advisory lock that migrations hold (any fixed bigint; "leadscor" in ASCII)
MIGRATE_LOCK_KEY = 0x6C65616473636F72


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to the newest schema (alembic upgrade head), or to `revision`.

    One process at a time: `leadscore serve --workers N` starts N processes that migrate together, and
    several hosts may start against one PostgreSQL; on a new database all but one would find the tables
    created under them and fail to start. PostgreSQL: the migration runs in one transaction that first takes
    an advisory lock (`MIGRATE_LOCK_KEY`), so a second migrator on any host waits, then finds the schema
    at head. SQLite (one host by nature): a lock file beside the database (named by a hash of the URL in
    the temporary directory for a database that is not a file).
    """
    from alembic import command
    from alembic.config import Config

    here = Path(__file__).parent
    cfg = Config()
    cfg.set_main_option("script_location", str(here / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    if sa.engine.make_url(url).get_backend_name() == "postgresql":
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
                cfg.attributes["connection"] = conn  # migrations/env.py runs them in this transaction
                command.upgrade(cfg, revision)
        finally:
            engine.dispose()
        return
    import fcntl

    with _migrate_lock_path(url).open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            command.upgrade(cfg, revision)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _migrate_lock_path(url: str) -> Path:
    """Where `migrate` locks a SQLite database: `.NAME.migrate-lock` beside its file (never deleted:
    removing a lock file others may hold open would let two processes lock two files), or, for an
    in-memory database or a directory this process cannot write, a file in the temporary directory."""
    import tempfile

    database = sa.engine.make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).resolve()
        lock = path.with_name(f".{path.name}.migrate-lock")
        try:
            lock.touch()
            return lock
        except OSError:
            pass
    name = f"leadscore-migrate-{hashlib.sha256(url.encode()).hexdigest()[:16]}.lock"
    return Path(tempfile.gettempdir()) / name
