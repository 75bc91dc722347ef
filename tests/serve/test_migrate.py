"""Migrating one database from several processes at once, as `leadscore serve --workers N` on one host and
several hosts against one PostgreSQL do: every process starts, the schema is built once and is at head.

Each process gets its own temporary directory, as processes on different hosts have: a lock in the
temporary directory would let them all migrate at once (and all but one fail on tables created under them).
"""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

MIGRATORS = 4
# every process waits at the barrier file, then migrates: they start as close together as processes can
MIGRATE = """
import os, sys, time
from pathlib import Path
from leadscore.serve import db
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
db.migrate(sys.argv[1])
"""


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from leadscore.serve import db

    cfg = Config()
    cfg.set_main_option("script_location", str(os.path.join(os.path.dirname(db.__file__), "migrations")))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_processes_with_their_own_temporary_directories_migrate_one_database_together(database_url, tmp_path):
    # given: a new, empty database and four processes, each with a temporary directory of its own
    go = tmp_path / "go"
    procs = []
    for i in range(MIGRATORS):
        own_tmp = tmp_path / f"host-{i}"
        own_tmp.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, database_url, str(go)],
                env={**os.environ, "TMPDIR": str(own_tmp)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    # when: they all migrate at once
    go.touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]

    # then: every one of them succeeded, and the database is at the newest revision, built once
    assert [p.returncode for p in procs] == [0] * MIGRATORS, "\n".join(o[-1500:] for o in outputs)
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert versions == [head_revision()]
    assert {"leads", "events", "score_log", "lead_state", "outbox"} <= tables


def test_a_sqlite_store_keeps_its_migration_lock_beside_it_not_in_the_temporary_directory(
    tmp_path, monkeypatch
):
    import tempfile

    from leadscore.serve import db

    # given: a SQLite store and a temporary directory of our own
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    store = tmp_path / "data" / "leadscore.db"
    store.parent.mkdir()

    # when: it is migrated
    db.migrate(f"sqlite:///{store}")

    # then: the lock lives (and goes) with the store; nothing is left in the temporary directory
    assert (store.parent / ".leadscore.db.migrate-lock").exists()
    assert list(scratch.iterdir()) == []
