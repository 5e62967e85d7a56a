"""Where the database is and how to reach it.

``DATABASE_URL`` set: that server. Unset: an embedded, real PostgreSQL 16 (the
``pgserver`` wheel) in ``data_dir/pg``, started on demand and stopped when the
last process using it exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import asyncpg

from callcenter.settings import Settings

log = logging.getLogger("callcenter.db")


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached after retrying."""


_embedded: dict[str, Any] = {}


def database_dsn(settings: Settings) -> str:
    """The DSN to use, starting the embedded server when no URL is configured."""
    if settings.database_url:
        return settings.database_url
    pgdata = (settings.data_dir / "pg").resolve()
    key = str(pgdata)
    if key not in _embedded:
        import pgserver  # imported lazily: only the embedded mode needs it

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        _embedded[key] = pgserver.get_server(pgdata, cleanup_mode="stop")
    return str(_embedded[key].get_uri())


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: json.dumps(v, ensure_ascii=False), decoder=json.loads,
            schema="pg_catalog",
        )


async def connect(dsn: str, *, attempts: int = 10, delay_s: float = 0.5) -> asyncpg.Connection:
    """One connection with the project's codecs, retried while the server starts."""
    conn = await _retry(lambda: asyncpg.connect(dsn), attempts, delay_s)
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, attempts: int = 10, delay_s: float = 0.5
) -> asyncpg.Pool:
    """A pool with JSON codecs; retries while the server is still coming up."""

    async def make() -> asyncpg.Pool:
        return await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection
        )

    return await _retry(make, attempts, delay_s)


async def _retry(factory: Any, attempts: int, delay_s: float) -> Any:
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await factory()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            last = exc
            log.warning("database not reachable (attempt %d/%d): %s", attempt, attempts, exc)
            await asyncio.sleep(min(delay_s * 2 ** (attempt - 1), 5.0))
    raise DatabaseUnavailable(f"database unreachable after {attempts} attempts: {last}")
