"""A database that drops its connections or dies loses nothing: ordered writes
land exactly once and in order, and a killed embedded PostgreSQL is started
again by the next connection that needs it (the store and the worker go on)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from callcenter.db import connect as db_connect
from callcenter.db.connect import connect, create_pool, database_dsn, stop_embedded
from callcenter.db.migrate import migrate
from callcenter.db.store import PgStore
from callcenter.db.writer import OrderedWriter
from callcenter.pipeline import Transcribing
from callcenter.settings import Settings
from callcenter.worker import run_supervised
from tests.conftest import drop_connections
from tests.db.test_worker import processed, until, worker_connected

CALLS = 8
UPDATES = 30


async def _trail(pool: asyncpg.Pool, call_id: str) -> list[tuple[str, object]]:
    rows = await pool.fetch(
        "SELECT kind, data FROM call_events WHERE call_id = $1 ORDER BY id", call_id)
    return [(r["kind"], r["data"]) for r in rows]


async def test_ordered_writes_land_once_and_in_order_through_dropped_connections(
    db_pool: asyncpg.Pool, pg_server_dsn: str
) -> None:
    writer = OrderedWriter(PgStore(db_pool), first_delay_s=0.01, max_delay_s=0.2)
    calls = [f"w{n}" for n in range(CALLS)]
    for call_id in calls:
        writer.submit(call_id, "open_call", call_id, caller_number="139", channel_id=call_id)

    def submit(i: int) -> None:
        for call_id in calls:
            writer.submit(call_id, "update_call", call_id, ivr_digits=str(i))

    busy = asyncio.Event()  # half the first batch written: connections are busy
    first_batch = CALLS * (1 + UPDATES // 2)

    def progress() -> None:
        if writer.written >= first_batch // 2:
            busy.set()

    writer.on_change = progress
    for i in range(UPDATES // 2):
        submit(i)
    await asyncio.wait_for(busy.wait(), 10)
    assert writer.pending() > 0
    await drop_connections(db_pool, pg_server_dsn)
    for i in range(UPDATES // 2, UPDATES):
        submit(i)
    assert writer.pending() > 0
    await drop_connections(db_pool, pg_server_dsn)
    assert await writer.flush(60)
    await writer.close()
    assert writer.dropped == 0
    for call_id in calls:
        trail = await _trail(db_pool, call_id)
        assert trail == [("opened", {"caller_number": "139"})] + [
            ("updated", {"ivr_digits": str(i)}) for i in range(UPDATES)
        ], call_id
        assert (await db_pool.fetchval(
            "SELECT ivr_digits FROM calls WHERE id = $1", call_id)) == str(UPDATES - 1)


# ---- the embedded server --------------------------------------------------------------


@pytest.fixture
async def embedded() -> AsyncIterator[tuple[Settings, str]]:
    """A private embedded PostgreSQL started the way the service starts it."""
    folder = Path(tempfile.mkdtemp(prefix="cc-embedded-"))
    folder.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    settings = Settings(database_url="", data_dir=folder)
    try:
        dsn = await asyncio.to_thread(database_dsn, settings)
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield settings, dsn
    finally:
        await asyncio.to_thread(stop_embedded, settings)
        shutil.rmtree(folder, ignore_errors=True)


def _postmaster(settings: Settings) -> psutil.Process:
    pid = int((settings.data_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
    return psutil.Process(pid)


def _kill(settings: Settings, how: str) -> None:
    postmaster = _postmaster(settings)
    if how == "SIGKILL":
        os.kill(postmaster.pid, signal.SIGKILL)
    else:  # what an operator's "pg_ctl stop -m immediate" does
        os.kill(postmaster.pid, signal.SIGQUIT)
    postmaster.wait(30)  # gone (reaped by init) before we go on


@pytest.mark.parametrize("how", ["SIGKILL", "immediate-stop"])
async def test_a_dead_embedded_database_is_started_again_by_the_next_write(
    embedded: tuple[Settings, str], how: str
) -> None:
    settings, dsn = embedded
    pool = await create_pool(dsn, max_size=3)
    store = PgStore(pool)
    stopping = asyncio.Event()
    worker = asyncio.create_task(run_supervised(
        dsn, store, settings, Transcribing(Path("/nonexistent-model")), stopping))
    writer = OrderedWriter(store, first_delay_s=0.05, max_delay_s=1.0)
    try:
        await until("worker connected", lambda: worker_connected(pool))
        await store.open_call("before", caller_number="1", channel_id="a")
        first = _postmaster(settings).pid
        await asyncio.to_thread(_kill, settings, how)

        # Calls go on while it is down; nothing in the test starts it again.
        writer.submit("down", "open_call", "down", caller_number="13900000002", channel_id="b")
        writer.submit("down", "update_call", "down", stage="queue", queue="repair")
        writer.submit("down", "finish_call", "down", stage="queue", hangup_by="caller")
        assert await writer.flush(60), "writes did not land after the database died"
        assert _postmaster(settings).pid != first
        entry = db_connect._embedded[str((settings.data_dir / "pg").resolve())]
        # The new postmaster accepts connections before pg_ctl, polling, returns to
        # the thread that restarts it: the count follows the first writes.
        async def restart_counted() -> bool:
            return entry.restarts >= 1

        await until("restart counted", restart_counted)
        await store.update_call("before", stage="menu")  # the store's own path works too
        # The worker reconnected and processes the call (call-back ticket, no audio).
        await until("job processed", lambda: processed(store, "down"))
    finally:
        stopping.set()
        await asyncio.wait_for(worker, 30)
        await writer.close(timeout_s=1)
        await pool.close()
    assert (await _trail_kinds(dsn, "down")) == ["opened", "updated", "finished", "processed"]


async def _trail_kinds(dsn: str, call_id: str) -> list[str]:
    conn = await connect(dsn)
    try:
        return [r["kind"] for r in await conn.fetch(
            "SELECT kind FROM call_events WHERE call_id = $1 ORDER BY id", call_id)]
    finally:
        await conn.close()
