"""Workers that scale out: each takes only as many calls as it decodes at once
(the rest stay queued for other workers against the same database), the most
urgent call first, then in hang-up order. Decoding is held by a gate so that
what each worker has picked can be seen."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from callcenter.audio import write_wav
from callcenter.core import Segment
from callcenter.db.store import PROCESS_CALL_JOB, PgStore
from callcenter.pipeline import Transcribing
from callcenter.settings import Settings
from callcenter.web.queries import transcription_figures
from callcenter.worker import run_supervised
from tests.db.test_worker import processed, until

RATE = 8000
SAFETY = 2


class GatedTranscribing(Transcribing):
    """Records which call each leg belongs to (told by its length) and holds every
    decode until the gate opens: the worker's jobs stay picked meanwhile."""

    def __init__(self, seconds_to_call: dict[int, str]) -> None:
        super().__init__(Path("/nonexistent-model"))
        self.seconds_to_call = seconds_to_call
        self.gate = threading.Event()
        self.started: list[str] = []
        self.decoding = self.most_at_once = 0
        self._lock = threading.Lock()

    def transcribe(self, samples: Any, rate: int, leg: str) -> list[Segment]:
        with self._lock:
            self.started.append(self.seconds_to_call[len(samples) // rate])
            self.decoding += 1
            self.most_at_once = max(self.most_at_once, self.decoding)
        try:
            assert self.gate.wait(60), "the test never opened the gate"
        finally:
            with self._lock:
                self.decoding -= 1
        return []


async def _finished_call(store: PgStore, folder: Path, call_id: str, seconds: int,
                         priority: int) -> None:
    (folder / call_id).mkdir()
    write_wav(folder / call_id / "caller.wav", np.zeros(RATE * seconds, np.int16), RATE)
    await store.open_call(call_id, caller_number="13900000000", channel_id=call_id)
    await store.update_call(call_id, stage="conversation", queue="repair", priority=priority)
    await store.add_leg(call_id, "caller", channel_id=call_id,
                        recording_name=f"{call_id}/caller.wav")
    assert await store.finish_call(call_id, stage="conversation", hangup_by="caller")


def _worker(db_dsn: str, store: PgStore, folder: Path, gated: GatedTranscribing,
            stopping: asyncio.Event, *, concurrency: int) -> asyncio.Task[None]:
    """A worker as ``callcenter worker`` runs it, decoding through the gate."""
    settings = Settings(database_url=db_dsn, data_dir=folder, recordings_dir=folder)
    return asyncio.create_task(
        run_supervised(db_dsn, store, settings, gated, stopping, concurrency=concurrency))


async def _picked_by_worker(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT count(*) AS n FROM pgqueuer WHERE entrypoint = $1 AND status = 'picked'"
        " GROUP BY queue_manager_id ORDER BY n", PROCESS_CALL_JOB)
    return [int(r["n"]) for r in rows]


@pytest.fixture
async def queued(db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[GatedTranscribing]:
    """Five ordinary calls, then one safety call (hung up last), all queued."""
    store = PgStore(db_pool)
    calls = {f"n{i}": (i + 1, 0) for i in range(5)} | {"p1": (9, SAFETY)}
    for call_id, (seconds, priority) in calls.items():
        await _finished_call(store, tmp_path, call_id, seconds, priority)
    gated = GatedTranscribing({seconds: call_id for call_id, (seconds, _) in calls.items()})
    yield gated
    gated.gate.set()


async def test_each_worker_takes_only_its_share_and_the_safety_call_first(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path, queued: GatedTranscribing
) -> None:
    store, stopping = PgStore(db_pool), asyncio.Event()
    first = _worker(db_dsn, store, tmp_path, queued, stopping, concurrency=2)
    second: asyncio.Task[None] | None = None
    try:
        await until("the first worker decoding 2 calls", lambda: _started(queued, 2))
        assert await _picked_by_worker(db_pool) == [2]  # the other 4 wait for anyone
        # Hung up last, taken first; then the oldest (the two decode side by side).
        assert sorted(queued.started) == ["n0", "p1"]

        second = _worker(db_dsn, store, tmp_path, queued, stopping, concurrency=2)
        await until("the second worker decoding 2 more", lambda: _started(queued, 4))
        assert await _picked_by_worker(db_pool) == [2, 2]
        assert sorted(queued.started[2:]) == ["n1", "n2"]  # then in hang-up order

        queued.gate.set()
        for call_id in ("p1", "n0", "n1", "n2", "n3", "n4"):
            await until(f"{call_id} processed", lambda c=call_id: processed(store, c))
        # The decode's figures travel with each result (the API's and /metrics').
        now = datetime.now(UTC)
        figures = await transcription_figures(db_pool, now - timedelta(hours=1), now)
        assert (figures["calls"], figures["audio_s"], figures["jobs"]["queued"]) == (6, 24.0, 0)
        assert figures["lag_s"]["max"] is not None
    finally:
        queued.gate.set()
        stopping.set()
        await asyncio.wait_for(asyncio.gather(first, *([second] if second else [])), 30)


async def _started(gated: GatedTranscribing, count: int) -> bool:
    return len(gated.started) >= count


async def test_a_worker_of_one_holds_one_call_and_the_next_goes_to_the_next_worker(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path, queued: GatedTranscribing
) -> None:
    """pgqueuer's own cap lets a worker hold two jobs; a worker of one picks only one,
    so the next call is not stuck behind a long decode while another worker idles."""
    store, stopping = PgStore(db_pool), asyncio.Event()
    workers = [_worker(db_dsn, store, tmp_path, queued, stopping, concurrency=1)]
    try:
        await until("one decoding", lambda: _started(queued, 1))
        workers.append(_worker(db_dsn, store, tmp_path, queued, stopping, concurrency=1))
        await until("the second worker decoding", lambda: _started(queued, 2))
        assert queued.started == ["p1", "n0"]
        assert await _picked_by_worker(db_pool) == [1, 1]  # the other 4 wait for anyone
        queued.gate.set()
        for call_id in ("p1", "n0", "n1", "n2", "n3", "n4"):
            await until(f"{call_id} processed", lambda c=call_id: processed(store, c))
        assert queued.most_at_once == 2
    finally:
        queued.gate.set()
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*workers), 30)
