"""The service's SQL store: SQLAlchemy Core tables and engine, migrated by alembic.

SQLite by default (WAL journal, synchronous=FULL: an acknowledged write survives a crash), PostgreSQL by
URL in LEADSCORE_DATABASE_URL through the same code.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
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

# The sales page's sessions (`serve.ui.session`): shared by every worker, so signing out ends a session at once.
ui_sessions = sa.Table(
    "ui_sessions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the cookie's token: a copy of the table opens none
    sa.Column("key_fp", sa.String(64), nullable=False),  # HMAC of the key signed in with (never the key)
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


def encode_json(value) -> str:
    """JSON columns through orjson: the score log writes a thousand feature snapshots per big request, and
    the stdlib encoder would hold the GIL several times longer while the next request waits."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


SCORE_LOG_FIELDS = ("lead_id", "scored_at", "as_of", "model_version", "probability", "score", "grade", "qualified",
                    "features", "reasons")
_INTO = f"INSERT INTO score_log ({', '.join(SCORE_LOG_FIELDS)}) "
_SQLITE_CHUNK = 99  # rows per INSERT ... VALUES (?, ...), (?, ...): 990 parameters, under the 999 of SQLite < 3.32
_PG_CASTS = ("text", "timestamptz", "timestamptz", "text", "float8", "integer", "text", "boolean", "json", "json")
_PG_PICK = ", ".join(f"CAST(r.value->>{i} AS {cast})" for i, cast in enumerate(_PG_CASTS))
# rows get their ids in the array's order (a request's repeated lead_id: the later score is the later row)
_PG_INSERT = sa.text(_INTO + f"SELECT {_PG_PICK} FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY "
                     "AS r(value, ord) ORDER BY r.ord")


@functools.lru_cache(maxsize=64)
def _sqlite_insert(n: int) -> str:
    """INSERT of n score-log rows as one VALUES list (SQLite inserts, and numbers, them in that order)."""
    one = "(" + ", ".join("?" * len(SCORE_LOG_FIELDS)) + ")"
    return _INTO + "VALUES " + ", ".join([one] * n)


def score_log_row(r: dict) -> tuple:
    """A score-log row (a mapping with the fields of `SCORE_LOG_FIELDS`, features and reasons as Python
    values) as `insert_score_log` takes it: a flat tuple, features and reasons encoded to JSON text."""
    return (r["lead_id"], r["scored_at"], r["as_of"], r["model_version"], r["probability"], r["score"], r["grade"],
            r["qualified"], encode_json(r["features"]), encode_json(r["reasons"]))


def _sqlite_time(t: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it, "YYYY-MM-DD HH:MM:SS.ffffff" (UTC; read back as
    UTC by `store`)."""
    if t.tzinfo is not None:
        t = (t if t.tzinfo is timezone.utc else t.astimezone(timezone.utc)).replace(tzinfo=None)
    return t.isoformat(" ", "microseconds")


def insert_score_log(conn: sa.Connection, rows: list[tuple]) -> None:
    """Insert score-log rows: tuples in `SCORE_LOG_FIELDS` order, features and reasons already JSON text.

    A few statements per batch, not one per row: the driver releases the GIL around every statement, and
    each time it takes it back it waits for the serving thread's switch interval (a row per statement made
    every request ~150 us slower). SQLite: VALUES lists of `_SQLITE_CHUNK` rows (14 us of CPU a row, with
    preparing the parameters; one statement over a JSON array took 33 us, SQLite unescaping every row's
    features again). PostgreSQL: one statement over a JSON array (`json_array_elements`)."""
    name = conn.dialect.name
    if name == "sqlite":
        for i in range(0, len(rows), _SQLITE_CHUNK):
            chunk = rows[i:i + _SQLITE_CHUNK]
            params = []
            for r in chunk:
                params += (r[0], _sqlite_time(r[1]), _sqlite_time(r[2]), r[3], r[4], r[5], r[6], int(r[7]), r[8], r[9])
            conn.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(params))
    elif name == "postgresql":
        payload = [(*r[:1], r[1].isoformat(), r[2].isoformat(), *r[3:]) for r in rows]
        conn.execute(_PG_INSERT, {"rows": encode_json(payload)})
    else:
        raise ValueError(f"unsupported database {name!r}: use SQLite or PostgreSQL")


def make_engine(url: str, synchronous: str = "FULL") -> sa.Engine:
    """The engine of the service's store. SQLite: WAL journal and `synchronous` FULL (an acknowledged write
    survives a crash); the score-log writer's own engine uses NORMAL (no fsync per batch: the score log is
    an audit trail whose last fraction of a second may be lost in a power cut, never corrupted)."""
    dialect = sa.engine.make_url(url).get_backend_name()
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"LEADSCORE_DATABASE_URL: {dialect!r} is not supported; use sqlite:///... or "
                         "postgresql+psycopg://...")
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  json_serializer=encode_json)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, json_serializer=encode_json)


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
