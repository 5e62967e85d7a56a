"""Versioned SQL migrations, applied in order, each in its own transaction.

Files are ``migrations/NNNN_name.sql``; the applied versions are recorded in
``schema_migrations``. A session advisory lock keeps two starting processes
from migrating at once. The job queue's own schema (pgqueuer) is installed
after ours.
"""

from __future__ import annotations

import asyncio
import logging
import re
from importlib import resources

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from callcenter.db.connect import connect, database_dsn
from callcenter.settings import Settings

log = logging.getLogger("callcenter.db")

_LOCK_ID = 0x43414C4C  # "CALL"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped with the package."""
    found = []
    for entry in resources.files("callcenter.db.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply what is missing; return the names applied now."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in available_migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied.append(name)
        await _install_job_queue(conn)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)


async def prepare_database(settings: Settings) -> str:
    """Find (or start) the database, bring its schema up to date, return its DSN."""
    dsn = await asyncio.to_thread(database_dsn, settings)
    conn = await connect(dsn, attempts=settings.database_connect_attempts)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return dsn


async def _install_job_queue(conn: asyncpg.Connection) -> None:
    queries = Queries(AsyncpgDriver(conn))
    if not await queries.schema_is_installed():
        await queries.install()
        log.info("installed the job-queue schema")
    else:
        await queries.upgrade()
