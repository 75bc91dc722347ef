"""The service's SQL store: SQLAlchemy Core tables and engine, migrated by alembic.

SQLite by default (WAL journal, synchronous=FULL: an acknowledged write survives a crash), PostgreSQL by
URL in LEADSCORE_DATABASE_URL through the same code.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy import event

metadata = sa.MetaData()

leads = sa.Table(
    "leads", metadata,
    sa.Column("lead_id", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(128), nullable=False, index=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("page", sa.String(32), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

feedback = sa.Table(
    "feedback", metadata,
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
    "score_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(128), nullable=False, index=True),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("grade", sa.String(1), nullable=False),
    sa.Column("qualified", sa.Boolean, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),  # the features as they were: what later feedback labels
    sa.Column("reasons", sa.JSON, nullable=False),
)


def _json(value) -> str:
    """JSON columns through orjson: the score log writes a thousand feature snapshots per big request, and
    the stdlib encoder would hold the GIL several times longer while the next request waits."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  json_serializer=_json)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, json_serializer=_json)


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (alembic upgrade head).

    One process at a time on this host (a lock file named by a hash of the URL): `leadscore serve
    --workers N` starts N processes that migrate together, and on a new database all but one would find
    the tables created under them and fail to start.
    """
    import fcntl
    import hashlib
    import tempfile

    from alembic import command
    from alembic.config import Config

    here = Path(__file__).parent
    cfg = Config()
    cfg.set_main_option("script_location", str(here / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    lock = Path(tempfile.gettempdir()) / f"leadscore-migrate-{hashlib.sha256(url.encode()).hexdigest()[:16]}.lock"
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            command.upgrade(cfg, "head")
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
