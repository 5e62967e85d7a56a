"""The worker against a real PostgreSQL: jobs queued at hang-up are processed,
and a call whose recordings are unusable ends 'failed' with a reason, not lost."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg
from pgqueuer.types import QueueExecutionMode

from callcenter.db.connect import connect
from callcenter.db.store import PgStore
from callcenter.pipeline import Transcribing
from callcenter.settings import Settings
from callcenter.worker import build_queue_manager


async def _finished_call(store: PgStore, call_id: str) -> None:
    await store.open_call(call_id, caller_number="13900000000", channel_id="x")
    await store.update_call(call_id, stage="queue", queue="repair", ivr_digits="1")
    await store.add_leg(call_id, "caller", channel_id="x", recording_name=f"{call_id}/caller.wav")
    await store.add_leg(call_id, "agent", channel_id="y", recording_name=f"{call_id}/agent.wav")
    await store.update_call(call_id, stage="conversation")
    assert await store.finish_call(call_id, stage="conversation", hangup_by="caller")


async def _drain(db_dsn: str, store: PgStore, settings: Settings) -> None:
    conn = await connect(db_dsn)
    try:
        never_loaded = Transcribing(Path("/nonexistent-model"))
        qm = build_queue_manager(conn, store, settings, never_loaded)
        await qm.run(mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
    finally:
        await conn.close()


async def test_a_corrupt_recording_fails_the_call_with_a_reason(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    store = PgStore(db_pool)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "caller.wav").write_bytes(b"RIFF\x00\x00garbage")
    (tmp_path / "bad" / "agent.wav").write_bytes(b"not audio at all")
    await _finished_call(store, "bad")
    await _drain(db_dsn, store, settings)
    call = await store.call_row("bad")
    assert call is not None
    assert call["status"] == "failed"
    assert "caller.wav" in (call["error"] or "")
    assert call["stage"] == "conversation"  # where it ended is kept
