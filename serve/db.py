"""The service's SQL store: SQLAlchemy Core tables and engine, migrated by alembic.

SQLite by default (WAL journal, synchronous=FULL: an acknowledged write survives a crash), PostgreSQL by
URL in LEADSCORE_DATABASE_URL through the same code.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from datetime import UTC, datetime
from pathlib import Path

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
    # a lead's newest events straight from the index (scoring by reference reads only those)
    sa.Index("ix_events_lead_id_timestamp", "lead_id", "timestamp"),
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

# The sales page's sessions (`serve.ui.session`): shared by every worker, so signing out ends a session at once.
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
def encode_json(value) -> str:
    """JSON columns through orjson: the score log writes a thousand feature snapshots per big request, and
    the stdlib encoder would hold the GIL several times longer while the next request waits."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


SCORE_LOG_FIELDS = (
    "lead_id",
    "scored_at",
    "as_of",
    "model_version",
    "probability",
    "score",
    "grade",
    "qualified",
    "features",
    "reasons",
    "propensity",
    "explored",
)
REASON_FIELDS = ("feature", "value", "impact", "points", "text")
_COLUMNS = (*SCORE_LOG_FIELDS[:10], "feature_set", *SCORE_LOG_FIELDS[10:])
_INTO = f"INSERT INTO score_log ({', '.join(_COLUMNS)}) "
_SQLITE_CHUNK = (
    76  # rows per INSERT ... VALUES (?, ...), (?, ...): 988 parameters, under the 999 of SQLite < 3.32
)
_PG_CASTS = (
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "float8",
    "integer",
    "text",
    "boolean",
    "json",
    "json",
    "text",
    "float8",
    "boolean",
)
_PG_PICK = ", ".join(f"CAST(r.value->>{i} AS {cast})" for i, cast in enumerate(_PG_CASTS))
# rows get their ids in the array's order (a request's repeated lead_id: the later score is the later row)
_PG_INSERT = sa.text(
    _INTO + f"SELECT {_PG_PICK} FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY "
    "AS r(value, ord) ORDER BY r.ord"
)


@functools.lru_cache(maxsize=64)
def _sqlite_insert(n: int) -> str:
    """INSERT of n score-log rows as one VALUES list (SQLite inserts, and numbers, them in that order)."""
    one = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    return _INTO + "VALUES " + ", ".join([one] * n)


def dialect_insert(conn: sa.Connection):
    """The dialect's INSERT construct, which has `on_conflict_do_nothing` (SQLite and PostgreSQL only)."""
    return {"sqlite": sqlite_dialect.insert, "postgresql": pg_dialect.insert}[conn.dialect.name]


# feature names <-> the id of their feature set (a content hash: valid in every database)
_SET_IDS: dict[tuple[str, ...], str] = {}
_SET_NAMES: dict[str, tuple[str, ...]] = {}


def feature_set_id(names: tuple[str, ...]) -> str:
    got = _SET_IDS.get(names)
    if got is None:
        got = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        _SET_IDS[names], _SET_NAMES[got] = got, names
    return got


def feature_names(conn: sa.Connection, ids) -> dict[str, tuple[str, ...]]:
    """The names of each feature set in `ids` (unknown ids: left out)."""
    missing = [i for i in set(ids) if i not in _SET_NAMES]
    if missing:
        for r in conn.execute(sa.select(feature_sets).where(feature_sets.c.id.in_(missing))):
            _SET_NAMES[r.id] = tuple(r.names)
    return {i: _SET_NAMES[i] for i in set(ids) if i in _SET_NAMES}


_reason_values = operator.itemgetter(*REASON_FIELDS)


def score_log_row(r: dict) -> tuple:
    """A score-log row (a mapping with the fields of `SCORE_LOG_FIELDS`, features a mapping of name to
    value, reasons as the API serves them; `propensity` and `explored` may be absent: NULL) as
    `insert_score_log` takes it: a flat tuple, features encoded as the JSON array of their values, reasons as
    arrays of `REASON_FIELDS`, the id of the feature set, then propensity and explored.
    About 1 KB of JSON a row instead of 2.4 KB with every key repeated (docs/api.md, "Score log")."""
    features = r["features"]
    return (
        r["lead_id"],
        r["scored_at"],
        r["as_of"],
        r["model_version"],
        r["probability"],
        r["score"],
        r["grade"],
        r["qualified"],
        encode_json(list(features.values())),
        encode_json([_reason_values(x) for x in r["reasons"]]),
        feature_set_id(tuple(features)),
        r.get("propensity"),
        r.get("explored"),
    )


def decode_score_log(conn: sa.Connection, rows: list[dict]) -> list[dict]:
    """Score-log rows as read (`features`, `reasons`, `feature_set` columns) back in the API's shape:
    features a mapping of name to value, reasons objects; rows from before migration 0003 are already so."""
    names = feature_names(conn, {r["feature_set"] for r in rows if r.get("feature_set")})
    for r in rows:
        fs = r.pop("feature_set", None)
        if "features" in r and fs is not None and isinstance(r["features"], list):
            r["features"] = dict(zip(names[fs], r["features"], strict=False)) if fs in names else {}
        if "reasons" in r and r["reasons"] and isinstance(r["reasons"][0], list):
            r["reasons"] = [dict(zip(REASON_FIELDS, x, strict=False)) for x in r["reasons"]]
    return rows


def _sqlite_time(t: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it, "YYYY-MM-DD HH:MM:SS.ffffff" (UTC; read back as
    UTC by `store`)."""
    if t.tzinfo is not None:
        t = (t if t.tzinfo is UTC else t.astimezone(UTC)).replace(tzinfo=None)
    return t.isoformat(" ", "microseconds")


def insert_score_log(conn: sa.Connection, rows: list[tuple]) -> None:
    """Insert score-log rows made by `score_log_row`, and the feature sets they name if not stored yet.

    A few statements per batch, not one per row: the driver releases the GIL around every statement, and
    each time it takes it back it waits for the serving thread's switch interval (a row per statement made
    every request ~150 us slower). SQLite: VALUES lists of `_SQLITE_CHUNK` rows (14 us of CPU a row, with
    preparing the parameters; one statement over a JSON array took 33 us, SQLite unescaping every row's
    features again). PostgreSQL: one statement over a JSON array (`json_array_elements`)."""
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {name!r}: use SQLite or PostgreSQL")
    conn.execute(
        dialect_insert(conn)(feature_sets).on_conflict_do_nothing(),
        [{"id": i, "names": list(_SET_NAMES[i])} for i in {r[10] for r in rows}],
    )
    if name == "sqlite":
        for i in range(0, len(rows), _SQLITE_CHUNK):
            chunk = rows[i : i + _SQLITE_CHUNK]
            params = []
            for r in chunk:
                params += (
                    r[0],
                    _sqlite_time(r[1]),
                    _sqlite_time(r[2]),
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    int(r[7]),
                    r[8],
                    r[9],
                    r[10],
                    r[11],
                    None if r[12] is None else int(r[12]),
                )
            conn.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(params))
    else:
        payload = [(*r[:1], r[1].isoformat(), r[2].isoformat(), *r[3:]) for r in rows]
        conn.execute(_PG_INSERT, {"rows": encode_json(payload)})


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
        def _pragmas(dbapi_conn, _record):
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


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to the newest schema (alembic upgrade head), or to `revision`.

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
    lock = (
        Path(tempfile.gettempdir())
        / f"leadscore-migrate-{hashlib.sha256(url.encode()).hexdigest()[:16]}.lock"
    )
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            command.upgrade(cfg, revision)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
