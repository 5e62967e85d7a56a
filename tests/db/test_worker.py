"""The worker against a real PostgreSQL: jobs queued at hang-up are processed,
a call whose recordings are unusable still gets its ticket (and the reason),
and the worker outlives a database that drops its connections."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from pgqueuer.types import QueueExecutionMode

from callcenter.asr.model import resolve_model
from callcenter.audio import read_mono, write_wav
from callcenter.db.connect import connect
from callcenter.db.store import PgStore
from callcenter.pipeline import Transcribing
from callcenter.settings import Settings
from callcenter.worker import WORKER_APPLICATION, build_queue_manager, run_supervised
from tests.conftest import drop_connections


async def _finished_call(store: PgStore, call_id: str) -> None:
    await store.open_call(call_id, caller_number="13900000000", channel_id="x")
    await store.update_call(call_id, stage="queue", queue="repair", ivr_digits="1")
    await store.add_leg(call_id, "caller", channel_id="x", recording_name=f"{call_id}/caller.wav")
    await store.add_leg(call_id, "agent", channel_id="y", recording_name=f"{call_id}/agent.wav")
    await store.update_call(call_id, stage="conversation")
    assert await store.finish_call(call_id, stage="conversation", hangup_by="caller")


async def ended_with_recordings(store: PgStore, folder: Path, call_id: str,
                                samples: np.ndarray, rate: int) -> None:
    """A call that ended in conversation, both legs recorded (``samples`` each) in
    ``folder``/<call_id>/; its analysis queued."""
    (folder / call_id).mkdir()
    for leg in ("caller", "agent"):
        write_wav(folder / call_id / f"{leg}.wav", samples, rate)
    await store.open_call(call_id, caller_number="13900000000", channel_id=call_id)
    await store.update_call(call_id, stage="conversation", queue="repair")
    for leg in ("caller", "agent"):
        await store.add_leg(call_id, leg, channel_id=f"{call_id}-{leg}",
                            recording_name=f"{call_id}/{leg}.wav")
    assert await store.finish_call(call_id, stage="conversation", hangup_by="caller")


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 60) -> None:
    """Wait until ``check()`` holds (the database has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.2)


async def worker_connected(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND datname = current_database()", WORKER_APPLICATION))


async def processed(store: PgStore, call_id: str) -> bool:
    return (await store.call_row(call_id) or {}).get("status") == "processed"


async def drain_queue(db_dsn: str, store: PgStore, settings: Settings,
                      transcribing: Transcribing | None = None) -> None:
    """Run the worker's jobs until none is left (``transcribing``: by default one
    whose model is never loaded, for calls that need none)."""
    conn = await connect(db_dsn)
    try:
        qm = build_queue_manager(conn, store, settings,
                                 transcribing or Transcribing(Path("/nonexistent-model")))
        await qm.run(mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
    finally:
        await conn.close()


async def test_corrupt_recordings_still_give_a_callback_ticket_and_a_reason(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    store = PgStore(db_pool)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "caller.wav").write_bytes(b"RIFF\x00\x00garbage")
    (tmp_path / "bad" / "agent.wav").write_bytes(b"not audio at all")
    await _finished_call(store, "bad")
    await drain_queue(db_dsn, store, settings)
    call = await store.call_row("bad")
    assert call is not None
    assert call["status"] == "processed"
    assert "caller recording" in (call["error"] or "") and "agent recording" in call["error"]
    assert call["stage"] == "conversation"  # where it ended is kept
    ticket = await db_pool.fetchrow("SELECT * FROM tickets WHERE call_id = 'bad'")
    assert ticket is not None and ticket["callback_required"]
    assert ticket["phone"] == "13900000000"


@pytest.mark.asr
async def test_a_caller_who_hangs_up_in_the_queue_gets_a_ticket_from_their_description(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path, shared_dir: Path
) -> None:
    """Repair, a problem description after the tone, then a hang-up while queued: the
    description is transcribed and the ticket (a call-back) is opened from it."""
    store = PgStore(db_pool)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path,
                        shared_dir=shared_dir)
    samples, rate = read_mono(shared_dir / "scenarios" / "dev" / "d007" / "caller.wav")
    described = tmp_path / "ivr" / "q1" / "description.wav"
    described.parent.mkdir(parents=True)
    write_wav(described, samples[: rate * 20], rate)  # the first 20 s, as after a tone
    await store.open_call("q1", caller_number="13900000001", channel_id="q")
    await store.update_call("q1", stage="queue", queue="repair", ivr_digits="12",
                            ivr_intent="repair", ivr_description="ivr/q1/description.wav")
    assert await store.finish_call("q1", stage="queue", hangup_by="caller")
    await drain_queue(db_dsn, store, settings, Transcribing(resolve_model(settings)))
    call = await store.call_row("q1")
    assert call is not None and call["status"] == "processed"
    assert len(call["ivr_description_text"] or "") > 10
    ticket = await db_pool.fetchrow("SELECT * FROM tickets WHERE call_id = 'q1'")
    assert ticket is not None and ticket["callback_required"]
    assert ticket["category"] == "engineering"


async def test_the_worker_recovers_when_the_database_drops_its_connection(
    db_dsn: str, db_pool: asyncpg.Pool, pg_server_dsn: str, tmp_path: Path
) -> None:
    store = PgStore(db_pool)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    stopping = asyncio.Event()
    worker = asyncio.create_task(run_supervised(
        db_dsn, store, settings, Transcribing(Path("/nonexistent-model")), stopping))
    try:
        await until("worker connected", lambda: worker_connected(db_pool))
        # Kills the worker's connection and the pool's: the pool's next use fails with
        # ConnectionDoesNotExistError, which the store retries (a transient error).
        await drop_connections(db_pool, pg_server_dsn)
        # A caller who gave up in the queue: processed without audio (call-back ticket).
        await store.open_call("late", caller_number="13900000001", channel_id="z")
        await store.update_call("late", stage="queue", queue="repair", ivr_digits="1")
        assert await store.finish_call("late", stage="queue", hangup_by="caller")
        await until("job processed", lambda: processed(store, "late"))
    finally:
        stopping.set()
        await asyncio.wait_for(worker, 30)
    ticket = await db_pool.fetchrow("SELECT * FROM tickets WHERE call_id = 'late'")
    assert ticket is not None and ticket["callback_required"]
