"""Fixtures shared by every layer: paths to the shared test data, and a real
embedded PostgreSQL with a fresh, migrated database per test."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from callcenter.db.connect import connect, create_pool
from callcenter.db.migrate import migrate
from callcenter.settings import SHARED_DIR

SCENARIOS = SHARED_DIR / "scenarios"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``pytest -n 2 --dist loadgroup`` (scripts/test.sh) runs two fixed halves, one
    worker each: the end-to-end tests, which mostly wait on audio playing in real
    time, beside the rest, which mostly computes. Each half keeps the usual order,
    so the suite costs about as long as its longer half and every run repeats the
    last one exactly (the Vosk model adapts as it decodes: which tests share a
    process, and in what order, must not change from run to run). xdist's own
    loadgroup cannot be used: it renames test ids, which pytest 9 no longer allows."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Halves(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "e2e" if nodeid.startswith("tests/e2e/") else "rest"

    return Halves(config, log)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """DATABASE_URL when set (an external server), else an embedded PostgreSQL 16."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    import pgserver

    # PostgreSQL runs as its own user when we are root: the folder must be reachable.
    folder = Path(tempfile.mkdtemp(prefix="callcenter-pg-"))
    folder.chmod(0o755)
    server = pgserver.get_server(folder / "pg", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_template(pg_server_dsn: str) -> str:
    """A migrated template database; each test clones it (fast, isolated)."""

    async def build() -> str:
        name = f"tmpl_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await connect(_dsn_for(pg_server_dsn, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return name

    return asyncio.run(build())


def _dsn_for(server_dsn: str, database: str) -> str:
    base, _, query = server_dsn.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + database
    return f"{base}?{query}" if query else base


@pytest.fixture
async def db_dsn(pg_server_dsn: str, pg_template: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield _dsn_for(pg_server_dsn, name)
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, max_size=4)
    yield pool
    await pool.close()


async def drop_connections(pool: asyncpg.Pool, server_dsn: str) -> None:
    """What a database restart does to clients: the server kills every connection
    to the pool's database (ours excepted)."""
    database = await _current_database(pool)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()", database)
    finally:
        await admin.close()


async def _current_database(pool: asyncpg.Pool) -> str:
    """The pool's database. A pooled connection whose backend an earlier drop killed
    while it sat idle may fail its next use before asyncpg saw it close: the pool
    drops it, and the next one is fresh."""
    for _ in range(10):
        try:
            return str(await pool.fetchval("SELECT current_database()"))
        except (asyncpg.InternalClientError, asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError):
            continue
    return str(await pool.fetchval("SELECT current_database()"))
