"""A worker killed in the middle of a call (SIGKILL, as a machine that dies): another
worker takes the call once the first one's heartbeat is stale, and the call ends
with exactly one transcript, one ticket and one "processed" event."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from callcenter.asr.model import resolve_model
from callcenter.audio import read_mono, write_wav
from callcenter.db.store import PgStore
from callcenter.pipeline import Transcribing
from callcenter.settings import SHARED_DIR, Settings
from callcenter.worker import run_supervised
from tests.db.test_worker import processed, until

pytestmark = pytest.mark.asr

CALL = SHARED_DIR / "scenarios" / "dev" / "d007"
HEARTBEAT_S = 3.0
LEG_S = 60  # long enough that the first worker is still decoding when it is killed


async def _status_is(store: PgStore, call_id: str, status: str) -> bool:
    return (await store.call_row(call_id) or {}).get("status") == status


async def test_a_call_whose_worker_was_killed_is_finished_by_another_once(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    if not CALL.is_dir():
        pytest.skip("shared scenarios not available")
    store = PgStore(db_pool)
    (tmp_path / "k1").mkdir()
    for leg in ("caller", "agent"):
        samples, rate = read_mono(CALL / f"{leg}.wav")
        write_wav(tmp_path / "k1" / f"{leg}.wav", samples[: LEG_S * rate], rate)
    await store.open_call("k1", caller_number="13900000000", channel_id="k1")
    await store.update_call("k1", stage="conversation", queue="repair")
    for leg in ("caller", "agent"):
        await store.add_leg("k1", leg, channel_id=f"k1-{leg}", recording_name=f"k1/{leg}.wav")
    assert await store.finish_call("k1", stage="conversation", hangup_by="caller")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLCENTER_", "DATABASE"))}
    env |= {"DATABASE_URL": db_dsn, "CALLCENTER_DATA_DIR": str(tmp_path / "first"),
            "CALLCENTER_RECORDINGS_DIR": str(tmp_path),
            "CALLCENTER_WORKER_HEARTBEAT_S": str(HEARTBEAT_S), "CALLCENTER_LOG_LEVEL": "WARNING"}
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callcenter", "worker", "--concurrency", "1", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await until("the first worker decoding", lambda: _status_is(store, "k1", "processing"))
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()

    settings = Settings(database_url=db_dsn, data_dir=tmp_path / "second",
                        recordings_dir=tmp_path, worker_heartbeat_s=HEARTBEAT_S)
    stopping = asyncio.Event()
    second = asyncio.create_task(run_supervised(
        db_dsn, store, settings, Transcribing(resolve_model(settings)), stopping,
        concurrency=1))
    try:
        await until("the second worker to finish the call", lambda: processed(store, "k1"),
                    timeout_s=120)
    finally:
        stopping.set()
        await asyncio.wait_for(second, 30)
    counts = await db_pool.fetchrow(
        "SELECT (SELECT count(*) FROM call_events WHERE call_id = 'k1' AND kind = 'processed')"
        " AS processed, (SELECT count(*) FROM tickets WHERE call_id = 'k1') AS tickets,"
        " (SELECT count(DISTINCT leg) FROM transcript_segments WHERE call_id = 'k1') AS legs,"
        " (SELECT count(*) FROM pgqueuer WHERE payload = 'k1'::bytea) AS jobs")
    assert dict(counts) == {"processed": 1, "tickets": 1, "legs": 2, "jobs": 0}
