"""The catalog implementations the catalog tests run over: stdlib SQLite, SQLAlchemy on SQLite, PostgreSQL.

PostgreSQL is the server that `.ci/run` installs and starts; the fixture makes a database of its own and drops
it afterwards. Outside CI a machine without the server (or without psycopg) skips those cases; under
``CI=true`` they fail instead. ``ASSAY_TEST_POSTGRES`` names the server (a URL with a user that may create
databases); the default is the role that `.ci/run` creates.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_SERVER = "postgresql+psycopg://assay_test:assay_test@127.0.0.1:5432/postgres"
IMPLEMENTATIONS = ["sqlite3", "sqlalchemy-sqlite", "postgresql"]


def _admin_connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    from assay.repo.catalog import parse_catalog_url

    u = parse_catalog_url(url)
    host, _, port = u.host.partition(":")
    return psycopg.connect(host=host, port=int(port or 5432), user=u.user, password=u.password,
                           dbname=u.database, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped after); its URL with credentials."""
    server = os.environ.get("ASSAY_TEST_POSTGRES", DEFAULT_SERVER)
    try:
        admin = _admin_connect(server)
    except Exception as e:  # no driver, no server
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL at {server.split('@')[-1]} ({type(e).__name__}); .ci/run starts one")
    name = f"assay_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def catalog_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "catalog") -> str:
    """A URL of a new, empty catalog of implementation ``kind`` (credentials included for PostgreSQL)."""
    if kind == "postgresql":
        db = request.getfixturevalue("postgres_database")
        return f"{db}?schema=s{uuid.uuid4().hex[:10]}_{name}"
    return f"sqlite:///{tmp_path / (name + '.db')}"


def open_kind(kind: str, url: str):  # type: ignore[no-untyped-def]
    """Open ``url`` with implementation ``kind``: ``open_catalog`` picks stdlib sqlite3 for a SQLite URL, so the
    SQLAlchemy one over SQLite is asked for by name."""
    from assay.repo.catalog import SqlCatalog, open_catalog

    return SqlCatalog(url) if kind == "sqlalchemy-sqlite" else open_catalog(url)
