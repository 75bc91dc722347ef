"""Fixtures of the service tests: PostgreSQL when one is running, copies of the model registry that a test
may change, and a helper registering extra model versions (good or deliberately broken)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PG_ENV = "LEADSCORE_TEST_POSTGRES_URL"
NO_PG_REASON = (
    f"{PG_ENV} is not set: no PostgreSQL server for the tests (`.ci/run` starts one with `.ci/postgres.sh`)"
)


def fresh_pg_database(base_url: str, name: str) -> str:
    """A new empty database on the test PostgreSQL server; its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database: SQLite in a temporary file, or one on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(NO_PG_REASON)
    return fresh_pg_database(base, f"ls_{request.node.name.split('[')[0][-30:]}_{os.getpid()}".lower())


@pytest.fixture
def engine(database_url):
    """A migrated store on that database, disposed after the test."""
    from leadscore.serve import db

    db.migrate(database_url)
    e = db.make_engine(database_url)
    yield e
    e.dispose()


@pytest.fixture(scope="session")
def start_server():
    """`support.start_server` (starts a real `leadscore serve`), as a fixture for the tests here."""
    from support import start_server as start

    return start


@pytest.fixture
def registry_copy(trained, tmp_path) -> str:
    """A private copy of the registry holding the trained champion (version 1), which a test may change."""
    src = Path(trained.uri.removeprefix("sqlite:///"))
    dst = tmp_path / "mlflow.db"
    shutil.copy(src, dst)
    return f"sqlite:///{dst}"
