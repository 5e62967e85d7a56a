"""Where the database is and how to reach it.

``DATABASE_URL`` set: that server. Unset: an embedded, real PostgreSQL 16 (the
``pgserver`` wheel) in ``data_dir/pg``, started on demand and stopped when the
last process using it exits.

The embedded server is supervised: when a connection to it fails the way a
stopped server fails (socket gone, refused, "starting up"), the failing
attempt calls :func:`ensure_database_running`, which starts it again if its
postmaster is gone (at most once every few seconds per server), and the
connection is tried once more. No polling: a dead server is noticed by the
next process that needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from callcenter.settings import Settings

log = logging.getLogger("callcenter.db")

# A server found down is started again at most this often.
RESTART_INTERVAL_S = 3.0


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached after retrying."""


class DatabaseConfigError(ValueError):
    """The DSN cannot be used at all (malformed, unknown option): not retried."""


@dataclass
class _Embedded:
    server: Any  # pgserver.PostgresServer
    socket_dir: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_check: float = float("-inf")
    restarts: int = 0


_embedded: dict[str, _Embedded] = {}


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
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        socket_dir = server.get_postmaster_info().socket_dir
        _embedded[key] = _Embedded(server, str(socket_dir) if socket_dir else "")
    return str(_embedded[key].server.get_uri())


def stop_embedded(settings: Settings) -> None:
    """Stop the embedded server of ``settings`` (if this process started it)."""
    entry = _embedded.pop(str((settings.data_dir / "pg").resolve()), None)
    if entry is not None:
        # Never beside a restart in another thread: pgserver's inter-process lock is
        # one object per server, and two threads of one process would share it.
        with entry.lock:
            entry.server.cleanup()


def _embedded_for(dsn: str) -> _Embedded | None:
    """The embedded server a DSN points at (any database on it), if it is ours."""
    if not _embedded:
        return None
    parts = urlsplit(dsn)
    hosts = parse_qs(parts.query).get("host", []) + ([parts.hostname] if parts.hostname else [])
    for entry in _embedded.values():
        if entry.socket_dir and entry.socket_dir in hosts:
            return entry
    return None


async def ensure_database_running(dsn: str) -> bool:
    """Start the embedded server behind ``dsn`` again if its postmaster is gone.

    Called by a connection attempt that failed the way a stopped server fails.
    Checks at most once every :data:`RESTART_INTERVAL_S` per server (a thread
    does the check and the start, so the event loop never blocks). Returns True
    when the server was started again (the caller may try at once), False when
    it is not ours, was checked recently, is running, or could not start yet.
    """
    entry = _embedded_for(dsn)
    if entry is None:
        return False
    now = time.monotonic()
    if now - entry.last_check < RESTART_INTERVAL_S:
        return False
    entry.last_check = now
    return await asyncio.to_thread(_restart_if_down, entry)


def _restart_if_down(entry: _Embedded) -> bool:
    if not entry.lock.acquire(blocking=False):
        return False  # another thread of this process is at it
    try:
        server = entry.server
        with server._lock:  # pgserver's own inter-process lock on its servers
            if _postmaster_alive(server.pgdata):
                return False
            log.warning("embedded PostgreSQL in %s is down: starting it again", server.pgdata)
            try:
                server.ensure_postgres_running()
            except Exception as exc:  # e.g. killed backends still hold its shared memory
                # pg_ctl may only have stopped waiting (crash recovery on a slow
                # machine): a postmaster of ours that runs is a restart, still coming up.
                if not _postmaster_alive(server.pgdata):
                    log.warning("embedded PostgreSQL did not start yet (%s); next failure"
                                " retries", exc)
                    return False
                log.warning("embedded PostgreSQL in %s still starting", server.pgdata)
        entry.restarts += 1
        log.warning("embedded PostgreSQL in %s running again", server.pgdata)
        return True
    finally:
        entry.lock.release()


def _postmaster_alive(pgdata: Path) -> bool:
    """Whether the postmaster named in ``postmaster.pid`` runs. A zombie (killed,
    not reaped by a minimal init) counts as dead, and its lock file is removed so
    that PostgreSQL does not take it for a live server."""
    import psutil

    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
        zombie = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (OSError, ValueError, psutil.NoSuchProcess):
        return False
    except psutil.Error:
        return True  # it exists; we may not see its details
    if zombie:
        with contextlib.suppress(OSError):
            pid_file.unlink()
        _remove_socket_locks(pgdata, pid)
    return not zombie


def _remove_socket_locks(socket_dir: Path, pid: int) -> None:
    """The socket lock files a dead postmaster left: PostgreSQL refuses to start
    while one names a process that still exists, and a zombie still does."""
    for lock in socket_dir.glob(".s.PGSQL.*.lock"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(lock.read_text().split("\n", 1)[0]) == pid:
                lock.unlink()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: json.dumps(v, ensure_ascii=False), decoder=json.loads,
            schema="pg_catalog",
        )


def _server_down(exc: BaseException) -> bool:
    """A connection attempt failed the way it fails when the server is not running."""
    return isinstance(
        exc, (OSError, asyncpg.exceptions.CannotConnectNowError, asyncpg.PostgresConnectionError)
    )


async def _connect_supervised(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """``asyncpg.connect``, starting a dead embedded server again on the way."""
    try:
        return await asyncpg.connect(dsn, **kwargs)
    except Exception as exc:
        if not _server_down(exc) or not await ensure_database_running(dsn):
            raise
    return await asyncpg.connect(dsn, **kwargs)


async def connect(
    dsn: str, *, attempts: int = 10, delay_s: float = 0.5, application_name: str | None = None
) -> asyncpg.Connection:
    """One connection with the project's codecs, retried while the server starts.
    ``application_name`` names it in ``pg_stat_activity``."""
    settings = {"application_name": application_name} if application_name else None
    conn = await _retry(
        lambda: _connect_supervised(dsn, server_settings=settings), attempts, delay_s
    )
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, attempts: int = 10, delay_s: float = 0.5
) -> asyncpg.Pool:
    """A pool with JSON codecs; retries while the server is still coming up. Its new
    connections restart a dead embedded server (see the module docstring)."""

    async def make() -> asyncpg.Pool:
        return await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection,
            connect=_connect_supervised,
        )

    return await _retry(make, attempts, delay_s)


async def _retry(factory: Callable[[], Awaitable[Any]], attempts: int, delay_s: float) -> Any:
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await factory()
        except ValueError as exc:  # asyncpg's ClientConfigurationError too: a bad DSN
            raise DatabaseConfigError(f"not a usable PostgreSQL DSN: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            last = exc
            if attempt < attempts:  # the last failure is the exception's message
                log.warning("database not reachable (attempt %d/%d): %s", attempt, attempts,
                            exc)
                await asyncio.sleep(min(delay_s * 2 ** (attempt - 1), 5.0))
    tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
    raise DatabaseUnavailable(f"database unreachable after {tries}: {last}")
